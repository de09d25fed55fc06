//! What the Redis engine owes a stream that opens, read from Redis: the
//! check of its resume (a Lua script, `CHECK`) and the entries after it,
//! turned into a [`Replay`] (replayed events, a reset, a backlog, and the
//! ids up to which live events are already accounted for).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::Value;

use super::history::{EventId, Replay, Start};
use super::redis_conn::Conn;
use crate::config::HistoryLimits;

/// A channel's history is the stream at this prefix and its name.
pub const HISTORY: &str = "house:history:";

/// Whether an opening stream's resume can be honoured. KEYS: its
/// channels' streams. ARGV: the id it resumes after ('' for none). Returns
/// {reset (0 or 1), the newest id on them or '', each one's last id or ''}.
///
/// A resume is honoured only if every channel's history covers it: the
/// channel's stream exists and the id is at or after its first kept entry
/// or its last id. A stream's first entry is where its history begins: it
/// was created with it (the stream's epoch), and every later id of that
/// stream is after it (Redis makes stream ids from its clock, never going
/// back within a stream). So an id from before a stream was recreated
/// (Redis restarted without persistence, flushed, the stream evicted or
/// expired and published to again) is before its first entry, and a
/// channel with no stream has lost its history: both are a reset, never a
/// guess. (A stream subscribed to several channels resumes them all from
/// one id: a channel whose first entry is after it gets a reset too, which
/// costs a reload, never an event.) The entries themselves are read by
/// XRANGE beside it in one MULTI (`Bridge::answer`): Lua would copy each
/// into a table and back, at six times the cost.
pub const CHECK: &str = r"
local after = ARGV[1]
local function parse(id)
  if not id then return nil end
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  if not ms or #ms > 15 or #seq > 15 then return nil end
  return {tonumber(ms), tonumber(seq)}
