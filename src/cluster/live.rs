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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, PartialObjectMeta, Status};
use tokio::time::Instant;

use crate::audit::{
    Claim, Inventory, LabelledObject, NamespaceMeta, UnownedObject, read_annotations,
};
use crate::data_at_risk::{self, VolumeAtRisk};
use crate::documents::qualified_kind;
use crate::guard::{NamespaceScan, OwnedObject, Unverified};
use crate::labels::{LabelScheme, Owner};

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
    /// deadline.
    pub max_concurrent_scans: usize,
    /// Extra attempts of a call answered 429, 503 or 504, or cut off, when they fit before
    /// the deadline (2).
    pub retries: u32,
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
        }
    }
}

/// Why one call to the API server failed, kept typed until it becomes a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The API server answered with a `Status` (403, 404, 503 of an aggregated API, ...).
    #[error("{}", status_text(.0))]
    Api(Box<Status>),
    /// No usable answer: connection refused or reset, TLS, a body that is not the
    /// expected JSON. The text joins the whole cause chain.
    #[error("{0}")]
    Transport(String),
    /// No answer within the bound.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl CallError {
    /// `resource` could not be read because of this error.
    fn unverified(&self, resource: impl Into<String>) -> Unverified {
        Unverified {
            resource: resource.into(),
            reason: self.to_string(),
            code: self.code(),
        }
    }

    fn from_kube(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) => CallError::Api(status),
            other => CallError::Transport(cause_chain(&other)),
        }
    }

    /// The HTTP status of an API answer.
    pub fn code(&self) -> Option<u16> {
        match self {
            CallError::Api(status) => Some(status.code),
            _ => None,
        }
    }

    /// Worth another attempt: throttled, unavailable, or cut off on the way.
    fn transient(&self) -> bool {
        match self {
            CallError::Api(status) => matches!(status.code, 429 | 503 | 504),
            CallError::Transport(_) => true,
            CallError::Timeout(_) => false,
        }
    }
}

/// A lookup that did not produce a scan.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    /// The deadline passed before every list call was answered; `pending` names (some of)
    /// the types still being listed.
    #[error(
        "the cluster lookup at {server} did not finish within {timeout:?} ({done} of {total} list calls done{})",
        pending_text(.pending)
    )]
    Deadline {
        server: String,
        timeout: Duration,
        done: usize,
        total: usize,
        pending: Vec<String>,
    },
    /// Discovery (`/api`, `/apis`) failed and no good result of the last
    /// [`LiveOptions::discovery_ttl`] can stand in for it.
    #[error("API discovery at {server} failed: {cause}")]
    Discovery {
        server: String,
        #[source]
        cause: CallError,
    },
    /// One read besides discovery and the lists failed: the Namespace itself, the access
    /// review.
    #[error("{what} at {server} failed: {cause}")]
    Read {
        what: &'static str,
        server: String,
        #[source]
        cause: CallError,
    },
    /// [`LiveOptions::max_concurrent_scans`] scans were running and none finished in time.
    #[error(
        "{limit} namespace lookups were already running and none finished within {timeout:?}; retry"
    )]
    Busy { limit: usize, timeout: Duration },
}

impl LookupError {
    /// A short, fixed name for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            LookupError::Deadline { .. } => "deadline",
            LookupError::Discovery { .. } => "discovery",
            LookupError::Read { .. } => "read",
            LookupError::Busy { .. } => "busy",
        }
    }
}

fn pending_text(pending: &[String]) -> String {
    if pending.is_empty() {
        String::new()
    } else {
        format!("; still waiting for {}", pending.join(", "))
    }
}

/// What [`LiveCluster::list_every`] read.
struct Listed<'t, T> {
    /// What the caller kept of each object with an owner, once.
    objects: Vec<T>,
    /// The first error of each type that could not be listed, by id.
    failed: Vec<(&'t str, CallError)>,
}

/// A namespaced resource type that supports `list`.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub resource: ApiResource,
    /// `plural.group`, or `plural` for the core group, as kubectl names types.
    pub id: String,
}

