use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    nsguard::cli::Cli::parse().run()
}
