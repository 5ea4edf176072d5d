//! The `b9` executable: the command line on the `b9` library's public API.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
