//! RFC 6455 framing, as a server speaks it: a decoder of the client's
//! frames (masked, no extensions) into whole messages, and the encoder of
//! the server's (unmasked). Every protocol violation is a close code and a
//! short reason, never a panic: 1002 for a malformed frame, 1007 for text
//! that is not UTF-8, 1009 for a message over the limit.
//!
//! Hand-written rather than `tungstenite`: the loop owns its sockets and
//! buffers (mio, no blocking `Read`/`Write` streams), and the decoder works
//! on the connection's own input buffer in place; the whole protocol is
//! this file.

use std::fmt;

/// A close code (RFC 6455 7.4.1).
pub mod code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away (the server shuts down, or an idle connection ends).
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// A data type the endpoint cannot take (binary, here).
    pub const UNSUPPORTED: u16 = 1003;
    /// Text that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A policy violation (a message refused by the host's rules).
    pub const POLICY: u16 = 1008;
    /// A message over `--ws-max-message-bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// The server failed.
    pub const INTERNAL: u16 = 1011;
}

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Why the connection must close: the code to send and a short reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

fn violation<T>(code: u16, reason: &'static str) -> Result<T, Violation> {
    Err(Violation { code, reason })
}

/// What the client sent, once whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (UTF-8, checked).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping: answer with a pong of the same payload.
    Ping(Vec<u8>),
    /// A pong (unsolicited ones are allowed and ignored).
    Pong(Vec<u8>),
    /// A close: its code (none if the frame had no payload) and reason.
    Close(Option<u16>, String),
}

/// Reassembles the client's frames into messages.
pub struct Decoder {
    /// `--ws-max-message-bytes`.
    max_message: usize,
    /// A fragmented data message in progress: its opcode and bytes so far.
    partial: Option<(Opcode, Vec<u8>)>,
    /// How many bytes of `partial` are known to be valid UTF-8 (text).
    checked: usize,
}

/// A frame's header, parsed.
struct Header {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    /// Bytes of the header.
    len: usize,
    payload: usize,
}

impl Decoder {
    pub fn new(max_message: usize) -> Decoder {
        Decoder { max_message, partial: None, checked: 0 }
    }

    /// Decodes frames from `buf[*consumed..]`, advancing `consumed` past
    /// each whole frame it takes: a message (or a control frame) once one
    /// is whole, `None` when more bytes are needed, or the violation to
    /// close with.
    pub fn next(&mut self, buf: &[u8], consumed: &mut usize) -> Result<Option<Message>, Violation> {
        loop {
            let rest = &buf[*consumed..];
            let Some(h) = self.header(rest)? else { return Ok(None) };
            let Some(end) = h.len.checked_add(h.payload).filter(|&end| end <= rest.len()) else { return Ok(None) };
            let mut payload = rest[h.len..end].to_vec();
            unmask(&mut payload, h.mask);
            *consumed += end;
            if let Some(message) = self.frame(h.fin, h.opcode, payload)? {
                return Ok(Some(message));
            }
        }
    }

    fn header(&self, b: &[u8]) -> Result<Option<Header>, Violation> {
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        if b[0] & 0x70 != 0 {
            return violation(code::PROTOCOL, "reserved bits set (no extension was agreed)");
        }
        let Some(opcode) = Opcode::from_bits(b[0] & 0x0F) else {
            return violation(code::PROTOCOL, "unknown opcode");
        };
        if b[1] & 0x80 == 0 {
            return violation(code::PROTOCOL, "a client frame must be masked");
        }
        let (payload, mut len) = match b[1] & 0x7F {
            126 => {
                let Some(n) = b.get(2..4) else { return Ok(None) };
                (u64::from(u16::from_be_bytes([n[0], n[1]])), 4)
            }
            127 => {
                let Some(n) = b.get(2..10) else { return Ok(None) };
                let n = u64::from_be_bytes(n.try_into().expect("8 bytes"));
                if n >> 63 != 0 {
                    return violation(code::PROTOCOL, "payload length with its top bit set");
                }
                (n, 10)
            }
            n => (u64::from(n), 2),
        };
        if opcode.is_control() {
            if !fin {
                return violation(code::PROTOCOL, "a fragmented control frame");
            }
            if payload > 125 {
                return violation(code::PROTOCOL, "a control frame over 125 bytes");
            }
        }
        // Refused before its bytes arrive: the limit bounds the buffer.
        let so_far = self.partial.as_ref().map_or(0, |(_, p)| p.len()) as u64;
        if !opcode.is_control() && so_far.saturating_add(payload) > self.max_message as u64 {
            return violation(code::TOO_BIG, "message over the size limit");
        }
        let Some(mask) = b.get(len..len + 4) else { return Ok(None) };
        let mask = mask.try_into().expect("4 bytes");
        len += 4;
        Ok(Some(Header { fin, opcode, mask, len, payload: payload as usize }))
    }

    fn frame(&mut self, fin: bool, opcode: Opcode, payload: Vec<u8>) -> Result<Option<Message>, Violation> {
        match opcode {
            Opcode::Ping => Ok(Some(Message::Ping(payload))),
            Opcode::Pong => Ok(Some(Message::Pong(payload))),
            Opcode::Close => close(&payload).map(|(code, reason)| Some(Message::Close(code, reason))),
            Opcode::Text | Opcode::Binary => {
                if self.partial.is_some() {
                    return violation(code::PROTOCOL, "a new message before the last one ended");
                }
                self.partial = Some((opcode, payload));
                self.checked = 0;
                self.progress(fin)
            }
            Opcode::Continuation => {
                let Some((_, so_far)) = self.partial.as_mut() else {
                    return violation(code::PROTOCOL, "a continuation without a message");
                };
                so_far.extend_from_slice(&payload);
                self.progress(fin)
            }
        }
    }

    /// Checks the text so far (failing fast, as a fragment arrives) and
    /// hands over the message when it is whole.
    fn progress(&mut self, fin: bool) -> Result<Option<Message>, Violation> {
        let (opcode, bytes) = self.partial.as_ref().expect("a message in progress");
        if *opcode == Opcode::Text {
            match std::str::from_utf8(&bytes[self.checked..]) {
                Ok(_) => self.checked = bytes.len(),
                // An incomplete sequence at the end may be finished by the
                // next fragment; anything else is not UTF-8.
                Err(e) if e.error_len().is_none() && !fin => self.checked += e.valid_up_to(),
                Err(_) => return violation(code::INVALID_DATA, "text that is not UTF-8"),
            }
        }
        if !fin {
            return Ok(None);
        }
        let (opcode, bytes) = self.partial.take().expect("a message in progress");
        Ok(Some(match opcode {
            Opcode::Text => Message::Text(String::from_utf8(bytes).expect("checked above")),
            _ => Message::Binary(bytes),
        }))
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A close frame's code and reason (RFC 6455 5.5.1, 7.4).
fn close(payload: &[u8]) -> Result<(Option<u16>, String), Violation> {
    match payload {
        [] => Ok((None, String::new())),
        [_] => violation(code::PROTOCOL, "a close payload of one byte"),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let known = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !known {
                return violation(code::PROTOCOL, "a close code that may not be sent");
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| Violation { code: code::INVALID_DATA, reason: "a close reason that is not UTF-8" })?;
            Ok((Some(code), reason.to_owned()))
        }
    }
}

/// Appends a server frame (unmasked, final) to `out`.
pub fn encode(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    out.push(0x80 | opcode.bits());
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to fit 125 bytes,
/// at a character boundary).
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(out, Opcode::Close, &payload);
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