/// One discovery result.
#[derive(Debug)]
pub struct Discovered {
    at: Instant,
    pub types: Vec<ResourceType>,
    /// Group versions whose discovery failed or did not answer in time: their types are
    /// unknown.
    pub failed: Vec<Unverified>,
    /// API calls it took.
    pub calls: usize,
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

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// What `namespace` holds, or an error when the scan cannot finish within `timeout`.
    ///
    /// # Guarantees
    /// - Answers within `timeout` (plus scheduling), however the API server behaves.
    /// - Sees every type discovery serves at the start of the scan; a type that is not
    ///   discovered in time, cannot be listed, or vanished and is still served, is in
    ///   [`NamespaceScan::unverified`], never read as empty.
    pub async fn scan(
        &self,
        namespace: &str,
        timeout: Duration,
    ) -> Result<NamespaceScan, LookupError> {
        let deadline = Instant::now() + timeout;
        let busy = || LookupError::Busy {
            limit: self.options.max_concurrent_scans.max(1),
            timeout,
        };
        let _permit = match tokio::time::timeout_at(deadline, self.scans.acquire()).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; a closed one would be as good as full.
            Ok(Err(_)) | Err(_) => return Err(busy()),
        };
        let progress = Progress::default();
        match tokio::time::timeout_at(
            deadline,
            self.scan_unbounded(namespace, deadline, &progress),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(LookupError::Deadline {
                server: self.server.clone(),
                timeout,
                done: progress.done.load(Ordering::Relaxed),
                total: progress.total.load(Ordering::Relaxed),
                pending: progress.pending(),
            }),
        }
    }

    /// A fresh discovery, bounded by [`LiveOptions::discovery_timeout`] and `deadline`.
    /// When it fails as a whole, the last good one stands in if it is younger than
    /// [`LiveOptions::discovery_ttl`] (logged).
    pub async fn discovery(&self, deadline: Instant) -> Result<Arc<Discovered>, LookupError> {
        let bound = (Instant::now() + self.options.discovery_timeout).min(deadline);
        match self.discover(bound).await {
            Ok(found) => {
                let found = Arc::new(found);
                *self.last_good.lock().unwrap_or_else(|e| e.into_inner()) = Some(found.clone());
                Ok(found)
            }
            Err(cause) => {
                let last = self
                    .last_good
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                match last.filter(|d| d.at.elapsed() < self.options.discovery_ttl) {
                    Some(last) => {
                        tracing::warn!(server = %self.server, error = %cause, age = ?last.at.elapsed(),
                            "discovery refresh failed; using the last good result");
                        Ok(last)
                    }
                    None => Err(LookupError::Discovery {
                        server: self.server.clone(),
                        cause,
                    }),
                }
            }
        }
    }

    /// `/api` and `/apis`, then every group version's resource list, all before `bound`.
    async fn discover(&self, bound: Instant) -> Result<Discovered, CallError> {
        let calls = AtomicUsize::new(0);
        let (core, groups) = tokio::try_join!(
            self.call(bound, &calls, || self.client.list_core_api_versions()),
            self.call(bound, &calls, || self.client.list_api_groups()),
        )?;
        // (rank, group, groupVersion) of every version of every group, the preferred one
        // ranked 0. A kind served only by a version the server does not prefer (a group
        // whose CRDs sit at different versions, an alpha kind) is deleted with the
        // namespace too, so it is listed, as the namespace controller and `kubectl
        // api-resources` find it.
        let mut versions: Vec<(usize, String, String)> = core
            .versions
            .iter()
            .enumerate()
            .map(|(rank, v)| (rank, String::new(), v.clone()))
            .collect();
        for group in groups.groups {
            if group_skipped(&self.options.skip, &group.name) {
                continue;
            }
            let preferred = group
                .preferred_version
                .map(|v| v.group_version)
                .or_else(|| group.versions.first().map(|v| v.group_version.clone()));
            let others: Vec<String> = group
                .versions
                .into_iter()
                .map(|v| v.group_version)
                .filter(|gv| Some(gv) != preferred.as_ref())
                .collect();
            for (rank, gv) in preferred.into_iter().chain(others).enumerate() {
                versions.push((rank, group.name.clone(), gv));
            }
        }
        let (client, calls_ref) = (&self.client, &calls);
        // Every group version at once: each is one small GET, and one that hangs (an
        // aggregated API whose backend is gone) must not hold up the others.
        let mut lists: Vec<_> = stream::iter(versions)
            .map(|(rank, group, gv)| async move {
                let result = if group.is_empty() {
                    self.call(bound, calls_ref, || client.list_core_api_resources(&gv))
                        .await
                } else {
                    self.call(bound, calls_ref, || client.list_api_group_resources(&gv))
                        .await
                };
                (group, rank, gv, result)
            })
            .buffer_unordered(64)
            .collect()
            .await;
        // Per group, the preferred version's kinds first; another version adds only the
        // kinds the group has not shown yet.
        lists.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut types: Vec<ResourceType> = Vec::new();
        let mut seen = HashSet::new();
        let mut failed = Vec::new();
        for (group, _, gv, result) in lists {
            match result {
                Ok(list) => types.extend(
                    listable(&self.options.skip, &group, &gv, list)
                        .filter(|t| seen.insert(t.id.clone())),
                ),
                Err(err) => failed.push(err.unverified(format!("{gv} (discovery)"))),
            }
        }
        types.sort_by(|a, b| a.id.cmp(&b.id));
        failed.sort_by(|a, b| a.resource.cmp(&b.resource));
        Ok(Discovered {
            at: Instant::now(),
            types,
            failed,
            calls: calls.into_inner(),
        })
    }

    /// One API call, attempted again while it fails transiently and a jittered backoff
    /// still fits before `bound`; never past `bound`.
    pub(super) async fn call<T, F, Fut>(
        &self,
        bound: Instant,
        calls: &AtomicUsize,
        request: F,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = kube::Result<T>>,
    {
        self.attempts(bound, Some(bound), calls, request).await
    }

    /// Like [`Self::call`], but a call in flight is left to the caller's own deadline
    /// (the scan's, whose error names what was still pending); retries still stop before
    /// `retry_until`.
    async fn attempts<T, F, Fut>(
        &self,
        retry_until: Instant,
        bound: Option<Instant>,
        calls: &AtomicUsize,
        mut request: F,
    ) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = kube::Result<T>>,
    {
        let mut attempt = 0;
        loop {
            calls.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let answer = match bound {
                Some(bound) => tokio::time::timeout_at(bound, request()).await,
                None => Ok(request().await),
            };
            let err = match answer {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => CallError::from_kube(err),
                Err(_) => {
                    let waited = started.elapsed().as_millis() as u64;
                    return Err(CallError::Timeout(Duration::from_millis(waited)));
                }
            };
            let backoff = jittered(attempt);
            if !err.transient()
                || attempt >= self.options.retries
                || Instant::now() + backoff >= retry_until
            {
                return Err(err);
            }
            tracing::debug!(error = %err, attempt, ?backoff, "API call failed; retrying");
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    async fn scan_unbounded(
        &self,
        namespace: &str,
        deadline: Instant,
        progress: &Progress,
    ) -> Result<NamespaceScan, LookupError> {
        let started = Instant::now();
        let discovered = self.discovery(deadline).await?;
        // A discovery older than this scan is the last good one, standing in for a
        // refresh that failed; its calls were counted by the scan that made it.
        let stale_discovery = (discovered.at < started).then(|| discovered.at.elapsed());
        if stale_discovery.is_none() {
            progress
                .calls
                .fetch_add(discovered.calls, Ordering::Relaxed);
        }
        let mut scan = NamespaceScan {
            resource_types: discovered.types.len(),
            unverified: discovered.failed.clone(),
            stale_discovery,
            ..NamespaceScan::default()
        };
        let mut seen = HashSet::new();
        let gone = self
            .list_types(
                namespace,
                &discovered.types,
                deadline,
                progress,
                &mut scan,
                &mut seen,
            )
            .await;
        if !gone.is_empty() {
            let again = self
                .rediscover(&discovered, &gone, deadline, progress, &mut scan.unverified)
                .await?;
            let still_gone = self
                .list_types(namespace, &again, deadline, progress, &mut scan, &mut seen)
                .await;
            scan.unverified
                .extend(still_gone.into_iter().map(still_served));
        }
        scan.unverified.sort_by(|a, b| a.resource.cmp(&b.resource));
        scan.unverified.dedup_by(|a, b| a.resource == b.resource);
        scan.api_calls = progress.calls.load(Ordering::Relaxed);
        Ok(scan)
    }

    /// After lists of the `gone` types (ids) answered 404: discovery is stale. Ask again;
    /// a type that is no longer served took its objects with it, one that still is
    /// (perhaps at another version) is returned, to be listed again. A type whose group
    /// could not be rediscovered goes into `unverified`: its discovery says nothing.
    async fn rediscover(
        &self,
        discovered: &Discovered,
        gone: &BTreeSet<String>,
        deadline: Instant,
        progress: &Progress,
        unverified: &mut Vec<Unverified>,
    ) -> Result<Vec<ResourceType>, LookupError> {
        let fresh = self.discovery(deadline).await?;
        progress.calls.fetch_add(fresh.calls, Ordering::Relaxed);
        let again: Vec<ResourceType> = fresh
            .types
            .iter()
            .filter(|t| gone.contains(&t.id))
            .cloned()
            .collect();
        for rt in discovered.types.iter().filter(|t| gone.contains(&t.id)) {
            if again.iter().any(|t| t.id == rt.id) {
                continue;
            }
            match discovery_failure(&fresh.failed, &rt.resource.group) {
                Some(failure) => unverified.push(Unverified {
                    resource: rt.id.clone(),
                    reason: format!(
                        "404 NotFound, and rediscovering {} failed: {}",
                        failure.resource, failure.reason
                    ),
                    code: Some(404),
                }),
                None => {
                    tracing::info!(resource = %rt.id, "a resource type went away during the lookup")
                }
            }
        }
        Ok(again)
    }

    /// List every type of `types` in `namespace` into `scan`, once each and without a
    /// selector; returns the ids of the types that answered 404.
    async fn list_types(
        &self,
        namespace: &str,
        types: &[ResourceType],
        deadline: Instant,
        progress: &Progress,
        scan: &mut NamespaceScan,
        seen: &mut HashSet<String>,
    ) -> BTreeSet<String> {
        let listed = self
            .list_every(
                Some(namespace),
                types,
                &[None],
                deadline,
                progress,
                seen,
                |rt, owner, meta| {
                    Some(OwnedObject {
                        owner,
                        kind: qualified_kind(&rt.resource.kind, &rt.resource.group),
                        name: meta.name.unwrap_or_default(),
                    })
                },
            )
            .await;
        scan.objects.extend(listed.objects);
        let mut gone = BTreeSet::new();
        for (id, err) in listed.failed {
            if err.code() == Some(404) {
                gone.insert(id.to_owned());
            } else {
                scan.unverified.push(err.unverified(id));
            }
        }
        gone
    }

    /// Every type of `types` listed once per selector of `selectors` (`None`: no
    /// selector), at most `concurrency` calls at once: in `namespace`, or across all
    /// namespaces. Each object with an owner comes once (it matches several generations'
    /// selectors, and some types are served by two groups, events: `seen` holds the uids
    /// already taken); each type that could not be listed comes with its first error.
    ///
    /// `keep` makes what the caller holds of each object as each type's lists arrive, so
    /// a whole cluster's metadata is never held at once (the audit's memory).
    #[allow(clippy::too_many_arguments)]
    async fn list_every<'t, T>(
        &self,
        namespace: Option<&str>,
        types: &'t [ResourceType],
        selectors: &[Option<String>],
        deadline: Instant,
        progress: &Progress,
        seen: &mut HashSet<String>,
        keep: impl Fn(&'t ResourceType, Owner, ObjectMeta) -> Option<T>,
    ) -> Listed<'t, T> {
        // Jobs as indices: owned values keep the stream's future `Send` for any lifetime.
        let jobs: Vec<(usize, usize)> = (0..types.len())
            .flat_map(|t| (0..selectors.len()).map(move |s| (t, s)))
            .collect();
        progress.total.fetch_add(jobs.len(), Ordering::Relaxed);
        let selectors_ref = selectors;
        let mut results = stream::iter(jobs)
            .map(|(t, s)| async move {
                let rt = &types[t];
                progress.start(&rt.id);
                let result = self
                    .list_matching(
                        namespace,
                        rt,
                        selectors_ref[s].as_deref(),
                        true,
                        deadline,
                        progress,
                    )
                    .await;
                progress.finish(&rt.id);
                (rt, result)
            })
            .buffer_unordered(self.options.concurrency.max(1));
        let mut listed = Listed {
            objects: Vec::new(),
            failed: Vec::new(),
        };
        let mut failed: HashMap<&str, CallError> = HashMap::new();
        while let Some((rt, result)) = results.next().await {
            let items = match result {
                Ok(items) => items,
                Err(err) => {
                    failed.entry(rt.id.as_str()).or_insert(err);
                    continue;
                }
            };
            for meta in items {
                let Some(owner) = meta.labels.as_ref().and_then(|l| self.scheme.owner(l)) else {
                    continue;
                };
                let uid = meta.uid.clone().unwrap_or_default();
                if (uid.is_empty() || seen.insert(uid))
                    && let Some(kept) = keep(rt, owner, meta)
                {
                    listed.objects.push(kept);
                }
            }
        }
        listed.failed = failed.into_iter().collect();
        listed
    }

    /// The metadata of every `rt` object matching `selector` (every object without one),
    /// every page: in `namespace`, or in all namespaces; when `owned_only`, only the
    /// objects whose labels name an owner, dropped page by page (an unselected read of a
    /// namespace with thousands of unlabelled objects never holds them). A consistent
    /// read: no `resourceVersion`, so the API server answers from etcd, never from its
    /// cache.
    async fn list_matching(
        &self,
        namespace: Option<&str>,
        rt: &ResourceType,
        selector: Option<&str>,
        owned_only: bool,
        deadline: Instant,
        progress: &Progress,
    ) -> Result<Vec<ObjectMeta>, CallError> {
        let api: Api<DynamicObject> = match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &rt.resource),
            None => Api::all_with(self.client.clone(), &rt.resource),
        };
        let mut params = ListParams::default().limit(self.options.page_size);
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        let mut out = Vec::new();
        loop {
            let page = self
                .attempts(deadline, None, &progress.calls, || {
                    api.list_metadata(&params)
                })
                .await?;
            // Dropped page by page, before the next page arrives: managed fields and
            // last-applied configurations are KiBs per object, and never read.
            out.extend(
                page.items
                    .into_iter()
                    .filter(|item| {
                        !owned_only
                            || item
                                .metadata
                                .labels
                                .as_ref()
                                .is_some_and(|l| self.scheme.read(l).is_some())
                    })
                    .map(|item: PartialObjectMeta<DynamicObject>| ObjectMeta {
                        managed_fields: None,
                        annotations: item.metadata.annotations.map(read_annotations),
                        ..item.metadata
                    }),
            );
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params.continue_token = Some(token),
                None => return Ok(out),
            }
        }
    }

    /// What the audit reads, from every namespace: the labelled objects of every
    /// discovered type (metadata only, one list per type and label generation, all
    /// namespaces at once), the namespaces, and the PersistentVolumeClaims and
    /// PersistentVolumes (for their volume and reclaim policy). A type that cannot be
    /// listed is in [`Inventory::unverified`]; the whole fails only past `timeout`.
    pub async fn inventory(&self, timeout: Duration) -> Result<Inventory, LookupError> {
        let deadline = Instant::now() + timeout;
        let progress = Progress::default();
        match tokio::time::timeout_at(deadline, self.inventory_unbounded(deadline, &progress)).await
        {
            Ok(result) => result,
            Err(_) => Err(LookupError::Deadline {
                server: self.server.clone(),
                timeout,
                done: progress.done.load(Ordering::Relaxed),
                total: progress.total.load(Ordering::Relaxed),
                pending: progress.pending(),
            }),
        }
    }

    async fn inventory_unbounded(
        &self,
        deadline: Instant,
        progress: &Progress,
    ) -> Result<Inventory, LookupError> {
        use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim};
        let discovered = self.discovery(deadline).await?;
        let mut inventory = Inventory {
            resource_types: discovered.types.len(),
            unverified: discovered.failed.clone(),
            ..Inventory::default()
        };
        let read = |what: &'static str| {
            move |cause| LookupError::Read {
                what,
                server: self.server.clone(),
                cause,
            }
        };
        let all = ListParams::default();
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let listed = self
            .call(deadline, &progress.calls, || namespaces.list_metadata(&all))
            .await
            .map_err(read("listing the namespaces"))?;
        for namespace in listed.items {
            let meta = namespace.metadata;
            if let Some(name) = meta.name {
                let meta = NamespaceMeta {
                    labels: meta.labels.unwrap_or_default(),
                    annotations: meta.annotations.unwrap_or_default(),
                    created: meta.creation_timestamp.map(|t| t.0.to_string()),
                };
                inventory.namespace_meta.insert(name, meta);
            }
        }
        inventory.namespaces = Some(inventory.namespace_meta.keys().cloned().collect());

        let keep = |rt: &ResourceType, _, meta: ObjectMeta| {
            Some(LabelledObject {
                namespace: meta.namespace?,
                api_version: rt.resource.api_version.clone(),
                kind: rt.resource.kind.clone(),
                name: meta.name.unwrap_or_default(),
                labels: meta.labels?,
                annotations: meta.annotations.unwrap_or_default(),
                controller_owned: meta
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.controller == Some(true)),
            })
        };
        // Across all namespaces, a selector per label generation: an unselected read would
        // bring every object of the cluster.
        let selectors: Vec<Option<String>> = self
            .scheme
            .generations()
            .iter()
            .map(|keys| Some(format!("{},{}", keys.app_name, keys.env)))
            .collect();
        let mut seen = HashSet::new();
        let listed = self
            .list_every(
                None,
                &discovered.types,
                &selectors,
                deadline,
                progress,
                &mut seen,
                keep,
            )
            .await;
        inventory.objects = listed.objects;
        let mut gone = BTreeSet::new();
        for (id, err) in listed.failed {
            if err.code() == Some(404) {
                gone.insert(id.to_owned());
            } else {
                inventory.unverified.push(err.unverified(id));
            }
        }
        if !gone.is_empty() {
            // As in a scan: a 404 is a stale discovery, never an empty type.
            let again = self
                .rediscover(
                    &discovered,
                    &gone,
                    deadline,
                    progress,
                    &mut inventory.unverified,
                )
                .await?;
            let listed = self
                .list_every(
                    None, &again, &selectors, deadline, progress, &mut seen, keep,
                )
                .await;
            inventory.objects.extend(listed.objects);
            for (id, err) in listed.failed {
                inventory.unverified.push(match err.code() {
                    Some(404) => still_served(id.to_owned()),
                    _ => err.unverified(id),
                });
            }
        }

        let claims: Api<PersistentVolumeClaim> = Api::all(self.client.clone());
        match self
            .call(deadline, &progress.calls, || claims.list(&all))
            .await
        {
            Ok(list) => inventory.claims = list.items.into_iter().filter_map(claim_of).collect(),
            Err(err) => inventory
                .unverified
                .push(err.unverified("persistentvolumeclaims")),
        }
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        match self
            .call(deadline, &progress.calls, || volumes.list(&all))
            .await
        {
            Ok(list) => {
                inventory.volumes = list
                    .items
                    .into_iter()
                    .filter_map(reclaim_policy_of)
                    .collect()
            }
            Err(err) => inventory
                .unverified
                .push(err.unverified("persistentvolumes")),
        }
        if inventory.unverified.is_empty() {
            self.read_unowned(&mut inventory, deadline, progress)
                .await?;
        }
        inventory
            .unverified
            .sort_by(|a, b| a.resource.cmp(&b.resource));
        inventory.objects.sort_by(|a, b| {
            (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name))
        });
        Ok(inventory)
    }

    /// The PersistentVolumes that deleting `namespace` would destroy for good: its claims
    /// (one list), then each bound volume's reclaim policy (one get each, a few at once),
    /// every call bounded by `deadline` and counted in `calls`.
    pub async fn volumes_at_risk(
        &self,
        namespace: &str,
        deadline: Instant,
        calls: &AtomicUsize,
    ) -> Result<Vec<VolumeAtRisk>, LookupError> {
        use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
        let read = |what: &'static str| {
            move |cause| LookupError::Read {
                what,
                server: self.server.clone(),
                cause,
            }
        };
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let all = ListParams::default();
        let listed = self
            .call(deadline, calls, || claims.list(&all))
            .await
            .map_err(read("listing the PersistentVolumeClaims"))?;
        let claims: Vec<Claim> = listed.items.into_iter().filter_map(claim_of).collect();
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        // Owned names: a borrowing iterator adaptor would make the future not `Send`.
        let names: Vec<String> = claims.iter().filter_map(|c| c.volume.clone()).collect();
        let volumes = &volumes;
        let gets = names.into_iter().map(|name| async move {
            let found = self
                .call(deadline, calls, || volumes.get_opt(&name))
                .await?;
            Ok::<_, CallError>(found.and_then(reclaim_policy_of))
        });
        let mut policies = std::collections::BTreeMap::new();
        let mut answers = stream::iter(gets).buffer_unordered(self.options.concurrency.max(1));
        while let Some(answer) = answers.next().await {
            // A volume that is gone (404) holds no data the delete could destroy.
            if let Some((name, policy)) = answer.map_err(read("reading a PersistentVolume"))? {
                policies.insert(name, policy);
            }
        }
        Ok(data_at_risk::at_risk(&claims, &policies))
    }

    /// Everything in the namespaces that may be lingering (a Namespace with a stack's
    /// labels and no labelled object in it), into [`Inventory::unowned`]: one metadata
    /// list per type and namespace, no selector, over a discovery made now (a type created
    /// during the audit is seen, one deleted is not listed). A list or a group version that
    /// fails is unverified, so no namespace is called empty on a partial read.
    async fn read_unowned(
        &self,
        inventory: &mut Inventory,
        deadline: Instant,
        progress: &Progress,
    ) -> Result<(), LookupError> {
        let occupied: BTreeSet<&str> = inventory
            .objects
            .iter()
            .map(|o| o.namespace.as_str())
            .collect();
        let candidates: Vec<String> = inventory
            .namespace_meta
            .iter()
            .filter(|(ns, meta)| {
                !occupied.contains(ns.as_str()) && self.scheme.owner(&meta.labels).is_some()
            })
            .map(|(ns, _)| ns.clone())
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let fresh = self.discovery(deadline).await?;
        progress.calls.fetch_add(fresh.calls, Ordering::Relaxed);
        if !fresh.failed.is_empty() {
            inventory.unverified.extend(fresh.failed.iter().cloned());
            return Ok(());
        }
        let types = &fresh.types;
        let jobs: Vec<(usize, usize)> = (0..candidates.len())
            .flat_map(|n| (0..types.len()).map(move |t| (n, t)))
            .collect();
        progress.total.fetch_add(jobs.len(), Ordering::Relaxed);
        let candidates_ref = &candidates;
        let results: Vec<_> = stream::iter(jobs)
            .map(|(n, t)| async move {
                let (namespace, rt) = (&candidates_ref[n], &types[t]);
                progress.start(&rt.id);
                let result = self
                    .list_matching(Some(namespace), rt, None, false, deadline, progress)
                    .await;
                progress.finish(&rt.id);
                (namespace, rt, result)
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        for (namespace, rt, result) in results {
            match result {
                Ok(items) => {
                    let unowned = inventory.unowned.entry(namespace.clone()).or_default();
                    unowned.extend(items.into_iter().map(|meta| UnownedObject {
                        api_version: rt.resource.api_version.clone(),
                        kind: rt.resource.kind.clone(),
                        name: meta.name.unwrap_or_default(),
                        annotations: meta.annotations.unwrap_or_default(),
                        created: meta.creation_timestamp.map(|t| t.0.to_string()),
                    }));
                }
                Err(err) => inventory
                    .unverified
                    .push(err.unverified(format!("{} in namespace {namespace}", rt.id))),
            }
        }
        for objects in inventory.unowned.values_mut() {
            objects.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        }
        Ok(())
    }

    /// A Namespace's annotations, or `None` when it does not exist.
    pub async fn namespace_annotations(
        &self,
        namespace: &str,
        timeout: Duration,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, LookupError> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let calls = AtomicUsize::new(0);
        let bound = Instant::now() + timeout;
        match self.call(bound, &calls, || api.get_opt(namespace)).await {
            Ok(found) => Ok(found.map(|ns| ns.metadata.annotations.unwrap_or_default())),
            Err(cause) => Err(LookupError::Read {
                what: "reading the Namespace",
                server: self.server.clone(),
                cause,
            }),
        }
    }
}

/// What nsguard's own identity may list, from one discovery and one
/// SelfSubjectRulesReview.
#[derive(Debug, Clone)]
pub struct AccessReport {
    /// Resource types discovered.
    pub types: usize,
    /// Group versions whose discovery failed.
    pub discovery_failed: Vec<Unverified>,
    /// The discovered types no rule lets nsguard list, or why the review failed.
    pub access: Result<Unlistable, LookupError>,
}

/// Discovered types that nsguard's rules do not let it list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unlistable {
    /// `plural.group` ids.
    pub types: Vec<String>,
    /// The API server said its rules may be incomplete (a webhook authorizer): these
    /// types may in fact be listable.
    pub incomplete: bool,
}

