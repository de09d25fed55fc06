//! A WebSocket client for the tests, written to the byte so that a test can
//! send what a good client never would (unmasked frames, reserved bits,
//! bad UTF-8, fragments interleaved with control frames) and read exactly
//! what the server answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An opcode, as the wire has it.
pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// One frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// The RSV1-3 bits (a server must not set them without an extension).
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("a text frame is UTF-8")
    }

    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.opcode, TEXT, "{self:?}");
        serde_json::from_slice(&self.payload).expect("a JSON text frame")
    }

    /// A close frame's code (None: no payload).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, CLOSE, "a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A client connection after a successful upgrade.
pub struct Ws {
    pub stream: TcpStream,
    /// The response head (up to the blank line).
    pub head: String,
    buf: Vec<u8>,
}

/// The upgrade request for `target`, with `extra` header lines.
pub fn upgrade_request(target: &str, extra: &[(&str, &str)]) -> String {
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// A masked client frame.
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

impl Ws {
    /// Upgrades `stream` on `target`; panics unless the answer is a 101.
    pub fn open(stream: TcpStream, target: &str, extra: &[(&str, &str)]) -> Ws {
        let (status, ws) = Ws::try_open(stream, target, extra);
        assert_eq!(status, 101, "{}", ws.head);
        ws
    }

    /// Sends the upgrade and reads the response head: its status and the
    /// client (whose `head` is the whole head; for a refusal, the body
    /// follows in the stream).
    pub fn try_open(mut stream: TcpStream, target: &str, extra: &[(&str, &str)]) -> (u16, Ws) {
        stream.write_all(upgrade_request(target, extra).as_bytes()).unwrap();
        let ws = Ws::read_open(stream);
        let status = ws.head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, ws)
    }

    /// Reads the response head of an upgrade the caller sent.
    pub fn read_open(mut stream: TcpStream) -> Ws {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).expect("the response head");
            assert!(n > 0, "closed before the response head: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        Ws { stream, head, buf: buf[end..].to_vec() }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends one masked frame.
    pub fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(&frame(fin, 0, opcode, payload));
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(true, TEXT, text.as_bytes());
    }

    /// Sends a close frame with `code`.
    pub fn send_close(&mut self, code: u16) {
        self.send(true, CLOSE, &code.to_be_bytes());
    }

    /// The next frame, None if the server closed the connection first.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading a frame: {e}"),
            }
        }
    }

    /// The next frame that is not a ping (heartbeats may come any time).
    pub fn next_data(&mut self) -> Option<Frame> {
        loop {
            match self.next_frame() {
                Some(f) if f.opcode == PING => continue,
                other => return other,
            }
        }
    }

    /// The next text frame's JSON (skipping pings).
    pub fn next_json(&mut self) -> serde_json::Value {
        self.next_data().expect("a frame").json()
    }

    /// Expects a close frame with `code`, then the connection's end.
    pub fn expect_close(&mut self, code: u16) -> Frame {
        let frame = self.next_data().expect("a close frame");
        assert_eq!(frame.close_code(), Some(code), "{frame:?} ({:?})", String::from_utf8_lossy(&frame.payload));
        frame
    }

    /// Whether the server ends the connection (read returns 0 or a reset)
    /// within the read timeout, answering the close handshake.
    pub fn closed_by_server(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// One server frame at the start of `buf` (unmasked), and its length.
pub fn parse(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "a server frame is never masked");
    let (len, at) = match buf[1] & 0x7F {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((Frame { fin: buf[0] & 0x80 != 0, rsv: (buf[0] >> 4) & 7, opcode: buf[0] & 0xF, payload }, at + len))
}
