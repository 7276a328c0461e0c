//! The replicated state machine in the simulator, under every fault, with the bank of
//! `horus demo rsm` as its machine: transfers that succeed or fail by the order they are
//! applied in. Checked: no replica ever holds money that was not deposited; the replicas of
//! the members that end in one view applied the same commands in the same order and hold
//! the same accounts; and a transfer answered to a member that lives was applied by all.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use horus::core::sim::Application;
use horus::core::Time;
use horus::replica::{Observer, SimReplica, Ticket, Workload};
use horus::{Endpoint, View, ViewId};
use horus_apps::bank::{Bank, BankCommand, BankReply};
use horus_apps::rsm::{RsmReplica, RsmRequest};
use horus_apps::simtest;

type Replica = RsmReplica<Bank>;

#[derive(Default)]
struct Oracle {
    /// Each member's last view, commands applied and digest, and accounts.
    last: BTreeMap<Endpoint, (ViewId, u64, u64, BTreeMap<String, u64>)>,
    stopped: BTreeSet<Endpoint>,
    answered: u64,
    refused: u64,
    problems: Vec<String>,
}

#[derive(Clone)]
struct Watch(Rc<RefCell<Oracle>>);

impl Observer<Replica> for Watch {
    fn answered(&mut self, _: Time, _: Endpoint, _: Ticket, reply: &Result<BankReply, String>) {
        let mut o = self.0.borrow_mut();
        match reply {
            Ok(Ok(_)) => o.answered += 1,
            Ok(Err(_)) => o.refused += 1,
            Err(e) => o.problems.push(format!("a command failed: {e}")),
        }
    }
    fn after(&mut self, now: Time, me: Endpoint, view: &View, r: &Replica) {
        let bank = r.machine();
        let mut o = self.0.borrow_mut();
        if bank.total() != bank.deposited() {
            let p =
                format!("{me} at {now}: holds {}, deposited {}", bank.total(), bank.deposited());
            o.problems.push(p);
        }
        if r.malformed() != (0, 0) {
            o.problems.push(format!("{me}: malformed {:?}", r.malformed()));
        }
        o.last.insert(me, (view.id, r.applied(), r.digest(), bank.accounts().clone()));
    }
    fn stopped(&mut self, _: Time, me: Endpoint, _: bool, _: &Replica) {
        self.0.borrow_mut().stopped.insert(me);
    }
}

/// A member's first turn deposits 500 in its own account; later turns move random amounts
/// between five accounts, so that many transfers are refused and which depends on the order.
fn workload() -> Workload<Replica> {
    let mut turns = 0u64;
    Box::new(move |rng, _, me| {
        turns += 1;
        let account = |n: u64| format!("a{}", n % 5);
        let command = if turns == 1 {
            BankCommand::Deposit { account: account(me.node), amount: 500 }
        } else if rng.index(10) == 0 {
            BankCommand::Balance { account: account(rng.index(5) as u64) }
        } else {
            BankCommand::Transfer {
                from: account(rng.index(5) as u64),
                to: account(rng.index(5) as u64),
                amount: 1 + rng.index(400) as u64,
            }
        };
        Some(RsmRequest::Execute(command))
    })
}

#[test]
fn bank_replicas_agree_and_never_make_money_under_every_fault() {
    let plan = simtest::plan("vsync");
    let (mut ended, mut answered, mut refused) = (0, 0, 0);
    for seed in 0..200 {
        let oracle = Rc::new(RefCell::new(Oracle::default()));
        let watch = Watch(oracle.clone());
        let mut apps = |me: Endpoint, _: Time| -> Box<dyn Application> {
            Box::new(SimReplica::new(
                me,
                RsmReplica::new(Bank::default()),
                workload(),
                watch.clone(),
            ))
        };
        simtest::run(&plan, &simtest::faulty(seed, 5, 20), &mut apps)
            .unwrap_or_else(|e| panic!("{e}"));
        let o = oracle.borrow();
        assert!(o.problems.is_empty(), "seed {seed}: {:?}", o.problems);
        answered += o.answered;
        refused += o.refused;
        let survivors: Vec<_> = o.last.iter().filter(|(e, _)| !o.stopped.contains(e)).collect();
        let Some((first_e, first)) = survivors.first() else { continue };
        ended += 1;
        for (e, last) in &survivors[1..] {
            assert_eq!(last.0, first.0, "seed {seed}: {e} and {first_e} end in different views");
            assert_eq!(
                (last.1, last.2, &last.3),
                (first.1, first.2, &first.3),
                "seed {seed}: {e}'s bank differs from {first_e}'s"
            );
        }
    }
    assert!(ended > 50 && answered > 1000 && refused > 100, "{ended} {answered} {refused}");
}
