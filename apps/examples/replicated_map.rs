//! A replicated map: three members write to one map, one crashes, a new process joins and is
//! given the map by state transfer.
//!
//! `cargo run --release -p horus-apps --example replicated_map`; the book's "A replicated map"
//! walks through it.

use std::time::Duration;

use horus::Group;
use horus_apps::map::ReplicatedMap;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), horus::Error> {
    for line in run(&format!("map-{}", std::process::id())).await? {
        println!("{line}");
    }
    Ok(())
}

// ANCHOR: start
/// A member of group `name` running the map. State transfer is what gives a joiner the map.
async fn member(name: &str, founder: bool) -> Result<ReplicatedMap, horus::Error> {
    let group = Group::builder(name)
        .state_transfer(true)
        .founder(founder)
        .discovery_timeout(Duration::from_millis(100))
        .join()
        .await?;
    Ok(ReplicatedMap::start(group))
}
// ANCHOR_END: start

/// Waits until `map`'s view has `n` members.
async fn wait_members(map: &ReplicatedMap, n: usize) {
    while map.group().view().len() != n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run(name: &str) -> Result<Vec<String>, horus::Error> {
    let mut out = Vec::new();
    let a = member(name, true).await?;
    let b = member(name, false).await?;
    let c = member(name, false).await?;
    wait_members(&a, 3).await;

    // ANCHOR: write
    // Writes from three members at once: each is ordered, then applied at every member.
    let (x, y, z) =
        tokio::join!(a.put("colour", "red"), b.put("colour", "green"), c.put("size", "large"),);
    // Each write returns the value before it, in the order the group chose: one of the two
    // colours was written first, and the other write saw it.
    let colour_before = [x?, y?];
    assert!(colour_before.contains(&None), "one write found no colour");
    z?;
    // A read is local, and every member reads the same map.
    let colour = a.get("colour").await?;
    assert_eq!(colour, c.get("colour").await?);
    // ANCHOR_END: write
    out.push(format!("colour is {}", String::from_utf8_lossy(&colour.unwrap_or_default())));

    // ANCHOR: cas
    // Compare-and-swap: set `owner` only if nobody has; exactly one member wins.
    let claims = tokio::join!(
        a.compare_and_swap("owner", None, Some(b"a".to_vec())),
        b.compare_and_swap("owner", None, Some(b"b".to_vec())),
    );
    let won = [claims.0?, claims.1?].iter().filter(|before| before.is_none()).count();
    assert_eq!(won, 1);
    // ANCHOR_END: cas

    // ANCHOR: crash
    // `c` crashes (its last handle is dropped without leaving); a new process joins and is given
    // the map as it was when it joined, before any write of its first view.
    drop(c);
    wait_members(&a, 2).await;
    let d = member(name, false).await?;
    // A read waits for the map the joiner is given, which comes before any write of its
    // first view.
    assert_eq!(d.entries().await?, a.entries().await?);
    // The copies are equal because the same writes were applied in the same order.
    assert_eq!(d.digest().await?, a.digest().await?);
    // ANCHOR_END: crash
    let entries = d.entries().await?;
    out.push(format!("the joiner was given {} keys: {:?}", entries.len(), entries.keys()));

    for m in [&d, &b, &a] {
        m.group().leave().await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "current_thread")]
    async fn three_writers_a_crash_and_a_joiner_share_one_map() {
        let lines = super::run(&format!("map-test-{}", std::process::id())).await.expect("runs");
        assert_eq!(lines.len(), 2, "{lines:?}");
    }
}
