//! `horus demo rsm`: a replicated state machine, a bank. Every member moves money between
//! three accounts at once, so that some transfers can only be refused; one member is killed
//! with transfers in flight; its node restarts and is given the accounts by state transfer;
//! at the end every replica has applied the same commands in the same order (equal digests),
//! refused the same transfers, and holds all the money there was.

use serde_json::{json, Value};

use super::{list, step, Demo};

const ACCOUNTS: [&str; 3] = ["alice", "bob", "carol"];
const OPENING: u64 = 1000;

pub fn run(demo: &mut Demo, n: u64) -> Result<String, String> {
    demo.form(n)?;

    say!("\n2. {} opens three accounts of {OPENING} each.", demo.members[0].endpoint);
    for a in ACCOUNTS {
        demo.members[0].request("deposit", json!({"account": a, "amount": OPENING}), step())?;
    }

    say!(
        "\n3. Every member asks for 10 transfers of 300 at once, each from its own account to the"
    );
    say!("   next: which succeed depends on the order, and every replica refuses the same ones.");
    let (done, refused) = transfers(demo, 10)?;
    say!("   {done} transfers made, {refused} refused for want of funds.");
    show(demo, 0)?;

    say!("\n4. Transfers are in flight when a member dies.");
    let last = demo.members.len() - 1;
    let mut asked = Vec::new();
    for (i, m) in demo.members.iter_mut().enumerate().take(last) {
        for k in 0..5 {
            let (from, to) = (ACCOUNTS[(i + k) % 3], ACCOUNTS[(i + k + 1) % 3]);
            asked.push((i, m.ask("transfer", json!({"from": from, "to": to, "amount": 100}))?));
        }
    }
    let (victim, _) = demo.kill(last)?;
    for (i, id) in asked {
        demo.members[i].answer(id, step())?;
    }
    say!("   the survivors' transfers were all answered.");

    say!("\n5. Node {} restarts; state transfer gives it the accounts.", victim.endpoint.node);
    let joiner = demo.restart(victim.endpoint)?;
    let newcomer = demo.members[joiner].endpoint;
    let given = local(demo, joiner)?;
    let held = local(demo, 0)?;
    if given["digest"] != held["digest"] {
        return Err(format!("{newcomer} was given {given}, while the others hold {held}"));
    }
    say!(
        "   {newcomer} holds what it was given: {} commands applied, equal to the others'.",
        given["applied"]
    );

    say!("\n6. A local read and an ordered read of alice's balance, from the newcomer:");
    let local_now = local(demo, joiner)?["accounts"]["alice"].clone();
    let ordered = demo.members[joiner].request("balance", json!({"account": "alice"}), step())?;
    say!(
        "   local (this replica now): {local_now}; ordered (after every command before it): {}",
        ordered["balance"]
    );

    say!("\n7. Everyone transfers again, the newcomer too.");
    let (done, refused) = transfers(demo, 5)?;
    say!("   {done} transfers made, {refused} refused.");

    say!("\n8. Self-check: every replica applied the same commands in the same order, and");
    say!("   transfers neither made nor lost money.");
    let mut first: Option<Value> = None;
    let locals = demo.agreed("local", Value::clone)?;
    for (i, l) in locals.into_iter().enumerate() {
        say!(
            "   {}: {} commands applied, digest {}, total {}, {} refused",
            demo.members[i].endpoint,
            l["applied"],
            l["digest"].as_str().unwrap_or("?"),
            l["total"],
            l["refused"]
        );
        if l["total"] != json!(OPENING * 3) {
            return Err(format!(
                "{}'s bank holds {}, not {}",
                demo.members[i].endpoint,
                l["total"],
                OPENING * 3
            ));
        }
        match &first {
            None => first = Some(l),
            Some(f) if *f == l => {}
            Some(_) => return Err(format!("{}'s replica differs", demo.members[i].endpoint)),
        }
    }
    let members = list(&demo.endpoints());
    demo.leave_all()?;
    let checked = demo.check_records()?;
    Ok(format!(
        "demo rsm ok: {n} members, {} killed with transfers in flight, {newcomer} rejoined with the \
         state; equal replicas at {members}, {} in the bank{checked}",
        victim.endpoint,
        OPENING * 3
    ))
}

/// Every member asks `per` transfers of 300 from its own account to the next, all at once;
/// returns how many were made and how many refused.
fn transfers(demo: &mut Demo, per: usize) -> Result<(u64, u64), String> {
    let mut asked = Vec::new();
    for (i, m) in demo.members.iter_mut().enumerate() {
        for _ in 0..per {
            let (from, to) = (ACCOUNTS[i % 3], ACCOUNTS[(i + 1) % 3]);
            asked.push((i, m.ask("transfer", json!({"from": from, "to": to, "amount": 300}))?));
        }
    }
    let (mut done, mut refused) = (0, 0);
    for (i, id) in asked {
        let r = demo.members[i].answer(id, step())?;
        if r.get("refused").is_some() {
            refused += 1;
        } else {
            done += 1;
        }
    }
    Ok((done, refused))
}

fn local(demo: &mut Demo, i: usize) -> Result<Value, String> {
    demo.members[i].request("local", Value::Null, step())
}

fn show(demo: &mut Demo, i: usize) -> Result<(), String> {
    let l = local(demo, i)?;
    say!(
        "   the accounts at {}: {} (total {})",
        demo.members[i].endpoint,
        l["accounts"],
        l["total"]
    );
    Ok(())
}
