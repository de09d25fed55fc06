//! What a WebSocket client sends, as arbitrary bytes: the decoder takes
//! them whole and in arbitrary pieces (as reads deliver them). Nothing may
//! panic; it never consumes more than it was given; every message is within
//! `--ws-max-message-bytes`, text is UTF-8, a control payload is at most 125
//! bytes; and the pieces change nothing (the same messages, the same
//! violation).

#![no_main]

use house_host::websocket::frame::{Decoder, Message, Violation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, step, bytes @ ..] = data else { return };
    let max = 1 + usize::from(u16::from_le_bytes([*a, *b])) % 4096;
    let whole = decode(max, &[bytes]);
    let pieces: Vec<&[u8]> = bytes.chunks(1 + usize::from(*step)).collect();
    assert_eq!(whole, decode(max, &pieces), "the pieces changed what was decoded");
});

fn decode(max: usize, pieces: &[&[u8]]) -> (Vec<Message>, Option<Violation>) {
    let mut decoder = Decoder::new(max);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let mut consumed = 0;
            let next = decoder.next(&buf, &mut consumed);
            assert!(consumed <= buf.len());
            buf.drain(..consumed);
            match next {
                Ok(Some(message)) => {
                    match &message {
                        Message::Text(text) => assert!(text.len() <= max),
                        Message::Binary(bytes) => assert!(bytes.len() <= max),
                        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
                        Message::Close(_, reason) => assert!(reason.len() <= 123),
                    }
                    out.push(message);
                }
                Ok(None) => break,
                Err(violation) => return (out, Some(violation)),
            }
        }
    }
    (out, None)
}
