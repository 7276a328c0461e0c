//! [`Fleet`]: the member processes of one run, as the parent sees them: started, given
//! orders, heard, waited for with a deadline, and always killed and reaped.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::BenchError;
use crate::proto::{Line, Order};

/// Lines of a member's stderr kept for an error message.
const STDERR_TAIL: usize = 12;

/// How long a member has to exit by itself once told to, before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// How to start a member process: a program and the arguments that select the member's
/// hidden subcommand; the member's settings follow as `--spec JSON`.
///
/// `horus-bench` starts itself as `horus-bench member --spec ...`; a program that embeds the
/// benchmark routes its own hidden subcommand to [`crate::multi::member`] and names it here.
///
/// # Examples
/// ```
/// use horus_benches::multi::Launcher;
///
/// let l = Launcher::new("/usr/local/bin/horus", ["bench-member"]);
/// assert_eq!(l.program().to_str(), Some("/usr/local/bin/horus"));
/// ```
#[derive(Clone, Debug)]
pub struct Launcher {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Launcher {
    /// Members are started as `program args... --spec JSON`.
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        Launcher { program: program.into(), args: args.into_iter().map(Into::into).collect() }
    }

    /// Members are this very program, started with `args` first.
    ///
    /// # Errors
    /// [`BenchError::Spawn`] if the running program's path cannot be found.
    pub fn current_exe(
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Result<Self, BenchError> {
        let program = std::env::current_exe()
            .map_err(|source| BenchError::Spawn { what: "this program's path".into(), source })?;
        Ok(Launcher::new(program, args))
    }

    /// The program members run.
    pub fn program(&self) -> &std::path::Path {
        &self.program
    }
}

/// What a member's stdout said, or that it closed.
enum Heard {
    Line(Line),
    Closed,
}

/// One member process. Dropped, it is killed and reaped.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Lines heard and not yet taken.
    heard: VecDeque<Line>,
    closed: bool,
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The member processes of one run.
pub(crate) struct Fleet {
    what: &'static str,
    procs: Vec<Proc>,
    tx: Sender<(usize, Heard)>,
    rx: Receiver<(usize, Heard)>,
}

impl Fleet {
    /// No process yet; `what` names them in errors (`"member"`, `"raw UDP member"`).
    pub(crate) fn new(what: &'static str) -> Self {
        let (tx, rx) = mpsc::channel();
        Fleet { what, procs: Vec::new(), tx, rx }
    }

