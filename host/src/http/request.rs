//! Framing one HTTP/1.x request out of a connection's read buffer.
//!
//! The head is parsed with httparse once it is complete; the body is then
//! collected by `Content-Length` or by the chunked decoder, across as many
//! reads as it takes. Everything that could let two parties disagree about
//! where a request ends (duplicate lengths, a length next to a transfer
//! coding, obs-fold, whitespace before a colon) is refused here, so that a
//! smuggled request is never processed.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use super::error::{ErrorKind, HttpError};
use crate::config::Limits;

// The storage for `--max-headers` headers lives on the stack of
// `parse_head`: at most `MAX_HEADERS_CAP` of them.
pub use crate::config::MAX_HEADERS_CAP;

/// A parsed request head, waiting for (or done with) its body.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    /// The decoded path, without the query.
    pub path: String,
    /// The raw query string (after `?`), still percent-encoded.
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub keep_alive: bool,
    /// `Content-Type: application/x-www-form-urlencoded`.
    pub form_body: bool,
    /// `Content-Type: application/json` (or `...+json`).
    pub json_body: bool,
    /// The header fields as sent, `Name: value` lines (for handlers that
    /// declare headers or cookies: parsed again only for those).
    pub raw_headers: Vec<u8>,
    pub expect_continue: bool,
    /// `Last-Event-ID`: an SSE client reconnecting says the last event it
    /// got (kept as sent, up to 64 bytes; longer is nobody's id, kept empty).
    pub last_event_id: Option<String>,
    /// `Upgrade: websocket` (the handshake checks the rest).
    pub websocket: bool,
    /// Bytes of the head, including the blank line.
    pub len: usize,
    pub body: Body,
}

/// How the body is framed, and how far collecting it has got.
#[derive(Debug)]
pub enum Body {
    Empty,
    Length(usize),
    Chunked(ChunkedDecoder),
}

/// Parses the head at the start of `buf`. `Ok(None)`: not complete yet.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, HttpError> {
    let mut storage = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS_CAP];
    let headers = &mut storage[..limits.max_headers.min(MAX_HEADERS_CAP)];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head {
                // The request line alone is over the limit: its target is.
                if !buf[..limits.max_head].contains(&b'\n') {
                    return Err(target_too_long(limits));
                }
                return Err(head_too_large(limits));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(
                ErrorKind::HeadTooLarge,
                format!("more than {} header fields", limits.max_headers),
            ));
        }
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(e) => {
            return Err(HttpError::malformed(format!("malformed request: {}", describe(e))));
        }
    };
    if len > limits.max_head {
        if buf.iter().position(|&b| b == b'\n').is_some_and(|eol| eol > limits.max_head) {
            return Err(target_too_long(limits));
        }
        return Err(head_too_large(limits));
    }
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    let version = req.version.unwrap_or(1);
    if !KNOWN_METHODS.contains(&method) {
        return Err(HttpError::new(ErrorKind::NotImplemented, format!("method {method} is not implemented")));
    }
    if target.contains('#') {
        return Err(HttpError::malformed("a request target may not contain a #fragment"));
    }
    if !target.is_ascii() {
        return Err(HttpError::malformed("a request target must be ASCII (percent-encode other bytes)"));
    }
    // absolute-form (RFC 9112 section 3.2.2): its authority replaces Host.
    let (authority, target) = match split_absolute_form(target)? {
        Some((authority, path)) => (Some(authority), path),
        None => (None, Cow::Borrowed(target)),
    };

    let mut content_length: Option<usize> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut host: &[u8] = b"";
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut form_body = false;
    let mut json_body = false;
    let mut expect_continue = false;
    let mut last_event_id = None;
    let mut websocket = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(h.value)?;
            if content_length.is_some_and(|old| old != n) {
                return Err(HttpError::malformed("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(HttpError::malformed("more than one Transfer-Encoding header"));
            }
            transfer_encoding = Some(h.value);
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = h.value;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                conn_close |= token.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            let essence = h.value.split(|&b| b == b';').next().unwrap_or_default();
            let essence = essence.trim_ascii();
            form_body = essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded");
            json_body = essence.eq_ignore_ascii_case(b"application/json")
                || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json"));
        } else if name.eq_ignore_ascii_case("expect") {
            if !h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                return Err(HttpError::new(ErrorKind::NotImplemented, "only Expect: 100-continue is supported"));
            }
            expect_continue = version == 1;
        } else if name.eq_ignore_ascii_case("last-event-id") {
            let value = h.value.trim_ascii();
            let kept = if value.len() <= 64 { String::from_utf8_lossy(value).into_owned() } else { String::new() };
            last_event_id = Some(kept);
        } else if name.eq_ignore_ascii_case("upgrade") {
            websocket |= h.value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"));
        }
    }
    if hosts > 1 || (version == 1 && hosts == 0) {
        return Err(HttpError::malformed("an HTTP/1.1 request needs exactly one Host header"));
    }
    if hosts == 1 && !valid_host(host.trim_ascii()) {
        return Err(HttpError::malformed("the Host header is not a valid host[:port]"));
    }
    if let Some(authority) = authority
        && !valid_host(authority.as_bytes())
    {
        return Err(HttpError::malformed("the request target's authority is not a valid host[:port]"));
    }

    let body = match (content_length, transfer_encoding) {
        (Some(_), Some(_)) => {
            return Err(HttpError::malformed("Content-Length together with Transfer-Encoding"));
        }
        (Some(n), None) if n > limits.max_body => {
            return Err(HttpError::new(
                ErrorKind::BodyTooLarge,
                format!("body of {n} bytes exceeds the limit of {} bytes", limits.max_body),
            ));
        }
        (Some(0), None) | (None, None) => Body::Empty,
        (Some(n), None) => Body::Length(n),
        (None, Some(te)) => {
            if version == 0 {
                return Err(HttpError::malformed("Transfer-Encoding in an HTTP/1.0 request"));
            }
            if !te.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::new(ErrorKind::NotImplemented, "only the chunked transfer coding is supported"));
            }
            Body::Chunked(ChunkedDecoder::default())
        }
    };

    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (&*target, ""),
    };
    if !raw_path.starts_with('/') {
        return Err(HttpError::malformed("request target must be a path starting with /"));
    }
    let path = super::params::decode_component(raw_path.as_bytes(), false)
        .map_err(|e| HttpError::malformed(format!("path: {e}")))?;

    let keep_alive = match version {
        1 => !conn_close,
        _ => conn_keep_alive && !conn_close,
    };
    Ok(Some(Head {
        method: method.to_owned(),
        path,
        query: query.to_owned(),
        version,
        keep_alive,
        form_body,
        expect_continue,
        last_event_id,
        websocket,
        json_body,
        raw_headers: buf
            .get(buf.iter().position(|&b| b == b'\n').map_or(len, |i| i + 1)..len)
            .unwrap_or_default()
            .to_vec(),
        len,
        body,
    }))
}

