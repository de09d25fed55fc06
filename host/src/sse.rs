//! Server-Sent Events: event framing, and one loop's channel table (which of
//! its connections listen to what; `hub` joins the loops' tables).
//!
//! Channels belong to the host, not to guests: a guest names a channel with a
//! string, the table maps it to the connections subscribed to it, and a
//! channel with no subscribers does not exist (publishing to it is a no-op).
//! An event is framed once per publish and the same bytes are queued on
//! every subscriber.

use std::collections::HashMap;

use indexmap::IndexSet;

/// One event as a guest publishes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub data: String,
    pub event: Option<String>,
    pub id: Option<String>,
    pub retry: Option<u32>,
}

/// Why a field cannot be framed: it would end the field (or the event) early.
pub fn check_field(name: &str, value: &str) -> Result<(), String> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(format!("SSE {name} must not contain CR, LF or NUL"));
    }
    Ok(())
}

/// Frames `ev` in the text/event-stream format. Every line break in the data
/// (`\n`, `\r\n` or `\r`) starts a new `data:` line, so no message can forge a
/// field or end the event early. `event` and `id` must have passed
/// [`check_field`].
pub fn frame(ev: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(ev.data.len() + 16);
    if let Some(event) = &ev.event {
        push_field(&mut out, "event", event);
    }
    if let Some(id) = &ev.id {
        push_field(&mut out, "id", id);
    }
    if let Some(retry) = ev.retry {
        push_field(&mut out, "retry", &retry.to_string());
    }
    let mut rest = ev.data.as_str();
    loop {
        match rest.find(['\r', '\n']) {
            Some(i) => {
                push_field(&mut out, "data", &rest[..i]);
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                push_field(&mut out, "data", rest);
                break;
            }
        }
    }
    out.push(b'\n');
    out
}

/// The length of `frame(ev)`, without framing it: a publish is checked
/// against its budgets before the host does the work (data made of line
/// breaks frames to seven times its size).
pub fn framed_len(ev: &Event) -> usize {
    let field = |name: &str, value: &str| name.len() + 2 + value.len() + 1;
    let mut n = ev.event.as_deref().map_or(0, |v| field("event", v)) + ev.id.as_deref().map_or(0, |v| field("id", v));
    if let Some(retry) = ev.retry {
        n += field("retry", itoa::Buffer::new().format(retry));
    }
    let bytes = ev.data.as_bytes();
    let mut lines = 1;
    let mut breaks = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                lines += 1;
                breaks += 2;
                i += 1;
            }
            b'\r' | b'\n' => {
                lines += 1;
                breaks += 1;
            }
            _ => {}
        }
        i += 1;
    }
    n + (bytes.len() - breaks) + lines * "data: \n".len() + 1
}

/// A comment line: ignored by EventSource, keeps proxies and dead-peer
/// detection honest on idle streams.
pub const HEARTBEAT: &[u8] = b":\n\n";

fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// Channel name -> subscribed connections (by the event loop's connection key).
#[derive(Debug, Default)]
pub struct Channels {
    map: HashMap<Box<str>, IndexSet<usize>>,
}

impl Channels {
    /// Returns whether `channel` is new here (its first subscriber).
    pub fn subscribe(&mut self, channel: &str, conn: usize) -> bool {
        match self.map.get_mut(channel) {
            Some(subs) => {
                subs.insert(conn);
                false
            }
            None => {
                self.map.insert(channel.into(), IndexSet::from([conn]));
                true
            }
        }
    }

    /// Returns whether `channel` is gone here (that was its last subscriber).
    pub fn unsubscribe(&mut self, channel: &str, conn: usize) -> bool {
        if let Some(subs) = self.map.get_mut(channel) {
            subs.swap_remove(&conn);
            if subs.is_empty() {
                self.map.remove(channel);
                return true;
            }
        }
        false
    }

    /// A snapshot of the subscribers (publishing may unsubscribe some).
    pub fn subscribers(&self, channel: &str) -> Vec<usize> {
        self.map.get(channel).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    /// (channels, subscriptions). The process-wide figures of
    /// `/_house/stats` are the hub's; this is for tests of the table.
    #[cfg(test)]
    pub fn stats(&self) -> (usize, usize) {
        (self.map.len(), self.map.values().map(IndexSet::len).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(data: &str) -> String {
        String::from_utf8(frame(&Event { data: data.into(), ..Event::default() })).unwrap()
    }

    #[test]
    fn splits_every_kind_of_line_break() {
        assert_eq!(framed("a\nb\r\nc\rd"), "data: a\ndata: b\ndata: c\ndata: d\n\n");
        assert_eq!(framed(""), "data: \n\n");
        assert_eq!(framed("x\n\nevent: forged"), "data: x\ndata: \ndata: event: forged\n\n");
    }

    #[test]
    fn framed_len_is_the_framed_length() {
        for data in ["", "a", "a\nb\r\nc\rd", "\n\n\n", "\r\n\r", "é\r", "x\n\nevent: forged"] {
            for ev in [
                Event { data: data.into(), ..Event::default() },
                Event { data: data.into(), event: Some("m".into()), id: Some("12".into()), retry: Some(1500) },
            ] {
                assert_eq!(framed_len(&ev), frame(&ev).len(), "{ev:?}");
            }
        }
    }

    #[test]
    fn fields_come_before_data() {
        let ev = Event { data: "hé".into(), event: Some("msg".into()), id: Some("7".into()), retry: Some(500) };
        assert_eq!(String::from_utf8(frame(&ev)).unwrap(), "event: msg\nid: 7\nretry: 500\ndata: hé\n\n");
    }

    #[test]
    fn empty_channels_vanish() {
        let mut c = Channels::default();
        c.subscribe("a", 1);
        c.subscribe("a", 2);
        c.unsubscribe("a", 1);
        assert_eq!(c.subscribers("a"), [2]);
        c.unsubscribe("a", 2);
        assert_eq!(c.stats(), (0, 0));
    }
}
