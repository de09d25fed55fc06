//! Serializing responses: status line, the headers house always sends, and
//! the body (left out for HEAD, with its Content-Length kept).

use super::error::{HttpError, reason_phrase};

/// How the response frames the connection's future.
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1: decides which Connection header is needed.
    pub version: u8,
    pub keep_alive: bool,
    /// HEAD: send the headers of the response, not its body.
    pub head_only: bool,
}

/// A response ready to be written.
pub struct Response<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Appends `resp` to `out`. `date` is the cached `Date` header value.
/// (Plain appends rather than `write!`: this runs once per response.)
pub fn write(out: &mut Vec<u8>, resp: &Response<'_>, framing: Framing, date: &str) {
    write_status(out, resp.status, date);
    // 204 and 304 have no content (RFC 9110 sections 15.3.5, 8.6): no body,
    // and a 204 no Content-Length or Content-Type either.
    let bodyless = matches!(resp.status, 204 | 304);
    if resp.status != 204 {
        header(out, "Content-Type", resp.content_type);
    }
    if !bodyless {
        header(out, "Content-Length", itoa::Buffer::new().format(resp.body.len()));
    }
    for (name, value) in resp.headers {
        header(out, name, value);
    }
    write_connection(out, framing);
    out.extend_from_slice(b"\r\n");
    if !framing.head_only && !bodyless {
        out.extend_from_slice(resp.body);
    }
}

/// Appends the plain-text error response for `err`.
pub fn write_error(out: &mut Vec<u8>, err: &HttpError, mut framing: Framing, date: &str) {
    framing.keep_alive &= !err.closes();
    let mut body = String::with_capacity(err.reason.len() + 1);
    body.push_str(&err.reason);
    body.push('\n');
    let headers = err.headers();
    let resp = Response {
        status: err.status(),
        content_type: "text/plain; charset=utf-8",
        headers: &headers,
        body: body.as_bytes(),
    };
    write(out, &resp, framing, date);
}

/// The head of a Server-Sent-Events response: no Content-Length, the
/// connection stays open until one side closes it.
pub fn write_sse_head(out: &mut Vec<u8>, date: &str) {
    write_status(out, 200, date);
    out.extend_from_slice(
        b"Content-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n\
          X-Accel-Buffering: no\r\nConnection: keep-alive\r\n\r\n",
    );
}

/// `100 Continue`, for a client that sent `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn write_status(out: &mut Vec<u8>, status: u16, date: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    header(out, "Date", date);
    out.extend_from_slice(b"Server: house\r\n");
}

fn header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_connection(out: &mut Vec<u8>, framing: Framing) {
    match (framing.version, framing.keep_alive) {
        (_, false) => out.extend_from_slice(b"Connection: close\r\n"),
        (0, true) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        _ => {}
    }
}
