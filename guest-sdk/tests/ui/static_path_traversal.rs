use house_sdk::prelude::*;

static_files! {
    "/../secret" => "page.html",
}

fn main() {}
