use house_sdk::prelude::*;

#[derive(Body)]
struct Note {
    #[field(default = "x")]
    text: Option<String>,
}

fn main() {}
