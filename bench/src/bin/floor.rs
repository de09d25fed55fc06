//! The floor of our own stack: a bare single-threaded mio + httparse server
//! answering every request with a fixed 200, keep-alive and pipelining
//! included. No routing, no parameters, no logging: what house costs above
//! this is what house adds. Prints `listening on ADDR` when ready.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const SERVER: Token = Token(usize::MAX);
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";

struct Conn {
    socket: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let mut listener = TcpListener::bind(addr.parse().expect("an address"))?;
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, SERVER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
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
                            conns.insert(next, Conn { socket, rbuf: Vec::new(), wbuf: Vec::new() });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => eprintln!("accept: {e}"),
                    }
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(&key) else { continue };
            if serve(conn, &mut scratch).is_err() {
                conns.remove(&key);
            }
        }
    }
}

/// Reads what there is, answers every complete request, writes what it can.
fn serve(conn: &mut Conn, scratch: &mut [u8]) -> std::io::Result<()> {
    loop {
        match conn.socket.read(scratch) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => conn.rbuf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    let mut used = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&conn.rbuf[used..]) {
            Ok(httparse::Status::Complete(n)) => {
                used += n;
                conn.wbuf.extend_from_slice(RESPONSE);
            }
            Ok(httparse::Status::Partial) => break,
            Err(_) => return Err(ErrorKind::InvalidData.into()),
        }
    }
    conn.rbuf.drain(..used);
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
