//! The host side of the guest ABI (docs/ABI.md): the imports a guest may
//! call, the per-call context they act on, and decoding what a handler
//! returns. Guest memory is only ever read through bounds-checked slices.

use std::sync::Arc;

use wasmtime::{Caller, Engine, Linker, Memory};

use super::manifest::Kind;
use crate::config::Budgets;
use crate::engine::kv::Pending;
use crate::engine::presence::Presence;
use crate::sse;

pub use house_abi::status::*;
pub use house_abi::{ID_LINE_MAX, MAX_CHANNEL, MAX_RANDOM};

/// An event a handler published, framed once (without an id: the engine
/// gives it one), applied after the call.
#[derive(Debug)]
pub struct Publication {
    pub channel: String,
    /// Shared as is by every loop and host that has subscribers.
    pub frame: std::sync::Arc<[u8]>,
}

/// A call went over one of its budgets (`--guest-*`): the import traps with
/// this, and the engine counts it as a strike.
#[derive(Debug)]
pub struct OverBudget(pub String);

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OverBudget {}

/// A guest's memory is bounded by `--guest-memory-mb`: growing past it
/// traps with [`OverMemory`], which names the flag (wasmtime's own
/// `StoreLimits` says "forcing trap when growing memory to N bytes").
/// Tables keep their declared maximum; one instance per store.
pub struct MemoryLimit {
    pub max: usize,
}

/// What a call that outgrew `--guest-memory-mb` failed with.
#[derive(Debug)]
pub struct OverMemory {
    pub desired: usize,
    pub max: usize,
}

impl std::fmt::Display for OverMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "its memory would grow to {} KiB, over --guest-memory-mb {} ({} KiB)",
            self.desired / 1024,
            self.max / (1024 * 1024),
            self.max / 1024
        )
    }
}

impl std::error::Error for OverMemory {}

impl wasmtime::ResourceLimiter for MemoryLimit {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max {
            return Err(wasmtime::Error::new(OverMemory { desired, max: self.max }));
        }
        // Past the module's own declared maximum: `memory.grow` says -1, as
        // the spec has it.
        Ok(maximum.is_none_or(|m| desired <= m))
    }

    /// The system could not give what was allowed: a trap, not a -1 the
    /// guest may not expect.
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("the host could not grow its memory"))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|m| desired <= m))
    }

    fn instances(&self) -> usize {
        1
    }
}

fn over(what: String) -> wasmtime::Error {
    wasmtime::Error::new(OverBudget(what))
}

/// What one call may touch: collected here, applied by the loop only if the
/// call succeeds.
pub struct CallCtx {
    pub kind: Kind,
    pub memory: Option<Memory>,
    pub limits: MemoryLimit,
    pub budgets: Budgets,
    /// `--sse-buffer-bytes`: an event larger than this could never reach a
    /// subscriber, so publishing one fails.
    pub sse_buffer: usize,
    pub subscriptions: Vec<String>,
    /// Events of history the stream opens with (`backlog`).
    pub backlog: usize,
    pub publishes: Vec<Publication>,
    /// Framed bytes of `publishes`.
    pub published_bytes: usize,
    pub logs: Vec<String>,
    /// Epoch ticks the call has run for (its CPU deadline counts these).
    pub ticks: u64,
    /// The call's key-value operations, committed if it succeeds (None:
    /// no store, every operation is `KV_UNAVAILABLE`).
    pub kv: Option<Pending>,
    /// What `kv_get`, `kv_list` or `presence` found, for `kv_read`.
    pub stash: Vec<u8>,
    /// (channel, info) of `subscribe_as`: the stream's memberships.
    pub members: Vec<(String, String)>,
    /// Who is in which channel.
    pub presence: Option<Arc<Presence>>,
    /// The instance's chunk size as a shift, where its module records what
    /// it writes (`guests::dirty`; 0: not recorded), and the chunks the
    /// host wrote into during the call.
    pub chunk_shift: u32,
    pub written: u64,
}

impl CallCtx {
    /// `len` bytes at `ptr` of the instance's memory were written by the
    /// host: their chunks are restored with the ones the guest wrote.
    pub fn wrote(&mut self, ptr: u32, len: usize) {
        let shift = self.chunk_shift;
        if shift == 0 || len == 0 {
            return;
        }
        let last = (u64::from(ptr) + len as u64 - 1) >> shift;
        for chunk in u64::from(ptr >> shift)..=last.min(63) {
            self.written |= 1 << chunk;
        }
    }

