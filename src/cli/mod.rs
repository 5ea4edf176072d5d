//! The command-line interface: argument parsing, dispatch to one function per
//! command, diagnostics on stderr, and exit codes.
//!
//! Exit codes: 0 success, 1 build failure, 2 usage or build-file error.

pub mod args;
mod build;
pub mod cache;
mod farm;
pub mod image;
pub(crate) mod reformat;
mod repo;
mod run;
mod session;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::content::cloud_config::CloudConfigCheck;
use crate::diag::Diagnostic;
use crate::eval::{check, expand, plan};
use args::{BuildFiles, Cli, Command};

/// The version of the original b9 whose files and CLI this one is compatible with.
pub const COMPAT_VERSION: &str = "4.0.0";

/// Exit status: a build failed.
pub(crate) const EXIT_BUILD: u8 = 1;
/// Exit status: a build file, configuration or usage error.
const EXIT_USAGE: u8 = 2;

/// Runs b9 with the process arguments.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == crate::vm::parent_death::SHIM_ARG)
    {
        return crate::vm::parent_death::exec(&args[2..]);
    }
    let cli = Cli::parse_from(args);
    let mut stdout = std::io::stdout().lock();
    let code = match run(cli, &mut stdout) {
        Ok(()) => 0,
        Err(Failure { diagnostics, code }) => {
            report(&diagnostics);
            code
        }
    };
    ExitCode::from(code)
}

/// Why a command failed: what to print and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// The problems.
    pub diagnostics: Vec<Diagnostic>,
    /// The exit status.
    pub code: u8,
}

impl From<Vec<Diagnostic>> for Failure {
    fn from(diagnostics: Vec<Diagnostic>) -> Failure {
        Failure {
            diagnostics,
            code: EXIT_USAGE,
        }
    }
}

/// A failed command (exit code 1) with one message.
pub(crate) fn fail(e: impl std::fmt::Display) -> Failure {
    Failure {
        diagnostics: vec![Diagnostic::error(e.to_string())],
        code: EXIT_BUILD,
    }
}

/// A usage or input error (exit code 2) with one message.
pub(crate) fn usage(e: impl std::fmt::Display) -> Failure {
    vec![Diagnostic::error(e.to_string())].into()
}

/// Prints diagnostics to stderr with a closing count.
fn report(diagnostics: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diagnostics {
        let _ = writeln!(err, "{d}");
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        let _ = writeln!(
            err,
            "b9: {errors} error{} found",
            if errors == 1 { "" } else { "s" }
        );
    }
}

