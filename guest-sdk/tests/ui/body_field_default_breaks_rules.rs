use house_sdk::prelude::*;

#[derive(Body)]
struct Note {
    #[field(range(min = 1, max = 5), default = 9)]
    stars: i64,
}

fn main() {}
