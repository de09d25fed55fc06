//! The cost of the guest call alone: the chat's `send_message` called in a
//! fresh instance per request (the way house serves it), against the same
//! handler compiled into the host, both in this process with the request
//! already parsed, so that sockets and HTTP are out of the picture. Both
//! sides validate the same three parameters, build the same JSON and frame
//! the same SSE event.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use house_host::config::Config;
use house_host::guests::compile::Compiler;
use house_host::guests::loader::Loading;
use house_host::guests::{Runtime, registry::Registry, validate};
use house_host::router::{Lookup, Target};
use house_host::sse;

pub struct GuestCall {
    pub guest: Duration,
    pub native: Duration,
}

pub fn run(guests: &Path, iterations: u32) -> anyhow::Result<GuestCall> {
    // The same limits `house` runs with by default.
    let runtime = std::sync::Arc::new(Runtime::new(Config::default().guest, Config::default().limits.sse_buffer)?);
    let loading = Loading { cache: None, compiler: Compiler::InProcess, limits: Config::default().load };
    let mut registry = Registry::new(guests.to_owned(), loading);
    registry.load_all(&runtime);
    let router = registry.routes().router;
    let Lookup::Found(route, _) = router.lookup("/send-message", "GET") else { bail!("chat.wasm is not loaded") };
    let Target::Guest(handler) = &route.target else { bail!("/send-message is not a guest") };
    let mut params = validate::Inputs::default();
    params.params.extend_from_urlencoded(b"room=bench&name=ada&message=hello+there").map_err(anyhow::Error::msg)?;

    let guest = time(iterations, || {
        let args = validate::encode_args(&handler.spec.params, &params).map_err(|e| anyhow::anyhow!("{}", e.reason))?;
        let out = runtime.call(handler, &args).map_err(|f| anyhow::anyhow!("guest call: {f}"))?;
        Ok(out.publishes.len() + out.body.len())
    })?;
    let native = time(iterations, || {
        let args = validate::encode_args(&handler.spec.params, &params).map_err(|e| anyhow::anyhow!("{}", e.reason))?;
        Ok(native_send_message(&args))
    })?;
    Ok(GuestCall { guest, native })
}

/// Mean time per call of `f`, after a warm-up.
fn time(iterations: u32, mut f: impl FnMut() -> anyhow::Result<usize>) -> anyhow::Result<Duration> {
    let mut sink = 0;
    for _ in 0..iterations / 10 {
        sink += f()?;
    }
    let started = Instant::now();
    for _ in 0..iterations {
        sink += f()?;
    }
    std::hint::black_box(sink);
    Ok(started.elapsed() / iterations)
}

/// `send_message` compiled into the host: decode the three strings, build
/// `{"name":..,"message":..}`, frame it for the room.
fn native_send_message(args: &[u8]) -> usize {
    let mut pos = 0;
    let mut text = || {
        let len = u32::from_le_bytes(args[pos..pos + 4].try_into().unwrap()) as usize;
        let s = std::str::from_utf8(&args[pos + 4..pos + 4 + len]).unwrap();
        pos += 4 + len;
        s
    };
    let (room, name, message) = (text(), text(), text());
    let data = format!("{{\"name\":{},\"message\":{}}}", json_string(name), json_string(message));
    let frame = sse::frame(&sse::Event { data, ..Default::default() });
    std::hint::black_box((room.len(), &frame));
    frame.len() + "sent\n".len()
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
