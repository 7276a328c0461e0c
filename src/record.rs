//! Recording a member's history as JSON lines, in the format of
//! [`horus_core::history`] (the one the simulator writes and `horus check` reads).
//!
//! The file begins with the header line (format version
//! [`FORMAT_VERSION`] and the run's
//! [`Promises`]: the membership policy of the stack and whether state transfer is on), then
//! one line per event of this member, in the order they happened here:
//! - `view` when the member installs a view (no digest: the Group does not know the
//!   application's state);
//! - `cast` when a cast (or a call, which is a cast at the `fifo` level) is handed to the
//!   stack, with its id `[me, seq]`, `seq` the cast counter the Group's header carries;
//! - `deliver` when a cast is delivered, with the id read from its header;
//! - `snapshot` and `state`, with state transfer on, carrying as digest a 64-bit FNV-1a hash of
//!   the state's bytes: so the checker verifies that the members gave one state for a view's
//!   joiners and that each joiner got it. Two members with equal states must then encode them
//!   to equal bytes (sort a map before encoding it);
//! - `leave` when the application asks to leave, `exit` when the member is out, `crash` when
//!   every handle was dropped without leaving.
//!
//! Sends are not recorded (the history format holds casts only). Times are wall-clock
//! nanoseconds since the Unix epoch, so the files of members on one host line up; the checker
//! uses them for reports only.
//!
//! Lines are buffered and written when a view is installed, when the member leaves or exits,
//! and otherwise within [`FLUSH_EVERY`] of being recorded: a process killed abruptly loses at
//! most that much of its history (a history that stops is read as that of a process that
//! crashed there only if a `crash` line is appended for it).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use horus_core::history::{Event, Promises, FORMAT_VERSION};
use horus_core::{Endpoint, Time};
use serde::Serialize;

use crate::error::Error;

/// How long a recorded line may wait in the buffer before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

#[derive(Serialize)]
struct Header<'a> {
    horus_history: u32,
    promises: &'a Promises,
}

#[derive(Serialize)]
struct Line<'a> {
    at: Time,
    p: Endpoint,
    #[serde(flatten)]
    ev: &'a Event,
}

/// The history file of one member.
#[derive(Debug)]
pub(crate) struct Recorder {
    out: BufWriter<File>,
    path: PathBuf,
    me: Endpoint,
    /// When the oldest line not yet written was recorded.
    dirty_since: Option<Instant>,
    /// A write failed: logged once, and nothing more is recorded.
    failed: bool,
}

impl Recorder {
    /// Creates (or truncates) the file at `path` and writes the header.
    pub(crate) fn create(path: &Path, me: Endpoint, promises: &Promises) -> Result<Self, Error> {
        let fail = |source| Error::Record { path: path.to_owned(), source };
        let mut out = BufWriter::new(File::create(path).map_err(fail)?);
        let header = Header { horus_history: FORMAT_VERSION, promises };
        serde_json::to_writer(&mut out, &header).map_err(|e| fail(e.into()))?;
        out.write_all(b"\n").and_then(|()| out.flush()).map_err(fail)?;
        Ok(Recorder { out, path: path.to_owned(), me, dirty_since: None, failed: false })
    }

    /// Appends `ev`, at the wall-clock time now.
    pub(crate) fn record(&mut self, ev: &Event) {
        if self.failed {
            return;
        }
        let line = Line { at: wall_clock(), p: self.me, ev };
        let written = serde_json::to_writer(&mut self.out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        self.dirty_since.get_or_insert_with(Instant::now);
        self.check(written);
    }

    /// When the lines waiting in the buffer are due to be written, if any wait.
    pub(crate) fn flush_due(&self) -> Option<Instant> {
        self.dirty_since.filter(|_| !self.failed).map(|t| t + FLUSH_EVERY)
    }

    /// Writes what is buffered to the file.
    pub(crate) fn flush(&mut self) {
        if self.failed {
            return;
        }
        self.dirty_since = None;
        let flushed = self.out.flush();
        self.check(flushed);
    }

    fn check(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            self.failed = true;
            tracing::warn!(path = %self.path.display(), error = %e, "history recording stopped: write failed");
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
fn wall_clock() -> Time {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Time::from_nanos(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// The digest of a state recorded in `snapshot` and `state` lines: FNV-1a, 64 bits.
pub(crate) fn digest(state: &[u8]) -> u64 {
    state.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use horus_core::history::{History, Membership, MsgId};
    use horus_core::{Level, View};

    use super::*;

    #[test]
    fn recorded_file_reads_back_as_a_history() {
        let dir = std::env::temp_dir().join(format!("horus-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p1.jsonl");
        let me = Endpoint::new(1, 0);
        let promises = Promises { membership: Membership::Primary, ..Promises::default() };
        let id = MsgId { sender: me, seq: 1 };
        let events = [
            Event::View { view: View::initial(vec![me]), digest: None },
            Event::Cast { id, level: Level::Total },
            Event::Deliver { id, from: me, level: Level::Total },
            Event::Leave,
            Event::Exit,
        ];
        {
            let mut r = Recorder::create(&path, me, &promises).unwrap();
            for ev in &events {
                r.record(ev);
            }
            assert!(r.flush_due().is_some());
            r.flush();
            assert!(r.flush_due().is_none());
        }
        let file = std::io::BufReader::new(File::open(&path).unwrap());
        let (h, p) = History::read_jsonl(file).unwrap();
        assert_eq!(p, Some(promises));
        let got: Vec<Event> = h.procs[&me].events.iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(got, events);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flush_is_due_from_the_oldest_line_not_written() {
        let path = std::env::temp_dir().join(format!("horus-flush-{}.jsonl", std::process::id()));
        let me = Endpoint::new(1, 0);
        let mut r = Recorder::create(&path, me, &Promises::default()).unwrap();
        assert_eq!(r.flush_due(), None);
        r.record(&Event::Leave);
        let due = r.flush_due().expect("a line waits");
        // Lines recorded later do not put the flush off: steady traffic still gets written.
        r.record(&Event::Leave);
        assert_eq!(r.flush_due(), Some(due));
        r.flush();
        assert_eq!(r.flush_due(), None);
        drop(r);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn digest_tells_states_apart() {
        assert_eq!(digest(b"abc"), digest(b"abc"));
        assert_ne!(digest(b"abc"), digest(b"abd"));
        assert_ne!(digest(b""), digest(b"\0"));
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let path = Path::new("/nonexistent-horus-dir/p.jsonl");
        let err = Recorder::create(path, Endpoint::new(1, 0), &Promises::default()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-horus-dir/p.jsonl"), "{err}");
    }
}
