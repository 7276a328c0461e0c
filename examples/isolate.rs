//! The fault switch on a real group: three members over loopback multicast; one is cut off by
//! its own fault switch. The two others install a view without it; the one cut off, alone in
//! a minority, exits the group.
//!
//! `cargo run --release --example isolate`; the book's "Failures and partitions" walks through
//! it.

use std::time::{Duration, Instant};

use horus::{Event, Group, ViewChange};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), horus::Error> {
    for line in run(&format!("isolate-{}", std::process::id())).await? {
        println!("{line}");
    }
    Ok(())
}

/// Waits for `member`'s next view, skipping other events; `None` once it is out of the group.
async fn next_view(member: &mut Group) -> Option<ViewChange> {
    while let Some(event) = member.next_event().await {
        match event {
            Event::View(change) => return Some(change),
            Event::Exit => return None,
            _ => {}
        }
    }
    None
}

/// Runs the scenario in group `name`; returns what happened, one line each.
async fn run(name: &str) -> Result<Vec<String>, horus::Error> {
    let fast = Duration::from_millis(100);
    let mut first = Group::builder(name).discovery_timeout(fast).join().await?;
    let _second = Group::builder(name).founder(false).join().await?;
    let mut third = Group::builder(name).founder(false).join().await?;
    while first.view().len() < 3 || third.view().len() < 3 {
        next_view(&mut first).await.expect("views as they join");
    }
    let mut lines = Vec::new();

    // ANCHOR: isolate
    // The third member's switch drops every datagram it sends or receives. To the others it
    // has crashed; it can reach no majority of its view.
    let cut_off = third.endpoint();
    let start = Instant::now();
    third.faults().isolate();

    // The others suspect it and install a view without it.
    let change = loop {
        let change = next_view(&mut first).await.expect("the first member stays");
        if change.left.contains(&cut_off) {
            break change;
        }
    };
    lines.push(format!(
        "{:?}: the others install {} (left {:?})",
        start.elapsed(),
        change.view,
        change.left
    ));

    // Alone, it cannot go on under the primary-partition policy: it exits.
    let mut seen = Vec::new();
    while let Some(event) = third.next_event().await {
        seen.push(match event {
            Event::View(change) => format!("view {}", change.view.id),
            Event::Block => "block".to_owned(),
            Event::Exit => "exit".to_owned(),
            _ => "another event".to_owned(),
        });
    }
    lines.push(format!("{:?}: {cut_off} saw {}", start.elapsed(), seen.join(", ")));
    // ANCHOR_END: isolate

    first.leave().await?;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "current_thread")]
    async fn the_member_cut_off_is_removed_and_exits() {
        let lines =
            super::run(&format!("isolate-test-{}", std::process::id())).await.expect("runs");
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[1].ends_with("exit"), "{lines:#?}");
    }
}
