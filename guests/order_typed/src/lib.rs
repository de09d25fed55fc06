//! A benchmark guest (`make bench`, scenario 21): an order of 10 fields, 2
//! of them nested objects, taken as a typed body the host has validated.
//! Its twin `order_serde` takes the same order as `Json` and parses and
//! checks it with serde: the same answer, for the size and time compared.

use house_sdk::prelude::*;

#[derive(Body)]
struct Address {
    #[field(chars(min = 1, max = 40))]
    city: &'static str,
    #[field(chars(min = 2, max = 2))]
    country: &'static str,
}

#[derive(Body)]
struct Order {
    #[field(range(min = 1))]
    id: i64,
    #[field(chars(min = 1, max = 64))]
    customer: &'static str,
    #[field(range(min = 1, max = 99))]
    qty: i64,
    #[field(range(min = 0.0, max = 1.0))]
    discount: f64,
    gift: bool,
    #[field(one_of("post", "courier"))]
    via: Keyword,
    #[field(chars(max = 200))]
    note: &'static str,
    #[field(range(min = 1, max = 5))]
    priority: i64,
    ship_to: Address,
    bill_to: Address,
}

/// A line about the order, from its fields.
#[handler(closing, path = "/order", methods(POST), content_type = "text/plain; charset=utf-8")]
fn order(#[body] o: Order) -> String {
    format!(
        "{} x{} for {} to {}, {} ({}, {}, {}, {}, {})\n",
        o.id, o.qty, o.customer, o.ship_to.city, o.bill_to.country, o.via.0, o.discount, o.gift, o.priority, o.note.len()
    )
}
