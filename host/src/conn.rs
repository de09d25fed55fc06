//! One connection's state: its socket, its read and write buffers, and where
//! it stands (serving requests, streaming events, or closing).
//!
//! Reads go through the event loop's shared scratch buffer and only the
//! bytes of an unfinished request are kept here, so an idle connection or an
//! SSE subscriber holds no buffer at all. Writes go straight to the socket;
//! only what the socket would not take is copied into the write buffer.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use crate::socket::{Peer, Socket};

use crate::config::Limits;
use crate::engine::history::EventId;
use crate::http::HttpError;
use crate::http::request::{self, Head};
use crate::http::response;
use crate::websocket::Session;
use crate::websocket::frame::{Message, Violation};

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading requests and answering them in order.
    Http,
    /// An SSE response is open; the host pushes events, reads are discarded.
    Stream,
    /// The last response is queued; close once it is written.
    Closing,
    /// Written and shut down for writing; reading what the client still sends
    /// until it closes or the deadline passes, so that a response sent before
    /// the request was fully read is not destroyed by a TCP reset.
    Lingering(Instant),
}

/// A stream whose start waits for the engine (the Redis engine answers a
/// resume after a round trip): nothing is written until then.
pub struct Opening {
    /// Its response head and first event.
    pub prelude: Vec<u8>,
    /// Live events that arrived meanwhile, in order, and their bytes
    /// (bounded like a subscriber's buffer).
    pub held: Vec<Held>,
    pub held_bytes: usize,
    /// (channel, info) it becomes a member of when it starts.
    pub members: Vec<(String, String)>,
}

/// A live event held for a stream that has not started: its channel, id
/// and frame.
pub type Held = (Arc<str>, Option<EventId>, Arc<[u8]>);

/// A complete request: its head and its body.
#[derive(Debug)]
pub struct Request {
    pub head: Head,
    pub body: Vec<u8>,
    /// When its first byte arrived.
    pub started: Instant,
}

pub struct Conn {
    /// Unique for the process's life (a slab key is reused, this is not):
    /// a guest call that ends after its connection closed finds out by it.
    pub id: u64,
    socket: Socket,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    pub phase: Phase,
    /// A parsed head waiting for its body.
    head: Option<Head>,
    continue_sent: bool,
    /// When the first byte of the request in progress arrived.
    pub request_started: Option<Instant>,
    /// The last time bytes moved either way.
    pub last_active: Instant,
    /// For streams: the last time anything was written (heartbeats).
    pub last_write: Instant,
    /// The peer closed its side (read returned 0).
    pub peer_closed: bool,
    /// The last read stopped at the buffer cap, not because the socket was
    /// drained: read again once requests are consumed, without a new event.
    pub read_stopped: bool,
    /// The channels a stream is subscribed to.
    pub channels: Vec<Arc<str>>,
    /// (channel, info) of those it is a member of (presence).
    pub members: Vec<(Arc<str>, Arc<str>)>,
    /// A stream waiting for the engine's answer before it starts.
    pub opening: Option<Box<Opening>>,
    /// Per channel, live events up to this id are skipped: the stream's
    /// replay accounted for them. Emptied as live events pass it.
    pub live_after: Vec<(Arc<str>, EventId)>,
    /// Responses were deferred this turn; the loop flushes before it polls.
    pub flush_due: bool,
    /// A guest call for this connection's current request is in flight:
    /// later requests wait (responses go out in order), and timers leave
    /// it alone (the call's own deadline bounds it).
    pub calling: bool,
    pub peer: Peer,
    /// It came in on the admin listener (`--admin-bind`): it may reach the
    /// host's own routes, and only those.
    pub admin: bool,
    /// A stream that is a WebSocket: its state (boxed: most connections
    /// are not one).
    pub ws: Option<Box<Session>>,
}

