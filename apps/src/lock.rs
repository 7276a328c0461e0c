//! A lock service: named locks, each with a fair (FIFO) queue, granted in the group's total
//! order; a lock is given up when its holder releases it, leaves or fails.
//!
//! **Guarantee.** Within any one view, no two members hold the same lock at once, and a
//! lock's grants follow the order of its acquires in the total order. Every member keeps a
//! copy of the lock table (holder and queue of each lock) and applies the same acquires and
//! releases in the same total order, so every copy names the same holder at the same point of
//! the order. A member holds a lock from the moment the order grants it its acquire (a cast
//! of its own, or another member's release, or a view change) until its user releases it:
//! the release ends the holding *at once*, here, and only then is cast, so the next holder,
//! who is granted the lock when that release is delivered to it, starts after this one
//! stopped. Each grant carries a *fencing token*, the number of grants of that lock so far,
//! the same at every member: a resource that remembers the highest token it has seen can
//! refuse a holder that is out of date.
//!
//! **Failures.** Views are in the order too (virtual synchrony): every member that moves
//! from one view to the next has applied the same casts in the old one, so at the view
//! change every member drops the holdings and queued acquires of the members that are gone,
//! at the same point, and grants each freed lock to its next waiter. A joiner gets the
//! table by state transfer as of the view it joins in. This holds across a coordinator's
//! failure, which is one more view change. A lock granted by a cast delivered at the flush
//! that ends a view is held from the next view on: the flush is where members that part
//! may deliver different casts (each side of a partition its own), so a grant there could
//! clash, in the old view, with what a member on the other side believes.
//!
//! **Partitions.** Under the default primary-partition policy (`vsync`) only a majority goes
//! on; a member cut off is excluded, and its locks go to the next waiters. In a view merged
//! from two partitions (the `evs` stack), the members of the side merged in take the other
//! side's table, as joiners do: they stop holding what they held, and their queued acquires
//! fail (ask again). While apart, each side grants on its own: two members can hold one lock
//! at once, in two views, with the same fencing token. Use the default stack where a lock
//! must be unique.
//!
//! **Real time: the caveat.** The guarantee is per view. A member cut off by a partition (or
//! paused) still believes it holds its locks until it learns of the view change: under the
//! default primary-partition policy it is excluded and the majority grants its locks to
//! others, possibly before the cut-off member has noticed anything. So two members can
//! believe they hold a lock at the same wall-clock time, in two different views. Users that
//! guard something outside the group must therefore:
//! - stop using a lock when a view change starts ([`LockGuard::is_valid`] and
//!   [`LockService::holds`] say `false` from the group's `Block` until the next view
//!   confirms the holding; once the member is excluded or has exited they fail with
//!   [`Error::Exited`], and a waiting [`acquire`](LockService::acquire) fails the same way);
//! - and, where the resource can check, pass it the grant's fencing token
//!   ([`Grant::token`]), so that the resource itself refuses a holder older than the last
//!   it served. A check followed by a use is always a race; the token is what closes it.
//!
//! **Limits.** A lock's entry (its counters) stays in the table once used, so that tokens
//! only grow: a service with unbounded lock names grows. Locks are not reentrant: a member
//! that holds a lock and asks for it again queues behind itself (and waits for ever unless
//! another task releases it). An acquire is answered only when granted; dropping its future
//! withdraws it.
//!
//! **Why the `safe` level.** Commands are cast at the `safe` level: totally ordered, and
//! uniform, delivered to a member only once every member of the view has received them, so
//! that a command any member has applied, even one cut off or failed right after, is applied
//! by every survivor too. At the `total` level alone, a sequencer cut off by a partition
//! delivers its own acquire at once and holds the lock, while the others, who never received
//! that acquire, grant the lock again in their next view: one holder per view still, but
//! under the same fencing token, which the resource then cannot tell apart. The price is
//! latency: a command waits for every member's acknowledgement.
//!
//! On the wire a command is a postcard-encoded [`Command`]; one that does not decode, or
//! comes at another level, is dropped and counted ([`LockReplica::malformed`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use horus::replica::{Outbox, Replica, Replicated, Ticket};
use horus::{Bytes, Endpoint, Error, Group, GroupHandle, Level, ViewChange, ViewId};
use serde::{Deserialize, Serialize};

