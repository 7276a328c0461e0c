//! [`GroupBuilder`]: what a member of a group runs, and how it joins.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use horus_core::history::{Membership, Promises};
use horus_core::{Endpoint, GroupName, Props, Rng, Time};
use horus_gms::Member;
use horus_runtime::TransportConfig;
use tokio::sync::{mpsc, watch, Notify};

use crate::error::Error;
use crate::group::{Group, GroupHandle, Inner, Stats, Status};
use crate::pump::Pump;
use crate::record::Recorder;

/// The stack a group runs unless told otherwise: the preset `vsync` (membership over the
/// reliable, ordered layers; every service level).
pub const DEFAULT_STACK: &str = "vsync";

/// How long [`GroupBuilder::join`] waits for a first view by default.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`GroupHandle::leave`] waits for the exit by default.
pub const DEFAULT_LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Events held for the application by default (see [`GroupBuilder::event_capacity`]).
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// Commands (casts, sends, calls, replies) queued by default before they wait.
pub const DEFAULT_COMMAND_CAPACITY: usize = 1024;

/// The first port of the range default transports take their port from.
pub const DEFAULT_PORT_BASE: u16 = 20_000;

/// The number of ports in that range.
pub const DEFAULT_PORT_SPAN: u16 = 10_000;

/// The transport a group uses unless given one: IP multicast on the loopback interface, to
/// an address and port derived from the group's name, so that members of one group on one
/// host find each other with no configuration, and different groups mostly do not share an
/// address (when they do, each drops the other's datagrams by their group tag).
///
/// With `tag` the group's 32-bit tag ([`GroupName::tag`], FNV-1a of the name): the address
/// is `239.255.b1.b0` (`b1`, `b0` the tag's two low bytes, in the organization-local scope),
/// the port [`DEFAULT_PORT_BASE`] `+ (tag >> 16) % ` [`DEFAULT_PORT_SPAN`]; the members send
/// from `127.0.0.1` on a port of the kernel's choice, TTL 1.
///
/// For members on several hosts, give [`GroupBuilder::transport`] a configuration naming the
/// interface, e.g. `TransportConfig::multicast(addr).interface_v4(my_address)`, or
/// unicast-only with seeds where there is no multicast.
///
/// # Examples
/// ```
/// let t = horus::default_transport("chat");
/// let group = t.group().expect("multicast");
/// assert!(group.ip().is_multicast());
/// assert_eq!(group, horus::default_transport("chat").group().unwrap());
/// assert!((20_000..30_000).contains(&group.port()));
/// ```
pub fn default_transport(group: &str) -> TransportConfig {
    let tag = GroupName::new(group).tag();
    let [_, _, b1, b0] = tag.to_be_bytes();
    let port = DEFAULT_PORT_BASE + ((tag >> 16) % u32::from(DEFAULT_PORT_SPAN)) as u16;
    TransportConfig::multicast(SocketAddr::from((Ipv4Addr::new(239, 255, b1, b0), port)))
        .interface_v4(Ipv4Addr::LOCALHOST)
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
}

/// How a member of a group is made: the stack it runs, how it reaches the others, how it
/// joins, and what it records. [`join`](Self::join) starts it.
///
/// # Examples
/// ```no_run
/// use std::time::Duration;
/// use horus::{Group, TransportConfig};
///
/// # async fn run() -> Result<(), horus::Error> {
/// let group = Group::builder("orders")
///     .stack("vsync")
///     .transport(TransportConfig::multicast("239.255.10.1:7400".parse().unwrap()))
///     .state_transfer(true)
///     .join_timeout(Duration::from_secs(5))
///     .record("orders-history.jsonl")
///     .join()
///     .await?;
/// println!("joined {} as {}: {}", group.name(), group.endpoint(), group.view());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct GroupBuilder {
    name: String,
    stack: String,
    transport: Option<TransportConfig>,
    state_transfer: bool,
    founder: bool,
    discovery: Option<Duration>,
    probe: bool,
    record: Option<PathBuf>,
    join_timeout: Duration,
    leave_timeout: Duration,
    endpoint: Option<Endpoint>,
    event_capacity: usize,
    command_capacity: usize,
}

impl GroupBuilder {
    /// A member of the group `name`, with every default: see each setting.
    pub fn new(name: impl Into<String>) -> Self {
        GroupBuilder {
            name: name.into(),
            stack: DEFAULT_STACK.to_owned(),
            transport: None,
            state_transfer: false,
            founder: true,
            discovery: None,
            probe: true,
            record: None,
            join_timeout: DEFAULT_JOIN_TIMEOUT,
            leave_timeout: DEFAULT_LEAVE_TIMEOUT,
            endpoint: None,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            command_capacity: DEFAULT_COMMAND_CAPACITY,
        }
    }