impl Conn {
    pub fn new(id: u64, socket: Socket, peer: Peer, now: Instant) -> Conn {
        Conn {
            id,
            socket,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            phase: Phase::Http,
            head: None,
            continue_sent: false,
            request_started: None,
            last_active: now,
            last_write: now,
            peer_closed: false,
            read_stopped: false,
            flush_due: false,
            calling: false,
            channels: Vec::new(),
            members: Vec::new(),
            opening: None,
            live_after: Vec::new(),
            peer,
            admin: false,
            ws: None,
        }
    }

    pub fn socket(&mut self) -> &mut Socket {
        &mut self.socket
    }

    /// Reads what the socket has, until it would block, the peer closes, or
    /// `cap` bytes of request are buffered (the rest stays in the kernel and
    /// is read once those are consumed: `read_stopped` says so).
    ///
    /// A read shorter than the buffer means the socket is drained, so no
    /// second read is spent to hear `WouldBlock` (data arriving later raises
    /// a new edge), unless the peer's FIN is known to be queued (`hup`): then
    /// reading goes on to the end of the stream.
    pub fn read(&mut self, scratch: &mut [u8], cap: usize, now: Instant, hup: bool) -> io::Result<usize> {
        let mut total = 0;
        self.read_stopped = false;
        loop {
            // An SSE stream's reads are discarded; a WebSocket's are its
            // client's frames.
            let keep = matches!(self.phase, Phase::Http) || (self.phase == Phase::Stream && self.ws.is_some());
            if keep && self.rbuf.len() >= cap {
                self.read_stopped = true;
                break;
            }
            match self.socket.read(scratch) {
                Ok(0) => {
                    self.peer_closed = true;
                    break;
                }
                Ok(n) => {
                    total += n;
                    if keep {
                        if self.rbuf.is_empty() && self.head.is_none() {
                            self.request_started = Some(now);
                        }
                        self.rbuf.extend_from_slice(&scratch[..n]);
                    }
                    if n < scratch.len() && !hup {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if total > 0 {
            self.last_active = now;
        }
        Ok(total)
    }

    /// Frames the next complete request out of the read buffer, if there is
    /// one. A framing error poisons the connection: the caller answers it and
    /// closes.
    pub fn next_request(&mut self, limits: &Limits, now: Instant) -> Result<Option<Request>, HttpError> {
        if self.head.is_none() {
            if self.rbuf.is_empty() {
                return Ok(None);
            }
            match request::parse_head(&self.rbuf, limits)? {
                Some(head) => self.head = Some(head),
                None => return Ok(None),
            }
            self.continue_sent = false;
        }
        let head = self.head.as_mut().expect("head parsed above");
        let Some((body, used)) = head.body.collect(&self.rbuf[head.len..], limits.max_body)? else {
            if head.expect_continue && !self.continue_sent {
                self.continue_sent = true;
                // A write error here surfaces at the next flush.
                let _ = self.queue(response::CONTINUE, now);
            }
            return Ok(None);
        };
        let head = self.head.take().expect("head parsed above");
        self.rbuf.drain(..head.len + used);
        let started = self.request_started.unwrap_or(now);
        self.request_started = (!self.rbuf.is_empty()).then_some(now);
        if self.rbuf.is_empty() && self.rbuf.capacity() > 64 * 1024 {
            self.rbuf = Vec::new();
        }
        Ok(Some(Request { head, body, started }))
    }

    /// Whether a request is partly read.
    pub fn mid_request(&self) -> bool {
        self.head.is_some() || !self.rbuf.is_empty()
    }

    /// Sends `bytes`, directly if nothing is waiting, buffering what the socket
    /// does not take.
    pub fn queue(&mut self, bytes: &[u8], now: Instant) -> io::Result<()> {
        let mut sent = 0;
        if self.wbuf.is_empty() {
            sent = write_some(&mut self.socket, bytes)?;
            if sent > 0 {
                self.last_active = now;
            }
        }
        self.wbuf.extend_from_slice(&bytes[sent..]);
        Ok(())
    }

    /// Appends `bytes` to the write buffer, to be written by the next
    /// [`Conn::flush`] (the loop flushes once per turn, see `event_loop`).
    pub fn defer(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Writes what the write buffer holds, as far as the socket takes it.
    /// Bytes leaving count as activity: a large response drained slowly by
    /// a client that keeps reading is not cut off as idle.
    pub fn flush(&mut self, now: Instant) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let sent = write_some(&mut self.socket, &self.wbuf[self.wpos..])?;
        if sent > 0 {
            self.last_active = now;
        }
        self.wpos += sent;
        if self.wpos == self.wbuf.len() {
            // Drained: give the memory back, so that an idle connection or
            // subscriber holds no buffer (a fresh one per response is cheap).
            self.wbuf = Vec::new();
            self.wpos = 0;
        } else if self.wpos >= self.wbuf.len() / 2 {
            // Mostly written: move the rest to the front, so that a reader
            // that is always slightly behind keeps a buffer of about what it
            // has not read (the cap bounds that), not of all it was ever sent.
            // Moving at half makes each byte move at most once on average.
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(())
    }

    /// Bytes the write buffer holds, written ones not yet reclaimed included.
    pub fn buffered(&self) -> usize {
        self.wbuf.len()
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Streams keep no read buffer: release what the request used. (A
    /// WebSocket keeps what followed its upgrade request: frames its client
    /// sent without waiting for the 101.)
    pub fn become_stream(&mut self) {
        self.phase = Phase::Stream;
        if self.ws.is_none() || self.rbuf.is_empty() {
            self.rbuf = Vec::new();
        }
        self.head = None;
        self.request_started = None;
    }

    /// The next whole message (or control frame) of a WebSocket's client,
    /// if its bytes are here; the violation to close with if its frames
    /// break the protocol.
    pub fn next_message(&mut self) -> Result<Option<Message>, Violation> {
        let Some(ws) = &mut self.ws else { return Ok(None) };
        let mut consumed = 0;
        let next = ws.decoder.next(&self.rbuf, &mut consumed);
        self.rbuf.drain(..consumed);
        // An idle socket holds no read buffer (one per read is cheap).
        if self.rbuf.is_empty() {
            self.rbuf = Vec::new();
        }
        next
    }
}

/// Writes as much of `bytes` as the socket takes without blocking.
fn write_some(socket: &mut Socket, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match socket.write(&bytes[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that is always slightly behind keeps a write buffer about
    /// the size of what it has not read, not of everything it was sent.
    #[test]
    fn the_write_buffer_compacts_for_a_reader_slightly_behind() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, addr) = listener.accept().unwrap();
        socket.set_nonblocking(true).unwrap();
        // Small fixed kernel buffers (no autotuning), so the lag is ours.
        socket2::SockRef::from(&socket).set_send_buffer_size(32 * 1024).unwrap();
        socket2::SockRef::from(&peer).set_recv_buffer_size(32 * 1024).unwrap();
        let now = Instant::now();
        let socket = Socket::Tcp(mio::net::TcpStream::from_std(socket));
        let mut conn = Conn::new(0, socket, Peer::Ip(addr), now);
        // Fill the kernel's buffers, so that the rest waits in ours.
        let chunk = vec![b'x'; 16 * 1024];
        while conn.pending() == 0 {
            conn.queue(&chunk, now).unwrap();
        }
        // Each round the reader takes a little less than it is sent.
        let mut read = vec![0u8; chunk.len() - 1024];
        for _ in 0..1000 {
            std::io::Read::read_exact(&mut peer, &mut read).unwrap();
            conn.queue(&chunk, now).unwrap();
            conn.flush(now).unwrap();
        }
        assert!(conn.pending() > 0, "the reader is behind");
        assert!(
            conn.buffered() <= 2 * conn.pending() + 2 * chunk.len(),
            "{} bytes buffered for {} pending",
            conn.buffered(),
            conn.pending()
        );
    }
}