/// The methods of RFC 9110 and PATCH: others are 501, not 405 (405 says
/// the route does not take a method the server knows).
const KNOWN_METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

fn target_too_long(limits: &Limits) -> HttpError {
    HttpError::new(ErrorKind::TargetTooLong, format!("request target exceeds the limit of {} bytes", limits.max_head))
}

/// httparse refuses every version but 1.0 and 1.1 alike: a well-formed
/// `HTTP/DIGIT.DIGIT` we do not speak is 505, anything else is malformed.
fn version_error(buf: &[u8]) -> HttpError {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            HttpError::new(ErrorKind::Version, "only HTTP/1.0 and HTTP/1.1 are supported")
        }
        _ => HttpError::malformed("malformed request: the version is not HTTP/DIGIT.DIGIT"),
    }
}

/// `http://authority/path?query` -> (authority, `/path?query`); `None` for
/// origin-form. Only the http and https schemes are served.
fn split_absolute_form(target: &str) -> Result<Option<(&str, Cow<'_, str>)>, HttpError> {
    if target.starts_with('/') || target == "*" {
        return Ok(None);
    }
    let Some((scheme, rest)) = target.split_once("://") else { return Ok(None) };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(HttpError::malformed(format!("unsupported scheme {scheme:?} in the request target")));
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(HttpError::malformed("the request target has an empty authority"));
    }
    // `http://h?q` has an empty path: it means `/?q` (RFC 9112 section 3.2.1).
    let path = if path.starts_with('/') { Cow::Borrowed(path) } else { Cow::Owned(format!("/{path}")) };
    Ok(Some((authority, path)))
}

/// `uri-host [ ":" port ]` (RFC 9110 section 7.2): a reg-name (letters,
/// digits, `-._~`, `%` escapes and the sub-delimiters but the comma, which
/// would make a list of it), an IPv4 address, or a bracketed IP literal;
/// the port is digits, possibly none (`port = *DIGIT`). No userinfo, path,
/// or whitespace. Empty is allowed (a target without an authority).
fn valid_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    let (host_ok, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else { return false };
        let literal = &rest[..close];
        let ok = !literal.is_empty() && literal.iter().all(|&b| b.is_ascii_hexdigit() || b":.".contains(&b));
        match &rest[close + 1..] {
            [] => (ok, None),
            [b':', port @ ..] => (ok, Some(port)),
            _ => return false,
        }
    } else {
        let (host, port) = match value.iter().rposition(|&b| b == b':') {
            Some(i) => (&value[..i], Some(&value[i + 1..])),
            None => (value, None),
        };
        let ok = !host.is_empty() && host.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+;=".contains(&b));
        (ok, port)
    };
    host_ok && port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit))
}

fn head_too_large(limits: &Limits) -> HttpError {
    HttpError::new(ErrorKind::HeadTooLarge, format!("request head exceeds the limit of {} bytes", limits.max_head))
}

