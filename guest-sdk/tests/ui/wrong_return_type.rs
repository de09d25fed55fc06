use house_sdk::prelude::*;

#[handler(closing)]
fn count() -> u32 {
    3
}

fn main() {}
