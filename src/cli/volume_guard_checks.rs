//! `nsguard can-create-claim` and `nsguard can-delete-claim`: the volume guard's decision
//! from the command line, against a live cluster or a dump, the same answer the webhook
//! gives (`kubectl --dry-run=server` asks the webhook itself). Exit 0 allowed, 1 refused,
//! 2 error (the lookup failed, bad input, no such claim).
//!
//! Against a live cluster it reads with the caller's own credentials (kubeconfig): the
//! sub-env's claims in every namespace, the volumes and the Namespace, as nsguard does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::OutputFormat;
use super::guard_args::{AskingArgs, GuardInputs};
use crate::admission::VolumeGuard;
use crate::admission::pipeline;
use crate::cluster::{ClaimMetadata, ClusterSource};
use crate::decisions::volume_guard::{ClaimDecision, ClaimOperation, ClaimRequest, Verdict};
use crate::documents::{self, ObjectHead};
use crate::manifests;
use crate::simple_container::labels::LabelScheme;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard can-create-claim -f claim.yaml                  # your kubeconfig's cluster
  helm template ./chart | nsguard can-create-claim -n shop-tenant-a
  nsguard can-create-claim -f claim.yaml --demo -o json   # the example dump")]
pub struct CanCreateClaimArgs {
    /// Manifest file or directory (its .yaml/.yml/.json files) with the
    /// PersistentVolumeClaims to create (other objects are skipped), or `-` for standard
    /// input. Default: standard input.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "PATH",
        default_value = "-"
    )]
    file: PathBuf,
    /// Namespace of claims that name none, as `kubectl create --namespace` would use.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    #[command(flatten)]
    asking: AskingArgs,
    #[command(flatten)]
    inputs: GuardInputs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard can-delete-claim data -n shop                   # your kubeconfig's cluster
  kubectl nsguard can-delete-claim data -n shop -o json   # as a kubectl plugin")]
pub struct CanDeleteClaimArgs {
    /// The PersistentVolumeClaim whose deletion to check.
    name: String,
    /// Its namespace.
    #[arg(short = 'n', long)]
    namespace: String,
    #[command(flatten)]
    asking: AskingArgs,
    #[command(flatten)]
    inputs: GuardInputs,
}

/// A claim from a manifest or the cluster: where it is, and what the guard reads of it.
struct ManifestClaim {
    namespace: String,
    name: String,
    metadata: ClaimMetadata,
}

pub fn can_create_claim(args: CanCreateClaimArgs) -> anyhow::Result<ExitCode> {
    let mut claims = Vec::new();
    // Read as `check` and `rewrite` read their input: a file, a directory, or `-`.
    for source in manifests::read_sources(std::slice::from_ref(&args.file))? {
        for document in manifests::parse(&source)? {
            for (item, value) in documents::objects(&document.value).enumerate() {
                let head = ObjectHead::of(value).map_err(|e| {
                    anyhow::anyhow!(
                        "{} document {}, item {}: {e}",
                        source.name,
                        document.number,
                        item + 1
                    )
                })?;
                if head.kind != "PersistentVolumeClaim" || !head.group().is_empty() {
                    continue;
                }
                let namespace = head
                    .metadata
                    .namespace
                    .clone()
                    .filter(|ns| !ns.is_empty())
                    .or_else(|| args.namespace.clone())
                    .with_context(|| {
                        format!(
                            "claim {:?} names no namespace: give -n NAMESPACE",
                            head.metadata.name
                        )
                    })?;
                claims.push(ManifestClaim {
                    namespace,
                    name: head.metadata.name,
                    metadata: ClaimMetadata {
                        labels: head.metadata.labels,
                        annotations: head.metadata.annotations,
                        ephemeral_pod: crate::decisions::data_at_risk::ephemeral_pod_in_json(
                            &value["metadata"]["ownerReferences"],
                        ),
                    },
                });
            }
        }
    }
    if claims.is_empty() {
        anyhow::bail!("no PersistentVolumeClaim in the input");
    }
    let decisions = runtime()?.block_on(async {
        let (scheme, source) = source(&args.inputs).await?;
        decide(
            ClaimOperation::Create,
            &claims,
            &args.asking,
            &args.inputs,
            &scheme,
            &source,
        )
        .await
    })?;
    print(&decisions, args.asking.output)
}

pub fn can_delete_claim(args: CanDeleteClaimArgs) -> anyhow::Result<ExitCode> {
    let decisions = runtime()?.block_on(async {
        let (scheme, source) = source(&args.inputs).await?;
        let metadata = source
            .claim_metadata(
                &args.namespace,
                &args.name,
                args.inputs.lookup.lookup_timeout,
            )
            .await
            .map_err(|err| anyhow::anyhow!("claim {}/{}: {err}", args.namespace, args.name))?
            .with_context(|| format!("claim {}/{} does not exist", args.namespace, args.name))?;
        let claim = ManifestClaim {
            namespace: args.namespace.clone(),
            name: args.name.clone(),
            metadata,
        };
        decide(
            ClaimOperation::Delete,
            &[claim],
            &args.asking,
            &args.inputs,
            &scheme,
            &source,
        )
        .await
    })?;
    print(&decisions, args.asking.output)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The label scheme and the cluster source, made once per command.
async fn source(inputs: &GuardInputs) -> anyhow::Result<(LabelScheme, ClusterSource)> {
    let scheme = inputs.labels.scheme();
    let source = inputs.source(&scheme).await?;
    Ok((scheme, source))
}

/// Each claim decided as the webhook decides it.
async fn decide(
    operation: ClaimOperation,
    claims: &[ManifestClaim],
    asking: &AskingArgs,
    inputs: &GuardInputs,
    scheme: &LabelScheme,
    source: &ClusterSource,
) -> anyhow::Result<Vec<ClaimDecision>> {
    let config = inputs.guard.config();
    let mut decisions = Vec::new();
    for claim in claims {
        let request = ClaimRequest {
            operation,
            namespace: &claim.namespace,
            name: &claim.name,
            labels: Some(&claim.metadata.labels),
            annotations: Some(&claim.metadata.annotations),
            ephemeral_pod: claim.metadata.ephemeral_pod.as_deref(),
            username: &asking.as_user,
            groups: &asking.as_groups,
        };
        if let Some(invalid) = request.invalid_names() {
            anyhow::bail!("{invalid}");
        }
        let guard = VolumeGuard {
            scheme,
            config: &config,
        };
        let (decision, _) =
            pipeline::decide(&guard, source, &request, inputs.lookup.lookup_timeout).await;
        decisions.push(decision);
    }
    Ok(decisions)
}

/// The decisions printed; the exit code of the worst.
fn print(decisions: &[ClaimDecision], output: OutputFormat) -> anyhow::Result<ExitCode> {
    match output {
        OutputFormat::Text => {
            for decision in decisions {
                println!("{}", decision.message());
            }
        }
        OutputFormat::Json => {
            let values: Vec<serde_json::Value> = decisions
                .iter()
                .map(|d| {
                    let mut value = serde_json::to_value(d)?;
                    value["allowed"] = d.allowed().into();
                    value["message"] = d.message().into();
                    Ok(value)
                })
                .collect::<serde_json::Result<_>>()?;
            println!("{}", serde_json::to_string_pretty(&values)?);
        }
    }
    let failed = decisions
        .iter()
        .any(|d| matches!(d.verdict, Verdict::LookupFailed { .. }));
    Ok(if failed {
        ExitCode::from(super::EXIT_ERROR)
    } else if decisions.iter().all(ClaimDecision::allowed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
