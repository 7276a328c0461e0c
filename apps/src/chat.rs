//! A group chat: every member sees one transcript, in one order.
//!
//! **Guarantee.** Lines are cast at the `total` level, so every member delivers them in the
//! same order; views are in that order too (virtual synchrony), so two members that go from
//! one view to the next together append the same entries in between: the same lines, in the
//! same order, and the same "left" announcements at the view change. A member that joins is
//! given the recent transcript (the last [`ChatReplica::keep`] entries) by state transfer, as
//! of the view it joins in, before any line of that view: its transcript goes on from the
//! others'. Entries are numbered (a *seqno*, counted from the group's first entry and carried
//! across state transfer), so an entry has the same number at every member that has it.
//!
//! **How.** A member casts `Hello { nick }` in its first view; its delivery announces
//! "alice joined" (so the announcement is in the order, where the nick is known everywhere).
//! A line is `Line { ticket, nick, text }`, answered to its sayer when it comes back in the
//! order. Leaving cleanly ([`Chat::leave`]) casts `Bye` first, and leaves once it is
//! delivered; at the view change that removes a member, each survivor announces "bob left",
//! or "bob left (failed)" when no `Bye` came from it (a crash, a partition, an exclusion).
//! The nicks of the view's members and whether they said goodbye travel in the state, so a
//! joiner announces departures as the others do. A message that does not decode, or whose
//! nick or text breaks the rules ([`check_nick`], [`check_text`]), is dropped and counted,
//! the same way at every member.
//!
//! **Limits.** A line said while this member is being removed from the group (a crash, the
//! minority side of a partition) may be lost: its sayer is not answered. With the default
//! stack (`vsync`, primary partition) only the majority side of a partition chats on; the
//! minority's members are excluded (their [`ChatEvents`] end) and must join again, when they
//! are given the majority's transcript. With the partitionable stack (`evs`) both sides chat,
//! and when they merge, the side merged in takes the other's transcript: its own lines while
//! apart are dropped from it. Nicks are not unique: the endpoint tells members apart. Only
//! the last `keep` entries are kept, and given to joiners.
//!
//! On the wire a message is a postcard-encoded [`Wire`] value.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use horus::replica::{Outbox, Replica, Replicated, Ticket};
use horus::{Bytes, Endpoint, Error, Group, GroupHandle, Level, View, ViewChange};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::appmember::{arg_str, BoxFuture, Handler};

/// Entries a member keeps, and gives joiners, unless told otherwise.
pub const DEFAULT_KEEP: usize = 100;

/// Events a [`ChatEvents`] reader may fall behind by before new ones are dropped (counted in
/// [`ChatReplica::events_dropped`]; the transcript itself stays whole).
pub const EVENT_QUEUE: usize = 4096;

/// The longest nick, in characters.
pub const MAX_NICK: usize = 32;

/// The longest line, in bytes.
pub const MAX_TEXT: usize = 4000;

/// An entry of the transcript, or what a member is told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatEvent {
    /// `nick` (member `from`) said `text`.
    Line { from: Endpoint, nick: String, text: String },
    /// `who` joined as `nick`.
    Joined { who: Endpoint, nick: String },
    /// `who` left the view: after saying goodbye, or not (`failed`: it crashed, was cut off
    /// by a partition or excluded). `nick` is its endpoint if it left before its hello.
    Left { who: Endpoint, nick: String, failed: bool },
    /// Only on a [`ChatEvents`] stream, never in a transcript: the recent transcript this
    /// member was given as it joined, oldest first.
    Recent(Vec<ChatEvent>),
}

impl fmt::Display for ChatEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatEvent::Line { nick, text, .. } => write!(f, "{nick}: {text}"),
            ChatEvent::Joined { nick, .. } => write!(f, "* {nick} joined"),
            ChatEvent::Left { nick, failed: false, .. } => write!(f, "* {nick} left"),
            ChatEvent::Left { nick, failed: true, .. } => write!(f, "* {nick} left (failed)"),
            ChatEvent::Recent(lines) => {
                for (i, line) in lines.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{line}")?;
                }
                Ok(())
            }
        }
    }
}

