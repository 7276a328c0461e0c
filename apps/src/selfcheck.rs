//! [`SelfCheck`]: what one member of the demo checks of its own deliveries, with no other
//! member's help (the checker, `horus check`, judges all histories together).

use std::collections::HashMap;

use horus_core::{Endpoint, Level};

/// What a member tracks of its deliveries of burst casts (see
/// [`control`](crate::control)), to check: no cast delivered twice; each sender's casts of a
/// level delivered in the order they were cast; each cast delivered from the member its text
/// names; the member's own casts all delivered; a state given before any delivery in its view;
/// and the member in every view it installs.
///
/// # Examples
/// ```
/// use horus_apps::SelfCheck;
/// use horus_core::{Endpoint, Level};
///
/// let me = Endpoint::new(1, 0);
/// let mut check = SelfCheck::new(me);
/// check.view(&[me]);
/// check.cast_own(Level::Total);
/// check.delivered(me, Level::Total, Some(("p1.0".into(), Level::Total, 0)));
/// assert!(check.verdict().0);
/// check.delivered(me, Level::Total, Some(("p1.0".into(), Level::Total, 0)));
/// assert!(!check.verdict().0, "a duplicate is caught");
/// ```
#[derive(Debug)]
pub struct SelfCheck {
    me: Endpoint,
    /// The last number delivered, by sender (as its texts name it) and level.
    last: HashMap<(String, Level), usize>,
    own_cast: usize,
    own_delivered: usize,
    casts_delivered: u64,
    /// Casts delivered since the last view was installed.
    in_view: u64,
    views: usize,
    state: Option<u64>,
    problems: Vec<String>,
}

/// Problems listed in a verdict; the rest are counted.
const LISTED: usize = 5;

impl SelfCheck {
    pub fn new(me: Endpoint) -> Self {
        SelfCheck {
            me,
            last: HashMap::new(),
            own_cast: 0,
            own_delivered: 0,
            casts_delivered: 0,
            in_view: 0,
            views: 0,
            state: None,
            problems: Vec::new(),
        }
    }

    /// The member cast a burst cast at `level`.
    pub fn cast_own(&mut self, _level: Level) {
        self.own_cast += 1;
    }

    /// The member installed a view of `members`.
    pub fn view(&mut self, members: &[Endpoint]) {
        self.views += 1;
        self.in_view = 0;
        if !members.contains(&self.me) {
            self.problem(format!("installed a view without itself ({} members)", members.len()));
        }
    }

    /// The member delivered a cast from `from` at `level`: a burst cast if `burst` gives its
    /// sender (as written), level and number.
    pub fn delivered(
        &mut self,
        from: Endpoint,
        level: Level,
        burst: Option<(String, Level, usize)>,
    ) {
        self.casts_delivered += 1;
        self.in_view += 1;
        let Some((sender, cast_level, k)) = burst else { return };
        let name = format!("{sender}/{cast_level}/{k}");
        if sender != from.to_string() || cast_level != level {
            self.problem(format!("{name} was delivered from {from} at {level}"));
        }
        if sender == self.me.to_string() {
            self.own_delivered += 1;
        }
        match self.last.insert((sender, cast_level), k) {
            Some(last) if last == k => self.problem(format!("{name} delivered twice")),
            Some(last) if last > k => self.problem(format!("{name} delivered after number {last}")),
            _ => {}
        }
    }

    /// The member installed a state, `counter`: it must come before any delivery in the view
    /// (a joiner's first view, or a view merged from partitions).
    pub fn state(&mut self, counter: u64) {
        if self.in_view > 0 {
            self.problem(format!("state given after {} deliveries in its view", self.in_view));
        }
        self.state = Some(counter);
    }

    /// Something else went wrong.
    pub fn problem(&mut self, what: String) {
        self.problems.push(what);
    }

    /// Whether every check passed, and what was checked (or what failed).
    pub fn verdict(&self) -> (bool, String) {
        let mut problems: Vec<String> = self.problems.iter().take(LISTED).cloned().collect();
        if self.problems.len() > LISTED {
            problems.push(format!("and {} more", self.problems.len() - LISTED));
        }
        if self.own_delivered != self.own_cast {
            problems
                .push(format!("delivered {} of its {} casts", self.own_delivered, self.own_cast));
        }
        if !problems.is_empty() {
            return (false, problems.join("; "));
        }
        let state = match self.state {
            Some(s) => format!(", after a state of {s}"),
            None => String::new(),
        };
        let detail = format!(
            "{} view{}, {} casts delivered{state} (its own {} all), none twice, each sender's in order",
            self.views,
            if self.views == 1 { "" } else { "s" },
            self.casts_delivered,
            self.own_cast
        );
        (true, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burst(s: &str, level: Level, k: usize) -> Option<(String, Level, usize)> {
        Some((s.to_owned(), level, k))
    }

    #[test]
    fn order_identity_and_own_deliveries_are_checked() {
        let (me, other) = (Endpoint::new(1, 0), Endpoint::new(2, 0));
        let mut c = SelfCheck::new(me);
        c.delivered(other, Level::Fifo, burst("p2.0", Level::Fifo, 1));
        c.delivered(other, Level::Fifo, burst("p2.0", Level::Fifo, 0));
        assert!(
            c.verdict().1.contains("p2.0/fifo/0 delivered after number 1"),
            "{:?}",
            c.verdict()
        );

        let mut c = SelfCheck::new(me);
        c.delivered(me, Level::Safe, burst("p2.0", Level::Safe, 0));
        assert!(c.verdict().1.contains("delivered from p1.0"), "{:?}", c.verdict());

        let mut c = SelfCheck::new(me);
        c.cast_own(Level::Fifo);
        assert!(c.verdict().1.contains("delivered 0 of its 1 casts"));
        c.delivered(me, Level::Fifo, burst("p1.0", Level::Fifo, 0));
        assert!(c.verdict().0);
    }

    #[test]
    fn a_late_state_and_a_view_without_me_fail() {
        let me = Endpoint::new(1, 0);
        let mut c = SelfCheck::new(me);
        c.view(&[me]);
        c.delivered(me, Level::Fifo, None);
        c.view(&[me]);
        c.state(3);
        assert!(c.verdict().0, "a state first thing in a new view is fine");
        c.delivered(me, Level::Fifo, None);
        c.state(3);
        c.view(&[Endpoint::new(2, 0)]);
        let (ok, detail) = c.verdict();
        assert!(!ok);
        assert!(detail.contains("state given after 1 deliveries in its view"), "{detail}");
        assert!(detail.contains("without itself"), "{detail}");
    }
}
