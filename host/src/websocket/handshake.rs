//! The opening handshake (RFC 6455 4.2): whether a request is a good
//! upgrade, and the `Sec-WebSocket-Accept` of its key. A bad one is
//! answered with a status and a reason (400, 403 for an origin not
//! allowed, 426 for another protocol version), never upgraded.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

/// The GUID a key is hashed with (RFC 6455 1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A refused upgrade: its status and the reason for the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

fn refuse<T>(status: u16, reason: &'static str) -> Result<T, Refusal> {
    Err(Refusal { status, reason })
}

/// Whether a comma-separated header value lists `token` (any case).
fn lists(value: &str, token: &str) -> bool {
    value.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks an upgrade request's method and headers (names in lower case);
/// the accept key to answer with. `origins`: the allowed `Origin`s (empty:
/// any, as a server without the flag must let a non-browser client in).
pub fn accept<'a>(
    method: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    origins: &[String],
) -> Result<String, Refusal> {
    if method != "GET" {
        return refuse(400, "a WebSocket upgrade is a GET");
    }
    let (mut upgrade, mut connection, mut key, mut version, mut origin) = (false, false, None, None, None);
    for (name, value) in headers {
        match name {
            "upgrade" => upgrade |= lists(value, "websocket"),
            "connection" => connection |= lists(value, "upgrade"),
            "sec-websocket-key" => key = Some(value.trim()),
            "sec-websocket-version" => version = Some(value.trim()),
            "origin" => origin = Some(value.trim()),
            _ => {}
        }
    }
    if !upgrade || !connection {
        return refuse(400, "not an upgrade to websocket (Upgrade: websocket, Connection: Upgrade)");
    }
    if version != Some("13") {
        return refuse(426, "WebSocket version 13 only (Sec-WebSocket-Version: 13)");
    }
    let Some(key) = key.filter(|k| STANDARD.decode(k).is_ok_and(|b| b.len() == 16)) else {
        return refuse(400, "Sec-WebSocket-Key is not 16 bytes in base64");
    };
    // Cross-site WebSocket hijacking: a browser always sends Origin, and a
    // page of another site must not ride the visitor's cookies.
    if !origins.is_empty() && !origin.is_some_and(|o| origins.iter().any(|a| a == o)) {
        return refuse(403, "Origin not allowed (--ws-allowed-origins)");
    }
    Ok(STANDARD.encode(Sha1::new().chain_update(key).chain_update(GUID).finalize()))
}

/// The `101 Switching Protocols` head that completes the handshake.
pub fn write_switch(out: &mut Vec<u8>, accept: &str) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    out.extend_from_slice(b"Sec-WebSocket-Accept: ");
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// The query parameter a socket resumes with: a browser's WebSocket
/// cannot send `Last-Event-ID`, so `?last-event-id=ID` stands for it.
pub const RESUME_PARAM: &str = "last-event-id";

/// Takes [`RESUME_PARAM`] out of `query` (the stream handler never sees
/// it) and returns its value, decoded, if it was there; up to 64 bytes,
/// as the header is.
pub fn take_resume(query: &mut String) -> Option<String> {
    let mut found = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name != RESUME_PARAM {
                return true;
            }
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            found = Some(if value.len() <= 64 { value.into_owned() } else { String::new() });
            false
        })
        .collect();
    if found.is_some() {
        *query = kept.join("&");
    }
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_resume_parameter_is_taken_out_of_the_query() {
        let mut q = "room=lobby&last-event-id=7-0&x=1".to_owned();
        assert_eq!(take_resume(&mut q).as_deref(), Some("7-0"));
        assert_eq!(q, "room=lobby&x=1");
        let mut q = "room=lobby".to_owned();
        assert_eq!(take_resume(&mut q), None);
        assert_eq!(q, "room=lobby");
    }

    use super::*;

    fn headers(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut h = vec![
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ];
        h.extend_from_slice(extra);
        h
    }

    #[test]
    fn accepts_the_rfc_example() {
        let got = accept("GET", headers(&[]).into_iter(), &[]);
        assert_eq!(got.as_deref(), Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "RFC 6455 1.3");
    }

    #[test]
    fn refuses_bad_upgrades() {
        let status = |method: &str, h: Vec<(&'static str, &'static str)>, origins: &[String]| {
            accept(method, h.into_iter(), origins).unwrap_err().status
        };
        assert_eq!(status("POST", headers(&[]), &[]), 400);
        let mut h = headers(&[]);
        h.retain(|(n, _)| *n != "upgrade");
        assert_eq!(status("GET", h, &[]), 400);
        let mut h = headers(&[]);
        h[3] = ("sec-websocket-version", "8");
        assert_eq!(status("GET", h, &[]), 426);
        let mut h = headers(&[]);
        h[2] = ("sec-websocket-key", "c2hvcnQ=");
        assert_eq!(status("GET", h, &[]), 400);
        let allowed = ["https://chat.example".to_owned()];
        assert_eq!(status("GET", headers(&[("origin", "https://evil.example")]), &allowed), 403);
        assert_eq!(status("GET", headers(&[]), &allowed), 403, "no Origin when origins are set");
        assert!(accept("GET", headers(&[("origin", "https://chat.example")]).into_iter(), &allowed).is_ok());
    }
}
