//! The `nsguard` command line: argument parsing and dispatch to the subcommands.
//!
//! Every subcommand is a thin shell around the library's pure core; exit codes follow
//! one rule across the binary: 0 success (or "allowed"), 1 a finding (denied,
//! misplaced objects), 2 an error the user must fix (clap's usage errors are 2 too).

mod naming;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for an error: bad input, an empty name, an unreachable cluster.
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "nsguard",
    version,
    about = "Admission webhook and CLI that guards shared Kubernetes namespaces and keeps \
             simple-container sub-env workloads in their own namespaces",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print simple-container's sanitized form of NAME (SanitizeK8sResourceName).
    Sanitize(naming::SanitizeArgs),
    /// Print the namespace simple-container deploys a stack into.
    NsName(naming::NsNameArgs),
}

impl Cli {
    /// Run the chosen subcommand; errors are printed as one line on stderr.
    pub fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Sanitize(args) => naming::sanitize(args),
            Command::NsName(args) => naming::ns_name(args),
        };
        match result {
            Ok(code) => code,
            Err(err) => {
                eprintln!("nsguard: error: {}", one_line(&err));
                ExitCode::from(EXIT_ERROR)
            }
        }
    }
}

/// An error and its causes on one line, so scripts can log it as one record.
fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}
