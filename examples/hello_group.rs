//! Three members of one group, in one process: they join, each casts at the total level, and
//! all three deliver the three casts in one order. Then they leave.
//!
//! `cargo run --release --example hello_group`; the book's "Getting started" walks through it.

use std::time::Duration;

use horus::{Event, Group, Level};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), horus::Error> {
    let orders = run(&format!("hello-{}", std::process::id())).await?;
    for (member, order) in orders {
        println!("{member} delivered: {}", order.join(", "));
    }
    Ok(())
}

/// Runs the group `name`; returns each member and the casts it delivered, in order.
async fn run(name: &str) -> Result<Vec<(String, Vec<String>)>, horus::Error> {
    // ANCHOR: join
    // The first member looks for the group for a moment, finds none, and founds it.
    let first = Group::builder(name).discovery_timeout(Duration::from_millis(100)).join().await?;
    // The others must not found a group of their own: they join the one that is there.
    let second = Group::builder(name).founder(false).join().await?;
    let third = Group::builder(name).founder(false).join().await?;
    // ANCHOR_END: join
    let mut members = [first, second, third];

    // ANCHOR: cast
    for member in &members {
        let text = format!("hello from {}", member.endpoint());
        member.cast(text, Level::Total).await?;
    }
    // ANCHOR_END: cast

    // ANCHOR: events
    let mut orders = Vec::new();
    for member in &mut members {
        let mut delivered = Vec::new();
        while delivered.len() < 3 {
            match member.next_event().await {
                Some(Event::Message { data, .. }) => {
                    delivered.push(String::from_utf8_lossy(&data).into_owned());
                }
                // Views (as the others joined), and a Block before each view change.
                Some(_) => {}
                None => break,
            }
        }
        orders.push((member.endpoint().to_string(), delivered));
    }
    // ANCHOR_END: events

    // ANCHOR: leave
    for member in &members {
        member.leave().await?;
    }
    // ANCHOR_END: leave
    Ok(orders)
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "current_thread")]
    async fn every_member_delivers_the_three_casts_in_one_order() {
        let name = format!("hello-test-{}", std::process::id());
        let orders = super::run(&name).await.expect("the group runs");
        assert_eq!(orders.len(), 3);
        assert_eq!(orders[0].1.len(), 3, "{orders:?}");
        assert!(orders.iter().all(|(_, o)| *o == orders[0].1), "{orders:?}");
    }
}
