//! Runs a build with the `b9` library and prints each build event as a JSON
//! line on stdout as it happens, in the format of `b9 build --events json`
//! (docs/EVENTS.md); the log goes to stderr. The configuration is the
//! user's `b9.conf`, as for `b9 build`; Ctrl-C stops the build.
//!
//! ```text
//! cargo run --example build_events -- examples/cloud-init.b9 demo
//! ```

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use b9::{BuildFiles, BuildOptions, CancelToken, Config, Session};

/// Builds `file` (with positional `args`) under `config`, writing each
/// event to `out` as a JSON line; `cancel` stops the build.
pub fn build(
    config: Config,
    file: &Path,
    args: &[String],
    cancel: CancelToken,
    out: impl Write + Send + 'static,
) -> Result<(), b9::Error> {
    let session = Session::new(config)?;
    session.init_logging()?;
    let files = BuildFiles::files([file]).with_args(args.iter().cloned());
    let plan = session.plan(&files, &mut |note| eprintln!("{note}"))?;
    for warning in plan.warnings() {
        eprintln!("{warning}");
    }
    let mut options = BuildOptions::new();
    options.cancel = cancel;
    // Called from the build's threads, in the order things happen.
    options.events = b9::events::json::json_lines(out);
    session.build(&plan, &options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((file, rest)) = args.split_first() else {
        eprintln!("usage: build_events FILE.b9 [ARG...]");
        return ExitCode::from(2);
    };
    let result = Config::load(&[]).and_then(|config| {
        build(
            config,
            Path::new(file),
            rest,
            CancelToken::on_signals(),
            std::io::stdout(),
        )
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            for d in e.diagnostics() {
                eprintln!("{d}");
            }
            ExitCode::FAILURE
        }
    }
}
