//! [`Error`]: everything the public API can fail with.

use std::path::PathBuf;
use std::time::Duration;

use horus_core::{Endpoint, Level, StackError};
use horus_runtime::RuntimeError;

/// An error of the [`Group`](crate::Group) API. Each variant says whether anything changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stack spec or preset did not build; nothing was started.
    #[error("bad stack `{spec}`: {source}")]
    Stack {
        spec: String,
        #[source]
        source: StackError,
    },
    /// The stack has no membership layer on top (`gms`), which a [`Group`](crate::Group)
    /// needs to join and leave; nothing was started.
    #[error(
        "stack `{spec}` has no membership layer: a group needs `gms` on top (e.g. the preset \
         `vsync`, or `gms:` before your spec)"
    )]
    NoMembership { spec: String },
    /// A setting of the builder is out of range; nothing was started.
    #[error("bad group setting: {0}")]
    BadSetting(&'static str),
    /// The history file could not be created or written; nothing was started (at creation).
    #[error("cannot record the history to {path}: {source}")]
    Record {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No view was installed in time; the member was stopped.
    #[error(
        "joining group `{group}` timed out after {waited:?}: {tried}; check that the members \
         are reachable on that transport (same address, port and interface), or let this \
         member found the group (`founder(true)`)"
    )]
    JoinTimedOut { group: String, waited: Duration, tried: String },
    /// The cast's level is not one the stack offers; nothing was sent.
    #[error("stack `{stack}` does not offer the {level} level; it offers {offered}")]
    LevelNotOffered { level: Level, stack: String, offered: String },
    /// The destination is not a member of the current view; nothing was sent.
    #[error("{endpoint} is not a member of the current view ({members}): send to one of those")]
    NotMember { endpoint: Endpoint, members: String },
    /// A call's replies did not arrive in time; the replies that did are given.
    #[error(
        "call timed out after {waited:?} with {got} of {wanted} replies: raise the timeout, \
         ask for fewer replies, or check that every member answers its calls"
    )]
    CallTimedOut {
        waited: Duration,
        got: usize,
        wanted: usize,
        replies: Vec<(Endpoint, bytes::Bytes)>,
    },
    /// The member did not exit in time after asking to leave; it was stopped (to the others
    /// it has crashed).
    #[error("leaving timed out after {waited:?}: the member was stopped without a clean exit")]
    LeaveTimedOut { waited: Duration },
    /// This member has left the group, was excluded from it, or was stopped; nothing was sent.
    /// Join again with a new [`Group`](crate::Group).
    #[error(
        "this member is no longer in the group (it left, was excluded or stopped): join again"
    )]
    Exited,
    /// An application built on the group (a [`Replica`](crate::replica::Replica)) refused the
    /// request; nothing was cast.
    #[error("the application refused the request: {0}")]
    Application(String),
    /// The runtime could not start the member (sockets, settings) or failed; see the cause.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}
