//! The member processes of the application demos (`horus demo map`, `horus demo lock`, ...):
//! the hidden `horus app-member` subcommand, and the protocol a parent speaks with it.
//!
//! Both directions are JSON lines. The parent writes a request per line on the member's
//! stdin: `{"id":7,"op":"put","args":{"key":"a","value":"1"}}`; the member answers each, when
//! the application has, with `{"id":7,"ok":...}` or `{"id":7,"err":"..."}` (requests are
//! served concurrently: a lock request that waits does not hold up the others). It also
//! tells, unasked, `{"ev":"ready",...}` once it has joined and `{"ev":"view",...}` when its
//! view changes (it looks every 2 ms: a view that lasts less may go untold). A member whose stdin closes stops at once, as a crash would, so no member outlives
//! its parent; the request `{"op":"leave"}` leaves the group cleanly.
//!
//! Each application serves its requests with a [`Handler`] (see [`handler`]).

use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use horus::{Endpoint, Group};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

/// An application's side of the protocol: it serves one request (`op`, `args`).
pub trait Handler: Send + Sync + 'static {
    /// Serves `op` with `args`; the value is the answer's `ok`, the error its `err`.
    fn handle(&self, op: String, args: Value) -> BoxFuture<Result<Value, String>>;
}

/// A boxed future a [`Handler`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The applications a member can run, by the name `--app` gives.
pub const APPS: &[&str] = &["map", "rsm", "lock", "chat", "primary-backup", "cohort"];

/// Starts application `app` on `group`; `None` for a name not in [`APPS`].
pub fn handler(app: &str, group: Group) -> Option<Arc<dyn Handler>> {
    match app {
        "map" => Some(Arc::new(crate::map::ReplicatedMap::start(group))),
        "rsm" => Some(Arc::new(crate::bank::start(group))),
        "lock" => Some(Arc::new(crate::lock::LockService::start(group))),
        "chat" => Some(crate::chat::demo_member(group)),
        "primary-backup" => Some(Arc::new(crate::primary_backup::PrimaryBackup::journal(group))),
        "cohort" => Some(Arc::new(crate::cohort::Cohort::fingerprints(group))),
        _ => None,
    }
}

/// One request from the parent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub op: String,
    #[serde(default)]
    pub args: Value,
}

/// A member process of an application demo (started by `horus demo <app>`).
#[derive(Args, Debug, Clone)]
pub struct AppMemberArgs {
    /// The application: one of `APPS`.
    #[arg(long)]
    pub app: String,
    #[arg(long)]
    pub group: String,
    #[arg(long, default_value = horus::DEFAULT_STACK)]
    pub stack: String,
    #[arg(long)]
    pub node: u64,
    #[arg(long, default_value_t = 0)]
    pub incarnation: u32,
    /// Join only: never found the group alone.
    #[arg(long)]
    pub no_found: bool,
    /// Record the history to DIR/member-<node>-<incarnation>.jsonl.
    #[arg(long, value_name = "DIR")]
    pub record_dir: Option<PathBuf>,
    /// Milliseconds to look for the group before founding it.
    #[arg(long, default_value_t = 300)]
    pub discovery_ms: u64,
}

/// Prints one line of the protocol on stdout.
fn say(line: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs a member: joins, serves the parent's requests, tells views; exits 0 after a clean
/// leave, 1 on an error or when the parent goes away.
pub fn run(args: AppMemberArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("horus app-member: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(member(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("horus app-member: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn member(args: AppMemberArgs) -> Result<(), String> {
    if !APPS.contains(&args.app.as_str()) {
        return Err(format!("no application `{}`; there are: {}", args.app, APPS.join(", ")));
    }
    let me = Endpoint::new(args.node, args.incarnation);
    let mut builder = Group::builder(&args.group)
        .stack(&args.stack)
        .endpoint(me)
        .state_transfer(true)
        .founder(!args.no_found)
        .discovery_timeout(Duration::from_millis(args.discovery_ms))
        .join_timeout(Duration::from_secs(10));
    if let Some(dir) = &args.record_dir {
        builder = builder.record(dir.join(format!("member-{}-{}.jsonl", me.node, me.incarnation)));
    }
    let group = builder.join().await.map_err(|e| e.to_string())?;
    let handle = group.handle();
    let app = handler(&args.app, group).ok_or("no such application")?;
    say(&json!({"ev": "ready", "endpoint": me, "pid": std::process::id()}));

    // Views, as the group installs them.
    let views = handle.clone();
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let view = views.view();
            if last != Some(view.id) {
                last = Some(view.id);
                say(&json!({"ev": "view", "view": view.id.to_string(), "members": view.members}));
            }
            if views.has_exited() {
                say(&json!({"ev": "exit"}));
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                say(&json!({"ev": "bad_request", "line": line, "error": e.to_string()}));
                continue;
            }
        };
        if request.op == "leave" {
            let left = handle.leave().await.map_err(|e| e.to_string());
            say(&json!({"id": request.id, "ok": left.is_ok()}));
            return left;
        }
        let app = app.clone();
        tokio::spawn(async move {
            let answer = match app.handle(request.op, request.args).await {
                Ok(v) => json!({"id": request.id, "ok": v}),
                Err(e) => json!({"id": request.id, "err": e}),
            };
            say(&answer);
        });
    }
    Err("the parent closed stdin".into())
}

/// Reads a string argument.
pub fn arg_str(args: &Value, name: &str) -> Result<String, String> {
    args.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("missing string argument `{name}`"))
}

impl Handler for crate::map::ReplicatedMap {
    fn handle(&self, op: String, args: Value) -> BoxFuture<Result<Value, String>> {
        let map = self.clone();
        Box::pin(async move {
            let text = |v: Option<Vec<u8>>| v.map(|v| String::from_utf8_lossy(&v).into_owned());
            let e = |e: horus::Error| e.to_string();
            match op.as_str() {
                "put" => {
                    let (key, value) = (arg_str(&args, "key")?, arg_str(&args, "value")?);
                    Ok(json!(text(map.put(key, value).await.map_err(e)?)))
                }
                "remove" => Ok(json!(text(map.remove(arg_str(&args, "key")?).await.map_err(e)?))),
                "get" => Ok(json!(text(map.get(arg_str(&args, "key")?).await.map_err(e)?))),
                "entries" => {
                    let all = map.entries().await.map_err(e)?;
                    let all: std::collections::BTreeMap<String, String> = all
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                        .collect();
                    Ok(json!(all))
                }
                "digest" => {
                    let (applied, digest) = map.digest().await.map_err(e)?;
                    Ok(json!({"applied": applied, "digest": format!("{digest:016x}")}))
                }
                other => Err(format!("the map has no operation `{other}`")),
            }
        })
    }
}
