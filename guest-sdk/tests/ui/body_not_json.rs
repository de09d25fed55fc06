use house_sdk::prelude::*;

#[handler(closing, methods(POST))]
fn save(#[body] body: &str) -> String {
    body.to_string()
}

fn main() {}
