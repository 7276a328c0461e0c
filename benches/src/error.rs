//! [`BenchError`]: why a benchmark run did not finish.

/// Why a run of the multi-process benchmark failed. Whatever the error, every member process
/// it started has been killed and reaped by the time it is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The arguments do not describe a run; nothing was started.
    #[error("bad arguments: {0}")]
    BadArgs(String),
    /// A process could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The run's time bound passed before the members said what was waited for; `hint`
    /// says what to check.
    #[error("timed out waiting for {what}: {hint}")]
    TimedOut { what: String, hint: &'static str },
    /// A member failed or exited while the parent waited for it.
    #[error("{member} failed while the run waited for {waiting_for}: {why}")]
    Member { member: String, waiting_for: String, why: String },
    /// Inside a member: the group, the sockets or the parent failed it.
    #[error("{0}")]
    InMember(String),
    /// `--join`: the members were started with different settings; nothing was measured,
    /// and this member has left the group.
    #[error(
        "{flag} differs between the members: {mine} here at {me}, {theirs} at {member}; run \
         every member with the same settings"
    )]
    Mismatch { flag: &'static str, mine: String, theirs: String, me: String, member: String },
}
