use house_sdk::prelude::*;

#[handler(closing, path = "/items/{id}")]
fn item(#[param(default = 1)] id: i64) -> String {
    id.to_string()
}

fn main() {}
