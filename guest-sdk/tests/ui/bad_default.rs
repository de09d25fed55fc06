use house_sdk::prelude::*;

#[handler(closing)]
fn page(#[param(default = "first")] n: i64) -> String {
    n.to_string()
}

fn main() {}