end
local function before(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end
local newest, newest_text, infos, lasts = nil, '', {}, {}
for i, key in ipairs(KEYS) do
  lasts[i] = ''
  if redis.call('EXISTS', key) == 1 then
    local flat = redis.call('XINFO', 'STREAM', key)
    local info = {}
    for j = 1, #flat, 2 do info[flat[j]] = flat[j + 1] end
    infos[i] = info
    lasts[i] = info['last-generated-id']
    local last = parse(info['last-generated-id'])
    if last and (newest == nil or before(newest, last)) then newest, newest_text = last, info['last-generated-id'] end
  end
end
if after == '' then return {0, newest_text, lasts} end
local a = parse(after)
if a == nil or newest == nil or before(newest, a) then return {1, newest_text, lasts} end
for i, key in ipairs(KEYS) do
  local info = infos[i]
  if info == nil then return {1, newest_text, lasts} end
  local first = info['first-entry'] and parse(info['first-entry'][1])
  local last = parse(info['last-generated-id'])
  if not ((first and not before(a, first)) or (last and not before(a, last))) then return {1, newest_text, lasts} end
end
return {0, newest_text, lasts}
";

/// `MAXLEN ~` trims whole nodes of a stream (100 entries each, Redis's
/// default): a channel may keep this many more than `--history-events`,
/// and a stream may be replayed that many more.
pub const TRIM_SLACK: usize = 200;
/// Reads replays for one bridge's limits.
pub struct Replays {
    /// `--sse-buffer-bytes`: an entry larger could never reach a stream.
    pub sse_buffer: usize,
    pub history: HistoryLimits,
}

impl Replays {
    /// Events one stream may be replayed on one channel; beyond, a reset.
    pub fn max(&self) -> usize {
        self.history.events + TRIM_SLACK
    }

    /// Reads what each of `asks` (a stream's channels and start) is owed:
    /// per ask one MULTI (the check, then each channel's entries after the
    /// id if it is one, then each channel's newest if a backlog was asked:
    /// a reset falls back on it), one pipeline for them all. `check` is
    /// `CHECK`'s hash on this connection.
    pub fn read(
        &self,
        commands: &mut Conn,
        check: &str,
        asks: &[(&[Arc<str>], &Start)],
        refused: &AtomicU64,
    ) -> Result<Vec<Replay>, String> {
        let mut pipe = redis::pipe();
        // Where each EXEC is among the replies (MULTI and QUEUED come too).
        let mut execs = Vec::with_capacity(asks.len());
        let mut count = 0;
        for (channels, start) in asks {
            pipe.cmd("MULTI");
            pipe.cmd("EVALSHA").arg(check).arg(channels.len());
            for channel in channels.iter() {
                pipe.arg(format!("{HISTORY}{channel}"));
            }
            pipe.arg(start.after.as_deref().unwrap_or(""));
            count += 2;
            if let Some(after) = start.after.as_deref().and_then(EventId::parse) {
                for channel in channels.iter() {
                    let key = format!("{HISTORY}{channel}");
                    pipe.cmd("XRANGE").arg(key).arg(format!("({after}")).arg("+").arg("COUNT").arg(self.max() + 1);
                    count += 1;
                }
            }
            if start.backlog > 0 {
                for channel in channels.iter() {
                    let key = format!("{HISTORY}{channel}");
                    pipe.cmd("XREVRANGE").arg(key).arg("+").arg("-").arg("COUNT").arg(start.backlog);
                    count += 1;
                }
            }
            pipe.cmd("EXEC");
            execs.push(count);
            count += 1;
        }
        match commands.query(&pipe.get_packed_pipeline(), count) {
            Ok(mut replies) if replies.len() == count => Ok(execs
                .into_iter()
                .zip(asks)
                .map(|(i, (channels, start))| {
                    let reply = std::mem::replace(&mut replies[i], Ok(Value::Nil)).unwrap_or(Value::Nil);
                    self.replay(channels, start, reply, refused)
                })
                .collect()),
            Ok(_) => Err("a history read got the wrong number of replies".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Turns one stream's EXEC reply (the check, then its XRANGEs, then its
    /// XREVRANGEs) into a replay: entries of each channel merged in id
    /// order, the newest `backlog` of them if that is what it gets.
    pub fn replay(&self, channels: &[Arc<str>], start: &Start, reply: Value, refused: &AtomicU64) -> Replay {
        let Value::Array(items) = reply else {
            refused.fetch_add(1, Ordering::Relaxed);
            return unavailable(start);
        };
        let mut items = items.into_iter();
        let Some(Value::Array(check)) = items.next() else {
            refused.fetch_add(1, Ordering::Relaxed);
            return unavailable(start);
        };
        let mut check = check.into_iter();
        let mut reset = !matches!(check.next(), Some(Value::Int(0)));
        let position = match check.next() {
            Some(Value::BulkString(id)) => std::str::from_utf8(&id).ok().and_then(EventId::parse),
            _ => None,
        };
        // Each channel's last id when the history was read.
        let lasts: Vec<Option<EventId>> = match check.next() {
            Some(Value::Array(ids)) => ids
                .into_iter()
                .map(|v| match v {
                    Value::BulkString(id) => std::str::from_utf8(&id).ok().and_then(EventId::parse),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let n = channels.len();
        let after: Vec<Value> = if start.after.as_deref().and_then(EventId::parse).is_some() {
            items.by_ref().take(n).collect()
        } else {
            Vec::new()
        };
        let newest: Vec<Value> = if start.backlog > 0 { items.take(n).collect() } else { Vec::new() };
        // More to replay than one stream may be sent (by count, or by the
        // memory engine's per-channel byte bound): start over instead.
        fn entries(v: &Value) -> &[Value] {
            match v {
                Value::Array(e) => e,
                _ => &[],
            }
        }
        let body_bytes = |e: &Value| match e {
            Value::Array(parts) => match parts.get(1) {
                Some(Value::Array(fields)) => match fields.get(1) {
                    Some(Value::BulkString(b)) => b.len(),
                    _ => 0,
                },
                _ => 0,
            },
            _ => 0,
        };
        let bytes: usize = after.iter().flat_map(|v| entries(v).iter().map(body_bytes)).sum();
        reset |= after.iter().any(|v| entries(v).len() > self.max())
            || bytes > self.history.bytes.saturating_mul(channels.len());
        let resumed = start.after.is_some() && !reset;
        let chosen = if resumed { after } else { newest };
        let mut picked: Vec<(EventId, Arc<[u8]>)> = Vec::new();
        let mut live_after = Vec::new();
        for (channel, entries) in channels.iter().zip(chosen) {
            let Value::Array(entries) = entries else { continue };
            let mut last = None;
            for entry in entries {
                if let Some((id, frame)) = self.entry(entry, refused) {
                    last = last.max(Some(id));
                    picked.push((id, frame));
                }
            }
            if let Some(id) = last {
                live_after.push((channel.clone(), id));
            }
        }
        picked.sort_by_key(|(id, _)| *id);
        let skip = if resumed { 0 } else { picked.len().saturating_sub(start.backlog) };
        let frames = picked.into_iter().skip(skip).map(|(_, frame)| frame).collect();
        // Each channel's events up to its last id when the history was read
        // (in the same MULTI) are accounted for: replayed, seen before the
        // resume, or part of what a reset or a backlog starts from. This
        // host's subscription may still deliver some of them late (its
        // reader behind another host's, where the stream was before): they
        // are skipped on every channel, not only those the replay had
        // entries for. (Per channel: another channel's id may be later in
        // the same millisecond than a new event of this one.)
        for (channel, last) in channels.iter().zip(&lasts) {
            if let Some(last) = last
                && !live_after.iter().any(|(c, id)| c == channel && id >= last)
            {
                live_after.retain(|(c, _)| c != channel);
                live_after.push((channel.clone(), *last));
            }
        }
        Replay { reset, position, frames, live_after }
    }

    /// One stream entry, `[id, ["e", body]]`, as a framed event with its id.
    fn entry(&self, entry: Value, refused: &AtomicU64) -> Option<(EventId, Arc<[u8]>)> {
        let Value::Array(parts) = entry else { return None };
        let mut parts = parts.into_iter();
        let (Some(Value::BulkString(id)), Some(Value::Array(fields))) = (parts.next(), parts.next()) else {
            return None;
        };
        let id = EventId::parse(std::str::from_utf8(&id).ok()?)?;
        let body = match fields.into_iter().nth(1) {
            Some(Value::BulkString(body)) if body.ends_with(b"\n\n") && body.len() <= self.sse_buffer => body,
            _ => {
                refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        Some((id, super::history::with_id(id, &body).into()))
    }
}

/// What a stream starts with when its history cannot be read: nothing, or
/// a reset if it asked for history.
pub fn unavailable(start: &Start) -> Replay {
    Replay { reset: start.wants_history(), ..Replay::default() }
}
