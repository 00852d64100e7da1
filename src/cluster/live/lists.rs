//! Listing resource types metadata-only, page by page, with a bound on calls in flight,
//! keeping only what the caller needs of each object as it arrives.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::PartialObjectMeta;
use tokio::time::Instant;

use super::LiveCluster;
use super::calls::{CallError, LookupError};
use super::resource_types::ResourceType;
use crate::audit::read_annotations;
use crate::simple_container::labels::Owner;

/// The uids already taken, so that an object served by two groups (events: core and
/// `events.k8s.io`) is taken once. Kept as 64-bit hashes, and only for the plurals that
/// [`Seen::across_groups`] names: a cluster-wide audit sees every labelled object, and
/// remembering each would make its memory grow with the cluster. (An object listed under
/// two label generations' selectors is taken once by another rule, in
/// [`LiveCluster::list_every`], which needs no memory.)
#[derive(Default)]
pub(super) struct Seen {
    hasher: RandomState,
    uids: Mutex<HashSet<u64>>,
    /// Only these plurals are remembered; `None`: every type (a namespace's scan).
    only: Option<HashSet<String>>,
}

impl Seen {
    /// Remember only the types whose plural more than one group of `types` serves.
    pub(super) fn across_groups(types: &[ResourceType]) -> Seen {
        let mut groups: HashMap<&str, HashSet<&str>> = HashMap::new();
        for rt in types {
            groups
                .entry(rt.resource.plural.as_str())
                .or_default()
                .insert(rt.resource.group.as_str());
        }
        Seen {
            only: Some(
                groups
                    .into_iter()
                    .filter(|(_, groups)| groups.len() > 1)
                    .map(|(plural, _)| plural.to_owned())
                    .collect(),
            ),
            ..Seen::default()
        }
    }

    /// Whether the object `uid` of `rt` is new (an object without a uid always is).
    fn first(&self, rt: &ResourceType, uid: Option<&str>) -> bool {
        if self
            .only
            .as_ref()
            .is_some_and(|only| !only.contains(&rt.resource.plural))
        {
            return true;
        }
        let Some(uid) = uid.filter(|u| !u.is_empty()) else {
            return true;
        };
        let hash = self.hasher.hash_one(uid);
        self.uids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash)
    }
}

/// How much of a list to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pages {
    All,
    First,
}

/// Whether a list had more pages than were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum More {
    Yes,
    No,
}

/// Whether `labels` match `selector` (`key1,key2`: each key present, as the API server
/// reads an existence selector).
fn matches(selector: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
    selector.split(',').all(|key| labels.contains_key(key))
}

