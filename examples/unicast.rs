//! A group without IP multicast: the first member listens on a fixed address, the others are
//! given that address as a seed, and every cast goes as one datagram to each member. Both
//! members record their histories, and the checker reads the files back and judges them.
//!
//! `cargo run --release --example unicast`; the book's "Deploying on a real network" walks
//! through it.

use std::io::BufReader;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use horus::core::check::check;
use horus::core::history::History;
use horus::{Event, Group, Level, TransportConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), horus::Error> {
    for line in run(&format!("unicast-{}", std::process::id())).await? {
        println!("{line}");
    }
    let between_hosts = multicast(Ipv4Addr::new(10, 0, 0, 5));
    println!(
        "between hosts: multicast to {:?}, datagrams of at most {} bytes",
        between_hosts.group(),
        between_hosts.datagram_limit()
    );
    Ok(())
}

// ANCHOR: multicast
/// IP multicast between hosts: the group's address and port, and this host's address on the
/// network the members share, which picks the interface.
fn multicast(host: Ipv4Addr) -> TransportConfig {
    TransportConfig::multicast("239.255.10.1:7400".parse().expect("an address"))
        .interface_v4(host)
        // The default: multicast stays on the local network.
        .ttl(1)
}
// ANCHOR_END: multicast

// ANCHOR: transport
/// How a member reaches the others without IP multicast: its own unicast address (`bind`;
/// port 0 takes a free one), and the addresses of members to join through (`seeds`; none for
/// the first member). On a real network `bind` is this host's address on the network the
/// members share, such as `10.0.0.5:7400`.
fn transport(bind: SocketAddr, seeds: &[SocketAddr]) -> TransportConfig {
    TransportConfig::unicast_only(seeds.iter().copied())
        .bind(bind)
        // Casts go to each member alone; addresses are learnt from the seeds and from the
        // members' gossip, sent this often and at every view change.
        .gossip_every(Duration::from_millis(200))
        // Ask the kernel for 4 MiB socket buffers (it may grant less: see the warning).
        .buffers(4 << 20, 4 << 20)
        // The most bytes in one datagram: packs and fragments are cut to this size.
        .max_datagram(1400)
}
// ANCHOR_END: transport

/// Runs two members of group `name` over unicast on the loopback interface; returns what
/// happened, one line each.
async fn run(name: &str) -> Result<Vec<String>, horus::Error> {
    let files: Vec<PathBuf> =
        (1..=2).map(|i| std::env::temp_dir().join(format!("{name}-member-{i}.jsonl"))).collect();
    let mut lines = Vec::new();

    // ANCHOR: join
    // The first member has a fixed address, which the others are given as a seed.
    let seed = free_address();
    let mut first = Group::builder(name)
        .transport(transport(seed, &[]))
        .discovery_timeout(Duration::from_millis(100))
        .record(&files[0])
        .join()
        .await?;
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let mut second = Group::builder(name)
        .transport(transport(any_port, &[seed]))
        .founder(false)
        .record(&files[1])
        .join()
        .await?;
    // ANCHOR_END: join
    for member in [&first, &second] {
        let buffers = member.control().buffers();
        lines.push(format!(
            "{} at {}: view {}; socket buffers granted {} B receive, {} B send",
            member.endpoint(),
            member.control().local_addr(),
            member.view(),
            buffers.recv,
            buffers.send
        ));
    }

    second.cast("hello without multicast", Level::Total).await?;
    for member in [&mut first, &mut second] {
        while let Some(event) = member.next_event().await {
            if let Event::Message { from, data, .. } = event {
                let text = String::from_utf8_lossy(&data);
                lines.push(format!("{} delivered {text:?} from {from}", member.endpoint()));
                break;
            }
        }
    }
    second.leave().await?;
    first.leave().await?;

    // ANCHOR: check
    // Both histories, read back and checked together, as `horus check` does.
    let mut history = History::new();
    let mut promises = None;
    for file in &files {
        let reader = BufReader::new(std::fs::File::open(file).expect("the member wrote it"));
        let header = history.extend_jsonl(reader).expect("a history file");
        promises = promises.or(header);
    }
    let report = check(&history, &promises.expect("the files say what the run promised"));
    lines.push(format!("the checker found {} violations", report.violations.len()));
    // ANCHOR_END: check
    for file in &files {
        let _ = std::fs::remove_file(file);
    }
    Ok(lines)
}

/// An address on the loopback interface with a port free now.
fn free_address() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port")
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "current_thread")]
    async fn two_members_meet_through_a_seed_and_their_histories_check() {
        let lines =
            super::run(&format!("unicast-test-{}", std::process::id())).await.expect("runs");
        assert_eq!(lines.iter().filter(|l| l.contains("delivered")).count(), 2, "{lines:#?}");
        assert_eq!(lines.last().map(String::as_str), Some("the checker found 0 violations"));
    }

    #[test]
    fn off_the_loopback_interface_datagrams_fit_an_ethernet_frame() {
        let t = super::multicast(std::net::Ipv4Addr::new(10, 0, 0, 5));
        assert!(!t.is_unicast_only());
        assert_eq!(t.datagram_limit(), 1400);
    }
}
