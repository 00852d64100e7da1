//! `nsguard check` and `nsguard rewrite`: sub-env placement over manifests, before they
//! are applied; `nsguard policy`: placement as the API server's own policy. Exit codes: check 0 nothing to report, 1 misplaced or unresolvable
//! objects, 2 bad input; rewrite 0, or 2.
//!
//! Without `-f` both read standard input, so `rewrite` is a Helm post-renderer as it is:
//! `helm install ... --post-renderer nsguard --post-renderer-args rewrite`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::OutputFormat;
use super::guard_args::LabelArgs;
use crate::decisions::placement::PlacementMode;
use crate::documents;
use crate::manifests::{self, Finding};
use crate::placement_policy;
use crate::scope::{Scope, Scopes};

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Manifest file, directory (its .yaml/.yml/.json files, recursively) or `-` for
    /// standard input. Repeatable. Default: standard input.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// Namespace of objects that name none, as `kubectl apply --namespace` would use.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// A custom kind that is cluster-scoped (`Kind` or `Kind.group`), when its
    /// CustomResourceDefinition is not among the manifests. Repeatable.
    #[arg(long, value_name = "KIND")]
    cluster_scoped: Vec<String>,
    /// A custom kind that is namespaced (`Kind` or `Kind.group`), when its
    /// CustomResourceDefinition is not among the manifests. Repeatable. A kind of unknown
    /// scope is reported, never moved.
    #[arg(long, value_name = "KIND")]
    namespaced: Vec<String>,
    #[command(flatten)]
    labels: LabelArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard check -f manifests/
  helm template my-release ./chart | nsguard check -o json")]
pub struct CheckArgs {
    #[command(flatten)]
    manifests: ManifestArgs,
    /// text for people, json for machines.
    #[arg(long, short, value_enum, default_value = "text")]
    output: OutputFormat,
}

/// What `rewrite` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RewriteFormat {
    /// The input itself, byte for byte, with only the namespace of each moved object
    /// changed (YAML stays YAML, JSON stays JSON).
    Yaml,
    /// Every document re-serialized as pretty JSON, one after another.
    Json,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard rewrite -f app.yaml | kubectl apply -f -
  helm install my-release ./chart --post-renderer nsguard --post-renderer-args rewrite")]
pub struct RewriteArgs {
    #[command(flatten)]
    manifests: ManifestArgs,
    /// yaml: the input with only namespaces changed; json: re-serialized documents.
    #[arg(long, short, value_enum, default_value = "yaml")]
    output: RewriteFormat,
}

/// Every source rewritten in memory: the outputs and the findings.
fn run(args: &ManifestArgs) -> anyhow::Result<Vec<manifests::Rewritten>> {
    let scheme = args.labels.scheme();
    let stdin = [PathBuf::from("-")];
    let files: &[PathBuf] = if args.files.is_empty() {
        &stdin
    } else {
        &args.files
    };
    let sources = manifests::read_sources(files)?;
    let parsed: Vec<_> = sources.iter().map(manifests::parse).collect();
    // Built-in kinds, then the CRDs of every source, then what the user declared.
    let mut scopes = Scopes::builtin();
    for documents in parsed.iter().flatten() {
        scopes.learn_crds(documents.iter().flat_map(|d| documents::objects(&d.value)));
    }
    for kind in &args.cluster_scoped {
        scopes.declare(kind, Scope::Cluster);
    }
    for kind in &args.namespaced {
        scopes.declare(kind, Scope::Namespaced);
    }
    sources
        .iter()
        .zip(parsed)
        .map(|(source, parsed)| {
            manifests::rewrite(source, parsed?, &scheme, &scopes, args.namespace.as_deref())
                .map_err(Into::into)
        })
        .collect()
}

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let findings: Vec<Finding> = run(&args.manifests)?
        .into_iter()
        .flat_map(|r| r.findings)
        .collect();
    let (misplaced, unresolvable): (Vec<&Finding>, Vec<&Finding>) =
        findings.iter().partition(|f| f.misplaced());
    match args.output {
        OutputFormat::Json => {
            let report =
                serde_json::json!({ "misplaced": misplaced, "unresolvable": unresolvable });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        OutputFormat::Text if findings.is_empty() => println!("no misplaced sub-env objects"),
        OutputFormat::Text => {
            for finding in &findings {
                println!("{finding}");
            }
            let plural = |n: usize| if n == 1 { "" } else { "s" };
            if !misplaced.is_empty() {
                println!(
                    "{} misplaced sub-env object{}; `nsguard rewrite` moves them to their namespaces",
                    misplaced.len(),
                    plural(misplaced.len())
                );
            }
            if !unresolvable.is_empty() {
                println!(
                    "{} sub-env object{} left as {}: the namespace cannot be told (see each line)",
                    unresolvable.len(),
                    plural(unresolvable.len()),
                    if unresolvable.len() == 1 {
                        "it is"
                    } else {
                        "they are"
                    }
                );
            }
        }
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn rewrite(args: RewriteArgs) -> anyhow::Result<ExitCode> {
    let rewritten = run(&args.manifests)?;
    // Nothing is printed unless every source can be.
    let texts = rewritten
        .iter()
        .map(|source| source.text.as_ref().map_err(Clone::clone))
        .collect::<Result<Vec<&String>, _>>()?;
    let mut out = std::io::stdout().lock();
    for (source, text) in rewritten.iter().zip(texts) {
        match args.output {
            RewriteFormat::Yaml => out.write_all(text.as_bytes()),
            RewriteFormat::Json => {
                out.write_all(manifests::render_json(&source.documents).as_bytes())
            }
        }
        .context("writing to standard output")?;
    }
    out.flush().context("writing to standard output")?;
    for finding in rewritten.iter().flat_map(|r| &r.findings) {
        match finding.misplaced() {
            true => eprintln!("moved: {finding}"),
            false => eprintln!("not moved: {finding}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard policy --placement-mode enforce | kubectl apply -f -
  nsguard policy --placement-mode warn > placement-policy.json")]
pub struct PolicyArgs {
    /// `enforce`: the API server refuses a misplaced create (validationActions Deny);
    /// `warn`: it warns (Warn). `rewrite` and `off` have no policy (exit 2).
    #[arg(long, value_enum, default_value = "enforce")]
    placement_mode: PlacementMode,
    /// Print instead the patch of the shipped placement webhooks that has the API server
    /// call nsguard only where the policy may not name the namespace (a long stack-env
    /// name, which simple-container hashes), for a kustomization beside the policy.
    #[arg(long)]
    webhook_match_conditions: bool,
    #[command(flatten)]
    labels: LabelArgs,
}

/// `nsguard policy`: placement as a ValidatingAdmissionPolicy and its binding (Kubernetes
/// 1.30 and later), printed as a JSON `List`.
pub fn policy(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if args.webhook_match_conditions {
        let patch = placement_policy::webhook_match_conditions(&args.labels.scheme());
        serde_json::to_writer_pretty(&mut out, &patch)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let list = placement_policy::policy(&args.labels.scheme(), args.placement_mode)
        .with_context(|| {
            format!(
                "placement mode {} has no ValidatingAdmissionPolicy (a policy can refuse or warn, not rewrite): use enforce or warn",
                args.placement_mode
                    .to_possible_value()
                    .map_or_else(String::new, |v| v.get_name().to_owned())
            )
        })?;
    serde_json::to_writer_pretty(&mut out, &list)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}
