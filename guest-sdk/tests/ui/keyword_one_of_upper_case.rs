use house_sdk::prelude::*;

// Keywords arrive lower-cased: "Red" could never be matched.
#[handler(closing)]
fn paint(#[param(one_of("Red", "blue"))] colour: Keyword) -> String {
    colour.0
}

fn main() {}
