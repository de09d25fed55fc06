//! The consistency checker's analysis, in the spirit of Jepsen's Elle: from
//! what clients asked and were answered, decide whether the history could
//! have come from a serializable system that kept every acknowledgement.
//!
//! List-append is the workload that makes this decidable without knowing
//! the store's internals: each append adds a unique value, so the final
//! list of a key is the order its writes took effect (its version order),
//! and every read shows exactly which writes it saw. From that, each
//! transaction's dependencies follow: write-write (the append before mine),
//! write-read (the last append my read saw), read-write (the first append
//! my read did not see). A serializable history has no cycle among them:
//! G0 (write cycles), G1c (with write-read edges), G2 (with
//! anti-dependencies). Aborted reads (G1a: a value from an append that was
//! refused) and reads that are not a prefix of the final list (a state that
//! never was) are found directly.
//!
//! An operation's outcome is what the client knows: `Ok` (acknowledged),
//! `Failed` (a definite refusal: nothing happened), `Unknown` (the
//! connection died, or the server said the outcome is unknown).

use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    Ok(T),
    Failed,
    Unknown,
}

impl<T> Outcome<T> {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Ok(v) => Outcome::Ok(f(v)),
            Outcome::Failed => Outcome::Failed,
            Outcome::Unknown => Outcome::Unknown,
        }
    }
}

/// An append of `value` to `key`; on success, the list it read before.
#[derive(Debug, Clone)]
pub struct Append {
    pub key: String,
    pub value: u64,
    pub outcome: Outcome<Vec<u64>>,
}

/// A read of several keys; on success, each key's list.
#[derive(Debug, Clone)]
pub struct Read {
    pub outcome: Outcome<Vec<(String, Vec<u64>)>>,
}

#[derive(Debug, Default)]
pub struct ListHistory {
    pub appends: Vec<Append>,
    pub reads: Vec<Read>,
    /// Each key's list, read once everything is over and healthy.
    pub finals: HashMap<String, Vec<u64>>,
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Each anomaly, in a line.
    pub anomalies: Vec<String>,
    /// Acknowledged operations whose effect is gone.
    pub lost: usize,
}

impl Report {
    fn anomaly(&mut self, line: String) {
        // A broken run can find thousands; the first ones tell the story.
        if self.anomalies.len() < 50 {
            self.anomalies.push(line);
        }
    }

    pub fn is_clean(&self) -> bool {
        self.anomalies.is_empty() && self.lost == 0
    }
}

const WW: u8 = 1;
const WR: u8 = 2;
const RW: u8 = 4;

