//! The synchronization the handle and the driver share, from std, or from loom when the crate
//! is built with `--cfg loom` so that `tests/loom.rs` can explore every interleaving of it
//! (loom's recommended shim: the code is the same, only the types change).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
