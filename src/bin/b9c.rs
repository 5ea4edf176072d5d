//! `b9c`: the original's executable name, the same program as `b9`.

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
