//! The chat in the simulator, under every fault (crashes, restarts, partitions, pauses,
//! leaves, loss), checked by its oracle:
//! - members that go from one view to the next together append the same entries in the
//!   first view (same lines, same order), and the same announcements at the change;
//! - a joiner's transcript starts with the state it was given, equal to the transcript of
//!   every member that gave it (as those held it at the view's boundary);
//! - every line said by a member that survives is answered, and appears, under the same
//!   seqno, in the transcript of every survivor (that keeps entries that old);
//! - an entry has one seqno everywhere, and nothing malformed is seen.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use horus::core::sim::Application;
use horus::core::Time;
use horus::replica::{Observer, SimReplica, Ticket, Workload};
use horus::{Endpoint, View, ViewId};
use horus_apps::chat::{ChatEvent, ChatReplica, ChatRequest};
use horus_apps::simtest;

/// Entries with their seqnos.
type Numbered = Vec<(u64, ChatEvent)>;

/// What a member appended in a view, and at the change to the next.
type Change<'a> = (&'a [ChatEvent], &'a [ChatEvent]);

/// The entries a member appended in one view.
#[derive(Debug)]
struct Segment {
    view: ViewId,
    /// Appended as the view was installed (the departures).
    boundary: Vec<ChatEvent>,
    /// The transcript right after the install: what members joining this view are given.
    at_install: Vec<(u64, ChatEvent)>,
    /// Appended in the view, from the network.
    lines: Vec<ChatEvent>,
    /// This member was given a state in this view.
    restored: Option<Vec<(u64, ChatEvent)>>,
}

/// What the oracle sees of one member.
#[derive(Debug, Default)]
struct Member {
    /// Every entry it held, by seqno: the state it was given, then what it appended.
    log: BTreeMap<u64, ChatEvent>,
    /// The replica's next seqno when last seen, and its restores.
    next: u64,
    restores: u64,
    segments: Vec<Segment>,
    /// Its lines said, and those answered (by seqno).
    said: BTreeMap<Ticket, String>,
    answered: BTreeMap<Ticket, u64>,
    last_view: Option<ViewId>,
    stopped: bool,
}

#[derive(Default)]
struct Oracle {
    members: BTreeMap<Endpoint, Member>,
    bad: Vec<String>,
    problems: Vec<String>,
}

#[derive(Clone)]
struct Watch(Rc<RefCell<Oracle>>);

impl Observer<ChatReplica> for Watch {
    fn requested(&mut self, _: Time, me: Endpoint, t: Ticket, r: &ChatRequest) {
        if let ChatRequest::Say(text) = r {
            self.0.borrow_mut().members.entry(me).or_default().said.insert(t, text.clone());
        }
    }

    fn answered(&mut self, _: Time, me: Endpoint, t: Ticket, r: &Result<u64, String>) {
        let mut o = self.0.borrow_mut();
        match r {
            Ok(seqno) => {
                let m = o.members.entry(me).or_default();
                if m.said.contains_key(&t) {
                    m.answered.insert(t, *seqno);
                }
            }
            Err(e) => o.bad.push(format!("{me}: request {t} refused: {e}")),
        }
    }

    fn after(&mut self, _: Time, me: Endpoint, view: &View, r: &ChatReplica) {
        let mut o = self.0.borrow_mut();
        let (malformed, bad_states) = r.malformed();
        if malformed + bad_states > 0 {
            o.bad.push(format!("{me}: {malformed} malformed messages, {bad_states} bad states"));
        }
        let m = o.members.entry(me).or_default();
        let recent: Vec<(u64, ChatEvent)> = r.transcript().map(|(s, e)| (s, e.clone())).collect();
        let mut problems = Vec::new();
        if r.restores() > m.restores {
            // A state was given: the transcript is now that state.
            m.restores = r.restores();
            m.next = r.next_seqno();
            m.log = recent.iter().cloned().collect();
            match m.segments.last_mut() {
                Some(seg) if seg.view == view.id && seg.lines.is_empty() => {
                    seg.restored = Some(recent);
                }
                _ => problems.push(format!("{me}: given a state after a message of {}", view.id)),
            }
        } else {
            let added = (r.next_seqno() - m.next.max(1)) as usize;
            m.next = r.next_seqno();
            if added > recent.len() {
                problems.push(format!("{me}: {added} entries appended at once, beyond its keep"));
            }
            let new: Vec<(u64, ChatEvent)> = recent[recent.len().saturating_sub(added)..].to_vec();
            for (s, e) in &new {
                m.log.insert(*s, e.clone());
            }
            let new: Vec<ChatEvent> = new.into_iter().map(|(_, e)| e).collect();
            if m.last_view != Some(view.id) {
                m.segments.push(Segment {
                    view: view.id,
                    boundary: new,
                    at_install: recent,
                    lines: Vec::new(),
                    restored: None,
                });
            } else if let Some(seg) = m.segments.last_mut() {
                seg.lines.extend(new);
            }
        }
        m.last_view = Some(view.id);
        o.problems.extend(problems);
    }

    fn stopped(&mut self, _: Time, me: Endpoint, _: bool, _: &ChatReplica) {
        self.0.borrow_mut().members.entry(me).or_default().stopped = true;
    }
}

/// Lines that name their sayer and number; now and then a goodbye (the member stays on:
/// only the announcement of its departure changes).
fn workload() -> Workload<ChatReplica> {
    let mut n = 0u64;
    Box::new(move |rng, _, me| {
        n += 1;
        if rng.index(40) == 0 {
            return Some(ChatRequest::Bye);
        }
        Some(ChatRequest::Say(format!("{me} says {n}")))
    })
}