    /// The stack: a spec, top to bottom (`gms:total:causal:...`, with parameters as in
    /// `frag(size=1400)`), or a preset name ([`DEFAULT_STACK`] by default). It must have the
    /// membership layer `gms` on top. Checked by [`join`](Self::join).
    pub fn stack(mut self, spec: impl Into<String>) -> Self {
        self.stack = spec.into();
        self
    }

    /// How the member reaches the others ([`default_transport`] of the group's name by
    /// default: loopback multicast, for members on one host).
    pub fn transport(mut self, transport: TransportConfig) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Turns state transfer on (off by default): a joiner is given the application's state,
    /// as [`Event::State`](crate::Event::State), before any message of the view it joins in;
    /// the members are asked for it by [`Event::Snapshot`](crate::Event::Snapshot). Every
    /// member of a group must agree on this setting.
    pub fn state_transfer(mut self, on: bool) -> Self {
        self.state_transfer = on;
        self
    }

    /// Whether this member may found the group (it may by default). A joiner asks the group
    /// to let it in every [`JOIN_EVERY`](horus_gms::member::JOIN_EVERY); one that may found
    /// it and hears nothing after [`JOIN_ATTEMPTS`](horus_gms::member::JOIN_ATTEMPTS) asks
    /// (about half a second; see [`discovery_timeout`](Self::discovery_timeout)) forms the
    /// group alone. Of members that start together and hear each other, only the lowest
    /// endpoint founds; members that cannot hear each other each form a group of their own,
    /// which, under the primary-partition policy, never merge (with the partitionable stack
    /// `evs`, they do).
    pub fn founder(mut self, may_found: bool) -> Self {
        self.founder = may_found;
        self
    }

    /// How long a member that may found the group looks for it before founding it alone
    /// (about half a second by default). Of several members that start together and hear
    /// each other, only the lowest endpoint founds; the others join it.
    pub fn discovery_timeout(mut self, timeout: Duration) -> Self {
        self.discovery = Some(timeout);
        self
    }

    /// Whether the member answers `horus probe` with its view and counters (it does by
    /// default): on two sockets of its own, outside the group, so a probe changes nothing.
    /// See [`probe`](crate::probe).
    pub fn probe(mut self, answer: bool) -> Self {
        self.probe = answer;
        self
    }

    /// Records this member's history to the file at `path` (created or truncated), as JSON
    /// lines in the format of [`horus_core::history`], for `horus check` and
    /// [`horus_core::check`]: see the [`record`](crate::record) module.
    pub fn record(mut self, path: impl Into<PathBuf>) -> Self {
        self.record = Some(path.into());
        self
    }

    /// How long [`join`](Self::join) waits for the first view ([`DEFAULT_JOIN_TIMEOUT`]).
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// How long [`leave`](crate::GroupHandle::leave) waits for the exit
    /// ([`DEFAULT_LEAVE_TIMEOUT`]).
    pub fn leave_timeout(mut self, timeout: Duration) -> Self {
        self.leave_timeout = timeout;
        self
    }

