//! Request framing: heads, bodies (length and chunked), limits, and the
//! errors each bad input gets.

use super::*;
use crate::config::Config;

fn limits() -> Limits {
    Config::default().limits
}

fn head(req: &str) -> Result<Option<Head>, HttpError> {
    parse_head(req.as_bytes(), &limits())
}

fn status(req: &str) -> u16 {
    match head(req) {
        Ok(Some(_)) => 200,
        Ok(None) => 0,
        Err(e) => e.status(),
    }
}

/// A whole request: its head and body, or the status of its error.
fn framed(req: &[u8]) -> Result<(Head, Vec<u8>), u16> {
    let l = limits();
    let mut h = parse_head(req, &l).map_err(|e| e.status())?.ok_or(0u16)?;
    let (body, _) = h.body.collect(&req[h.len..], l.max_body).map_err(|e| e.status())?.ok_or(0u16)?;
    Ok((h, body))
}

#[test]
fn origin_form_splits_path_and_query() {
    let h = head("GET /a%20b?x=1&y HTTP/1.1\r\nHost: example.com:8080\r\n\r\n").unwrap().unwrap();
    assert_eq!((h.method.as_str(), h.path.as_str(), h.query.as_str(), h.version), ("GET", "/a b", "x=1&y", 1));
    assert!(h.keep_alive);
    assert!(head("GET / HTTP/1.1\r\nHost: t\r\n").unwrap().is_none(), "incomplete");
}