impl LiveCluster {
    /// Which discovered types nsguard may not list: one discovery and one
    /// SelfSubjectRulesReview in the client's default namespace (nsguard's own in a pod).
    /// Rules from ClusterRoleBindings hold in every namespace, so this is what a lookup in
    /// any namespace may list, short of RoleBindings made for single namespaces.
    ///
    /// # Errors
    /// Only when discovery fails: a failed review is part of the report.
    pub async fn access_check(&self, timeout: Duration) -> Result<AccessReport, LookupError> {
        use k8s_openapi::api::authorization::v1::{
            SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
        };
        let deadline = Instant::now() + timeout;
        let discovered = self.discovery(deadline).await?;
        let review = SelfSubjectRulesReview {
            spec: SelfSubjectRulesReviewSpec {
                namespace: Some(self.client.default_namespace().to_owned()),
            },
            ..Default::default()
        };
        let api: Api<SelfSubjectRulesReview> = Api::all(self.client.clone());
        let calls = AtomicUsize::new(0);
        let params = kube::api::PostParams::default();
        let access = self
            .call(deadline, &calls, || api.create(&params, &review))
            .await
            .map(|answer| {
                let status = answer.status.unwrap_or_default();
                Unlistable {
                    types: discovered
                        .types
                        .iter()
                        .filter(|t| {
                            !status.resource_rules.iter().any(|rule| {
                                rule_allows_list(rule, &t.resource.group, &t.resource.plural)
                            })
                        })
                        .map(|t| t.id.clone())
                        .collect(),
                    incomplete: status.incomplete,
                }
            })
            .map_err(|cause| LookupError::Read {
                what: "the access review",
                server: self.server.clone(),
                cause,
            });
        Ok(AccessReport {
            types: discovered.types.len(),
            discovery_failed: discovered.failed.clone(),
            access,
        })
    }
}

