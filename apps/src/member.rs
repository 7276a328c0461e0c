//! `horus member`: one member of a group, driven by lines on stdin; and `horus demo-member`
//! (hidden), the same member driven by a parent over the [control protocol](horus_apps::control).
//!
//! Both run one application, the replicated counter of the control protocol: every cast
//! delivered adds one, and joiners are given the counter by state transfer (when on). The
//! interactive member prints what happens for a person; the controlled one prints
//! [`Report`]s, one JSON line each.

use std::io::BufRead;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use horus::{Endpoint, Event, FaultConfig, Group, GroupHandle, Level, TransportConfig, ViewChange};
use horus_apps::control::{burst_text, parse_burst_text, Command, Report};
use horus_apps::SelfCheck;
use tokio::sync::mpsc;

use crate::probe;

/// Prints a line on stdout; if stdout is gone (the parent died, or `| head` closed it),
/// nobody hears the member any more and it stops at once, as a crash would.
macro_rules! emit {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(1);
        }
    }};
}

const MEMBER_HELP: &str = "\
Lines typed are cast to the group; deliveries and views are printed as they come.

  text              cast `text` at the default level (--level, total by default)
  /fifo text        cast at the fifo level (also /causal, /total, /safe)
  /send p2.0 text   send `text` to one member (by endpoint, or by node number: /send 2 text)
  /view             print the current view
  /counters         print this member's counters
  /leave            leave the group and exit (end of input does the same)

Examples:
  horus member --group chat
  horus member --group chat --stack evs --record chat-1.jsonl
  horus member --group chat --unicast --bind 127.0.0.1:7400
  horus member --group chat --unicast --seeds 127.0.0.1:7400

While it runs, `horus probe --group chat` lists it with its view and counters.";

/// Joins a group and casts the lines typed on stdin.
#[derive(Args, Debug, Clone)]
#[command(after_long_help = MEMBER_HELP)]
pub struct MemberArgs {
    /// The group's name.
    #[arg(long)]
    pub group: String,
    /// The stack: a spec with `gms` on top, or a preset (`vsync`, `evs`).
    #[arg(long, default_value = horus::DEFAULT_STACK)]
    pub stack: String,
    /// Write this member's history to PATH (JSON lines, for `horus check`).
    #[arg(long, value_name = "PATH")]
    pub record: Option<PathBuf>,
    /// Give joiners the application's state (a counter of the casts delivered); every
    /// member of the group must agree on this.
    #[arg(long)]
    pub state_transfer: bool,
    /// Multicast address and port of the group [default: derived from the group's name, on
    /// the loopback interface].
    #[arg(long, value_name = "ADDR", conflicts_with = "unicast")]
    pub multicast: Option<SocketAddr>,
    /// No IP multicast: cast to each member by unicast, finding them through --seeds.
    #[arg(long)]
    pub unicast: bool,
    /// Unicast addresses of members to join through (with --unicast), comma-separated.
    #[arg(long, value_delimiter = ',', requires = "unicast", value_name = "ADDR,...")]
    pub seeds: Vec<SocketAddr>,
    /// This member's unicast address (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub bind: SocketAddr,
    /// This member's node number [default: this process's id, unique on the host].
    #[arg(long)]
    pub node: Option<u64>,
    /// Do not found the group if nobody answers: wait for members to join.
    #[arg(long)]
    pub no_found: bool,
    /// How long to wait for a first view.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub join_timeout: Duration,
    /// The level plain lines are cast at.
    #[arg(long, default_value = "total")]
    pub level: Level,
    /// Do not answer `horus probe`.
    #[arg(long)]
    pub no_probe: bool,
}