/// What members cast to each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire {
    /// "I am in the group, as `nick`."
    Hello { nick: String },
    /// A line said, for the sayer's request `ticket`.
    Line { ticket: u64, nick: String, text: String },
    /// "I am leaving", for the request `ticket`.
    Bye { ticket: u64 },
}

/// The state given to joiners.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    /// The seqno of the next entry.
    next: u64,
    /// The view's members that said hello: their nick, and whether they said goodbye.
    members: Vec<(Endpoint, String, bool)>,
    /// The recent entries, oldest first, with their seqnos.
    recent: Vec<(u64, ChatEvent)>,
}

/// A member of the view, as the chat knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    nick: String,
    bye: bool,
}

/// Requests to a [`ChatReplica`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatRequest {
    /// Say `text`; answered with the line's seqno once it is in the order here.
    Say(String),
    /// Say goodbye; answered once the goodbye is in the order here.
    Bye,
}

/// Checks a nick: 1 to [`MAX_NICK`] characters, no control characters, not only spaces.
///
/// # Errors
/// Why the nick is refused.
pub fn check_nick(nick: &str) -> Result<(), String> {
    if nick.trim().is_empty() {
        return Err("a nick cannot be empty".into());
    }
    if nick.chars().count() > MAX_NICK {
        return Err(format!("a nick has at most {MAX_NICK} characters"));
    }
    if nick.chars().any(char::is_control) {
        return Err("a nick has no control characters".into());
    }
    Ok(())
}

/// Checks a line: at most [`MAX_TEXT`] bytes, no control characters but tabs.
///
/// # Errors
/// Why the line is refused.
pub fn check_text(text: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT {
        return Err(format!("a line has at most {MAX_TEXT} bytes"));
    }
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err("a line has no control characters (one line, no newlines)".into());
    }
    Ok(())
}

/// The chat as a [`Replica`]: run it with [`Chat`], or in the simulator.
#[derive(Debug)]
pub struct ChatReplica {
    nick: String,
    keep: usize,
    /// The last `keep` entries, with their seqnos.
    transcript: VecDeque<(u64, ChatEvent)>,
    /// The seqno of the next entry.
    next: u64,
    /// The members of the view that said hello.
    members: BTreeMap<Endpoint, Known>,
    view: Option<Arc<View>>,
    /// Our hello is cast and not yet delivered.
    hello_pending: bool,
    /// Our lines and goodbyes in flight, by ticket, in the order cast.
    waiting: VecDeque<Ticket>,
    /// Where events go for the user, if anyone listens.
    events: Option<mpsc::Sender<ChatEvent>>,
    /// The seqno of the first entry after the state we were given, and how many states.
    given_up_to: Option<u64>,
    restores: u64,
    malformed: u64,
    bad_states: u64,
    events_dropped: u64,
}

impl ChatReplica {
    /// A member called `nick` that keeps the last `keep` entries (at least 1); nobody is told
    /// events (see [`with_events`](Self::with_events)).
    ///
    /// # Errors
    /// If the nick breaks [`check_nick`].
    pub fn new(nick: impl Into<String>, keep: usize) -> Result<Self, String> {
        let nick = nick.into();
        check_nick(&nick)?;
        Ok(ChatReplica {
            nick,
            keep: keep.max(1),
            transcript: VecDeque::new(),
            next: 1,
            members: BTreeMap::new(),
            view: None,
            hello_pending: false,
            waiting: VecDeque::new(),
            events: None,
            given_up_to: None,
            restores: 0,
            malformed: 0,
            bad_states: 0,
            events_dropped: 0,
        })
    }

    /// Tells every entry, as it is appended, to `events` (and the recent transcript, as
    /// [`ChatEvent::Recent`], when it is given). When `events` is full the event is dropped
    /// and counted; when it is closed, nothing more is sent.
    #[must_use]
    pub fn with_events(mut self, events: mpsc::Sender<ChatEvent>) -> Self {
        self.events = Some(events);
        self
    }

