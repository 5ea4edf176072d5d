//! The `b9` executable: all logic lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    b9::cli::main()
}
