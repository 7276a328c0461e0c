//! Applications in the simulator: what runs on top of each simulated process in place of the
//! recording workload's filler casts, so that an application built on the toolkit (a
//! replicated map, a lock service) is tested over the same seeded network, faults and checker
//! as the stacks below it.
//!
//! The application decides what to cast and send ([`AppCx::cast`], [`AppCx::send`]) when it is
//! given a turn ([`Application::act`], at the times the workload would cast) and when it is
//! told what happened (deliveries, views, state transfer). Its messages travel behind the
//! workload's header, so every cast is still numbered, recorded in the history and checked;
//! the application is given its own bytes back. Casts and sends made while a view change is
//! under way are held and go out in the next view, as the real `Group` holds them.

use std::sync::Arc;

use bytes::Bytes;

use crate::ids::{Endpoint, View};
use crate::level::Level;
use crate::rng::Rng;
use crate::time::Time;

/// An application run on each simulated process (see the [module docs](self)).
pub trait Application {
    /// A turn to act, at one of the times the workload draws for casts; the process is in a
    /// view and not blocked.
    fn act(&mut self, cx: &mut AppCx<'_>);

    /// A message delivered: a cast at `level` (`Some`), or a send to this process (`None`).
    fn deliver(&mut self, from: Endpoint, level: Option<Level>, data: Bytes, cx: &mut AppCx<'_>);

    /// A view installed (`cx.view` is the new view).
    fn view(&mut self, previous: Option<&View>, cx: &mut AppCx<'_>);

    /// A view change is under way: what is cast from now on goes out in the next view.
    fn block(&mut self, _cx: &mut AppCx<'_>) {}

    /// State transfer: the state to give the members joining the view just installed.
    fn snapshot(&mut self, cx: &mut AppCx<'_>) -> Bytes;

    /// State transfer: the state this process was given as it joined `cx.view`.
    fn install(&mut self, state: Bytes, cx: &mut AppCx<'_>);

    /// The process crashed (`crashed`) or exited the group, at `now`: nothing more will come.
    fn stop(&mut self, _now: Time, _crashed: bool) {}
}

/// Starts the application of each process incarnation.
pub trait AppFactory {
    /// The application of `me`, started at `now`.
    fn start(&mut self, me: Endpoint, now: Time) -> Box<dyn Application>;
}

impl<F: FnMut(Endpoint, Time) -> Box<dyn Application>> AppFactory for F {
    fn start(&mut self, me: Endpoint, now: Time) -> Box<dyn Application> {
        self(me, now)
    }
}

/// What an application asked for.
#[derive(Clone, Debug)]
pub(crate) enum AppAction {
    Cast { level: Level, data: Bytes },
    Send { to: Endpoint, data: Bytes },
}

/// What an application is given with every call: the time, who it is, its view, a random
/// source drawn from the seed, and where its casts and sends go.
#[derive(Debug)]
pub struct AppCx<'a> {
    pub now: Time,
    pub me: Endpoint,
    /// The view the application is in (the new one, in [`Application::view`]).
    pub view: &'a Arc<View>,
    /// The levels the stack offers: a cast at another is refused.
    pub offered: &'a [Level],
    pub rng: &'a mut Rng,
    pub(crate) out: &'a mut Vec<AppAction>,
}

impl AppCx<'_> {
    /// Casts `data` to the group at `level`.
    pub fn cast(&mut self, level: Level, data: impl Into<Bytes>) {
        self.out.push(AppAction::Cast { level, data: data.into() });
    }

    /// Sends `data` to member `to` (dropped, as by a real group, if `to` is not in the view
    /// the send goes out in).
    pub fn send(&mut self, to: Endpoint, data: impl Into<Bytes>) {
        self.out.push(AppAction::Send { to, data: data.into() });
    }
}
