//! Primary-backup replication on virtual synchrony (Birman, *Building Secure and Reliable
//! Network Applications*, ch. 15; the Isis primary-backup tool).
//!
//! **The guarantee.** A request answered by [`PrimaryBackup::execute`] has been applied at
//! every member of the view it was applied in, and is in the state of every member that
//! survives from then on: no answered update is lost while a majority of the group lives.
//! No request is applied twice, even when it is sent again after a failure, and the members
//! that survive into one view hold equal states.
//!
//! **How.** The primary is the first member of the current view. A member's requests go to
//! the primary (a send; the primary's own are handled at once), one at a time per member, each
//! with an id that increases. The primary is the only member that casts updates (a request,
//! with its requester and id), at the `safe` level; every member, the primary included,
//! applies an update to its [`Service`] when it is delivered, so the updates are applied in
//! the primary's order everywhere and, the service being deterministic, every member computes
//! the same reply. The requester answers its user when the update is delivered to it: at the
//! `safe` level that means every member of the view has received it, so any member that
//! survives delivers it too, even if the primary and the requester crash at once.
//!
//! When the primary fails, virtual synchrony gives every survivor the same updates before the
//! next view, whose first member is the new primary; it needs no recovery. Each requester sends
//! its request in flight again, at every view change, to the primary of the new view. The
//! state keeps, per requester, the last id applied and its reply: an update whose id is not
//! past it is not applied again, and a request sent again after it was applied is answered
//! from the table. A member that joins is given the state, table included, by state transfer.
//!
//! On the wire, postcard: a request `Request { id, command }` (send) or an update
//! `Update { view, requester, id, command }` (cast; `view` is the primary's view when it cast
//! it, so oracles can check there is one primary per view), or `Answer { id, reply }` (the
//! table's reply, sent to a requester that asked again). What does not decode is dropped and
//! counted.
//!
//! **Limits.** The table keeps one entry per requester endpoint that ever asked (an id and a
//! reply; an incarnation that restarts is a new requester). With the default stack (primary
//! partition) a member cut off with a minority leaves and rejoins as a new incarnation, so at
//! most one primary goes on. With the partitionable stack (`evs`) each side has a primary and
//! applies updates of its own; at a merge the merged-in side takes the other side's state and
//! its updates are lost, answered or not: do not run primary-backup on `evs`. A request is
//! answered only once the group has a view with a majority; a requester whose member leaves
//! first gets [`Error::Exited`], and its request may or may not have been applied.

use std::collections::{BTreeMap, VecDeque};

use horus::core::codec::{fold, item_key};
use horus::replica::{Outbox, Replica, Replicated, Ticket};
use horus::{Bytes, Endpoint, Error, Group, GroupHandle, Level, View, ViewChange, ViewId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::appmember::{arg_str, BoxFuture, Handler};

// ANCHOR: service
/// A deterministic service: the same requests in the same order give the same states and
/// replies wherever they are executed.
pub trait Service: Send + 'static {
    /// What changes the state (or reads it, in order).
    type Request: Serialize + DeserializeOwned + Send + 'static;
    /// What a request returns; kept in the state as the requester's last reply.
    type Reply: Serialize + DeserializeOwned + Clone + Send + 'static;

    /// Executes `request`, asked by `requester`.
    fn execute(&mut self, requester: Endpoint, request: Self::Request) -> Self::Reply;

    /// The state, for members that join.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state with `state`, a [`snapshot`](Self::snapshot). On `Err` the replica
    /// keeps its state and counts the failure.
    fn restore(&mut self, state: &[u8]) -> Result<(), String>;
}
// ANCHOR_END: service

/// What travels between the members.
#[derive(Debug, Serialize, Deserialize)]
enum Wire {
    /// Requester to primary: execute `command` (a postcard `Service::Request`).
    Request { id: u64, command: Vec<u8> },
    /// Primary to all, at the `safe` level: apply `requester`'s request `id`.
    Update { view: ViewId, requester: Endpoint, id: u64, command: Vec<u8> },
    /// Primary to a requester that asked again for a request already applied: its reply.
    Answer { id: u64, reply: Vec<u8> },
}

/// The last update a replica applied or skipped: who cast it, in which view, for whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateSeen {
    /// The view the primary was in when it cast the update.
    pub view: ViewId,
    /// The member that cast it.
    pub primary: Endpoint,
    pub requester: Endpoint,
    pub id: u64,
}

/// Counters of a [`PbReplica`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PbStats {
    /// Updates cast as primary.
    pub cast: u64,
    /// Requests sent again to the primary of a new view.
    pub resent: u64,
    /// Requests or updates already applied (not applied again).
    pub duplicates: u64,
    /// Requests that reached a member that is not the primary (dropped; the requester sends
    /// them again at the next view).
    pub misdirected: u64,
    /// Messages that did not decode.
    pub malformed: u64,
    /// States that did not restore.
    pub bad_states: u64,
}

