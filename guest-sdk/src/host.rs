//! The host imports as plain functions (docs/ABI.md, "Imports").
//!
//! Compiled for anything but wasm32 (unit tests, doctests), the imports are
//! replaced by a recorder, so handlers can be tested as ordinary Rust
//! functions: see [`crate::testing`].

use core::fmt;

/// Why the host refused a request from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// The channel name is longer than 256 bytes.
    BadChannel,
    /// An SSE `event` or `id` contains CR, LF or NUL.
    BadField,
    /// `subscribe` was called outside a stream handler.
    NotAStream,
    /// A member's info is over the host's `--presence-info-bytes`, or has
    /// CR, LF or NUL.
    PresenceInfo,
    /// A status this SDK does not know (a newer host?).
    Other(i32),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::BadChannel => f.write_str("channel name is longer than 256 bytes"),
            HostError::BadField => f.write_str("SSE event and id must not contain CR, LF or NUL"),
            HostError::NotAStream => f.write_str("only a stream handler can subscribe"),
            HostError::PresenceInfo => f.write_str("a member's info is too long, or has CR, LF or NUL"),
            HostError::Other(code) => write!(f, "host error {code}"),
        }
    }
}

fn status(code: i32) -> Result<(), HostError> {
    use house_abi::status::*;
    match code {
        OK => Ok(()),
        BAD_CHANNEL => Err(HostError::BadChannel),
        BAD_FIELD => Err(HostError::BadField),
        NOT_A_STREAM => Err(HostError::NotAStream),
        PRESENCE_INFO => Err(HostError::PresenceInfo),
        other => Err(HostError::Other(other)),
    }
}

/// An SSE event with its optional fields; [`publish`] sends data only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Event<'a> {
    /// The event's data (line breaks become several `data:` lines).
    pub data: &'a str,
    /// Its `event:` type (a browser's `addEventListener(type)`); no CR/LF.
    pub event: Option<&'a str>,
    /// Accepted and dropped: the host gives every event its own id.
    pub id: Option<&'a str>,
    /// Reconnection delay for the browser, in milliseconds.
    pub retry: Option<u32>,
}

/// Subscribes the current connection (a stream handler's) to `channel`.
/// Events published to it from now on are pushed to this client.
pub fn subscribe(channel: &str) -> Result<(), HostError> {
    status(imp::subscribe(channel))
}

/// [`subscribe`] as a member of `channel`'s presence under `info` (a name,
/// a user id: up to the host's `--presence-info-bytes`, 256 by default, no
/// line breaks) for as long as the connection stays. Members are counted
/// by info: a user with several tabs is one member, who joins with the
/// first and leaves with the last. The host announces changes on the
/// channel as events `join` and `leave` (data: the info), coalesced under
/// churn (a burst is one `presence` event with counts: ask [`presence`]
/// again).
pub fn subscribe_as(channel: &str, info: &str) -> Result<(), HostError> {
    status(imp::subscribe_as(channel, info))
}

/// The members of `channel` (their info, in byte order), at most `limit`,
/// across the host's loops and, on the Redis engine, every host.
pub fn presence(channel: &str, limit: u32) -> Result<alloc::vec::Vec<alloc::string::String>, HostError> {
    let n = imp::presence(channel, limit.min(i32::MAX as u32) as i32);
    if n < 0 {
        return status(n as i32).map(|()| alloc::vec::Vec::new());
    }
    let block = imp::stash(n);
    Ok(house_abi::kv::decode_list(&block, false)
        .into_iter()
        .map(|(info, _)| alloc::string::String::from_utf8_lossy(info).into_owned())
        .collect())
}

/// [`subscribe`], and opens the stream with (up to) the last `count` events
/// of its channels' history, oldest first, before live ones: a page that
/// joins a room sees what was said. History keeps a bounded number of
/// events per channel (the host's `--history-*` flags); a browser that
/// reconnects with `Last-Event-ID` is replayed what it missed instead.
pub fn subscribe_with_backlog(channel: &str, count: u32) -> Result<(), HostError> {
    subscribe(channel)?;
    status(imp::backlog(count))
}

/// Publishes `data` to every subscriber of `channel` (none: a no-op). Line
/// breaks in `data` are framed safely by the host. Published events are sent
/// when the handler returns successfully; a failing handler (a trap, an
/// overrun, an `Err` or any other 5xx) publishes nothing. A call may publish
/// a bounded number of events and bytes (the host's `--guest-publish-*`
/// flags): going over ends the call as a failure.
pub fn publish(channel: &str, data: &str) -> Result<(), HostError> {
    publish_event(channel, &Event { data, ..Event::default() })
}

/// [`publish`] with the SSE `event` and `retry` fields. The host gives
/// every event its own `id` (what resuming a stream relies on): an `id`
/// set here is checked, then replaced.
pub fn publish_event(channel: &str, event: &Event<'_>) -> Result<(), HostError> {
    status(imp::publish(channel, event))
}