/// An acquire in the table: who asked, under which id, and where it came in the order of
/// that lock's acquires (the first is 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub member: Endpoint,
    pub id: u64,
    pub seq: u64,
}

/// One lock: its holder (with the fencing token of its grant), its waiters in the order they
/// asked, and its counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub holder: Option<(Entry, u64)>,
    pub queue: VecDeque<Entry>,
    /// Acquires of this lock ordered so far (tries included).
    pub acquires: u64,
    /// Grants of this lock so far: the last fencing token.
    pub grants: u64,
}

/// The lock table every member holds a copy of, by lock name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockTable {
    locks: BTreeMap<String, Lock>,
}

/// A lock given by the table: to whom, and under which token.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Given {
    name: String,
    entry: Entry,
    token: u64,
}

/// What applying an acquire did.
enum Acquired {
    Given(Given),
    Queued,
    /// A try that found the lock held, by the member named.
    Busy(Option<Endpoint>),
}

impl LockTable {
    /// Every lock ever used, by name.
    pub fn locks(&self) -> &BTreeMap<String, Lock> {
        &self.locks
    }

    /// The member holding `name`, if any.
    pub fn holder(&self, name: &str) -> Option<Endpoint> {
        self.locks.get(name)?.holder.map(|(e, _)| e.member)
    }

    /// Whether `id` of `member` is `name`'s holder or in its queue.
    fn has(&self, name: &str, member: Endpoint, id: u64) -> bool {
        self.locks.get(name).is_some_and(|l| {
            l.holder.is_some_and(|(e, _)| e.member == member && e.id == id)
                || l.queue.iter().any(|e| e.member == member && e.id == id)
        })
    }

    /// `member`'s acquire `id` of `name`, ordered now: granted if the lock is free, else
    /// queued (`wait`) or refused.
    fn acquire(&mut self, name: &str, member: Endpoint, id: u64, wait: bool) -> Acquired {
        let lock = self.locks.entry(name.to_owned()).or_default();
        lock.acquires += 1;
        let entry = Entry { member, id, seq: lock.acquires };
        if lock.holder.is_none() {
            lock.grants += 1;
            lock.holder = Some((entry, lock.grants));
            return Acquired::Given(Given { name: name.to_owned(), entry, token: lock.grants });
        }
        if !wait {
            return Acquired::Busy(lock.holder.map(|(e, _)| e.member));
        }
        lock.queue.push_back(entry);
        Acquired::Queued
    }

    /// `member` withdraws its acquire `id` of `name`: releases the lock if it holds it, leaves
    /// the queue if it waits. Returns the grant that makes, if any.
    fn release(&mut self, name: &str, member: Endpoint, id: u64) -> Option<Given> {
        let lock = self.locks.get_mut(name)?;
        lock.queue.retain(|e| !(e.member == member && e.id == id));
        match lock.holder {
            Some((e, _)) if e.member == member && e.id == id => {
                lock.holder = None;
                Self::next(name, lock)
            }
            _ => None,
        }
    }

    /// Drops the holdings and acquires of every member not in `members`, and grants each
    /// lock so freed to its next waiter. Returns the grants, in lock-name order.
    fn retain(&mut self, members: &[Endpoint]) -> Vec<Given> {
        let mut given = Vec::new();
        for (name, lock) in &mut self.locks {
            lock.queue.retain(|e| members.contains(&e.member));
            if lock.holder.is_some_and(|(e, _)| !members.contains(&e.member)) {
                lock.holder = None;
                given.extend(Self::next(name, lock));
            }
        }
        given
    }

