//! The `ddlgate` binary: everything happens in [`ddlgate::cli`].

fn main() -> std::process::ExitCode {
    ddlgate::cli::main()
}
