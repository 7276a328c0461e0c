//! The parent's side of member processes: start `horus demo-member` processes, tell them what
//! to do, and wait, each wait bounded, for what they report. Used by `horus demo` and by the
//! multi-process tests.
//!
//! A [`Member`] owns its OS process: dropping it kills the process and reaps it, so no member
//! outlives the parent's run, even when a wait fails.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command as Process, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use horus_core::{Endpoint, Level, ViewId};

use crate::control::{Command, Report};

/// Lines of a member's stderr kept for error messages.
const STDERR_KEPT: usize = 8;

/// How the members of a run reach each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// IP multicast to this address on the loopback interface; `None`: the address the
    /// group's name gives ([`horus::default_transport`]).
    Multicast(Option<SocketAddr>),
    /// Unicast only: each member is given the addresses of the live members as seeds.
    Unicast,
}

/// What every member of a run is started with.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The `horus` binary.
    pub bin: PathBuf,
    pub group: String,
    pub stack: String,
    pub transport: Transport,
    /// Each incarnation records to `member-<node>-<incarnation>.jsonl` in this directory.
    pub record_dir: Option<PathBuf>,
    pub state_transfer: bool,
    /// The fraction of datagrams each member loses each way, from the start.
    pub loss: f64,
    /// A member excluded from the group joins again as its next incarnation.
    pub rejoin: bool,
}

impl Spec {
    /// A run of group `group` with the default stack over loopback multicast, state transfer
    /// on, nothing recorded.
    pub fn new(bin: impl Into<PathBuf>, group: impl Into<String>) -> Self {
        Spec {
            bin: bin.into(),
            group: group.into(),
            stack: horus::DEFAULT_STACK.into(),
            transport: Transport::Multicast(None),
            record_dir: None,
            state_transfer: true,
            loss: 0.0,
            rejoin: false,
        }
    }
}

/// Why the parent gave up on a member.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot start {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{who} did not {what} within {waited:?}{stderr}")]
    TimedOut { who: String, what: String, waited: Duration, stderr: String },
    #[error("{who} ended ({status}) before it could {what}{stderr}")]
    Ended { who: String, what: String, status: String, stderr: String },
    #[error("cannot write to {who}: {source}")]
    Write {
        who: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot append the crash of {who} to {path}: {source}")]
    Record {
        who: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A message a member delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The incarnation that delivered it.
    pub by: Endpoint,
    pub from: Endpoint,
    /// The cast's level; `None` for a send.
    pub level: Option<Level>,
    pub text: String,
}

/// A view a member installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewSeen {
    pub by: Endpoint,
    pub view: ViewId,
    pub members: Vec<Endpoint>,
    pub joined: Vec<Endpoint>,
    pub left: Vec<Endpoint>,
    /// The member's counter as it installed the view.
    pub counter: u64,
}

/// Everything a member reported, over all its incarnations.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The current incarnation.
    pub me: Endpoint,
    pub views: Vec<ViewSeen>,
    pub delivered: Vec<Delivery>,
    /// Counters given to joiners: the view joined, the counter.
    pub snapshots: Vec<(ViewId, u64)>,
    /// States installed: the incarnation, the view joined, the counter.
    pub states: Vec<(Endpoint, ViewId, u64)>,
    /// Self-checks: passed, what was checked (or failed), the counter.
    pub self_checks: Vec<(bool, String, u64)>,
    /// Exits: the incarnation, whether it left (rather than being excluded), whether it
    /// joins again.
    pub exits: Vec<(Endpoint, bool, bool)>,
    /// Commands that failed, as reported.
    pub failures: Vec<String>,
}