    /// Grants the free lock `name` to the first in its queue.
    fn next(name: &str, lock: &mut Lock) -> Option<Given> {
        let entry = lock.queue.pop_front()?;
        lock.grants += 1;
        lock.holder = Some((entry, lock.grants));
        Some(Given { name: name.to_owned(), entry, token: lock.grants })
    }
}

/// What members cast to each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Acquire `name` as request `id` of the sender; queue if it is held and `wait`.
    Acquire { name: String, id: u64, wait: bool },
    /// The sender withdraws its request `id` of `name`: gives the lock up, or leaves the
    /// queue.
    Release { name: String, id: u64 },
}

/// A lock granted to this member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The lock.
    pub name: String,
    /// The fencing token: this lock's grants so far, counting this one; the same at every
    /// member, and larger at every grant.
    pub token: u64,
}

/// Requests to a [`LockReplica`]. `id`s name a member's requests: each acquire needs one
/// not in use by another of its acquires still asked or held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockRequest {
    /// Acquire `name`: answered when granted ([`LockResponse::Granted`]); with `wait` false,
    /// answered [`LockResponse::Busy`] at once (in the order) if the lock is held.
    Acquire { name: String, id: u64, wait: bool },
    /// Give up `name`: the acquire `id` (held, or still waiting), or with `None` whatever
    /// acquire of it this member holds. Answered [`LockResponse::Released`] at once.
    Release { name: String, id: Option<u64> },
}

/// A [`LockReplica`]'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockResponse {
    /// The acquire is granted: this member holds the lock.
    Granted(Grant),
    /// A try found the lock held (by the member named, unless it has just left).
    Busy(Option<Endpoint>),
    /// A release: whether it gave a holding up (`false`: it withdrew a waiting acquire, or
    /// there was nothing to give up).
    Released(bool),
    /// The request was refused (an `id` in use), or its acquire was lost in a merge of
    /// partitions; nothing is held.
    Failed(String),
}

/// One of this member's acquires not yet granted.
#[derive(Clone, Debug)]
struct Pending {
    ticket: Ticket,
    name: String,
    /// Its cast has been delivered: it is in the table.
    ordered: bool,
    /// Granted at a view's flush, with this token: held from the next view.
    flushed: Option<u64>,
}

/// A lock this member holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub id: u64,
    pub token: u64,
}

/// The [`Replica`] of the lock service (run it with [`LockService`], or in the simulator).
#[derive(Debug, Default)]
pub struct LockReplica {
    table: LockTable,
    /// This member's acquires asked and not yet granted, by id.
    pending: BTreeMap<u64, Pending>,
    /// The locks this member holds (granted and not released), by name.
    held: BTreeMap<String, Held>,
    /// This member's acquires withdrawn while waiting, whose release is not yet ordered.
    withdrawn: BTreeSet<u64>,
    /// Between a `Block` and the next view.
    blocked: bool,
    view: Option<ViewId>,
    malformed: u64,
    bad_states: u64,
}

impl LockReplica {
    /// An empty table; a joiner's is filled by state transfer.
    pub fn new() -> Self {
        Self::default()
    }

    /// This member's copy of the table.
    pub fn table(&self) -> &LockTable {
        &self.table
    }

    /// The locks this member holds: granted to it, and not released by its user.
    pub fn held(&self) -> &BTreeMap<String, Held> {
        &self.held
    }

    /// Whether this member holds `name` and may use it: it holds it, and no view change is
    /// under way (see the [module docs](self)).
    pub fn holds(&self, name: &str) -> bool {
        !self.blocked && self.held.contains_key(name)
    }

    /// Whether this member has acquires not yet granted (`name`: of that lock).
    pub fn waiting(&self, name: Option<&str>) -> bool {
        self.pending.values().any(|p| name.is_none_or(|n| p.name == n))
    }