    /// This member's nick.
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// How many entries this member keeps.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// The recent transcript, oldest first, each entry with its seqno.
    pub fn transcript(&self) -> impl Iterator<Item = (u64, &ChatEvent)> {
        self.transcript.iter().map(|(s, e)| (*s, e))
    }

    /// The seqno the next entry will have: entries appended in the group so far, plus one.
    pub fn next_seqno(&self) -> u64 {
        self.next
    }

    /// The view's members, each with its nick (`None` before its hello is delivered).
    pub fn who(&self) -> Vec<(Endpoint, Option<String>)> {
        let Some(view) = &self.view else { return Vec::new() };
        view.members.iter().map(|e| (*e, self.members.get(e).map(|k| k.nick.clone()))).collect()
    }

    /// When this member was given a state: the seqno its own entries start from (the entries
    /// before it were given).
    pub fn given_up_to(&self) -> Option<u64> {
        self.given_up_to
    }

    /// States installed (given at a join, or after a merge).
    pub fn restores(&self) -> u64 {
        self.restores
    }

    /// Messages dropped because they did not decode or broke the rules, and states that did
    /// not restore.
    pub fn malformed(&self) -> (u64, u64) {
        (self.malformed, self.bad_states)
    }

    /// Events dropped because the reader fell [`EVENT_QUEUE`] behind.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    fn tell(&mut self, event: ChatEvent) {
        let Some(events) = &self.events else { return };
        match events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.events_dropped += 1,
            Err(mpsc::error::TrySendError::Closed(_)) => self.events = None,
        }
    }

    /// Appends `event` to the transcript, and tells it.
    fn append(&mut self, event: ChatEvent) -> u64 {
        let seqno = self.next;
        self.next += 1;
        self.transcript.push_back((seqno, event.clone()));
        while self.transcript.len() > self.keep {
            self.transcript.pop_front();
        }
        self.tell(event);
        seqno
    }

    fn hello(&mut self, out: &mut Outbox<Result<u64, String>>) {
        self.hello_pending = true;
        cast(out, &Wire::Hello { nick: self.nick.clone() });
    }

    fn answer(&mut self, ticket: u64, seqno: u64, out: &mut Outbox<Result<u64, String>>) {
        // Ours come back in the order cast; one we do not wait for (an earlier replica's)
        // answers nobody.
        if let Some(pos) = self.waiting.iter().position(|t| t.0 == ticket) {
            self.waiting.remove(pos);
            out.done(Ticket(ticket), Ok(seqno));
        }
    }
}

fn cast(out: &mut Outbox<Result<u64, String>>, wire: &Wire) {
    // A `Wire` always encodes: it is strings and integers.
    let bytes = postcard::to_allocvec(wire).expect("a chat message encodes");
    out.cast(Level::Total, bytes);
}

impl Replica for ChatReplica {
    type Request = ChatRequest;
    /// The seqno of the line said (of the last entry, for a goodbye), or why not.
    type Response = Result<u64, String>;

    fn request(&mut self, request: ChatRequest, ticket: Ticket, out: &mut Outbox<Self::Response>) {
        let wire = match request {
            ChatRequest::Say(text) => {
                if let Err(e) = check_text(&text) {
                    return out.done(ticket, Err(e));
                }
                Wire::Line { ticket: ticket.0, nick: self.nick.clone(), text }
            }
            ChatRequest::Bye => Wire::Bye { ticket: ticket.0 },
        };
        self.waiting.push_back(ticket);
        cast(out, &wire);
    }

