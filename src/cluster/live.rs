//! Cluster state from the API server, through the kube client.
//!
//! Discovery finds every namespaced resource type that supports `list` (core, every API
//! group, CRDs; no subresources), cached for `discovery_ttl`. A scan then lists the
//! namespace's objects metadata-only (`PartialObjectMetadataList`), filtered server-side
//! by one label selector per label generation, concurrently with a bound, all under one
//! deadline. Types that cannot be listed are named in the result, and the guard treats
//! them as unknown (fail closed).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryFutureExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, PartialObjectMeta};

use crate::documents::qualified_kind;
use crate::guard::{NamespaceScan, OwnedObject, Unverified};
use crate::labels::LabelScheme;

/// Resource types nsguard does not list unless told otherwise, each for a reason:
/// Events never carry stack labels and are the most numerous objects in a cluster;
/// Secrets would need `list` on every Secret in the cluster (RBAC cannot grant
/// metadata-only reads), and a stack's Secrets always sit beside its Deployment;
/// `metrics.k8s.io` serves computed PodMetrics, not stored objects, and is often down.
pub const DEFAULT_SKIP: [&str; 4] = [
    "events",
    "events.events.k8s.io",
    "secrets",
    "*.metrics.k8s.io",
];

/// Tuning of the live lookup.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// List calls in flight at once.
    pub concurrency: usize,
    /// How long a discovery result is reused.
    pub discovery_ttl: Duration,
    /// `resource.group` ids (`deployments.apps`, `secrets`) or whole groups (`*.group`).
    pub skip: Vec<String>,
    /// Objects per list page.
    pub page_size: u32,
    /// Namespace scans in flight at once. Each is ~(types x generations) list calls, so
    /// this bounds what nsguard can ask of the API server, however many deletes (or
    /// `--dry-run=server` checks) arrive together. Scans beyond it wait, under the same
    /// deadline.
    pub max_concurrent_scans: usize,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            discovery_ttl: Duration::from_secs(60),
            skip: DEFAULT_SKIP.iter().map(|s| s.to_string()).collect(),
            page_size: 500,
            max_concurrent_scans: 4,
        }
    }
}

/// A lookup that did not produce a scan.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    #[error(
        "the cluster lookup did not finish within {timeout:?} ({done} of {total} list calls done)"
    )]
    Deadline {
        timeout: Duration,
        done: usize,
        total: usize,
    },
    #[error("API discovery failed: {0}")]
    Discovery(String),
    #[error(
        "{limit} namespace lookups were already running and none finished within {timeout:?}; retry"
    )]
    Busy { limit: usize, timeout: Duration },
}

/// A namespaced resource type that supports `list`.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub resource: ApiResource,
    /// `plural.group`, or `plural` for the core group, as kubectl names types.
    pub id: String,
}

#[derive(Debug, Clone)]
struct Discovered {
    at: Instant,
    types: Arc<Vec<ResourceType>>,
    /// Group versions whose discovery failed: their types are unknown.
    failed: Arc<Vec<Unverified>>,
}

/// The API server as a source of namespace contents.
pub struct LiveCluster {
    client: Client,
    scheme: LabelScheme,
    options: LiveOptions,
    discovered: tokio::sync::Mutex<Option<Discovered>>,
    scans: tokio::sync::Semaphore,
}

impl LiveCluster {
    pub fn new(client: Client, scheme: LabelScheme, options: LiveOptions) -> Self {
        Self {
            client,
            scheme,
            scans: tokio::sync::Semaphore::new(options.max_concurrent_scans.max(1)),
            options,
            discovered: tokio::sync::Mutex::new(None),
        }
    }

    /// What `namespace` holds, or an error when the scan cannot finish within `timeout`.
    pub async fn scan(
        &self,
        namespace: &str,
        timeout: Duration,
    ) -> Result<NamespaceScan, LookupError> {
        let deadline = tokio::time::Instant::now() + timeout;
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
        match tokio::time::timeout_at(deadline, self.scan_unbounded(namespace, &progress)).await {
            Ok(result) => result,
            Err(_) => Err(LookupError::Deadline {
                timeout,
                done: progress.done.load(Ordering::Relaxed),
                total: progress.total.load(Ordering::Relaxed),
            }),
        }
    }

    /// Discovery, reused while fresh. A failed refresh falls back to the previous result
    /// (logged): resource types change rarely, and failing every delete because one
    /// discovery call failed would help no one.
    pub async fn resource_types(
        &self,
    ) -> Result<(Arc<Vec<ResourceType>>, Arc<Vec<Unverified>>), LookupError> {
        let mut cached = self.discovered.lock().await;
        if let Some(found) = cached
            .as_ref()
            .filter(|d| d.at.elapsed() < self.options.discovery_ttl)
        {
            return Ok((found.types.clone(), found.failed.clone()));
        }
        match self.discover().await {
            Ok((types, failed)) => {
                tracing::debug!(
                    types = types.len(),
                    failed = failed.len(),
                    "discovery refreshed"
                );
                let found = cached.insert(Discovered {
                    at: Instant::now(),
                    types: Arc::new(types),
                    failed: Arc::new(failed),
                });
                Ok((found.types.clone(), found.failed.clone()))
            }
            Err(err) => match cached.as_ref() {
                Some(stale) => {
                    tracing::warn!(error = %err, age = ?stale.at.elapsed(), "discovery refresh failed; using the previous result");
                    Ok((stale.types.clone(), stale.failed.clone()))
                }
                None => Err(err),
            },
        }
    }

