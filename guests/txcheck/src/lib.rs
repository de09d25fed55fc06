//! The consistency checker's guest (`tests/consistency.rs`): each handler
//! is one small transaction whose answer says what it read, so that the
//! checker can rebuild the history and look for anomalies. Lists are
//! comma-separated integers in `l:KEY`; counters are `c:KEY`.
//!
//! A store error is answered 503: a 5xx commits nothing.

use house_sdk::prelude::*;

fn unavailable(e: kv::KvError) -> Response {
    Response::error(503, e)
}

/// `POST /append?key=a&value=17`: reads the list, appends, writes it back
/// (a read-modify-write, not an atomic append); answers the list it read.
#[handler(closing, methods(POST), content_type = "text/plain; charset=utf-8")]
fn append(#[param(chars(min = 1, max = 16))] key: &str, #[param(range(min = 0))] value: i64) -> Response {
    let k = format!("l:{key}");
    let before = match kv::get_string(&k) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return unavailable(e),
    };
    let after = if before.is_empty() { value.to_string() } else { format!("{before},{value}") };
    match kv::set(&k, after.as_bytes()) {
        Ok(()) => Response::new(before),
        Err(e) => unavailable(e),
    }
}

/// `GET /read?keys=a,b`: each list, one line each (`a=1,2`).
#[handler(closing, methods(GET), content_type = "text/plain; charset=utf-8")]
fn read(#[param(chars(min = 1, max = 200))] keys: &str) -> Response {
    let mut out = String::new();
    for key in keys.split(',') {
        match kv::get_string(&format!("l:{key}")) {
            Ok(v) => out.push_str(&format!("{key}={}\n", v.unwrap_or_default())),
            Err(e) => return unavailable(e),
        }
    }
    Response::new(out)
}

/// `POST /bump?key=c`: a counter by get and set (no increment import);
/// answers the value it wrote.
#[handler(closing, methods(POST), content_type = "text/plain; charset=utf-8")]
fn bump(#[param(chars(min = 1, max = 16))] key: &str) -> Response {
    add_one(&format!("c:{key}"))
}

/// Counter `k` plus one, by get and set; answers the value written.
fn add_one(k: &str) -> Response {
    let n = match kv::get_string(k) {
        Ok(v) => v.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0) + 1,
        Err(e) => return unavailable(e),
    };
    match kv::set(k, n.to_string().as_bytes()) {
        Ok(()) => Response::new(n.to_string()),
        Err(e) => unavailable(e),
    }
}

/// `GET /counter?key=c`: the counter's value.
#[handler(closing, methods(GET), content_type = "text/plain; charset=utf-8")]
fn counter(#[param(chars(min = 1, max = 16))] key: &str) -> Response {
    match kv::get_string(&format!("c:{key}")) {
        Ok(v) => Response::new(v.unwrap_or_else(|| "0".into())),
        Err(e) => unavailable(e),
    }
}

/// `POST /id`: the next id from `kv_incr`.
#[handler(closing, methods(POST), content_type = "text/plain; charset=utf-8")]
fn id() -> Response {
    match kv::incr("ids", 1) {
        Ok(n) => Response::new(n.to_string()),
        Err(e) => unavailable(e),
    }
}

/// `POST /say?channel=c&tag=t`: publishes `t` to `c`.
#[handler(closing, methods(POST), content_type = "text/plain; charset=utf-8")]
fn say(#[param(chars(min = 1, max = 32))] channel: &str, #[param(chars(min = 1, max = 64))] tag: &str) -> Response {
    match publish(channel, tag) {
        Ok(()) => Response::new("said"),
        Err(e) => Response::error(500, e),
    }
}

/// `GET /listen?channel=c`: a stream of `c`.
#[handler(stream)]
fn listen(#[param(chars(min = 1, max = 32))] channel: &str) -> Result<(), HostError> {
    subscribe(channel)
}

/// `GET /spread?keys=N`: a read-modify-write (get, then set) of one of N
/// counters (`c:sK`, K picked at random), answering its new value: the
/// bench's write per request; `keys=1` is one hot key.
#[handler(closing, methods(GET), content_type = "text/plain; charset=utf-8")]
fn spread(#[param(range(min = 1, max = 1_000_000_000))] keys: i64) -> Response {
    match pick(keys) {
        Ok(i) => add_one(&format!("c:s{i}")),
        Err(e) => unavailable(e),
    }
}

/// `GET /plain?keys=N`: what `spread` answers, without key-value data (the
/// bench's baseline: the same guest, the same parameter, no store).
#[handler(closing, methods(GET), content_type = "text/plain; charset=utf-8")]
fn plain(#[param(range(min = 1, max = 1_000_000_000))] keys: i64) -> Response {
    match pick(keys) {
        Ok(i) => Response::new(i.to_string()),
        Err(e) => unavailable(e),
    }
}

/// A number below `keys`, at random (the host's CSPRNG).
fn pick(keys: i64) -> Result<u64, kv::KvError> {
    let mut bytes = [0u8; 8];
    kv::random(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes) % keys as u64)
}
