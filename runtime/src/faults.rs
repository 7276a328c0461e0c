//! Fault injection: a switch that makes a member lose datagrams, for tests on a machine
//! without a network emulator.
//!
//! A member with faults set drops, independently and from a seeded generator, a fraction
//! [`FaultConfig::loss`] of the datagrams it receives and of those it sends, and every
//! datagram from and to the endpoints in [`FaultConfig::partitioned`]. Dropped datagrams are
//! counted (`fault_dropped_in`, `fault_dropped_out`).
//!
//! A partition acts at the member where it is set: it drops what that member receives from
//! the partitioned endpoints and the unicasts it sends them. An IP multicast reaches every
//! member whatever the sender's switch says, so to cut two sides apart set the partition on
//! the members of both sides (or set `loss = 1.0` on the member to isolate it). A datagram whose
//! sender the member cannot name yet (an address it has not learnt) passes the partition
//! filter, but not the loss.
//!
//! The handle writes a new setting under a lock and bumps a version; the driver compares
//! the version once per batch (one atomic load) and copies the setting only when it moved, so
//! the per-datagram path takes no lock.

use hashbrown::HashSet;
use horus_core::{Endpoint, Rng};

use crate::sync::{Arc, AtomicU64, Mutex, MutexGuard, Ordering};

/// What a member's fault switch is set to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// The fraction of datagrams dropped, each way, in `[0, 1]`.
    pub loss: f64,
    /// Endpoints every datagram from or to which is dropped.
    pub partitioned: Vec<Endpoint>,
    /// Seeds the generator that decides which datagrams are lost.
    pub seed: u64,
}

impl FaultConfig {
    /// No fault: every datagram passes.
    pub fn none() -> Self {
        FaultConfig::default()
    }

    /// Whether this setting drops anything.
    pub fn is_active(&self) -> bool {
        self.loss > 0.0 || !self.partitioned.is_empty()
    }
}

#[derive(Debug)]
struct Shared {
    /// Moves, under the lock, each time the setting changes.
    version: AtomicU64,
    config: Mutex<FaultConfig>,
}

/// The fault-injection switch of one member: cheap to clone, shared by its handle and driver.
///
/// # Examples
/// ```
/// use horus_core::Endpoint;
/// use horus_runtime::{FaultConfig, FaultSwitch};
///
/// let switch = FaultSwitch::new(FaultConfig::none());
/// switch.set_loss(0.05);
/// switch.partition([Endpoint::new(7, 0)]);
/// assert_eq!(switch.get().loss, 0.05);
/// switch.heal();
/// assert!(!switch.get().is_active());
/// ```
#[derive(Clone, Debug)]
pub struct FaultSwitch {
    shared: Arc<Shared>,
}

impl FaultSwitch {
    /// A switch set to `config`.
    pub fn new(config: FaultConfig) -> Self {
        FaultSwitch {
            shared: Arc::new(Shared { version: AtomicU64::new(0), config: Mutex::new(config) }),
        }
    }

    /// The current setting.
    pub fn get(&self) -> FaultConfig {
        self.lock().clone()
    }

    /// Replaces the setting.
    pub fn set(&self, config: FaultConfig) {
        self.update(|c| *c = config);
    }

    /// Drops the fraction `loss` (clamped to `[0, 1]`; NaN counts as 0) of datagrams each way.
    pub fn set_loss(&self, loss: f64) {
        let loss = if loss.is_nan() { 0.0 } else { loss.clamp(0.0, 1.0) };
        self.update(|c| c.loss = loss);
    }

    /// Adds `endpoints` to the partitioned ones: every datagram from or to them is dropped.
    pub fn partition(&self, endpoints: impl IntoIterator<Item = Endpoint>) {
        let endpoints: Vec<Endpoint> = endpoints.into_iter().collect();
        self.update(|c| {
            for e in endpoints {
                if !c.partitioned.contains(&e) {
                    c.partitioned.push(e);
                }
            }
        });
    }

    /// Drops every datagram this member sends or receives: to the others it has crashed.
    pub fn isolate(&self) {
        self.set_loss(1.0);
    }

