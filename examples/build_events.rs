//! Runs a build with the `b9` library and prints each build event as a JSON
//! line on stdout as it happens (the log goes to stderr). The configuration
//! is the user's `b9.conf`, as for `b9 build`; Ctrl-C stops the build.
//!
//! ```text
//! cargo run --example build_events -- examples/cloud-init.b9 demo
//! ```

use std::process::ExitCode;

use b9::{BuildFiles, BuildOptions, CancelToken, Config, Events, Session};

fn build(file: &str, args: &[String]) -> Result<(), b9::Error> {
    let session = Session::new(Config::load(&[])?)?;
    session.init_logging()?;
    let files = BuildFiles::files([file]).with_args(args.iter().cloned());
    let plan = session.plan(&files, &mut |note| eprintln!("{note}"))?;
    for warning in plan.warnings() {
        eprintln!("{warning}");
    }
    let mut options = BuildOptions::new();
    options.cancel = CancelToken::on_signals();
    // Called from the build's threads, in the order things happen.
    options.events = Events::new(|event| match serde_json::to_string(event) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("cannot print an event: {e}"),
    });
    session.build(&plan, &options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((file, rest)) = args.split_first() else {
        eprintln!("usage: build_events FILE.b9 [ARG...]");
        return ExitCode::from(2);
    };
    match build(file, rest) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            for d in e.diagnostics() {
                eprintln!("{d}");
            }
            ExitCode::FAILURE
        }
    }
}
