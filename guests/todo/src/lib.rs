//! A to-do list per visitor: a `sid` cookie (random, set by the first
//! `GET /todos`, signed by the host: a made-up one is no session) names the visitor, the host's key-value store keeps each item
//! under `item:SID:ID`, and the visitor's other tabs hear of every change
//! on the stream `/todos/events` (channel `todo:SID`).
//!
//! Routes: `GET /todo` (the page, a static file), `GET /todos` (JSON list), `POST /todos`
//! (`{"title": ...}`: 201 with the item), `PATCH /todos/{id}`
//! (`{"done": bool}`), `DELETE /todos/{id}` (204), `GET /todos/events`.
//! Another visitor's id, or one that does not exist, is a 404.

use house_sdk::prelude::*;

/// Items a visitor may keep (a list is one key-value scan).
const MAX_ITEMS: u32 = 500;
/// A year, for the cookie.
const COOKIE_AGE: u64 = 365 * 24 * 3600;

/// Who is asking: the cookie's session, or a new one.
struct Visitor {
    sid: String,
    new: bool,
}

impl Visitor {
    fn of(sid: &str) -> Result<Visitor, kv::KvError> {
        if sid.len() == 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Visitor { sid: sid.into(), new: false });
        }
        let mut bytes = [0u8; 16];
        kv::random(&mut bytes)?;
        let sid = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Visitor { sid, new: true })
    }

    /// `resp`, with the cookie (signed by the host) if the session is new.
    fn answer(&self, resp: Response) -> Response {
        if self.new { resp.signed_cookie(&Cookie::new("sid", &self.sid).max_age(COOKIE_AGE)) } else { resp }
    }

    fn key(&self, id: i64) -> String {
        format!("item:{}:{id:012}", self.sid)
    }

    fn channel(&self) -> String {
        format!("todo:{}", self.sid)
    }

    /// Tells the visitor's other tabs what changed.
    fn announce(&self, what: &str) -> Result<(), HostError> {
        publish(&self.channel(), what)
    }
}

fn item(id: i64, title: &str, done: bool) -> String {
    json::Object::new().int("id", id).str("title", title).bool("done", done).build()
}

/// The item with `done` set: the stored JSON is this module's own
/// (`item`), whose last field is `done`, so no JSON parser is needed.
fn with_done(stored: &str, done: bool) -> Option<String> {
    let head = stored.strip_suffix("\"done\":false}").or_else(|| stored.strip_suffix("\"done\":true}"))?;
    Some(format!("{head}\"done\":{done}}}"))
}

/// A new item, as the host has checked it: `{"title": "..."}`.
#[derive(Body)]
struct NewItem {
    #[field(chars(min = 1, max = 200))]
    title: &'static str,
}

/// A change of an item: `{"done": true}`.
#[derive(Body)]
struct Change {
    done: bool,
}

/// A failure of the store or the host: 503 with Retry-After when the store
/// is unavailable (nothing was saved, and the page may try again), else 500.
fn fail(e: impl core::fmt::Display) -> Response {
    let reason = e.to_string();
    if reason == kv::KvError::Unavailable.to_string() {
        return Response::error(503, reason).header("Retry-After", "1");
    }
    Response::error(500, reason)
}

// The page: self-contained, nothing fetched from elsewhere, served by the
// host from the module's custom section (ETag, 304) without an instance.
// It sets no cookie: its first `GET /todos` does, before it opens its
// stream.
static_files! {
    "/todo" => "index.html",
}

/// The visitor's items, oldest first.
#[handler(closing, path = "/todos", methods(GET), content_type = "application/json", statuses(200, 500, 503))]
fn list(#[cookie("sid", signed)] #[param(default = "", chars(max = 64))] sid: &str) -> Response {
    let v = match Visitor::of(sid) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    match kv::scan(&format!("item:{}:", v.sid), MAX_ITEMS) {
        Ok(items) => {
            let values: Vec<&str> = items.iter().filter_map(|(_, v)| core::str::from_utf8(v).ok()).collect();
            v.answer(Response::json(format!("[{}]", values.join(","))))
        }
        Err(e) => fail(e),
    }
}

