//! A replicated state machine (Lamport; Schneider's state-machine approach) on the group's
//! total order.
//!
//! The application gives a deterministic [`StateMachine`]: `apply(command) -> reply`. Every
//! member applies every command in the same order, so every replica goes through the same
//! states; [`Rsm::execute`] casts a command and returns its reply once the command is ordered
//! and applied at this member. Queries that need not see the latest command read the local
//! replica ([`Rsm::read`]); a query that must (a linearizable read) is a command like any
//! other, ordered and applied.
//!
//! Views are in the order too: every member that moves from one view to the next has applied
//! the same commands in it (virtual synchrony), so [`StateMachine::view`] is called at the same
//! point of the sequence everywhere, and a machine may act on it (release what a departed
//! member held). A joiner gets the state as of the view it joins in, by state transfer, before
//! any command of that view.
//!
//! On the wire a command is `ticket (varint) | command (postcard)`: the ticket lets its sender
//! find the request it answers. A command that does not decode is dropped and counted.
//!
//! The replica also keeps a running digest of the commands it applied (their sender, ticket
//! and bytes, in order), carried in its snapshots: two replicas with equal digests applied the
//! same commands in the same order, which demos and oracles check.

use std::collections::VecDeque;

use horus::core::codec::{fold, get_varint, item_key, put_varint};
use horus::replica::{Outbox, Replica, Replicated, Ticket};
use horus::{Bytes, Endpoint, Error, Group, Level, ViewChange};
use serde::de::DeserializeOwned;
use serde::Serialize;

// ANCHOR: machine
/// A deterministic state machine: the same commands in the same order give the same states
/// and replies wherever they are applied.
pub trait StateMachine: Send + 'static {
    /// What changes the state (and reads it, in order).
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// What a command returns to the member that executed it.
    type Reply: Send + 'static;

    /// Applies `command`, cast by `origin`.
    fn apply(&mut self, origin: Endpoint, command: Self::Command) -> Self::Reply;

    /// A new view, at the same point of the command sequence at every member that installs
    /// it. The default does nothing.
    fn view(&mut self, _change: &ViewChange) {}

    /// The state, for members that join.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state with `state`, a [`snapshot`](Self::snapshot). On `Err` the replica
    /// keeps its state and counts the failure.
    fn restore(&mut self, state: &[u8]) -> Result<(), String>;
}
// ANCHOR_END: machine

/// The [`Replica`] that runs a [`StateMachine`] (run it with [`Rsm`], or in the simulator).
#[derive(Debug)]
pub struct RsmReplica<S> {
    machine: S,
    level: Level,
    /// Our own commands in flight, by ticket, in the order cast.
    waiting: VecDeque<Ticket>,
    applied: u64,
    digest: u64,
    malformed: u64,
    bad_states: u64,
}

/// Requests to an [`RsmReplica`].
#[derive(Debug)]
pub enum RsmRequest<C> {
    /// Order and apply a command.
    Execute(C),
}

impl<S: StateMachine> RsmReplica<S> {
    /// Runs `machine`, ordering commands at the `total` level.
    pub fn new(machine: S) -> Self {
        Self::with_level(machine, Level::Total)
    }

    /// Runs `machine`, ordering commands at `level`: `Total`, or `Safe` to answer a command
    /// only once every member has it (an answered command then survives any crash).
    ///
    /// At `Total`, a command is answered as soon as this member applies it; if this member
    /// then crashes, or is cut off from the group and excluded, before the others received the
    /// command, they never apply it: the answer was given by a replica that did not go on.
    pub fn with_level(machine: S, level: Level) -> Self {
        RsmReplica {
            machine,
            level,
            waiting: VecDeque::new(),
            applied: 0,
            digest: 0,
            malformed: 0,
            bad_states: 0,
        }
    }

    /// The state machine.
    pub fn machine(&self) -> &S {
        &self.machine
    }

    /// Commands applied by this replica (those in its joining state included).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The digest of the commands applied, in order (see the module docs).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Messages dropped because they did not decode, and states that did not restore.
    pub fn malformed(&self) -> (u64, u64) {
        (self.malformed, self.bad_states)
    }
}

impl<S: StateMachine> Replica for RsmReplica<S> {
    type Request = RsmRequest<S::Command>;
    type Response = Result<S::Reply, String>;

    fn request(
        &mut self,
        request: Self::Request,
        ticket: Ticket,
        out: &mut Outbox<Self::Response>,
    ) {
        let RsmRequest::Execute(command) = request;
        if self.bad_states > 0 {
            // Its state did not restore: what it would answer is not the group's.
            out.done(ticket, Err("this replica's state did not restore: it cannot answer".into()));
            return;
        }
        if !out.offers(self.level) {
            out.done(ticket, Err(format!("the stack does not offer the {} level", self.level)));
            return;
        }
        let mut wire = Vec::with_capacity(16);
        put_varint(&mut wire, ticket.0);
        match postcard::to_extend(&command, wire) {
            Ok(wire) => {
                self.waiting.push_back(ticket);
                out.cast(self.level, wire);
            }
            Err(e) => out.done(ticket, Err(format!("the command does not encode: {e}"))),
        }
    }

