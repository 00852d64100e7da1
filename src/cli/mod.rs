//! The `nsguard` command line: argument parsing and dispatch to the subcommands.
//!
//! Every subcommand is a thin shell around the library's pure core; exit codes follow
//! one rule across the binary: 0 success (or "allowed"), 1 a finding (denied,
//! misplaced objects), 2 an error the user must fix (clap's usage errors are 2 too).

mod audit;
mod can_delete;
mod certs;
mod guard_args;
mod migrate;
mod naming;
mod placement;
mod serve;
mod volume_guard_checks;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

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
    /// Log line format on stderr.
    #[arg(
        long,
        global = true,
        env = "NSGUARD_LOG_FORMAT",
        default_value = "text",
        help_heading = "Global options"
    )]
    log_format: LogFormat,
    /// Log filter (`info`, `debug`, `nsguard=debug,kube=warn`, ...); RUST_LOG wins.
    /// Default: info for `serve`, warn for the other commands (their output is stdout).
    #[arg(
        long,
        global = true,
        env = "NSGUARD_LOG_LEVEL",
        help_heading = "Global options"
    )]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print simple-container's sanitized form of NAME (SanitizeK8sResourceName).
    Sanitize(naming::SanitizeArgs),
    /// Print the namespace simple-container deploys a stack into.
    NsName(naming::NsNameArgs),
    /// Run the HTTPS admission webhook server.
    Serve(Box<serve::ServeArgs>),
    /// Write a CA and a serving certificate (ca.crt, tls.crt, tls.key) for the webhook.
    Certs(certs::CertsArgs),
    /// Would deleting NAMESPACE be allowed? Exit 0 allowed, 1 denied (owners printed),
    /// 2 error or no such namespace. Against a cluster it lists with your credentials
    /// (kubeconfig), not nsguard's: types you may not list are named, and deny.
    CanDelete(Box<can_delete::CanDeleteArgs>),
    /// Would creating these PersistentVolumeClaims pass the volume guard? Exit 0 allowed,
    /// 1 refused (why, and what to run), 2 error.
    CanCreateClaim(Box<volume_guard_checks::CanCreateClaimArgs>),
    /// Would deleting this PersistentVolumeClaim pass the volume guard? Exit 0 allowed, 1
    /// refused (why, and what to run), 2 error or no such claim.
    CanDeleteClaim(Box<volume_guard_checks::CanDeleteClaimArgs>),
    /// Report sub-env objects in manifests that sit outside their namespace (or whose
    /// namespace cannot be told). Exit 0 none, 1 some, 2 bad input.
    Check(placement::CheckArgs),
    /// Report what is already at risk: namespaces shared by several stacks, misplaced
    /// sub-env objects, volumes a namespace delete would destroy, and the namespaces
    /// simple-container left behind, safe to delete. Exit 0 none, 1 some, 2 error.
    Audit(Box<audit::AuditArgs>),
    /// Write what the guard and the audit read from the cluster (labelled objects'
    /// metadata, namespaces, claims and volumes) in the --cluster-dump format.
    Dump(Box<audit::DumpArgs>),
    /// Move misplaced sub-envs into their own namespaces without losing a volume: a
    /// reviewed plan (`plan`) and where it stands (`check`).
    Migrate(migrate::MigrateArgs),
    /// Print manifests with misplaced sub-env objects moved to their namespace, changing
    /// nothing else. Reads standard input without -f (a Helm post-renderer).
    Rewrite(placement::RewriteArgs),
    /// Print placement as a ValidatingAdmissionPolicy and its binding (Kubernetes 1.30+):
    /// the API server refuses (enforce) or warns about (warn) a misplaced sub-env create
    /// itself, while nsguard is down too. Apply with `kubectl apply -f -`.
    Policy(placement::PolicyArgs),
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// The file name kubectl runs a plugin by: `kubectl nsguard ...` finds it on the PATH.
const KUBECTL_PLUGIN: &str = "kubectl-nsguard";

impl Cli {
    /// Parse the command line. Usage errors are one `nsguard: error:` line with the usage,
    /// as every other error (exit 2); `--help` and `--version` print as usual. Installed as
    /// `kubectl-nsguard`, help and usage say `kubectl nsguard`.
    pub fn parse_or_exit() -> Result<Self, ExitCode> {
        let plugin = std::env::args_os()
            .next()
            .and_then(|argv0| {
                std::path::Path::new(&argv0)
                    .file_name()
                    .map(|name| name == KUBECTL_PLUGIN)
            })
            .unwrap_or(false);
        let mut command = Self::command();
        if plugin {
            command = command.bin_name("kubectl nsguard").name("kubectl nsguard");
        }
        let matches = command
            .try_get_matches()
            .and_then(|m| Self::from_arg_matches(&m));
        match matches {
            Ok(cli) => Ok(cli),
            Err(err) if !err.use_stderr() => {
                // --help, --version: their text on stdout.
                let _ = err.print();
                Err(ExitCode::SUCCESS)
            }
            Err(err) => {
                // clap's paragraphs: the error (maybe over several lines), tips, usage.
                let rendered = err.render().to_string();
                let paragraphs: Vec<String> = rendered
                    .split("\n\n")
                    .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
                    .filter(|p| !p.is_empty())
                    .collect();
                let message = paragraphs.first().map_or("invalid usage", String::as_str);
                let message = message.strip_prefix("error: ").unwrap_or(message);
                let usage = paragraphs
                    .iter()
                    .find_map(|p| p.strip_prefix("Usage: "))
                    .map(|u| format!(" (usage: {u}; see --help)"))
                    .unwrap_or_default();
                eprintln!("nsguard: error: {message}{usage}");
                Err(ExitCode::from(EXIT_ERROR))
            }
        }
    }

    /// Run the chosen subcommand; errors are printed as one line on stderr.
    pub fn run(self) -> ExitCode {
        let default_level = match self.command {
            Command::Serve(_) => "info",
            _ => "warn",
        };
        let level = self.log_level.as_deref().unwrap_or(default_level);
        if let Err(err) = telemetry::init(self.log_format, level) {
            eprintln!("nsguard: error: {}", one_line(&err));
            return ExitCode::from(EXIT_ERROR);
        }
        let result = match self.command {
            Command::Sanitize(args) => naming::sanitize(args),
            Command::NsName(args) => naming::ns_name(args),
            Command::Serve(args) => serve::serve(*args),
            Command::Certs(args) => certs::certs(args),
            Command::CanDelete(args) => can_delete::can_delete(*args),
            Command::CanCreateClaim(args) => volume_guard_checks::can_create_claim(*args),
            Command::CanDeleteClaim(args) => volume_guard_checks::can_delete_claim(*args),
            Command::Check(args) => placement::check(args),
            Command::Rewrite(args) => placement::rewrite(args),
            Command::Policy(args) => placement::policy(args),
            Command::Audit(args) => audit::audit(*args),
            Command::Dump(args) => audit::dump(*args),
            Command::Migrate(args) => migrate::migrate(args),
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