impl ListHistory {
    pub fn check(&self) -> Report {
        let mut report = Report::default();
        // Node ids: appends by index, reads after them.
        let read_node = |i: usize| self.appends.len() + i;
        let mut writer: HashMap<u64, usize> = HashMap::new();
        let mut failed: HashSet<u64> = HashSet::new();
        for (i, a) in self.appends.iter().enumerate() {
            if writer.insert(a.value, i).is_some() {
                report.anomaly(format!("the checker appended {} twice", a.value));
            }
            if a.outcome == Outcome::Failed {
                failed.insert(a.value);
            }
        }
        // Position of each value in its key's final list.
        let mut position: HashMap<u64, (String, usize)> = HashMap::new();
        for (key, list) in &self.finals {
            for (p, v) in list.iter().enumerate() {
                if position.insert(*v, (key.clone(), p)).is_some() {
                    report.anomaly(format!("{key}: {v} is in the final lists twice (a duplicated append)"));
                }
                match writer.get(v) {
                    None => report.anomaly(format!("{key}: {v} was never appended (garbage)")),
                    Some(&w) if self.appends[w].key != *key => {
                        report.anomaly(format!("{key}: {v} was appended to {}", self.appends[w].key))
                    }
                    Some(_) if failed.contains(v) => {
                        report.anomaly(format!("{key}: {v} is there, but its append was refused"))
                    }
                    Some(_) => {}
                }
            }
        }
        for a in &self.appends {
            if a.outcome.is_ok() && !position.contains_key(&a.value) {
                report.lost += 1;
                report.anomaly(format!("{}: {} was acknowledged and is gone (lost append)", a.key, a.value));
            }
        }

        let nodes = self.appends.len() + self.reads.len();
        let mut edges: Vec<Vec<(usize, u8)>> = vec![Vec::new(); nodes];
        let empty = Vec::new();
        let last = |key: &str| self.finals.get(key).unwrap_or(&empty);
        // A read of `key` by node `t` that saw `seen`: prefix, aborted
        // reads, and its write-read and read-write edges.
        let observe =
            |t: usize, key: &str, seen: &[u64], what: &str, report: &mut Report, edges: &mut Vec<Vec<(usize, u8)>>| {
                let fin = last(key);
                if seen.len() > fin.len() || fin[..seen.len()] != *seen {
                    report.anomaly(format!("{what} saw {key} = {seen:?}, not a prefix of its final {fin:?}"));
                    return;
                }
                if let Some(v) = seen.iter().find(|v| failed.contains(v)) {
                    report.anomaly(format!("{what} saw {v} in {key}, from a refused append (G1a)"));
                }
                if let Some(&w) = seen.last().and_then(|v| writer.get(v)) {
                    edges[w].push((t, WR));
                }
                if let Some(&w) = fin.get(seen.len()).and_then(|v| writer.get(v)) {
                    edges[t].push((w, RW));
                }
            };
        for (i, a) in self.appends.iter().enumerate() {
            let Outcome::Ok(before) = &a.outcome else { continue };
            let what = format!("append {} to {}", a.value, a.key);
            match position.get(&a.value) {
                Some((_, p)) if *p != before.len() => report.anomaly(format!(
                    "{what} read {} values but landed at {p}: an update was lost in between",
                    before.len()
                )),
                _ => {}
            }
            observe(i, &a.key, before, &what, &mut report, &mut edges);
        }
        for list in self.finals.values() {
            for pair in list.windows(2) {
                if let (Some(&a), Some(&b)) = (writer.get(&pair[0]), writer.get(&pair[1])) {
                    edges[a].push((b, WW));
                }
            }
        }
        for (i, r) in self.reads.iter().enumerate() {
            let Outcome::Ok(lists) = &r.outcome else { continue };
            for (key, seen) in lists {
                observe(read_node(i), key, seen, &format!("read {i}"), &mut report, &mut edges);
            }
        }
        // Reads are nodes only if they succeeded: a failed or unknown one
        // has no edges. An unknown append that took effect has its write
        // edges (its value is in a final list).
        for scc in cycles(&edges) {
            let inside: HashSet<usize> = scc.iter().copied().collect();
            let kinds = scc
                .iter()
                .flat_map(|&n| edges[n].iter().filter(|(m, _)| inside.contains(m)).map(|(_, k)| *k))
                .fold(0, |acc, k| acc | k);
            let name = if kinds & RW != 0 {
                "G2 (anti-dependency cycle)"
            } else if kinds & WR != 0 {
                "G1c (circular information flow)"
            } else {
                "G0 (write cycle)"
            };
            let shown: Vec<String> = scc.iter().take(6).map(|&n| self.describe(n)).collect();
            report.anomaly(format!("{name} among {} operations: {}", scc.len(), shown.join(", ")));
        }
        report
    }

    fn describe(&self, node: usize) -> String {
        match self.appends.get(node) {
            Some(a) => format!("append {} to {}", a.value, a.key),
            None => format!("read {}", node - self.appends.len()),
        }
    }
}

