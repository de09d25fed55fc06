//! A guest call as one transaction (docs/ABI.md, "Key-value data"): run
//! it, then commit what it wrote (and, where the store keeps channels,
//! what it published) if nothing it read has changed; if something has,
//! run it again from the start in a fresh instance's state, after a
//! backoff with jitter, up to `--tx-retries` times; then 503.

use std::time::Duration;

use super::Handler;
use super::call::{CallError, CallOutput, Phase};
use super::engine::Runtime;
use crate::engine::kv::{CommitError, shown_keys};
use crate::metrics::{CallResult, METRICS};

impl Runtime {
    /// The call as one transaction: run, then commit what it wrote if
    /// nothing it read has changed; if something has (at the commit, or
    /// during the call on Redis), run it again from the start, in a fresh
    /// instance's state, after a backoff with jitter, up to `--tx-retries`
    /// times. Nothing of a run that did not commit was ever visible.
    pub(super) async fn transact(
        &self,
        handler: &Handler,
        args: &[u8],
        mut probe: impl FnMut(Phase),
    ) -> Result<CallOutput, CallError> {
        let retries = self.kv().map_or(0, |kv| kv.limits().retries);
        let mut reruns = 0;
        loop {
            let changed = match self.call_fresh(handler, args, &mut probe).await {
                Ok((mut out, Some(kv)))
                    if out.status < 500 && (kv.has_writes() || kv.commits_events() && !out.publishes.is_empty()) =>
                {
                    // Where the store keeps channels (Redis), the call's
                    // events are part of its commit: they get their ids
                    // there and come back to this host's loops through the
                    // engine's subscription, like every other host's.
                    let in_commit = kv.commits_events();
                    let events: Vec<_> = if in_commit {
                        out.publishes.iter().map(|p| (p.channel.clone(), p.frame.clone())).collect()
                    } else {
                        Vec::new()
                    };
                    match kv.commit(events).await {
                        Ok(()) => {
                            if in_commit && !out.publishes.is_empty() {
                                METRICS.published(out.publishes.len() as u64);
                                out.publishes.clear();
                            }
                            return Ok(out);
                        }
                        Err(CommitError::Conflict(keys)) => shown_keys(&keys),
                        Err(e @ CommitError::Unavailable(_)) => {
                            return Err(CallError {
                                reason: format!("nothing of it was committed: {e}"),
                                logs: out.logs,
                                strike: false,
                                kind: CallResult::Unavailable,
                            });
                        }
                        Err(e @ CommitError::Unknown(_)) => {
                            return Err(CallError {
                                reason: format!("its commit's {e}"),
                                logs: out.logs,
                                strike: false,
                                kind: CallResult::Unknown,
                            });
                        }
                    }
                }
                // Only read, or answered a server error: nothing to commit.
                Ok((out, _)) => return Ok(out),
                // Stopped at a read (Redis): what it had read before changed.
                Err(e) if e.kind == CallResult::Conflict => "what it had read".to_owned(),
                Err(e) => return Err(e),
            };
            if reruns >= retries {
                let reason = format!(
                    "its transaction was still in conflict after {reruns} re-runs (--tx-retries): {changed} \
                     changed under it each time"
                );
                return Err(CallError { reason, logs: Vec::new(), strike: false, kind: CallResult::Conflict });
            }
            reruns += 1;
            METRICS.rerun();
            // Up to 1 ms, doubling, at most 64 ms, each a random part of it
            // ("full jitter"): calls that collided do not collide again in
            // step, and the first re-run is nearly at once (what beat it is
            // already visible when a conflict is answered).
            let ceiling = Duration::from_millis(1 << (reruns - 1).min(6));
            let backoff = ceiling.mul_f64(crate::engine::timer::jitter());
            crate::engine::timer::sleep(backoff).await;
        }
    }
}