/// One of this member's own requests, waiting to be applied.
#[derive(Debug)]
struct Waiting {
    ticket: Ticket,
    id: u64,
    command: Vec<u8>,
}

/// The [`Replica`] of primary-backup (run it with [`PrimaryBackup`], or in the simulator).
#[derive(Debug)]
pub struct PbReplica<S: Service> {
    service: S,
    /// Per requester: the last request id applied, and its reply.
    last: BTreeMap<Endpoint, (u64, S::Reply)>,
    applied: u64,
    digest: u64,
    /// This member's requests, in order; the first is in flight.
    waiting: VecDeque<Waiting>,
    next_id: u64,
    /// As primary: per requester, the last id this member cast an update for.
    cast: BTreeMap<Endpoint, u64>,
    /// Whether this member was the primary of its previous view.
    was_primary: bool,
    last_update: Option<UpdateSeen>,
    stats: PbStats,
}

/// The answer to a request: the service's reply, or why there is none.
pub type PbResponse<R> = Result<R, String>;

impl<S: Service> PbReplica<S> {
    /// Runs `service` as a replica; it is empty until state transfer fills it, unless it
    /// founds the group.
    pub fn new(service: S) -> Self {
        PbReplica {
            service,
            last: BTreeMap::new(),
            applied: 0,
            digest: 0,
            waiting: VecDeque::new(),
            next_id: 0,
            cast: BTreeMap::new(),
            was_primary: false,
            last_update: None,
            stats: PbStats::default(),
        }
    }

    /// The service.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// Updates applied by this replica (those in its joining state included).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// A digest of the updates applied, in order (requester, id and request): equal at two
    /// replicas that applied the same updates in the same order.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// This member's requests not yet answered.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Requesters in the table of last replies.
    pub fn requesters(&self) -> usize {
        self.last.len()
    }

    /// The last update delivered here (applied or skipped as a duplicate).
    pub fn last_update(&self) -> Option<UpdateSeen> {
        self.last_update
    }

    /// The counters.
    pub fn stats(&self) -> PbStats {
        self.stats
    }

    /// The primary of `view`: its first member.
    pub fn primary(view: &View) -> Endpoint {
        view.coordinator()
    }

    /// Sends the request in flight to the primary (or, at the primary, handles it).
    fn forward(&mut self, out: &mut Outbox<PbResponse<S::Reply>>) {
        let Some(w) = self.waiting.front() else { return };
        let (id, command) = (w.id, w.command.clone());
        let me = out.me();
        let primary = Self::primary(out.view());
        if primary == me {
            self.on_request(me, id, command, out);
        } else {
            let wire = Wire::Request { id, command };
            out.send(primary, postcard::to_allocvec(&wire).expect("a request encodes"));
        }
    }

    /// At the primary: a request `id` from `from`.
    fn on_request(
        &mut self,
        from: Endpoint,
        id: u64,
        command: Vec<u8>,
        out: &mut Outbox<PbResponse<S::Reply>>,
    ) {
        if Self::primary(out.view()) != out.me() {
            self.stats.misdirected += 1;
            return;
        }
        match self.last.get(&from) {
            // Applied already, and the requester asks again: it missed the update (it was
            // cut off when it was delivered); answer from the table.
            Some((last, reply)) if *last == id => {
                self.stats.duplicates += 1;
                let reply = postcard::to_allocvec(reply).unwrap_or_default();
                if from == out.me() {
                    self.on_answer(id, &reply, out);
                } else {
                    let wire = Wire::Answer { id, reply };
                    out.send(from, postcard::to_allocvec(&wire).expect("an answer encodes"));
                }
                return;
            }
            Some((last, _)) if *last > id => {
                self.stats.duplicates += 1;
                return;
            }
            _ => {}
        }
        if self.cast.get(&from).is_some_and(|c| *c >= id) {
            // Cast already, and on its way: sent again across a view change.
            self.stats.duplicates += 1;
            return;
        }
        self.cast.insert(from, id);
        self.stats.cast += 1;
        let wire = Wire::Update { view: out.view().id, requester: from, id, command };
        out.cast(Level::Safe, postcard::to_allocvec(&wire).expect("an update encodes"));
    }

