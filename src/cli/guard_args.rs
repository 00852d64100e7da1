//! The flags that configure the guard's inputs, shared by `serve` and `can-delete`:
//! label keys, where cluster state comes from, and the guard policy.

use std::path::PathBuf;
use std::time::Duration;

use std::num::NonZeroUsize;

use anyhow::{Context, bail};
use clap::Args;

use crate::cluster::{ClusterDump, ClusterSource, LiveCluster, LiveOptions};
use crate::decisions::namespace_guard::{GuardConfig, GuardPolicy};
use crate::simple_container::labels::{LabelKeys, LabelScheme};

/// The realistic example dump built into the binary, served with `--demo`.
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
    pub lookup: LookupArgs,
    #[command(flatten)]
    pub guard: GuardArgs,
}

impl GuardInputs {
    /// The cluster source, with the bound on concurrent namespace lookups.
    pub async fn source(&self, scheme: &LabelScheme) -> anyhow::Result<ClusterSource> {
        self.cluster
            .source_with(scheme, self.lookup.max_concurrent_lookups.get())
            .await
    }
}

/// The bounds of one namespace-delete lookup: for the commands that decide deletes, not
/// for `audit` and `dump`, which read the whole cluster under their own `--timeout`.
#[derive(Debug, Args, Clone)]
pub struct LookupArgs {
    /// Deadline of the guard's cluster lookup; past it the delete is denied.
    #[arg(long, env = "NSGUARD_LOOKUP_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub lookup_timeout: Duration,
    /// Namespace lookups in flight at once (each is many list calls); more wait within
    /// --lookup-timeout, then are denied (fail closed).
    #[arg(long, env = "NSGUARD_MAX_CONCURRENT_LOOKUPS", default_value_t = NonZeroUsize::new(4).unwrap())]
    max_concurrent_lookups: NonZeroUsize,
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
    /// Decide over the example dump built into the binary (examples/cluster-dump.yaml):
    /// a first look with no cluster, never a real cluster's state.
    #[arg(long, conflicts_with_all = ["cluster_dump", "kubeconfig", "context"])]
    pub demo: bool,
    /// Read cluster state from this dump (`kubectl get ... -A -o yaml|json`) instead of
    /// the API server.
    #[arg(
        long,
        env = "NSGUARD_CLUSTER_DUMP",
        value_name = "FILE",
        conflicts_with_all = ["kubeconfig", "context"]
    )]
    pub cluster_dump: Option<PathBuf>,
    /// The kubeconfig file, as in kubectl. Without it: $KUBECONFIG, else the pod's
    /// service account, else ~/.kube/config. A file that is named and missing or broken
    /// is an error, never a fallback.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use, as in kubectl (default: its current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// List calls in flight at once during a lookup.
    #[arg(long, env = "NSGUARD_LOOKUP_CONCURRENCY", default_value_t = NonZeroUsize::new(16).unwrap())]
    lookup_concurrency: NonZeroUsize,
    /// Every lookup rediscovers the API's resource types within this bound, so a type
    /// created a second before a delete is counted; a group version that does not answer
    /// in time is named and the delete denied.
    #[arg(long, env = "NSGUARD_DISCOVERY_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    discovery_timeout: Duration,
    /// How old the last good discovery may be to stand in when a refresh fails as a
    /// whole (/api or /apis unanswered). Older, and the delete is denied.
    #[arg(long, env = "NSGUARD_DISCOVERY_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    discovery_ttl: Duration,
    /// Resource types not listed (`plural.group`, or `*.group` for a group and its
    /// subdomains), comma-separated or repeated. Replaces the default list.
    #[arg(
        long = "skip-resource",
        env = "NSGUARD_SKIP_RESOURCES",
        value_delimiter = ',',
        default_values_t = crate::cluster::live::DEFAULT_SKIP.map(String::from)
    )]
    skip_resources: Vec<String>,
}

impl ClusterArgs {
    /// The cluster source: the built-in example with --demo, a dump with --cluster-dump,
    /// else the API server of the configured cluster. Nothing is guessed: a named
    /// configuration that is broken, or no configuration at all, is an error.
    pub async fn source(&self, scheme: &LabelScheme) -> anyhow::Result<ClusterSource> {
        self.source_with(scheme, LiveOptions::default().max_concurrent_scans)
            .await
    }

