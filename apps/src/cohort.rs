//! Coordinator-cohort: requests shared out among the members of a group, each handled by one
//! member and taken over by another if that one fails (Birman, *Building Secure and Reliable
//! Network Applications*, ch. 15, the coordinator-cohort tool of Isis).
//!
//! **The guarantee.** A request submitted at a member that stays in the group is answered
//! exactly once; the answer is the result of one member's handling of it, and every member
//! that sees a result for the request sees that one. The work is spread over the members: the
//! coordinator of a request is chosen from the request by rank.
//!
//! **How.** A request is cast at the `total` level with its requester's id. Every member
//! delivers it in the same view and keeps it until its result is delivered; its coordinator
//! is the member at rank `spread(requester, id) mod n` of that view (a hash, so load spreads),
//! the others are its cohort. The coordinator has its [`Worker`] handle the request and casts
//! the result at the `safe` level; on delivery every member drops the request, and the
//! requester answers its user. If a view comes without the coordinator, every survivor has the
//! same requests still pending (virtual synchrony), and gives each whose coordinator has gone
//! to the member at rank `spread mod n` of the new view: that member takes it over and handles
//! it again. Because the result is cast `safe`, a result one member delivered is delivered to
//! every survivor, so a request is never taken over once its result has been seen anywhere: one
//! result per request, even when the coordinator crashes as it casts it. Requests of members
//! that left are dropped. A joiner is given the pending requests by state transfer, and may be
//! chosen for them at once.
//!
//! A worker may take time: with [`Cohort::start_paced`] a member handles one of its requests
//! per period (as a slow job would), so requests queue at their coordinators; in the simulator
//! the workload drives the same steps.
//!
//! On the wire, postcard: `Request { id, body }` and `Result { requester, id, takeover,
//! body }`. What does not decode is dropped and counted; a request every member drops alike.
//!
//! **Limits.** The requests pending are state: they are in every member until answered. With
//! the default stack (primary partition) a member cut off with a minority leaves, and its
//! requests are dropped; it rejoins as a new incarnation. With the partitionable stack (`evs`)
//! each side hands out the requests it holds among its own members, so a request may be
//! handled on both sides, and a requester on the side merged in may never be answered: do not
//! run coordinator-cohort on `evs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use horus::core::codec::{fold, mix64};
use horus::replica::{Outbox, Replica, Replicated, Ticket};
use horus::{Bytes, Endpoint, Error, Group, GroupHandle, Level, View, ViewChange};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::appmember::{arg_str, BoxFuture, Handler};

// ANCHOR: worker
/// What handles the requests. Any member may be asked to handle any request, a request twice
/// only if its first coordinator failed first.
pub trait Worker: Send + 'static {
    type Request: Serialize + DeserializeOwned + Send + 'static;
    type Reply: Serialize + DeserializeOwned + Clone + Send + 'static;

    /// Handles `request`, submitted by `requester`.
    fn handle(&mut self, requester: Endpoint, request: Self::Request) -> Self::Reply;
}
// ANCHOR_END: worker

/// What travels between the members.
#[derive(Debug, Serialize, Deserialize)]
enum Wire {
    /// A requester to all, at the `total` level: a request (a postcard `Worker::Request`).
    Request { id: u64, body: Vec<u8> },
    /// A coordinator to all, at the `safe` level: the result of `requester`'s request `id`
    /// (a postcard `Worker::Reply`); `takeover` if it took the request over.
    Result { requester: Endpoint, id: u64, takeover: bool, body: Vec<u8> },
}

/// A request: its requester and the requester's id for it.
type Key = (Endpoint, u64);

/// A request pending at every member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Job {
    body: Vec<u8>,
    coordinator: Endpoint,
    /// Given to `coordinator` after the one before failed.
    takeover: bool,
}

/// A request's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Done<R> {
    pub reply: R,
    /// The member that handled it.
    pub by: Endpoint,
    /// Whether `by` took it over from a coordinator that failed.
    pub takeover: bool,
}

/// A result as a member delivered it, for oracles: the request and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultSeen<R> {
    pub requester: Endpoint,
    pub id: u64,
    pub done: Done<R>,
}

