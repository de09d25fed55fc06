use house_sdk::prelude::*;

#[handler(closing)]
fn me(#[token] who: &str) -> String {
    who.to_string()
}

fn main() {}