/// Counts of what the oracle compared, over all seeds.
#[derive(Debug, Default)]
struct Figures {
    seeds: u64,
    lines_said: usize,
    view_pairs: usize,
    restores: usize,
    givers_compared: usize,
    ended_with_survivors: usize,
}

fn run(stack: &str, seeds: std::ops::Range<u64>, keep: usize) -> Figures {
    let plan = simtest::plan(stack);
    let mut f = Figures::default();
    for seed in seeds {
        f.seeds += 1;
        let oracle = Rc::new(RefCell::new(Oracle::default()));
        let watch = Watch(oracle.clone());
        let mut apps = |me: Endpoint, _: Time| -> Box<dyn Application> {
            let replica = ChatReplica::new(format!("n{}", me.node), keep).expect("a good nick");
            Box::new(SimReplica::new(me, replica, workload(), watch.clone()))
        };
        let config = simtest::faulty(seed, 5, 20);
        simtest::run(&plan, &config, &mut apps).unwrap_or_else(|e| panic!("{e}"));
        let o = oracle.borrow();
        assert!(o.bad.is_empty(), "seed {seed}: {:?}", o.bad);
        assert!(o.problems.is_empty(), "seed {seed}: {:?}", o.problems);

        // Members that go from V to V' together: the same lines in V, the same
        // announcements at V'.
        let mut pairs: BTreeMap<(ViewId, ViewId), (Endpoint, Change<'_>)> = BTreeMap::new();
        for (e, m) in &o.members {
            for w in m.segments.windows(2) {
                let key = (w[0].view, w[1].view);
                let mine = (&w[0].lines[..], &w[1].boundary[..]);
                match pairs.get(&key) {
                    None => {
                        pairs.insert(key, (*e, mine));
                    }
                    Some((other, theirs)) => {
                        f.view_pairs += 1;
                        assert_eq!(
                            *theirs, mine,
                            "seed {seed}: {e} and {other} went from {} to {} with other entries",
                            key.0, key.1
                        );
                    }
                }
            }
        }

        // A joiner starts from the state it was given, equal to its givers' at the boundary.
        let mut at_install: BTreeMap<ViewId, Vec<(Endpoint, &Numbered)>> = BTreeMap::new();
        for (e, m) in &o.members {
            for seg in &m.segments {
                if seg.restored.is_none() {
                    at_install.entry(seg.view).or_default().push((*e, &seg.at_install));
                }
            }
        }
        for (e, m) in &o.members {
            for seg in &m.segments {
                let Some(given) = &seg.restored else { continue };
                f.restores += 1;
                let givers = at_install.get(&seg.view).map_or(&[][..], |g| &g[..]);
                assert!(
                    !givers.is_empty(),
                    "seed {seed}: {e} was given a state in {} by nobody",
                    seg.view
                );
                for (giver, held) in givers {
                    f.givers_compared += 1;
                    assert_eq!(
                        &given, held,
                        "seed {seed}: {e} was given another transcript than {giver} held in {}",
                        seg.view
                    );
                }
            }
        }

        // The survivors, in one view at the end (or none, under the primary-partition policy).
        let Some(survivors) = simtest::survivors(
            seed,
            o.members.iter().filter_map(|(e, m)| match (m.stopped, m.last_view) {
                (false, Some(v)) => Some((*e, v)),
                _ => None,
            }),
        ) else {
            continue;
        };
        f.ended_with_survivors += 1;
        let survivors: BTreeSet<Endpoint> = survivors.into_iter().collect();
        for sayer in &survivors {
            let m = &o.members[sayer];
            f.lines_said += m.said.len();
            for (ticket, text) in &m.said {
                let seqno = *m.answered.get(ticket).unwrap_or_else(|| {
                    panic!("seed {seed}: survivor {sayer}'s line {text:?} was never answered")
                });
                let line = ChatEvent::Line {
                    from: *sayer,
                    nick: format!("n{}", sayer.node),
                    text: text.clone(),
                };
                for s in &survivors {
                    let log = &o.members[s].log;
                    let oldest = log.keys().next().copied().unwrap_or(u64::MAX);
                    if seqno < oldest {
                        continue; // older than what it keeps
                    }
                    assert_eq!(
                        log.get(&seqno),
                        Some(&line),
                        "seed {seed}: {sayer}'s line {text:?} (#{seqno}) is not in {s}'s transcript"
                    );
                }
            }
        }
        // An entry has one seqno everywhere: the survivors' logs agree where they overlap.
        let first = survivors.first().expect("one survivor");
        for s in &survivors {
            let (a, b) = (&o.members[first].log, &o.members[s].log);
            for (seqno, e) in b {
                if let Some(other) = a.get(seqno) {
                    assert_eq!(e, other, "seed {seed}: #{seqno} differs at {first} and {s}");
                }
            }
            assert_eq!(
                o.members[first].next, o.members[s].next,
                "seed {seed}: {first} and {s} end with different transcripts"
            );
        }
    }
    assert!(f.lines_said > 0 && f.view_pairs > 0 && f.restores > 0, "nothing was checked: {f:?}");
    assert!(f.ended_with_survivors > 0, "no run ended with survivors to compare: {f:?}");
    println!("{stack}, keep {keep}: {f:?}");
    f
}

#[test]
fn chat_transcripts_agree_under_every_fault() {
    run("vsync", 0..400, 1 << 20);
}

#[test]
fn a_short_memory_gives_joiners_the_givers_last_entries() {
    run("vsync", 5000..5300, 8);
}
