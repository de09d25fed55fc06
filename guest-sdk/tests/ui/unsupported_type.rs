use house_sdk::prelude::*;

#[handler(closing)]
fn count(n: u8) -> String {
    n.to_string()
}

fn main() {}
