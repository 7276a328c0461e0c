//! [`MemberHandle`]: the application's side of a running member, and [`MemberControl`], the
//! part of it other tasks can hold.

use std::net::SocketAddr;

use horus_core::{Down, Endpoint, Up};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::counters::{CounterValues, Counters};
use crate::driver::Command;
use crate::error::RuntimeError;
use crate::faults::FaultSwitch;
use crate::socket::Buffers;
use crate::sync::Arc;

/// The counters of a member: the runtime's and its node's.
#[derive(Clone, Debug)]
pub struct MemberCounters {
    /// What the runtime counted.
    pub runtime: CounterValues,
    /// The node's counters, as `(layer, counter, value)` ([`horus_core::Node::counters`]).
    pub node: Vec<(&'static str, &'static str, u64)>,
}

impl MemberCounters {
    /// A node counter by layer and name, summed if several layers of that name count it; 0
    /// if none does.
    pub fn node(&self, layer: &str, counter: &str) -> u64 {
        self.node.iter().filter(|(l, c, _)| *l == layer && *c == counter).map(|(.., v)| v).sum()
    }
}

/// Everything about a running member but its events: send it down events, read its counters
/// and directory, set its faults. Cheap to clone, for tasks that cast while another reads the
/// events. It does not keep the member running: dropping the [`MemberHandle`] stops it.
#[derive(Clone, Debug)]
pub struct MemberControl {
    pub(crate) endpoint: Endpoint,
    pub(crate) local_addr: SocketAddr,
    pub(crate) group: Option<SocketAddr>,
    pub(crate) buffers: Buffers,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) queries: mpsc::Sender<Command>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) faults: FaultSwitch,
}

impl MemberControl {
    /// This member's endpoint.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The address of the member's unicast socket: what the others send to, and what to give
    /// a unicast-only member as a seed.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The multicast group, unless unicast-only.
    pub fn group(&self) -> Option<SocketAddr> {
        self.group
    }

    /// The socket buffer sizes the kernel granted.
    pub fn buffers(&self) -> Buffers {
        self.buffers
    }

    /// Hands `ev` to the member, waiting while its queue is full.
    ///
    /// # Errors
    /// [`RuntimeError::Stopped`] if the member has stopped; `ev` is dropped.
    pub async fn down(&self, ev: Down) -> Result<(), RuntimeError> {
        self.command(Command::Down(ev)).await
    }

    /// What the runtime counted, read at once; readable after the member stopped.
    pub fn runtime_counters(&self) -> CounterValues {
        self.counters.snapshot()
    }

    /// The runtime's counters and the node's.
    ///
    /// # Errors
    /// [`RuntimeError::Stopped`] if the member has stopped (its runtime counters are still
    /// readable through [`MemberControl::runtime_counters`]).
    pub async fn counters(&self) -> Result<MemberCounters, RuntimeError> {
        let (tx, rx) = oneshot::channel();
        self.query(Command::NodeCounters(tx)).await?;
        let node = rx.await.map_err(|_| RuntimeError::Stopped)?;
        Ok(MemberCounters { runtime: self.counters.snapshot(), node })
    }

    /// The addresses the member knows, by endpoint.
    ///
    /// # Errors
    /// [`RuntimeError::Stopped`] if the member has stopped.
    pub async fn directory(&self) -> Result<Vec<(Endpoint, SocketAddr)>, RuntimeError> {
        let (tx, rx) = oneshot::channel();
        self.query(Command::Directory(tx)).await?;
        rx.await.map_err(|_| RuntimeError::Stopped)
    }

    /// The member's fault-injection switch.
    pub fn faults(&self) -> &FaultSwitch {
        &self.faults
    }

    async fn command(&self, cmd: Command) -> Result<(), RuntimeError> {
        self.commands.send(cmd).await.map_err(|_| RuntimeError::Stopped)
    }

    /// Queries go on a queue of their own, which back-pressure never holds.
    async fn query(&self, cmd: Command) -> Result<(), RuntimeError> {
        self.queries.send(cmd).await.map_err(|_| RuntimeError::Stopped)
    }
}

/// A running member: its events, and through [`MemberHandle::control`] (or by deref)
/// everything else.
///
/// The application must answer [`Up::Block`] with [`Down::BlockOk`] once it has stopped
/// casting, or no view change can finish. Dropping the handle stops the member at once, as a
/// crash would: nothing more is sent, and the sockets are closed.
#[derive(Debug)]
pub struct MemberHandle {
    pub(crate) control: MemberControl,
    pub(crate) events: mpsc::Receiver<Up>,
    pub(crate) stop: Option<oneshot::Sender<()>>,
    pub(crate) task: Option<JoinHandle<()>>,
}

impl std::ops::Deref for MemberHandle {
    type Target = MemberControl;
    fn deref(&self) -> &MemberControl {
        &self.control
    }
}

impl MemberHandle {
    /// A control of the member for another task.
    pub fn control(&self) -> MemberControl {
        self.control.clone()
    }

    /// The next event for the application; `None` once the member has stopped and every
    /// event before was read. After [`Up::Exit`] the member stops by itself.
    pub async fn next_event(&mut self) -> Option<Up> {
        self.events.recv().await
    }

    /// The next event if one is ready now, without waiting: lets an application take a burst
    /// of events in one go.
    pub fn try_next_event(&mut self) -> Option<Up> {
        self.events.try_recv().ok()
    }

    /// Stops the member and waits until its task has ended and its sockets are closed. It
    /// does not leave the group first (send [`Down::Leave`] and wait for [`Up::Exit`] for
    /// that): to the others it has crashed.
    ///
    /// # Errors
    /// [`RuntimeError::Panicked`] if the driver had panicked.
    pub async fn shutdown(mut self) -> Result<(), RuntimeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|e| {
                if e.is_panic() {
                    RuntimeError::Panicked
                } else {
                    RuntimeError::Stopped
                }
            }),
            None => Ok(()),
        }
    }
}

impl Drop for MemberHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
