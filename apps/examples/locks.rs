//! Locks: two of three members contend for one lock; the holder crashes, and the view change
//! hands the lock to the member that waits. (Three, so that two survive: under the default
//! primary-partition policy a lone survivor of two would be a minority, and stop.)
//!
//! `cargo run --release -p horus-apps --example locks`; the book's "Primary-backup,
//! coordinator-cohort, locks and chat" walks through it.

use std::time::Duration;

use horus::Group;
use horus_apps::lock::LockService;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), horus::Error> {
    for line in run(&format!("locks-{}", std::process::id())).await? {
        println!("{line}");
    }
    Ok(())
}

async fn member(name: &str, founder: bool) -> Result<LockService, horus::Error> {
    let group = Group::builder(name)
        .state_transfer(true)
        .founder(founder)
        .discovery_timeout(Duration::from_millis(100))
        .join()
        .await?;
    Ok(LockService::start(group))
}

async fn run(name: &str) -> Result<Vec<String>, horus::Error> {
    let mut out = Vec::new();
    let a = member(name, true).await?;
    let b = member(name, false).await?;
    let c = member(name, false).await?;
    while a.group().view().len() != 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // ANCHOR: acquire
    // `a` takes the lock; `b` asks for it too, and waits its turn in the lock's queue.
    let held = a.acquire("printer").await?;
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.acquire("printer").await }
    });
    // Use the lock only while it is valid: not once a view change has begun. Its token
    // grows with every grant, so a resource can refuse an out-of-date holder.
    assert!(held.is_valid().await?);
    let first = held.token();
    // ANCHOR_END: acquire
    out.push(format!("{} holds the printer, token {first}", a.group().endpoint()));

    // ANCHOR: crash
    // The holder crashes (its last handle dropped, without leaving). At the view change
    // every member drops its holdings, at the same point of the order, and the lock goes to
    // the next in the queue.
    let crashed = a.group().endpoint();
    held.into_grant(); // keep the lock held: the crash, not a release, must free it
    drop(a);
    let next = waiting.await.expect("the waiting task")?;
    assert!(next.token() > first);
    assert_eq!(b.holder("printer").await?, Some(b.group().endpoint()));
    // ANCHOR_END: crash
    out.push(format!(
        "{crashed} crashed; {} holds it now, token {}",
        b.group().endpoint(),
        next.token()
    ));
    next.release().await?;
    for m in [&c, &b] {
        m.group().leave().await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "current_thread")]
    async fn a_crashed_holders_lock_goes_to_the_waiter() {
        let lines = super::run(&format!("locks-test-{}", std::process::id())).await.expect("runs");
        assert_eq!(lines.len(), 2, "{lines:?}");
    }
}