/// Whether one RBAC rule grants `list` on every object of `group`/`plural`.
fn rule_allows_list(
    rule: &k8s_openapi::api::authorization::v1::ResourceRule,
    group: &str,
    plural: &str,
) -> bool {
    let has = |values: &Option<Vec<String>>, wanted: &str| {
        values.iter().flatten().any(|v| v == "*" || v == wanted)
    };
    rule.verbs.iter().any(|v| v == "*" || v == "list")
        && has(&rule.api_groups, group)
        && has(&rule.resources, plural)
        && rule.resource_names.as_ref().is_none_or(Vec::is_empty)
}

/// The kube client configuration nsguard uses: kube's default retry layer off (it retries
/// 429/503/504 up to 15 times with backoff up to 1000s, far past any deadline; the lookup
/// retries itself, within its deadline), and a connect timeout well under the deadline.
pub fn client_config(mut config: kube::Config) -> kube::Config {
    config.default_retry = false;
    config.connect_timeout = Some(Duration::from_secs(2));
    config
}

/// Whether `*.group` in `skip` covers `group`: the group itself and every subdomain of it
/// (`*.metrics.k8s.io` covers `metrics.k8s.io` and `custom.metrics.k8s.io`).
pub fn group_skipped(skip: &[String], group: &str) -> bool {
    skip.iter().any(|s| {
        s.strip_prefix("*.").is_some_and(|g| {
            group == g
                || group
                    .strip_suffix(g)
                    .is_some_and(|head| head.ends_with('.'))
        })
    })
}

