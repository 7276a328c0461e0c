//! Service levels: the ordering a sender asks for, per cast.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The ordering and reliability a cast asks for. Each level includes the ones before it, as
/// Spread's service types do: every level is reliable and keeps each sender's FIFO order,
/// `Causal` adds causal order, `Total` adds one order agreed by all members that survive the
/// view (and respects causality), and `Safe` adds uniform delivery: a message is delivered
/// only once every member of the view holds it, so that even a member that crashes right after
/// delivered nothing, and in no order, that the survivors do not.
///
/// Order across levels: every message of one sender, whatever its level, is delivered in the
/// order sent; the total order covers the `Total` and `Safe` messages of all senders.
///
/// Layers write a level on the wire as its index in this declaration (postcard's enum tag), so
/// the order of the variants is part of the wire format: add new ones at the end.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Fifo,
    Causal,
    Total,
    Safe,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Fifo, Level::Causal, Level::Total, Level::Safe];

    /// Whether messages at this level must respect causal order.
    pub fn is_causal(self) -> bool {
        self >= Level::Causal
    }

    /// Whether messages at this level are in the group's one total order.
    pub fn is_total(self) -> bool {
        self >= Level::Total
    }

    /// Whether messages at this level are delivered uniformly.
    pub fn is_safe(self) -> bool {
        self == Level::Safe
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Fifo => "fifo",
            Level::Causal => "causal",
            Level::Total => "total",
            Level::Safe => "safe",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Level, String> {
        Level::ALL.into_iter().find(|l| l.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            format!("unknown service level `{s}`: expected fifo, causal, total or safe")
        })
    }
}
