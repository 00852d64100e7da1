//! `nsguard migrate plan|check`: move misplaced sub-envs into their own namespaces
//! without losing a volume, over the cluster of your kubeconfig or a dump.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::OutputFormat;
use super::audit::read_inventory;
use super::guard_args::{ClusterArgs, LabelArgs};
use crate::audit::Inventory;
use crate::migration::{self, State, script};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    command: MigrateCommand,
}

#[derive(Debug, Subcommand)]
enum MigrateCommand {
    /// Print a shell script that moves each misplaced sub-env's volumes into its own
    /// namespace around its move: the Pulumi state step it prints, `sh migrate.sh
    /// before`, `sc deploy`, `sh migrate.sh after`. Server-side dry runs unless
    /// --apply-ready. Exit 0 planned, 1 a sub-env
    /// could not be planned (named on stderr), 2 error.
    Plan(Box<PlanArgs>),
    /// Where each sub-env's migration stands: not-started, volumes-kept, handed-over,
    /// redeployed, done or stuck, and the next step. Exit 0 all done (or none), 1 some
    /// not done, 2 error.
    Check(Box<CheckArgs>),
}

/// Which sub-envs, and where the cluster state comes from.
#[derive(Debug, Args)]
struct Selection {
    /// Only this sub-env (`app-name/env` as its labels say, e.g. `shop-tenant-a/tenant-a`;
    /// repeatable). Default: every misplaced sub-env.
    #[arg(long = "stack", value_name = "APP/ENV")]
    stacks: Vec<String>,
    /// Only the sub-envs leaving this namespace (repeatable).
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    namespaces: Vec<String>,
    /// Bound on reading a live cluster, every list included.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Go on when resource types other than claims and volumes could not be read (they
    /// are named): a misplaced object of such a type is not seen.
    #[arg(long)]
    allow_partial: bool,
    #[command(flatten)]
    labels: LabelArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard migrate plan --stack shop-tenant-a/tenant-a > migrate.sh     # review it: dry runs
  nsguard migrate plan --stack shop-tenant-a/tenant-a --apply-ready > migrate.sh
  sh migrate.sh before      # keep, stop, release, reserve
  sc deploy -s shop -e tenant-a                               # the redeploy
  sh migrate.sh after       # the new claims bound to the old volumes
Why this order: docs/migration.md")]
struct PlanArgs {
    /// Mutating lines without --dry-run=server, and the checks that need them applied.
    #[arg(long)]
    apply_ready: bool,
    /// End `after` by putting back reclaim policy Delete on the volumes the plan kept.
    #[arg(long)]
    restore_reclaim_policy: bool,
    #[command(flatten)]
    selection: Selection,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard migrate check                        # every sub-env on the move
  nsguard migrate check --stack shop-tenant-a/tenant-a -o json")]
struct CheckArgs {
    #[arg(long, short, value_enum, default_value = "text")]
    output: OutputFormat,
    #[command(flatten)]
    selection: Selection,
}

pub fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MigrateCommand::Plan(args) => plan(*args),
        MigrateCommand::Check(args) => check(*args),
    }
}

impl Selection {
    /// The inventory, unless what a migration must see could not be read.
    fn read(&self) -> anyhow::Result<Inventory> {
        let (_, inventory) = read_inventory(
            &self.labels,
            &self.cluster,
            self.timeout,
            Inventory::default(),
        )?;
        let missing: Vec<String> = inventory
            .unverified
            .iter()
            .filter(|u| {
                !self.allow_partial
                    || matches!(
                        u.resource.as_str(),
                        "persistentvolumeclaims" | "persistentvolumes"
                    )
            })
            .map(|u| format!("{}: {}", u.resource, u.reason))
            .collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "{} resource type(s) could not be read, so a sub-env's objects or volumes may be missed: {}",
                missing.len(),
                missing.join("; ")
            );
        }
        for unverified in &inventory.unverified {
            eprintln!(
                "nsguard: warning: could not read {}: {}",
                unverified.resource, unverified.reason
            );
        }
        Ok(inventory)
    }
}

fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let selection = &args.selection;
    let inventory = selection.read()?;
    let (sub_envs, unlabelled) =
        migration::sub_envs(&inventory, &selection.stacks, &selection.namespaces);
    let script = script::render(
        &sub_envs,
        &unlabelled,
        &inventory,
        script::Options {
            apply_ready: args.apply_ready,
            restore_reclaim_policy: args.restore_reclaim_policy,
        },
    );
    let mut out = std::io::stdout().lock();
    out.write_all(script.text.as_bytes())?;
    out.flush()?;
    for refused in &script.refused {
        eprintln!("nsguard: not planned: {refused}");
    }
    if sub_envs.is_empty() {
        eprintln!("nsguard: no misplaced sub-env and no migration in progress found");
    }
    Ok(if script.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let selection = &args.selection;
    let inventory = selection.read()?;
    let (sub_envs, unlabelled) =
        migration::sub_envs(&inventory, &selection.stacks, &selection.namespaces);
    let statuses = migration::check(&sub_envs, &unlabelled, &inventory);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &statuses)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            for status in &statuses {
                writeln!(
                    out,
                    "sub-env {} ({} -> {}): {}",
                    status.stack,
                    status.from,
                    status.to,
                    serde_json::to_value(status.state)?
                        .as_str()
                        .unwrap_or_default()
                )?;
                for claim in &status.claims {
                    let stage = serde_json::to_value(&claim.stage)?;
                    write!(
                        out,
                        "  claim {} (volume {}): {}",
                        claim.name,
                        claim.volume,
                        stage["stage"].as_str().unwrap_or_default()
                    )?;
                    match &claim.stage {
                        migration::Stage::Stuck { problem } => write!(out, ": {problem}")?,
                        migration::Stage::Releasing { since } => {
                            write!(out, " (deleted at {since})")?
                        }
                        _ => {}
                    }
                    writeln!(out)?;
                }
                if status.left_behind > 0 {
                    writeln!(
                        out,
                        "  {} object(s) still in {}",
                        status.left_behind, status.from
                    )?;
                }
                writeln!(out, "  next: {}", status.next)?;
            }
            if statuses.is_empty() {
                writeln!(out, "no misplaced sub-env and no migration in progress")?;
            }
        }
    }
    out.flush()?;
    Ok(if statuses.iter().all(|s| s.state == State::Done) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
