//! `horus demo chat`: a group chat. Three members chat; one is killed with SIGKILL midway and
//! the survivors see it leave, failed; its node restarts and is given the recent transcript
//! by state transfer; at the end every member holds the same transcript, in the same order.

use std::time::{Duration, Instant};

use horus_apps::chat::demo_nick;
use serde_json::{json, Value};

use super::{list, step, Demo};

/// A member's transcript: the next seqno, where its own entries start (if it was given a
/// state), and the entries it keeps.
#[derive(Debug)]
struct Transcript {
    next: u64,
    given_up_to: Option<u64>,
    lines: Vec<(u64, String)>,
}

impl Transcript {
    fn has(&self, text: &str) -> bool {
        self.lines.iter().any(|(_, l)| l == text)
    }

    /// Whether two members hold the same transcript (whatever they were given).
    fn same(&self, other: &Transcript) -> bool {
        (self.next, &self.lines) == (other.next, &other.lines)
    }

    /// The entries numbered below `seqno`.
    fn before(&self, seqno: u64) -> Vec<(u64, String)> {
        self.lines.iter().filter(|(s, _)| *s < seqno).cloned().collect()
    }
}

fn transcript(demo: &mut Demo, i: usize) -> Result<Transcript, String> {
    let v = demo.members[i].request("transcript", Value::Null, step())?;
    let lines = v["lines"]
        .as_array()
        .ok_or("a transcript without lines")?
        .iter()
        .map(|l| (l[0].as_u64().unwrap_or(0), l[1].as_str().unwrap_or("?").to_owned()))
        .collect();
    Ok(Transcript {
        next: v["next"].as_u64().unwrap_or(0),
        given_up_to: v["given_up_to"].as_u64(),
        lines,
    })
}