    /// Starts member `procs.len()` with `spec`; returns its index.
    pub(crate) fn spawn(&mut self, launcher: &Launcher, spec: &str) -> Result<usize, BenchError> {
        let index = self.procs.len();
        let name = format!("{} {index}", self.what);
        let mut child = Command::new(&launcher.program)
            .args(&launcher.args)
            .arg("--spec")
            .arg(spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BenchError::Spawn {
                what: format!("{name} ({})", launcher.program.display()),
                source,
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr_pipe = child.stderr.take();
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        // The process is reaped by `Proc`'s drop from here on, whatever fails below.
        self.procs.push(Proc {
            name,
            child,
            stdin,
            stderr: stderr.clone(),
            heard: VecDeque::new(),
            closed: false,
        });
        if let Some(out) = stdout {
            let tx = self.tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    // Anything that is not a report (a library's stray print) is ignored.
                    if let Ok(l) = serde_json::from_str::<Line>(&line) {
                        if tx.send((index, Heard::Line(l))).is_err() {
                            return;
                        }
                    }
                }
                let _ = tx.send((index, Heard::Closed));
            });
        }
        if let Some(err) = stderr_pipe {
            thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    let mut tail = stderr.lock().unwrap_or_else(|e| e.into_inner());
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            });
        }
        Ok(index)
    }

    /// Member indices, in order.
    pub(crate) fn all(&self) -> Vec<usize> {
        (0..self.procs.len()).collect()
    }

    /// Gives `order` to member `i`.
    pub(crate) fn order(&mut self, i: usize, order: &Order) -> Result<(), BenchError> {
        let p = &mut self.procs[i];
        let written = match p.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{}", order.to_line()).and_then(|()| stdin.flush()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        written.map_err(|e| BenchError::Member {
            member: p.name.clone(),
            waiting_for: format!("to be told `{}`", order.to_line()),
            why: format!("its stdin is closed ({e}){}", tail(&p.stderr)),
        })
    }

    /// Gives `order` to every member.
    pub(crate) fn order_all(&mut self, order: &Order) -> Result<(), BenchError> {
        (0..self.procs.len()).try_for_each(|i| self.order(i, order))
    }

    /// Waits until every member in `which` has said a line `pick` accepts, and returns what
    /// `pick` made of each, in the order of `which`. Fails at `deadline` naming those that
    /// have not said it (`what` describes the line; `hint` what to check), or at once if one
    /// reports an error or exits first.
    pub(crate) fn wait_for<T>(
        &mut self,
        which: &[usize],
        (what, hint): (&str, &'static str),
        deadline: Instant,
        pick: impl Fn(&Line) -> Option<T>,
    ) -> Result<Vec<T>, BenchError> {
        let mut got: Vec<Option<T>> = which.iter().map(|_| None).collect();
        loop {
            for (slot, &i) in got.iter_mut().zip(which) {
                if slot.is_none() {
                    *slot = self.take(i, what, &pick)?;
                }
            }
            if got.iter().all(Option::is_some) {
                return Ok(got.into_iter().flatten().collect());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((i, Heard::Line(l))) => self.procs[i].heard.push_back(l),
                Ok((i, Heard::Closed)) => self.procs[i].closed = true,
                Err(RecvTimeoutError::Timeout) => {
                    let missing: Vec<String> = which
                        .iter()
                        .zip(&got)
                        .filter(|(_, g)| g.is_none())
                        .map(|(&i, _)| i.to_string())
                        .collect();
                    return Err(BenchError::TimedOut {
                        what: format!("{what} from {} {}", self.what, missing.join(", ")),
                        hint,
                    });
                }
                // Unreachable while we hold a sender; treat as the deadline.
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(BenchError::TimedOut { what: what.into(), hint })
                }
            }
        }
    }

    /// The first line of member `i` that `pick` accepts, if heard (taken; the others are
    /// kept); fails on an error line or a closed stdout.
    fn take<T>(
        &mut self,
        i: usize,
        what: &str,
        pick: &impl Fn(&Line) -> Option<T>,
    ) -> Result<Option<T>, BenchError> {
        let p = &mut self.procs[i];
        if let Some(Line::Error { message }) =
            p.heard.iter().find(|l| matches!(l, Line::Error { .. }))
        {
            return Err(BenchError::Member {
                member: p.name.clone(),
                waiting_for: what.into(),
                why: message.clone(),
            });
        }
        // Lines for a later wait (a receiver's result before its own sender's `sent`) stay.
        if let Some((at, t)) = p.heard.iter().enumerate().find_map(|(at, l)| Some((at, pick(l)?))) {
            p.heard.remove(at);
            return Ok(Some(t));
        }
        if p.closed {
            // Give the stderr reader a moment to take the last words.
            thread::sleep(Duration::from_millis(50));
            let status = match p.child.try_wait() {
                Ok(Some(s)) => s.to_string(),
                _ => "its stdout closed".into(),
            };
            return Err(BenchError::Member {
                member: p.name.clone(),
                waiting_for: what.into(),
                why: format!("it exited ({status}){}", tail(&p.stderr)),
            });
        }
        Ok(None)
    }

    /// Tells every member to exit, waits a little for each, and kills the rest.
    pub(crate) fn finish(mut self) {
        for p in &mut self.procs {
            if let Some(stdin) = p.stdin.as_mut() {
                let _ = writeln!(stdin, "{}", Order::Exit.to_line());
            }
            p.stdin = None;
        }
        let until = Instant::now() + EXIT_GRACE;
        for p in &mut self.procs {
            while matches!(p.child.try_wait(), Ok(None)) && Instant::now() < until {
                thread::sleep(Duration::from_millis(10));
            }
        }
        // Dropping kills and reaps whoever is left.
    }
}

/// `: last words` from a member's stderr, or nothing.
fn tail(stderr: &Mutex<VecDeque<String>>) -> String {
    let lines = stderr.lock().unwrap_or_else(|e| e.into_inner());
    if lines.is_empty() {
        return String::new();
    }
    let text: Vec<&str> = lines.iter().map(String::as_str).collect();
    format!("; its stderr ends: {}", text.join(" | "))
}
