use house_sdk::prelude::*;

#[handler(path = "/x")]
fn x() -> String {
    String::new()
}

fn main() {}