/// Counters of a [`CohortReplica`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CohortStats {
    /// Requests this member handled as coordinator.
    pub handled: u64,
    /// Of those, requests it took over from a coordinator that failed.
    pub takeovers: u64,
    /// Results delivered here.
    pub results: u64,
    /// Results delivered for a request already answered (there should be none).
    pub duplicates: u64,
    /// Requests and results of requesters that left, dropped.
    pub orphans: u64,
    /// Messages that did not decode.
    pub malformed: u64,
    /// States that did not restore.
    pub bad_states: u64,
}

/// Requests to a [`CohortReplica`].
#[derive(Debug)]
pub enum CohortRequest<Q> {
    /// Submit a request to the group; answered with its result.
    Submit(Q),
    /// Handle the next request this member coordinates, if there is one (paced replicas);
    /// answered at once with `None`.
    Step,
}

/// The answer to a [`CohortRequest`].
pub type CohortResponse<R> = Result<Option<Done<R>>, String>;

/// The [`Replica`] of coordinator-cohort (run it with [`Cohort`], or in the simulator).
#[derive(Debug)]
pub struct CohortReplica<W: Worker> {
    worker: W,
    /// Handle at once (`true`), or one request per [`CohortRequest::Step`].
    eager: bool,
    /// Requests delivered and not yet answered, with their coordinators.
    pending: BTreeMap<Key, Job>,
    /// Per requester in the view: the highest id delivered (requests come in FIFO order).
    seen: BTreeMap<Endpoint, u64>,
    results: u64,
    digest: u64,
    /// Results delivered before their request (the orders of two levels may differ); a
    /// request and its result are always in one view, so this empties at each view.
    early: BTreeMap<Key, (Endpoint, bool, Vec<u8>)>,
    /// Requests this member coordinates, not yet handled, in order.
    queue: VecDeque<Key>,
    /// Requests this member handled whose result is not yet delivered.
    handling: BTreeSet<Key>,
    /// This member's own requests, by id.
    waiting: BTreeMap<u64, Ticket>,
    next_id: u64,
    last_result: Option<ResultSeen<W::Reply>>,
    stats: CohortStats,
}

impl<W: Worker> CohortReplica<W> {
    /// A replica that handles requests as soon as it coordinates them.
    pub fn new(worker: W) -> Self {
        CohortReplica {
            worker,
            eager: true,
            pending: BTreeMap::new(),
            seen: BTreeMap::new(),
            results: 0,
            digest: 0,
            early: BTreeMap::new(),
            queue: VecDeque::new(),
            handling: BTreeSet::new(),
            waiting: BTreeMap::new(),
            next_id: 0,
            last_result: None,
            stats: CohortStats::default(),
        }
    }

    /// A replica that handles one request per [`CohortRequest::Step`].
    pub fn paced(worker: W) -> Self {
        CohortReplica { eager: false, ..Self::new(worker) }
    }

    /// Requests pending (delivered, not answered).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Requests this member coordinates and has not handled yet.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// This member's own requests not yet answered.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Results delivered here (those in its joining state included) and their digest, in
    /// order: equal at members that saw the same results in the same order.
    pub fn digest(&self) -> (u64, u64) {
        (self.results, self.digest)
    }

    /// The last result delivered here.
    pub fn last_result(&self) -> Option<&ResultSeen<W::Reply>> {
        self.last_result.as_ref()
    }

    /// The counters.
    pub fn stats(&self) -> CohortStats {
        self.stats
    }

    /// The coordinator of request `key` in `view`: the member at rank `spread(key) mod n`.
    pub fn coordinator(requester: Endpoint, id: u64, view: &View) -> Endpoint {
        let h = spread(requester, id);
        view.members[(h % view.len() as u64) as usize]
    }

    /// A request delivered: keep it, and handle it if it is ours.
    fn on_request(
        &mut self,
        from: Endpoint,
        id: u64,
        body: Vec<u8>,
        out: &mut Outbox<CohortResponse<W::Reply>>,
    ) {
        let key = (from, id);
        let seen = self.seen.entry(from).or_insert(0);
        *seen = (*seen).max(id);
        if postcard::from_bytes::<W::Request>(&body).is_err() {
            // Every member drops it alike; the requester is told.
            self.stats.malformed += 1;
            if let Some(t) = (from == out.me()).then(|| self.waiting.remove(&id)).flatten() {
                out.done(t, Err("the request does not decode".into()));
            }
            return;
        }
        if let Some((by, takeover, result)) = self.early.remove(&key) {
            return self.complete(key, by, takeover, &result, out);
        }
        let coordinator = Self::coordinator(from, id, out.view());
        self.pending.insert(key, Job { body, coordinator, takeover: false });
        if coordinator == out.me() {
            self.queue.push_back(key);
            if self.eager {
                self.step(out);
            }
        }
    }

