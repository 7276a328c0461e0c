//! `horus demo cohort`: coordinator-cohort. Members submit requests (fingerprint a string);
//! each is handled by the member its rank rule picks, one request per 300 ms, so requests
//! queue. A coordinator with requests pending is killed; the survivors take its requests over;
//! the node restarts and is given the pending requests by state transfer; at the end every
//! request was answered once, with the fingerprint, and every member saw the same results.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use horus::Endpoint;
use horus_apps::cohort::{Fingerprint, Worker};
use serde_json::{json, Value};

use super::{list, settled, step, Demo};

/// What was asked: (member index, request, answer id).
type Asked = Vec<(usize, String, u64)>;

pub fn run(demo: &mut Demo, n: u64) -> Result<String, String> {
    demo.form(n)?;
    // Request -> the member that handled it, and whether it took it over.
    let mut answered: BTreeMap<String, (Endpoint, bool)> = BTreeMap::new();

    say!(
        "\n2. Every member submits 3 requests at once; each is cast in total order and handled \
         by the member its rank rule picks."
    );
    let asked = submit(demo, "a", 3, None)?;
    collect(demo, asked, &mut answered, false)?;
    show_load(demo, &answered);

    say!("\n3. A coordinator is killed with requests pending.");
    let v = demo.members.len() - 1;
    let victim_at = demo.members[v].endpoint;
    demo.members[v].request("hold", json!({"hold": true}), step())?;
    say!("   {victim_at} stops handling requests (as a hung worker would); the others submit.");
    let base = state(demo, v)?["results"].as_u64().unwrap_or(0);
    let mut asked = Vec::new();
    let mut round = 0;
    let queued = loop {
        round += 1;
        asked.extend(submit(demo, &format!("b{round}-"), 3, Some(v))?);
        let queued = wait_delivered(demo, v, base, asked.len())?;
        if queued >= 2 || round == 5 {
            break queued;
        }
    };
    say!(
        "   {} requests submitted; {victim_at} coordinates {queued} of them, not yet handled.",
        asked.len()
    );
    let mut victim = demo.members.remove(v);
    if let Some(path) = victim.record.clone() {
        settled(&path)?;
    }
    say!("   {} (pid {}) is killed with SIGKILL.", victim.endpoint, victim.pid);
    let at = Instant::now();
    victim.kill()?;
    let view = demo.wait_full_view("install a view without the killed member")?;
    say!(
        "   the survivors installed view {view} = {} {:.1}s after the kill",
        list(&demo.endpoints()),
        at.elapsed().as_secs_f64()
    );
    let takeovers = collect(demo, asked, &mut answered, true)?;
    if takeovers == 0 {
        return Err(format!("no request of {victim_at}'s was taken over"));
    }
    say!("   every request was answered: {takeovers} of them by a member that took it over.");

    say!(
        "\n4. Node {} restarts; state transfer gives it the requests pending.",
        victim.endpoint.node
    );
    let asked = submit(demo, "c", 2, None)?;
    let joiner = demo.restart(victim.endpoint)?;
    let newcomer = demo.members[joiner].endpoint;
    let s = state(demo, joiner)?;
    say!(
        "   {newcomer} was given the state: {} results seen, {} requests still pending",
        s["results"],
        s["pending"]
    );
    collect(demo, asked, &mut answered, false)?;

    say!("\n5. Everyone submits again, the newcomer too.");
    let asked = submit(demo, "d", 3, None)?;
    collect(demo, asked, &mut answered, false)?;
    show_load(demo, &answered);

    say!(
        "\n6. Self-check: every request answered once, with its fingerprint; every member saw \
         the same results, in the same order."
    );
    let mut first: Option<(u64, String)> = None;
    let states = demo.agreed("state", |s| json!([s["results"], s["digest"]]))?;
    for (i, s) in states.iter().enumerate() {
        let stats = &s["stats"];
        say!(
            "   {}: {} results seen, digest {}, handled {}, took over {}, duplicates {}",
            demo.members[i].endpoint,
            s["results"],
            s["digest"].as_str().unwrap_or("?"),
            stats["handled"],
            stats["takeovers"],
            stats["duplicates"]
        );
        if stats["duplicates"] != json!(0) || stats["malformed"] != json!(0) {
            return Err(format!("{} saw duplicate or malformed results", demo.members[i].endpoint));
        }
        let mine = (s["results"].as_u64().unwrap_or(0), s["digest"].as_str().unwrap_or("").into());
        match &first {
            None => first = Some(mine),
            Some(f) if *f == mine => {}
            Some(_) => return Err(format!("{} saw other results", demo.members[i].endpoint)),
        }
    }
    let members = list(&demo.endpoints());
    demo.leave_all()?;
    let checked = demo.check_records()?;
    Ok(format!(
        "demo cohort ok: {n} members, {victim_at} killed with {queued} requests pending, \
         {takeovers} taken over, {newcomer} rejoined; {} requests answered once each, equal \
         results at {members}{checked}",
        answered.len()
    ))
}

