//! Stack building, routing, framing and timers, with small test layers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use horus_core::spec::Args;
use horus_core::*;
use quickcheck::quickcheck;

/// Pushes a one-byte tag on every cast and send going down, checks and pops it coming up.
#[derive(Debug)]
struct Tag {
    tag: u8,
    bad_header: u64,
}

impl Layer for Tag {
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        match ev {
            Up::Cast { from, mut msg } => match msg.pop::<u8>() {
                Ok(t) if t == self.tag => cx.up(Up::Cast { from, msg }),
                _ => self.bad_header += 1,
            },
            Up::Send { from, mut msg } => match msg.pop::<u8>() {
                Ok(t) if t == self.tag => cx.up(Up::Send { from, msg }),
                _ => self.bad_header += 1,
            },
            ev => cx.up(ev),
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Cast(mut msg) => {
                msg.push(&self.tag);
                cx.down(Down::Cast(msg));
            }
            Down::Send(to, mut msg) => {
                msg.push(&self.tag);
                cx.down(Down::Send(to, msg));
            }
            ev => cx.down(ev),
        }
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        report("bad_header", self.bad_header);
    }
}

fn tag(args: &mut Args<'_>, _: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    let tag = args.u64("tag", 7)?;
    Ok(Box::new(Tag { tag: tag as u8, bad_header: 0 }))
}

/// Sets a timer at `at` on init; when it fires, reports a suspicion of nobody to the
/// application, and re-arms at the same instant if `rearm` is set.
#[derive(Debug)]
struct Alarm {
    at: Duration,
    rearm: bool,
}

impl Layer for Alarm {
    fn init(&mut self, cx: &mut Cx<'_>) {
        let at = Time::ZERO + self.at;
        cx.timer_at(at, 1u64);
    }
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        cx.up(ev)
    }
    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        cx.down(ev)
    }
    fn timer(&mut self, token: Token, cx: &mut Cx<'_>) {
        assert_eq!(token, Token(1));
        cx.up(Up::Suspect(vec![]));
        if self.rearm {
            let now = cx.now();
            cx.timer_at(now, 1u64);
        }
    }
}

fn alarm(args: &mut Args<'_>, _: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    Ok(Box::new(Alarm {
        at: args.duration("at", Duration::from_millis(10))?,
        rearm: args.bool("rearm", false)?,
    }))
}

fn registry() -> Registry {
    let mut r = Registry::new();
    let info = |name, needs, gives, build| LayerInfo {
        name,
        doc: "test layer",
        needs,
        gives,
        hides: if name == "merger" { Props::STABLE } else { Props::NONE },
        build,
    };
    r.add_layer(info("outer", Props::CAST, Props::NONE, tag));
    r.add_layer(info("inner", Props::CAST, Props::NONE, tag));
    r.add_layer(info("alarm", Props::NONE, Props::NONE, alarm));
    r.add_layer(info("rel", Props::CAST, Props::RELIABLE_CAST, tag));
    r.add_layer(info("rel2", Props::CAST, Props::RELIABLE_CAST, tag));
    r.add_layer(info("tot", Props::RELIABLE_CAST, Props::TOTAL, tag));
    r.add_layer(info("stab", Props::RELIABLE_CAST, Props::STABLE, tag));
    r.add_layer(info("merger", Props::RELIABLE_CAST, Props::NONE, tag));
    r.add_layer(info("usestab", Props::STABLE, Props::NONE, tag));
    r.add_preset("ordered-test", "tot:rel", "total over reliable");
    r
}

fn e(n: u64) -> Endpoint {
    Endpoint::new(n, 0)
}

fn pair(spec: &str) -> (Stack, Stack) {
    let plan = registry().plan(spec).unwrap();
    let view = Arc::new(View::initial(vec![e(0), e(1)]));
    let g = GroupName::new("g");
    let mk = |n| {
        plan.build(ViewState::new(g.clone(), e(n), view.clone()).unwrap(), Rng::new(n), Time::ZERO)
            .unwrap()
    };
    (mk(0), mk(1))
}

fn drain_up(s: &mut Stack) -> Vec<Up> {
    std::iter::from_fn(|| s.poll_up()).collect()
}

#[test]
fn unknown_layer_is_named_with_the_known_ones() {
    let err = registry().plan("outer:mnakk").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StackError::UnknownLayer { ref name, .. } if name == "mnakk"), "{text}");
    assert!(
        text.contains("known layers: alarm, inner, merger, outer, rel, rel2, stab, tot, usestab"),
        "{text}"
    );
    assert!(text.contains("presets: none, ordered-test"), "{text}");
}

#[test]
fn missing_layer_error_names_the_layer_that_gives_it() {
    let err = registry().plan("tot").unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer `tot` needs reliable FIFO multicast below it, and no layer below gives it; add one of `rel`, `rel2` under `tot`"
    );
}

