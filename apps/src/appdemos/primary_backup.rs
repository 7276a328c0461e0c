//! `horus demo primary-backup`: a journal kept by a primary and its backups. Every member
//! appends entries through the primary; the primary is killed with appends in flight; the next
//! member takes over and the appends are sent to it again; the node restarts and is given the
//! journal by state transfer; at the end every acknowledged entry is in every journal, once,
//! at the index it was acknowledged with.

use std::collections::BTreeMap;

use horus::Endpoint;
use serde_json::{json, Value};

use super::{list, settled, step, Demo};

pub fn run(demo: &mut Demo, n: u64) -> Result<String, String> {
    demo.form(n)?;
    // Entry -> the index its append was acknowledged with.
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();

    let primary = primary_of(demo, 0)?;
    say!(
        "\n2. Every member appends 4 entries at once: each goes to the primary {primary}, which \
         casts it safe to the backups."
    );
    append_round(demo, "a", 4, &mut acked)?;
    show(demo)?;

    say!("\n3. The primary is killed; the others append with the primary gone.");
    let at = demo
        .members
        .iter()
        .position(|m| m.endpoint == primary)
        .ok_or("the primary is not a member")?;
    let mut victim = demo.members.remove(at);
    if let Some(path) = victim.record.clone() {
        settled(&path)?;
    }
    say!("   the primary {} (pid {}) is killed with SIGKILL.", victim.endpoint, victim.pid);
    victim.kill()?;
    let mut asked = Vec::new();
    for (i, m) in demo.members.iter_mut().enumerate() {
        for k in 0..3 {
            let entry = format!("{}/b{k}", m.endpoint);
            asked.push((i, entry.clone(), m.ask("append", json!({ "entry": entry }))?));
        }
    }
    say!("   {} appends asked right after the kill.", asked.len());
    let view = demo.wait_full_view("install a view without the primary")?;
    let new_primary = primary_of(demo, 0)?;
    say!(
        "   view {view} = {}: {new_primary} is the primary now, with every update the old one \
         made stable",
        list(&demo.endpoints()),
    );
    if new_primary == primary {
        return Err("the dead primary is still the primary".into());
    }
    let total = asked.len();
    for (i, entry, id) in asked {
        let at = demo.members[i].answer(id, step())?;
        acked.insert(entry, at.as_u64().ok_or("an index that is not a number")?);
    }
    let resent: u64 = (0..demo.members.len())
        .map(|i| state(demo, i).map(|s| s["stats"]["resent"].as_u64().unwrap_or(0)))
        .sum::<Result<u64, String>>()?;
    say!(
        "   all {total} were acknowledged by the new primary ({resent} requests sent again at \
         the view change; none applied twice)."
    );
    check(demo, &acked)?;

    say!("\n4. Node {} restarts; state transfer gives it the journal.", victim.endpoint.node);
    let joiner = demo.restart(victim.endpoint)?;
    let newcomer = demo.members[joiner].endpoint;
    let given = journal(demo, joiner)?;
    let held = journal(demo, 0)?;
    if given != held {
        return Err(format!("{newcomer} was given {} entries, not {}", given.len(), held.len()));
    }
    say!(
        "   {newcomer} holds the journal it was given: {} entries, equal to {}'s",
        given.len(),
        demo.members[0].endpoint
    );

    say!("\n5. Everyone appends again, the newcomer too (it is a backup: its appends go to the primary).");
    append_round(demo, "c", 2, &mut acked)?;

    say!(
        "\n6. Self-check: every acknowledged entry is in every journal once, at its index; the \
         journals are equal."
    );
    let entries = check(demo, &acked)?;
    for i in 0..demo.members.len() {
        let (s, primary) = (state(demo, i)?, primary_of(demo, i)?);
        say!(
            "   {}: {} updates applied, digest {}, primary {primary}",
            demo.members[i].endpoint,
            s["applied"],
            s["digest"].as_str().unwrap_or("?"),
        );
    }
    let members = list(&demo.endpoints());
    demo.leave_all()?;
    let checked = demo.check_records()?;
    Ok(format!(
        "demo primary-backup ok: {n} members, primary {} killed with appends in flight, \
         {new_primary} took over, {newcomer} rejoined with the journal; {} appends acknowledged, \
         none lost or doubled; {entries} entries, equal at {members}{checked}",
        victim.endpoint,
        acked.len(),
    ))
}

/// Every member appends `per` entries `<endpoint>/<prefix><k>`, all at once; waits for every
/// acknowledgement.
fn append_round(
    demo: &mut Demo,
    prefix: &str,
    per: usize,
    acked: &mut BTreeMap<String, u64>,
) -> Result<(), String> {
    let mut asked = Vec::new();
    for (i, m) in demo.members.iter_mut().enumerate() {
        for k in 0..per {
            let entry = format!("{}/{prefix}{k}", m.endpoint);
            asked.push((i, entry.clone(), m.ask("append", json!({ "entry": entry }))?));
        }
    }
    let total = asked.len();
    for (i, entry, id) in asked {
        let at = demo.members[i].answer(id, step())?;
        acked.insert(entry, at.as_u64().ok_or("an index that is not a number")?);
    }
    say!("   {total} appends acknowledged.");
    Ok(())
}

/// Checks that the journals are equal and hold every acknowledged entry once, at its index;
/// returns the journals' length.
fn check(demo: &mut Demo, acked: &BTreeMap<String, u64>) -> Result<usize, String> {
    let journals = demo.agreed("journal", Value::clone)?;
    let first = &journals[0];
    for (i, j) in journals.iter().enumerate().skip(1) {
        if j != first {
            return Err(format!(
                "{}'s journal differs from {}'s",
                demo.members[i].endpoint, demo.members[0].endpoint
            ));
        }
    }
    let first: Vec<String> =
        serde_json::from_value(first.clone()).map_err(|e| format!("not a journal: {e}"))?;
    for (entry, at) in acked {
        let times = first.iter().filter(|e| *e == entry).count();
        if times != 1 {
            return Err(format!("the acknowledged entry {entry} is in the journal {times} times"));
        }
        if first.get(*at as usize) != Some(entry) {
            return Err(format!("{entry} was acknowledged at {at}, but is not there"));
        }
    }
    say!(
        "   the {} journals are equal ({} entries); all {} acknowledged entries are there once",
        demo.members.len(),
        first.len(),
        acked.len()
    );
    Ok(first.len())
}

fn state(demo: &mut Demo, i: usize) -> Result<Value, String> {
    demo.members[i].request("state", Value::Null, step())
}

fn primary_of(demo: &mut Demo, i: usize) -> Result<Endpoint, String> {
    serde_json::from_value(state(demo, i)?["primary"].clone())
        .map_err(|e| format!("no primary: {e}"))
}

fn journal(demo: &mut Demo, i: usize) -> Result<Vec<String>, String> {
    let v = demo.members[i].request("journal", Value::Null, step())?;
    serde_json::from_value(v).map_err(|e| format!("not a journal: {e}"))
}

/// Prints the first member's journal: its length and last entries.
fn show(demo: &mut Demo) -> Result<(), String> {
    let j = journal(demo, 0)?;
    let tail: Vec<&str> = j.iter().rev().take(4).rev().map(String::as_str).collect();
    say!(
        "   the journal at {}: {} entries, ending {}",
        demo.members[0].endpoint,
        j.len(),
        tail.join(" ")
    );
    Ok(())
}