    /// Whether a view change is under way (since the group's `Block`).
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// Messages dropped because they did not decode, and states that did not restore.
    pub fn malformed(&self) -> (u64, u64) {
        (self.malformed, self.bad_states)
    }

    /// Takes note of the grants the table made: those of this member's pending acquires
    /// are answered. A grant of an acquire this member has withdrawn is held by nobody
    /// here, and its release is on its way; one of an acquire this member knows nothing of
    /// (lost to a state that did not restore) is released at once, so the lock moves on.
    fn on_grants(&mut self, given: Vec<Given>, out: &mut Outbox<LockResponse>) {
        for g in given {
            if g.entry.member != out.me() {
                continue;
            }
            let id = g.entry.id;
            match self.pending.get_mut(&id) {
                // Granted at the flush that ends a view: believed in the next (see `view`).
                Some(p) if self.blocked => {
                    p.ordered = true;
                    p.flushed = Some(g.token);
                }
                Some(_) => self.grant(id, g.token, out),
                None if !self.withdrawn.contains(&id) => {
                    self.withdrawn.insert(id);
                    self.cast(&Command::Release { name: g.name, id }, out);
                }
                None => {}
            }
        }
    }

    /// This member holds the lock its pending acquire `id` asked for.
    fn grant(&mut self, id: u64, token: u64, out: &mut Outbox<LockResponse>) {
        if let Some(p) = self.pending.remove(&id) {
            self.held.insert(p.name.clone(), Held { id, token });
            out.done(p.ticket, LockResponse::Granted(Grant { name: p.name, token }));
        }
    }

    /// After the table was replaced (a merge, a joiner's state): what this member held or
    /// had queued and the table no longer has is lost.
    fn on_new_table(&mut self, out: &mut Outbox<LockResponse>) {
        let me = out.me();
        let table = &self.table;
        self.held.retain(|name, h| table.has(name, me, h.id));
        let lost: Vec<u64> = self
            .pending
            .iter()
            .filter(|(id, p)| p.ordered && !table.has(&p.name, me, **id))
            .map(|(id, _)| *id)
            .collect();
        self.fail(lost, out);
        // Entries of this member that it knows nothing of (a merged table from before this
        // side split off names what this member held or asked then): given up, so that
        // the lock moves on.
        let mut orphans = Vec::new();
        for (name, lock) in self.table.locks() {
            let holder = lock.holder.map(|(e, _)| e);
            for e in holder.iter().chain(lock.queue.iter()).filter(|e| e.member == me) {
                let known = self.pending.contains_key(&e.id)
                    || self.held.get(name).is_some_and(|h| h.id == e.id);
                if !known && !self.withdrawn.contains(&e.id) {
                    orphans.push(Command::Release { name: name.clone(), id: e.id });
                }
            }
        }
        for command in orphans {
            if let Command::Release { id, .. } = &command {
                self.withdrawn.insert(*id);
            }
            self.cast(&command, out);
        }
    }

    /// Answers the pending acquires `ids`: lost in a merge.
    fn fail(&mut self, ids: Vec<u64>, out: &mut Outbox<LockResponse>) {
        for id in ids {
            if let Some(p) = self.pending.remove(&id) {
                let why = format!("the acquire of `{}` was lost in a merge of partitions", p.name);
                out.done(p.ticket, LockResponse::Failed(why));
            }
        }
    }

    fn cast(&mut self, command: &Command, out: &mut Outbox<LockResponse>) {
        // A command of strings and integers always encodes.
        let wire = postcard::to_allocvec(command).expect("a command encodes");
        out.cast(Level::Safe, wire);
    }
}

impl Replica for LockReplica {
    type Request = LockRequest;
    type Response = LockResponse;

