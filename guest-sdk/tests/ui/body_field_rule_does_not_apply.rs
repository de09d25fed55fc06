use house_sdk::prelude::*;

#[derive(Body)]
struct Note {
    #[field(chars(max = 3))]
    stars: i64,
}

fn main() {}