    /// Handles the next request in the queue, if any.
    fn step(&mut self, out: &mut Outbox<CohortResponse<W::Reply>>) {
        while let Some(key) = self.queue.pop_front() {
            let Some(job) = self.pending.get(&key) else { continue };
            if job.coordinator != out.me() || !self.handling.insert(key) {
                continue;
            }
            let Ok(request) = postcard::from_bytes::<W::Request>(&job.body) else { continue };
            let takeover = job.takeover;
            let reply = self.worker.handle(key.0, request);
            self.stats.handled += 1;
            self.stats.takeovers += u64::from(takeover);
            let body = postcard::to_allocvec(&reply).unwrap_or_default();
            let wire = Wire::Result { requester: key.0, id: key.1, takeover, body };
            out.cast(Level::Safe, postcard::to_allocvec(&wire).expect("a result encodes"));
            if !self.eager {
                return;
            }
        }
    }

    /// A result delivered.
    fn on_result(
        &mut self,
        by: Endpoint,
        key: Key,
        takeover: bool,
        body: Vec<u8>,
        out: &mut Outbox<CohortResponse<W::Reply>>,
    ) {
        if !out.view().contains(key.0) {
            self.stats.orphans += 1;
        } else if self.pending.remove(&key).is_some() {
            self.complete(key, by, takeover, &body, out);
        } else if self.seen.get(&key.0).is_some_and(|s| *s >= key.1) {
            self.stats.duplicates += 1;
        } else {
            self.early.insert(key, (by, takeover, body));
        }
    }

    /// The request `key` is answered with `body`, handled by `by`.
    fn complete(
        &mut self,
        key: Key,
        by: Endpoint,
        takeover: bool,
        body: &[u8],
        out: &mut Outbox<CohortResponse<W::Reply>>,
    ) {
        self.handling.remove(&key);
        let ticket = (key.0 == out.me()).then(|| self.waiting.remove(&key.1)).flatten();
        let Ok(reply) = postcard::from_bytes::<W::Reply>(body) else {
            self.stats.malformed += 1;
            if let Some(t) = ticket {
                out.done(t, Err("the result does not decode".into()));
            }
            return;
        };
        self.results += 1;
        self.stats.results += 1;
        self.digest = fold(self.digest, spread(key.0, key.1) ^ spread(by, 0).rotate_left(17), body);
        let done = Done { reply, by, takeover };
        if let Some(t) = ticket {
            out.done(t, Ok(Some(done.clone())));
        }
        self.last_result = Some(ResultSeen { requester: key.0, id: key.1, done });
    }

    /// The pending requests as of `view`: those of requesters that left are dropped, those
    /// whose coordinator left are taken over by the member the rank rule picks in `view`.
    /// Every member that installs `view` (or joins in it) does the same.
    fn reassign(&mut self, view: &View, out: &mut Outbox<CohortResponse<W::Reply>>) {
        let before = self.pending.len();
        self.pending.retain(|(requester, _), _| view.contains(*requester));
        self.stats.orphans += (before - self.pending.len()) as u64;
        self.seen.retain(|requester, _| view.contains(*requester));
        for (key, job) in &mut self.pending {
            if !view.contains(job.coordinator) {
                job.coordinator = Self::coordinator(key.0, key.1, view);
                job.takeover = true;
                if job.coordinator == out.me() {
                    self.queue.push_back(*key);
                }
            }
        }
        let (pending, me) = (&self.pending, out.me());
        self.handling.retain(|k| pending.contains_key(k));
        self.queue.retain(|k| pending.get(k).is_some_and(|j| j.coordinator == me));
        if self.eager {
            self.step(out);
        }
    }
}

impl<W: Worker> Replica for CohortReplica<W> {
    type Request = CohortRequest<W::Request>;
    type Response = CohortResponse<W::Reply>;