/// A claim as the guard and the audit read it: where it is, and the volume it is bound to.
fn claim_of(pvc: k8s_openapi::api::core::v1::PersistentVolumeClaim) -> Option<Claim> {
    Some(Claim {
        namespace: pvc.metadata.namespace?,
        name: pvc.metadata.name?,
        volume: pvc.spec.and_then(|s| s.volume_name),
    })
}

/// A volume's name and reclaim policy, when it has both.
fn reclaim_policy_of(pv: k8s_openapi::api::core::v1::PersistentVolume) -> Option<(String, String)> {
    Some((
        pv.metadata.name?,
        pv.spec?.persistent_volume_reclaim_policy?,
    ))
}

/// A type that answered 404 again after it was rediscovered.
fn still_served(id: String) -> Unverified {
    Unverified {
        resource: id,
        reason: "404 NotFound, though discovery still serves the type".to_owned(),
        code: Some(404),
    }
}

/// The discovery failure of `group` (`""` for the core group) among `failed`, whose
/// entries are named `group/version (discovery)` (`v1 (discovery)` for the core group).
fn discovery_failure<'a>(failed: &'a [Unverified], group: &str) -> Option<&'a Unverified> {
    failed.iter().find(|u| {
        let gv = u
            .resource
            .strip_suffix(" (discovery)")
            .unwrap_or(&u.resource);
        match gv.rsplit_once('/') {
            Some((g, _)) => g == group,
            None => group.is_empty(),
        }
    })
}

