use house_sdk::prelude::*;

#[handler(closing)]
fn initial(letter: char) -> String {
    format!("{letter}")
}

fn main() {}