impl Seen {
    fn new(me: Endpoint) -> Self {
        Seen {
            me,
            views: Vec::new(),
            delivered: Vec::new(),
            snapshots: Vec::new(),
            states: Vec::new(),
            self_checks: Vec::new(),
            exits: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// The members of the last view installed, if any.
    pub fn members(&self) -> Option<&[Endpoint]> {
        self.views.last().map(|v| &v.members[..])
    }

    /// Casts (not sends) delivered by the current incarnation.
    pub fn casts_delivered(&self) -> usize {
        self.casts_delivered_by(self.me)
    }

    /// Casts (not sends) delivered by incarnation `by`.
    pub fn casts_delivered_by(&self, by: Endpoint) -> usize {
        self.delivered.iter().filter(|d| d.by == by && d.level.is_some()).count()
    }
}

/// One member process.
#[derive(Debug)]
pub struct Member {
    /// Its node number: every incarnation's endpoint is `p<node>.<incarnation>`.
    pub node: u64,
    /// The current incarnation.
    pub endpoint: Endpoint,
    pub pid: u32,
    /// Its unicast address.
    pub addr: SocketAddr,
    /// Where it answers `horus probe`.
    pub probe: Option<SocketAddr>,
    /// The current incarnation's history file.
    pub record: Option<PathBuf>,
    pub seen: Seen,
    child: Child,
    stdin: Option<ChildStdin>,
    reports: mpsc::Receiver<Report>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    ended: Option<ExitStatus>,
}

impl Member {
    /// Starts member `node` as `incarnation`, and waits until it has joined (by `deadline`).
    /// Only a `founder` may form the group alone. Unicast-only members join through `seeds`.
    ///
    /// # Errors
    /// [`ClusterError::Spawn`] if the binary does not start; [`ClusterError::TimedOut`] or
    /// [`ClusterError::Ended`] if it does not join in time (the process is killed).
    pub fn spawn(
        spec: &Spec,
        node: u64,
        incarnation: u32,
        founder: bool,
        seeds: &[SocketAddr],
        deadline: Instant,
    ) -> Result<Member, ClusterError> {
        let mut cmd = Process::new(&spec.bin);
        cmd.arg("demo-member")
            .args(["--group", &spec.group, "--stack", &spec.stack])
            .args(["--node", &node.to_string(), "--incarnation", &incarnation.to_string()])
            .args(["--join-timeout", &format!("{}ms", remaining(deadline).as_millis().max(1))]);
        match &spec.transport {
            Transport::Multicast(Some(addr)) => {
                cmd.args(["--multicast", &addr.to_string()]);
            }
            Transport::Multicast(None) => {}
            Transport::Unicast => {
                cmd.arg("--unicast");
                if !seeds.is_empty() {
                    let seeds: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
                    cmd.args(["--seeds", &seeds.join(",")]);
                }
            }
        }
        if let Some(dir) = &spec.record_dir {
            cmd.arg("--record-dir").arg(dir);
        }
        if spec.state_transfer {
            cmd.arg("--state-transfer");
        }
        if spec.loss > 0.0 {
            cmd.args(["--loss", &spec.loss.to_string()]);
        }
        if spec.rejoin {
            cmd.arg("--rejoin");
        }
        if !founder {
            cmd.arg("--no-found");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ClusterError::Spawn { bin: spec.bin.clone(), source })?;
        let stdin = child.stdin.take();
        let (tx, reports) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || read_reports(out, tx));
        }
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let kept = stderr.clone();
            std::thread::spawn(move || keep_stderr(err, &kept));
        }
        let mut member = Member {
            node,
            endpoint: Endpoint::new(node, incarnation),
            pid: child.id(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            probe: None,
            record: None,
            seen: Seen::new(Endpoint::new(node, incarnation)),
            child,
            stdin,
            reports,
            stderr,
            ended: None,
        };
        // Dropped on failure: the process is killed.
        member.wait_ready(deadline)?;
        Ok(member)
    }

    /// Waits for the next `Ready`: the member (or its next incarnation) has joined.
    pub fn wait_ready(&mut self, deadline: Instant) -> Result<(), ClusterError> {
        let mut ready = false;
        self.wait_for("join the group", deadline, |report| {
            ready |= matches!(report, Report::Ready { .. });
            ready
        })
    }