/// `Content-Length` is 1*DIGIT: no sign, no spaces inside, no list.
fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::malformed("invalid Content-Length"));
    }
    Ok(value.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name (whitespace before a colon, or obs-fold?)",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

impl Body {
    /// Collects the body from `buf` (the bytes after the head). Returns the
    /// body and how many bytes of `buf` it took, or `None` while incomplete.
    pub fn collect(&mut self, buf: &[u8], max_body: usize) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
        match self {
            Body::Empty => Ok(Some((Vec::new(), 0))),
            Body::Length(n) => Ok((buf.len() >= *n).then(|| (buf[..*n].to_vec(), *n))),
            Body::Chunked(decoder) => decoder.feed(buf, max_body),
        }
    }
}

/// The longest chunk-size line (size and extensions) we wait for.
const MAX_CHUNK_LINE: usize = 1024;

/// One `chunk-size *chunk-ext CRLF` line (RFC 9112 section 7.1), strictly:
/// hex digits, then extensions `;name[=value]` with optional whitespace
/// before `;` and around `=`, then CRLF. Returns (bytes used, size), or
/// `None` while the line is incomplete. httparse's chunk parser is lenient
/// (trailing whitespace, an empty size, a bare `;`), and leniency in
/// framing is how requests get smuggled.
fn parse_chunk_line(buf: &[u8]) -> Result<Option<(usize, usize)>, HttpError> {
    let bad = |why: &str| Err(HttpError::malformed(format!("invalid chunk size line: {why}")));
    let Some(eol) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_CHUNK_LINE { bad("too long") } else { Ok(None) };
    };
    if eol > MAX_CHUNK_LINE {
        return bad("too long");
    }
    let Some(line) = buf[..eol].strip_suffix(b"\r") else { return bad("not ended by CRLF") };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return bad("no size");
    }
    let mut size: usize = 0;
    for &d in &line[..digits] {
        let v = (d as char).to_digit(16).expect("a hex digit") as usize;
        size = match size.checked_mul(16).and_then(|n| n.checked_add(v)) {
            Some(n) => n,
            None => return bad("size too large"),
        };
    }
    let mut rest = &line[digits..];
    let ws = |r: &[u8]| r.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    while !rest.is_empty() {
        rest = &rest[ws(rest)..];
        let Some(after) = rest.strip_prefix(b";") else { return bad("unexpected bytes after the size") };
        rest = &after[ws(after)..];
        let name = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 {
            return bad("an extension without a name");
        }
        rest = &rest[name..];
        let w = ws(rest);
        if rest[w..].starts_with(b"=") {
            rest = &rest[w + 1..];
            rest = &rest[ws(rest)..];
            let value = if rest.starts_with(b"\"") {
                quoted_len(rest)
            } else {
                rest.iter().take_while(|&&b| is_tchar(b)).count()
            };
            if value == 0 {
                return bad("an extension without a value after =");
            }
            rest = &rest[value..];
        }
    }
    Ok(Some((eol + 1, size)))
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The length of the quoted-string at the start of `s` (quotes included),
/// or 0 if it is not one.
fn quoted_len(s: &[u8]) -> usize {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return i + 1,
            b'\\' if i + 1 < s.len() && (s[i + 1] == b'\t' || (0x20..0x7f).contains(&s[i + 1]) || s[i + 1] >= 0x80) => {
                i += 2
            }
            b'\t' | 0x20..=0x7e | 0x80..=0xff => i += 1,
            _ => return 0,
        }
    }
    0
}

/// An incremental decoder for `Transfer-Encoding: chunked`: each call
/// resumes where the previous one stopped, so a body trickling in byte by
/// byte costs linear time.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    /// Bytes of the raw body consumed so far.
    pos: usize,
    decoded: Vec<u8>,
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    Trailers,
}

impl ChunkedDecoder {
    fn feed(&mut self, buf: &[u8], max_body: usize) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
        loop {
            let rest = &buf[self.pos..];
            match self.state {
                ChunkState::Size => match parse_chunk_line(rest)? {
                    Some((used, size)) => {
                        self.pos += used;
                        if size > max_body.saturating_sub(self.decoded.len()) {
                            return Err(HttpError::new(
                                ErrorKind::BodyTooLarge,
                                format!("chunked body exceeds the limit of {max_body} bytes"),
                            ));
                        }
                        self.state = if size == 0 { ChunkState::Trailers } else { ChunkState::Data(size) };
                    }
                    None => return Ok(None),
                },
                ChunkState::Data(size) => {
                    if rest.len() < size {
                        return Ok(None);
                    }
                    self.decoded.extend_from_slice(&rest[..size]);
                    self.pos += size;
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(None);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(HttpError::malformed("chunk data not followed by CRLF"));
                    }
                    self.pos += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    // Trailer fields are read and ignored, line by line,
                    // until the empty line that ends the message.
                    let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if rest.len() > 8192 {
                            return Err(HttpError::malformed("trailer line too long"));
                        }
                        return Ok(None);
                    };
                    self.pos += eol + 2;
                    if eol == 0 {
                        return Ok(Some((std::mem::take(&mut self.decoded), self.pos)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