    fn message(
        &mut self,
        from: Endpoint,
        level: Option<Level>,
        data: Bytes,
        out: &mut Outbox<Self::Response>,
    ) {
        if level != Some(Level::Total) {
            self.malformed += 1; // everything is cast at the total level
            return;
        }
        let Ok(wire) = postcard::from_bytes::<Wire>(&data) else {
            self.malformed += 1;
            return;
        };
        match wire {
            Wire::Hello { nick } => {
                if check_nick(&nick).is_err() {
                    self.malformed += 1;
                    return;
                }
                if from == out.me() {
                    self.hello_pending = false;
                }
                // A second hello (after a merge) changes nothing: one announcement each.
                if let std::collections::btree_map::Entry::Vacant(v) = self.members.entry(from) {
                    v.insert(Known { nick: nick.clone(), bye: false });
                    self.append(ChatEvent::Joined { who: from, nick });
                }
            }
            Wire::Line { ticket, nick, text } => {
                if check_nick(&nick).is_err() || check_text(&text).is_err() {
                    self.malformed += 1;
                    return;
                }
                let seqno = self.append(ChatEvent::Line { from, nick, text });
                if from == out.me() {
                    self.answer(ticket, seqno, out);
                }
            }
            Wire::Bye { ticket } => {
                if let Some(k) = self.members.get_mut(&from) {
                    k.bye = true;
                }
                if from == out.me() {
                    self.answer(ticket, self.next - 1, out);
                }
            }
        }
    }

    fn view(&mut self, change: &ViewChange, out: &mut Outbox<Self::Response>) {
        self.view = Some(change.view.clone());
        // At the same point of the order at every member that installs this view after the
        // same one: the same departures, the same nicks and goodbyes (virtual synchrony).
        for who in &change.left {
            let (nick, failed) = match self.members.remove(who) {
                Some(k) => (k.nick, !k.bye),
                None => (who.to_string(), true),
            };
            self.append(ChatEvent::Left { who: *who, nick, failed });
        }
        self.members.retain(|e, _| change.view.contains(*e));
        if change.joined.contains(&out.me()) {
            self.hello(out);
        }
    }

    fn snapshot(&self) -> Bytes {
        let state = State {
            next: self.next,
            members: self.members.iter().map(|(e, k)| (*e, k.nick.clone(), k.bye)).collect(),
            recent: self.transcript.iter().cloned().collect(),
        };
        Bytes::from(postcard::to_allocvec(&state).expect("a chat state encodes"))
    }

    fn restore(&mut self, state: Bytes, out: &mut Outbox<Self::Response>) {
        let Some(state) = postcard::from_bytes::<State>(&state).ok().filter(valid) else {
            self.bad_states += 1;
            return;
        };
        self.restores += 1;
        self.next = state.next;
        self.given_up_to = Some(state.next);
        self.members =
            state.members.into_iter().map(|(e, nick, bye)| (e, Known { nick, bye })).collect();
        if let Some(view) = &self.view {
            self.members.retain(|e, _| view.contains(*e));
        }
        let mut recent: VecDeque<(u64, ChatEvent)> = state.recent.into();
        while recent.len() > self.keep {
            recent.pop_front();
        }
        self.transcript = recent;
        let given = self.transcript.iter().map(|(_, e)| e.clone()).collect();
        self.tell(ChatEvent::Recent(given));
        // After a merge the other side may not know us: say hello again.
        if !self.members.contains_key(&out.me()) && !self.hello_pending {
            self.hello(out);
        }
    }
}

/// Whether a state holds together: seqnos increasing and below `next`, entries that follow
/// the rules.
fn valid(state: &State) -> bool {
    let ordered = state.recent.windows(2).all(|w| w[0].0 < w[1].0);
    let below = state.recent.last().is_none_or(|(s, _)| *s < state.next);
    let entries = state.recent.iter().all(|(_, e)| match e {
        ChatEvent::Line { nick, text, .. } => check_nick(nick).is_ok() && check_text(text).is_ok(),
        ChatEvent::Joined { .. } | ChatEvent::Left { .. } => true,
        ChatEvent::Recent(_) => false,
    });
    let nicks = state.members.iter().all(|(_, n, _)| check_nick(n).is_ok());
    ordered && below && entries && nicks
}

/// What a [`Chat`] member is told: every entry as it is appended to its transcript. Ends when
/// the member has left the group or was excluded from it.
#[derive(Debug)]
pub struct ChatEvents {
    rx: mpsc::Receiver<ChatEvent>,
}