/// The namespaced, listable, non-subresource types of one group version.
fn listable<'a>(
    skip: &'a [String],
    group: &'a str,
    gv: &'a str,
    list: APIResourceList,
) -> impl Iterator<Item = ResourceType> + 'a {
    let version = gv.rsplit('/').next().unwrap_or(gv).to_owned();
    list.resources.into_iter().filter_map(move |r| {
        if r.name.contains('/') || !r.namespaced || !r.verbs.iter().any(|v| v == "list") {
            return None;
        }
        let id = if group.is_empty() {
            r.name.clone()
        } else {
            format!("{}.{group}", r.name)
        };
        if skip.contains(&id) {
            return None;
        }
        Some(ResourceType {
            resource: ApiResource {
                group: group.to_owned(),
                version: version.clone(),
                api_version: gv.to_owned(),
                kind: r.kind,
                plural: r.name,
            },
            id,
        })
    })
}

/// What one scan has done so far, for the deadline's message and the call count.
#[derive(Default)]
struct Progress {
    done: AtomicUsize,
    total: AtomicUsize,
    calls: AtomicUsize,
    /// Types with a list call in flight, and how many.
    in_flight: Mutex<HashMap<String, usize>>,
}

impl Progress {
    fn start(&self, id: &str) {
        *self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_owned())
            .or_default() += 1;
    }

    fn finish(&self, id: &str) {
        self.done.fetch_add(1, Ordering::Relaxed);
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = in_flight.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(id);
            }
        }
    }

    /// Up to five types still being listed, sorted.
    fn pending(&self) -> Vec<String> {
        let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = in_flight.keys().cloned().collect();
        ids.sort();
        let more = ids.len().saturating_sub(5);
        ids.truncate(5);
        if more > 0 {
            ids.push(format!("{more} more"));
        }
        ids
    }
}

