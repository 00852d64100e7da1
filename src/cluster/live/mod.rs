//! Cluster state from the API server, through the kube client.
//!
//! Every scan starts with a fresh discovery of the namespaced resource types that support
//! `list` (core, every API group, CRDs; no subresources), bounded by its own short timeout,
//! so a type created a second before a delete is counted. The scan then lists the
//! namespace's objects metadata-only (`PartialObjectMetadataList`), once per type whatever
//! the number of label generations (no selector: the owners are read from the labels
//! here), in consistent reads (no `resourceVersion`), concurrently with a bound, all under
//! one deadline.
//!
//! Failures are assumed, not hoped away: the kube client's own retries are off (they could
//! retry a 503 for minutes behind the deadline's back) and replaced by a few jittered
//! retries that fit inside the deadline; a group version whose discovery fails or does not
//! answer in time is named as unverified; a list answered 404 means discovery went stale and
//! is rediscovered before anything is concluded; a type nsguard may not list is named. The
//! guard treats every such gap as unknown (fail closed).
//!
//! One file per concern: `calls` (one bounded, retried call and its errors),
//! `discovery`, `aggregated` (the two-call discovery of servers that serve it), `lists` (paged metadata lists), `scan` (the guard's read of a
//! namespace), `inventory` (the audit's read of the cluster), `volumes` (what a delete
//! destroys for good), `access` (what nsguard may list).

mod access;
mod aggregated;
mod calls;
mod discovery;
mod inventory;
mod lists;
mod resource_types;
mod scan;
mod volume_guard_reads;
mod volumes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;

use crate::cluster::Deadline;
use crate::simple_container::labels::LabelScheme;
pub use access::{AccessReport, Unlistable};
pub use calls::{CallError, LookupError, cause_chain};
pub use discovery::Discovered;
pub use resource_types::{ResourceType, group_skipped};

/// Resource types nsguard does not list unless told otherwise, each for a reason:
/// Events never carry stack labels and are the most numerous objects in a cluster;
/// Secrets would need `list` on every Secret in the cluster (RBAC cannot grant
/// metadata-only reads), and a stack's Secrets always sit beside its Deployment;
/// `metrics.k8s.io` and its subdomains (`custom.metrics.k8s.io`,
/// `external.metrics.k8s.io`) serve computed metrics, not stored objects, and are often
/// down.
pub const DEFAULT_SKIP: [&str; 4] = [
    "events",
    "events.events.k8s.io",
    "secrets",
    "*.metrics.k8s.io",
];

/// Tuning of the live lookup. Each field's default is in its doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveOptions {
    /// List calls in flight at once (16).
    pub concurrency: usize,
    /// How old the last good discovery may be to stand in for a refresh that failed as a
    /// whole (60s). Older, and the lookup fails.
    pub discovery_ttl: Duration,
    /// Bound on one discovery refresh, every group version included (1s). A group version
    /// that has not answered by then is named as unverified.
    pub discovery_timeout: Duration,
    /// `resource.group` ids (`deployments.apps`, `secrets`) or whole groups with their
    /// subdomains (`*.group`) ([`DEFAULT_SKIP`]).
    pub skip: Vec<String>,
    /// Objects per list page (500).
    pub page_size: u32,
    /// Namespace scans in flight at once (4). Each is ~(types x generations) list calls,
    /// so this bounds what nsguard can ask of the API server, however many deletes (or
    /// `--dry-run=server` checks) arrive together. Scans beyond it wait, under the same
    /// deadline. The volume guard's lookups (a few calls each) have a bound of their own,
    /// the same number.
    pub max_concurrent_scans: usize,
    /// Extra attempts of a call answered 429, 503 or 504, or cut off, when they fit before
    /// the deadline (2).
    pub retries: u32,
    /// Ask for aggregated discovery, two calls where the server serves it (true). Off:
    /// the per-group-version documents, as from a server without it; for measuring one
    /// against the other (benches/real_lookup.rs).
    pub aggregated_discovery: bool,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            discovery_ttl: Duration::from_secs(60),
            discovery_timeout: Duration::from_secs(1),
            skip: DEFAULT_SKIP.iter().map(|s| s.to_string()).collect(),
            page_size: 500,
            max_concurrent_scans: 4,
            retries: 2,
            aggregated_discovery: true,
        }
    }
}

/// The API server as a source of namespace contents.
pub struct LiveCluster {
    client: Client,
    /// The API server's URL, for messages.
    server: String,
    scheme: LabelScheme,
    options: LiveOptions,
    /// The last good discovery, the stand-in when a refresh fails as a whole.
    last_good: Mutex<Option<Arc<Discovered>>>,
    scans: tokio::sync::Semaphore,
    /// The volume guard's lookups at once, bounded as the scans are and apart from them,
    /// so a flood of claims' reviews cannot take the namespace guard's share, nor the
    /// other way round.
    claim_lookups: tokio::sync::Semaphore,
}

impl LiveCluster {
    /// A lookup over `client`. The client should have kube's default retries off
    /// ([`client_config`] does that): the lookup makes its own, inside its deadline.
    pub fn new(client: Client, server: String, scheme: LabelScheme, options: LiveOptions) -> Self {
        Self {
            client,
            server,
            scheme,
            scans: tokio::sync::Semaphore::new(options.max_concurrent_scans.max(1)),
            claim_lookups: tokio::sync::Semaphore::new(options.max_concurrent_scans.max(1)),
            options,
            last_good: Mutex::new(None),
        }
    }

    /// Another lookup over the same client and options, with its own bound on lists in
    /// flight and its own discovery: the background audit's, so that it never takes the
    /// namespace guard's share of the API server.
    pub fn with_concurrency(&self, concurrency: usize) -> LiveCluster {
        LiveCluster::new(
            self.client.clone(),
            self.server.clone(),
            self.scheme.clone(),
            LiveOptions {
                concurrency,
                ..self.options.clone()
            },
        )
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A slot among `lookups` (one guard's bound on its lookups at once), waited for
    /// until `deadline`. A slot with no time left is no slot: no call is started, and the
    /// lookup says the guard's `what` lookups were busy.
    async fn slot<'s>(
        &self,
        lookups: &'s tokio::sync::Semaphore,
        what: &'static str,
        deadline: Deadline,
    ) -> Result<tokio::sync::SemaphorePermit<'s>, LookupError> {
        match tokio::time::timeout_at(deadline.at(), lookups.acquire()).await {
            Ok(Ok(permit)) if !deadline.passed() => Ok(permit),
            // Never closed; a closed one would be as good as full.
            Ok(_) | Err(_) => Err(LookupError::Busy {
                what,
                limit: self.options.max_concurrent_scans.max(1),
                timeout: deadline.timeout(),
            }),
        }
    }
}

/// The kube client configuration nsguard uses: kube's default retry layer off (it retries
/// 429/503/504 up to 15 times with backoff up to 1000s, far past any deadline; the lookup
/// retries itself, within its deadline), and a connect timeout well under the deadline.
pub fn client_config(mut config: kube::Config) -> kube::Config {
    config.default_retry = false;
    config.connect_timeout = Some(Duration::from_secs(2));
    config
}