/// The strongly connected components of more than one node (Kosaraju,
/// iterative: histories have thousands of nodes).
fn cycles(edges: &[Vec<(usize, u8)>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for start in 0..n {
        if seen[start] {
            continue;
        }
        seen[start] = true;
        let mut stack = vec![(start, 0usize)];
        while let Some((node, next)) = stack.last_mut() {
            if let Some(&(m, _)) = edges[*node].get(*next) {
                *next += 1;
                if !seen[m] {
                    seen[m] = true;
                    stack.push((m, 0));
                }
            } else {
                order.push(*node);
                stack.pop();
            }
        }
    }
    let mut reverse = vec![Vec::new(); n];
    for (a, out) in edges.iter().enumerate() {
        for &(b, _) in out {
            reverse[b].push(a);
        }
    }
    let mut component = vec![usize::MAX; n];
    let mut found = Vec::new();
    for &root in order.iter().rev() {
        if component[root] != usize::MAX {
            continue;
        }
        let mut members = vec![root];
        component[root] = root;
        let mut i = 0;
        while i < members.len() {
            for &m in &reverse[members[i]] {
                if component[m] == usize::MAX {
                    component[m] = root;
                    members.push(m);
                }
            }
            i += 1;
        }
        if members.len() > 1 {
            found.push(members);
        }
    }
    found
}

/// Counters made of a read and a write (no increment import): the final
/// value counts every acknowledged bump, and no more than were tried; each
/// acknowledged bump wrote a value no other did.
pub fn check_counter(name: &str, bumps: &[Outcome<i64>], final_value: i64, report: &mut Report) {
    let ok = bumps.iter().filter(|b| b.is_ok()).count() as i64;
    let unknown = bumps.iter().filter(|b| **b == Outcome::Unknown).count() as i64;
    if final_value < ok {
        report.lost += (ok - final_value) as usize;
        report.anomaly(format!("counter {name}: {ok} bumps acknowledged, final value {final_value} (lost updates)"));
    }
    if final_value > ok + unknown {
        report.anomaly(format!("counter {name}: final value {final_value} is over the {ok} + {unknown} bumps tried"));
    }
    let mut wrote = HashSet::new();
    for b in bumps {
        if let Outcome::Ok(v) = b
            && !wrote.insert(*v)
        {
            report.anomaly(format!("counter {name}: two acknowledged bumps both wrote {v} (a lost update)"));
        }
    }
}

/// Ids from the increment import: no two acknowledged calls got one id.
pub fn check_ids(ids: &[Outcome<i64>], report: &mut Report) {
    let mut given = HashSet::new();
    for id in ids {
        if let Outcome::Ok(v) = id
            && !given.insert(*v)
        {
            report.anomaly(format!("id {v} was handed out twice"));
        }
    }
}

/// What one subscriber received over its whole run, across reconnects:
/// each event's id and tag, and where it was told `event: reset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Event {
        id: (u64, u64),
        tag: String,
    },
    /// `event: reset`, with the id it carries (the newest the server had
    /// when it read the channel's history): what follows it is owed from
    /// there on.
    Reset(Option<(u64, u64)>),
}

/// An event's id and tag.
type Placed<'a> = ((u64, u64), &'a str);

