use house_sdk::prelude::*;

// Both answer GET /items/{..}: the host would refuse the module at load.
#[handler(closing, path = "/items/{id}", methods(GET))]
fn item(id: i64) -> String {
    id.to_string()
}

#[handler(closing, path = "/items/{key}", methods(GET, DELETE))]
fn item_by_key(key: &str) -> String {
    key.into()
}

fn main() {}
