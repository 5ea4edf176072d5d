//! The command-line interface: argument parsing, dispatch to one function per
//! command, diagnostics on stderr, and exit codes. Built on the `b9`
//! library's public API only.
//!
//! Exit codes: 0 success, 1 build failure, 2 usage or build-file error.

mod args;
mod build;
mod cache;
mod image;

use std::io::Write;
use std::process::ExitCode;

use b9::{BuildFiles, CancelToken, Diagnostic, Error, Session};
use clap::{CommandFactory, Parser};

use args::{AccelArg, Cli, Command, GlobalArgs};

/// Exit status: a build failed.
const EXIT_BUILD: u8 = 1;
/// Exit status: a build file, configuration or usage error.
const EXIT_USAGE: u8 = 2;

/// Runs b9 with the process arguments.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == b9::PARENT_DEATH_SHIM_ARG) {
        return b9::exec_with_parent_death(&args[2..]);
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
struct Failure {
    /// The problems.
    diagnostics: Vec<Diagnostic>,
    /// The exit status.
    code: u8,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            diagnostics: e.diagnostics(),
            code: if matches!(e, Error::Invalid(_)) {
                EXIT_USAGE
            } else {
                EXIT_BUILD
            },
        }
    }
}

/// A failed command (exit code 1) with one message.
fn fail(e: impl std::fmt::Display) -> Failure {
    Failure {
        diagnostics: vec![Diagnostic::error(e.to_string())],
        code: EXIT_BUILD,
    }
}

