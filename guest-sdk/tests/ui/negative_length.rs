use house_sdk::prelude::*;

#[handler(closing)]
fn hello(#[param(chars(min = -1))] name: &str) -> String {
    name.into()
}

fn main() {}
