//! The SSE floor: a bare mio fan-out server. `GET /subscribe` opens a stream
//! (head + one event); `POST /publish` frames one fixed event once and
//! queues it on every subscriber, writing directly and copying into a
//! subscriber's buffer only when its socket would block. Prints
//! `listening on ADDR` when ready.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const SERVER: Token = Token(usize::MAX);
const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n\r\ndata: Listening...\n\n";
const EVENT: &[u8] = b"data: {\"name\":\"bench\",\"message\":\"hello, everyone\"}\n\n";
const PUBLISHED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsent\n";

struct Conn {
    socket: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    subscriber: bool,
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let mut listener = TcpListener::bind(addr.parse().expect("an address"))?;
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, SERVER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut subscribers: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, None)?;
        for event in events.iter() {
            if event.token() == SERVER {
                loop {
                    match listener.accept() {
                        Ok((mut socket, _)) => {
                            next += 1;
                            poll.registry().register(
                                &mut socket,
                                Token(next),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            let _ = socket.set_nodelay(true);
                            conns.insert(next, Conn { socket, rbuf: Vec::new(), wbuf: Vec::new(), subscriber: false });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => eprintln!("accept: {e}"),
                    }
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(&key) else { continue };
            let mut publish = false;
            let ok = read_and_answer(conn, &mut scratch, &mut publish).and_then(|()| flush(conn));
            if conn.subscriber && !subscribers.contains(&key) && ok.is_ok() {
                subscribers.push(key);
            }
            if ok.is_err() {
                conns.remove(&key);
                subscribers.retain(|k| *k != key);
            }
            if publish {
                subscribers.retain(|k| match conns.get_mut(k) {
                    Some(sub) => queue(sub, EVENT).is_ok(),
                    None => false,
                });
            }
        }
    }
}

fn read_and_answer(conn: &mut Conn, scratch: &mut [u8], publish: &mut bool) -> std::io::Result<()> {
    loop {
        match conn.socket.read(scratch) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(_) if conn.subscriber => {} // a subscriber has nothing more to say
            Ok(n) => conn.rbuf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    let mut used = 0;
    while !conn.subscriber {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let n = match req.parse(&conn.rbuf[used..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => break,
            Err(_) => return Err(ErrorKind::InvalidData.into()),
        };
        let len: usize = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
            .unwrap_or(0);
        if conn.rbuf.len() < used + n + len {
            break;
        }
        used += n + len;
        if req.path.is_some_and(|p| p.starts_with("/subscribe")) {
            conn.subscriber = true;
            queue(conn, SSE_HEAD)?;
        } else {
            *publish = true;
            queue(conn, PUBLISHED)?;
        }
    }
    conn.rbuf.drain(..used);
    Ok(())
}

/// Writes directly; copies into the buffer only what the socket refuses.
fn queue(conn: &mut Conn, bytes: &[u8]) -> std::io::Result<()> {
    if !conn.wbuf.is_empty() {
        conn.wbuf.extend_from_slice(bytes);
        return Ok(());
    }
    let mut sent = 0;
    while sent < bytes.len() {
        match conn.socket.write(&bytes[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    conn.wbuf.extend_from_slice(&bytes[sent..]);
    Ok(())
}

fn flush(conn: &mut Conn) -> std::io::Result<()> {
    while !conn.wbuf.is_empty() {
        match conn.socket.write(&conn.wbuf) {
            Ok(n) => {
                conn.wbuf.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