    /// Tells the member to do `command`.
    ///
    /// # Errors
    /// [`ClusterError::Write`] if its stdin is closed (it has ended).
    pub fn command(&mut self, command: &Command) -> Result<(), ClusterError> {
        let who = self.endpoint.to_string();
        let Some(stdin) = self.stdin.as_mut() else {
            let source = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin closed");
            return Err(ClusterError::Write { who, source });
        };
        let line = command.to_line();
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush())
            .map_err(|source| ClusterError::Write { who, source })
    }

    /// Reads reports until `cond` holds of what the member has reported (at once if it
    /// holds already), or `deadline`.
    ///
    /// # Errors
    /// [`ClusterError::TimedOut`] at the deadline; [`ClusterError::Ended`] if the process
    /// ends first.
    pub fn wait(
        &mut self,
        what: &str,
        deadline: Instant,
        cond: impl Fn(&Seen) -> bool,
    ) -> Result<(), ClusterError> {
        let started = Instant::now();
        while !cond(&self.seen) {
            self.next_report(what, started, deadline)?;
        }
        Ok(())
    }

    /// Reads reports until `on_report` returns true for one.
    fn wait_for(
        &mut self,
        what: &str,
        deadline: Instant,
        mut on_report: impl FnMut(&Report) -> bool,
    ) -> Result<(), ClusterError> {
        let started = Instant::now();
        loop {
            let report = self.next_report(what, started, deadline)?;
            if on_report(&report) {
                return Ok(());
            }
        }
    }

    /// The next report, applied to what was seen.
    fn next_report(
        &mut self,
        what: &str,
        started: Instant,
        deadline: Instant,
    ) -> Result<Report, ClusterError> {
        let report = match self.reports.recv_timeout(remaining(deadline)) {
            Ok(report) => report,
            Err(RecvTimeoutError::Timeout) => {
                return Err(ClusterError::TimedOut {
                    who: self.endpoint.to_string(),
                    what: what.to_owned(),
                    waited: started.elapsed(),
                    stderr: self.stderr_tail(),
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.reap(deadline);
                return Err(ClusterError::Ended {
                    who: self.endpoint.to_string(),
                    what: what.to_owned(),
                    status,
                    stderr: self.stderr_tail(),
                });
            }
        };
        self.apply(&report);
        Ok(report)
    }

    fn apply(&mut self, report: &Report) {
        let seen = &mut self.seen;
        match report.clone() {
            Report::Ready { endpoint, pid, addr, probe, record } => {
                self.endpoint = endpoint;
                seen.me = endpoint;
                self.pid = pid;
                self.addr = addr;
                self.probe = probe;
                self.record = record;
            }
            Report::View { view, members, joined, left, counter } => {
                seen.views.push(ViewSeen {
                    by: self.endpoint,
                    view,
                    members,
                    joined,
                    left,
                    counter,
                });
            }
            Report::Deliver { from, level, text } => {
                seen.delivered.push(Delivery { by: self.endpoint, from, level, text });
            }
            Report::Snapshot { view, counter } => seen.snapshots.push((view, counter)),
            Report::State { view, counter } => seen.states.push((self.endpoint, view, counter)),
            Report::SelfCheck { ok, detail, counter } => {
                seen.self_checks.push((ok, detail, counter))
            }
            Report::Failed { command, error } => seen.failures.push(format!("{command}: {error}")),
            Report::Exit { left, rejoining } => seen.exits.push((self.endpoint, left, rejoining)),
        }
    }

    /// Asks for the self-check and waits for it; returns it.
    pub fn self_check(&mut self, deadline: Instant) -> Result<(bool, String, u64), ClusterError> {
        let before = self.seen.self_checks.len();
        self.command(&Command::SelfCheck)?;
        self.wait("report its self-check", deadline, |s| s.self_checks.len() > before)?;
        Ok(self.seen.self_checks[before].clone())
    }

    /// Leaves the group, and waits for the exit and for the process to end.
    pub fn leave(&mut self, deadline: Instant) -> Result<(), ClusterError> {
        let started = Instant::now();
        let before = self.seen.exits.len();
        self.command(&Command::Leave)?;
        self.wait("leave the group", deadline, |s| s.exits.len() > before)?;
        self.stdin = None;
        self.reap(deadline);
        match self.ended {
            Some(_) => Ok(()),
            None => Err(ClusterError::TimedOut {
                who: self.endpoint.to_string(),
                what: "end after leaving".into(),
                waited: started.elapsed(),
                stderr: self.stderr_tail(),
            }),
        }
    }

    /// Waits until the member's history file holds every cast it was seen to deliver: lines
    /// reach the file within 50ms of happening, and a process killed before loses them.
    pub fn wait_recorded(&mut self, deadline: Instant) -> Result<(), ClusterError> {
        let Some(path) = self.record.clone() else { return Ok(()) };
        let started = Instant::now();
        let want = self.seen.casts_delivered_by(self.endpoint);
        loop {
            let have = std::fs::read_to_string(&path)
                .map(|text| text.lines().filter(|l| l.contains("\"ev\":\"deliver\"")).count())
                .unwrap_or(0);
            if have >= want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::TimedOut {
                    who: self.endpoint.to_string(),
                    what: format!(
                        "record its {want} deliveries in {} (has {have})",
                        path.display()
                    ),
                    waited: started.elapsed(),
                    stderr: self.stderr_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process with SIGKILL, reaps it, and, when it recorded, ends its history
    /// with a `crash` line (a history that just stops reads as a process still running).
    pub fn kill(&mut self) -> Result<(), ClusterError> {
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.ended = Some(status);
        }
        self.stdin = None;
        match self.record.clone() {
            Some(path) => append_crash(&path, self.endpoint).map_err(|source| {
                ClusterError::Record { who: self.endpoint.to_string(), path, source }
            }),
            None => Ok(()),
        }
    }

    /// The process's exit status, once it has ended.
    pub fn status(&self) -> Option<ExitStatus> {
        self.ended
    }

    /// Waits for the process to end until `deadline`, then kills it; describes how it ended.
    fn reap(&mut self, deadline: Instant) -> String {
        while self.ended.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => self.ended = Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = self.child.kill();
                    self.ended = self.child.wait().ok();
                    break;
                }
            }
        }
        self.ended.map_or_else(|| "unknown status".into(), |s| s.to_string())
    }

    fn stderr_tail(&self) -> String {
        let kept = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        if kept.is_empty() {
            return String::new();
        }
        let lines: Vec<&str> = kept.iter().map(|s| s.as_str()).collect();
        format!("; its stderr ends:\n  {}", lines.join("\n  "))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if self.ended.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `cond` holds of what every member reported, each by `deadline`.
pub fn wait_all(
    members: &mut [Member],
    what: &str,
    deadline: Instant,
    cond: impl Fn(&Seen) -> bool,
) -> Result<(), ClusterError> {
    members.iter_mut().try_for_each(|m| m.wait(what, deadline, &cond))
}

/// Every member casts `per_level` numbered messages at each of `levels` levels
/// ([`Command::Burst`]); waits until each has delivered all of them. Returns how many casts
/// that was.
pub fn burst(
    members: &mut [Member],
    per_level: usize,
    levels: usize,
    deadline: Instant,
) -> Result<usize, ClusterError> {
    let before: Vec<usize> = members.iter().map(|m| m.seen.casts_delivered()).collect();
    for m in members.iter_mut() {
        m.command(&Command::Burst { per_level })?;
    }
    let more = members.len() * levels * per_level;
    for (m, b) in members.iter_mut().zip(before) {
        m.wait("deliver everyone's casts", deadline, |s| s.casts_delivered() >= b + more)?;
    }
    Ok(more)
}

fn read_reports(out: impl Read, tx: mpsc::Sender<Report>) {
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        // Anything else on stdout (there should be nothing) is skipped.
        if let Ok(report) = serde_json::from_str::<Report>(&line) {
            if tx.send(report).is_err() {
                break;
            }
        }
    }
}

fn keep_stderr(err: impl Read, kept: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(err).lines() {
        let Ok(line) = line else { break };
        let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == STDERR_KEPT {
            kept.pop_front();
        }
        kept.push_back(line);
    }
}

/// Appends a `crash` line for `who` to the history file at `path`, first cutting off a line
/// the process was killed in the middle of writing.
pub fn append_crash(path: &Path, who: Endpoint) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    let mut text = Vec::new();
    file.read_to_end(&mut text)?;
    let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if whole < text.len() {
        file.set_len(whole as u64)?;
    }
    file.seek(SeekFrom::Start(whole as u64))?;
    let at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let line = serde_json::json!({ "at": at, "p": who, "ev": "crash" });
    writeln!(file, "{line}")?;
    file.sync_all()
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
