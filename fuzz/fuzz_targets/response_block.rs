//! A handler's response block (docs/ABI.md, "Response block"), as a guest
//! writes it: well formed from arbitrary parts, then possibly cut short or
//! with bytes changed, at an arbitrary place in its memory. The host's own
//! path: the bounds check on (pointer, length), the decoder, the HTTP
//! writer. Nothing may panic; a block the decoder takes comes out as one
//! well-formed HTTP response with exactly its status and headers (no
//! header a guest smuggles in with a line break), and a well-formed block
//! of acceptable parts is taken whole.

#![no_main]

use arbitrary::Arbitrary;
use house_host::guests::abi::{decode_response, slice};
use house_host::http::response::{Framing, Response, write};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    status: u16,
    content_type: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Keep only this many bytes of the block.
    cut: Option<u16>,
    /// Bytes to change: (where, xor).
    flips: Vec<(u16, u8)>,
    /// Where the guest says the block is: (pointer, length) into a memory
    /// of `memory` bytes holding the block at `at`.
    at: u16,
    memory: u16,
    claim: Option<(u32, u32)>,
}

fuzz_target!(|input: Input| {
    let headers: Vec<(&str, &str)> = input.headers.iter().take(40).map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mut block =
        house_abi::wire::encode_response(input.status, &input.content_type, headers.iter().copied(), &input.body);
    let pristine = input.cut.is_none() && input.flips.is_empty();
    if let Some(cut) = input.cut {
        block.truncate(usize::from(cut));
    }
    for &(i, x) in &input.flips {
        if let Some(b) = block.get_mut(usize::from(i)) {
            *b ^= x;
        }
    }
    // The block in a guest's memory, and the (pointer, length) it returns.
    let at = usize::from(input.at);
    let mut memory = vec![0u8; usize::from(input.memory).max(at + block.len())];
    memory[at..at + block.len()].copy_from_slice(&block);
    let (ptr, len) = input.claim.unwrap_or((at as u32, block.len() as u32));
    let Ok(seen) = slice(&memory, ptr, len) else { return };
    assert!(ptr as usize + seen.len() <= memory.len() && seen.len() == len as usize);
    let whole = pristine && (ptr, len) == (at as u32, block.len() as u32);
    let acceptable = (input.status == 0 || (200..=599).contains(&input.status))
        && !input.content_type.bytes().any(|b| b.is_ascii_control())
        && headers.iter().all(|(n, v)| {
            house_abi::is_token(n)
                && !v.bytes().any(|b| b.is_ascii_control() && b != b'\t')
                && !house_abi::RESERVED_HEADERS.iter().any(|h| n.eq_ignore_ascii_case(h))
        });
    let decoded = match decode_response(seen) {
        Ok(d) => d,
        Err(e) => {
            assert!(!(whole && acceptable), "a well-formed block of acceptable parts was refused: {e}");
            return;
        }
    };
    if whole {
        assert!(acceptable, "a block with a part the host must not send was taken: {input:?}");
        assert_eq!(decoded.status, if input.status == 0 { 200 } else { input.status });
        assert_eq!(decoded.body, input.body);
        assert_eq!(decoded.headers.len(), headers.len());
    }
    // The host writes it as the HTTP response.
    let content_type = decoded.content_type.as_deref().unwrap_or("text/html; charset=utf-8");
    let resp = Response { status: decoded.status, content_type, headers: &decoded.headers, body: &decoded.body };
    let mut out = Vec::new();
    write(&mut out, &resp, Framing { version: 1, keep_alive: true, head_only: false }, "Thu, 01 Jan 2026 00:00:00 GMT");
    let mut parsed = [httparse::EMPTY_HEADER; 128];
    let mut r = httparse::Response::new(&mut parsed);
    let head = match r.parse(&out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => {
            panic!("the host wrote a response httparse cannot read ({other:?}): {:?}", String::from_utf8_lossy(&out))
        }
    };
    assert_eq!(r.code, Some(decoded.status));
    // Exactly the guest's headers besides the host's own: none smuggled
    // in with a line break, none of the host's overridden.
    let guest: Vec<&httparse::Header<'_>> = r
        .headers
        .iter()
        .filter(|h| !house_abi::RESERVED_HEADERS.iter().any(|own| h.name.eq_ignore_ascii_case(own)))
        .collect();
    assert_eq!(guest.len(), decoded.headers.len(), "{:?}", String::from_utf8_lossy(&out));
    for (h, (name, value)) in guest.iter().zip(&decoded.headers) {
        let ows = |c: &u8| *c == b' ' || *c == b'\t';
        let trim = |v: &[u8]| -> Vec<u8> {
            let start = v.iter().position(|c| !ows(c)).unwrap_or(v.len());
            let end = v.iter().rposition(|c| !ows(c)).map_or(start, |e| e + 1);
            v[start..end].to_vec()
        };
        assert!(h.name == name && trim(h.value) == trim(value.as_bytes()), "{:?}", String::from_utf8_lossy(&out));
    }
    if !matches!(decoded.status, 204 | 304) {
        assert_eq!(&out[head..], &decoded.body[..], "the body follows the head, whole");
    }
});
