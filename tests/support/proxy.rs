//! A TCP proxy between house and Redis, for network faults Redis's own
//! signals cannot make: every connection cut at once (both ends see a
//! reset), a stall (connections stay open and carry nothing, as across a
//! partition), and a delay on every chunk. Threads of its own; traffic
//! stays on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    stalled: AtomicBool,
    delay_ms: AtomicU64,
    stopping: AtomicBool,
    /// Both sockets of every connection, to cut them.
    open: Mutex<Vec<TcpStream>>,
}

pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
}

impl Proxy {
    /// Listens on a free port and forwards each connection to `target`.
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                // Redis down: the client's connection just ends.
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { continue };
                {
                    let mut open = shared.open.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                let (a, b) = (shared.clone(), shared.clone());
                std::thread::spawn(move || pump(client, s2, &a));
                std::thread::spawn(move || pump(server, c2, &b));
            }
        });
        Proxy { port, state }
    }

    /// `redis://127.0.0.1:PORT`, through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every connection through the proxy ends now, both ends.
    pub fn cut(&self) {
        for s in self.state.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// While on, nothing goes through either way (connections stay open).
    pub fn stall(&self, on: bool) {
        self.state.stalled.store(on, Ordering::Relaxed);
    }

    /// Every chunk waits this long before it is passed on.
    pub fn delay(&self, d: Duration) {
        self.state.delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::Relaxed);
        self.stall(false);
        self.cut();
        // Wakes the accepting thread, which then sees `stopping`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` until either ends, holding chunks while stalled
/// and for the delay.
fn pump(mut from: TcpStream, mut to: TcpStream, state: &State) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while state.stalled.load(Ordering::Relaxed) && !state.stopping.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let delay = state.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
