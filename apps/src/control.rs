//! The control protocol between a parent (`horus demo`, a multi-process test) and the member
//! processes it starts with the hidden `horus demo-member` subcommand.
//!
//! Both directions are JSON lines. The parent writes a [`Command`] per line on the member's
//! stdin; the member writes a [`Report`] per line on its stdout, as things happen (its logs go
//! to stderr). A member whose stdin closes stops at once, as a crash would, so no member
//! outlives a parent that died.
//!
//! ```text
//! parent → member  {"cmd":"burst","per_level":2}
//! member → parent  {"ev":"deliver","from":[2,0],"level":"total","text":"p2.0/total/0"}
//! ```
//!
//! # The application the members run
//! A replicated counter: every cast delivered adds one, and a joiner is given the counter (8
//! bytes, little-endian) by state transfer. Members that move together from one view to the
//! next have delivered the same casts, so they report one counter as they install it
//! ([`Report::View`]), and a joiner's [`Report::State`] equals the counter the others gave
//! for its view ([`Report::Snapshot`]).
//!
//! The casts of a [`Command::Burst`] say who cast them, at which level, and their number at
//! that level (`p2.0/total/3`), so each member checks what it can check alone
//! ([`Command::SelfCheck`]): no cast delivered twice, each sender's casts of a level in the
//! order cast, its own casts all delivered, and its counter equal to the state it was given
//! plus what it delivered since.

use std::net::SocketAddr;
use std::path::PathBuf;

use horus_core::{Endpoint, Level, ViewId};
use serde::{Deserialize, Serialize};

/// What the parent asks a member to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Cast `per_level` numbered messages at every level the stack offers, in order.
    Burst { per_level: usize },
    /// Cast `text` at `level`.
    Cast { level: Level, text: String },
    /// Send `text` to the member `to`.
    Send { to: Endpoint, text: String },
    /// Drop every datagram from and to these endpoints (the fault-injection switch).
    Partition { from: Vec<Endpoint> },
    /// Lose this fraction of datagrams each way.
    Loss { fraction: f64 },
    /// Remove every injected fault.
    Heal,
    /// Report the self-check ([`Report::SelfCheck`]).
    SelfCheck,
    /// Leave the group and stop.
    Leave,
}

/// What a member tells its parent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Report {
    /// The member joined the group (it reports its first view next).
    Ready {
        endpoint: Endpoint,
        pid: u32,
        /// Its unicast address: a seed for unicast-only members.
        addr: SocketAddr,
        /// Where it answers `horus probe`, if it does.
        probe: Option<SocketAddr>,
        /// Its history file, when recording.
        record: Option<PathBuf>,
    },
    /// A view installed; `counter` is the application's counter as it was installed.
    View {
        view: ViewId,
        members: Vec<Endpoint>,
        joined: Vec<Endpoint>,
        left: Vec<Endpoint>,
        counter: u64,
    },
    /// A message delivered: a cast at `level`, or a send (`level` absent).
    Deliver { from: Endpoint, level: Option<Level>, text: String },
    /// The member gave its counter to the joiners of `view`.
    Snapshot { view: ViewId, counter: u64 },
    /// The member joined in `view` and was given this counter.
    State { view: ViewId, counter: u64 },
    /// The self-check: `ok` and what was checked, or what failed; and the counter now.
    SelfCheck { ok: bool, detail: String, counter: u64 },
    /// A command failed (the member goes on).
    Failed { command: String, error: String },
    /// The member is out of the group: it left (`left`), or was excluded; with `rejoining`
    /// it joins again as its next incarnation and reports `Ready` again.
    Exit { left: bool, rejoining: bool },
}

impl Report {
    /// The report as one line of the protocol (no newline).
    pub fn to_line(&self) -> String {
        // A report is plain data: serializing it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Command {
    /// The command as one line of the protocol (no newline).
    pub fn to_line(&self) -> String {
        // A command is plain data (a NaN loss becomes `null`, which the member refuses).
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The text of the `k`th cast of `sender` at `level` in a burst.
pub fn burst_text(sender: Endpoint, level: Level, k: usize) -> String {
    format!("{sender}/{level}/{k}")
}

/// The sender's endpoint, as written, and the number of a burst cast's text.
pub fn parse_burst_text(text: &str) -> Option<(&str, Level, usize)> {
    let mut parts = text.split('/');
    let sender = parts.next()?;
    let level = parts.next()?.parse().ok()?;
    let k = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((sender, level, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_reports_round_trip_as_lines() {
        let e = Endpoint::new(2, 1);
        let commands = [
            Command::Burst { per_level: 3 },
            Command::Send { to: e, text: "hi".into() },
            Command::Partition { from: vec![e] },
            Command::Loss { fraction: 0.05 },
            Command::Heal,
            Command::Leave,
        ];
        for c in commands {
            assert_eq!(serde_json::from_str::<Command>(&c.to_line()).unwrap(), c);
        }
        let r = Report::Deliver { from: e, level: Some(Level::Safe), text: "x".into() };
        assert_eq!(serde_json::from_str::<Report>(&r.to_line()).unwrap(), r);
        let r = Report::Exit { left: false, rejoining: true };
        assert_eq!(serde_json::from_str::<Report>(&r.to_line()).unwrap(), r);
    }

    #[test]
    fn burst_texts_parse_back_and_others_do_not() {
        let e = Endpoint::new(3, 0);
        let text = burst_text(e, Level::Causal, 12);
        assert_eq!(parse_burst_text(&text), Some(("p3.0", Level::Causal, 12)));
        for bad in ["", "hello", "p1.0/nolevel/1", "p1.0/fifo/x", "p1.0/fifo/1/2"] {
            assert_eq!(parse_burst_text(bad), None, "{bad}");
        }
    }
}
