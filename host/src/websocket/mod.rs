//! WebSocket (RFC 6455), the server's side: the upgrade handshake
//! (`handshake`), the framing (`frame`), what the server says in its text
//! frames (`messages`) and one socket's state (`Session`). The loop's
//! layers use them: `serve` upgrades a stream's request and dispatches the
//! client's messages, `streams` sends events as frames.

pub mod frame;
pub mod handshake;
pub mod messages;

use std::time::Instant;

use frame::Decoder;

use crate::http::request::{Body, Head};

/// The method a WebSocket message is dispatched with, to the route of its
/// path's message handler (`router::Methods::MESSAGE`). No HTTP request
/// can have it: the request parser refuses methods it does not know.
pub const MESSAGE: &str = "MESSAGE";

/// What a connection that became a WebSocket keeps beyond a stream's
/// state: its decoder, and what a message is dispatched with (the upgrade
/// request's path, query and the headers its message handler may read: a
/// message handler sees the cookies and the token the socket was opened
/// with).
pub struct Session {
    pub decoder: Decoder,
    pub path: String,
    pub query: String,
    pub raw_headers: Vec<u8>,
    /// The last time the client sent anything (a pong included).
    pub last_heard: Instant,
    /// A close frame was sent: nothing more may be.
    pub closed: bool,
}

impl Session {
    /// The head a message of this socket is dispatched with: its upgrade
    /// request's, with the message pseudo-method, and a JSON body.
    pub fn message_head(&self) -> Head {
        Head {
            method: MESSAGE.to_owned(),
            path: self.path.clone(),
            query: self.query.clone(),
            version: 1,
            keep_alive: true,
            form_body: false,
            json_body: true,
            raw_headers: self.raw_headers.clone(),
            expect_continue: false,
            last_event_id: None,
            websocket: false,
            len: 0,
            body: Body::Empty,
        }
    }

    pub fn new(max_message: usize, path: String, query: String, raw_headers: Vec<u8>, now: Instant) -> Session {
        Session { decoder: Decoder::new(max_message), path, query, raw_headers, last_heard: now, closed: false }
    }
}