#[test]
fn misplaced_layer_error_says_to_move_it_below() {
    let err = registry().plan("rel:tot").unwrap_err();
    assert!(
        matches!(err, StackError::Misplaced { ref layer, ref provider, .. } if layer == "tot" && provider == "rel")
    );
    assert!(err.to_string().contains("move `rel` below `tot`"));
}

#[test]
fn a_layer_that_hides_a_property_between_its_giver_and_its_user_is_refused() {
    let err = registry().plan("usestab:merger:stab:rel").unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer `usestab` needs stability, but `merger` between them hides it; put `usestab` below `merger`"
    );
    assert!(registry().plan("merger:usestab:stab:rel").is_ok());
}

#[test]
fn a_layer_named_twice_is_refused() {
    assert_eq!(
        registry().plan("outer:inner:outer").unwrap_err(),
        StackError::Duplicate("outer".into())
    );
}

#[test]
fn syntax_errors_say_what_is_wrong() {
    for (spec, says) in [
        ("outer::inner", "has no name"),
        ("outer(tag=1", "unclosed"),
        ("outer(tag)", "not key=value"),
        ("outer(tag=1,tag=2)", "given twice"),
        ("outer((tag=1))", "parentheses"),
        ("none(x=1)", "takes no parameters"),
    ] {
        let err = registry().plan(spec).unwrap_err();
        assert!(matches!(err, StackError::Syntax { .. }), "{spec}: {err}");
        assert!(err.to_string().contains(says), "{spec}: {err}");
    }
}

#[test]
fn bad_parameters_are_refused_when_the_spec_is_checked() {
    let err = registry().plan("outer(tag=seven)").unwrap_err();
    assert_eq!(err.to_string(), "layer `outer`, parameter `tag`: `seven` is not a whole number");
    let err = registry().plan("alarm(at=soon)").unwrap_err();
    assert!(err.to_string().contains("not a duration"), "{err}");
    let err = registry().plan("outer(tagg=1)").unwrap_err();
    assert_eq!(err.to_string(), "layer `outer`, parameter `tagg`: no such parameter");
}

#[test]
fn presets_expand_in_place_and_set_the_levels() {
    let plan = registry().plan("outer:ordered-test").unwrap();
    assert_eq!(plan.layer_names(), vec!["outer", "tot", "rel"]);
    assert_eq!(plan.levels(), vec![Level::Fifo, Level::Total]);
    assert_eq!(plan.spec(), "outer:tot:rel");
    let none = registry().plan("none").unwrap();
    assert!(none.layer_names().is_empty() && none.levels().is_empty());
    assert_eq!(registry().plan("").unwrap().spec(), "none");
}

