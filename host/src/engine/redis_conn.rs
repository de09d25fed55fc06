//! Plain connections to the Redis of `--engine redis://`: the address, a
//! socket with keep-alive and timeouts, and command exchanges bounded by a
//! deadline.
//!
//! The `redis` crate encodes commands and parses replies; its synchronous
//! `Connection` is not used for exchanges: after one reply of a pipeline
//! times out it goes on to wait the full read timeout for every later
//! reply, so a hung Redis held a pipeline of n commands for n timeouts
//! (measured: 4 s for a stream's 4-command history read with a 1 s
//! timeout). Here a whole exchange has one deadline, `--engine-timeout-ms`
//! from its send.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use redis::{ConnectionAddr, RedisResult, Value};

/// Connecting gives up after this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is, and how to log in.
#[derive(Clone)]
pub struct Address {
    pub host: String,
    pub port: u16,
    /// User (if any) and password.
    pub auth: Option<(Option<String>, String)>,
    pub db: i64,
    /// The address without its password, for the log.
    pub shown: String,
}

impl Address {
    /// Parses `redis://[[USER]:PASSWORD@]HOST:PORT[/DB]`; refuses what house
    /// could never connect to (TLS, a Unix socket).
    pub fn parse(url: &str) -> anyhow::Result<Address> {
        let client = redis::Client::open(url).context("--engine")?;
        let info = client.get_connection_info();
        let ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
            bail!("--engine: only redis://HOST:PORT[/DB] (plain TCP) is supported");
        };
        let settings = info.redis_settings();
        let auth = settings.password().map(|p| (settings.username().map(str::to_owned), p.to_owned()));
        let db = settings.db();
        Ok(Address { shown: format!("redis://{host}:{port}/{db}"), host, port, auth, db })
    }

    /// A socket to Redis, logged in: keep-alive (a Redis host that vanished
    /// is noticed even when nothing is said), no Nagle, and `timeout` for
    /// every read and write.
    pub fn dial(&self, timeout: Duration) -> anyhow::Result<TcpStream> {
        let mut last = None;
        for addr in (self.host.as_str(), self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(mut stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(timeout))?;
                    stream.set_read_timeout(Some(timeout))?;
                    let keepalive = socket2::TcpKeepalive::new()
                        .with_time(Duration::from_secs(10))
                        .with_interval(Duration::from_secs(5))
                        .with_retries(3);
                    socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
                    if let Some((user, password)) = &self.auth {
                        let mut auth = redis::cmd("AUTH");
                        if let Some(user) = user {
                            auth.arg(user);
                        }
                        // Its reply is read by whoever reads next: the
                        // subscription's reader sees a refusal as an error.
                        stream.write_all(&auth.arg(password).get_packed_command())?;
                    }
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| anyhow::anyhow!("{} resolves to no address", self.host), Into::into))
    }
}

/// A connection for commands: each exchange (one command or a pipeline)
/// is answered in full within `timeout` of its send, or the connection is
/// to be dropped.
pub struct Conn {
    stream: TcpStream,
    parser: redis::Parser,
    timeout: Duration,
}

impl Conn {
    /// Connects, logs in and selects the database.
    pub fn open(address: &Address, timeout: Duration) -> anyhow::Result<Conn> {
        let stream = address.dial(timeout)?;
        let mut conn = Conn { stream, parser: redis::Parser::new(), timeout };
        if address.auth.is_some()
            && let Err(e) = conn.read_one(Instant::now() + timeout)?
        {
            bail!("Redis refused the password: {e}");
        }
        if address.db != 0 {
            conn.query(&redis::cmd("SELECT").arg(address.db).get_packed_command(), 1)?
                .pop()
                .context("no reply to SELECT")??;
        }
        Ok(conn)
    }

    /// Sends `packed` (`count` commands) and reads their replies, each an
    /// error of its own or a value; fails as a whole if they are not all
    /// there within the timeout, or the socket fails.
    pub fn query(&mut self, packed: &[u8], count: usize) -> anyhow::Result<Vec<RedisResult<Value>>> {
        let deadline = Instant::now() + self.timeout;
        self.stream.write_all(packed)?;
        (0..count).map(|_| self.read_one(deadline)).collect()
    }

    fn read_one(&mut self, deadline: Instant) -> anyhow::Result<RedisResult<Value>> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("Redis did not answer within {} ms (--engine-timeout-ms)", self.timeout.as_millis());
        }
        self.stream.set_read_timeout(Some(left))?;
        match self.parser.parse_value(&mut self.stream) {
            Ok(Value::ServerError(e)) => Ok(Err(e.into())),
            Ok(value) => Ok(Ok(value)),
            Err(e) if e.is_timeout() => {
                bail!("Redis did not answer within {} ms (--engine-timeout-ms)", self.timeout.as_millis())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One command's reply.
    pub fn command(&mut self, cmd: &redis::Cmd) -> anyhow::Result<Value> {
        let mut replies = self.query(&cmd.get_packed_command(), 1)?;
        Ok(replies.pop().context("no reply")??)
    }
}

/// Reconnection backoff, from the first retry to the last.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(1);

/// How long to wait before the next connection attempt (the engine's and
/// the key-value store's connections use one each).
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: FIRST_RETRY }
    }

    /// After a failed attempt: waits, twice as long each time up to a limit.
    pub(crate) fn wait(&mut self) {
        std::thread::sleep(self.next);
        self.next = (self.next * 2).min(LAST_RETRY);
    }

    /// After a connection that served since `since` broke. One that breaks
    /// at once (a refused AUTH on the subscription socket, a proxy that
    /// accepts and closes) backs off like a failed connect instead of
    /// becoming a busy loop; one that lasted retries at once.
    pub(crate) fn lost(&mut self, since: std::time::Instant) {
        if since.elapsed() >= LAST_RETRY {
            self.next = FIRST_RETRY;
        } else {
            self.wait();
        }
    }
}