/// Channels: every acknowledged event reaches every subscriber of its
/// channel exactly once and in order, or the subscriber is told
/// `event: reset` before the gap; no refused event reaches anyone.
/// `published`: each tag's channel and outcome; `heard`: each subscriber's
/// channel and what it received. Subscribers were open before the first
/// publish and heard the channel's last event (a sentinel) at the end.
pub fn check_channels(
    published: &HashMap<String, (String, Outcome<()>)>,
    heard: &[(String, Vec<Heard>)],
    report: &mut Report,
) {
    // The id each tag was given, as any subscriber heard it.
    let mut ids: HashMap<&str, (u64, u64)> = HashMap::new();
    for (_, events) in heard {
        for h in events {
            if let Heard::Event { id, tag } = h
                && let Some(other) = ids.insert(tag, *id)
                && other != *id
            {
                report.anomaly(format!("event {tag} was heard with two ids, {other:?} and {id:?}"));
            }
        }
    }
    // Each channel's acknowledged events whose id is known, in id order.
    let mut acked: HashMap<&str, Vec<Placed<'_>>> = HashMap::new();
    for (tag, (channel, outcome)) in published {
        if outcome.is_ok()
            && let Some(id) = ids.get(tag.as_str())
        {
            acked.entry(channel.as_str()).or_default().push((*id, tag.as_str()));
        }
    }
    for list in acked.values_mut() {
        list.sort();
    }
    let none = Vec::new();
    for (s, (channel, events)) in heard.iter().enumerate() {
        let mut seen = HashSet::new();
        let mut missed: HashSet<String> = HashSet::new();
        let in_order = acked.get(channel.as_str()).unwrap_or(&none);
        // Segments between resets: within one, ids only grow, and no
        // acknowledged event of the channel falls between two heard ones,
        // nor between the reset that opened it (its id) and its first.
        let mut segment: Vec<(u64, u64)> = Vec::new();
        let mut from_reset: Option<(u64, u64)> = None;
        let close = |segment: &mut Vec<(u64, u64)>, from_reset: Option<(u64, u64)>, missed: &mut HashSet<String>| {
            if let (Some(first), Some(last)) = (segment.first(), segment.last()) {
                let heard_here: HashSet<&(u64, u64)> = segment.iter().collect();
                let from = match from_reset {
                    Some(p) => in_order.partition_point(|(id, _)| *id <= p),
                    None => in_order.partition_point(|(id, _)| id <= first),
                };
                let to = in_order.partition_point(|(id, _)| id < last);
                for (id, tag) in in_order.get(from..to).unwrap_or_default() {
                    if !heard_here.contains(id) {
                        missed.insert(tag.to_string());
                    }
                }
            }
            segment.clear();
        };
        for h in events {
            match h {
                Heard::Reset(at) => {
                    close(&mut segment, from_reset, &mut missed);
                    from_reset = *at;
                }
                Heard::Event { id, tag } => {
                    if !seen.insert(tag.clone()) {
                        report.anomaly(format!("subscriber {s} of {channel} heard {tag} twice"));
                    }
                    match published.get(tag) {
                        None => report.anomaly(format!("subscriber {s} heard {tag}, never published")),
                        Some((ch, _)) if ch != channel => {
                            report.anomaly(format!("subscriber {s} of {channel} heard {tag} of {ch}"))
                        }
                        Some((_, Outcome::Failed)) => {
                            report.anomaly(format!("subscriber {s} heard {tag}, whose publish was refused"))
                        }
                        Some(_) => {}
                    }
                    if segment.last().is_some_and(|last| last >= id) {
                        report.anomaly(format!("subscriber {s} of {channel} heard {tag} out of order"));
                    }
                    segment.push(*id);
                }
            }
        }
        close(&mut segment, from_reset, &mut missed);
        // A subscriber that ended on a reset (it was caught up: the
        // sentinel was acknowledged) is owed every event after it.
        if let Some(Heard::Reset(Some(p))) = events.last() {
            let from = in_order.partition_point(|(id, _)| id <= p);
            missed.extend(in_order[from..].iter().map(|(_, tag)| tag.to_string()));
        }
        // A subscriber told of no reset heard every acknowledged event.
        if !events.iter().any(|h| matches!(h, Heard::Reset(_))) {
            for (tag, (ch, outcome)) in published {
                if ch == channel && outcome.is_ok() && !seen.contains(tag) {
                    missed.insert(tag.clone());
                }
            }
        }
        let mut missed: Vec<String> = missed.into_iter().collect();
        missed.sort();
        for tag in &missed {
            report.anomaly(format!("subscriber {s} of {channel} missed {tag}, acknowledged, without a reset"));
        }
        report.lost += missed.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(key: &str, value: u64, before: &[u64]) -> Append {
        Append { key: key.into(), value, outcome: Outcome::Ok(before.to_vec()) }
    }

    fn read(lists: &[(&str, &[u64])]) -> Read {
        Read { outcome: Outcome::Ok(lists.iter().map(|(k, l)| (k.to_string(), l.to_vec())).collect()) }
    }

    fn finals(lists: &[(&str, &[u64])]) -> HashMap<String, Vec<u64>> {
        lists.iter().map(|(k, l)| (k.to_string(), l.to_vec())).collect()
    }

    #[test]
    fn a_serial_history_is_clean() {
        let h = ListHistory {
            appends: vec![append("x", 1, &[]), append("x", 2, &[1]), append("y", 3, &[])],
            reads: vec![read(&[("x", &[1]), ("y", &[])]), read(&[("x", &[1, 2]), ("y", &[3])])],
            finals: finals(&[("x", &[1, 2]), ("y", &[3])]),
        };
        let r = h.check();
        assert!(r.is_clean(), "{r:?}");
    }

    #[test]
    fn a_lost_append_and_a_lost_update_are_found() {
        // 2 and 3 both read [1]: one of them overwrote the other.
        let h = ListHistory {
            appends: vec![append("x", 1, &[]), append("x", 2, &[1]), append("x", 3, &[1])],
            reads: vec![],
            finals: finals(&[("x", &[1, 3])]),
        };
        let r = h.check();
        assert_eq!(r.lost, 1, "{r:?}");
        assert!(r.anomalies.iter().any(|a| a.contains("2 was acknowledged and is gone")), "{r:?}");
    }

    #[test]
    fn write_skew_is_a_g2_cycle() {
        // Each read saw the other key empty, then both appended: no serial
        // order explains it (each must come before the other).
        let h = ListHistory {
            appends: vec![append("x", 1, &[]), append("y", 2, &[])],
            reads: vec![read(&[("x", &[]), ("y", &[2])]), read(&[("x", &[1]), ("y", &[])])],
            finals: finals(&[("x", &[1]), ("y", &[2])]),
        };
        let r = h.check();
        assert!(r.anomalies.iter().any(|a| a.starts_with("G2")), "{r:?}");
        assert_eq!(r.lost, 0);
    }

    #[test]
    fn aborted_and_impossible_reads_are_found() {
        let h = ListHistory {
            appends: vec![append("x", 1, &[]), Append { key: "x".into(), value: 2, outcome: Outcome::Failed }],
            reads: vec![read(&[("x", &[2])]), read(&[("x", &[1, 2])])],
            finals: finals(&[("x", &[1, 2])]),
        };
        let r = h.check();
        assert!(r.anomalies.iter().any(|a| a.contains("refused")), "{r:?}");
        assert!(r.anomalies.iter().any(|a| a.contains("not a prefix")), "{r:?}");
    }

    #[test]
    fn counters_and_ids() {
        let mut r = Report::default();
        check_counter("c", &[Outcome::Ok(1), Outcome::Ok(2), Outcome::Unknown], 2, &mut r);
        check_ids(&[Outcome::Ok(1), Outcome::Ok(2), Outcome::Failed], &mut r);
        assert!(r.is_clean(), "{r:?}");
        check_counter("c", &[Outcome::Ok(1), Outcome::Ok(1)], 1, &mut r);
        check_ids(&[Outcome::Ok(3), Outcome::Ok(3)], &mut r);
        assert_eq!(r.lost, 1);
        assert_eq!(r.anomalies.len(), 3, "{r:?}");
    }

    #[test]
    fn channels_lost_duplicated_and_refused_events_are_found() {
        let ev = |ms: u64, tag: &str| Heard::Event { id: (ms, 0), tag: tag.into() };
        let mut published = HashMap::new();
        for t in ["a", "b", "c"] {
            published.insert(t.to_string(), ("ch".to_string(), Outcome::Ok(())));
        }
        published.insert("x".to_string(), ("ch".to_string(), Outcome::Failed));
        let mut r = Report::default();
        let whole = ("ch".to_string(), vec![ev(1, "a"), ev(2, "b"), ev(3, "c")]);
        let reset_gap = ("ch".to_string(), vec![ev(1, "a"), Heard::Reset(Some((2, 0))), ev(3, "c")]);
        check_channels(&published, &[whole.clone(), reset_gap], &mut r);
        assert!(r.is_clean(), "{r:?}");
        let silent_gap = ("ch".to_string(), vec![ev(1, "a"), ev(3, "c")]);
        let twice = ("ch".to_string(), vec![ev(1, "a"), ev(2, "b"), ev(2, "b"), ev(3, "c")]);
        let refused = ("ch".to_string(), vec![ev(1, "a"), ev(2, "b"), ev(3, "c"), ev(4, "x")]);
        // A reset owes what follows its id: b is after it, and never heard.
        let reset_early = ("ch".to_string(), vec![ev(1, "a"), Heard::Reset(Some((1, 0))), ev(3, "c")]);
        // One that ended on a reset is owed what came after it.
        let ended_early = ("ch".to_string(), vec![ev(1, "a"), ev(2, "b"), Heard::Reset(Some((2, 0)))]);
        check_channels(&published, &[whole, silent_gap, twice, refused, reset_early, ended_early], &mut r);
        assert_eq!(r.lost, 3, "b, between a and c, and after the reset at 1; c after the last reset: {r:?}");
        assert!(r.anomalies.iter().any(|a| a.contains("twice")), "{r:?}");
        assert!(r.anomalies.iter().any(|a| a.contains("refused")), "{r:?}");
    }
}
