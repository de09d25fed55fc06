use house_sdk::prelude::*;

#[handler(stream)]
fn source(#[param(length(max = 16))] room: &str) {
    let _ = subscribe(room);
}

fn main() {}
