//! State transfer: two members keep a replicated counter (one per `inc` cast delivered); a
//! third process joins and is given the counter as it was at the view boundary, before any
//! message of the view it joins in.
//!
//! `cargo run --release --example state_transfer`; the book's "State transfer" walks through
//! it.

use std::time::Duration;

use horus::{Event, Group, Level};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), horus::Error> {
    for line in run(&format!("state-{}", std::process::id())).await? {
        println!("{line}");
    }
    Ok(())
}

// ANCHOR: app
/// One member and its application: a counter of the `inc` casts delivered, which the group
/// replicates.
struct Counter {
    member: Group,
    value: u64,
    /// What happened to the state, one line each, for the example to print.
    log: Vec<String>,
}

impl Counter {
    /// Handles the member's next event; `false` once the member is out of the group.
    async fn step(&mut self) -> bool {
        let me = self.member.endpoint();
        match self.member.next_event().await {
            Some(Event::Message { data, .. }) if &data[..] == b"inc" => self.value += 1,
            // We are an old member and processes join in this view. Nothing of the new view
            // has been delivered yet: our counter is the state at the view boundary.
            Some(Event::Snapshot(request)) => {
                self.log.push(format!("{me} gives {} for {}", self.value, request.view()));
                request.reply(self.value.to_le_bytes().to_vec());
            }
            // We joined: the old members' state, before any message of our first view.
            Some(Event::State(state)) => {
                let bytes = <[u8; 8]>::try_from(&state[..]).unwrap_or_default();
                self.value = u64::from_le_bytes(bytes);
                self.log.push(format!("{me} installs {}", self.value));
            }
            Some(_) => {}
            None => return false,
        }
        true
    }
}
// ANCHOR_END: app

impl Counter {
    fn new(member: Group) -> Self {
        Counter { member, value: 0, log: Vec::new() }
    }

    /// Handles events until `done` holds (or ten seconds pass, which the test would report).
    async fn until(&mut self, done: impl Fn(&Counter) -> bool) {
        let wait = async { while !done(self) && self.step().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
    }
}

/// Runs the scenario in group `name`; returns what happened to the state, and the counters.
async fn run(name: &str) -> Result<Vec<String>, horus::Error> {
    let fast = Duration::from_millis(100);
    // ANCHOR: form
    // Every member of the group turns state transfer on.
    let member = |name: &str| Group::builder(name).state_transfer(true);
    let first = member(name).discovery_timeout(fast).join().await?;
    let second = member(name).founder(false).join().await?;
    let (mut a, mut b) = (Counter::new(first), Counter::new(second));
    for _ in 0..5 {
        a.member.cast("inc", Level::Total).await?;
    }
    a.until(|c| c.value == 5).await;
    b.until(|c| c.value == 5).await;
    // ANCHOR_END: form

    // ANCHOR: join
    // A third process joins. The old members are asked for the state as of the new view, and
    // the joiner is given it before anything else of that view.
    let mut c = Counter::new(member(name).founder(false).join().await?);
    a.until(|a| a.member.view().len() == 3 && a.log.len() == 2).await;
    b.until(|b| b.member.view().len() == 3 && b.log.len() == 2).await;
    c.until(|c| !c.log.is_empty()).await;
    // ANCHOR_END: join

    // From there on the joiner counts with the others.
    c.member.cast("inc", Level::Total).await?;
    for counter in [&mut a, &mut b, &mut c] {
        counter.until(|c| c.value == 6).await;
    }
    let mut lines = Vec::new();
    for counter in [&a, &b, &c] {
        lines.extend(counter.log.iter().cloned());
    }
    lines.push(format!("counters: {} {} {}", a.value, b.value, c.value));
    for counter in [&c, &b, &a] {
        counter.member.leave().await?;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "current_thread")]
    async fn the_joiner_is_given_the_counter_and_counts_on_with_the_others() {
        let lines = super::run(&format!("state-test-{}", std::process::id())).await.expect("runs");
        let installs: Vec<&String> = lines.iter().filter(|l| l.contains("installs")).collect();
        // The second member was given 0 when it joined, the third 5.
        assert_eq!(installs.len(), 2, "{lines:#?}");
        assert!(installs[1].ends_with("installs 5"), "{lines:#?}");
        assert_eq!(lines.last().map(String::as_str), Some("counters: 6 6 6"), "{lines:#?}");
    }
}