#[test]
fn absolute_form_is_accepted_and_its_authority_checked() {
    let h = head("GET http://example.com:80/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n").unwrap().unwrap();
    assert_eq!((h.path.as_str(), h.query.as_str()), ("/p", "q=1"));
    let h = head("GET HTTPS://example.com?q HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
    assert_eq!((h.path.as_str(), h.query.as_str()), ("/", "q"));
    let h = head("GET http://example.com HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert_eq!(h.path, "/");
    for bad in ["http://user@h/p", "http:///p", "ftp://h/p", "http://h:8x/p", "http://h,i/p"] {
        assert_eq!(status(&format!("GET {bad} HTTP/1.1\r\nHost: h\r\n\r\n")), 400, "{bad}");
    }
}

#[test]
fn host_must_be_one_valid_host_and_port() {
    for good in
        ["t", "example.com", "example.com:8080", "127.0.0.1:1", "[::1]:4242", "[::1]", "xn--bcher-kva.de", "", "h:"]
    {
        assert_eq!(status(&format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n")), 200, "{good:?}");
    }
    for bad in ["a,b", "user@h", "h/p", "h:80x", "h :80", "[::1", "[zz]", "h:123456", ":80", "a b"] {
        assert_eq!(status(&format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n")), 400, "{bad:?}");
    }
    assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400, "missing");
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400, "repeated");
    assert_eq!(status("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400, "repeated in 1.0 too");
    assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 200, "1.0 needs none");
}

#[test]
fn versions_methods_and_targets() {
    assert_eq!(status("GET / HTTP/2.0\r\nHost: t\r\n\r\n"), 505);
    assert_eq!(status("GET / HTTP/1.2\r\nHost: t\r\n\r\n"), 505);
    for bad in ["HTTP/1", "HTTP/1.10", "HTTP/x.1", "http/1.1", "HTTP/1.1x", "FOO"] {
        assert_eq!(status(&format!("GET / {bad}\r\nHost: t\r\n\r\n")), 400, "{bad}");
    }
    assert_eq!(status("BREW / HTTP/1.1\r\nHost: t\r\n\r\n"), 501);
    for m in KNOWN_METHODS {
        assert_eq!(status(&format!("{m} / HTTP/1.1\r\nHost: t\r\n\r\n")), 200, "{m}");
    }
    assert_eq!(status("GET /a#frag HTTP/1.1\r\nHost: t\r\n\r\n"), 400);
    let raw = b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_eq!(parse_head(raw, &limits()).map(|_| 200).unwrap_or_else(|e| e.status()), 400);
}

#[test]
fn a_target_over_the_limit_is_414_and_a_head_431() {
    let l = Limits { max_head: 100, ..limits() };
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(200));
    assert_eq!(parse_head(long.as_bytes(), &l).unwrap_err().status(), 414);
    assert_eq!(parse_head(&long.as_bytes()[..150], &l).unwrap_err().status(), 414, "incomplete");
    let big = format!("GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n", "a".repeat(200));
    assert_eq!(parse_head(big.as_bytes(), &l).unwrap_err().status(), 431);
    assert_eq!(parse_head(&big.as_bytes()[..150], &l).unwrap_err().status(), 431, "incomplete");
}

#[test]
fn lengths_and_codings() {
    let (h, body) = framed(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcdef").unwrap();
    assert_eq!((body.as_slice(), h.len), (&b"abc"[..], 47));
    assert_eq!(framed(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nab").unwrap_err(), 0, "waits");
    for bad in ["+3", "3 3", "-1", "0x3", "", "3,3"] {
        let req = format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {bad}\r\n\r\nabc");
        assert_eq!(framed(req.as_bytes()).unwrap_err(), 400, "{bad:?}");
    }
    let both = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(framed(both).unwrap_err(), 400);
    let gzip = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(framed(gzip).unwrap_err(), 501);
    let big = format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", limits().max_body + 1);
    assert_eq!(framed(big.as_bytes()).unwrap_err(), 413);
}

fn chunked(body: &str) -> Result<Vec<u8>, u16> {
    let req = format!("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
    framed(req.as_bytes()).map(|(_, b)| b)
}

#[test]
fn chunked_bodies_decode_with_extensions_and_trailers() {
    assert_eq!(chunked("3\r\nabc\r\n0\r\n\r\n").unwrap(), b"abc");
    assert_eq!(chunked("3;a=1;b\r\nabc\r\nA ; x = \"q \\\" s\"\r\n0123456789\r\n0\r\nT: v\r\n\r\n").unwrap().len(), 13);
    assert_eq!(chunked("003\r\nabc\r\n0\r\n\r\n").unwrap(), b"abc");
    assert_eq!(chunked("3\r\nabc\r\n0\r\n").unwrap_err(), 0, "waits for the trailer section's end");
    // Fed in pieces, the decoder resumes where it stopped.
    let whole = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;e\r\n!\r\n0\r\n\r\n";
    let mut h = parse_head(whole, &limits()).unwrap().unwrap();
    for end in h.len..whole.len() {
        assert!(h.body.collect(&whole[h.len..end], 1000).unwrap().is_none(), "complete early at {end}");
    }
    let (body, used) = h.body.collect(&whole[h.len..], 1000).unwrap().unwrap();
    assert_eq!((body.as_slice(), used), (&b"hello!"[..], whole.len() - h.len));
}

#[test]
fn chunk_lines_are_strict() {
    for bad in [
        "3 \r\nabc\r\n0\r\n\r\n",      // trailing whitespace
        "\r\nabc\r\n0\r\n\r\n",        // empty size
        "3;\r\nabc\r\n0\r\n\r\n",      // bare ;
        "3;=v\r\nabc\r\n0\r\n\r\n",    // extension without a name
        "3;a=\r\nabc\r\n0\r\n\r\n",    // = without a value
        "3;a b\r\nabc\r\n0\r\n\r\n",   // junk after a name
        "3\0\r\nabc\r\n0\r\n\r\n",     // NUL
        "3\nabc\r\n0\r\n\r\n",         // bare LF
        "zz\r\nabc\r\n0\r\n\r\n",      // not hex
        "3\r\nabcX\r\n0\r\n\r\n",      // data not followed by CRLF
        "fffffffffffffffffff\r\n\r\n", // overflow
    ] {
        assert_eq!(chunked(bad).unwrap_err(), 400, "{bad:?}");
    }
    assert_eq!(chunked(&format!("{:x}\r\n", limits().max_body + 1)).unwrap_err(), 413);
    assert_eq!(chunked(&format!("3;{}", "e".repeat(2000))).unwrap_err(), 400, "a line that never ends");
}
