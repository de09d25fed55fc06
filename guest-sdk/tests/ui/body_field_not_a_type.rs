use house_sdk::prelude::*;

struct Plain;

#[derive(Body)]
struct Note {
    inner: Plain,
}

fn main() {}
