//! Histories: what each process saw, in the one format the simulator and real processes write
//! and the [checker](crate::check) reads.
//!
//! A history is, per process incarnation ([`Endpoint`]), the sequence of views it installed,
//! messages it cast and delivered, and how it ended (crash or exit). Events of one process are
//! in the order they happened at that process; times are the recorder's clock and are used only
//! for reports and the liveness bound, never to order events of different processes.
//!
//! # The JSON lines format, version 2
//!
//! A file is UTF-8 text, one JSON object per line. The first line is the header:
//!
//! ```text
//! {"horus_history":2,"promises":{"membership":"static","liveness":{"after":0,"bound":null}}}
//! ```
//!
//! `promises` says what the run promises and so what the checker verifies (see [`Promises`]);
//! it may be omitted (then only the properties every run promises are checked). Every other
//! line is one event of one process:
//!
//! ```text
//! {"at":1000,"p":[1,0],"ev":"view","view":{"id":{"ltime":0,"coord":[0,0]},"members":[[0,0],[1,0]]}}
//! {"at":2000,"p":[1,0],"ev":"cast","id":[[1,0],1],"level":"total"}
//! {"at":2500,"p":[1,0],"ev":"deliver","id":[[1,0],1],"from":[1,0],"level":"total"}
//! {"at":9000,"p":[1,0],"ev":"crash"}
//! ```
//!
//! `at` is nanoseconds on the recorder's clock; `p` is the endpoint `[node, incarnation]`;
//! `id` is the message id `[sender, seq]`, where a sender numbers its casts 1, 2, 3, … in the
//! order it makes them. `ev` is one of `view`, `cast`, `deliver`, `snapshot`, `state`, `crash`
//! (the process died here), `leave` (the application asked to leave) and `exit` (it left the
//! group, or learnt it was excluded, and stopped). Lines of one process appear in the order of its events; lines of different
//! processes may interleave in any way, and several files (one per process) may be read as one
//! history. Readers reject a header whose version they do not know, and lines they cannot
//! parse, with the line number.
//!
//! State transfer adds (version 2) a digest of the application's state: a 64-bit value that
//! two processes with equal states have equal (the simulator's application sums a hash of each
//! cast it delivered). A `view` line may carry `"digest":D`, the process's digest as it
//! installed the view. A member of the previous view that gives its state for a view's joiners
//! writes `{"ev":"snapshot","view":ID,"digest":D}`, and a joiner that installs the state it was
//! given writes `{"ev":"state","view":ID,"digest":D}`, `ID` being the id of the view joined, as
//! in `{"ltime":3,"coord":[0,0]}`. Version 1 files (no digests, no state events) are read as
//! they are.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{Endpoint, View, ViewId};
use crate::level::Level;
use crate::time::Time;

/// The version of the JSON lines format this crate writes.
pub const FORMAT_VERSION: u32 = 2;

/// The versions this crate reads: every version before this one is a subset of it.
pub const READS: std::ops::RangeInclusive<u32> = 1..=FORMAT_VERSION;

/// A message's identity: its sender and the sender's count of casts so far (from 1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(from = "(Endpoint, u64)", into = "(Endpoint, u64)")]
pub struct MsgId {
    pub sender: Endpoint,
    pub seq: u64,
}

impl From<(Endpoint, u64)> for MsgId {
    fn from((sender, seq): (Endpoint, u64)) -> Self {
        MsgId { sender, seq }
    }
}

impl From<MsgId> for (Endpoint, u64) {
    fn from(m: MsgId) -> Self {
        (m.sender, m.seq)
    }
}

impl std::fmt::Display for MsgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.sender, self.seq)
    }
}