    fn request(
        &mut self,
        request: Self::Request,
        ticket: Ticket,
        out: &mut Outbox<Self::Response>,
    ) {
        let request = match request {
            CohortRequest::Submit(r) => r,
            CohortRequest::Step => {
                self.step(out);
                return out.done(ticket, Ok(None));
            }
        };
        let body = match postcard::to_allocvec(&request) {
            Ok(b) => b,
            Err(e) => return out.done(ticket, Err(format!("the request does not encode: {e}"))),
        };
        self.next_id += 1;
        self.waiting.insert(self.next_id, ticket);
        let wire = Wire::Request { id: self.next_id, body };
        out.cast(Level::Total, postcard::to_allocvec(&wire).expect("a request encodes"));
    }

    fn message(
        &mut self,
        from: Endpoint,
        level: Option<Level>,
        data: Bytes,
        out: &mut Outbox<Self::Response>,
    ) {
        match (level, postcard::from_bytes::<Wire>(&data)) {
            (Some(_), Ok(Wire::Request { id, body })) => self.on_request(from, id, body, out),
            (Some(_), Ok(Wire::Result { requester, id, takeover, body })) => {
                self.on_result(from, (requester, id), takeover, body, out)
            }
            // Garbage, or a send: nothing is sent point-to-point.
            _ => self.stats.malformed += 1,
        }
    }

    fn view(&mut self, change: &ViewChange, out: &mut Outbox<Self::Response>) {
        self.early.clear();
        self.reassign(&change.view, out);
    }

    fn snapshot(&self) -> Bytes {
        let pending: Vec<(&Key, &Job)> = self.pending.iter().collect();
        let seen: Vec<(&Endpoint, &u64)> = self.seen.iter().collect();
        let state = (self.results, self.digest, pending, seen);
        Bytes::from(postcard::to_allocvec(&state).expect("a state encodes"))
    }

    fn restore(&mut self, state: Bytes, out: &mut Outbox<Self::Response>) {
        type State = (u64, u64, Vec<(Key, Job)>, Vec<(Endpoint, u64)>);
        let Ok((results, digest, pending, seen)) = postcard::from_bytes::<State>(&state) else {
            self.stats.bad_states += 1;
            return;
        };
        (self.results, self.digest) = (results, digest);
        self.pending = pending.into_iter().collect();
        self.seen = seen.into_iter().collect();
        self.queue.clear();
        for (key, job) in &self.pending {
            if job.coordinator == out.me() {
                self.queue.push_back(*key);
            }
        }
        // The state may be as of before the givers saw the view: do what they did at it.
        let view = out.view().clone();
        self.reassign(&view, out);
    }
}

/// Coordinator-cohort on a group: see the [module docs](self).
///
/// ```no_run
/// # async fn run() -> Result<(), horus::Error> {
/// use horus_apps::cohort::{Cohort, Fingerprint};
///
/// let group = horus::Group::builder("workers").state_transfer(true).join().await?;
/// let cohort = Cohort::start(group, Fingerprint);
/// let done = cohort.submit("some work".to_string()).await?;
/// println!("{} handled it: {}", done.by, done.reply);
/// # Ok(()) }
/// ```
pub struct Cohort<W: Worker> {
    replica: Replicated<CohortReplica<W>>,
    /// A paced member holds its requests, handling none, while this is set.
    hold: Arc<AtomicBool>,
}

impl<W: Worker> Clone for Cohort<W> {
    fn clone(&self) -> Self {
        Cohort { replica: self.replica.clone(), hold: self.hold.clone() }
    }
}

impl<W: Worker> std::fmt::Debug for Cohort<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cohort").field("replica", &self.replica).finish()
    }
}

impl<W: Worker> Cohort<W> {
    /// Runs `worker` on `group` (built with state transfer, so that joiners get the pending
    /// requests); requests are handled as soon as they are delivered.
    pub fn start(group: Group, worker: W) -> Self {
        let replica = Replicated::start(group, CohortReplica::new(worker));
        Cohort { replica, hold: Arc::new(AtomicBool::new(false)) }
    }