    pub fn new(kind: Kind, limits: MemoryLimit, budgets: Budgets, sse_buffer: usize) -> CallCtx {
        CallCtx {
            kind,
            memory: None,
            limits,
            budgets,
            sse_buffer,
            subscriptions: Vec::new(),
            backlog: 0,
            publishes: Vec::new(),
            published_bytes: 0,
            logs: Vec::new(),
            ticks: 0,
            kv: None,
            stash: Vec::new(),
            members: Vec::new(),
            presence: None,
            chunk_shift: 0,
            written: 0,
        }
    }
}

/// A linker with the imports that never wait (`linker` adds the others).
pub fn sync_imports(engine: &Engine) -> anyhow::Result<Linker<CallCtx>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap("house", "subscribe", |mut caller: Caller<'_, CallCtx>, ptr: u32, len: u32| {
        let channel = read_str(&mut caller, ptr, len)?;
        if caller.data().kind != Kind::Stream {
            return Ok(NOT_A_STREAM);
        }
        if !valid_channel(&channel) {
            return Ok(BAD_CHANNEL);
        }
        let subs = &mut caller.data_mut().subscriptions;
        if !subs.contains(&channel) {
            subs.push(channel);
        }
        Ok(OK)
    })?;
    linker.func_wrap(
        "house",
        "subscribe_as",
        |mut caller: Caller<'_, CallCtx>, ptr: u32, len: u32, info: u32, info_len: u32| {
            let channel = read_str(&mut caller, ptr, len)?;
            let info = read_str(&mut caller, info, info_len)?;
            if caller.data().kind != Kind::Stream {
                return Ok(NOT_A_STREAM);
            }
            if !valid_channel(&channel) {
                return Ok(BAD_CHANNEL);
            }
            let max = caller.data().presence.as_ref().map_or(0, |p| p.limits().info_bytes);
            if info.len() > max || info.contains(['\r', '\n', '\0']) {
                return Ok(PRESENCE_INFO);
            }
            let ctx = caller.data_mut();
            if !ctx.subscriptions.contains(&channel) {
                ctx.subscriptions.push(channel.clone());
            }
            if !ctx.members.iter().any(|(c, _)| *c == channel) {
                ctx.members.push((channel, info));
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap("house", "backlog", |mut caller: Caller<'_, CallCtx>, count: i32| {
        if caller.data().kind != Kind::Stream {
            return Ok(NOT_A_STREAM);
        }
        // What history keeps bounds what a backlog can hold.
        let ctx = caller.data_mut();
        ctx.backlog = ctx.backlog.max(count.max(0) as usize);
        Ok(OK)
    })?;
    linker.func_wrap(
        "house",
        "publish",
        |mut caller: Caller<'_, CallCtx>,
         channel: u32,
         channel_len: u32,
         data: u32,
         data_len: u32,
         event: u32,
         event_len: u32,
         id: u32,
         id_len: u32,
         retry: i64| {
            let budgets = caller.data().budgets;
            if caller.data().publishes.len() >= budgets.publish_events {
                return Err(over(format!(
                    "published more than {} events (--guest-publish-events)",
                    budgets.publish_events
                )));
            }
            // Framed, an event is at least as long as its data: refuse
            // before reading (or framing) what can only go over.
            let published = caller.data().published_bytes;
            if published.saturating_add(data_len as usize) > budgets.publish_bytes {
                return Err(over(format!(
                    "published more than {} bytes (--guest-publish-bytes)",
                    budgets.publish_bytes
                )));
            }
            let channel = read_str(&mut caller, channel, channel_len)?;
            if !valid_channel(&channel) {
                return Ok(BAD_CHANNEL);
            }
            let ev = sse::Event {
                data: read_str(&mut caller, data, data_len)?,
                event: Some(read_str(&mut caller, event, event_len)?).filter(|s| !s.is_empty()),
                id: Some(read_str(&mut caller, id, id_len)?).filter(|s| !s.is_empty()),
                retry: u32::try_from(retry).ok(),
            };
            let fields = [("event", &ev.event), ("id", &ev.id)];
            if fields.iter().any(|(name, v)| v.as_deref().is_some_and(|v| sse::check_field(name, v).is_err())) {
                return Ok(BAD_FIELD);
            }
            // The engine gives every event its id (docs/ABI.md: a guest's
            // own would break resuming), so the guest's goes, and the
            // length counts the longest id the engine adds.
            let ev = sse::Event { id: None, ..ev };
            let len = sse::framed_len(&ev) + ID_LINE_MAX;
            let sse_buffer = caller.data().sse_buffer;
            if len > sse_buffer {
                return Err(wasmtime::format_err!(
                    "published an event of {len} bytes framed with its id, which can never fit a subscriber's buffer \
                     (--sse-buffer-bytes {sse_buffer})"
                ));
            }
            if published + len > budgets.publish_bytes {
                return Err(over(format!(
                    "published more than {} bytes (--guest-publish-bytes)",
                    budgets.publish_bytes
                )));
            }
            let frame = sse::frame(&ev).into();
            let ctx = caller.data_mut();
            ctx.published_bytes += len;
            ctx.publishes.push(Publication { channel, frame });
            Ok(OK)
        },
    )?;
    linker.func_wrap("house", "random", |mut caller: Caller<'_, CallCtx>, ptr: u32, len: u32| {
        if len as usize > MAX_RANDOM {
            return Ok(KV_TOO_LARGE);
        }
        let mut bytes = vec![0u8; len as usize];
        if crate::random::fill(&mut bytes).is_err() {
            return Ok(KV_UNAVAILABLE);
        }
        write_bytes(&mut caller, ptr, &bytes)?;
        Ok(OK)
    })?;
    linker.func_wrap("house", "log", |mut caller: Caller<'_, CallCtx>, ptr: u32, len: u32| {
        let budgets = caller.data().budgets;
        if caller.data().logs.len() >= budgets.log_lines {
            return Err(over(format!("logged more than {} lines (--guest-log-lines)", budgets.log_lines)));
        }
        if len as usize > budgets.log_line_bytes {
            return Err(over(format!(
                "logged a line of {len} bytes, over {} (--guest-log-line-bytes)",
                budgets.log_line_bytes
            )));
        }
        let line = read_str(&mut caller, ptr, len)?;
        caller.data_mut().logs.push(line.replace(['\r', '\n'], " "));
        Ok(())
    })?;
    Ok(linker)
}

