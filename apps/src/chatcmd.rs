//! `horus chat`: a chat room in a terminal, on [`horus_apps::chat`]. Lines typed are said to
//! the room; the transcript is printed as it is delivered, in the one order every member sees;
//! a newcomer is first shown the recent transcript it was given.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use horus::Group;
use horus_apps::chat::{Chat, ChatEvent, DEFAULT_KEEP};
use tokio::sync::mpsc;

const CHAT_HELP: &str = "\
Lines typed are said to everyone in the room; what the room says is printed as it is
delivered, in the same order at every member (your own lines too, in their place). Someone
who joins is shown the recent transcript first. When a member goes, the others see
`* bob left`, or `* bob left (failed)` if it crashed or was cut off.

  text      say `text`
  /who      list who is in the room
  /quit     leave (end of input does the same)
  //text    say `/text`

Examples (in two shells on one host; members find each other by IP multicast on loopback):
  horus chat --name alice
  horus chat --name bob

  horus chat --name carol --group team --keep 500";

/// Join a chat room: lines typed are said to everyone, the transcript is printed.
#[derive(Args, Debug, Clone)]
#[command(after_long_help = CHAT_HELP)]
pub struct ChatArgs {
    /// Your nick, as the others see it (up to 32 characters).
    #[arg(long)]
    name: String,
    /// The room: the group's name.
    #[arg(long, default_value = "chat")]
    group: String,
    /// How many recent entries to keep and give newcomers (every member should agree).
    #[arg(long, default_value_t = DEFAULT_KEEP)]
    keep: usize,
    /// The stack: a preset (`vsync`, `evs`) or a spec with `gms` on top.
    #[arg(long, default_value = horus::DEFAULT_STACK)]
    stack: String,
    /// How long to wait to be let in.
    #[arg(long, default_value = "10s", value_parser = crate::member::parse_duration)]
    join_timeout: Duration,
}

/// What the person typed.
#[derive(Debug, PartialEq, Eq)]
enum Input {
    Say(String),
    Who,
    Quit,
    Help,
    Unknown(String),
}

fn parse(line: &str) -> Option<Input> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return None;
    }
    if let Some(said) = line.strip_prefix("//") {
        return Some(Input::Say(format!("/{said}")));
    }
    let Some(command) = line.strip_prefix('/') else { return Some(Input::Say(line.into())) };
    Some(match command.trim() {
        "who" => Input::Who,
        "quit" | "leave" => Input::Quit,
        "help" => Input::Help,
        other => Input::Unknown(other.into()),
    })
}

pub fn run(args: ChatArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("horus chat: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(chat(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("horus chat: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the sayer task does, in the order typed.
enum Job {
    Say(String),
    Quit,
}

async fn chat(args: ChatArgs) -> Result<(), String> {
    horus_apps::chat::check_nick(&args.name)?;
    let group = Group::builder(&args.group)
        .stack(&args.stack)
        .state_transfer(true)
        .join_timeout(args.join_timeout)
        .join()
        .await
        .map_err(|e| e.to_string())?;
    let me = group.endpoint();
    let (chat, mut events) =
        Chat::start_keeping(group, args.name.clone(), args.keep).map_err(|e| e.to_string())?;
    say!(
        "joined room `{}` as {} ({me}); type a line to say it, /who, /quit, /help",
        args.group,
        args.name
    );

    // Lines are said one after the other, in the order typed; printing goes on meanwhile.
    let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
    let sayer = chat.clone();
    tokio::spawn(async move {
        while let Some(job) = queue.recv().await {
            match job {
                Job::Say(text) => {
                    if let Err(e) = sayer.say(text).await {
                        say!("(not said: {e})");
                    }
                }
                Job::Quit => {
                    if let Err(e) = sayer.leave().await {
                        say!("(leaving: {e})");
                    }
                    return;
                }
            }
        }
    });

    let mut lines = read_stdin();
    let mut quitting = false;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(ChatEvent::Recent(given)) if given.is_empty() => {}
                Some(ChatEvent::Recent(given)) => {
                    say!("-- the last {} entries before you came --", given.len());
                    say!("{}", ChatEvent::Recent(given));
                    say!("--");
                }
                Some(event) => say!("{event}"),
                None => break,
            },
            line = lines.recv(), if !quitting => match line.map(|l| parse(&l)) {
                None | Some(Some(Input::Quit)) => {
                    quitting = true;
                    let _ = jobs.send(Job::Quit);
                }
                Some(None) => {}
                Some(Some(Input::Say(text))) => {
                    if let Err(e) = horus_apps::chat::check_text(&text) {
                        say!("(not said: {e})");
                    } else {
                        let _ = jobs.send(Job::Say(text));
                    }
                }
                Some(Some(Input::Who)) => match chat.who().await {
                    Ok(who) => {
                        let names: Vec<String> = who
                            .iter()
                            .map(|(e, nick)| match nick {
                                Some(n) => format!("{n} ({e})"),
                                None => format!("{e} (not announced yet)"),
                            })
                            .collect();
                        say!("in the room ({}): {}", who.len(), names.join(", "));
                    }
                    Err(e) => say!("(who: {e})"),
                },
                Some(Some(Input::Help)) => say!("{CHAT_HELP}"),
                Some(Some(Input::Unknown(c))) => {
                    say!("(no command /{c}: /who, /quit, /help; //text says /text)")
                }
            },
        }
    }
    if quitting {
        say!("you left the room");
        Ok(())
    } else {
        Err("excluded from the room (a failure or a partition): join again".into())
    }
}

/// Reads stdin on a thread of its own; the channel closes at the end of input.
fn read_stdin() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_said_and_slashes_are_commands() {
        assert_eq!(parse("hi all"), Some(Input::Say("hi all".into())));
        assert_eq!(parse("/who"), Some(Input::Who));
        assert_eq!(parse("/quit"), Some(Input::Quit));
        assert_eq!(parse("//who"), Some(Input::Say("/who".into())));
        assert_eq!(parse("/nope"), Some(Input::Unknown("nope".into())));
        assert_eq!(parse("   "), None);
        assert_eq!(parse("x\r"), Some(Input::Say("x".into())));
    }
}
