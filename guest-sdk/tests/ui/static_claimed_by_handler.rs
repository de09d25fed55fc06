use house_sdk::prelude::*;

static_files! {
    "/index" => "page.html",
}

#[handler(closing)]
fn index() -> &'static str {
    "a page"
}

fn main() {}
