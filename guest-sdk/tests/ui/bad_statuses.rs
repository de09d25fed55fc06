use house_sdk::prelude::*;

#[handler(closing, statuses(200, 700))]
fn out_of_range() -> Response {
    Response::new("")
}

#[handler(closing, statuses(204, 204))]
fn twice() -> Response {
    Response::new("")
}

#[handler(stream, statuses(200))]
fn stream() -> Result<(), HostError> {
    subscribe("x")
}

fn main() {}