/// Writes a line to the host's log, prefixed with the guest and handler.
pub fn log(message: &str) {
    imp::log(message)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Event;

    #[link(wasm_import_module = "house")]
    unsafe extern "C" {
        #[link_name = "subscribe"]
        fn house_subscribe(ptr: *const u8, len: usize) -> i32;
        #[link_name = "backlog"]
        fn house_backlog(count: i32) -> i32;
        #[link_name = "publish"]
        fn house_publish(
            channel: *const u8,
            channel_len: usize,
            data: *const u8,
            data_len: usize,
            event: *const u8,
            event_len: usize,
            id: *const u8,
            id_len: usize,
            retry: i64,
        ) -> i32;
        #[link_name = "log"]
        fn house_log(ptr: *const u8, len: usize);
        #[link_name = "subscribe_as"]
        fn house_subscribe_as(ptr: *const u8, len: usize, info: *const u8, info_len: usize) -> i32;
        #[link_name = "presence"]
        fn house_presence(ptr: *const u8, len: usize, limit: i32) -> i64;
        #[link_name = "kv_read"]
        fn house_kv_read(ptr: *mut u8, len: usize) -> i32;
    }

    pub fn subscribe_as(channel: &str, info: &str) -> i32 {
        // SAFETY: each (pointer, length) pair is a live &str.
        unsafe { house_subscribe_as(channel.as_ptr(), channel.len(), info.as_ptr(), info.len()) }
    }

    pub fn presence(channel: &str, limit: i32) -> i64 {
        // SAFETY: the host reads `len` bytes at `ptr`, which `channel` owns.
        unsafe { house_presence(channel.as_ptr(), channel.len(), limit) }
    }

    /// What the last `presence` found, `n` bytes (through `kv_read`).
    pub fn stash(n: i64) -> alloc::vec::Vec<u8> {
        let mut buf = alloc::vec![0u8; n as usize];
        // SAFETY: the host writes at most `buf.len()` bytes into `buf`.
        let got = unsafe { house_kv_read(buf.as_mut_ptr(), buf.len()) };
        buf.truncate(got.max(0) as usize);
        buf
    }

    pub fn subscribe(channel: &str) -> i32 {
        // SAFETY: the host reads `len` bytes at `ptr`, which `channel` owns.
        unsafe { house_subscribe(channel.as_ptr(), channel.len()) }
    }

    pub fn backlog(count: u32) -> i32 {
        // SAFETY: no pointers.
        unsafe { house_backlog(count.min(i32::MAX as u32) as i32) }
    }

    pub fn publish(channel: &str, ev: &Event<'_>) -> i32 {
        let event = ev.event.unwrap_or("");
        let id = ev.id.unwrap_or("");
        let retry = ev.retry.map_or(-1, i64::from);
        // SAFETY: each (pointer, length) pair is a live &str.
        unsafe {
            house_publish(
                channel.as_ptr(),
                channel.len(),
                ev.data.as_ptr(),
                ev.data.len(),
                event.as_ptr(),
                event.len(),
                id.as_ptr(),
                id.len(),
                retry,
            )
        }
    }

    pub fn log(message: &str) {
        // SAFETY: the host reads `len` bytes at `ptr`, which `message` owns.
        unsafe { house_log(message.as_ptr(), message.len()) }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::Event;
    use crate::testing::{Published, RECORDED};
    use alloc::string::ToString;

    fn valid_channel(channel: &str) -> bool {
        channel.len() <= house_abi::MAX_CHANNEL
    }

    pub fn subscribe(channel: &str) -> i32 {
        if !valid_channel(channel) {
            return -1;
        }
        RECORDED.with(|r| r.borrow_mut().subscriptions.push(channel.to_string()));
        0
    }

    pub fn subscribe_as(channel: &str, info: &str) -> i32 {
        if !valid_channel(channel) {
            return -1;
        }
        if info.len() > 256 || info.contains(['\r', '\n', '\0']) {
            return house_abi::status::PRESENCE_INFO;
        }
        RECORDED.with(|r| {
            let mut r = r.borrow_mut();
            r.subscriptions.push(channel.to_string());
            r.members.push((channel.to_string(), info.to_string()));
        });
        0
    }

    /// The members recorded on this thread (`subscribe_as`) of `channel`.
    pub fn presence(channel: &str, limit: i32) -> i64 {
        let block = RECORDED.with(|r| {
            let r = r.borrow();
            let mut infos: alloc::vec::Vec<&str> =
                r.members.iter().filter(|(c, _)| c == channel).map(|(_, i)| i.as_str()).collect();
            infos.sort();
            infos.dedup();
            infos.truncate(limit.max(0) as usize);
            house_abi::kv::encode_list(infos.iter().map(|i| (i.as_bytes(), &[][..])), false)
        });
        STASH.with(|s| *s.borrow_mut() = block);
        STASH.with(|s| s.borrow().len() as i64)
    }

    pub fn stash(_n: i64) -> alloc::vec::Vec<u8> {
        STASH.with(|s| core::mem::take(&mut *s.borrow_mut()))
    }

    std::thread_local! {
        static STASH: core::cell::RefCell<alloc::vec::Vec<u8>> = const { core::cell::RefCell::new(alloc::vec::Vec::new()) };
    }

    pub fn backlog(count: u32) -> i32 {
        RECORDED.with(|r| {
            let mut r = r.borrow_mut();
            r.backlog = r.backlog.max(count);
        });
        0
    }

    pub fn publish(channel: &str, ev: &Event<'_>) -> i32 {
        if !valid_channel(channel) {
            return -1;
        }
        let bad = |f: Option<&str>| f.is_some_and(|f| f.contains(['\r', '\n', '\0']));
        if bad(ev.event) || bad(ev.id) {
            return -2;
        }
        let p = Published {
            channel: channel.to_string(),
            data: ev.data.to_string(),
            event: ev.event.map(ToString::to_string),
            id: ev.id.map(ToString::to_string),
        };
        RECORDED.with(|r| r.borrow_mut().published.push(p));
        0
    }

    pub fn log(message: &str) {
        RECORDED.with(|r| r.borrow_mut().logs.push(message.to_string()));
    }
}
