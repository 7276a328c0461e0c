//! `horus demo lock`: a lock service. The members contend for one lock and are granted it in
//! the order their acquires were delivered; the holder is killed with SIGKILL while the
//! others wait, and the survivors' view change gives the lock to the next waiter; the node
//! restarts, is given the lock table by state transfer, and takes its turn. Every member
//! reports when it was granted the lock and when it released it: the self-check finds no two
//! holdings that overlap, and equal tables everywhere.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use horus::Endpoint;
use serde_json::{json, Value};

use super::{list, settled, step, Demo};

/// The lock the members contend for.
const LOCK: &str = "printer";

/// How long each holder keeps the lock.
const HOLD: Duration = Duration::from_millis(150);

/// A holding, as its member reported it: when it was granted and released (µs since the
/// epoch; the members run on this host).
struct Span {
    member: Endpoint,
    token: u64,
    from: u64,
    to: u64,
}

pub fn run(demo: &mut Demo, n: u64) -> Result<String, String> {
    let start = now_us();
    let mut spans = Vec::new();
    demo.form(n)?;

    say!("\n2. Every member asks for lock `{LOCK}` at once; the total order queues them.");
    let first = round(demo, &mut spans, start)?;

    say!("\n3. Everyone asks again; the holder is killed with SIGKILL while the others wait.");
    let asked = ask_all(demo)?;
    let (holder, queue) = queued(demo, asked.len())?;
    say!("   {holder} holds `{LOCK}`; {} wait in that order.", list(&queue));
    let i = index(demo, holder)?;
    let grant = demo.members[i].answer(id_of(&asked, holder)?, step())?;
    let mut victim = demo.members.remove(i);
    if let Some(path) = victim.record.clone() {
        settled(&path)?;
    }
    say!("   {holder} (pid {}) is killed with SIGKILL while it holds the lock.", victim.pid);
    victim.kill()?;
    let died = now_us();
    spans.push(Span { member: holder, token: token(&grant)?, from: at(&grant)?, to: died });
    let view = demo.wait_full_view("install a view without the killed holder")?;
    say!("   the survivors installed view {view} = {}", list(&demo.endpoints()));
    let next = queue.first().copied().ok_or("nobody waited for the lock")?;
    let served = spans.len();
    let order = serve(demo, &asked, &queue, &mut spans, start)?;
    let took = spans[served].from.saturating_sub(died);
    say!(
        "   the view change released {holder}'s lock (killed at +{:.3}s): {next} was granted it \
         {:.1} ms after the kill",
        died.saturating_sub(start) as f64 / 1e6,
        took as f64 / 1e3
    );

    say!("\n4. Node {} restarts; state transfer gives it the lock table.", holder.node);
    let joiner = demo.restart(holder)?;
    let newcomer = demo.members[joiner].endpoint;
    let given = table(demo, joiner)?;
    let kept = table(demo, 0)?;
    if given != kept {
        return Err(format!(
            "{newcomer} was given {given}, while {} holds {kept}",
            demo.endpoints()[0]
        ));
    }
    say!(
        "   {newcomer} holds the table it was given, equal to {}'s: {}",
        demo.endpoints()[0],
        show(&given)
    );
    say!("   Everyone asks again, the newcomer too:");
    let last = round(demo, &mut spans, start)?;

    say!("\n5. Self-check: never two holders at once, and the same table everywhere.");
    spans.sort_by_key(|s| s.from);
    for pair in spans.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.from < a.to {
            return Err(format!(
                "{} was granted `{LOCK}` (token {}) while {} held it (token {})",
                b.member, b.token, a.member, a.token
            ));
        }
    }
    if spans.windows(2).any(|p| p[1].token <= p[0].token) {
        return Err("the fencing tokens do not grow with the grants".into());
    }
    say!("   {} holdings, one after another, tokens 1..={} in order", spans.len(), spans.len());
    let mut tables = Vec::new();
    for i in 0..demo.members.len() {
        let t = released(demo, i)?;
        say!("   {}: {}", demo.members[i].endpoint, show(&t));
        tables.push(t);
    }
    if tables.windows(2).any(|p| p[0] != p[1]) {
        return Err("the members' lock tables differ".into());
    }
    let members = list(&demo.endpoints());
    demo.leave_all()?;
    let checked = demo.check_records()?;
    Ok(format!(
        "demo lock ok: {n} members granted `{LOCK}` in the order queued ({}, then {}, then {}); \
         {holder} killed holding it, {next} granted it by the view change; {newcomer} rejoined \
         with the table and took its turn; {} holdings never overlapped; tables equal at \
         {members}{checked}",
        list(&first),
        list(&order),
        list(&last),
        spans.len(),
    ))
}