    async fn discover(&self) -> Result<(Vec<ResourceType>, Vec<Unverified>), LookupError> {
        let discovery_error = |e: kube::Error| LookupError::Discovery(describe(&e));
        let (core, groups) = tokio::try_join!(
            self.client
                .list_core_api_versions()
                .map_err(discovery_error),
            self.client.list_api_groups().map_err(discovery_error),
        )?;
        // (group, groupVersion) at each group's preferred version.
        let mut versions: Vec<(String, String)> = core
            .versions
            .first()
            .map(|v| (String::new(), v.clone()))
            .into_iter()
            .collect();
        for group in groups.groups {
            if self.skips_group(&group.name) {
                continue;
            }
            let preferred = group
                .preferred_version
                .map(|v| v.group_version)
                .or_else(|| group.versions.first().map(|v| v.group_version.clone()));
            if let Some(gv) = preferred {
                versions.push((group.name, gv));
            }
        }
        let client = &self.client;
        let lists: Vec<_> = stream::iter(versions)
            .map(|(group, gv)| async move {
                let result = if group.is_empty() {
                    client.list_core_api_resources(&gv).await
                } else {
                    client.list_api_group_resources(&gv).await
                };
                (group, gv, result)
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        let mut types = Vec::new();
        let mut failed = Vec::new();
        for (group, gv, result) in lists {
            match result {
                Ok(list) => types.extend(self.listable(&group, &gv, list)),
                Err(err) => failed.push(Unverified {
                    resource: format!("{gv} (discovery)"),
                    reason: describe(&err),
                }),
            }
        }
        types.sort_by(|a, b| a.id.cmp(&b.id));
        failed.sort_by(|a, b| a.resource.cmp(&b.resource));
        Ok((types, failed))
    }

    fn skips_group(&self, group: &str) -> bool {
        self.options
            .skip
            .iter()
            .any(|s| s.strip_prefix("*.").is_some_and(|g| g == group))
    }

    /// The namespaced, listable, non-subresource types of one group version.
    fn listable<'a>(
        &'a self,
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
            if self.options.skip.contains(&id) {
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

    async fn scan_unbounded(
        &self,
        namespace: &str,
        progress: &Progress,
    ) -> Result<NamespaceScan, LookupError> {
        let (types, failed_discovery) = self.resource_types().await?;
        let selectors: Vec<String> = self
            .scheme
            .generations()
            .iter()
            .map(|keys| format!("{},{}", keys.app_name, keys.env))
            .collect();
        // Jobs as indices: owned values keep the stream's future `Send` for any lifetime.
        let jobs: Vec<(usize, usize)> = (0..types.len())
            .flat_map(|t| (0..selectors.len()).map(move |s| (t, s)))
            .collect();
        progress.total.store(jobs.len(), Ordering::Relaxed);
        let (types_ref, selectors_ref) = (&types, &selectors);
        let results: Vec<_> = stream::iter(jobs)
            .map(|(t, s)| async move {
                let rt = &types_ref[t];
                let result = self.list_owned(namespace, rt, &selectors_ref[s]).await;
                progress.done.fetch_add(1, Ordering::Relaxed);
                (rt, result)
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;

        let mut seen = HashSet::new();
        let mut scan = NamespaceScan {
            resource_types: types.len(),
            unverified: failed_discovery.to_vec(),
            ..NamespaceScan::default()
        };
        let mut failed_ids = HashSet::new();
        for (rt, result) in results {
            match result {
                Ok(objects) => {
                    // The same object matches several generations' selectors, and some
                    // types are served by two groups (events): count each uid once.
                    for (uid, object) in objects {
                        if uid.is_empty() || seen.insert(uid) {
                            scan.objects.push(object);
                        }
                    }
                }
                Err(reason) => {
                    if failed_ids.insert(rt.id.clone()) {
                        scan.unverified.push(Unverified {
                            resource: rt.id.clone(),
                            reason,
                        });
                    }
                }
            }
        }
        scan.unverified.sort_by(|a, b| a.resource.cmp(&b.resource));
        Ok(scan)
    }

    /// Every object of one type in the namespace matching one selector, page by page.
    async fn list_owned(
        &self,
        namespace: &str,
        rt: &ResourceType,
        selector: &str,
    ) -> Result<Vec<(String, OwnedObject)>, String> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &rt.resource);
        let kind = qualified_kind(&rt.resource.kind, &rt.resource.group);
        let mut params = ListParams::default()
            .labels(selector)
            .limit(self.options.page_size);
        let mut out = Vec::new();
        loop {
            let page = match api.list_metadata(&params).await {
                Ok(page) => page,
                // The type went away between discovery and the list (a CRD deleted).
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(out),
                Err(err) => return Err(describe(&err)),
            };
            out.extend(page.items.into_iter().filter_map(
                |item: PartialObjectMeta<DynamicObject>| {
                    let meta = item.metadata;
                    let owner = self.scheme.owner(meta.labels.as_ref()?)?;
                    Some((
                        meta.uid.unwrap_or_default(),
                        OwnedObject {
                            owner,
                            kind: kind.clone(),
                            name: meta.name.unwrap_or_default(),
                        },
                    ))
                },
            ));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params.continue_token = Some(token),
                None => return Ok(out),
            }
        }
    }

    /// A Namespace's annotations (for the CLI's break-glass check).
    pub async fn namespace_annotations(
        &self,
        namespace: &str,
    ) -> anyhow::Result<Option<std::collections::BTreeMap<String, String>>> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        Ok(api
            .get_opt(namespace)
            .await?
            .map(|ns| ns.metadata.annotations.unwrap_or_default()))
    }
}

#[derive(Default)]
struct Progress {
    done: AtomicUsize,
    total: AtomicUsize,
}

/// A kube error in a few words: the API's status code and message when there is one.
fn describe(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
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
        other => other.to_string(),
    }
}
