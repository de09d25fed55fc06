use house_sdk::prelude::*;

#[derive(Body)]
struct Note {
    text: String,
}

#[handler(closing, methods(POST))]
fn save(#[body] #[param(chars(max = 100))] note: Note) -> String {
    note.text
}

fn main() {}
