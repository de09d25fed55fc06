use house_sdk::prelude::*;

#[handler(closing)]
fn add(#[param(chars(max = 3))] n: i64) -> String {
    n.to_string()
}

fn main() {}
