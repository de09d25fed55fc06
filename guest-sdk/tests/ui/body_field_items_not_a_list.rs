use house_sdk::prelude::*;

#[derive(Body)]
struct Note {
    #[field(items(max = 3))]
    text: String,
}

fn main() {}