/// A member for `horus demo` and the multi-process tests, driven by the control protocol.
#[derive(Args, Debug, Clone)]
pub struct ControlArgs {
    #[command(flatten)]
    pub member: MemberArgs,
    /// This process's incarnation (its endpoint is `p<node>.<incarnation>`).
    #[arg(long, default_value_t = 0)]
    pub incarnation: u32,
    /// Record to DIR/member-<node>-<incarnation>.jsonl (each incarnation its own file).
    #[arg(long, value_name = "DIR", conflicts_with = "record")]
    pub record_dir: Option<PathBuf>,
    /// Lose this fraction of datagrams each way from the start (fault injection).
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Seeds the loss.
    #[arg(long, default_value_t = 1)]
    pub loss_seed: u64,
    /// When excluded from the group (e.g. a minority after a partition), join again as the
    /// next incarnation.
    #[arg(long)]
    pub rejoin: bool,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    horus_core::spec::parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration: write e.g. 500ms, 2s, 1m"))
}

/// How a member tells what happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// For a person.
    Human,
    /// Control protocol reports.
    Json,
}

/// What a member is asked on stdin.
#[derive(Debug)]
enum Input {
    Do(Command),
    ShowView,
    ShowCounters,
    Help,
    /// A line that is not a command: why.
    Bad(String),
}

/// How a session with one incarnation ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Left,
    Excluded,
    /// Stdin closed.
    InputClosed,
    /// The member stopped without an exit.
    Stopped,
}

pub fn run(args: MemberArgs) -> ExitCode {
    let control = ControlArgs {
        member: args,
        incarnation: 0,
        record_dir: None,
        loss: 0.0,
        loss_seed: 1,
        rejoin: false,
    };
    block_on(main(control, Style::Human))
}

pub fn run_controlled(args: ControlArgs) -> ExitCode {
    block_on(main(args, Style::Json))
}

