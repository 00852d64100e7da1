//! The flags that configure the guard's inputs, shared by `serve` and `can-delete`:
//! label keys, where cluster state comes from, and the guard policy.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::cluster::{ClusterDump, ClusterSource, LiveCluster, LiveOptions};
use crate::guard::{GuardConfig, GuardPolicy};
use crate::labels::{LabelKeys, LabelScheme};

/// The realistic example dump built into the binary, served when no cluster is configured.
pub const EXAMPLE_DUMP: &str = include_str!("../../examples/cluster-dump.yaml");

/// Everything the guard needs to decide, as flags: one group shared by every command
/// that decides namespace deletes.
#[derive(Debug, Args, Clone)]
pub struct GuardInputs {
    #[command(flatten)]
    pub labels: LabelArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub guard: GuardArgs,
}

#[derive(Debug, Args, Clone)]
pub struct LabelArgs {
    /// One label generation as APP_NAME_KEY,ENV_KEY,PARENT_ENV_KEY (repeatable, newest
    /// first). Default: simple-container's three generations.
    #[arg(
        long = "label-keys",
        env = "NSGUARD_LABEL_KEYS",
        value_delimiter = ';',
        value_name = "KEYS"
    )]
    label_keys: Vec<LabelKeys>,
}

impl LabelArgs {
    pub fn scheme(&self) -> LabelScheme {
        LabelScheme::new(self.label_keys.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// Read cluster state from this dump (`kubectl get ... -A -o yaml|json`) instead of
    /// the API server.
    #[arg(long, env = "NSGUARD_CLUSTER_DUMP", value_name = "FILE")]
    pub cluster_dump: Option<PathBuf>,
    /// Deadline of the guard's cluster lookup; past it the delete is denied.
    #[arg(long, env = "NSGUARD_LOOKUP_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub lookup_timeout: Duration,
    /// List calls in flight at once during a lookup.
    #[arg(long, env = "NSGUARD_LOOKUP_CONCURRENCY", default_value_t = 16)]
    lookup_concurrency: usize,
    /// Namespace lookups in flight at once (each is many list calls); more wait within
    /// --lookup-timeout, then are denied (fail closed).
    #[arg(long, env = "NSGUARD_MAX_CONCURRENT_LOOKUPS", default_value_t = 4)]
    max_concurrent_lookups: usize,
    /// How long API discovery results are reused.
    #[arg(long, env = "NSGUARD_DISCOVERY_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    discovery_ttl: Duration,
    /// Resource types not listed (`plural.group`, or `*.group` for a whole group),
    /// comma-separated or repeated. Replaces the default list.
    #[arg(
        long = "skip-resource",
        env = "NSGUARD_SKIP_RESOURCES",
        value_delimiter = ',',
        default_values_t = crate::cluster::live::DEFAULT_SKIP.map(String::from)
    )]
    skip_resources: Vec<String>,
}

/// Where cluster state comes from when no --cluster-dump is given.
pub enum Fallback {
    /// Serve the built-in example (the README's first command, no cluster needed).
    Example,
    /// Refuse: the command needs a real answer.
    Error,
}

impl ClusterArgs {
    /// The cluster source: the dump if given; else the API server when a cluster is
    /// configured (in-cluster or kubeconfig); else `fallback`.
    pub async fn source(
        &self,
        scheme: &LabelScheme,
        fallback: Fallback,
    ) -> anyhow::Result<ClusterSource> {
        if let Some(path) = &self.cluster_dump {
            let dump = ClusterDump::load(path, scheme)?;
            tracing::info!(path = %path.display(), objects = dump.object_count(), "cluster state from a dump file");
            return Ok(ClusterSource::Dump(dump));
        }
        if cluster_configured() {
            let config = kube::Config::infer()
                .await
                .context("loading the cluster configuration (in-cluster or kubeconfig)")?;
            tracing::info!(server = %config.cluster_url, "cluster state from the API server");
            let client =
                kube::Client::try_from(config).context("building the Kubernetes client")?;
            let options = LiveOptions {
                concurrency: self.lookup_concurrency.max(1),
                discovery_ttl: self.discovery_ttl,
                skip: self.skip_resources.clone(),
                max_concurrent_scans: self.max_concurrent_lookups.max(1),
                ..LiveOptions::default()
            };
            return Ok(ClusterSource::Live(LiveCluster::new(
                client,
                scheme.clone(),
                options,
            )));
        }
        match fallback {
            Fallback::Example => {
                let dump = ClusterDump::parse(EXAMPLE_DUMP, scheme)
                    .context("the built-in example dump")?;
                tracing::warn!(
                    objects = dump.object_count(),
                    "no cluster configured and no --cluster-dump: serving the built-in example dump (examples/cluster-dump.yaml)"
                );
                Ok(ClusterSource::Dump(dump))
            }
            Fallback::Error => anyhow::bail!(
                "no cluster state: pass --cluster-dump FILE, or configure a cluster (KUBECONFIG, ~/.kube/config, or in-cluster)"
            ),
        }
    }
}

/// Whether the kube client has a cluster to talk to: in a pod, or a kubeconfig exists.
fn cluster_configured() -> bool {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return true;
    }
    if let Some(paths) = std::env::var_os("KUBECONFIG") {
        return std::env::split_paths(&paths).any(|p| p.exists());
    }
    std::env::var_os("HOME").is_some_and(|home| PathBuf::from(home).join(".kube/config").exists())
}

#[derive(Debug, Args, Clone)]
pub struct GuardArgs {
    /// multi-owner: deny while objects of 2+ stacks remain; non-empty: deny while any
    /// stack-owned object remains.
    #[arg(
        long,
        env = "NSGUARD_GUARD_POLICY",
        value_enum,
        default_value = "multi-owner"
    )]
    guard_policy: GuardPolicy,
    /// User allowed to delete any namespace (repeatable or comma-separated).
    #[arg(
        long = "exempt-user",
        env = "NSGUARD_EXEMPT_USERS",
        value_delimiter = ','
    )]
    exempt_users: Vec<String>,
    /// Group whose members may delete any namespace (repeatable or comma-separated).
    #[arg(
        long = "exempt-group",
        env = "NSGUARD_EXEMPT_GROUPS",
        value_delimiter = ','
    )]
    exempt_groups: Vec<String>,
}

impl GuardArgs {
    pub fn config(&self) -> GuardConfig {
        GuardConfig {
            policy: self.guard_policy,
            exempt_users: self.exempt_users.clone(),
            exempt_groups: self.exempt_groups.clone(),
        }
    }
}