    /// This member's endpoint (by default a random node number, incarnation 0). Endpoints
    /// must be unique in the group; a process that restarts should take a new incarnation.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Events held for the application ([`DEFAULT_EVENT_CAPACITY`]); past it the Group reads
    /// no more from the member until the application reads.
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n;
        self
    }

    /// Commands queued ([`DEFAULT_COMMAND_CAPACITY`]); past it `cast` and the others wait.
    pub fn command_capacity(mut self, n: usize) -> Self {
        self.command_capacity = n;
        self
    }

    /// Starts the member and joins the group; returns once the member has installed its
    /// first view (it is then in [`view`](crate::GroupHandle::view), and the first event is
    /// that view). Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`Error::Stack`] or [`Error::NoMembership`] for a stack that does not build or has no
    /// membership; [`Error::BadSetting`]; [`Error::Record`] if the history file cannot be
    /// created; [`Error::Runtime`] if the sockets cannot be opened; [`Error::JoinTimedOut`] if
    /// no view came in time; [`Error::Exited`] if the member was refused. Nothing is left
    /// running.
    pub async fn join(self) -> Result<Group, Error> {
        if self.event_capacity == 0 || self.command_capacity == 0 {
            return Err(Error::BadSetting(
                "event_capacity and command_capacity must be at least 1",
            ));
        }
        let stack_error = |source| Error::Stack { spec: self.stack.clone(), source };
        let transport = self.transport.clone().unwrap_or_else(|| default_transport(&self.name));
        // Packs and fragments as large as the transport carries in one datagram (64 KiB on
        // loopback), unless the spec says otherwise.
        let datagram = transport.datagram_limit().to_string();
        let plan = crate::registry()
            .plan(&self.stack)
            .map_err(stack_error)?
            .with_default_param("pack", "size", datagram.clone())
            .with_default_param("frag", "size", datagram);
        let spec = plan.spec();
        if !plan.gives().contains(Props::MEMBERSHIP) {
            return Err(Error::NoMembership { spec });
        }
        let levels = plan.levels();
        let membership = if plan.param("gms", "partitionable") == Some("true") {
            Membership::Partitionable
        } else {
            Membership::Primary
        };
        let me = self.endpoint.unwrap_or_else(|| Endpoint::new(random() >> 16, 0));
        let group = GroupName::new(&self.name);
        let mut node =
            Member::join(plan, group.clone(), me, Rng::new(random()), Time::ZERO, self.founder)
                .map_err(stack_error)?
                .with_state_transfer(self.state_transfer);
        if let Some(timeout) = self.discovery {
            node = node.with_discovery(timeout);
        }
        let tried = describe(&transport, self.founder);
        let recorder = match &self.record {
            Some(path) => {
                let promises =
                    Promises { membership, liveness: None, state_transfer: self.state_transfer };
                Some(Recorder::create(path, me, &promises)?)
            }
            None => None,
        };
        let member = horus_runtime::spawn(Box::new(node), &group, transport)?;
        let (commands_tx, commands) = mpsc::channel(self.command_capacity);
        let (events_tx, events) = mpsc::channel(self.event_capacity);
        let (status_tx, status) = watch::channel(Status::default());
        let stop = Arc::new(Notify::new());
        let stats = Arc::new(Stats::default());
        let inner = Arc::new(Inner {
            endpoint: me,
            group: self.name.clone(),
            spec,
            levels,
            state_transfer: self.state_transfer,
            leave_timeout: self.leave_timeout,
            control: member.control(),
            commands: commands_tx.clone(),
            stats: stats.clone(),
            stop: stop.clone(),
        });
        let pump = Pump {
            member,
            me,
            commands,
            replier: commands_tx.downgrade(),
            events: events_tx,
            status: status_tx,
            stop,
            stats,
            recorder,
            view: None,
            blocks: 0,
            casts: 0,
            calls: HashMap::new(),
            snapshot: None,
            pending: None,
            app_gone: false,
            exited: false,
        };
        drop(commands_tx);
        tokio::spawn(pump.run());
        let handle = GroupHandle { inner, status };
        let mut status = handle.status.clone();
        let first = status.wait_for(|s| s.view.is_some() || s.exited);
        // Whether the member exited (or stopped) before it installed a view.
        let exited = tokio::time::timeout(self.join_timeout, first)
            .await
            .map(|s| s.map_or(true, |s| s.exited));
        match exited {
            Ok(false) => {
                let probe = if self.probe {
                    crate::probe::Responder::start(
                        handle.clone(),
                        handle.control().local_addr().ip(),
                    )
                } else {
                    None
                };
                Ok(Group { handle, events, probe })
            }
            Ok(true) => Err(Error::Exited),
            // Dropping the handle stops the member.
            Err(_) => {
                Err(Error::JoinTimedOut { group: self.name, waited: self.join_timeout, tried })
            }
        }
    }
}

/// What a join tried, for its timeout error.
fn describe(transport: &TransportConfig, founder: bool) -> String {
    let how = match transport.group() {
        Some(group) => format!("asked by multicast to {group}"),
        None => "asked the seeds by unicast".to_owned(),
    };
    let found = if founder { "; founding was allowed" } else { "; founding was not allowed" };
    format!("{how}{found}")
}

/// 64 random bits from the standard library's per-process random keys.
fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_transports_differ_by_name_and_are_stable() {
        let (a, b) = (default_transport("a").group(), default_transport("b").group());
        assert_ne!(a, b);
        assert_eq!(a, default_transport("a").group());
    }

    #[test]
    fn random_endpoints_differ() {
        assert_ne!(random(), random());
    }

    #[tokio::test]
    async fn bad_spec_is_refused_with_the_parsers_reason() {
        let err = GroupBuilder::new("x").stack("gms:nosuchlayer").join().await.unwrap_err();
        assert!(matches!(err, Error::Stack { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("nosuchlayer") && msg.contains("known layers"), "{msg}");
    }

    #[tokio::test]
    async fn stack_without_membership_is_refused() {
        let err = GroupBuilder::new("x").stack("reliable").join().await.unwrap_err();
        assert!(matches!(err, Error::NoMembership { .. }), "{err}");
    }

    #[tokio::test]
    async fn zero_capacity_is_refused() {
        let err = GroupBuilder::new("x").event_capacity(0).join().await.unwrap_err();
        assert!(matches!(err, Error::BadSetting(_)), "{err}");
    }
}