    fn message(
        &mut self,
        from: Endpoint,
        level: Option<Level>,
        data: Bytes,
        out: &mut Outbox<Self::Response>,
    ) {
        if level.is_none() {
            self.malformed += 1; // nothing is sent point-to-point
            return;
        }
        let mut r = &data[..];
        let Some(ticket) = get_varint(&mut r) else {
            self.malformed += 1;
            return;
        };
        let Ok(command) = postcard::from_bytes::<S::Command>(r) else {
            self.malformed += 1;
            return;
        };
        self.applied += 1;
        self.digest = fold(self.digest, item_key(from, ticket), &data);
        let reply = self.machine.apply(from, command);
        if from == out.me() {
            // Our commands come back in the order we cast them; one not ours to wait for
            // (cast by an earlier incarnation's state, say) answers nobody.
            if let Some(pos) = self.waiting.iter().position(|t| t.0 == ticket) {
                self.waiting.remove(pos);
                out.done(Ticket(ticket), Ok(reply));
            }
        }
    }

    fn view(&mut self, change: &ViewChange, _out: &mut Outbox<Self::Response>) {
        self.machine.view(change);
    }

    fn snapshot(&self) -> Bytes {
        let mut s = Vec::new();
        s.extend_from_slice(&self.applied.to_le_bytes());
        s.extend_from_slice(&self.digest.to_le_bytes());
        s.extend_from_slice(&self.machine.snapshot());
        Bytes::from(s)
    }

    fn restore(&mut self, state: Bytes, _out: &mut Outbox<Self::Response>) {
        let parsed = (state.len() >= 16).then(|| {
            let applied = u64::from_le_bytes(state[..8].try_into().expect("8 bytes"));
            let digest = u64::from_le_bytes(state[8..16].try_into().expect("8 bytes"));
            (applied, digest)
        });
        match parsed {
            Some((applied, digest)) if self.machine.restore(&state[16..]).is_ok() => {
                self.applied = applied;
                self.digest = digest;
            }
            _ => self.bad_states += 1,
        }
    }
}

/// A [`StateMachine`] replicated in every member of a group: see the [module docs](self).
///
/// ```no_run
/// # use horus_apps::rsm::{Rsm, StateMachine};
/// # use horus::{Endpoint, Group};
/// /// A register that commands add to.
/// #[derive(Default)]
/// struct Sum(i64);
///
/// impl StateMachine for Sum {
///     type Command = i64;
///     type Reply = i64;
///     fn apply(&mut self, _origin: Endpoint, add: i64) -> i64 {
///         self.0 += add;
///         self.0
///     }
///     fn snapshot(&self) -> Vec<u8> {
///         self.0.to_le_bytes().to_vec()
///     }
///     fn restore(&mut self, state: &[u8]) -> Result<(), String> {
///         self.0 = i64::from_le_bytes(state.try_into().map_err(|_| "not 8 bytes")?);
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), horus::Error> {
/// let group = Group::builder("sums").state_transfer(true).join().await?;
/// let sum = Rsm::start(group, Sum::default());
/// let total = sum.execute(5).await?; // ordered and applied everywhere
/// let local = sum.read(|s| s.0).await?; // this replica, now
/// # Ok(()) }
/// ```
pub struct Rsm<S: StateMachine> {
    replica: Replicated<RsmReplica<S>>,
}

impl<S: StateMachine> Clone for Rsm<S> {
    fn clone(&self) -> Self {
        Rsm { replica: self.replica.clone() }
    }
}

impl<S: StateMachine> std::fmt::Debug for Rsm<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rsm").field("replica", &self.replica).finish()
    }
}

impl<S: StateMachine> Rsm<S> {
    /// Runs `machine` on `group` (built with state transfer, so that joiners get the state),
    /// ordering commands at the `total` level.
    pub fn start(group: Group, machine: S) -> Self {
        Self::start_replica(group, RsmReplica::new(machine))
    }

    /// Runs a replica made with [`RsmReplica::with_level`].
    pub fn start_replica(group: Group, replica: RsmReplica<S>) -> Self {
        Rsm { replica: Replicated::start(group, replica) }
    }

    /// Orders `command` and applies it at every member; returns its reply here.
    ///
    /// # Errors
    /// [`Error::Exited`] if this member left the group before the command was applied here;
    /// the command may or may not have been applied elsewhere. [`Error::Application`] if the
    /// command does not encode.
    pub async fn execute(&self, command: S::Command) -> Result<S::Reply, Error> {
        self.replica.request(RsmRequest::Execute(command)).await?.map_err(Error::Application)
    }

    /// Reads this replica's state: what `query` returns of it, now, without ordering (it may
    /// not yet reflect commands other members have executed).
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&S) -> T + Send + 'static,
    ) -> Result<T, Error> {
        self.replica.inspect(move |r| query(r.machine())).await
    }

    /// The replica itself, between two events: commands applied, digest, the machine.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn inspect<T: Send + 'static>(
        &self,
        read: impl FnOnce(&RsmReplica<S>) -> T + Send + 'static,
    ) -> Result<T, Error> {
        self.replica.inspect(read).await
    }

    /// The group the machine runs on: its view, and `leave`.
    pub fn group(&self) -> &horus::GroupHandle {
        self.replica.group()
    }
}
