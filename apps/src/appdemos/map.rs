//! `horus demo map`: a replicated key-value map. Three members write keys at once; one is
//! killed while writes are in flight; its node restarts and is given the map by state
//! transfer; at the end every member holds the same map, from the same writes in the same
//! order.

use serde_json::{json, Value};

use super::{list, step, Demo};

pub fn run(demo: &mut Demo, n: u64) -> Result<String, String> {
    demo.form(n)?;

    say!(
        "\n2. Every member writes 5 keys at once (each write is ordered, then applied everywhere)."
    );
    write_round(demo, "a", 5)?;
    show(demo)?;

    say!("\n3. Writes are in flight when a member dies.");
    let last = demo.members.len() - 1;
    let mut asked = Vec::new();
    for (i, m) in demo.members.iter_mut().enumerate().take(last) {
        for k in 0..5 {
            let id =
                m.ask("put", json!({"key": format!("b{k}"), "value": format!("{}", m.endpoint)}))?;
            asked.push((i, id));
        }
    }
    let (victim, _) = demo.kill(last)?;
    for (i, id) in asked {
        demo.members[i].answer(id, step())?;
    }
    say!("   the survivors' writes were all answered.");

    say!("\n4. Node {} restarts; state transfer gives it the map.", victim.endpoint.node);
    let joiner = demo.restart(victim.endpoint)?;
    let newcomer = demo.members[joiner].endpoint;
    let given = entries(demo, joiner)?;
    let held = entries(demo, 0)?;
    if given != held {
        return Err(format!(
            "the joiner was given {given}, while {} holds {held}",
            demo.members[0].endpoint
        ));
    }
    say!(
        "   {} holds the map it was given: {} keys, equal to {}'s",
        demo.members[joiner].endpoint,
        given.as_object().map_or(0, |o| o.len()),
        demo.members[0].endpoint
    );

    say!("\n5. Everyone writes again, the newcomer too.");
    write_round(demo, "c", 3)?;

    say!(
        "\n6. Self-check: every member holds the same map, from the same writes in the same order."
    );
    let mut first: Option<(Value, Value)> = None;
    let digests = demo.agreed("digest", Value::clone)?;
    for (i, digest) in digests.into_iter().enumerate() {
        let map = entries(demo, i)?;
        say!(
            "   {}: {} keys, {} writes applied, digest {}",
            demo.members[i].endpoint,
            map.as_object().map_or(0, |o| o.len()),
            digest["applied"],
            digest["digest"].as_str().unwrap_or("?")
        );
        match &first {
            None => first = Some((map, digest)),
            Some((m, d)) if *m == map && *d == digest => {}
            Some(_) => return Err(format!("{}'s map differs", demo.members[i].endpoint)),
        }
    }
    let keys = first.as_ref().and_then(|(m, _)| m.as_object().map(|o| o.len())).unwrap_or(0);
    let members = list(&demo.endpoints());
    demo.leave_all()?;
    let checked = demo.check_records()?;
    Ok(format!(
        "demo map ok: {n} members, {} killed with writes in flight, {} rejoined with the map; \
         {keys} keys, equal at {members}{checked}",
        victim.endpoint, newcomer,
    ))
}

/// Every member puts `per` keys `<prefix><k>` = its endpoint, all at once; waits for every
/// answer.
fn write_round(demo: &mut Demo, prefix: &str, per: usize) -> Result<(), String> {
    let mut asked = Vec::new();
    for (i, m) in demo.members.iter_mut().enumerate() {
        for k in 0..per {
            let args = json!({"key": format!("{prefix}{k}"), "value": m.endpoint.to_string()});
            asked.push((i, m.ask("put", args)?));
        }
    }
    let total = asked.len();
    for (i, id) in asked {
        demo.members[i].answer(id, step())?;
    }
    say!("   {total} writes answered.");
    Ok(())
}

fn entries(demo: &mut Demo, i: usize) -> Result<Value, String> {
    demo.members[i].request("entries", Value::Null, step())
}

/// Prints the first member's map: each key, and who wrote it last (the last in the order).
fn show(demo: &mut Demo) -> Result<(), String> {
    let map = entries(demo, 0)?;
    if let Some(o) = map.as_object() {
        let line: Vec<String> =
            o.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?"))).collect();
        say!("   the map at {}: {}", demo.members[0].endpoint, line.join(" "));
    }
    Ok(())
}