/// A new item: `{"title": "..."}`, 1 to 200 characters.
#[handler(closing, path = "/todos", methods(POST), content_type = "application/json", statuses(201, 400, 409, 500, 503))]
fn add(#[cookie("sid", signed)] #[param(default = "", chars(max = 64))] sid: &str, #[body] new: NewItem) -> Response {
    let title = new.title.trim();
    if title.is_empty() {
        return Response::error(400, "body.title: only spaces");
    }
    let v = match Visitor::of(sid) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let saved = (|| -> Result<String, String> {
        if kv::list(&format!("item:{}:", v.sid), MAX_ITEMS).map_err(|e| e.to_string())?.len() >= MAX_ITEMS as usize {
            return Err(format!("at most {MAX_ITEMS} items"));
        }
        let id = kv::incr(&format!("next:{}", v.sid), 1).map_err(|e| e.to_string())?;
        let json = item(id, title, false);
        kv::set(&v.key(id), json.as_bytes()).map_err(|e| e.to_string())?;
        v.announce("changed").map_err(|e| e.to_string())?;
        Ok(json)
    })();
    match saved {
        Ok(json) => v.answer(Response::json(json).status(201)),
        Err(e) if e.starts_with("at most") => Response::error(409, e),
        Err(e) => fail(e),
    }
}

/// Marks an item done or not: `{"done": true}`.
#[handler(closing, path = "/todos/{id}", methods(PATCH), content_type = "application/json", statuses(200, 400, 404, 500, 503))]
fn change(
    #[param(range(min = 1))] id: i64,
    #[cookie("sid", signed)] #[param(default = "", chars(max = 64))] sid: &str,
    #[body] change: Change,
) -> Response {
    let v = match Visitor::of(sid) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let found = match kv::get_string(&v.key(id)) {
        Ok(found) => found.and_then(|j| with_done(&j, change.done)),
        Err(e) => return fail(e),
    };
    let Some(json) = found else { return Response::error(404, format!("no item {id}")) };
    match kv::set(&v.key(id), json.as_bytes()).map_err(|e| e.to_string()).and_then(|()| v.announce("changed").map_err(|e| e.to_string())) {
        Ok(()) => v.answer(Response::json(json)),
        Err(e) => fail(e),
    }
}

/// Removes an item: 204.
#[handler(closing, path = "/todos/{id}", methods(DELETE), statuses(204, 404, 500, 503))]
fn remove(#[param(range(min = 1))] id: i64, #[cookie("sid", signed)] #[param(default = "", chars(max = 64))] sid: &str) -> Response {
    let v = match Visitor::of(sid) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    match kv::get(&v.key(id)) {
        Ok(Some(_)) => {}
        Ok(None) => return Response::error(404, format!("no item {id}")),
        Err(e) => return fail(e),
    }
    match kv::delete(&v.key(id)).map_err(|e| e.to_string()).and_then(|()| v.announce("changed").map_err(|e| e.to_string())) {
        Ok(()) => v.answer(Response::new("").status(204)),
        Err(e) => fail(e),
    }
}

/// The visitor's changes, live: each event says "changed"; the page
/// refetches the list (a reset, the same).
#[handler(stream, path = "/todos/events")]
fn events(#[cookie("sid", signed)] #[param(default = "", chars(max = 64))] sid: &str) -> Response {
    match Visitor::of(sid) {
        // Without a session there is nothing to follow.
        Ok(v) if v.new => Response::error(403, "no session: load /todo first"),
        Ok(v) => match subscribe(&v.channel()) {
            Ok(()) => Response::new("listening"),
            Err(e) => fail(e),
        },
        Err(e) => fail(e),
    }
}
