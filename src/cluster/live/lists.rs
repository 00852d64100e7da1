//! Listing resource types metadata-only, page by page, with a bound on calls in flight,
//! keeping only what the caller needs of each object as it arrives.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{StreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::PartialObjectMeta;
use tokio::time::Instant;

use super::LiveCluster;
use super::calls::CallError;
use super::discovery::ResourceType;
use crate::audit::read_annotations;
use crate::labels::Owner;

/// What [`LiveCluster::list_every`] read.
pub(super) struct Listed<'t, T> {
    /// What the caller kept of each object with an owner, once.
    pub(super) objects: Vec<T>,
    /// The first error of each type that could not be listed, by id.
    pub(super) failed: Vec<(&'t str, CallError)>,
}

impl LiveCluster {
    /// Every type of `types` listed once per selector of `selectors` (`None`: no
    /// selector), at most `concurrency` calls at once: in `namespace`, or across all
    /// namespaces. Each object with an owner comes once (it matches several generations'
    /// selectors, and some types are served by two groups, events: `seen` holds the uids
    /// already taken); each type that could not be listed comes with its first error.
    ///
    /// `keep` makes what the caller holds of each object as each type's lists arrive, so
    /// a whole cluster's metadata is never held at once (the audit's memory).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn list_every<'t, T>(
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
    pub(super) async fn list_matching(
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
}

/// What one scan has done so far, for the deadline's message and the call count.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) done: AtomicUsize,
    pub(super) total: AtomicUsize,
    pub(super) calls: AtomicUsize,
    /// Types with a list call in flight, and how many.
    pub(super) in_flight: Mutex<HashMap<String, usize>>,
}

impl Progress {
    pub(super) fn start(&self, id: &str) {
        *self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_owned())
            .or_default() += 1;
    }

    pub(super) fn finish(&self, id: &str) {
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
    pub(super) fn pending(&self) -> Vec<String> {
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
