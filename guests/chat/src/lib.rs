//! The chat room of the article: browsers subscribe to a room over
//! Server-Sent Events (`/source`), post to it (`/send-message`), and the page
//! that does both is served at `/index`. The host validates every parameter
//! with the article's exact rules before these functions run.
//!
//! Names can be verified: `/chat/name` reserves a name in a room for its
//! caller and answers a cookie the host signs, `chat_who` (the caller's
//! random id, the room and the name); `/chat/say` takes the name from that
//! cookie only, so nobody posts in a room under a name someone else holds
//! there. Its messages say `"verified": true`; the article's
//! `/send-message` takes any name and says nothing of it.

use house_sdk::prelude::*;

/// Messages a newcomer to a room is shown.
const BACKLOG: u32 = 50;

/// Subscribes this connection to `room`, with the room's last messages
/// first (a page that reconnects is replayed what it missed instead).
///
/// A browser with a verified name in `room` (its `chat_who` cookie) is in
/// the room's presence under that name while it listens: the room's pages
/// are told `join` and `leave` (once per name, however many tabs), and
/// `/chat/members` lists who is there.
#[handler(stream)]
fn source(
    #[param(chars(max = 16))] room: &str,
    #[cookie("chat_who", signed)] #[param(default = "")] who: &str,
) -> Result<(), HostError> {
    if let Some((_, claimed, name)) = read_who(who)
        && claimed == room
    {
        subscribe_as(room, &name)?;
    }
    subscribe_with_backlog(room, BACKLOG)
}

/// Who is in `room` now (verified names, sorted), as a JSON array.
#[handler(closing, path = "/chat/members", methods(GET), content_type = "application/json")]
fn members(#[param(chars(max = 16))] room: &str) -> Result<String, HostError> {
    let names = presence(room, 1000)?;
    let quoted: Vec<String> = names.iter().map(|n| json::string(n)).collect();
    Ok(format!("[{}]", quoted.join(",")))
}

/// Publishes `{"name": ..., "message": ...}` to everyone in `room`.
#[handler(closing, content_type = "text/plain; charset=utf-8")]
fn send_message(
    #[param(chars(max = 16))] room: &str,
    #[param(chars(min = 1, max = 64))] name: &str,
    #[param(chars(min = 5, max = 256))] message: &str,
) -> Result<&'static str, HostError> {
    publish(room, &json::Object::new().str("name", name).str("message", message).build())?;
    Ok("sent\n")
}

/// How long a name stays reserved for its holder after its last claim.
const NAME_TTL_MS: u64 = 24 * 3600 * 1000;

/// Appends `text` percent-encoded (a cookie value has no spaces, commas,
/// semicolons or quotes; names may).
fn encode_into(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// `chat_who`'s value: `ID~ROOM~NAME`.
fn who_cookie(id: &str, room: &str, name: &str) -> String {
    let mut out = String::with_capacity(id.len() + 2 + 3 * (room.len() + name.len()));
    out.push_str(id);
    out.push('~');
    encode_into(&mut out, room);
    out.push('~');
    encode_into(&mut out, name);
    out
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The (id, room, name) of a `chat_who` value this module wrote.
fn read_who(value: &str) -> Option<(&str, String, String)> {
    let (id, rest) = value.split_once('~')?;
    let (room, name) = rest.split_once('~')?;
    Some((id, decode(room)?, decode(name)?))
}

fn decode(encoded: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let (&hi, &lo) = (tail.first()?, tail.get(1)?);
            bytes.push(hex_digit(hi)? << 4 | hex_digit(lo)?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Reserves `name` in `room` for the caller (its `chat_who` cookie's id,
/// or a new one) and answers the signed cookie; 409 if someone else holds
/// it there.
#[handler(closing, path = "/chat/name", methods(POST), content_type = "text/plain; charset=utf-8", statuses(204, 409, 503))]
fn claim_name(
    #[param(chars(max = 16))] room: &str,
    #[param(chars(min = 1, max = 64))] name: &str,
    #[cookie("chat_who", signed)] #[param(default = "")] who: &str,
) -> Response {
    let id = match read_who(who) {
        Some((id, _, _)) => id.to_owned(),
        None => {
            let mut bytes = [0u8; 12];
            if let Err(e) = kv::random(&mut bytes) {
                return Response::error(503, e).header("Retry-After", "1");
            }
            // Hex without `format!`: this module is the benchmarks' guest,
            // and formatting machinery is kilobytes in every instance.
            bytes.iter().flat_map(|b| [b >> 4, b & 15]).map(|n| b"0123456789abcdef"[usize::from(n)] as char).collect()
        }
    };
    // ASCII case only: Unicode's tables would weigh more than the module.
    let key = format!("name:{room}:{}", name.to_ascii_lowercase());
    let claimed = kv::get_string(&key).and_then(|holder| match holder {
        Some(holder) if holder != id => Ok(false),
        _ => kv::set_with_ttl(&key, id.as_bytes(), NAME_TTL_MS).map(|()| true),
    });
    match claimed {
        Ok(true) => Response::new("")
            .status(204)
            .signed_cookie(&Cookie::new("chat_who", &who_cookie(&id, room, name))),
        Ok(false) => Response::error(409, format!("the name {name} is taken")),
        Err(e) => Response::error(503, e).header("Retry-After", "1"),
    }
}

/// Publishes `{"name": ..., "message": ..., "verified": true}` to `room`,
/// the name from the signed cookie `/chat/name` gave for that room (403
/// without one: claim a name there first).
#[handler(closing, path = "/chat/say", methods(POST), content_type = "text/plain; charset=utf-8", statuses(200, 403))]
fn say(
    #[param(chars(max = 16))] room: &str,
    #[param(chars(min = 5, max = 256))] message: &str,
    #[cookie("chat_who", signed)] #[param(default = "")] who: &str,
) -> Response {
    say_as_claimed(room, who, message)
}

/// What a page sends on its room's WebSocket (`/source` opened it): the
/// host checks it as it checks a body before this runs.
#[derive(Body)]
struct Said {
    #[field(chars(min = 5, max = 256))]
    message: &'static str,
}

/// `/chat/say` over the room's WebSocket: no request per message.
#[handler(message, path = "/source", content_type = "text/plain; charset=utf-8", statuses(200, 403))]
fn socket_say(
    #[param(chars(max = 16))] room: &str,
    #[cookie("chat_who", signed)] #[param(default = "")] who: &str,
    #[body] said: Said,
) -> Response {
    say_as_claimed(room, who, said.message)
}

/// Publishes `message` in `room` under the name `who` claimed there.
fn say_as_claimed(room: &str, who: &str, message: &str) -> Response {
    let name = match read_who(who) {
        Some((_, claimed, name)) if claimed == room => name,
        _ => return Response::error(403, "no name in this room: claim one at /chat/name"),
    };
    let event = json::Object::new().str("name", &name).str("message", message).bool("verified", true).build();
    match publish(room, &event) {
        Ok(()) => Response::new("sent\n"),
        Err(e) => Response::error(500, e),
    }
}

// The chat page: self-contained, nothing fetched from elsewhere. The host
// serves it from the module's custom section (ETag, 304) without an
// instance, and the page is not in the memory image every handler call
// starts from.
#[cfg(not(feature = "page-in-memory"))]
static_files! {
    "/index" => "index.html",
}

/// The page inside the module's memory image (`make bench` compares).
#[cfg(feature = "page-in-memory")]
#[handler(closing)]
fn index() -> &'static str {
    include_str!("index.html")
}
