//! Shared by the simulation suites of the layers.

use horus_core::{Cx, Down, Layer, LayerInfo, Level, Props, Up};

/// Claims an ordering and gives none: passes every event, carrying only the level (which the
/// application reads back). What a stack without the real layer does, for tests that show the
/// checker catching it.
#[derive(Debug)]
pub struct LevelOnly;

impl Layer for LevelOnly {
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        match ev {
            Up::Cast { from, mut msg } => {
                if let Ok(level) = msg.pop::<Level>() {
                    msg.set_level(level);
                    cx.up(Up::Cast { from, msg });
                }
            }
            ev => cx.up(ev),
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Cast(mut msg) => {
                let level = msg.level();
                msg.push(&level);
                cx.down(Down::Cast(msg));
            }
            ev => cx.down(ev),
        }
    }
}

/// A stand-in named `name` that claims to give `gives` over reliable multicast.
pub fn claims(name: &'static str, gives: Props) -> LayerInfo {
    LayerInfo {
        name,
        doc: "claims an ordering, passes every event",
        needs: Props::RELIABLE_CAST,
        gives,
        hides: Props::NONE,
        build: |_, _| Ok(Box::new(LevelOnly)),
    }
}
