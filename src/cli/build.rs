//! `b9 build`: build every artifact of checked build files.

use b9::{BuildOptions, CancelToken, Events, Plan, Session};

use crate::cli::args::EventFormat;
use crate::cli::{fail, Failure};

/// Builds the plan; a failed artifact fails the command with exit code 1.
/// `no_cache` runs every guest step (`--no-cache`); `events` writes the
/// build's events on stdout (`--events`); `cancel` stops it.
pub fn build(
    session: &Session,
    plan: &Plan,
    no_cache: bool,
    events: Option<EventFormat>,
    cancel: &CancelToken,
) -> Result<(), Failure> {
    let mut options = BuildOptions::new();
    options.no_cache = no_cache;
    options.cancel = cancel.clone();
    options.events = events_to_stdout(events)?;
    Ok(session.build(plan, &options)?)
}

/// Where `--events FORMAT` sends the build's events (nowhere without it).
/// The lines go to a copy of the stdout descriptor: the command holds the
/// lock of `std::io::stdout`, and artifacts report from other threads.
fn events_to_stdout(format: Option<EventFormat>) -> Result<Events, Failure> {
    Ok(match format {
        Some(EventFormat::Json) => {
            use std::os::fd::AsFd;
            let out = std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| fail(format!("cannot write events on stdout: {e}")))?;
            b9::events::json::json_lines(std::fs::File::from(out))
        }
        None => Events::default(),
    })
}
