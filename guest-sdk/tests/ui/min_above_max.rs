use house_sdk::prelude::*;

#[handler(closing)]
fn hello(#[param(chars(min = 70, max = 64))] name: &str) -> String {
    name.into()
}

fn main() {}
