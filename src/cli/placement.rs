//! `nsguard check` and `nsguard rewrite`: sub-env placement over manifests, before they
//! are applied. Exit codes: check 0 none misplaced, 1 some, 2 bad input; rewrite 0, or 2.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::OutputFormat;
use super::guard_args::LabelArgs;
use crate::manifests::{self, Finding};

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Manifest file, directory (its .yaml/.yml/.json files, recursively) or `-` for
    /// standard input. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    files: Vec<PathBuf>,
    /// Namespace of objects that name none, as `kubectl apply --namespace` would use.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// text (check) or YAML (rewrite) for people; json for machines.
    #[arg(long, short, value_enum, default_value = "text")]
    output: OutputFormat,
    #[command(flatten)]
    labels: LabelArgs,
}

/// Every source rewritten in memory; the findings, and the documents for `rewrite`.
fn run(args: &ManifestArgs) -> anyhow::Result<(Vec<serde_json::Value>, Vec<Finding>)> {
    let scheme = args.labels.scheme();
    let mut documents = Vec::new();
    let mut findings = Vec::new();
    for source in manifests::read_sources(&args.files)? {
        let (docs, found) = manifests::rewrite(&source, &scheme, args.namespace.as_deref())?;
        documents.extend(docs);
        findings.extend(found);
    }
    Ok((documents, findings))
}

pub fn check(args: ManifestArgs) -> anyhow::Result<ExitCode> {
    let (_, findings) = run(&args)?;
    match args.output {
        OutputFormat::Json => {
            let report = serde_json::json!({ "misplaced": findings });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        OutputFormat::Text if findings.is_empty() => println!("no misplaced sub-env objects"),
        OutputFormat::Text => {
            for finding in &findings {
                println!("{finding}");
            }
            println!(
                "{} misplaced sub-env object{}; `nsguard rewrite` moves them to their namespaces",
                findings.len(),
                if findings.len() == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn rewrite(args: ManifestArgs) -> anyhow::Result<ExitCode> {
    let (documents, findings) = run(&args)?;
    let text = manifests::render(&documents, args.output == OutputFormat::Json)
        .map_err(|e| anyhow::anyhow!("rendering the rewritten manifests: {e}"))?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing to standard output")?;
    for finding in &findings {
        eprintln!("moved: {finding}");
    }
    Ok(ExitCode::SUCCESS)
}