/// One thing that happened at one process.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "lowercase")]
pub enum Event {
    /// The process installed `view`; with state transfer, `digest` is its application's state
    /// digest at that moment.
    View {
        view: View,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<u64>,
    },
    /// The process cast message `id` at `level` (in the view it had last installed).
    Cast { id: MsgId, level: Level },
    /// The process delivered message `id`, which the stack says came from `from`.
    Deliver { id: MsgId, from: Endpoint, level: Level },
    /// A member of the previous view gave its state, as of the boundary of `view`, for the
    /// joiners of `view`: its digest was `digest`.
    Snapshot { view: ViewId, digest: u64 },
    /// A joiner of `view` installed the state it was given, of digest `digest`.
    State { view: ViewId, digest: u64 },
    /// The process crashed: nothing more happens at this endpoint.
    Crash,
    /// The process left the group, or learnt that it was excluded, and stopped.
    Exit,
    /// The application asked to leave the group (it exits once a view change removes it, and
    /// takes part in that change: it counts toward the majority that makes the next view).
    Leave,
}

/// What a run promises, and so what the checker verifies beyond the properties every run
/// must have.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Promises {
    pub membership: Membership,
    /// When present: faults stopped at `after`, and from then on the group must settle.
    #[serde(default)]
    pub liveness: Option<Liveness>,
    /// Joiners are given the state: a process whose first view names a previous one installs
    /// a state before it delivers anything.
    #[serde(default, skip_serializing_if = "is_false")]
    pub state_transfer: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How membership behaves in the run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    /// One view for the whole run (no membership service): liveness means every live member
    /// delivers every message live members cast.
    #[default]
    Static,
    /// Primary partition: the views installed form one sequence, each with a majority of the
    /// one before.
    Primary,
    /// Extended virtual synchrony: each side of a partition goes on in a view of its own.
    Partitionable,
}

/// The liveness promise: faults (crashes, partitions, loss bursts) stopped at `after`; every
/// process alive at the end installs one common view, made of exactly the live processes
/// (with dynamic membership), by `after + bound` when a bound is given, and delivers every
/// message cast in it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Liveness {
    pub after: Time,
    #[serde(default, with = "opt_nanos")]
    pub bound: Option<Duration>,
}

/// The events of one process incarnation, in order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProcessHistory {
    pub endpoint: Endpoint,
    pub events: Vec<(Time, Event)>,
}

impl ProcessHistory {
    pub fn new(endpoint: Endpoint) -> Self {
        ProcessHistory { endpoint, events: Vec::new() }
    }

    /// Whether the process ended by crashing or exiting (rather than running to the end).
    pub fn ended(&self) -> bool {
        matches!(self.events.last(), Some((_, Event::Crash | Event::Exit)))
    }
}

/// The histories of all processes of a run, keyed by endpoint.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct History {
    pub procs: BTreeMap<Endpoint, ProcessHistory>,
}

/// One line of the format, as written.
#[derive(Serialize, Deserialize)]
struct Line {
    at: Time,
    p: Endpoint,
    #[serde(flatten)]
    ev: Event,
}

#[derive(Serialize, Deserialize)]
struct Header {
    horus_history: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    promises: Option<Promises>,
}

/// A history file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reading history: {0}")]
    Io(#[from] io::Error),
    #[error("line {line}: not a history event: {reason}")]
    Parse { line: usize, reason: String },
    #[error("history format version {0} is not known to this build (it reads versions 1 to {FORMAT_VERSION}); upgrade horus")]
    Version(u32),
    #[error("the history files disagree on what the run promises")]
    PromisesDiffer,
}

impl History {
    pub fn new() -> Self {
        History::default()
    }

    /// Appends an event to `who`'s history.
    pub fn record(&mut self, at: Time, who: Endpoint, ev: Event) {
        self.procs.entry(who).or_insert_with(|| ProcessHistory::new(who)).events.push((at, ev));
    }