/// Reads `len` bytes at `ptr` in the caller's memory; traps on a bad range.
pub(super) fn read_bytes(caller: &mut Caller<'_, CallCtx>, ptr: u32, len: u32) -> wasmtime::Result<Vec<u8>> {
    let memory =
        caller.data().memory.ok_or_else(|| wasmtime::format_err!("house import called before the handler ran"))?;
    Ok(slice(memory.data(&*caller), ptr, len)?.to_vec())
}

/// Writes `bytes` at `ptr` in the caller's memory; traps on a bad range.
pub(super) fn write_bytes(caller: &mut Caller<'_, CallCtx>, ptr: u32, bytes: &[u8]) -> wasmtime::Result<()> {
    let memory =
        caller.data().memory.ok_or_else(|| wasmtime::format_err!("house import called before the handler ran"))?;
    let data = memory.data_mut(&mut *caller);
    let start = ptr as usize;
    let end = start.checked_add(bytes.len()).ok_or_else(|| wasmtime::format_err!("pointer overflow"))?;
    let len = data.len();
    let dst = data
        .get_mut(start..end)
        .ok_or_else(|| wasmtime::format_err!("guest pointer {start}..{end} is outside its memory of {len} bytes"))?;
    dst.copy_from_slice(bytes);
    caller.data_mut().wrote(ptr, bytes.len());
    Ok(())
}

/// Any string is a channel name (the empty one included), up to a length.
pub(super) fn valid_channel(channel: &str) -> bool {
    channel.len() <= MAX_CHANNEL
}

/// Reads `len` bytes of UTF-8 at `ptr` in the caller's memory; traps (with a
/// reason) on a bad range or bad UTF-8.
pub(super) fn read_str(caller: &mut Caller<'_, CallCtx>, ptr: u32, len: u32) -> wasmtime::Result<String> {
    let memory =
        caller.data().memory.ok_or_else(|| wasmtime::format_err!("house import called before the handler ran"))?;
    let bytes = slice(memory.data(&*caller), ptr, len)?;
    Ok(std::str::from_utf8(bytes).map_err(|_| wasmtime::format_err!("guest passed invalid UTF-8"))?.to_owned())
}

/// `memory[ptr..ptr + len]`, checked.
pub fn slice(memory: &[u8], ptr: u32, len: u32) -> wasmtime::Result<&[u8]> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or_else(|| wasmtime::format_err!("pointer overflow"))?;
    memory.get(start..end).ok_or_else(|| {
        wasmtime::format_err!("guest pointer {start}..{end} is outside its memory of {} bytes", memory.len())
    })
}

/// A handler's response, decoded from its response block.
#[derive(Debug)]
pub struct GuestResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Decodes the response block (docs/ABI.md, "Response block"), refusing
/// what the host must not send (the rules are the ABI crate's).
pub fn decode_response(block: &[u8]) -> Result<GuestResponse, String> {
    let r = house_abi::wire::decode_response(block)?;
    Ok(GuestResponse {
        status: r.status,
        content_type: r.content_type.map(str::to_owned),
        headers: r.headers.into_iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect(),
        body: r.body.to_vec(),
    })
}
