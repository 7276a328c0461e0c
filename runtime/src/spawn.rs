//! [`spawn`]: opening a member's sockets and starting its driver.

use horus_core::{GroupName, Node};
use tokio::sync::{mpsc, oneshot};

/// Queries (counters, directory) waiting for the driver.
const QUERY_CAPACITY: usize = 16;
use tracing::Instrument;

use crate::driver::{Driver, Route};
use crate::socket::Sockets;
use crate::sync::Arc;
use crate::{Counters, FaultSwitch, MemberControl, MemberHandle, RuntimeError, TransportConfig};

/// Starts `node`, a member of `group`, over the network `transport` describes: opens its
/// sockets and spawns its driver on the current tokio runtime.
///
/// The node's clock starts at zero now: build it with [`Time::ZERO`](horus_core::Time::ZERO).
///
/// # Errors
/// A [`RuntimeError`] if the configuration is inconsistent, there is no tokio runtime, or a
/// socket cannot be opened, bound or joined to the group; nothing is left running.
pub fn spawn(
    node: Box<dyn Node>,
    group: &GroupName,
    transport: TransportConfig,
) -> Result<MemberHandle, RuntimeError> {
    transport.validate()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| RuntimeError::NoRuntime)?;
    let _enter = runtime.enter();
    let sockets = Sockets::open(&transport)?;
    let local_addr = sockets
        .unicast
        .local_addr()
        .map_err(|source| RuntimeError::Socket { addr: transport.bind, source })?;
    let buffers = sockets.buffers;
    if buffers.recv < transport.recv_buffer || buffers.send < transport.send_buffer {
        tracing::warn!(
            asked_recv = transport.recv_buffer,
            asked_send = transport.send_buffer,
            granted_recv = buffers.recv,
            granted_send = buffers.send,
            "the kernel granted smaller socket buffers than asked: bursts may be lost; raise \
             net.core.rmem_max and net.core.wmem_max"
        );
    }
    let route = match transport.group {
        Some(group) => Route::Multicast(group),
        None => Route::UnicastOnly {
            seeds: transport.seeds.iter().copied().filter(|s| *s != local_addr).collect(),
            gossip_every: transport.gossip_every,
        },
    };
    let endpoint = node.endpoint();
    let (commands_tx, commands) = mpsc::channel(transport.command_capacity);
    let (queries_tx, queries) = mpsc::channel(QUERY_CAPACITY);
    let (events, events_rx) = mpsc::channel(transport.event_capacity);
    let (stop_tx, stop) = oneshot::channel();
    let counters = Arc::new(Counters::new());
    let faults = FaultSwitch::new(transport.faults.clone());
    let driver = Driver {
        node,
        group_tag: group.tag(),
        sockets,
        route,
        recv_batch: transport.recv_batch,
        max_backlog: transport.max_backlog,
        counters: counters.clone(),
        switch: faults.clone(),
        commands,
        queries,
        events,
        stop,
        epoch: tokio::time::Instant::now(),
    };
    let span = tracing::info_span!("member", endpoint = %endpoint, group = %group);
    tracing::debug!(parent: &span, %local_addr, ?buffers, "member started");
    let task = runtime.spawn(driver.run().instrument(span));
    let control = MemberControl {
        endpoint,
        local_addr,
        group: transport.group,
        buffers,
        commands: commands_tx,
        queries: queries_tx,
        counters,
        faults,
    };
    Ok(MemberHandle { control, events: events_rx, stop: Some(stop_tx), task: Some(task) })
}