    /// At every member: the primary's update, in its order.
    fn on_update(
        &mut self,
        seen: UpdateSeen,
        command: Vec<u8>,
        out: &mut Outbox<PbResponse<S::Reply>>,
    ) {
        self.last_update = Some(seen);
        let UpdateSeen { requester, id, .. } = seen;
        if self.last.get(&requester).is_some_and(|(last, _)| *last >= id) {
            self.stats.duplicates += 1;
            return;
        }
        let Ok(request) = postcard::from_bytes::<S::Request>(&command) else {
            // Every member drops it alike; the requester is told.
            self.stats.malformed += 1;
            if requester == out.me() && self.waiting.front().is_some_and(|w| w.id == id) {
                let w = self.waiting.pop_front().expect("just looked");
                out.done(w.ticket, Err("the request does not decode".into()));
                self.forward(out);
            }
            return;
        };
        let reply = self.service.execute(requester, request);
        self.applied += 1;
        self.digest = fold(self.digest, item_key(requester, id), &command);
        self.last.insert(requester, (id, reply.clone()));
        if requester == out.me() && self.waiting.front().is_some_and(|w| w.id == id) {
            let w = self.waiting.pop_front().expect("just looked");
            out.done(w.ticket, Ok(reply));
            self.forward(out);
        }
    }

    /// At a requester: the primary's answer from the table.
    fn on_answer(&mut self, id: u64, reply: &[u8], out: &mut Outbox<PbResponse<S::Reply>>) {
        if self.waiting.front().is_none_or(|w| w.id != id) {
            self.stats.duplicates += 1;
            return;
        }
        let Ok(reply) = postcard::from_bytes::<S::Reply>(reply) else {
            self.stats.malformed += 1;
            return;
        };
        let w = self.waiting.pop_front().expect("just looked");
        out.done(w.ticket, Ok(reply));
        self.forward(out);
    }
}

impl<S: Service> Replica for PbReplica<S> {
    type Request = S::Request;
    type Response = PbResponse<S::Reply>;

    fn request(&mut self, request: S::Request, ticket: Ticket, out: &mut Outbox<Self::Response>) {
        let command = match postcard::to_allocvec(&request) {
            Ok(c) => c,
            Err(e) => return out.done(ticket, Err(format!("the request does not encode: {e}"))),
        };
        self.next_id += 1;
        self.waiting.push_back(Waiting { ticket, id: self.next_id, command });
        if self.waiting.len() == 1 {
            self.forward(out);
        }
    }

    fn message(
        &mut self,
        from: Endpoint,
        level: Option<Level>,
        data: Bytes,
        out: &mut Outbox<Self::Response>,
    ) {
        match (level, postcard::from_bytes::<Wire>(&data)) {
            (None, Ok(Wire::Request { id, command })) => self.on_request(from, id, command, out),
            (None, Ok(Wire::Answer { id, reply })) => self.on_answer(id, &reply, out),
            (Some(_), Ok(Wire::Update { view, requester, id, command })) => {
                let seen = UpdateSeen { view, primary: from, requester, id };
                self.on_update(seen, command, out)
            }
            // Garbage, or a message of one kind on the other channel.
            _ => self.stats.malformed += 1,
        }
    }

    fn view(&mut self, change: &ViewChange, out: &mut Outbox<Self::Response>) {
        let primary = Self::primary(&change.view) == out.me();
        if primary && !self.was_primary {
            self.cast.clear();
        }
        self.was_primary = primary;
        // The request in flight may have gone to a primary that failed, or been held by the
        // view change: send it again; the primary drops it if it has it already.
        if !self.waiting.is_empty() {
            self.stats.resent += 1;
            self.forward(out);
        }
    }

    fn snapshot(&self) -> Bytes {
        let table: Vec<(Endpoint, u64, Vec<u8>)> = self
            .last
            .iter()
            .map(|(e, (id, r))| (*e, *id, postcard::to_allocvec(r).unwrap_or_default()))
            .collect();
        let state = (self.applied, self.digest, table, self.service.snapshot());
        Bytes::from(postcard::to_allocvec(&state).expect("a state encodes"))
    }

    fn restore(&mut self, state: Bytes, _out: &mut Outbox<Self::Response>) {
        type State = (u64, u64, Vec<(Endpoint, u64, Vec<u8>)>, Vec<u8>);
        let Ok((applied, digest, table, service)) = postcard::from_bytes::<State>(&state) else {
            self.stats.bad_states += 1;
            return;
        };
        let mut last = BTreeMap::new();
        for (e, id, reply) in table {
            let Ok(reply) = postcard::from_bytes::<S::Reply>(&reply) else {
                self.stats.bad_states += 1;
                return;
            };
            last.insert(e, (id, reply));
        }
        if self.service.restore(&service).is_err() {
            self.stats.bad_states += 1;
            return;
        }
        (self.applied, self.digest, self.last) = (applied, digest, last);
    }
}

