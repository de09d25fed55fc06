use house_sdk::prelude::*;

static_files! {
    "/notes" => "page.unknownext",
}

fn main() {}
