//! The `house-kv-redis` thread of the Redis store: the one owner of its
//! socket. It connects (loading the scripts), sends everything queued as
//! one pipeline, hands each reply back and wakes the call that waits for
//! it, and reconnects with backoff when the socket fails; meanwhile what
//! is queued fails at once (`KV_UNAVAILABLE`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use anyhow::bail;
use redis::Value;

use super::redis::*;
use crate::engine::redis_conn::Backoff;
use crate::engine::redis_conn::Conn;
use crate::log::Log;

impl Store {
    /// The thread: connect, serve until the connection fails, say so once
    /// per outage, retry with backoff, forever.
    pub(super) fn run(self: Arc<Self>, mut log: Log) {
        let mut backoff = Backoff::new();
        let mut said_down = false;
        loop {
            let mut conn = match self.connect() {
                Ok(conn) => conn,
                Err(e) => {
                    self.state.store(DOWN, Ordering::Release);
                    self.fail_queued();
                    if !said_down {
                        log.line(format_args!(
                            "house: kv {}: cannot reach Redis ({e:#}); retrying",
                            self.address.shown
                        ));
                        log.flush_now();
                        said_down = true;
                    }
                    backoff.wait();
                    continue;
                }
            };
            if said_down {
                log.line(format_args!("house: kv {}: connected", self.address.shown));
                log.flush_now();
            }
            self.state.store(UP, Ordering::Release);
            let since = Instant::now();
            let why = self.serve(&mut conn, &mut log);
            self.state.store(DOWN, Ordering::Release);
            // Whatever queued meanwhile fails now, not after the reconnect.
            self.fail_queued();
            log.line(format_args!("house: kv {}: lost Redis ({why}); retrying", self.address.shown));
            log.flush_now();
            said_down = true;
            backoff.lost(since);
        }
    }

    fn connect(&self) -> anyhow::Result<Conn> {
        let mut conn = Conn::open(&self.address, self.timeout)?;
        for (script, _) in &self.scripts {
            conn.command(redis::cmd("SCRIPT").arg("LOAD").arg(script))?;
        }
        let info = match conn.command(redis::cmd("INFO").arg("server"))? {
            Value::BulkString(text) => String::from_utf8_lossy(&text).into_owned(),
            Value::VerbatimString { text, .. } => text,
            other => bail!("INFO answered {other:?}"),
        };
        let run_id = info.lines().find_map(|l| l.strip_prefix("run_id:")).unwrap_or_default().trim().to_owned();
        let mut known = self.run_id.lock().unwrap_or_else(PoisonError::into_inner);
        if *known != run_id {
            *known = run_id;
            self.incarnation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(conn)
    }

    /// Drops what is queued (its calls see the failure) and says the
    /// pipeline out is over.
    fn fail_queued(&self) {
        let mut queue = self.queue();
        queue.requests.clear();
        queue.busy = false;
        drop(queue);
        self.done.notify_all();
    }

    /// Sends what is queued as one pipeline, and the sweep once a second,
    /// until the connection fails; returns why.
    fn serve(&self, conn: &mut Conn, log: &mut Log) -> String {
        let mut swept = Instant::now();
        let mut sweep = true;
        loop {
            let batch = {
                let mut queue = self.queue();
                while queue.requests.is_empty() && !sweep {
                    let left = SWEEP_EVERY.saturating_sub(swept.elapsed());
                    if left.is_zero() {
                        sweep = true;
                        break;
                    }
                    queue = self.wake.wait_timeout(queue, left).unwrap_or_else(PoisonError::into_inner).0;
                }
                queue.busy = true;
                std::mem::take(&mut queue.requests)
            };
            // Under steady load the queue is never empty: sweep on time anyway.
            sweep |= swept.elapsed() >= SWEEP_EVERY;
            let mut pipe = redis::pipe();
            let mut replies = Vec::with_capacity(batch.len());
            let current = self.incarnation.load(Ordering::Acquire);
            for request in batch {
                // Meant for a Redis that has been restarted since: dropped
                // unsent (its call sees the incarnation changed).
                if request.only_to.is_some_and(|inc| inc != current) {
                    continue;
                }
                pipe.add_command(request.cmd);
                replies.push(request.reply);
            }
            if sweep {
                pipe.cmd("EVALSHA").arg(&self.scripts[SWEEP_SCRIPT].1).arg(0).arg(SWEEP_BATCH);
            }
            let answers = match conn.query(&pipe.get_packed_pipeline(), pipe.len()) {
                Ok(answers) => answers,
                Err(e) => {
                    // They went out: each may have run.
                    for reply in replies {
                        let _ = reply.send(Answer::Lost(current));
                    }
                    return e.to_string();
                }
            };
            let mut answers = answers.into_iter();
            let mut flushed = false;
            for (reply, answer) in replies.into_iter().zip(answers.by_ref()) {
                flushed |= answer.as_ref().is_err_and(|e| e.code() == Some("NOSCRIPT"));
                let _ = reply.send(Answer::Reply(answer));
            }
            self.queue().busy = false;
            self.done.notify_all();
            if sweep {
                if let Some(Err(e)) = answers.next() {
                    flushed |= e.code() == Some("NOSCRIPT");
                    if !flushed {
                        log.line(format_args!(
                            "house: kv {}: the sweep of expired keys failed: {e}",
                            self.address.shown
                        ));
                        log.flush_now();
                    }
                }
                swept = Instant::now();
                sweep = false;
            }
            if flushed {
                // Someone ran SCRIPT FLUSH: the reconnect loads them again.
                return "its scripts were flushed".into();
            }
        }
    }
}
