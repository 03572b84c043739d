//! The `ddlgate` binary: everything happens in [`ddlgate::main`].

fn main() -> std::process::ExitCode {
    ddlgate::main()
}