    fn request(&mut self, request: LockRequest, ticket: Ticket, out: &mut Outbox<LockResponse>) {
        match request {
            LockRequest::Acquire { name, id, wait } => {
                if self.pending.contains_key(&id) || self.held.values().any(|h| h.id == id) {
                    let why = format!("request id {id} is in use by another acquire");
                    return out.done(ticket, LockResponse::Failed(why));
                }
                self.pending.insert(
                    id,
                    Pending { ticket, name: name.clone(), ordered: false, flushed: None },
                );
                self.cast(&Command::Acquire { name, id, wait }, out);
            }
            LockRequest::Release { name, id } => {
                let holding = self.held.get(&name).filter(|h| id.is_none_or(|id| id == h.id));
                if let Some(h) = holding.copied() {
                    // The holding ends here and now, before anyone can be granted the lock.
                    self.held.remove(&name);
                    self.cast(&Command::Release { name, id: h.id }, out);
                    return out.done(ticket, LockResponse::Released(true));
                }
                let waiting = id.filter(|id| self.pending.get(id).is_some_and(|p| p.name == name));
                if let Some(id) = waiting {
                    // Withdrawn: even if it is granted before the withdrawal is ordered,
                    // nobody here holds it, and the withdrawal releases it.
                    if let Some(p) = self.pending.remove(&id) {
                        let why = format!("the acquire of `{name}` was withdrawn");
                        out.done(p.ticket, LockResponse::Failed(why));
                    }
                    self.withdrawn.insert(id);
                    self.cast(&Command::Release { name, id }, out);
                }
                out.done(ticket, LockResponse::Released(false));
            }
        }
    }

    fn message(
        &mut self,
        from: Endpoint,
        level: Option<Level>,
        data: Bytes,
        out: &mut Outbox<LockResponse>,
    ) {
        if level != Some(Level::Safe) {
            self.malformed += 1; // every command is cast at the safe level
            return;
        }
        let Ok(command) = postcard::from_bytes::<Command>(&data) else {
            self.malformed += 1;
            return;
        };
        match command {
            Command::Acquire { name, id, wait } => {
                match self.table.acquire(&name, from, id, wait) {
                    Acquired::Given(g) => self.on_grants(vec![g], out),
                    Acquired::Queued => {
                        if let Some(p) = self.pending.get_mut(&id).filter(|_| from == out.me()) {
                            p.ordered = true;
                        }
                    }
                    Acquired::Busy(holder) => {
                        if from == out.me() {
                            if let Some(p) = self.pending.remove(&id) {
                                out.done(p.ticket, LockResponse::Busy(holder));
                            }
                        }
                    }
                }
            }
            Command::Release { name, id } => {
                if from == out.me() {
                    self.withdrawn.remove(&id);
                }
                let given = self.table.release(&name, from, id);
                self.on_grants(given.into_iter().collect(), out);
            }
        }
    }

    fn view(&mut self, change: &ViewChange, out: &mut Outbox<LockResponse>) {
        self.blocked = false;
        let previous = self.view.replace(change.view.id);
        // The gms's rule for a merged view: the members that come from another view than its
        // coordinator's take that view's state, as joiners do. What they held is not theirs
        // in the merged view: they stop holding it now, before the state comes.
        let merged_in = change.view.prev.len() > 1
            && previous.is_some_and(|p| change.view.prev.first() != Some(&p));
        if merged_in {
            self.held.clear();
            let lost: Vec<u64> =
                self.pending.iter().filter(|(_, p)| p.ordered).map(|(id, _)| *id).collect();
            self.fail(lost, out);
        }
        // Virtual synchrony: every member that installs this view has applied the same
        // commands before it, so the departed members' locks go to the same waiters
        // everywhere.
        let given = self.table.retain(&change.view.members);
        self.on_grants(given, out);
        // What the flush granted is held from this view on: the flush is where members that
        // part deliver different casts (those of their own side, in a partition), so a grant
        // there may clash with what a member on another side believes, in the old view.
        let me = out.me();
        let table = &self.table;
        let flushed: Vec<(u64, u64)> = self
            .pending
            .iter()
            .filter_map(|(id, p)| {
                let token = p.flushed?;
                let holder = table.locks().get(&p.name)?.holder?;
                let (entry, t) = holder;
                (entry.member == me && entry.id == *id && t == token).then_some((*id, token))
            })
            .collect();
        for (id, token) in flushed {
            self.grant(id, token, out);
        }
    }