/// A [`Service`] replicated by primary-backup on a group: see the [module docs](self).
///
/// ```no_run
/// # async fn run() -> Result<(), horus::Error> {
/// use horus_apps::primary_backup::{Journal, PrimaryBackup};
///
/// let group = horus::Group::builder("journal").state_transfer(true).join().await?;
/// let journal = PrimaryBackup::start(group, Journal::default());
/// let at = journal.execute("first entry".to_string()).await?; // applied at every member
/// # Ok(()) }
/// ```
pub struct PrimaryBackup<S: Service> {
    replica: Replicated<PbReplica<S>>,
}

impl<S: Service> Clone for PrimaryBackup<S> {
    fn clone(&self) -> Self {
        PrimaryBackup { replica: self.replica.clone() }
    }
}

impl<S: Service> std::fmt::Debug for PrimaryBackup<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimaryBackup").field("replica", &self.replica).finish()
    }
}

impl<S: Service> PrimaryBackup<S> {
    /// Runs `service` on `group` (built with state transfer, so that joiners get the state).
    pub fn start(group: Group, service: S) -> Self {
        PrimaryBackup { replica: Replicated::start(group, PbReplica::new(service)) }
    }

    /// Has the primary execute `request`; returns its reply once the update is at every
    /// member of the view.
    ///
    /// # Errors
    /// [`Error::Exited`] if this member left the group first: the request may or may not
    /// have been applied. [`Error::Application`] if the request does not encode.
    pub async fn execute(&self, request: S::Request) -> Result<S::Reply, Error> {
        self.replica.request(request).await?.map_err(Error::Application)
    }

    /// Reads this member's copy of the service, now.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&S) -> T + Send + 'static,
    ) -> Result<T, Error> {
        self.replica.inspect(move |r| query(r.service())).await
    }

    /// The replica itself, between two events: updates applied, digest, counters.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn inspect<T: Send + 'static>(
        &self,
        read: impl FnOnce(&PbReplica<S>) -> T + Send + 'static,
    ) -> Result<T, Error> {
        self.replica.inspect(read).await
    }

    /// The primary, as this member's view has it.
    pub fn primary(&self) -> Endpoint {
        PbReplica::<S>::primary(&self.group().view())
    }

    /// The group the service runs on.
    pub fn group(&self) -> &GroupHandle {
        self.replica.group()
    }
}

/// A journal: entries appended in order; appending returns the entry's index. The service of
/// `horus demo primary-backup`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    entries: Vec<String>,
}

impl Journal {
    /// The entries, in order.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }
}

impl Service for Journal {
    type Request = String;
    type Reply = u64;

    fn execute(&mut self, _requester: Endpoint, entry: String) -> u64 {
        self.entries.push(entry);
        self.entries.len() as u64 - 1
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.entries).unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.entries = postcard::from_bytes(state).map_err(|e| format!("not a journal: {e}"))?;
        Ok(())
    }
}

impl PrimaryBackup<Journal> {
    /// A [`Journal`] kept by primary-backup on `group`: the application `primary-backup` of
    /// `horus app-member`.
    pub fn journal(group: Group) -> Self {
        Self::start(group, Journal::default())
    }
}

impl Handler for PrimaryBackup<Journal> {
    fn handle(&self, op: String, args: Value) -> BoxFuture<Result<Value, String>> {
        let pb = self.clone();
        Box::pin(async move {
            let e = |e: Error| e.to_string();
            match op.as_str() {
                "append" => Ok(json!(pb.execute(arg_str(&args, "entry")?).await.map_err(e)?)),
                "journal" => Ok(json!(pb.read(|j| j.entries().to_vec()).await.map_err(e)?)),
                "state" => {
                    let (applied, digest, requesters, stats) = pb
                        .inspect(|r| (r.applied(), r.digest(), r.requesters(), r.stats()))
                        .await
                        .map_err(e)?;
                    Ok(json!({
                        "primary": pb.primary(),
                        "applied": applied,
                        "digest": format!("{digest:016x}"),
                        "requesters": requesters,
                        "stats": stats,
                    }))
                }
                other => Err(format!("primary-backup has no operation `{other}`")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_restores_from_its_snapshot_and_refuses_garbage() {
        let mut j = Journal::default();
        let e = Endpoint::new(1, 0);
        assert_eq!(j.execute(e, "a".into()), 0);
        assert_eq!(j.execute(e, "b".into()), 1);
        let mut copy = Journal::default();
        copy.restore(&j.snapshot()).unwrap();
        assert_eq!(copy, j);
        assert!(copy.restore(&[0xff, 0xff]).is_err());
        assert_eq!(copy, j, "a refused state changes nothing");
    }

    #[test]
    fn the_primary_is_the_first_member() {
        let (a, b) = (Endpoint::new(1, 0), Endpoint::new(2, 0));
        assert_eq!(PbReplica::<Journal>::primary(&View::initial(vec![b, a])), b);
    }
}
