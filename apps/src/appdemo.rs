//! The parent's side of the application demos: start `horus app-member` processes, ask them
//! things, watch their views, kill them (see [`crate::appmember`] for the protocol).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use horus::Endpoint;
use serde_json::{json, Value};

/// What every member of a demo is started with.
#[derive(Clone, Debug)]
pub struct AppSpec {
    /// The `horus` binary.
    pub bin: PathBuf,
    /// The application (one of [`crate::appmember::APPS`]).
    pub app: String,
    pub group: String,
    pub stack: String,
    /// Each incarnation records to `member-<node>-<incarnation>.jsonl` here.
    pub record_dir: Option<PathBuf>,
}

/// One member process of a demo.
#[derive(Debug)]
pub struct AppMember {
    pub endpoint: Endpoint,
    pub pid: u32,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    /// Answers and events read but not yet asked for.
    stash: VecDeque<Value>,
    /// The last view it told: its id and members.
    pub view: Option<(String, Vec<Endpoint>)>,
    next_id: u64,
    /// Its history file, when recording.
    pub record: Option<PathBuf>,
}

impl AppMember {
    /// Starts member `node` as `incarnation` and waits until it has joined (by `deadline`);
    /// only a `founder` may form the group alone.
    ///
    /// # Errors
    /// If the process does not start, or does not join in time (it is then killed).
    pub fn spawn(
        spec: &AppSpec,
        node: u64,
        incarnation: u32,
        founder: bool,
        deadline: Instant,
    ) -> Result<AppMember, String> {
        let mut cmd = Process::new(&spec.bin);
        cmd.arg("app-member")
            .args(["--app", &spec.app, "--group", &spec.group, "--stack", &spec.stack])
            .args(["--node", &node.to_string(), "--incarnation", &incarnation.to_string()]);
        if !founder {
            cmd.arg("--no-found");
        }
        if let Some(dir) = &spec.record_dir {
            cmd.arg("--record-dir").arg(dir);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.bin.display()))?;
        let (tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            });
        }
        let endpoint = Endpoint::new(node, incarnation);
        let mut m = AppMember {
            endpoint,
            pid: child.id(),
            stdin: child.stdin.take(),
            child,
            lines,
            stash: VecDeque::new(),
            view: None,
            next_id: 0,
            record: spec
                .record_dir
                .as_ref()
                .map(|d| d.join(format!("member-{node}-{incarnation}.jsonl"))),
        };
        m.wait_for(deadline, "join the group", |v| v.get("ev") == Some(&json!("ready")))?;
        Ok(m)
    }

    /// Reads lines until one satisfies `want` (which is taken); views are noted on the way,
    /// anything else is kept for later.
    fn wait_for(
        &mut self,
        deadline: Instant,
        what: &str,
        want: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        if let Some(i) = self.stash.iter().position(&want) {
            return Ok(self.stash.remove(i).expect("found"));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = match self.lines.recv_timeout(left) {
                Ok(v) => v,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("{} did not {what} in time", self.endpoint))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!("{} ended before it could {what}", self.endpoint))
                }
            };
            if v.get("ev") == Some(&json!("view")) {
                let id = v["view"].as_str().unwrap_or_default().to_owned();
                let members = serde_json::from_value(v["members"].clone()).unwrap_or_default();
                self.view = Some((id, members));
            }
            if want(&v) {
                return Ok(v);
            }
            if v.get("ev") != Some(&json!("view")) {
                self.stash.push_back(v);
            }
        }
    }

    /// Asks `op` with `args` without waiting; the answer comes with [`answer`](Self::answer).
    ///
    /// # Errors
    /// If the member's stdin is closed.
    pub fn ask(&mut self, op: &str, args: Value) -> Result<u64, String> {
        self.next_id += 1;
        let line = json!({"id": self.next_id, "op": op, "args": args}).to_string();
        let stdin = self.stdin.as_mut().ok_or_else(|| format!("{} has ended", self.endpoint))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot write to {}: {e}", self.endpoint))?;
        Ok(self.next_id)
    }

    /// Waits for the answer to request `id`.
    ///
    /// # Errors
    /// The application's error, or a timeout.
    pub fn answer(&mut self, id: u64, deadline: Instant) -> Result<Value, String> {
        let v = self.wait_for(deadline, &format!("answer request {id}"), |v| {
            v.get("id") == Some(&json!(id))
        })?;
        match (v.get("ok"), v.get("err")) {
            (Some(ok), _) => Ok(ok.clone()),
            (_, Some(err)) => Err(format!("{}: {}", self.endpoint, err.as_str().unwrap_or("?"))),
            _ => Err(format!("{}: a malformed answer {v}", self.endpoint)),
        }
    }

    /// Asks `op` with `args` and waits for the answer.
    ///
    /// # Errors
    /// As [`ask`](Self::ask) and [`answer`](Self::answer).
    pub fn request(&mut self, op: &str, args: Value, deadline: Instant) -> Result<Value, String> {
        let id = self.ask(op, args)?;
        self.answer(id, deadline)
    }

    /// Waits until the member's view satisfies `want`; returns its id and members.
    ///
    /// # Errors
    /// A timeout, or the member ended.
    pub fn wait_view(
        &mut self,
        deadline: Instant,
        what: &str,
        want: impl Fn(&[Endpoint]) -> bool,
    ) -> Result<(String, Vec<Endpoint>), String> {
        if let Some((id, members)) = &self.view {
            if want(members) {
                return Ok((id.clone(), members.clone()));
            }
        }
        let v = self.wait_for(deadline, what, |v| {
            v.get("ev") == Some(&json!("view"))
                && serde_json::from_value::<Vec<Endpoint>>(v["members"].clone())
                    .is_ok_and(|m| want(&m))
        })?;
        let members = serde_json::from_value(v["members"].clone()).unwrap_or_default();
        Ok((v["view"].as_str().unwrap_or_default().to_owned(), members))
    }

    /// Kills the process with SIGKILL and reaps it; a history it recorded ends with `crash`.
    ///
    /// # Errors
    /// If the crash line cannot be written.
    pub fn kill(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
        match &self.record {
            Some(path) => crate::cluster::append_crash(path, self.endpoint)
                .map_err(|e| format!("cannot end {}: {e}", path.display())),
            None => Ok(()),
        }
    }

    /// Leaves the group cleanly and waits for the process to end.
    ///
    /// # Errors
    /// If it does not leave in time.
    pub fn leave(&mut self, deadline: Instant) -> Result<(), String> {
        if self.request("leave", Value::Null, deadline)? != json!(true) {
            return Err(format!("{} could not leave the group cleanly", self.endpoint));
        }
        self.stdin = None;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(format!("{} ended with {status} after leaving", self.endpoint))
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!("{} did not end after leaving", self.endpoint));
                }
            }
        }
    }
}

impl Drop for AppMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