    fn block(&mut self, _out: &mut Outbox<LockResponse>) {
        self.blocked = true;
    }

    fn snapshot(&self) -> Bytes {
        Bytes::from(postcard::to_allocvec(&self.table).expect("a table encodes"))
    }

    fn restore(&mut self, state: Bytes, out: &mut Outbox<LockResponse>) {
        let Ok(table) = postcard::from_bytes::<LockTable>(&state) else {
            self.bad_states += 1;
            return;
        };
        self.table = table;
        // The state is the table at the view boundary, which may be from before its givers
        // dropped the departed: dropping them again changes nothing, or what it did there.
        let members = out.view().members.clone();
        let given = self.table.retain(&members);
        self.on_grants(given, out);
        self.on_new_table(out);
    }
}

/// Named locks shared by the members of a group: see the [module docs](self).
///
/// ```no_run
/// # async fn run() -> Result<(), horus::Error> {
/// use horus_apps::lock::LockService;
///
/// let group = horus::Group::builder("printers").state_transfer(true).join().await?;
/// let locks = LockService::start(group);
/// let guard = locks.acquire("printer-2").await?; // waits its turn
/// if guard.is_valid().await? {
///     // ... print, passing guard.token() to the printer if it checks tokens ...
/// }
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct LockService {
    replica: Replicated<LockReplica>,
    next_id: Arc<AtomicU64>,
}

impl LockService {
    /// Runs the lock service on `group` (built with `state_transfer(true)`, so that joiners
    /// get the table).
    pub fn start(group: Group) -> Self {
        LockService {
            replica: Replicated::start(group, LockReplica::new()),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Acquires `name`: waits its turn in the lock's queue, and returns the holding. The
    /// guard releases the lock when dropped (or with [`LockGuard::release`]); dropping this
    /// future before it is ready withdraws the acquire.
    ///
    /// # Errors
    /// [`Error::Exited`] if this member left or was excluded first; [`Error::Application`]
    /// if the acquire was lost in a merge of partitions.
    pub async fn acquire(&self, name: impl Into<String>) -> Result<LockGuard, Error> {
        self.acquire_as(name.into(), true)
            .await?
            .ok_or_else(|| Error::Application("the lock was busy, though the acquire waits".into()))
    }

    /// Acquires `name` if it is free when the request is ordered; `None` if it is held.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub async fn try_acquire(&self, name: impl Into<String>) -> Result<Option<LockGuard>, Error> {
        self.acquire_as(name.into(), false).await
    }

    async fn acquire_as(&self, name: String, wait: bool) -> Result<Option<LockGuard>, Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut withdraw = Withdraw { service: Some(self.clone()), name: name.clone(), id };
        let request = LockRequest::Acquire { name: name.clone(), id, wait };
        let answer = self.replica.request(request).await;
        withdraw.service = None;
        match answer? {
            LockResponse::Granted(grant) => {
                Ok(Some(LockGuard { service: Some(self.clone()), grant, id }))
            }
            LockResponse::Busy(_) => Ok(None),
            LockResponse::Failed(why) => Err(Error::Application(why)),
            LockResponse::Released(_) => Err(Error::Application("a confused answer".into())),
        }
    }

