//! `b9c`: the original's executable name, the same program as `b9`.

fn main() -> std::process::ExitCode {
    b9::cli::main()
}
