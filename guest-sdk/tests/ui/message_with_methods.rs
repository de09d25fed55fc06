use house_sdk::prelude::*;

#[handler(message, path = "/x", methods(POST))]
fn x() -> String {
    String::new()
}

fn main() {}