impl LiveCluster {
    /// Every type of `types` listed once per selector of `selectors` (`None`: no
    /// selector), at most `concurrency` calls at once: in `namespace`, or across all
    /// namespaces. Each object with an owner is handed to `keep` once, as its page
    /// arrives, from several lists at once: nothing is held here, so a whole cluster's
    /// metadata never is. Once: an object that an earlier selector also matches is left to
    /// that selector's list, and `seen` takes care of types served by two groups. Returns
    /// each type that could not be listed with its first error (objects of its pages read
    /// before the error were handed over: they exist).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn list_every<'t>(
        &self,
        namespace: Option<&str>,
        types: &'t [ResourceType],
        selectors: &[Option<String>],
        deadline: Instant,
        progress: &Progress,
        seen: &Seen,
        keep: &(dyn Fn(&'t ResourceType, Owner, ObjectMeta) + Sync),
    ) -> Vec<(&'t str, CallError)> {
        // Jobs as indices: owned values keep the stream's future `Send` for any lifetime.
        let jobs: Vec<(usize, usize)> = (0..types.len())
            .flat_map(|t| (0..selectors.len()).map(move |s| (t, s)))
            .collect();
        progress.total.fetch_add(jobs.len(), Ordering::Relaxed);
        let generations = self.generation_selectors();
        let generations = &generations;
        let mut results = stream::iter(jobs)
            .map(|(t, s)| async move {
                let rt = &types[t];
                let owned = |earlier| self.taking(rt, earlier, seen, keep);
                progress.start(&rt.id);
                let result = match &selectors[s] {
                    // Unselected, in a namespace: one read when the type's objects fit in
                    // a page (nearly always). Past a page, the rest comes by selector,
                    // one per label generation: thousands of unlabelled objects of one
                    // type would otherwise all be sent and decoded (see
                    // docs/performance.md for both, measured).
                    None if namespace.is_some() => {
                        let first = self
                            .list_matching(
                                namespace,
                                rt,
                                None,
                                Pages::First,
                                deadline,
                                progress,
                                &owned(&[]),
                            )
                            .await;
                        match first {
                            Ok(More::No) => Ok(More::No),
                            Ok(More::Yes) => {
                                let mut result = Ok(More::No);
                                for g in 0..generations.len() {
                                    let selector = generations[g].as_deref();
                                    let each = owned(&generations[..g]);
                                    result = self
                                        .list_matching(
                                            namespace,
                                            rt,
                                            selector,
                                            Pages::All,
                                            deadline,
                                            progress,
                                            &each,
                                        )
                                        .await;
                                    if result.is_err() {
                                        break;
                                    }
                                }
                                result
                            }
                            Err(err) => Err(err),
                        }
                    }
                    selector => {
                        self.list_matching(
                            namespace,
                            rt,
                            selector.as_deref(),
                            Pages::All,
                            deadline,
                            progress,
                            &owned(&selectors[..s]),
                        )
                        .await
                    }
                };
                progress.finish(&rt.id);
                (rt, result)
            })
            .buffer_unordered(self.options.concurrency.max(1));
        let mut failed: HashMap<&str, CallError> = HashMap::new();
        while let Some((rt, result)) = results.next().await {
            if let Err(err) = result {
                failed.entry(rt.id.as_str()).or_insert(err);
            }
        }
        failed.into_iter().collect()
    }

    /// What `each` of a list of `rt` does: hands every object with an owner that no
    /// `earlier` selector's list brought (nor `seen` already took) to `keep`.
    fn taking<'a, 't: 'a>(
        &'a self,
        rt: &'t ResourceType,
        earlier: &'a [Option<String>],
        seen: &'a Seen,
        keep: &'a (dyn Fn(&'t ResourceType, Owner, ObjectMeta) + Sync),
    ) -> impl Fn(ObjectMeta) + Sync + 'a {
        move |meta: ObjectMeta| {
            let Some(labels) = meta.labels.as_ref() else {
                return;
            };
            let Some(owner) = self.scheme.owner(labels) else {
                return;
            };
            let listed_before = earlier.iter().flatten().any(|e| matches(e, labels));
            if !listed_before && seen.first(rt, meta.uid.as_deref()) {
                keep(rt, owner, meta);
            }
        }
    }

    /// One existence selector per label generation (`app-name-key,env-key`).
    pub(super) fn generation_selectors(&self) -> Vec<Option<String>> {
        self.scheme
            .generations()
            .iter()
            .map(|keys| Some(format!("{},{}", keys.app_name, keys.env)))
            .collect()
    }

    /// Every `rt` object matching `selector` (every object without one), in `namespace`
    /// or in all namespaces (the first page only, with [`Pages::First`]: then whether
    /// there were more), handed to `each` page by page as it arrives, without its
    /// managed fields and unread annotations (KiBs per object, never read). A consistent
    /// read: no `resourceVersion`, so the API server answers from etcd, never from its
    /// cache.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn list_matching(
        &self,
        namespace: Option<&str>,
        rt: &ResourceType,
        selector: Option<&str>,
        pages: Pages,
        deadline: Instant,
        progress: &Progress,
        each: &(dyn Fn(ObjectMeta) + Sync),
    ) -> Result<More, CallError> {
        let api: Api<DynamicObject> = match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &rt.resource),
            None => Api::all_with(self.client.clone(), &rt.resource),
        };
        let mut params = ListParams::default().limit(self.options.page_size);
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        loop {
            let page = self
                .attempts(deadline, None, &progress.calls, || {
                    api.list_metadata(&params)
                })
                .await?;
            for item in page.items {
                let item: PartialObjectMeta<DynamicObject> = item;
                each(ObjectMeta {
                    managed_fields: None,
                    annotations: item.metadata.annotations.map(read_annotations),
                    ..item.metadata
                });
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(_) if pages == Pages::First => return Ok(More::Yes),
                Some(token) => params.continue_token = Some(token),
                None => return Ok(More::No),
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

    /// The error of a read whose `timeout` passed, saying how far it got.
    pub(super) fn past_deadline(&self, server: &str, timeout: Duration) -> LookupError {
        LookupError::Deadline {
            server: server.to_owned(),
            timeout,
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            pending: self.pending(),
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
