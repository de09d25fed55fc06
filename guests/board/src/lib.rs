//! A test guest of typed inputs all the way down: bearer tokens whose
//! claims decide what the caller may read, write and subscribe to, and JSON
//! bodies the host checks field by field (every field type, nested objects,
//! lists of them, optional fields, defaults, a named type). It parses no
//! JSON itself: the host hands it the values.

use house_sdk::prelude::*;

http_type! {
    /// A priority from 1 to 5.
    pub Priority: integer(range(min = 1, max = 5));
}

/// Who the caller is, as the token's issuer says: the host verified the
/// signature, `exp`/`nbf`/`iat` and these fields' rules before the call.
#[derive(Body)]
struct Claims {
    #[field(chars(min = 1, max = 64))]
    sub: &'static str,
    #[field(items(max = 16), chars(max = 16))]
    rooms: Vec<Keyword>,
    #[field(items(max = 3), one_of("read", "write", "subscribe"))]
    can: Vec<Keyword>,
}

impl Claims {
    /// Whether the caller may `what` in `room`.
    fn may(&self, what: &str, room: &str) -> bool {
        self.can.iter().any(|c| c.0 == what) && self.rooms.iter().any(|r| r.0 == room)
    }
}

fn forbidden(who: &Claims, what: &str, room: &str) -> Response {
    Response::error(403, format!("{} may not {what} room {room}", who.sub))
}

/// A message on the board.
#[derive(Body)]
struct Post {
    #[field(chars(min = 1, max = 280))]
    text: String,
    #[field(items(max = 5), chars(max = 20))]
    tags: Vec<Keyword>,
    /// Absent or null: none.
    priority: Option<Priority>,
}

/// The room's messages, newest last (scope `read`).
#[handler(closing, path = "/board/{room}", methods(GET), content_type = "application/json", statuses(200, 403))]
fn read(#[param(chars(max = 16))] room: Keyword, #[token] who: Claims) -> Response {
    if !who.may("read", &room) {
        return forbidden(&who, "read", &room);
    }
    match kv::scan(&format!("post:{}:", room.0), 100) {
        Ok(posts) => {
            let items: Vec<&str> = posts.iter().filter_map(|(_, v)| core::str::from_utf8(v).ok()).collect();
            Response::json(format!("[{}]", items.join(",")))
        }
        Err(e) => Response::error(503, e).header("Retry-After", "1"),
    }
}

/// Posts a message (scope `write`): 201 with it as stored.
#[handler(closing, path = "/board/{room}", methods(POST), content_type = "application/json", statuses(201, 403, 503))]
fn write(#[param(chars(max = 16))] room: Keyword, #[token] who: Claims, #[body] post: Post) -> Response {
    if !who.may("write", &room) {
        return forbidden(&who, "write", &room);
    }
    let tags: Vec<&str> = post.tags.iter().map(|t| t.0).collect();
    let mut json = json::Object::new().str("by", who.sub).str("text", &post.text).strs("tags", &tags);
    json = match post.priority {
        Some(p) => json.int("priority", p),
        None => json.null("priority"),
    };
    let json = json.build();
    let saved = kv::incr(&format!("next:{}", room.0), 1)
        .and_then(|n| kv::set(&format!("post:{}:{n:012}", room.0), json.as_bytes()))
        .map_err(|e| e.to_string())
        .and_then(|()| publish(&format!("board:{}", room.0), &json).map_err(|e| e.to_string()));
    match saved {
        Ok(()) => Response::json(json).status(201),
        Err(e) => Response::error(503, e).header("Retry-After", "1"),
    }
}

/// The room's new messages, live (scope `subscribe`); the token may also
/// come from the `board_token` cookie, as a browser's EventSource cannot
/// set a header.
#[handler(stream, path = "/board/{room}/events")]
fn events(#[param(chars(max = 16))] room: Keyword, #[token(cookie = "board_token")] who: Claims) -> Response {
    if !who.may("subscribe", &room) {
        return forbidden(&who, "subscribe", &room);
    }
    match subscribe(&format!("board:{}", room.0)) {
        Ok(()) => Response::new("listening"),
        Err(e) => Response::error(503, e),
    }
}

/// A line of an order.
#[derive(Body)]
struct Line {
    #[field(chars(min = 1, max = 12))]
    sku: Keyword,
    #[field(range(min = 1, max = 99))]
    qty: i64,
}

/// Where an order goes.
#[derive(Body)]
#[body(allow_unknown)]
struct Address {
    #[field(chars(min = 1, max = 40))]
    city: &'static str,
    #[field(chars(min = 2, max = 2))]
    country: &'static str,
}

/// Every kind of field: each is echoed back as the guest received it.
#[derive(Body)]
struct Order {
    #[field(name = "order-id", range(min = 1))]
    order_id: i64,
    #[field(items(min = 1, max = 4))]
    lines: Vec<Line>,
    ship_to: Address,
    bill_to: Option<Address>,
    #[field(range(min = 0.0, max = 1.0))]
    discount: f64,
    #[field(default = false)]
    gift: bool,
    #[field(one_of("post", "courier"), default = "post")]
    via: Keyword,
    note: Option<String>,
    priority: Option<Priority>,
    extra: Option<Json>,
    #[field(items(max = 3))]
    codes: Option<Vec<i64>>,
}

fn address(a: &Address) -> json::Object {
    json::Object::new().str("city", a.city).str("country", a.country)
}

/// Echoes an order, field by field, as the guest received it.
#[handler(closing, methods(POST), content_type = "application/json")]
fn order(#[body] o: Order) -> String {
    let lines: Vec<String> =
        o.lines.iter().map(|l| json::Object::new().str("sku", l.sku.0).int("qty", l.qty).build()).collect();
    let mut out = json::Object::new()
        .int("order-id", o.order_id)
        .raw("lines", &format!("[{}]", lines.join(",")))
        .object("ship_to", address(&o.ship_to))
        .float("discount", o.discount)
        .bool("gift", o.gift)
        .str("via", o.via.0);
    out = match &o.bill_to {
        Some(a) => out.object("bill_to", address(a)),
        None => out.null("bill_to"),
    };
    out = match &o.note {
        Some(n) => out.str("note", n),
        None => out.null("note"),
    };
    out = match o.priority {
        Some(p) => out.int("priority", p),
        None => out.null("priority"),
    };
    out = match o.extra {
        Some(j) => out.raw("extra", j.0),
        None => out.null("extra"),
    };
    out = match &o.codes {
        Some(c) => out.ints("codes", c),
        None => out.null("codes"),
    };
    out.build()
}