#[test]
fn a_cast_crosses_both_stacks_with_headers_in_layer_order() {
    let (mut a, mut b) = pair("outer(tag=1):inner(tag=2)");
    a.down(Time(5), Down::Cast(Message::new(Bytes::from_static(b"hi"))));
    let t = a.poll_transmit().expect("one datagram");
    assert_eq!(t.dest, Dest::Cast);
    // Transport header, then the bottom layer's tag, then the top layer's, then the payload.
    let wire = t.msg.to_bytes();
    assert_eq!(&wire[wire.len() - 4..], &[2, 1, b'h', b'i']);
    assert!(a.poll_transmit().is_none());
    // The sender delivers its own cast locally.
    match drain_up(&mut a).as_slice() {
        [Up::Cast { from: Rank(0), msg }] => assert_eq!(msg.payload(), &b"hi"[..]),
        other => panic!("{other:?}"),
    }
    b.receive(Time(6), wire);
    match drain_up(&mut b).as_slice() {
        [Up::Cast { from: Rank(0), msg }] => assert_eq!(msg.payload(), &b"hi"[..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sends_go_to_one_member_and_to_self_locally() {
    let (mut a, mut b) = pair("outer");
    a.down(Time(1), Down::Send(Rank(1), Message::new(Bytes::from_static(b"x"))));
    let t = a.poll_transmit().unwrap();
    assert_eq!(t.dest, Dest::Member(e(1)));
    b.receive(Time(2), t.msg.to_bytes());
    assert!(matches!(drain_up(&mut b).as_slice(), [Up::Send { from: Rank(0), .. }]));
    a.down(Time(3), Down::Send(Rank(0), Message::new(Bytes::from_static(b"me"))));
    assert!(a.poll_transmit().is_none());
    assert!(matches!(drain_up(&mut a).as_slice(), [Up::Send { from: Rank(0), .. }]));
    a.down(Time(4), Down::Send(Rank(9), Message::control()));
    assert_eq!(a.wire_counters().bad_rank, 1);
}

#[test]
fn foreign_and_malformed_datagrams_are_dropped_and_counted() {
    let (mut a, mut b) = pair("outer");
    // Another view of the same group.
    let other_view =
        Arc::new(View { id: ViewId::new(1, e(0)), members: vec![e(0), e(1)], prev: vec![] });
    let plan = registry().plan("outer").unwrap();
    let mut c = plan
        .build(
            ViewState::new(GroupName::new("g"), e(0), other_view).unwrap(),
            Rng::new(0),
            Time::ZERO,
        )
        .unwrap();
    c.down(Time(1), Down::Cast(Message::control()));
    b.receive(Time(2), c.poll_transmit().unwrap().msg.to_bytes());
    // Another group.
    let view = Arc::new(View::initial(vec![e(0), e(1)]));
    let mut d = plan
        .build(ViewState::new(GroupName::new("h"), e(0), view).unwrap(), Rng::new(0), Time::ZERO)
        .unwrap();
    d.down(Time(1), Down::Cast(Message::control()));
    b.receive(Time(3), d.poll_transmit().unwrap().msg.to_bytes());
    // Garbage, and an empty datagram.
    b.receive(Time(4), Bytes::from_static(&[0xff, 0xff, 0xff]));
    b.receive(Time(4), Bytes::new());
    // Our own cast, looped back by the network.
    a.down(Time(5), Down::Cast(Message::control()));
    let own = a.poll_transmit().unwrap().msg.to_bytes();
    a.receive(Time(6), own);
    let wb = b.wire_counters();
    assert_eq!((wb.other_view, wb.other_group, wb.bad_header), (1, 1, 2));
    assert_eq!(a.wire_counters().from_self, 1);
    assert!(drain_up(&mut b).is_empty());
}

#[test]
fn a_layer_counts_headers_it_cannot_read() {
    let (mut a, _) = pair("outer(tag=1)");
    let (_, mut b) = pair("outer(tag=2)");
    a.down(Time(1), Down::Cast(Message::control()));
    b.receive(Time(2), a.poll_transmit().unwrap().msg.to_bytes());
    assert!(drain_up(&mut b).is_empty());
    assert!(b.counters().contains(&("outer", "bad_header", 1)));
}

#[test]
fn timers_fire_when_due_and_not_before() {
    let (mut a, _) = pair("alarm(at=10ms)");
    assert_eq!(a.poll_timeout(), Some(Time::from_millis(10)));
    a.on_timeout(Time::from_millis(5));
    assert!(drain_up(&mut a).is_empty());
    a.on_timeout(Time::from_millis(10));
    assert!(matches!(drain_up(&mut a).as_slice(), [Up::Suspect(_)]));
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn a_timer_rearmed_at_now_waits_for_the_next_call() {
    let (mut a, _) = pair("alarm(at=1ms,rearm=true)");
    a.on_timeout(Time::from_millis(1));
    assert_eq!(drain_up(&mut a).len(), 1);
    assert_eq!(a.poll_timeout(), Some(Time::from_millis(1)));
    a.on_timeout(Time::from_millis(1));
    assert_eq!(drain_up(&mut a).len(), 1);
}

#[test]
fn leaving_without_membership_exits_and_stops_the_stack() {
    let (mut a, _) = pair("outer:alarm");
    a.down(Time(1), Down::Leave);
    assert!(matches!(drain_up(&mut a).as_slice(), [Up::Exit]));
    assert!(a.has_exited());
    assert_eq!(a.poll_timeout(), None);
    a.down(Time(2), Down::Cast(Message::control()));
    assert!(a.poll_transmit().is_none());
}

#[test]
fn building_for_a_view_without_us_is_an_error() {
    let plan = registry().plan("outer").unwrap();
    let view = Arc::new(View::initial(vec![e(0)]));
    let vs = ViewState { group: GroupName::new("g"), endpoint: e(5), view, rank: Rank(0) };
    assert_eq!(
        plan.build(vs, Rng::new(0), Time::ZERO).unwrap_err(),
        StackError::NotMember { endpoint: e(5) }
    );
}

quickcheck! {
    fn garbage_datagrams_never_panic_a_stack(datagrams: Vec<Vec<u8>>) -> bool {
        let (_, mut b) = pair("outer:inner");
        for d in datagrams {
            b.receive(Time(1), Bytes::from(d));
        }
        drain_up(&mut b).is_empty()
    }
}

#[test]
fn block_and_flush_come_back_up_behind_what_went_before() {
    let (mut a, _) = pair("outer:inner");
    a.down(Time(1), Down::Cast(Message::control()));
    a.down(Time(1), Down::Block);
    a.down(Time(1), Down::Flush);
    let names: Vec<&str> = drain_up(&mut a).iter().map(|e| e.name()).collect();
    assert_eq!(names, vec!["deliver-cast", "block-ok", "flush"]);
}

#[test]
fn a_default_parameter_fills_in_what_the_spec_left_out_and_nothing_else() {
    let with = |spec: &str| {
        registry()
            .plan(spec)
            .unwrap()
            .with_default_param("alarm", "at", "20ms")
            .with_default_param("nosuch", "at", "1ms")
            .spec()
    };
    assert_eq!(with("alarm:outer"), "alarm(at=20ms):outer");
    assert_eq!(with("alarm(at=5ms):outer"), "alarm(at=5ms):outer");
    assert_eq!(with("alarm(rearm=true)"), "alarm(rearm=true,at=20ms)");
}
