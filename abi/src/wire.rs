//! The two blocks that cross the boundary (docs/ABI.md, "Arguments" and
//! "Response block"): little-endian fixed-width integers and u32-length-
//! prefixed bytes. The host writes arguments and reads responses; the SDK
//! does the opposite, with these same functions.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Appends a u32 (a length, a count, a status).
pub fn push_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

/// Appends length-prefixed bytes (text, a body).
pub fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    push_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// Appends an `integer`.
pub fn push_i64(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(&n.to_le_bytes());
}

/// Appends a `float`.
pub fn push_f64(out: &mut Vec<u8>, x: f64) {
    out.extend_from_slice(&x.to_le_bytes());
}

/// Appends a `boolean` (one byte, 0 or 1).
pub fn push_bool(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

/// Reads a block written with the `push_*` functions; every read is
/// bounds-checked.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The block ended before a value did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndsEarly;

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Whether every byte has been read.
    pub fn is_done(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EndsEarly> {
        let end = self.pos.checked_add(n).ok_or(EndsEarly)?;
        let bytes = self.buf.get(self.pos..end).ok_or(EndsEarly)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EndsEarly> {
        self.take(N)?.try_into().map_err(|_| EndsEarly)
    }

    /// A u32.
    pub fn u32(&mut self) -> Result<u32, EndsEarly> {
        self.array().map(u32::from_le_bytes)
    }

    /// An i64.
    pub fn i64(&mut self) -> Result<i64, EndsEarly> {
        self.array().map(i64::from_le_bytes)
    }

    /// An f64.
    pub fn f64(&mut self) -> Result<f64, EndsEarly> {
        self.array().map(f64::from_le_bytes)
    }

    /// A boolean byte.
    pub fn bool(&mut self) -> Result<bool, EndsEarly> {
        Ok(self.take(1)?[0] != 0)
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], EndsEarly> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Encodes a response block: status (0 means 200), content type (empty:
/// the handler's), headers, body.
pub fn encode_response<'h>(
    status: u16,
    content_type: &str,
    headers: impl ExactSizeIterator<Item = (&'h str, &'h str)>,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + content_type.len() + 16 + 32 * headers.len());
    push_u32(&mut out, u32::from(status));
    push_bytes(&mut out, content_type.as_bytes());
    push_u32(&mut out, headers.len() as u32);
    for (name, value) in headers {
        push_bytes(&mut out, name.as_bytes());
        push_bytes(&mut out, value.as_bytes());
    }
    push_bytes(&mut out, body);
    out
}

fn text<'a>(r: &mut Reader<'a>, what: &str) -> Result<&'a str, String> {
    let b = r.bytes().map_err(|_| String::from("response block ends early"))?;
    core::str::from_utf8(b).map_err(|_| format!("{what} is not UTF-8"))
}

/// A response block, decoded and checked; it borrows the block.
#[derive(Debug, PartialEq)]
pub struct ResponseParts<'a> {
    /// 200 to 599.
    pub status: u16,
    /// `None`: the handler's declared content type.
    pub content_type: Option<&'a str>,
    /// Extra headers, in order.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The body.
    pub body: &'a [u8],
}

/// Decodes a response block, refusing what the host must not send: a
/// status that is not final, control characters, a header name that is not
/// a token, a header the host sets itself, trailing bytes.
pub fn decode_response(block: &[u8]) -> Result<ResponseParts<'_>, String> {
    let early = |_| String::from("response block ends early");
    let mut r = Reader::new(block);
    let status = match r.u32().map_err(early)? {
        0 => 200,
        s @ 200..=599 => s as u16,
        s => return Err(format!("status {s} is not a final HTTP status")),
    };
    let content_type = Some(text(&mut r, "content type")?).filter(|s| !s.is_empty());
    if content_type.is_some_and(|ct| ct.bytes().any(|b| b.is_ascii_control())) {
        return Err("content type contains control characters".into());
    }
    let count = r.u32().map_err(early)?;
    let mut headers = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        let name = text(&mut r, "header name")?;
        let value = text(&mut r, "header value")?;
        if !crate::is_token(name) {
            return Err(format!("header name {name:?} is not a token"));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(format!("header {name} has control characters in its value"));
        }
        if crate::RESERVED_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            return Err(format!("header {name} is set by the host"));
        }
        headers.push((name, value));
    }
    let body = r.bytes().map_err(early)?;
    if !r.is_done() {
        return Err("trailing bytes after the response body".into());
    }
    Ok(ResponseParts { status, content_type, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(status: u16, ct: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        encode_response(status, ct, headers.iter().copied(), body)
    }

    #[test]
    fn decodes_what_it_encodes() {
        let b = block(302, "text/plain", &[("Location", "/x")], b"hi");
        let r = decode_response(&b).unwrap();
        assert_eq!(
            r,
            ResponseParts {
                status: 302,
                content_type: Some("text/plain"),
                headers: alloc::vec![("Location", "/x")],
                body: b"hi"
            }
        );
        assert_eq!(decode_response(&block(0, "", &[], b"")).unwrap().status, 200);
    }

    #[test]
    fn refuses_garbage() {
        assert!(decode_response(&block(99, "", &[], b"")).is_err());
        assert!(decode_response(&block(200, "", &[("Bad Name", "x")], b"")).is_err());
        assert!(decode_response(&block(200, "", &[("X", "a\r\nb")], b"")).is_err());
        assert!(decode_response(&block(200, "", &[("Content-Length", "1")], b"")).is_err());
        assert!(decode_response(&[1, 2, 3]).is_err());
        let mut long = block(200, "", &[], b"x");
        long.push(0);
        assert!(decode_response(&long).is_err());
    }

    #[test]
    fn reads_arguments() {
        let mut b = Vec::new();
        push_i64(&mut b, -3);
        push_f64(&mut b, 0.5);
        push_bool(&mut b, true);
        push_bytes(&mut b, b"room");
        let mut r = Reader::new(&b);
        assert_eq!((r.i64(), r.f64(), r.bool(), r.bytes()), (Ok(-3), Ok(0.5), Ok(true), Ok(&b"room"[..])));
        assert!(r.is_done());
        assert_eq!(r.u32(), Err(EndsEarly));
    }
}