    /// Releases `name` if this member holds it; returns whether it did.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn release(&self, name: impl Into<String>) -> Result<bool, Error> {
        self.release_as(name.into(), None).await
    }

    async fn release_as(&self, name: String, id: Option<u64>) -> Result<bool, Error> {
        match self.replica.request(LockRequest::Release { name, id }).await? {
            LockResponse::Released(gave_up) => Ok(gave_up),
            other => Err(Error::Application(format!("a confused answer: {other:?}"))),
        }
    }

    /// The holder of `name` in this member's copy of the table (local, not ordered).
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn holder(&self, name: impl Into<String>) -> Result<Option<Endpoint>, Error> {
        let name = name.into();
        self.replica.inspect(move |r| r.table().holder(&name)).await
    }

    /// Whether this member holds `name` and no view change is under way (see the
    /// [module docs](self) on real time).
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited: it holds nothing.
    pub async fn holds(&self, name: impl Into<String>) -> Result<bool, Error> {
        let name = name.into();
        self.replica.inspect(move |r| r.holds(&name)).await
    }

    /// This member's copy of the table, whole.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn table(&self) -> Result<LockTable, Error> {
        self.replica.inspect(|r| r.table().clone()).await
    }

    /// The group the service runs on: its view, and `leave`.
    pub fn group(&self) -> &GroupHandle {
        self.replica.group()
    }
}

/// Withdraws an acquire whose future was dropped before it was answered.
struct Withdraw {
    service: Option<LockService>,
    name: String,
    id: u64,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        let Some(service) = self.service.take() else { return };
        let (name, id) = (std::mem::take(&mut self.name), self.id);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { service.release_as(name, Some(id)).await });
        }
    }
}

/// A lock this member holds; released when dropped, or with [`release`](Self::release).
#[derive(Debug)]
pub struct LockGuard {
    service: Option<LockService>,
    grant: Grant,
    id: u64,
}

impl LockGuard {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.grant.name
    }

    /// The fencing token of this grant.
    pub fn token(&self) -> u64 {
        self.grant.token
    }

    /// Whether the holding may still be used: it has not been lost, and no view change is
    /// under way (see the [module docs](self) on real time).
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited: the lock is no longer held.
    pub async fn is_valid(&self) -> Result<bool, Error> {
        let (name, id) = (self.grant.name.clone(), self.id);
        let Some(service) = &self.service else { return Ok(false) };
        service
            .replica
            .inspect(move |r| r.holds(&name) && r.held().get(&name).is_some_and(|h| h.id == id))
            .await
    }

    /// Releases the lock; returns whether it was still held.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn release(mut self) -> Result<bool, Error> {
        let Some(service) = self.service.take() else { return Ok(false) };
        service.release_as(self.grant.name.clone(), Some(self.id)).await
    }

    /// The grant, without releasing the lock: it stays held until released by name
    /// ([`LockService::release`]).
    pub fn into_grant(mut self) -> Grant {
        self.service = None;
        self.grant.clone()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(service) = self.service.take() else { return };
        let (name, id) = (self.grant.name.clone(), self.id);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { service.release_as(name, Some(id)).await });
        }
    }
}

/// Microseconds since the Unix epoch, as the demo's members report their grants and
/// releases (all on one host, so comparable).
fn unix_micros() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_micros() as u64)
}

impl LockTable {
    /// The table as JSON, for the demos: each lock's holder, token, queue and counters.
    pub fn to_json(&self) -> serde_json::Value {
        let locks: serde_json::Map<String, serde_json::Value> = self
            .locks
            .iter()
            .map(|(name, l)| {
                let lock = serde_json::json!({
                    "holder": l.holder.map(|(e, _)| e.member.to_string()),
                    "token": l.holder.map(|(_, t)| t),
                    "queue": l.queue.iter().map(|e| e.member.to_string()).collect::<Vec<_>>(),
                    "acquires": l.acquires,
                    "grants": l.grants,
                });
                (name.clone(), lock)
            })
            .collect();
        serde_json::Value::Object(locks)
    }
}