impl ChatEvents {
    /// The next event; `None` once the member has exited.
    pub async fn next(&mut self) -> Option<ChatEvent> {
        self.rx.recv().await
    }
}

/// A member of a group chat: see the [module docs](self).
///
/// ```no_run
/// # async fn run() -> Result<(), horus::Error> {
/// use horus_apps::chat::Chat;
///
/// let group = horus::Group::builder("chat").state_transfer(true).join().await?;
/// let (chat, mut events) = Chat::start(group, "alice")?;
/// chat.say("hello, all").await?;
/// while let Some(event) = events.next().await {
///     println!("{event}"); // "alice: hello, all", "* bob joined", ...
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Chat {
    replica: Replicated<ChatReplica>,
}

impl Chat {
    /// Joins the chat on `group` (built with `state_transfer(true)`, so that this member is
    /// given the recent transcript) as `nick`, keeping [`DEFAULT_KEEP`] entries.
    ///
    /// # Errors
    /// [`Error::Application`] if the nick breaks [`check_nick`].
    pub fn start(group: Group, nick: impl Into<String>) -> Result<(Chat, ChatEvents), Error> {
        Self::start_keeping(group, nick, DEFAULT_KEEP)
    }

    /// As [`start`](Self::start), keeping the last `keep` entries.
    ///
    /// # Errors
    /// [`Error::Application`] if the nick breaks [`check_nick`].
    pub fn start_keeping(
        group: Group,
        nick: impl Into<String>,
        keep: usize,
    ) -> Result<(Chat, ChatEvents), Error> {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let replica = ChatReplica::new(nick, keep).map_err(Error::Application)?.with_events(tx);
        Ok((Chat { replica: Replicated::start(group, replica) }, ChatEvents { rx }))
    }

    /// Says `text` to everyone; returns once it is in the transcript here, with its seqno.
    ///
    /// # Errors
    /// [`Error::Application`] if the text breaks [`check_text`]; [`Error::Exited`] if this
    /// member left the group first (the line may or may not have been delivered elsewhere).
    pub async fn say(&self, text: impl Into<String>) -> Result<u64, Error> {
        self.replica.request(ChatRequest::Say(text.into())).await?.map_err(Error::Application)
    }

    /// Says goodbye (so that the others see "left", not "left (failed)") and leaves.
    ///
    /// # Errors
    /// [`Error::Exited`] if this member had already left; as [`GroupHandle::leave`].
    pub async fn leave(&self) -> Result<(), Error> {
        self.replica.request(ChatRequest::Bye).await?.map_err(Error::Application)?;
        self.replica.group().leave().await
    }

    /// The view's members, with their nicks (`None` for one whose hello is not in yet).
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn who(&self) -> Result<Vec<(Endpoint, Option<String>)>, Error> {
        self.replica.inspect(ChatReplica::who).await
    }

    /// The recent transcript here, oldest first, with seqnos.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn transcript(&self) -> Result<Vec<(u64, ChatEvent)>, Error> {
        self.replica.inspect(|r| r.transcript().map(|(s, e)| (s, e.clone())).collect()).await
    }

    /// The replica itself, between two events.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn inspect<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ChatReplica) -> T + Send + 'static,
    ) -> Result<T, Error> {
        self.replica.inspect(read).await
    }

    /// The group the chat runs on.
    pub fn group(&self) -> &GroupHandle {
        self.replica.group()
    }
}

/// The nick of an application-demo member on `node`: alice, bob, carol, ... (then `p<node>`).
pub fn demo_nick(node: u64) -> String {
    const NICKS: &[&str] = &["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
    usize::try_from(node)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| NICKS.get(i))
        .map_or_else(|| format!("p{node}"), |n| (*n).to_owned())
}