    /// As [`start`](Self::start), but this member handles one of its requests per `every`,
    /// as if each took that long: requests queue at their coordinators.
    pub fn start_paced(group: Group, worker: W, every: Duration) -> Self {
        let replica = Replicated::start(group, CohortReplica::paced(worker));
        let (stepper, hold) = (replica.clone(), Arc::new(AtomicBool::new(false)));
        let held = hold.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if held.load(Ordering::Relaxed) {
                    continue;
                }
                if stepper.request(CohortRequest::Step).await.is_err() {
                    return;
                }
            }
        });
        Cohort { replica, hold }
    }

    /// A paced member stops handling its requests (`true`), as a hung worker would, or goes
    /// on (`false`); it still delivers requests and results. No effect on an eager member.
    pub fn hold(&self, hold: bool) {
        self.hold.store(hold, Ordering::Relaxed);
    }

    /// Submits `request` to the group; returns its result, from whichever member handled it.
    ///
    /// # Errors
    /// [`Error::Exited`] if this member left the group first. [`Error::Application`] if the
    /// request does not encode.
    pub async fn submit(&self, request: W::Request) -> Result<Done<W::Reply>, Error> {
        match self.replica.request(CohortRequest::Submit(request)).await? {
            Ok(Some(done)) => Ok(done),
            Ok(None) => Err(Error::Application("a submission answered as a step".into())),
            Err(e) => Err(Error::Application(e)),
        }
    }

    /// The replica itself, between two events: pending requests, counters.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn inspect<T: Send + 'static>(
        &self,
        read: impl FnOnce(&CohortReplica<W>) -> T + Send + 'static,
    ) -> Result<T, Error> {
        self.replica.inspect(read).await
    }

    /// The group the cohort runs on.
    pub fn group(&self) -> &GroupHandle {
        self.replica.group()
    }
}

/// A worker that answers a string with its 64-bit FNV-1a fingerprint, in hex: the worker of
/// `horus demo cohort`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fingerprint;

impl Worker for Fingerprint {
    type Request = String;
    type Reply = String;

    fn handle(&mut self, _requester: Endpoint, request: String) -> String {
        let h = request.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        format!("{h:016x}")
    }
}

impl Cohort<Fingerprint> {
    /// Fingerprints taken by coordinator-cohort on `group`, one per 300 ms at each member
    /// (as if each took that long): the application `cohort` of `horus app-member`.
    pub fn fingerprints(group: Group) -> Self {
        Self::start_paced(group, Fingerprint, Duration::from_millis(300))
    }
}

impl Handler for Cohort<Fingerprint> {
    fn handle(&self, op: String, args: Value) -> BoxFuture<Result<Value, String>> {
        let cohort = self.clone();
        Box::pin(async move {
            let e = |e: Error| e.to_string();
            match op.as_str() {
                "submit" => {
                    Ok(json!(cohort.submit(arg_str(&args, "request")?).await.map_err(e)?))
                }
                "hold" => {
                    cohort.hold(args.get("hold").and_then(Value::as_bool).unwrap_or(true));
                    Ok(Value::Null)
                }
                "state" => {
                    let (pending, queued, (results, digest), stats) = cohort
                        .inspect(|r| (r.pending(), r.queued(), r.digest(), r.stats()))
                        .await
                        .map_err(e)?;
                    Ok(json!({
                        "pending": pending,
                        "queued": queued,
                        "results": results,
                        "digest": format!("{digest:016x}"),
                        "stats": stats,
                    }))
                }
                other => Err(format!("the cohort has no operation `{other}`")),
            }
        })
    }
}

/// Spreads requests over ranks: splitmix64 of the requester and id.
fn spread(requester: Endpoint, id: u64) -> u64 {
    let z = requester.node.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ u64::from(requester.incarnation).rotate_left(32)
        ^ id.wrapping_mul(0xd6e8_feb8_6659_fd93);
    mix64(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_spread_over_every_rank() {
        let view = View::initial((1..=4).map(|n| Endpoint::new(n, 0)).collect());
        let mut count = BTreeMap::new();
        for node in 1..=4 {
            for id in 1..=100 {
                let c =
                    CohortReplica::<Fingerprint>::coordinator(Endpoint::new(node, 0), id, &view);
                *count.entry(c).or_insert(0) += 1;
            }
        }
        assert_eq!(count.len(), 4, "every member coordinates some: {count:?}");
        assert!(count.values().all(|c| *c > 60), "roughly evenly: {count:?}");
    }

    #[test]
    fn a_fingerprint_is_the_same_wherever_it_is_taken() {
        let (a, b) = (Endpoint::new(1, 0), Endpoint::new(2, 0));
        assert_eq!(Fingerprint.handle(a, "x".into()), Fingerprint.handle(b, "x".into()));
        assert_ne!(Fingerprint.handle(a, "x".into()), Fingerprint.handle(a, "y".into()));
    }
}