fn block_on(f: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("horus: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("horus: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn main(args: ControlArgs, style: Style) -> Result<(), String> {
    if !(0.0..=1.0).contains(&args.loss) {
        return Err(format!("--loss {} is not a fraction between 0 and 1", args.loss));
    }
    let mut inputs = read_stdin(style, args.member.level);
    let mut incarnation = args.incarnation;
    // Only the first incarnation may found the group; a rejoining one joins the others.
    let mut founder = !args.member.no_found;
    loop {
        let group = join(&args, incarnation, founder).await?;
        let mut app = App::new(group.endpoint());
        let ready = ready(&args, &group);
        if style == Style::Human {
            emit!(
                "joined group `{}` as {} at {} (stack {}); type /help for commands",
                group.name(),
                group.endpoint(),
                group.control().local_addr(),
                group.stack()
            );
        }
        let ended = session(group, ready, &mut inputs, style, &mut app).await;
        let rejoining = ended == Ended::Excluded && args.rejoin;
        match (style, &ended) {
            (Style::Json, Ended::Left | Ended::Excluded) => {
                say(Report::Exit { left: ended == Ended::Left, rejoining });
            }
            (Style::Human, Ended::Left) => emit!("left the group"),
            (Style::Human, Ended::Excluded) => emit!("excluded from the group"),
            _ => {}
        }
        if !rejoining {
            return match ended {
                Ended::Stopped => Err("the member stopped".into()),
                _ => Ok(()),
            };
        }
        incarnation += 1;
        founder = false;
    }
}

async fn join(args: &ControlArgs, incarnation: u32, founder: bool) -> Result<Group, String> {
    let m = &args.member;
    let node = m.node.unwrap_or_else(|| u64::from(std::process::id()));
    let me = Endpoint::new(node, incarnation);
    let mut transport = if m.unicast {
        TransportConfig::unicast_only(m.seeds.iter().copied())
    } else {
        match m.multicast {
            Some(group) => TransportConfig::multicast(group).interface_v4(Ipv4Addr::LOCALHOST),
            None => horus::default_transport(&m.group),
        }
    }
    .bind(m.bind);
    if args.loss > 0.0 {
        let seed = args.loss_seed ^ node.rotate_left(17) ^ u64::from(incarnation);
        transport = transport.faults(FaultConfig { loss: args.loss, seed, ..FaultConfig::none() });
    }
    let mut builder = Group::builder(&m.group)
        .stack(&m.stack)
        .transport(transport)
        .state_transfer(m.state_transfer)
        .founder(founder)
        .join_timeout(m.join_timeout)
        .probe(!m.no_probe)
        .endpoint(me);
    if let Some(path) = record_path(args, me) {
        builder = builder.record(path);
    }
    builder.join().await.map_err(|e| e.to_string())
}

fn record_path(args: &ControlArgs, me: Endpoint) -> Option<PathBuf> {
    match &args.record_dir {
        Some(dir) => Some(dir.join(format!("member-{}-{}.jsonl", me.node, me.incarnation))),
        None => args.member.record.clone(),
    }
}

/// The `Ready` report of a member just joined (its probe address is filled in later).
fn ready(args: &ControlArgs, group: &Group) -> Report {
    Report::Ready {
        endpoint: group.endpoint(),
        pid: std::process::id(),
        addr: group.control().local_addr(),
        probe: None,
        record: record_path(args, group.endpoint()),
    }
}

/// Runs one incarnation until it exits, stops, or stdin closes.
async fn session(
    mut group: Group,
    mut ready: Report,
    inputs: &mut mpsc::Receiver<Input>,
    style: Style,
    app: &mut App,
) -> Ended {
    let handle = group.handle();
    let probe_addr = group.probe_addr();
    if let Report::Ready { probe, .. } = &mut ready {
        *probe = probe_addr;
    }
    match (style, probe_addr) {
        (Style::Json, _) => say(ready),
        (Style::Human, Some(addr)) => emit!("answering `horus probe` at {addr}"),
        (Style::Human, None) => {}
    }
    // Casts, sends and the leave go out from one task, in order, so the event loop never
    // waits on them (a cast waits during a view change, which needs the events read).
    let (jobs, queue) = mpsc::unbounded_channel();
    let caster = tokio::spawn(caster(handle.clone(), queue, style));
    let mut leaving = false;
    let ended = loop {
        tokio::select! {
            ev = group.next_event() => {
                let Some(ev) = ev else { break Ended::Stopped };
                if let Event::Exit = ev {
                    break if leaving { Ended::Left } else { Ended::Excluded };
                }
                app.on_event(ev, &handle, style).await;
            }
            input = inputs.recv() => match input {
                None if style == Style::Human => {
                    leaving = true;
                    let _ = jobs.send(Command::Leave);
                }
                None => break Ended::InputClosed,
                Some(Input::Do(Command::Burst { per_level })) => {
                    for level in handle.levels().to_vec() {
                        for _ in 0..per_level {
                            let k = app.next_number(level);
                            let text = burst_text(handle.endpoint(), level, k);
                            let _ = jobs.send(Command::Cast { level, text });
                        }
                    }
                }
                Some(Input::Do(Command::SelfCheck)) => {
                    let (ok, detail) = app.check.verdict();
                    match style {
                        Style::Json => say(Report::SelfCheck { ok, detail, counter: app.counter }),
                        Style::Human => emit!("self-check {}: {detail}", if ok { "ok" } else { "FAILED" }),
                    }
                }
                Some(Input::Do(Command::Partition { from })) => handle.faults().partition(from),
                Some(Input::Do(Command::Loss { fraction })) => handle.faults().set_loss(fraction),
                Some(Input::Do(Command::Heal)) => handle.faults().heal(),
                Some(Input::Do(cmd)) => {
                    leaving |= cmd == Command::Leave;
                    let _ = jobs.send(cmd);
                }
                Some(Input::ShowView) => emit!("{}", describe_view(&handle)),
                Some(Input::ShowCounters) => match handle.counters().await {
                    Ok(c) => emit!("{}", probe::summarize(&c)),
                    Err(e) => emit!("no counters: {e}"),
                },
                Some(Input::Help) => emit!("{MEMBER_HELP}"),
                Some(Input::Bad(why)) => match style {
                    Style::Json => say(Report::Failed { command: String::new(), error: why }),
                    Style::Human => emit!("{why} (type /help for commands)"),
                },
            },
        }
    };
    caster.abort();
    ended
}

/// Sends the casts, sends and leave of a session in order; reports what fails.
async fn caster(handle: GroupHandle, mut queue: mpsc::UnboundedReceiver<Command>, style: Style) {
    while let Some(cmd) = queue.recv().await {
        let done = match &cmd {
            Command::Cast { level, text } => handle.cast(text.clone(), *level).await,
            Command::Send { to, text } => handle.send(*to, text.clone()).await,
            Command::Leave => handle.leave().await,
            _ => Ok(()),
        };
        if let Err(e) = done {
            match style {
                Style::Json => say(Report::Failed { command: cmd.to_line(), error: e.to_string() }),
                Style::Human => emit!("failed: {e}"),
            }
        }
    }
}

/// The application: the replicated counter and what its self-check tracks.
#[derive(Debug)]
struct App {
    counter: u64,
    /// The number of the next burst cast, by level.
    numbers: [usize; 4],
    view: Option<std::sync::Arc<horus::View>>,
    check: SelfCheck,
}

impl App {
    fn new(me: Endpoint) -> Self {
        App { counter: 0, numbers: [0; 4], view: None, check: SelfCheck::new(me) }
    }

    fn next_number(&mut self, level: Level) -> usize {
        let i = Level::ALL.iter().position(|l| *l == level).unwrap_or(0);
        let k = self.numbers[i];
        self.numbers[i] += 1;
        self.check.cast_own(level);
        k
    }

    async fn on_event(&mut self, ev: Event, handle: &GroupHandle, style: Style) {
        match ev {
            Event::Message { from, level, data } => {
                let text = String::from_utf8_lossy(&data).into_owned();
                if let Some(level) = level {
                    self.counter += 1;
                    self.check.delivered(
                        from,
                        level,
                        parse_burst_text(&text).map(|(s, l, k)| (s.to_owned(), l, k)),
                    );
                }
                match style {
                    Style::Json => say(Report::Deliver { from, level, text }),
                    Style::Human => {
                        let how = level.map_or("send", Level::as_str);
                        emit!("[{how}] {from}: {text}");
                    }
                }
            }
            Event::View(change) => {
                self.view = Some(change.view.clone());
                self.on_view(&change, style);
            }
            Event::Snapshot(request) => {
                let view = request.view();
                request.reply(self.counter.to_le_bytes().to_vec());
                match style {
                    Style::Json => say(Report::Snapshot { view, counter: self.counter }),
                    Style::Human => {
                        emit!("gave the joiners of {view} the counter {}", self.counter)
                    }
                }
            }
            Event::State(state) => {
                let view = self.view.as_ref().map_or_else(|| handle.view().id, |v| v.id);
                self.counter = match <[u8; 8]>::try_from(&state[..]) {
                    Ok(b) => u64::from_le_bytes(b),
                    Err(_) => {
                        self.check.problem(format!("a state of {} bytes, not 8", state.len()));
                        0
                    }
                };
                self.check.state(self.counter);
                match style {
                    Style::Json => say(Report::State { view, counter: self.counter }),
                    Style::Human => emit!("given the state of {view}: counter {}", self.counter),
                }
            }
            Event::Call(call) => {
                let _ = call.reply(handle.endpoint().to_string()).await;
            }
            _ => {}
        }
    }

    fn on_view(&mut self, change: &ViewChange, style: Style) {
        self.check.view(&change.view.members);
        match style {
            Style::Json => say(Report::View {
                view: change.view.id,
                members: change.view.members.clone(),
                joined: change.joined.clone(),
                left: change.left.clone(),
                counter: self.counter,
            }),
            Style::Human => emit!(
                "view {}: {} (joined {}; left {}; counter {})",
                change.view.id,
                list(&change.view.members),
                list(&change.joined),
                list(&change.left),
                self.counter
            ),
        }
    }
}

fn list(endpoints: &[Endpoint]) -> String {
    if endpoints.is_empty() {
        return "-".into();
    }
    endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" ")
}

fn describe_view(handle: &GroupHandle) -> String {
    let v = handle.view();
    format!("view {}: {} (I am {})", v.id, list(&v.members), handle.endpoint())
}

fn say(report: Report) {
    emit!("{}", report.to_line());
}

/// Reads stdin on a thread of its own; the channel closes at the end of input.
fn read_stdin(style: Style, level: Level) -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let input = match style {
                Style::Json => match serde_json::from_str::<Command>(&line) {
                    Ok(Command::Loss { fraction }) if !(0.0..=1.0).contains(&fraction) => {
                        Input::Bad(format!("loss {fraction} is not a fraction"))
                    }
                    Ok(cmd) => Input::Do(cmd),
                    Err(e) => Input::Bad(format!("not a command: {e}")),
                },
                Style::Human => match parse_line(&line, level) {
                    Some(input) => input,
                    None => continue,
                },
            };
            if tx.blocking_send(input).is_err() {
                break;
            }
        }
    });
    rx
}