/// Asks every member for its transcript until `done` holds of all of them.
fn wait_transcripts(
    demo: &mut Demo,
    what: &str,
    done: impl Fn(&[Transcript]) -> bool,
) -> Result<Vec<Transcript>, String> {
    let deadline = step();
    loop {
        let all =
            (0..demo.members.len()).map(|i| transcript(demo, i)).collect::<Result<Vec<_>, _>>()?;
        if done(&all) {
            return Ok(all);
        }
        if Instant::now() > deadline {
            return Err(format!("the members did not {what} in time"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every member says its scripted line at once; waits for every answer.
fn chat_round(demo: &mut Demo, lines: &[&str]) -> Result<(), String> {
    let mut asked = Vec::new();
    for (i, m) in demo.members.iter_mut().enumerate() {
        let text = lines[i % lines.len()];
        asked.push((i, m.ask("say", json!({ "text": text }))?));
    }
    for (i, id) in asked {
        demo.members[i].answer(id, step())?;
    }
    Ok(())
}

fn nick(demo: &Demo, i: usize) -> String {
    demo_nick(demo.members[i].endpoint.node)
}

fn show(lines: &[(u64, String)]) {
    for (s, l) in lines {
        say!("   {s:>3}  {l}");
    }
}

pub fn run(demo: &mut Demo, n: u64) -> Result<String, String> {
    demo.form(n)?;
    let nicks: Vec<String> = (0..demo.members.len()).map(|i| nick(demo, i)).collect();
    wait_transcripts(demo, "announce everyone", |all| {
        all.iter().all(|t| nicks.iter().all(|n| t.has(&format!("* {n} joined"))))
    })?;
    say!("   each was announced as it joined: {}", nicks.join(", "));

    say!("\n2. Everyone says a line at once; the lines are ordered, one order for all.");
    chat_round(
        demo,
        &["hi all, shall we ship on friday?", "friday works for me", "I'll write the notes"],
    )?;
    chat_round(demo, &["great", "ok", "done by thursday then"])?;
    let all = wait_transcripts(demo, "deliver every line", |all| {
        all.windows(2).all(|w| w[0].same(&w[1]))
    })?;
    say!("   the transcript, equal at {}:", list(&demo.endpoints()));
    show(&all[0].lines);

    let last = demo.members.len() - 1;
    let victim_nick = nick(demo, last);
    say!("\n3. {victim_nick} is killed midway, with lines in flight.");
    let mut asked = Vec::new();
    for (i, m) in demo.members.iter_mut().enumerate().take(last) {
        asked.push((i, m.ask("say", json!({ "text": format!("still there, {victim_nick}?") }))?));
    }
    let (victim, _) = demo.kill(last)?;
    for (i, id) in asked {
        demo.members[i].answer(id, step())?;
    }
    let failed = format!("* {victim_nick} left (failed)");
    let all = wait_transcripts(demo, "see the killed member leave", |all| {
        all.iter().all(|t| t.has(&failed)) && all.windows(2).all(|w| w[0].same(&w[1]))
    })?;
    say!("   the survivors saw \"{failed}\"; their transcripts are equal, ending:");
    show(&all[0].lines[all[0].lines.len().saturating_sub(4)..]);

    say!(
        "\n4. Node {} restarts; state transfer gives it the recent transcript.",
        victim.endpoint.node
    );
    let joiner = demo.restart(victim.endpoint)?;
    let newcomer = demo.members[joiner].endpoint;
    let all = wait_transcripts(demo, "announce the newcomer", |all| {
        let joined = format!("* {victim_nick} joined");
        all.iter().all(|t| t.lines.iter().filter(|(_, l)| *l == joined).count() >= 2)
            && all[joiner].given_up_to.is_some()
    })?;
    let upto = all[joiner].given_up_to.expect("waited for it");
    let given = all[joiner].before(upto);
    for (i, t) in all.iter().enumerate() {
        if i != joiner && t.before(upto) != given {
            return Err(format!(
                "{newcomer} was given {given:?}, while {} holds {:?}",
                demo.members[i].endpoint,
                t.before(upto)
            ));
        }
    }
    say!(
        "   {newcomer} was given the {} entries numbered below {upto}, equal to {}'s:",
        given.len(),
        list(&demo.endpoints().into_iter().filter(|e| *e != newcomer).collect::<Vec<_>>())
    );
    show(&given[given.len().saturating_sub(4)..]);

    say!("\n5. Everyone says a line again, the newcomer too.");
    chat_round(demo, &["welcome back", "hello again", "sorry, I crashed"])?;
    say!("   every line was answered, once in the order at its sayer.");

    say!("\n6. Self-check: every member holds the same transcript, in the same order.");
    let all = wait_transcripts(demo, "agree on the transcript", |all| {
        let next = all[0].next;
        all.iter().all(|t| t.next == next)
            && all.iter().all(|t| {
                let from = t.lines.first().map_or(next, |l| l.0);
                all[0].lines.iter().filter(|(s, _)| *s >= from).eq(t.lines.iter())
            })
    })?;
    for (i, t) in all.iter().enumerate() {
        say!(
            "   {} ({}): {} entries kept, numbered {}..{}",
            demo.members[i].endpoint,
            nicks.get(i).map_or("?", String::as_str),
            t.lines.len(),
            t.lines.first().map_or(0, |l| l.0),
            t.next - 1
        );
    }
    let entries = all[0].next - 1;
    let members = list(&demo.endpoints());
    let counters: Vec<Value> = (0..demo.members.len())
        .map(|i| demo.members[i].request("counters", Value::Null, step()))
        .collect::<Result<_, _>>()?;
    if counters.iter().any(|c| c != &json!({"malformed": 0, "bad_states": 0})) {
        return Err(format!("messages or states were dropped: {counters:?}"));
    }

    say_part!("\nThe members say goodbye and leave:");
    while demo.members.len() > 1 {
        let mut m = demo.members.pop().expect("more than one");
        m.request("bye", Value::Null, step())?;
        m.leave(step())?;
        say_part!(" {}", m.endpoint);
    }
    say!("");
    let alone = nick(demo, 0);
    let t = wait_transcripts(demo, "see the others leave", |all| {
        nicks[1..].iter().all(|n| all[0].has(&format!("* {n} left")))
    })?;
    say!("   {alone}, last in the room, saw:");
    show(&t[0].lines[t[0].lines.len().saturating_sub(nicks.len() - 1)..]);
    demo.leave_all()?;
    let checked = demo.check_records()?;
    Ok(format!(
        "demo chat ok: {n} members, {} ({victim_nick}) killed midway and seen to leave (failed), \
         {newcomer} rejoined with the recent transcript; {entries} entries, equal at {members}{checked}",
        victim.endpoint,
    ))
}
