//! A group's views as its membership changes: three members form a group, one crashes, and
//! a new process joins. Each view says who joined and who left.
//!
//! `cargo run --release --example views`; the book's "Process groups and views" walks
//! through it.

use std::time::Duration;

use horus::{Event, Group, ViewChange};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), horus::Error> {
    for line in run(&format!("views-{}", std::process::id())).await? {
        println!("{line}");
    }
    Ok(())
}

/// Waits for `member`'s next view, skipping other events.
async fn next_view(member: &mut Group) -> Option<ViewChange> {
    // ANCHOR: next_view
    while let Some(event) = member.next_event().await {
        match event {
            Event::View(change) => return Some(change),
            // The group holds our casts between a Block and the next view: nothing to do.
            Event::Block => {}
            Event::Exit => return None,
            _ => {}
        }
    }
    None
    // ANCHOR_END: next_view
}

/// Runs the scenario in group `name`; returns what the first member saw, one line a view.
async fn run(name: &str) -> Result<Vec<String>, horus::Error> {
    let fast = Duration::from_millis(100);
    let mut first = Group::builder(name).discovery_timeout(fast).join().await?;
    let mut seen = Vec::new();
    let mut note = |c: &ViewChange| {
        seen.push(format!("view {}: joined {:?}, left {:?}", c.view, c.joined, c.left));
    };
    let mut change = next_view(&mut first).await.expect("a first view");
    note(&change);
    let mut second = Group::builder(name).founder(false).join().await?;
    let third = Group::builder(name).founder(false).join().await?;
    // The first member's events tell the views in order, whatever view it is in by now.
    while change.view.len() < 3 {
        change = next_view(&mut first).await.expect("views as they join");
        note(&change);
    }

    // ANCHOR: crash
    // Dropping every handle of a member stops it at once, without leaving: to the others it
    // has crashed. They suspect it after a few hundred milliseconds and install a view
    // without it.
    let crashed = third.endpoint();
    drop(third);
    let change = next_view(&mut first).await.expect("a view without it");
    assert_eq!(change.left, vec![crashed]);
    // ANCHOR_END: crash
    note(&change);

    // ANCHOR: join
    // A new process joins; the members see it in `joined`, and it sees its first view.
    let mut fourth = Group::builder(name).founder(false).join().await?;
    let change = next_view(&mut first).await.expect("a view with it");
    assert_eq!(change.joined, vec![fourth.endpoint()]);
    // ANCHOR_END: join
    note(&change);

    // Everyone saw the same views: the second member's latest is the first's.
    while second.view().id != first.view().id {
        next_view(&mut second).await.expect("the second member's views");
    }
    let _ = next_view(&mut fourth).await;
    for member in [&fourth, &second, &first] {
        member.leave().await?;
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "current_thread")]
    async fn the_views_follow_joins_and_a_crash() {
        let lines = super::run(&format!("views-test-{}", std::process::id())).await.expect("runs");
        assert!(lines.len() >= 4, "{lines:#?}");
    }
}