/// Starts the chat of an application-demo member on `group`, nicked after its node.
pub fn demo_member(group: Group) -> std::sync::Arc<dyn Handler> {
    let nick = demo_nick(group.endpoint().node);
    // Nobody reads its events: the parent asks for the transcript.
    let replica = ChatReplica::new(nick, DEFAULT_KEEP).expect("demo nicks follow the rules");
    std::sync::Arc::new(Chat { replica: Replicated::start(group, replica) })
}

/// The chat as an application-demo member (`horus app-member --app chat`): its nick is
/// [`demo_nick`] of its node; nobody reads its events, the parent asks for its transcript.
///
/// Operations: `say {text}` → the line's seqno; `bye` → says goodbye (the parent then
/// leaves); `who` → `[{endpoint, nick}]`; `transcript` → `{next, given_up_to, lines: [[seqno,
/// text]]}`; `counters` → `{malformed, bad_states}`.
impl Handler for Chat {
    fn handle(&self, op: String, args: Value) -> BoxFuture<Result<Value, String>> {
        let chat = self.clone();
        Box::pin(async move {
            let e = |e: Error| e.to_string();
            match op.as_str() {
                "say" => Ok(json!(chat.say(arg_str(&args, "text")?).await.map_err(e)?)),
                "bye" => {
                    chat.replica.request(ChatRequest::Bye).await.map_err(e)??;
                    Ok(Value::Null)
                }
                "who" => {
                    let who = chat.who().await.map_err(e)?;
                    let who: Vec<Value> =
                        who.iter().map(|(e, n)| json!({"endpoint": e, "nick": n})).collect();
                    Ok(json!(who))
                }
                "transcript" => {
                    chat.inspect(|r| {
                        let lines: Vec<Value> =
                            r.transcript().map(|(s, e)| json!([s, e.to_string()])).collect();
                        json!({"next": r.next_seqno(), "given_up_to": r.given_up_to(), "lines": lines})
                    })
                    .await
                    .map_err(e)
                }
                "counters" => {
                    let (malformed, bad_states) = chat.inspect(ChatReplica::malformed).await.map_err(e)?;
                    Ok(json!({"malformed": malformed, "bad_states": bad_states}))
                }
                other => Err(format!("the chat has no operation `{other}`")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicks_and_lines_follow_the_rules() {
        assert!(check_nick("alice").is_ok());
        assert!(check_nick("").is_err());
        assert!(check_nick("  ").is_err());
        assert!(check_nick(&"x".repeat(MAX_NICK + 1)).is_err());
        assert!(check_nick("a\nb").is_err());
        assert!(check_text("").is_ok());
        assert!(check_text("tab\there").is_ok());
        assert!(check_text("two\nlines").is_err());
        assert!(check_text(&"x".repeat(MAX_TEXT + 1)).is_err());
    }

    #[test]
    fn events_read_as_a_transcript() {
        let who = Endpoint::new(2, 0);
        let line = ChatEvent::Line { from: who, nick: "bob".into(), text: "hi".into() };
        assert_eq!(line.to_string(), "bob: hi");
        let gone = ChatEvent::Left { who, nick: "bob".into(), failed: true };
        assert_eq!(gone.to_string(), "* bob left (failed)");
        let recent = ChatEvent::Recent(vec![line, ChatEvent::Joined { who, nick: "bob".into() }]);
        assert_eq!(recent.to_string(), "bob: hi\n* bob joined");
    }

    #[test]
    fn a_state_that_does_not_hold_together_is_refused() {
        let line = |t: &str| ChatEvent::Line {
            from: Endpoint::new(1, 0),
            nick: "a".into(),
            text: t.into(),
        };
        let ok = State { next: 3, members: vec![], recent: vec![(1, line("x")), (2, line("y"))] };
        assert!(valid(&ok));
        let backwards = State { recent: vec![(2, line("x")), (1, line("y"))], ..ok };
        assert!(!valid(&backwards));
        let ahead = State { next: 2, members: vec![], recent: vec![(2, line("x"))] };
        assert!(!valid(&ahead));
        let bad = State { next: 9, members: vec![], recent: vec![(1, line("a\u{7}"))] };
        assert!(!valid(&bad));
    }
}