    /// Removes every fault; keeps the seed.
    pub fn heal(&self) {
        self.update(|c| {
            c.loss = 0.0;
            c.partitioned.clear();
        });
    }

    /// The version of the setting: it moves each time the setting changes.
    pub fn version(&self) -> u64 {
        self.shared.version.load(Ordering::Acquire)
    }

    /// The setting and its version, read together.
    pub fn get_versioned(&self) -> (u64, FaultConfig) {
        let c = self.lock();
        (self.shared.version.load(Ordering::Relaxed), c.clone())
    }

    fn update(&self, f: impl FnOnce(&mut FaultConfig)) {
        let mut c = self.lock();
        f(&mut c);
        // Under the lock, so a reader holding it sees a version and a setting that match.
        self.shared.version.fetch_add(1, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, FaultConfig> {
        // A panic while holding this lock leaves a whole `FaultConfig` (every update writes
        // whole fields), so a poisoned lock is still a valid setting.
        self.shared.config.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The driver's copy of the setting, refreshed when the switch's version moves.
#[derive(Debug)]
pub(crate) struct Faults {
    version: u64,
    active: bool,
    loss: f64,
    partitioned: HashSet<Endpoint>,
    seed: u64,
    rng: Rng,
}

impl Faults {
    pub(crate) fn new(switch: &FaultSwitch) -> Self {
        let (version, config) = switch.get_versioned();
        let mut f = Faults {
            version,
            active: false,
            loss: 0.0,
            partitioned: HashSet::new(),
            seed: config.seed,
            rng: Rng::new(config.seed),
        };
        f.apply(&config);
        f
    }

    /// Takes the switch's setting if it changed: once per batch.
    #[inline]
    pub(crate) fn refresh(&mut self, switch: &FaultSwitch) {
        if switch.version() != self.version {
            let (version, config) = switch.get_versioned();
            self.version = version;
            self.apply(&config);
        }
    }

    fn apply(&mut self, config: &FaultConfig) {
        // A new seed restarts the sequence of losses, so a test replays its choice.
        if config.seed != self.seed {
            self.seed = config.seed;
            self.rng = Rng::new(config.seed);
        }
        self.active = config.is_active();
        self.loss = config.loss;
        self.partitioned.clear();
        self.partitioned.extend(config.partitioned.iter().copied());
    }

    /// Whether a datagram from or to `peer` (if known) is to be dropped.
    #[inline]
    pub(crate) fn drops(&mut self, peer: Option<Endpoint>) -> bool {
        self.active
            && (peer.is_some_and(|p| self.partitioned.contains(&p)) || self.rng.chance(self.loss))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn no_fault_drops_nothing() {
        let switch = FaultSwitch::new(FaultConfig::none());
        let mut f = Faults::new(&switch);
        assert!((0..1000).all(|_| !f.drops(Some(Endpoint::new(1, 0)))));
    }

    #[test]
    fn partition_drops_only_the_partitioned_and_heals() {
        let switch = FaultSwitch::new(FaultConfig::none());
        let mut f = Faults::new(&switch);
        switch.partition([Endpoint::new(2, 0)]);
        f.refresh(&switch);
        assert!(f.drops(Some(Endpoint::new(2, 0))));
        assert!(!f.drops(Some(Endpoint::new(3, 0))));
        assert!(!f.drops(None));
        switch.heal();
        f.refresh(&switch);
        assert!(!f.drops(Some(Endpoint::new(2, 0))));
    }

    #[test]
    fn loss_is_seeded_and_roughly_the_fraction() {
        let config = FaultConfig { loss: 0.25, seed: 9, ..FaultConfig::none() };
        let run = || {
            let mut f = Faults::new(&FaultSwitch::new(config.clone()));
            (0..10_000).map(|_| f.drops(None)).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let lost = a.iter().filter(|d| **d).count();
        assert!((2_000..3_000).contains(&lost), "{lost}");
    }

    #[test]
    fn loss_is_clamped() {
        let switch = FaultSwitch::new(FaultConfig::none());
        switch.set_loss(7.0);
        assert_eq!(switch.get().loss, 1.0);
        switch.set_loss(f64::NAN);
        assert_eq!(switch.get().loss, 0.0);
    }
}
