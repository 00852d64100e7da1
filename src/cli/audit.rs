//! `nsguard audit`: what is already at risk, over the cluster of your kubeconfig (with your
//! credentials) or a cluster dump. Exit 0 nothing found, 1 findings, 2 an error or a type
//! that could not be read (unless --allow-partial).

use std::process::ExitCode;

use clap::Args;

use super::guard_args::{ClusterArgs, LabelArgs};
use crate::audit::{self, Report};
use crate::cluster::ClusterSource;

/// How `nsguard audit` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    Text,
    Json,
    Policyreport,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard audit                                          # your kubeconfig's cluster
  nsguard audit --context prod -n shop -n billing -o json
  nsguard audit --demo                                   # the example dump
  nsguard audit --cluster-dump cluster.yaml
  nsguard audit -o policyreport | kubectl apply -f -     # for Policy Reporter")]
pub struct AuditArgs {
    /// Only these namespaces (repeatable). Default: every namespace.
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    namespaces: Vec<String>,
    /// text for people (grouped by namespace), json for machines, policyreport for
    /// dashboards (wgpolicyk8s.io/v1alpha2 PolicyReports in a List, for kubectl apply).
    #[arg(long, short, value_enum, default_value = "text")]
    output: AuditFormat,
    /// Bound on reading a live cluster, every list included.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Report findings even when some resource types could not be read (they are named):
    /// exit by the findings instead of 2.
    #[arg(long)]
    allow_partial: bool,
    #[command(flatten)]
    labels: LabelArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let (scheme, inventory) = read_inventory(&args.labels, &args.cluster, args.timeout)?;
    let report = audit::audit(&inventory, &scheme, &args.namespaces);
    match args.output {
        AuditFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        AuditFormat::Text => print!("{}", text(&report)),
        AuditFormat::Policyreport => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let reports = crate::policy_report::reports(&report, now);
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::policy_report::list(reports))?
            );
        }
    }
    Ok(if !report.unverified.is_empty() && !args.allow_partial {
        ExitCode::from(super::EXIT_ERROR)
    } else if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What the audit reads, from the cluster source the flags name (a live read bounded by
/// `timeout`).
fn read_inventory(
    labels: &LabelArgs,
    cluster: &ClusterArgs,
    timeout: std::time::Duration,
) -> anyhow::Result<(crate::labels::LabelScheme, audit::Inventory)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let scheme = labels.scheme();
    let inventory = match runtime.block_on(cluster.source(&scheme))? {
        ClusterSource::Dump(dump) => dump.inventory().clone(),
        ClusterSource::Live(cluster) => runtime
            .block_on(cluster.inventory(timeout))
            .map_err(|err| anyhow::anyhow!("{err}"))?,
    };
    Ok((scheme, inventory))
}

/// The report for a person at a terminal: grouped by namespace, each finding with what
/// to do about it.
fn text(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut current = None;
    for finding in &report.findings {
        if current != Some(finding.namespace()) {
            current = Some(finding.namespace());
            let _ = writeln!(out, "namespace {}:", finding.namespace());
        }
        let _ = writeln!(out, "  - {}: {}", finding.summary(), finding.advice());
    }
    let _ = writeln!(
        out,
        "{} finding{} in {} namespaces ({} labelled objects)",
        report.findings.len(),
        if report.findings.len() == 1 { "" } else { "s" },
        report.namespaces,
        report.objects
    );
    for unverified in &report.unverified {
        let _ = writeln!(
            out,
            "could not read {}: {}",
            unverified.resource, unverified.reason
        );
    }
    out
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard dump --context prod -o cluster.json            # capture, then audit offline
  nsguard audit --cluster-dump cluster.json
  nsguard dump -n shop -n billing > for-a-bug-report.json")]
pub struct DumpArgs {
    /// Only these namespaces (repeatable). Default: every namespace.
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    namespaces: Vec<String>,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<std::path::PathBuf>,
    /// Bound on reading a live cluster, every list included.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    #[command(flatten)]
    labels: LabelArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// `nsguard dump`: what the guard and the audit read, in the `--cluster-dump` format
/// (a JSON `List`). A type that cannot be read is an error: a dump must be whole.
pub fn dump(args: DumpArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    let (_, inventory) = read_inventory(&args.labels, &args.cluster, args.timeout)?;
    if let Some(first) = inventory.unverified.first() {
        anyhow::bail!(
            "{} resource type(s) could not be read, so the dump would be incomplete: {}: {}",
            inventory.unverified.len(),
            first.resource,
            first.reason
        );
    }
    let mut text =
        serde_json::to_string_pretty(&crate::cluster::dump::write(&inventory, &args.namespaces))?;
    text.push('\n');
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(text.as_bytes())
                .context("writing to standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