/// Every member (but `skip`) submits `per` requests `<endpoint>/<prefix><k>`, without waiting.
fn submit(demo: &mut Demo, prefix: &str, per: usize, skip: Option<usize>) -> Result<Asked, String> {
    let mut asked = Vec::new();
    for (i, m) in demo.members.iter_mut().enumerate() {
        if Some(i) == skip {
            continue;
        }
        for k in 0..per {
            let request = format!("{}/{prefix}{k}", m.endpoint);
            asked.push((i, request.clone(), m.ask("submit", json!({ "request": request }))?));
        }
    }
    Ok(asked)
}

/// Waits for the answers to `asked`; checks each is the request's fingerprint and the first
/// for it; says who handled each when `tell`. Returns how many were taken over.
fn collect(
    demo: &mut Demo,
    asked: Asked,
    answered: &mut BTreeMap<String, (Endpoint, bool)>,
    tell: bool,
) -> Result<usize, String> {
    let total = asked.len();
    let mut takeovers = 0;
    let mut by: BTreeMap<Endpoint, Vec<String>> = BTreeMap::new();
    for (i, request, id) in asked {
        let done = demo.members[i].answer(id, step())?;
        let reply = done["reply"].as_str().unwrap_or_default();
        let expect = Fingerprint.handle(demo.members[i].endpoint, request.clone());
        if reply != expect {
            return Err(format!("{request} was answered {reply}, not its fingerprint {expect}"));
        }
        let handler: Endpoint =
            serde_json::from_value(done["by"].clone()).map_err(|e| format!("no handler: {e}"))?;
        let takeover = done["takeover"] == json!(true);
        takeovers += usize::from(takeover);
        let mark = if takeover { "*" } else { "" };
        by.entry(handler).or_default().push(format!("{request}{mark}"));
        if answered.insert(request.clone(), (handler, takeover)).is_some() {
            return Err(format!("{request} was answered twice"));
        }
    }
    if tell {
        for (handler, requests) in &by {
            say!("   {handler} handled {}", requests.join(" "));
        }
        say!("   (* taken over from the killed coordinator)");
    }
    say!("   {total} requests answered.");
    Ok(takeovers)
}

/// Waits until member `i` has delivered `count` requests since it had `base` results (pending
/// or answered); returns how many it coordinates and has not handled.
fn wait_delivered(demo: &mut Demo, i: usize, base: u64, count: usize) -> Result<u64, String> {
    let deadline = step();
    loop {
        let s = state(demo, i)?;
        let seen = s["pending"].as_u64().unwrap_or(0) + s["results"].as_u64().unwrap_or(0) - base;
        if seen >= count as u64 {
            return Ok(s["queued"].as_u64().unwrap_or(0));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not deliver the requests in time",
                demo.members[i].endpoint
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn state(demo: &mut Demo, i: usize) -> Result<Value, String> {
    demo.members[i].request("state", Value::Null, step())
}

/// How many of the requests answered so far each member handled.
fn show_load(demo: &Demo, answered: &BTreeMap<String, (Endpoint, bool)>) {
    let mut load: BTreeMap<Endpoint, usize> = BTreeMap::new();
    for (by, _) in answered.values() {
        *load.entry(*by).or_default() += 1;
    }
    let line: Vec<String> = load.iter().map(|(e, c)| format!("{e}: {c}")).collect();
    say!(
        "   requests handled so far, by member: {} (members now: {})",
        line.join(", "),
        list(&demo.endpoints())
    );
}
