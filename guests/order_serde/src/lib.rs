//! The twin of `order_typed` (`make bench`, scenario 21): the same order,
//! taken as `Json` (the host checks only that it is well-formed) and parsed
//! and checked by the guest with serde_json, as a guest had to before typed
//! bodies.

use house_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Address<'a> {
    city: &'a str,
    country: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Order<'a> {
    id: i64,
    customer: &'a str,
    qty: i64,
    discount: f64,
    gift: bool,
    via: &'a str,
    note: &'a str,
    priority: i64,
    #[serde(borrow)]
    ship_to: Address<'a>,
    #[serde(borrow)]
    bill_to: Address<'a>,
}

fn check(o: &Order<'_>) -> Result<(), &'static str> {
    let chars = |s: &str, min: usize, max: usize| (min..=max).contains(&s.chars().count());
    let ok = o.id >= 1
        && chars(o.customer, 1, 64)
        && (1..=99).contains(&o.qty)
        && (0.0..=1.0).contains(&o.discount)
        && (o.via == "post" || o.via == "courier")
        && chars(o.note, 0, 200)
        && (1..=5).contains(&o.priority)
        && [&o.ship_to, &o.bill_to].iter().all(|a| chars(a.city, 1, 40) && chars(a.country, 2, 2));
    let _ = o.gift;
    if ok { Ok(()) } else { Err("a field breaks its rule") }
}

/// A line about the order, from its fields.
#[handler(closing, path = "/order", methods(POST), content_type = "text/plain; charset=utf-8")]
fn order(#[body] body: Json) -> Response {
    let o: Order<'_> = match serde_json::from_str(body.0) {
        Ok(o) => o,
        Err(_) => return Response::error(400, "body: not an order"),
    };
    if let Err(e) = check(&o) {
        return Response::error(400, e);
    }
    Response::new(format!(
        "{} x{} for {} to {}, {} ({}, {}, {}, {}, {})\n",
        o.id, o.qty, o.customer, o.ship_to.city, o.bill_to.country, o.via, o.discount, o.gift, o.priority, o.note.len()
    ))
}