    /// [`Self::source`], with at most `max_concurrent_scans` namespace lookups at once.
    async fn source_with(
        &self,
        scheme: &LabelScheme,
        max_concurrent_scans: usize,
    ) -> anyhow::Result<ClusterSource> {
        if self.demo {
            let dump =
                ClusterDump::parse(EXAMPLE_DUMP, scheme).context("the built-in example dump")?;
            tracing::warn!(
                objects = dump.object_count(),
                "--demo: deciding over the built-in example dump (examples/cluster-dump.yaml), not a cluster"
            );
            return Ok(ClusterSource::Dump(dump));
        }
        if let Some(path) = &self.cluster_dump {
            let dump = ClusterDump::load(path, scheme)?;
            tracing::info!(path = %path.display(), objects = dump.object_count(), "cluster state from a dump file");
            return Ok(ClusterSource::Dump(dump));
        }
        let config = self.kube_config().await?;
        let server = config.cluster_url.to_string();
        tracing::info!(server = %server, "cluster state from the API server");
        let client = kube::Client::try_from(crate::cluster::live::client_config(config))
            .context("building the Kubernetes client")?;
        Ok(ClusterSource::Live(LiveCluster::new(
            client,
            server,
            scheme.clone(),
            LiveOptions {
                max_concurrent_scans,
                ..self.live_options()
            },
        )))
    }

    pub fn live_options(&self) -> LiveOptions {
        LiveOptions {
            concurrency: self.lookup_concurrency.get(),
            discovery_ttl: self.discovery_ttl,
            discovery_timeout: self.discovery_timeout,
            skip: self.skip_resources.clone(),
            ..LiveOptions::default()
        }
    }

    /// The kube client configuration, found as controller-runtime finds it: --kubeconfig,
    /// then $KUBECONFIG, then the pod's service account, then ~/.kube/config.
    async fn kube_config(&self) -> anyhow::Result<kube::Config> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let from_files = |paths: Vec<PathBuf>, origin: &'static str| async move {
            let mut merged = kube::config::Kubeconfig::default();
            for path in &paths {
                if !path.exists() {
                    bail!("{origin} names {}, which does not exist", path.display());
                }
                let file = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                merged = merged
                    .merge(file)
                    .with_context(|| format!("merging kubeconfig {}", path.display()))?;
            }
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            kube::Config::from_custom_kubeconfig(merged, &options)
                .await
                .with_context(|| format!("kubeconfig {}", shown.join(":")))
        };
        if let Some(path) = &self.kubeconfig {
            return from_files(vec![path.clone()], "--kubeconfig").await;
        }
        if let Some(value) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            let paths: Vec<PathBuf> = std::env::split_paths(&value)
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
            return from_files(paths, "KUBECONFIG").await;
        }
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            if self.context.is_some() {
                bail!("--context needs a kubeconfig; in a pod nsguard uses its service account");
            }
            return kube::Config::incluster()
                .context("loading the in-cluster configuration (service account)");
        }
        let home = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube/config"));
        match home {
            Some(path) if path.exists() => from_files(vec![path], "~/.kube/config").await,
            _ => bail!(
                "no cluster configured: pass --kubeconfig FILE, set KUBECONFIG, run in a pod, \
                 or create ~/.kube/config; or decide offline with --cluster-dump FILE, or over \
                 the built-in example with --demo"
            ),
        }
    }
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
    /// User allowed to delete any namespace, and past the volume guard (repeatable or
    /// comma-separated).
    #[arg(
        long = "exempt-user",
        env = "NSGUARD_EXEMPT_USERS",
        value_delimiter = ','
    )]
    exempt_users: Vec<String>,
    /// Group whose members may delete any namespace, and pass the volume guard (repeatable
    /// or comma-separated).
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

/// Who asks, for the exemptions, and how to print the answer: the decision commands'.
#[derive(Debug, Args)]
pub struct AskingArgs {
    /// Evaluate exemptions as this user.
    #[arg(long = "as", value_name = "USER", default_value = "")]
    pub as_user: String,
    /// Evaluate exemptions as a member of this group (repeatable).
    #[arg(long = "as-group", value_name = "GROUP")]
    pub as_groups: Vec<String>,
    /// text for people, json for machines.
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: super::OutputFormat,
}
