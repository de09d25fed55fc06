use house_sdk::prelude::*;

// The host would refuse this module at load ("default breaks its own rules").
#[handler(closing)]
fn page(#[param(default = 9, range(min = 1, max = 5))] n: i64) -> String {
    n.to_string()
}

fn main() {}
