use std::process::ExitCode;

fn main() -> ExitCode {
    match nsguard::cli::Cli::parse_or_exit() {
        Ok(cli) => cli.run(),
        Err(code) => code,
    }
}
