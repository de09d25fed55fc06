//! An SSE client over a plain socket: reads the response head, then events
//! one at a time, as raw text (so framing can be checked byte for byte).

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

pub struct Subscriber {
    pub stream: TcpStream,
    /// The response head, as text.
    pub head: String,
    buf: Vec<u8>,
}

impl Subscriber {
    /// Opens `GET target` on `stream` and reads the response head.
    pub fn open(stream: TcpStream, target: &str) -> Subscriber {
        Subscriber::open_with(stream, target, &[])
    }

    /// [`Subscriber::open`] with extra request headers (`Last-Event-ID`).
    pub fn open_with(stream: TcpStream, target: &str, headers: &[(&str, &str)]) -> Subscriber {
        Subscriber::try_open_with(stream, target, headers).expect("a response head")
    }

    /// [`Subscriber::open_with`], or None if the connection ends before a
    /// response head (a server shutting down, say).
    pub fn try_open_with(mut stream: TcpStream, target: &str, headers: &[(&str, &str)]) -> Option<Subscriber> {
        use std::io::Write;
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra}\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut s = Subscriber { stream, head: String::new(), buf: Vec::new() };
        let end = s.read_until(b"\r\n\r\n")?;
        s.head = String::from_utf8(s.buf.drain(..end).collect()).unwrap();
        Some(s)
    }

    /// Reads until `marker` is buffered; returns the index just past it.
    fn read_until(&mut self, marker: &[u8]) -> Option<usize> {
        loop {
            if let Some(i) = self.buf.windows(marker.len()).position(|w| w == marker) {
                return Some(i + marker.len());
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// The next event (or comment block), raw, including its blank line.
    pub fn next_raw(&mut self) -> Option<String> {
        let end = self.read_until(b"\n\n")?;
        Some(String::from_utf8(self.buf.drain(..end).collect()).expect("UTF-8 events"))
    }

    /// The next event's data (its `data:` lines joined by `\n`), skipping comments.
    pub fn next_data(&mut self) -> Option<String> {
        loop {
            let raw = self.next_raw()?;
            let data: Vec<&str> = raw.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            if !data.is_empty() {
                return Some(data.join("\n"));
            }
        }
    }

    pub fn set_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }
}
