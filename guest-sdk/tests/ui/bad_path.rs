use house_sdk::prelude::*;

#[handler(closing, path = "/items/{id")]
fn item() -> &'static str {
    "an item"
}

fn main() {}
