//! `nsguard can-delete NAMESPACE`: the guard's decision from the command line, against a
//! live cluster or a dump. Exit 0 allowed, 1 denied, 2 error (the lookup failed, or the
//! namespace does not exist).
//!
//! Against a live cluster it lists with the caller's own credentials (kubeconfig), so its
//! answer is the webhook's only where the caller may list what nsguard may; types the
//! caller may not list are named, and the answer is then a denial, as the webhook's.

use std::process::ExitCode;

use clap::Args;

use super::OutputFormat;
use super::guard_args::{AskingArgs, GuardInputs};
use crate::admission::NamespaceGuard;
use crate::admission::pipeline;
use crate::decisions::namespace_guard::{DeleteRequest, Verdict};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nsguard can-delete pay-space-wallet                     # your kubeconfig's cluster
  nsguard can-delete pay-space-wallet --context prod -o json
  nsguard can-delete pay-space-wallet --demo             # the example dump
  kubectl nsguard can-delete pay-space-wallet            # as a kubectl plugin")]
pub struct CanDeleteArgs {
    /// The namespace whose deletion to check.
    namespace: String,
    #[command(flatten)]
    asking: AskingArgs,
    #[command(flatten)]
    inputs: GuardInputs,
}

pub fn can_delete(args: CanDeleteArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let scheme = args.inputs.labels.scheme();
        let source = args.inputs.source(&scheme).await?;
        let timeout = args.inputs.lookup.lookup_timeout;
        let Some(annotations) = source
            .namespace_annotations(&args.namespace, timeout)
            .await
            .map_err(|err| anyhow::anyhow!("namespace {:?}: {err}", args.namespace))?
        else {
            anyhow::bail!("namespace {:?} does not exist", args.namespace);
        };
        let request = DeleteRequest {
            namespace: &args.namespace,
            username: &args.asking.as_user,
            groups: &args.asking.as_groups,
            annotations: Some(&annotations),
        };
        let config = args.inputs.guard.config();
        let guard = NamespaceGuard { config: &config };
        let (decision, _) = pipeline::decide(&guard, &source, &request, timeout).await;
        match args.asking.output {
            OutputFormat::Text => println!("{}", decision.message()),
            OutputFormat::Json => {
                let mut value = serde_json::to_value(&decision)?;
                value["allowed"] = decision.allowed().into();
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
        }
        Ok(match decision.verdict {
            Verdict::LookupFailed { .. } => ExitCode::from(super::EXIT_ERROR),
            _ if decision.allowed() => ExitCode::SUCCESS,
            _ => ExitCode::from(1),
        })
    })
}