/// An interactive line, as an input (plain text is cast at `level`); `None` for an empty line.
fn parse_line(line: &str, level: Level) -> Option<Input> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return None;
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Some(Input::Do(Command::Cast { level, text: line.to_owned() }));
    };
    let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(match word {
        "view" => Input::ShowView,
        "counters" => Input::ShowCounters,
        "help" => Input::Help,
        "leave" | "quit" => Input::Do(Command::Leave),
        "send" => match arg.split_once(' ') {
            Some((to, text)) => match parse_endpoint(to) {
                Some(to) => Input::Do(Command::Send { to, text: text.to_owned() }),
                None => Input::Bad(format!("`{to}` is not a member: write p2.0, or 2 for p2.0")),
            },
            None => Input::Bad("usage: /send <member> <text>".into()),
        },
        w => match w.parse::<Level>() {
            Ok(level) => Input::Do(Command::Cast { level, text: arg.to_owned() }),
            Err(_) => Input::Bad(format!("unknown command `/{w}`")),
        },
    })
}

/// `p2.0`, `2.0` or `2` (incarnation 0).
fn parse_endpoint(s: &str) -> Option<Endpoint> {
    let s = s.strip_prefix('p').unwrap_or(s);
    let (node, inc) = s.split_once('.').unwrap_or((s, "0"));
    Some(Endpoint::new(node.parse().ok()?, inc.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(line: &str) -> Option<Command> {
        match parse_line(line, Level::Total) {
            Some(Input::Do(c)) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn plain_lines_are_total_casts_and_slashes_choose() {
        assert_eq!(
            cmd("hi there"),
            Some(Command::Cast { level: Level::Total, text: "hi there".into() })
        );
        assert_eq!(
            cmd("/safe x y"),
            Some(Command::Cast { level: Level::Safe, text: "x y".into() })
        );
        assert_eq!(cmd("/fifo"), Some(Command::Cast { level: Level::Fifo, text: String::new() }));
        let to = Endpoint::new(2, 1);
        assert_eq!(cmd("/send p2.1 yo"), Some(Command::Send { to, text: "yo".into() }));
        assert_eq!(
            cmd("/send 2 yo"),
            Some(Command::Send { to: Endpoint::new(2, 0), text: "yo".into() })
        );
        assert_eq!(cmd("/leave"), Some(Command::Leave));
        assert!(parse_line("   ", Level::Total).is_none());
        assert!(matches!(parse_line("/view", Level::Total), Some(Input::ShowView)));
        let fifo = parse_line("x", Level::Fifo);
        assert!(matches!(fifo, Some(Input::Do(Command::Cast { level: Level::Fifo, .. }))));
    }

    #[test]
    fn bad_lines_say_why_and_never_panic() {
        for line in
            ["/nosuch", "/send", "/send x hi", "/send p1.x hi", "/send 99999999999999999999999 a"]
        {
            assert!(matches!(parse_line(line, Level::Total), Some(Input::Bad(_))), "{line}");
        }
    }
}
