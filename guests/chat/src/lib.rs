//! The chat room of the article: browsers subscribe to a room over
//! Server-Sent Events (`/source`), post to it (`/send-message`), and the page
//! that does both is served at `/index`. The host validates every parameter
//! with the article's exact rules before these functions run.

use house_sdk::prelude::*;

/// Messages a newcomer to a room is shown.
const BACKLOG: u32 = 50;

/// Subscribes this connection to `room`, with the room's last messages
/// first (a page that reconnects is replayed what it missed instead).
#[handler(stream)]
fn source(#[param(chars(max = 16))] room: &str) -> Result<(), HostError> {
    subscribe_with_backlog(room, BACKLOG)
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
