//! `horus demo <app>`: the application demos. Each starts a local group of `horus app-member`
//! processes running one application, does the application's job, kills a member midway
//! with SIGKILL, restarts it, and ends with a self-check; with `--record` the members' histories
//! are checked too. The steps common to every demo are here; each application's script is a
//! module of its own.

pub mod chat;
pub mod cohort;
pub mod lock;
pub mod map;
pub mod primary_backup;
pub mod rsm;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use horus::Endpoint;
use horus_apps::appdemo::{AppMember, AppSpec};
use horus_core::check::check;
use serde_json::Value;

/// How long any one step may take.
pub const STEP: Duration = Duration::from_secs(15);

/// The deadline of a step started now.
pub fn step() -> Instant {
    Instant::now() + STEP
}

/// A demo under way: its members, in the order they joined.
pub struct Demo {
    pub spec: AppSpec,
    pub members: Vec<AppMember>,
}

impl Demo {
    /// A demo of `app` in group `group`, recording to `record` (emptied of old histories).
    pub fn new(app: &str, group: String, record: Option<PathBuf>) -> Result<Demo, String> {
        let bin =
            std::env::current_exe().map_err(|e| format!("cannot find the horus binary: {e}"))?;
        if let Some(dir) = &record {
            crate::demo::prepare(dir)?;
        }
        let spec = AppSpec {
            bin,
            app: app.into(),
            group,
            stack: horus::DEFAULT_STACK.into(),
            record_dir: record,
        };
        Ok(Demo { spec, members: Vec::new() })
    }

    /// The members' endpoints.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.members.iter().map(|m| m.endpoint).collect()
    }

    /// Waits until every member is in a view of exactly the current members.
    pub fn wait_full_view(&mut self, what: &str) -> Result<String, String> {
        let want = self.endpoints();
        let mut id = String::new();
        for m in &mut self.members {
            id = m.wait_view(step(), what, |v| v == want)?.0;
        }
        Ok(id)
    }

    /// Asks every member `op` until their answers agree on `key`, or the step's time is up;
    /// returns the answers, in member order, for the caller to check. A member may still be
    /// delivering the last of what another has delivered when both are asked: an answer is
    /// given to its asker when it is delivered there, not everywhere.
    pub fn agreed(
        &mut self,
        op: &str,
        key: impl Fn(&Value) -> Value,
    ) -> Result<Vec<Value>, String> {
        let deadline = step();
        loop {
            let answers = (0..self.members.len())
                .map(|i| self.members[i].request(op, Value::Null, step()))
                .collect::<Result<Vec<_>, _>>()?;
            let agree = answers.windows(2).all(|w| key(&w[0]) == key(&w[1]));
            if agree || Instant::now() > deadline {
                return Ok(answers);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `n` members, nodes 1..=n: the first founds the group, the others join it.
    pub fn form(&mut self, n: u64) -> Result<(), String> {
        say!("\n1. The group forms: the first member founds it, the others join.");
        for node in 1..=n {
            let m = AppMember::spawn(&self.spec, node, 0, node == 1, step())?;
            self.members.push(m);
            let view = self.wait_full_view("install the view with the newcomer")?;
            let m = self.members.last().expect("just pushed");
            let did = if node == 1 { "founded the group" } else { "joined" };
            say!(
                "   {:<5} (pid {:>7}) {did:<18} view {view} = {}",
                m.endpoint.to_string(),
                m.pid,
                list(&self.endpoints())
            );
        }
        Ok(())
    }

    /// Kills member `i` with SIGKILL; waits for the survivors' view without it. Returns the
    /// killed member (reaped) and how long the view took.
    pub fn kill(&mut self, i: usize) -> Result<(AppMember, Duration), String> {
        let mut victim = self.members.remove(i);
        if let Some(path) = victim.record.clone() {
            settled(&path)?;
        }
        say!("   {} (pid {}) is killed with SIGKILL.", victim.endpoint, victim.pid);
        let at = Instant::now();
        victim.kill()?;
        let view = self.wait_full_view("install a view without the killed member")?;
        let took = at.elapsed();
        say!(
            "   the survivors installed view {view} = {} {:.1}s after the kill",
            list(&self.endpoints()),
            took.as_secs_f64()
        );
        Ok((victim, took))
    }

    /// Restarts the node of `gone` as its next incarnation; waits until it is in everyone's
    /// view. Returns its index.
    pub fn restart(&mut self, gone: Endpoint) -> Result<usize, String> {
        let m = AppMember::spawn(&self.spec, gone.node, gone.incarnation + 1, false, step())?;
        say!("   {} (pid {}) starts and joins the group.", m.endpoint, m.pid);
        self.members.push(m);
        let view = self.wait_full_view("install the view with the restarted member")?;
        say!("   view {view} = {}", list(&self.endpoints()));
        Ok(self.members.len() - 1)
    }

    /// Every member leaves, the last alone.
    pub fn leave_all(&mut self) -> Result<(), String> {
        say_part!("\nThe members leave:");
        while let Some(mut m) = self.members.pop() {
            m.leave(step())?;
            say_part!(" {}", m.endpoint);
        }
        say!("");
        Ok(())
    }

    /// With `--record`: checks the histories; returns a note for the last line.
    pub fn check_records(&self) -> Result<String, String> {
        let Some(dir) = &self.spec.record_dir else { return Ok(String::new()) };
        say!("\nThe recorded histories are checked (as `horus check {}/*` does):", dir.display());
        let (history, promises, files) = crate::check::read(std::slice::from_ref(dir))?;
        let report = check(&history, &promises);
        say!("   {files} files: {}", report.to_string().trim_end().replace('\n', "\n   "));
        if !report.is_ok() {
            return Err("the recorded histories violate the guarantees".into());
        }
        Ok(format!("; histories in {} checked: no violations", dir.display()))
    }
}

/// Waits until the history file at `path` has not grown for a while: the recorder writes
/// every 50 ms, and a member killed before it wrote would leave casts that the others
/// delivered missing from its history.
pub fn settled(path: &std::path::Path) -> Result<(), String> {
    let deadline = step();
    let size = || std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let (mut last, mut since) = (size(), Instant::now());
    while since.elapsed() < Duration::from_millis(150) {
        if Instant::now() > deadline {
            return Err(format!("{} kept growing", path.display()));
        }
        std::thread::sleep(Duration::from_millis(10));
        let now = size();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    Ok(())
}

/// Endpoints as a space-separated list (`-` for none).
pub fn list(endpoints: &[Endpoint]) -> String {
    if endpoints.is_empty() {
        return "-".into();
    }
    endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" ")
}
