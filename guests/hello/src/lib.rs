//! The smallest useful guest: a greeting with a validated name, and a JSON
//! counter that shows integer parameters with a range and a default.

use house_sdk::prelude::*;

/// `/hello?name=Ada` -> `Hello, Ada!`
#[handler(closing, content_type = "text/plain; charset=utf-8")]
fn hello(#[param(chars(min = 1, max = 40), default = "world")] name: &str) -> String {
    format!("Hello, {name}!\n")
}

/// `/count?from=3&to=6` -> `{"from":3,"to":6,"total":18}`
#[handler(closing, methods(GET))]
fn count(
    #[param(range(min = -1000, max = 1000))] from: i64,
    #[param(range(min = -1000, max = 1000), default = 10)] to: i64,
) -> Response {
    if from > to {
        return Response::error(422, format!("from ({from}) is after to ({to})"));
    }
    let total: i64 = (from..=to).sum();
    Response::json(json::Object::new().int("from", from).int("to", to).int("total", total).build())
}
