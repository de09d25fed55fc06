//! A tour of every parameter type and rule, each echoed back as JSON; the
//! integration tests drive the validator through it. Also the SSE corners:
//! event fields, several channels, a stream that refuses.

use house_sdk::prelude::*;

http_type! {
    /// A room name, defined once, used by several handlers.
    pub Room: string(chars(min = 1, max = 16));
    /// A level from 1 to 5.
    pub Level: integer(range(min = 1, max = 5));
}

fn keywords(list: &[Keyword]) -> String {
    let items: Vec<String> = list.iter().map(|k| json::string(k)).collect();
    format!("[{}]", items.join(","))
}

/// Every built-in type with a rule, in one handler.
#[handler(closing, path = "/types", content_type = "application/json")]
#[allow(clippy::too_many_arguments)]
fn types(
    #[param(chars(min = 2, max = 5))] s: &str,
    #[param(range(min = -10, max = 10))] i: i64,
    #[param(range(min = 0.5, max = 2.5))] f: f64,
    b: bool,
    #[param(one_of("red", "green"))] k: Keyword,
    j: Json,
    #[param(items(min = 1, max = 3))] ks: Vec<Keyword>,
    #[param(items(max = 2), range(min = 0, max = 100))] is: Vec<i64>,
    #[param(untyped)] u: &str,
) -> Response {
    let is: Vec<String> = is.iter().map(|n| format!("{n}")).collect();
    let body = json::Object::new()
        .str("s", s)
        .int("i", i)
        .raw("f", &format!("{f}"))
        .bool("b", b)
        .str("k", &k)
        .raw("j", &j)
        .raw("ks", &keywords(&ks))
        .raw("is", &format!("[{}]", is.join(",")))
        .str("u", u)
        .build();
    Response::json(body)
}

/// Named types, one of them optional.
#[handler(closing, content_type = "text/plain; charset=utf-8")]
fn named(room: Room, #[param(default = 3)] level: Level) -> String {
    format!("{room}:{level}")
}

/// Defaults for every kind of value; `x-y` is not a Rust identifier.
#[handler(closing, content_type = "application/json")]
fn defaults(
    #[param(default = "hi")] s: &str,
    #[param(default = -2)] n: i64,
    #[param(default = false)] b: bool,
    #[param(default = ["a", "b"])] tags: Vec<Keyword>,
    #[param(name = "x-y", default = 7)] xy: i64,
) -> Response {
    Response::json(
        json::Object::new().str("s", s).int("n", n).bool("b", b).raw("tags", &keywords(&tags)).int("x-y", xy).build(),
    )
}

/// A response with a status and headers of the guest's choosing.
#[handler(closing, methods(GET, PUT))]
fn status(#[param(range(min = 200, max = 599))] code: i64) -> Response {
    Response::new(format!("status {code}")).status(code as u16).header("X-Guest", "typed")
}

/// A handler error: 500 with the error's text.
#[handler(closing)]
fn fail() -> Result<String, &'static str> {
    Err("this handler always fails")
}

/// Publishes one event with every SSE field to `channel` (`times` times).
#[handler(closing, methods(POST))]
fn emit(
    channel: &str,
    data: &str,
    #[param(default = "")] event: &str,
    #[param(default = "")] id: &str,
    #[param(default = -1)] retry: i64,
    #[param(default = 1, range(min = 1, max = 1000))] times: i64,
) -> Result<&'static str, HostError> {
    let ev = Event {
        data,
        event: Some(event).filter(|e| !e.is_empty()),
        id: Some(id).filter(|i| !i.is_empty()),
        retry: u32::try_from(retry).ok(),
    };
    for _ in 0..times {
        publish_event(channel, &ev)?;
    }
    Ok("ok")
}

/// Subscribes to every channel named, first event chosen by the guest.
#[handler(stream)]
fn watch(#[param(items(min = 1, max = 8))] ch: Vec<Keyword>) -> Result<String, HostError> {
    for c in &ch {
        subscribe(c)?;
    }
    Ok(format!("watching {}", ch.len()))
}

/// Subscribes to `ch` as a member under `info` (presence).
#[handler(stream)]
fn member(#[param(chars(min = 1, max = 64))] ch: &str, info: &str) -> Response {
    match subscribe_as(ch, info) {
        Ok(()) => Response::new(format!("member of {ch}")),
        Err(e) => Response::error(400, e),
    }
}

/// The members of `ch`, one per line (at most `limit`); with `count`,
/// only how many.
#[handler(closing, content_type = "text/plain; charset=utf-8")]
fn members(
    #[param(chars(min = 1, max = 64))] ch: &str,
    #[param(default = 1000, range(min = 0))] limit: i64,
    #[param(default = false)] count: bool,
) -> Result<String, HostError> {
    let list = presence(ch, limit as u32)?;
    Ok(if count { list.len().to_string() } else { list.join("\n") })
}

/// What a client of `/watch` may send on its WebSocket.
#[derive(Body)]
struct Say {
    #[field(chars(min = 1, max = 64))]
    channel: &'static str,
    #[field(chars(max = 65536))]
    data: &'static str,
    #[field(range(min = 1, max = 1000), default = 1)]
    times: i64,
}

/// A message on `/watch`'s WebSocket: publishes `data` to `channel`
/// `times` times, like `/emit`, without a request.
#[handler(message, path = "/watch", content_type = "text/plain; charset=utf-8")]
fn watch_say(#[body] say: Say) -> Result<String, HostError> {
    for _ in 0..say.times {
        publish(say.channel, say.data)?;
    }
    Ok(format!("published {}", say.times))
}

/// A stream that refuses: not every subscription is welcome.
#[handler(stream)]
fn refuse() -> Response {
    Response::error(403, "no streams for you")
}

/// Subscribing from a closing handler is an error the guest sees.
#[handler(closing)]
fn misuse() -> String {
    match subscribe("x") {
        Err(e) => format!("refused: {e}"),
        Ok(()) => "subscribed?".into(),
    }
}

/// A path parameter, typed and bounded.
#[handler(closing, path = "/items/{id}", content_type = "text/plain; charset=utf-8")]
fn item(#[param(range(min = 1))] id: i64) -> String {
    format!("item {id}")
}

/// A literal segment beside the pattern: it wins.
#[handler(closing, path = "/items/new", content_type = "text/plain; charset=utf-8")]
fn new_item() -> &'static str {
    "the new-item form"
}

/// Two path parameters.
#[handler(closing, path = "/rooms/{room}/messages/{n}", content_type = "text/plain; charset=utf-8")]
fn room_message(#[param(chars(max = 16))] room: Keyword, #[param(range(min = 0, max = 999))] n: i64) -> String {
    format!("{} #{n}", room.0)
}

/// Headers and a cookie, declared; sets two cookies.
#[handler(closing, content_type = "text/plain; charset=utf-8")]
fn whoami(
    #[header("user-agent")]
    #[param(chars(max = 64))]
    agent: &str,
    #[header("x-level")]
    #[param(default = 1, range(min = 1, max = 5))]
    level: i64,
    #[cookie("sid")]
    #[param(default = "", chars(max = 32))]
    sid: &str,
) -> Response {
    let sid = if sid.is_empty() { "fresh" } else { sid };
    Response::new(format!("{agent} at level {level}, session {sid}\n"))
        .cookie(&Cookie::new("sid", sid))
        .cookie(&Cookie::new("seen", "yes").max_age(60))
}

/// A JSON body, checked well-formed, echoed back.
#[handler(closing, methods(POST, PUT), content_type = "application/json")]
fn echo_json(#[body] #[param(chars(max = 200))] body: Json) -> &'static str {
    body.0
}