/// 50 ms doubling per attempt, each drawn between half and the full value, so retries
/// from many lookups do not arrive together.
fn jittered(attempt: u32) -> Duration {
    let full = 50u64 << attempt.min(6);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(full / 2 + random % (full / 2 + 1))
}

/// An API `Status` in a few words: code, reason and message.
fn status_text(status: &Status) -> String {
    let reason = if status.reason.is_empty() {
        "error"
    } else {
        &status.reason
    };
    if status.message.is_empty() {
        format!("{} {reason}", status.code)
    } else {
        format!("{} {reason}: {}", status.code, status.message)
    }
}

/// An error and its causes in one line, each said once (wrappers often repeat their
/// source's text).
pub fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(err) = current {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_glob_covers_the_group_and_its_subdomains_only() {
        let skip = vec!["*.metrics.k8s.io".to_owned()];
        for group in [
            "metrics.k8s.io",
            "custom.metrics.k8s.io",
            "external.metrics.k8s.io",
        ] {
            assert!(group_skipped(&skip, group), "{group}");
        }
        for group in [
            "apps",
            "xmetrics.k8s.io",
            "metrics.k8s.io.evil.com",
            "k8s.io",
        ] {
            assert!(!group_skipped(&skip, group), "{group}");
        }
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        for attempt in 0..4 {
            let full = 50u64 << attempt;
            for _ in 0..50 {
                let d = jittered(attempt).as_millis() as u64;
                assert!(d >= full / 2 && d <= full, "{attempt}: {d}");
            }
        }
    }
}