    /// Number of events in all processes.
    pub fn len(&self) -> usize {
        self.procs.values().map(|p| p.events.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the history as JSON lines: the header, then every event in time order (events of
    /// one process keep their order).
    pub fn write_jsonl(&self, promises: Option<&Promises>, mut w: impl Write) -> io::Result<()> {
        let header = Header { horus_history: FORMAT_VERSION, promises: promises.cloned() };
        serde_json::to_writer(&mut w, &header)?;
        w.write_all(b"\n")?;
        let mut all: Vec<(Time, Endpoint, usize)> = Vec::with_capacity(self.len());
        for p in self.procs.values() {
            all.extend(p.events.iter().enumerate().map(|(i, (t, _))| (*t, p.endpoint, i)));
        }
        all.sort(); // by time, then process, then position: stable per process
        for (at, p, i) in all {
            let ev = self.procs[&p].events[i].1.clone();
            serde_json::to_writer(&mut w, &Line { at, p, ev })?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Reads a history written by [`History::write_jsonl`] (or by several recorders and
    /// concatenated). Returns the promises of the header, if any.
    pub fn read_jsonl(r: impl BufRead) -> Result<(History, Option<Promises>), HistoryError> {
        let mut history = History::new();
        let promises = history.extend_jsonl(r)?;
        Ok((history, promises))
    }

    /// Adds the events of another file to this history; returns that file's promises.
    pub fn extend_jsonl(&mut self, r: impl BufRead) -> Result<Option<Promises>, HistoryError> {
        let mut promises = None;
        for (i, line) in r.lines().enumerate() {
            let line = line?;
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            if line.contains("\"horus_history\"") {
                let h: Header = serde_json::from_str(&line)
                    .map_err(|e| HistoryError::Parse { line: n, reason: e.to_string() })?;
                if !READS.contains(&h.horus_history) {
                    return Err(HistoryError::Version(h.horus_history));
                }
                match (&promises, h.promises) {
                    (Some(a), Some(b)) if *a != b => return Err(HistoryError::PromisesDiffer),
                    (_, Some(b)) => promises = Some(b),
                    _ => {}
                }
                continue;
            }
            let l: Line = serde_json::from_str(&line)
                .map_err(|e| HistoryError::Parse { line: n, reason: e.to_string() })?;
            self.record(l.at, l.p, l.ev);
        }
        Ok(promises)
    }
}

mod opt_nanos {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_nanos() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::View;

    fn e(n: u64) -> Endpoint {
        Endpoint::new(n, 0)
    }

    #[test]
    fn jsonl_round_trip_keeps_every_event_and_the_promises() {
        let mut h = History::new();
        let v = View::initial(vec![e(0), e(1)]);
        for p in [e(0), e(1)] {
            h.record(Time(10), p, Event::View { view: v.clone(), digest: Some(7) });
        }
        let id = MsgId { sender: e(1), seq: 1 };
        h.record(Time(20), e(1), Event::Cast { id, level: Level::Total });
        h.record(Time(30), e(0), Event::Deliver { id, from: e(1), level: Level::Total });
        h.record(Time(30), e(1), Event::Deliver { id, from: e(1), level: Level::Total });
        h.record(Time(35), e(1), Event::Snapshot { view: v.id, digest: u64::MAX });
        h.record(Time(36), e(0), Event::State { view: v.id, digest: u64::MAX });
        h.record(Time(40), e(0), Event::Crash);
        let promises = Promises {
            membership: Membership::Primary,
            liveness: Some(Liveness { after: Time(40), bound: Some(Duration::from_secs(2)) }),
            state_transfer: true,
        };
        let mut buf = Vec::new();
        h.write_jsonl(Some(&promises), &mut buf).unwrap();
        let (back, p) = History::read_jsonl(&buf[..]).unwrap();
        assert_eq!(back, h);
        assert_eq!(p, Some(promises));
    }

    #[test]
    fn documented_example_lines_parse() {
        let text = r#"{"horus_history":2,"promises":{"membership":"static","liveness":{"after":0,"bound":null}}}
{"at":1000,"p":[1,0],"ev":"view","view":{"id":{"ltime":0,"coord":[0,0]},"members":[[0,0],[1,0]]}}
{"at":2000,"p":[1,0],"ev":"cast","id":[[1,0],1],"level":"total"}
{"at":2500,"p":[1,0],"ev":"deliver","id":[[1,0],1],"from":[1,0],"level":"total"}
{"at":9000,"p":[1,0],"ev":"crash"}
"#;
        let (h, p) = History::read_jsonl(text.as_bytes()).unwrap();
        assert_eq!(h.len(), 4);
        assert!(h.procs[&e(1)].ended());
        assert_eq!(p.unwrap().membership, Membership::Static);
    }

    #[test]
    fn documented_state_lines_parse_and_version_1_is_still_read() {
        let text = r#"{"horus_history":2,"promises":{"membership":"primary","state_transfer":true}}
{"at":1000,"p":[1,0],"ev":"view","view":{"id":{"ltime":3,"coord":[0,0]},"members":[[0,0],[1,0]]},"digest":12}
{"at":1000,"p":[1,0],"ev":"snapshot","view":{"ltime":3,"coord":[0,0]},"digest":12}
{"at":1200,"p":[2,1],"ev":"state","view":{"ltime":3,"coord":[0,0]},"digest":12}
"#;
        let (h, p) = History::read_jsonl(text.as_bytes()).unwrap();
        assert!(p.unwrap().state_transfer);
        let id = ViewId::new(3, e(0));
        assert_eq!(h.procs[&e(1)].events[1].1, Event::Snapshot { view: id, digest: 12 });
        assert!(matches!(h.procs[&e(1)].events[0].1, Event::View { digest: Some(12), .. }));
        assert_eq!(
            h.procs[&Endpoint::new(2, 1)].events[0].1,
            Event::State { view: id, digest: 12 }
        );
        let v1 = "{\"horus_history\":1}\n{\"at\":1,\"p\":[0,0],\"ev\":\"crash\"}\n";
        let (h, p) = History::read_jsonl(v1.as_bytes()).unwrap();
        assert_eq!((h.len(), p), (1, None));
    }

    #[test]
    fn unknown_version_and_garbage_are_errors_not_panics() {
        let err = History::read_jsonl(&b"{\"horus_history\":99}\n"[..]).unwrap_err();
        assert!(matches!(err, HistoryError::Version(99)));
        let err = History::read_jsonl(&b"{\"horus_history\":1}\nnot json\n"[..]).unwrap_err();
        assert!(matches!(err, HistoryError::Parse { line: 2, .. }));
    }
}

/// Delivery latencies by service level: from a cast to each delivery of it (the sender's own
/// included), on the recorder's clock. Meaningful when one clock recorded every process, as in
/// the simulator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latencies {
    /// Nanoseconds, by level, in no particular order.
    pub samples: std::collections::BTreeMap<Level, Vec<u64>>,
}

impl Latencies {
    /// Adds the latencies of every delivery in `history`.
    pub fn add(&mut self, history: &History) {
        let mut cast_at = std::collections::HashMap::new();
        for p in history.procs.values() {
            for (t, e) in &p.events {
                if let Event::Cast { id, .. } = e {
                    cast_at.insert(*id, *t);
                }
            }
        }
        for p in history.procs.values() {
            for (t, e) in &p.events {
                if let Event::Deliver { id, level, .. } = e {
                    if let Some(c) = cast_at.get(id) {
                        self.samples.entry(*level).or_default().push(t.0.saturating_sub(c.0));
                    }
                }
            }
        }
    }

    /// `(count, p50, p99, max)` in nanoseconds for each level with samples.
    pub fn summary(&mut self) -> Vec<(Level, usize, u64, u64, u64)> {
        self.samples
            .iter_mut()
            .filter(|(_, v)| !v.is_empty())
            .map(|(level, v)| {
                v.sort_unstable();
                let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
                (*level, v.len(), q(0.5), q(0.99), v[v.len() - 1])
            })
            .collect()
    }
}
