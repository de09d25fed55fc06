//! The smallest useful guest: a greeting with a validated name, and a JSON
//! counter that shows integer parameters with a range and a default.

use house_sdk::prelude::*;

/// `/hello?name=Ada` -> `Hello, Ada!`
#[handler(closing, content_type = "text/plain; charset=utf-8")]
fn hello(#[param(chars(min = 1, max = 40), default = "world")] name: &str) -> String {
    format!("Hello, {name}!\n")
}

/// `/count?from=3&to=6` -> `{"from":3,"to":6,"total":18}`
#[handler(closing, methods(GET))]
fn count(
    #[param(range(min = -1000, max = 1000))] from: i64,
    #[param(range(min = -1000, max = 1000), default = 10)] to: i64,
) -> Response {
    if from > to {
        return Response::error(422, format!("from ({from}) is after to ({to})"));
    }
    let total: i64 = (from..=to).sum();
    Response::json(json::Object::new().int("from", from).int("to", to).int("total", total).build())
}

/// `/visits?page=home` -> `{"page":"home","visits":N}`: a counter kept in
/// the host's key-value store, exact however many clients count at once.
#[handler(closing)]
fn visits(#[param(chars(min = 1, max = 32))] page: Keyword) -> Result<Response, kv::KvError> {
    let n = kv::incr(&format!("visits:{}", page.0), 1)?;
    Ok(Response::json(json::Object::new().str("page", page.0).int("visits", n).build()))
}

/// `/note?key=k&text=..` sets a note (`ttl_ms` > 0: for that long),
/// `/note?key=k` reads it, `/note?key=k&delete=true` removes it;
/// `/note?fail=true` sets one and then fails (a 500), `trap=true` sets one
/// and then traps: either must leave nothing.
#[handler(closing, content_type = "text/plain; charset=utf-8")]
fn note(
    #[param(chars(min = 1, max = 600))] key: &str,
    #[param(default = "", chars(max = 70000))] text: &str,
    #[param(default = 0, range(min = 0))] ttl_ms: i64,
    #[param(default = false)] delete: bool,
    #[param(default = false)] fail: bool,
    #[param(default = false)] trap: bool,
) -> Response {
    let result = if delete {
        kv::delete(key).map(|()| "deleted".into())
    } else if !text.is_empty() {
        let set = if ttl_ms > 0 { kv::set_with_ttl(key, text.as_bytes(), ttl_ms as u64) } else { kv::set(key, text.as_bytes()) };
        set.map(|()| "set".into())
    } else {
        kv::get_string(key).map(|v| v.unwrap_or_else(|| "(none)".into()))
    };
    match (result, fail) {
        (Ok(_), _) if trap => panic!("trapped on purpose, after writing"),
        (Ok(_), true) => Response::error(500, "failed on purpose, after writing"),
        (Ok(said), false) => Response::new(format!("{said}\n")),
        (Err(e @ kv::KvError::Unavailable), _) => Response::error(503, e),
        (Err(e), _) => Response::error(507, e),
    }
}

/// `/notes?prefix=a` -> the keys starting with it, one per line.
#[handler(closing, content_type = "text/plain; charset=utf-8")]
fn notes(#[param(default = "", chars(max = 64))] prefix: &str, #[param(default = 100, range(min = 0, max = 10000))] limit: i64) -> Result<String, kv::KvError> {
    let keys = kv::list(prefix, limit as u32)?;
    Ok(keys.iter().map(|k| format!("{k}\n")).collect())
}
