//! Framing one HTTP/1.x request out of a connection's read buffer.
//!
//! The head is parsed with httparse once it is complete; the body is then
//! collected by `Content-Length` or by the chunked decoder, across as many
//! reads as it takes. Everything that could let two parties disagree about
//! where a request ends (duplicate lengths, a length next to a transfer
//! coding, obs-fold, whitespace before a colon) is refused here, so that a
//! smuggled request is never processed.

use std::mem::MaybeUninit;

use super::error::{ErrorKind, HttpError};
use crate::config::Limits;

/// The most headers `--max-headers` may allow; the storage for them lives on
/// the stack of `parse_head`.
pub const MAX_HEADERS_CAP: usize = 256;

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
    pub expect_continue: bool,
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
        Err(httparse::Error::Version) => {
            return Err(HttpError::new(ErrorKind::Version, "only HTTP/1.0 and HTTP/1.1 are supported"));
        }
        Err(e) => {
            return Err(HttpError::malformed(format!("malformed request: {}", describe(e))));
        }
    };
    if len > limits.max_head {
        return Err(head_too_large(limits));
    }
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    let version = req.version.unwrap_or(1);

    let mut content_length: Option<usize> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut form_body = false;
    let mut expect_continue = false;
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
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                conn_close |= token.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            let essence = h.value.split(|&b| b == b';').next().unwrap_or_default();
            form_body = essence.trim_ascii().eq_ignore_ascii_case(b"application/x-www-form-urlencoded");
        } else if name.eq_ignore_ascii_case("expect") {
            if !h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                return Err(HttpError::new(ErrorKind::NotImplemented, "only Expect: 100-continue is supported"));
            }
            expect_continue = version == 1;
        }
    }
    if version == 1 && hosts != 1 {
        return Err(HttpError::malformed("an HTTP/1.1 request needs exactly one Host header"));
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
        None => (target, ""),
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
        len,
        body,
    }))
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
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.pos += used;
                        let size = usize::try_from(size).unwrap_or(usize::MAX);
                        if size > max_body.saturating_sub(self.decoded.len()) {
                            return Err(HttpError::new(
                                ErrorKind::BodyTooLarge,
                                format!("chunked body exceeds the limit of {max_body} bytes"),
                            ));
                        }
                        self.state = if size == 0 { ChunkState::Trailers } else { ChunkState::Data(size) };
                    }
                    Ok(httparse::Status::Partial) if rest.len() < 1024 => return Ok(None),
                    _ => return Err(HttpError::malformed("invalid chunk size line")),
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
