use house_sdk::prelude::*;

#[handler(closing, methods(GET, FETCH))]
fn x() -> String {
    String::new()
}

fn main() {}
