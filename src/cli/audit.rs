//! `nsguard audit`: what is already at risk, over the cluster of your kubeconfig (with your
//! credentials) or a cluster dump. Exit 0 nothing found, 1 findings, 2 an error or a type
//! that could not be read (unless --allow-partial).

use std::io::Write;
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
  nsguard audit -o policyreport | kubectl apply -f -     # for Policy Reporter
  nsguard audit --cleanup-script > cleanup.sh            # review, then sh cleanup.sh")]
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
    /// Print, instead of the report, a shell script of `kubectl delete namespace` lines for
    /// exactly the lingering namespaces, each with --dry-run=server and a comment naming
    /// the stack that left it. nsguard deletes nothing: review it, then run it.
    #[arg(long, conflicts_with = "output")]
    cleanup_script: bool,
    /// With the text report: list every object of each sub-env outside its namespace, one
    /// a line (JSON always lists them all).
    #[arg(long)]
    objects: bool,
    /// With --cleanup-script: lines without --dry-run=server, ready to delete.
    #[arg(long, requires = "cleanup_script")]
    apply_ready: bool,
    #[command(flatten)]
    labels: LabelArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let (scheme, inventory) = read_inventory(
        &args.labels,
        &args.cluster,
        args.timeout,
        audit::Inventory::default(),
    )?;
    let report = audit::audit(&inventory, &scheme, &args.namespaces);
    if args.cleanup_script {
        print!("{}", cleanup_script(&report, args.apply_ready));
        if !report.unverified.is_empty() {
            eprintln!(
                "nsguard: {}: {} resource type(s) could not be read, so no namespace is called lingering: {}",
                if args.allow_partial {
                    "warning"
                } else {
                    "error"
                },
                report.unverified.len(),
                report
                    .unverified
                    .iter()
                    .map(|u| format!("{}: {}", u.resource, u.reason))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            if !args.allow_partial {
                return Ok(ExitCode::from(super::EXIT_ERROR));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Written as it is serialized: the output of 100,000 findings is never one string.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        AuditFormat::Json => serde_json::to_writer_pretty(&mut out, &report)?,
        AuditFormat::Text => text(&report, args.objects, &mut out)?,
        AuditFormat::Policyreport => {
            let list = crate::audit::policy_report::List {
                report: &report,
                seconds: k8s_openapi::jiff::Timestamp::now().as_second(),
            };
            serde_json::to_writer_pretty(&mut out, &list)?;
        }
    }
    if args.output != AuditFormat::Text {
        writeln!(out)?;
    }
    out.flush()?;
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
/// `into` is empty for the audit, which keeps counts, or [`audit::Inventory::keeping_objects`]
/// for a dump, which writes every object.
pub(super) fn read_inventory(
    labels: &LabelArgs,
    cluster: &ClusterArgs,
    timeout: std::time::Duration,
    into: audit::Inventory,
) -> anyhow::Result<(
    crate::simple_container::labels::LabelScheme,
    audit::Inventory,
)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let scheme = labels.scheme();
    let inventory = match runtime.block_on(cluster.source(&scheme))? {
        ClusterSource::Dump(dump) => dump.into_inventory(),
        ClusterSource::Live(cluster) => runtime
            .block_on(cluster.inventory(timeout, into))
            .map_err(|err| anyhow::anyhow!("{err}"))?,
    };
    Ok((scheme, inventory))
}

/// `kubectl delete namespace` lines for the lingering namespaces of `report`, for a person
/// to review and run; `--dry-run=server` on each unless `apply_ready`.
fn cleanup_script(report: &Report, apply_ready: bool) -> String {
    use std::fmt::Write as _;
    let lingering: Vec<_> = report
        .findings
        .iter()
        .filter_map(|f| match f {
            audit::Finding::LingeringNamespace {
                namespace,
                owner,
                empty_since,
                ..
            } => Some((namespace, owner, empty_since)),
            _ => None,
        })
        .collect();
    let mut out = format!(
        "#!/bin/sh\n# Namespaces simple-container left behind that hold nothing of any stack any more\n# ({} found by nsguard audit). nsguard does not read Secrets in a cluster: check each\n# with `kubectl get secrets -n NAMESPACE` first.{}\nset -e\n",
        lingering.len(),
        if apply_ready {
            ""
        } else {
            " Each line is a server-side dry run: drop\n# --dry-run=server (or rerun with --apply-ready) to delete."
        }
    );
    // Names and labels from a dump file are not checked by any API server: nothing read
    // from it reaches the script but a valid namespace name and escaped comment text.
    let safe = |text: &str| text.escape_debug().to_string();
    for (namespace, owner, empty_since) in lingering {
        let _ = write!(
            out,
            "\n# left by stack {}/{}",
            safe(&owner.app_name),
            safe(&owner.env)
        );
        if !owner.parent_env.is_empty() {
            let _ = write!(out, " (parent-env {})", safe(&owner.parent_env));
        }
        if let Some(since) = empty_since {
            let _ = write!(
                out,
                "; holds nothing of any stack since {} or earlier",
                safe(since)
            );
        }
        if !crate::simple_container::naming::is_dns1123_label(namespace) {
            let _ = writeln!(
                out,
                "\n# skipped: {} is not a valid namespace name",
                safe(namespace)
            );
            continue;
        }
        let _ = writeln!(
            out,
            "\nkubectl delete namespace {namespace}{}",
            if apply_ready { "" } else { " --dry-run=server" }
        );
    }
    out
}

/// The report for a person at a terminal, a plan to act on whatever the cluster's size:
/// one line per sub-env outside its namespace (riskiest first: volumes the move would
/// destroy, then the most objects; how many by kind, a few names, its claims, the command
/// that moves it; `all_objects` lists each object below it), one line per shared
/// namespace, then the namespaces' other findings with what to do; the advice that holds
/// for every sub-env (which simple-container release, the state step, what enforcement
/// would refuse) once, at the end. Written line by line.
fn text(report: &Report, all_objects: bool, out: &mut impl Write) -> std::io::Result<()> {
    use audit::Finding;
    let now = k8s_openapi::jiff::Timestamp::now();
    let plural = |n: usize, one: &'static str, many: &'static str| if n == 1 { one } else { many };
    let mut sub_envs: Vec<&Finding> = (report.findings.iter())
        .filter(|f| matches!(f, Finding::Misplaced { .. }))
        .collect();
    sub_envs.sort_by_key(|f| match f {
        Finding::Misplaced {
            volumes_to_keep,
            objects,
            namespace,
            ..
        } => (
            std::cmp::Reverse(*volumes_to_keep),
            std::cmp::Reverse(objects.0.len()),
            namespace.clone(),
            objects.0.stack(),
        ),
        _ => unreachable!(),
    });
    if !sub_envs.is_empty() {
        writeln!(
            out,
            "{} sub-env{} outside {} own namespace, the riskiest first:",
            sub_envs.len(),
            plural(sub_envs.len(), "", "s"),
            plural(sub_envs.len(), "its", "their"),
        )?;
    }
    for finding in &sub_envs {
        let Finding::Misplaced {
            namespace,
            target,
            target_exists,
            volumes_to_keep,
            claims,
            objects,
            ..
        } = finding
        else {
            continue;
        };
        let sub_env = &objects.0;
        let kinds: Vec<String> = (sub_env.by_kind().iter())
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        let mut names: Vec<String> = (sub_env.objects().take(audit::EXAMPLES))
            .map(|o| format!("{}/{}", o.kind, o.name))
            .collect();
        if sub_env.len() > audit::EXAMPLES {
            names.push(format!("and {} more", sub_env.len() - audit::EXAMPLES));
        }
        let exists = if *target_exists == Some(false) {
            ", not created yet"
        } else {
            ""
        };
        let mut volumes = String::new();
        if *claims > 0 {
            let mut named: Vec<&str> = sub_env.claims().take(audit::EXAMPLES).collect();
            let more = claims.saturating_sub(named.len());
            let more = format!("and {more} more");
            if *claims > named.len() {
                named.push(&more);
            }
            volumes = format!("; claims {}", named.join(", "));
            if *volumes_to_keep > 0 {
                volumes.push_str(&format!(
                    ", {volumes_to_keep} on a volume the move would destroy (reclaim policy Delete; MoveDestroysData below)"
                ));
            }
        }
        writeln!(
            out,
            "  - {} in {namespace} (belongs in {target}{exists}): {} object{} ({}): {}{volumes}; move it: nsguard migrate plan --stack {}",
            sub_env.stack(),
            sub_env.len(),
            plural(sub_env.len(), "", "s"),
            kinds.join(", "),
            names.join(", "),
            sub_env.stack(),
        )?;
        if all_objects {
            for object in sub_env.objects() {
                writeln!(
                    out,
                    "      {}/{} ({})",
                    object.kind, object.name, object.api_version
                )?;
            }
        }
    }
    let shared: Vec<&Finding> = (report.findings.iter())
        .filter(|f| matches!(f, Finding::SharedNamespace { .. }))
        .collect();
    if !shared.is_empty() {
        writeln!(
            out,
            "{} namespace{} shared by several stacks (deleting one would delete them all; the guard refuses it):",
            shared.len(),
            plural(shared.len(), "", "s"),
        )?;
    }
    for finding in shared {
        if let Finding::SharedNamespace {
            namespace,
            owners,
            volumes_to_keep,
        } = finding
        {
            let owners: Vec<String> = owners
                .iter()
                .map(|o| format!("{}/{} ({})", o.app_name, o.env, o.objects))
                .collect();
            let keep = match volumes_to_keep {
                0 => String::new(),
                n => format!(
                    "; {n} volume{} to keep before its sub-envs move",
                    plural(*n, "", "s")
                ),
            };
            writeln!(out, "  - {namespace}: {}{keep}", owners.join(", "))?;
        }
    }
    // The rest, by namespace, each with what to do.
    let mut current = None;
    for finding in (report.findings.iter()).filter(|f| {
        !matches!(
            f,
            Finding::Misplaced { .. } | Finding::SharedNamespace { .. }
        )
    }) {
        if current != Some(finding.namespace()) {
            current = Some(finding.namespace());
            writeln!(out, "namespace {}:", finding.namespace())?;
        }
        writeln!(
            out,
            "  - {}: {}",
            finding.summary(Some(now)),
            finding.advice()
        )?;
    }
    let outside: usize = report.sub_envs_outside.iter().map(|s| s.objects).sum();
    writeln!(
        out,
        "{} finding{} in {} namespaces ({} labelled objects{})",
        report.findings.len(),
        plural(report.findings.len(), "", "s"),
        report.namespaces,
        report.objects,
        if outside == 0 {
            String::new()
        } else {
            format!(", {outside} of them outside their sub-env's namespace")
        }
    )?;
    if !sub_envs.is_empty()
        || report
            .counts()
            .iter()
            .any(|(t, n)| *t == "SharedNamespace" && *n > 0)
    {
        writeln!(
            out,
            "To move them: {}.",
            crate::simple_container::releases::how_to_move_each()
        )?;
    }
    if let Some(impact) = report.enforcement_impact() {
        writeln!(out, "{impact}")?;
    }
    for unverified in &report.unverified {
        writeln!(
            out,
            "could not read {}: {}",
            unverified.resource, unverified.reason
        )?;
    }
    Ok(())
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
    let (_, inventory) = read_inventory(
        &args.labels,
        &args.cluster,
        args.timeout,
        audit::Inventory::keeping_objects(),
    )?;
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