/// Runs one parsed command line, writing normal output to `out`.
pub fn run(cli: Cli, out: &mut impl Write) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure {
        diagnostics: vec![Diagnostic::error(format!("cannot write output: {e}"))],
        code: if e.kind() == std::io::ErrorKind::BrokenPipe {
            0
        } else {
            1
        },
    };
    match &cli.command {
        Command::Version => writeln!(
            out,
            "{} (compatible with b9 {COMPAT_VERSION})",
            env!("CARGO_PKG_VERSION")
        )
        .map_err(io),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "b9", out);
            Ok(())
        }
        Command::List => match &cli.global.repo {
            Some(id) => repo::list_remote(&session::open(&cli.global)?, id, out),
            None => repo::list(&session::open(&cli.global)?, out),
        },
        Command::Run { image, command } => run::run(&session::open(&cli.global)?, image, command),
        Command::Farm => farm::show(&session::open(&cli.global)?, out).map_err(io),
        Command::Push { name } => repo::push(&session::open(&cli.global)?, name, out),
        Command::Pull { name } => repo::pull(&session::open(&cli.global)?, name.as_deref(), out),
        Command::CleanRemote => repo::clean_remote(&session::open(&cli.global)?, out),
        Command::AddRepo {
            name,
            remote_directory,
            ssh_priv_key_file,
            host,
            port,
            user,
        } => repo::add_repo(
            &cli.global,
            &repo::NewRepo {
                id: name,
                remote_dir: remote_directory,
                key: ssh_priv_key_file,
                host,
                port: *port,
                user,
            },
            out,
        ),
        Command::CleanLocal => repo::clean_local(&session::open(&cli.global)?, out),
        Command::Image { command } => {
            let started = session::start_time().map_err(Failure::from)?;
            image::run(command, &cli.global.config, started, out)
        }
        Command::Reformat { files, .. } => reformat::reformat(files, out).map_err(Failure::from),
        Command::Build {
            files,
            no_cache,
            events,
        } => {
            let session = session::open(&cli.global)?;
            let (instances, warnings) = evaluate(&session, files, true)?;
            report(&warnings);
            let events = build::events(*events, &session, &warnings)?;
            build::build(&session, &instances, *no_cache, events)
        }
        Command::Cache { command } => cache::run(command, out),
        Command::Check(files) => {
            let session = session::open(&cli.global)?;
            // Each instance is checked and dropped: none is kept.
            let mut count = 0usize;
            let warnings = evaluate_into(&session, files, true, &mut |_| count += 1)?;
            report(&warnings);
            writeln!(
                out,
                "ok: {} artifact instance{} in {} build file{}",
                count,
                if count == 1 { "" } else { "s" },
                files.files.len(),
                if files.files.len() == 1 { "" } else { "s" }
            )
            .map_err(io)
        }
        Command::Show { files, json } => {
            let session = session::open(&cli.global)?;
            let (instances, warnings) = evaluate(&session, files, false)?;
            report(&warnings);
            let entries = plan::plan(&instances, &session.build_id);
            let steps = cache::show(&session, &instances);
            let text = if *json {
                let value = serde_json::json!({
                    "build_id": session.build_id,
                    "instances": entries,
                    "step_cache": steps.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                });
                serde_json::to_string_pretty(&value)
                    .map(|s| s + "\n")
                    .unwrap_or_default()
            } else {
                plan::render_text(&entries) + &cache::render_show(&steps)
            };
            out.write_all(text.as_bytes()).map_err(io)
        }
    }
}

/// Loads config and build files, expands them, and (with `checks`) runs the
/// static checks. Errors fail; warnings are returned.
fn evaluate(
    session: &session::Session,
    files: &BuildFiles,
    checks: bool,
) -> Result<(Vec<expand::Instance>, Vec<Diagnostic>), Failure> {
    let mut instances = Vec::new();
    let warnings = evaluate_into(session, files, checks, &mut |inst| instances.push(inst))?;
    Ok((instances, warnings))
}

/// [`evaluate`], handing each instance to `keep` once it is expanded and
/// checked.
fn evaluate_into(
    session: &session::Session,
    files: &BuildFiles,
    checks: bool,
    keep: &mut dyn FnMut(expand::Instance),
) -> Result<Vec<Diagnostic>, Failure> {
    for n in &session.notices {
        eprintln!("{n}");
    }
    report(&session.warnings);
    let parsed = session::parse_all(files)?;
    // The cloud-configs of `CloudInit` artifacts against cloud-init's schema
    // (compiled once a run, when the first one is met).
    let mut cloud = CloudConfigCheck::new(session.config.cloud_init.schema.clone());
    let mut checker = checks.then(|| check::Checker::new(&session.dirs).with_check(&mut cloud));
    let mut count = 0usize;
    let mut diagnostics = expand::expand_into(&parsed, &session.vars(&files.args), &mut |inst| {
        count += 1;
        if let Some(c) = &mut checker {
            c.instance(&inst);
        }
        keep(inst);
    });
    tracing::debug!("expanded into {count} artifact instances");
    if let Some(c) = checker {
        diagnostics.extend(c.finish());
    }
    if let Some(note) = cloud.skipped_note() {
        eprintln!("{note}");
    }
    let diagnostics = check::dedupe(diagnostics);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(diagnostics.into());
    }
    Ok(diagnostics)
}