/// A usage or input error (exit code 2) with one message.
fn usage(e: impl std::fmt::Display) -> Failure {
    Failure {
        diagnostics: vec![Diagnostic::error(e.to_string())],
        code: EXIT_USAGE,
    }
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

/// A failure to write normal output (a closed pipe is no failure).
fn io(e: std::io::Error) -> Failure {
    Failure {
        diagnostics: vec![Diagnostic::error(format!("cannot write output: {e}"))],
        code: if e.kind() == std::io::ErrorKind::BrokenPipe {
            0
        } else {
            1
        },
    }
}

/// The configuration overrides the global flags ask for (only those given).
fn overrides(g: &GlobalArgs) -> b9::Overrides {
    let mut o = b9::Overrides::default();
    o.verbosity = if g.verbose {
        Some(b9::LogLevel::Trace)
    } else if g.quiet {
        Some(b9::LogLevel::Error)
    } else {
        None
    };
    o.log_file = g.log_file.clone();
    o.build_dir_root = g.build_root.clone();
    o.keep_temp_dirs = g.keep_build_dir;
    o.predictable_build_dir = g.predictable_build_dir;
    o.repository_cache = g.repo_cache.clone();
    o.repository = g.repo.clone();
    o.network = g.network.clone();
    o.accel = g.accel.map(|a| match a {
        AccelArg::Auto => b9::Accel::Auto,
        AccelArg::Kvm => b9::Accel::Kvm,
        AccelArg::Tcg => b9::Accel::Tcg,
    });
    o
}

/// Finds and loads the configuration, applies the flags, starts logging.
fn open(g: &GlobalArgs) -> Result<Session, Failure> {
    let config = b9::Config::load(&g.config)?.with_overrides(&overrides(g));
    let session = Session::new(config)?;
    session.init_logging()?;
    Ok(session)
}

/// Runs one parsed command line, writing normal output to `out`.
fn run(cli: Cli, out: &mut impl Write) -> Result<(), Failure> {
    let cancel = b9::CancelToken::on_signals();
    match &cli.command {
        Command::Version => writeln!(
            out,
            "{} (compatible with b9 {})",
            b9::VERSION,
            b9::COMPAT_VERSION
        )
        .map_err(io),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "b9", out);
            Ok(())
        }
        Command::List => {
            let session = open(&cli.global)?;
            let listing = match &cli.global.repo {
                Some(id) => b9::shared::list_remote(&session, id),
                None => b9::shared::list(&session)?,
            };
            for w in &listing.warnings {
                tracing::warn!("{w}");
                eprintln!("warning: {w}");
            }
            write!(out, "{listing}").map_err(io)
        }
        Command::Run { image, command } => {
            let session = open(&cli.global)?;
            match b9::run_image(&session, image, command, &cancel)? {
                0 => Ok(()),
                status => Err(Failure {
                    diagnostics: Vec::new(),
                    code: u8::try_from(status).unwrap_or(1),
                }),
            }
        }
        Command::Farm => {
            let hosts = b9::farm::hosts(&open(&cli.global)?);
            if hosts.is_empty() {
                writeln!(out, "no libvirt hosts: [vm] backend is qemu").map_err(io)?;
            }
            hosts
                .iter()
                .try_for_each(|h| write!(out, "{h}"))
                .map_err(io)
        }
        Command::Push { name } => {
            let pushed = b9::shared::push(&open(&cli.global)?, name, &transfer_options(&cancel))?;
            let img = &pushed.image;
            writeln!(
                out,
                "pushed {} {} to `{}`",
                img.name, img.build_id, pushed.repository
            )
            .map_err(io)
        }
        Command::Pull { name: None } => {
            let session = open(&cli.global)?;
            for repo in b9::shared::pull_metadata(&session, &transfer_options(&cancel))? {
                if let b9::shared::Source::Remote(id) = &repo.source {
                    writeln!(out, "`{id}`: {} shared image versions", repo.images.len())
                        .map_err(io)?;
                }
            }
            Ok(())
        }
        Command::Pull { name: Some(name) } => {
            let session = open(&cli.global)?;
            let img = b9::shared::pull(&session, name, &transfer_options(&cancel))?;
            writeln!(out, "pulled {} {} ({})", img.name, img.build_id, img.date).map_err(io)
        }
        Command::CleanRemote => {
            for id in b9::shared::clean_remote(&open(&cli.global)?)? {
                writeln!(out, "cleared the metadata cache of `{id}`").map_err(io)?;
            }
            Ok(())
        }
        Command::AddRepo {
            name,
            remote_directory,
            ssh_priv_key_file,
            host,
            port,
            user,
        } => {
            let repo =
                b9::NewRepo::new(name, remote_directory, ssh_priv_key_file, host, *port, user);
            let path = b9::add_repo(&cli.global.config, &repo)?;
            writeln!(out, "added repository `{name}` to {}", path.display()).map_err(fail)
        }
        Command::CleanLocal => {
            let removed = b9::shared::clean_local(&open(&cli.global)?)?;
            for img in &removed {
                writeln!(out, "removed {} {} ({})", img.name, img.build_id, img.date)
                    .map_err(io)?;
            }
            let n = removed.len();
            writeln!(
                out,
                "{n} cached image{} removed",
                if n == 1 { "" } else { "s" }
            )
            .map_err(io)
        }
        Command::Image { command } => {
            let started = b9::start_time()?;
            image::run(command, &cli.global.config, started, &cancel, out)
        }
        Command::Reformat { files, .. } => reformat(files, out),
        Command::Build {
            files,
            no_cache,
            events,
        } => {
            let session = open(&cli.global)?;
            let plan = session.plan(&build_files(&session, files), &mut note)?;
            report(plan.warnings());
            build::build(&session, &plan, *no_cache, *events, &cancel)
        }
        Command::Cache { command } => cache::run(command, out),
        Command::Check(files) => {
            let session = open(&cli.global)?;
            let checked = session.check(&build_files(&session, files), &mut note)?;
            report(&checked.warnings);
            let count = checked.instances;
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
            let session = open(&cli.global)?;
            let plan = session.expand(&build_files(&session, files), &mut note)?;
            report(plan.warnings());
            let text = if *json {
                plan.show_json(&session)
            } else {
                plan.show_text(&session)
            };
            out.write_all(text.as_bytes()).map_err(io)
        }
    }
}

/// `b9 reformat`: each file rewritten and printed; a file that does not
/// parse (or cannot be written) is left alone, the others still done, and
/// the problems of all reported together.
fn reformat(files: &[std::path::PathBuf], out: &mut impl Write) -> Result<(), Failure> {
    let mut failure: Option<Failure> = None;
    for path in files {
        match b9::reformat(path) {
            Ok(done) => out.write_all(done.text.as_bytes()).map_err(io)?,
            Err(e) => {
                let this = Failure::from(e);
                failure = Some(match failure {
                    None => this,
                    Some(mut all) => {
                        all.diagnostics.extend(this.diagnostics);
                        all.code = all.code.max(this.code);
                        all
                    }
                });
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

/// The build files of the command line, after printing what the session
/// has to say about the configuration.
fn build_files(session: &Session, files: &args::BuildFiles) -> BuildFiles {
    for n in session.notices() {
        eprintln!("{n}");
    }
    report(session.warnings());
    BuildFiles::files(&files.files).with_args(files.args.iter().cloned())
}

/// Prints a note of the checks to stderr.
fn note(text: &str) {
    eprintln!("{text}");
}

/// A push or pull stopped by `cancel`, reporting no events.
fn transfer_options(cancel: &CancelToken) -> b9::shared::TransferOptions {
    let mut options = b9::shared::TransferOptions::new();
    options.cancel = cancel.clone();
    options
}