/// The lock service in a demo's member process (`horus app-member --app lock`): `acquire`
/// and `try_acquire` answer with the grant and when it came (`at_us`), `release` with
/// whether it gave a holding up and when it was asked; `holder`, `holds` and `table` read
/// this member's copy.
impl crate::appmember::Handler for LockService {
    fn handle(
        &self,
        op: String,
        args: serde_json::Value,
    ) -> crate::appmember::BoxFuture<Result<serde_json::Value, String>> {
        use serde_json::json;
        let locks = self.clone();
        Box::pin(async move {
            let e = |e: Error| e.to_string();
            let name = || crate::appmember::arg_str(&args, "name");
            match op.as_str() {
                "acquire" => {
                    let grant = locks.acquire(name()?).await.map_err(e)?.into_grant();
                    Ok(json!({"token": grant.token, "at_us": unix_micros()}))
                }
                "try_acquire" => match locks.try_acquire(name()?).await.map_err(e)? {
                    Some(guard) => {
                        let grant = guard.into_grant();
                        Ok(json!({"token": grant.token, "at_us": unix_micros()}))
                    }
                    None => Ok(json!(null)),
                },
                "release" => {
                    let name = name()?;
                    let at = unix_micros();
                    let released = locks.release(name).await.map_err(e)?;
                    Ok(json!({"released": released, "at_us": at}))
                }
                "holder" => {
                    Ok(json!(locks.holder(name()?).await.map_err(e)?.map(|m| m.to_string())))
                }
                "holds" => Ok(json!(locks.holds(name()?).await.map_err(e)?)),
                "table" => Ok(locks.table().await.map_err(e)?.to_json()),
                other => Err(format!("the lock service has no operation `{other}`")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(node: u64) -> Endpoint {
        Endpoint::new(node, 0)
    }

    #[test]
    fn waiters_are_granted_in_the_order_they_asked() {
        let mut t = LockTable::default();
        assert!(matches!(t.acquire("l", e(1), 1, true), Acquired::Given(_)));
        assert!(matches!(t.acquire("l", e(3), 1, true), Acquired::Queued));
        assert!(matches!(t.acquire("l", e(2), 1, true), Acquired::Queued));
        assert!(matches!(t.acquire("l", e(4), 1, false), Acquired::Busy(Some(h)) if h == e(1)));
        let g = t.release("l", e(1), 1).expect("a waiter is granted");
        assert_eq!((g.entry.member, g.entry.seq, g.token), (e(3), 2, 2));
        let g = t.release("l", e(3), 1).expect("a waiter is granted");
        assert_eq!((g.entry.member, g.entry.seq, g.token), (e(2), 3, 3));
        assert_eq!(t.release("l", e(2), 1), None);
        assert_eq!(t.holder("l"), None);
    }

    #[test]
    fn a_departed_members_holding_and_waits_are_dropped_at_the_view() {
        let mut t = LockTable::default();
        t.acquire("a", e(1), 1, true);
        t.acquire("a", e(1), 2, true); // not reentrant: queued behind itself
        t.acquire("a", e(2), 1, true);
        t.acquire("b", e(2), 2, true);
        let given = t.retain(&[e(2), e(3)]);
        assert_eq!(given.len(), 1);
        assert_eq!((given[0].name.as_str(), given[0].entry.member), ("a", e(2)));
        assert_eq!(t.holder("b"), Some(e(2)), "a holder that stays keeps its lock");
        assert!(t.locks()["a"].queue.is_empty());
    }

    #[test]
    fn a_withdrawn_wait_leaves_the_queue_and_a_table_survives_its_snapshot() {
        let mut t = LockTable::default();
        t.acquire("a", e(1), 1, true);
        t.acquire("a", e(2), 7, true);
        assert_eq!(t.release("a", e(2), 7), None);
        assert!(t.locks()["a"].queue.is_empty());
        let copy: LockTable = postcard::from_bytes(&postcard::to_allocvec(&t).unwrap()).unwrap();
        assert_eq!(copy, t);
        assert!(postcard::from_bytes::<LockTable>(&[0xff, 0xff, 0x01]).is_err());
    }
}