/// Every member asks for the lock, the grants are served in the order queued, each holder
/// keeps it briefly; returns that order.
fn round(demo: &mut Demo, spans: &mut Vec<Span>, start: u64) -> Result<Vec<Endpoint>, String> {
    let asked = ask_all(demo)?;
    let (holder, queue) = queued(demo, asked.len())?;
    say!("   queue at {}: {holder} holds, then {} wait", demo.endpoints()[0], list(&queue));
    let mut order = vec![holder];
    order.extend(&queue);
    serve(demo, &asked, &order, spans, start)
}

/// Each member of `order` in turn: waits for its grant, holds the lock, releases it.
fn serve(
    demo: &mut Demo,
    asked: &[(Endpoint, u64)],
    order: &[Endpoint],
    spans: &mut Vec<Span>,
    start: u64,
) -> Result<Vec<Endpoint>, String> {
    for &member in order {
        let i = index(demo, member)?;
        let grant = demo.members[i].answer(id_of(asked, member)?, step())?;
        std::thread::sleep(HOLD);
        let released = demo.members[i].request("release", json!({"name": LOCK}), step())?;
        if released["released"] != json!(true) {
            return Err(format!("{member} had nothing to release"));
        }
        let span = Span { member, token: token(&grant)?, from: at(&grant)?, to: at(&released)? };
        say!(
            "   {member} granted (token {}) at +{:.3}s, released at +{:.3}s",
            span.token,
            span.from.saturating_sub(start) as f64 / 1e6,
            span.to.saturating_sub(start) as f64 / 1e6
        );
        spans.push(span);
    }
    Ok(order.to_vec())
}

/// Every member asks for the lock without waiting; returns who asked under which id.
fn ask_all(demo: &mut Demo) -> Result<Vec<(Endpoint, u64)>, String> {
    let mut asked = Vec::new();
    for m in &mut demo.members {
        asked.push((m.endpoint, m.ask("acquire", json!({"name": LOCK}))?));
    }
    Ok(asked)
}

/// Waits until the first member's table has `n` acquires of the lock ordered; returns the
/// holder and the waiters, in order.
fn queued(demo: &mut Demo, n: usize) -> Result<(Endpoint, Vec<Endpoint>), String> {
    let deadline = step();
    loop {
        let t = table(demo, 0)?;
        let lock = &t[LOCK];
        let holder = lock["holder"].as_str().map(|h| endpoint(demo, h));
        let queue: Vec<Option<Endpoint>> = lock["queue"]
            .as_array()
            .map(|q| q.iter().map(|e| endpoint(demo, e.as_str().unwrap_or_default())).collect())
            .unwrap_or_default();
        if let Some(Some(holder)) = holder {
            if queue.len() + 1 == n {
                let queue: Option<Vec<Endpoint>> = queue.into_iter().collect();
                return Ok((holder, queue.ok_or("a stranger in the queue")?));
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("the acquires were not all ordered in time: {t}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The member named `name` (`p2.0`), if it is one.
fn endpoint(demo: &Demo, name: &str) -> Option<Endpoint> {
    demo.endpoints().into_iter().find(|e| e.to_string() == name)
}

fn index(demo: &Demo, member: Endpoint) -> Result<usize, String> {
    demo.endpoints().iter().position(|e| *e == member).ok_or(format!("{member} is gone"))
}

fn id_of(asked: &[(Endpoint, u64)], member: Endpoint) -> Result<u64, String> {
    asked
        .iter()
        .find(|(e, _)| *e == member)
        .map(|(_, id)| *id)
        .ok_or(format!("{member} did not ask"))
}

/// Member `i`'s table once the last release has reached it (the lock is free there).
fn released(demo: &mut Demo, i: usize) -> Result<Value, String> {
    let deadline = step();
    loop {
        let t = table(demo, i)?;
        if t[LOCK]["holder"].is_null() {
            return Ok(t);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("{} still sees the lock held: {t}", demo.members[i].endpoint));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn table(demo: &mut Demo, i: usize) -> Result<Value, String> {
    demo.members[i].request("table", Value::Null, step())
}

/// A table in a few words: each lock, who holds it, and its grants.
fn show(table: &Value) -> String {
    let Some(locks) = table.as_object() else { return "?".into() };
    let words: Vec<String> = locks
        .iter()
        .map(|(name, l)| {
            let holder = l["holder"].as_str().unwrap_or("nobody");
            format!("`{name}` held by {holder}, {} grants, {} acquires", l["grants"], l["acquires"])
        })
        .collect();
    if words.is_empty() {
        "no locks".into()
    } else {
        words.join("; ")
    }
}

fn token(answer: &Value) -> Result<u64, String> {
    answer["token"].as_u64().ok_or(format!("a grant without a token: {answer}"))
}

fn at(answer: &Value) -> Result<u64, String> {
    answer["at_us"].as_u64().ok_or(format!("an answer without a time: {answer}"))
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
