//! The audit's read of the whole cluster: labelled objects of every type across all
//! namespaces, the namespaces, claims and volumes, and what is left in namespaces that
//! may be lingering.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, ObjectList};
use tokio::time::Instant;

use super::LiveCluster;
use super::calls::{CallError, LookupError};
use super::discovery::still_served;
use super::lists::{Pages, Progress, Seen};
use super::resource_types::ResourceType;
use crate::audit::{Inventory, LabelledObject, NamespaceMeta, UnownedObject};

impl LiveCluster {
    /// What the audit reads, from every namespace, into `inventory` (empty, or
    /// [`Inventory::keeping_objects`] for a dump): the labelled objects of every discovered
    /// type (metadata only, one list per type and label generation, all namespaces at once,
    /// each page taken in as it arrives), the namespaces, and the PersistentVolumeClaims and
    /// PersistentVolumes (for their volume and reclaim policy), all in pages. A type that
    /// cannot be listed is in [`Inventory::unverified`]; the whole fails only past
    /// `timeout`.
    pub async fn inventory(
        &self,
        timeout: Duration,
        inventory: Inventory,
    ) -> Result<Inventory, LookupError> {
        let deadline = Instant::now() + timeout;
        let progress = Progress::default();
        match tokio::time::timeout_at(
            deadline,
            self.inventory_unbounded(deadline, &progress, inventory),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(progress.past_deadline(&self.server, timeout)),
        }
    }

    pub(super) async fn inventory_unbounded(
        &self,
        deadline: Instant,
        progress: &Progress,
        inventory: Inventory,
    ) -> Result<Inventory, LookupError> {
        use k8s_openapi::api::core::v1::Namespace;
        let discovered = self.discovery(deadline).await?;
        let mut inventory = Inventory {
            resource_types: discovered.types.len(),
            unverified: discovered.failed.clone(),
            ..inventory
        };
        let read = |what: &'static str| {
            move |cause| LookupError::Read {
                what,
                server: self.server.clone(),
                cause,
            }
        };
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let list = |params: ListParams| {
            let namespaces = namespaces.clone();
            async move { namespaces.list_metadata(&params).await }
        };
        // Every namespace's name; the metadata of those a stack labelled (the audit reads
        // it to tell a lingering one), or of all of them for a dump, which writes it.
        let keeping = inventory.objects.is_some();
        let mut names = BTreeSet::new();
        self.pages(
            deadline,
            &progress.calls,
            ListParams::default(),
            list,
            |namespace| {
                let meta = namespace.metadata;
                if let Some(name) = meta.name {
                    let labels = meta.labels.unwrap_or_default();
                    if keeping || self.scheme.read(&labels).is_some() {
                        let annotations = meta.annotations.unwrap_or_default();
                        let meta = NamespaceMeta {
                            labels,
                            annotations: if keeping {
                                annotations
                            } else {
                                crate::audit::read_annotations(annotations)
                            },
                            created: meta.creation_timestamp.map(|t| t.0.to_string()),
                        };
                        inventory.namespace_meta.insert(name.clone(), meta);
                    }
                    names.insert(name);
                }
            },
        )
        .await
        .map_err(read("listing the namespaces"))?;
        inventory.namespaces = Some(names);

        // Across all namespaces, a selector per label generation: an unselected read would
        // bring every object of the cluster.
        let selectors = self.generation_selectors();
        let seen = Seen::across_groups(&discovered.types);
        let shared = Mutex::new(inventory);
        let keep = |rt: &ResourceType, _, meta: ObjectMeta| {
            let (Some(namespace), Some(labels)) = (meta.namespace, meta.labels) else {
                return;
            };
            let object = LabelledObject {
                namespace,
                api_version: rt.resource.api_version.clone(),
                kind: rt.resource.kind.clone(),
                name: meta.name.unwrap_or_default(),
                labels,
                annotations: meta.annotations.unwrap_or_default(),
                controller_owned: meta
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.controller == Some(true)),
            };
            shared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(object, &self.scheme);
        };
        let failed = self
            .list_every(
                None,
                &discovered.types,
                &selectors,
                deadline,
                progress,
                &seen,
                &keep,
            )
            .await;
        let mut gone = BTreeSet::new();
        let mut unverified = Vec::new();
        for (id, err) in failed {
            if err.code() == Some(404) {
                gone.insert(id.to_owned());
            } else {
                unverified.push(err.unverified(id));
            }
        }
        if !gone.is_empty() {
            // As in a scan: a 404 is a stale discovery, never an empty type.
            let again = self
                .rediscover(&discovered, &gone, deadline, progress, &mut unverified)
                .await?;
            let failed = self
                .list_every(None, &again, &selectors, deadline, progress, &seen, &keep)
                .await;
            for (id, err) in failed {
                unverified.push(match err.code() {
                    Some(404) => still_served(id.to_owned()),
                    _ => err.unverified(id),
                });
            }
        }
        let mut inventory = shared.into_inner().unwrap_or_else(|e| e.into_inner());
        inventory.unverified.extend(unverified);
        inventory.misplaced.shrink_to_fit();

        let claims = Api::all(self.client.clone());
        match (self.claims(claims, ListParams::default(), deadline, &progress.calls)).await {
            Ok(found) => inventory.claims = found,
            Err(err) => inventory
                .unverified
                .push(err.unverified("persistentvolumeclaims")),
        }
        match self.volumes(deadline, &progress.calls).await {
            Ok(found) => inventory.volumes = found,
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
        if let Some(objects) = &mut inventory.objects {
            objects.sort_by(|a, b| {
                (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name))
            });
        }
        Ok(inventory)
    }

    /// Every object `list` answers to `params`, page by page (each page handed to `each`
    /// before the next is asked for), every call retried within `deadline`.
    pub(super) async fn pages<T, F, Fut>(
        &self,
        deadline: Instant,
        calls: &AtomicUsize,
        params: ListParams,
        list: F,
        mut each: impl FnMut(T),
    ) -> Result<(), CallError>
    where
        T: Clone,
        F: Fn(ListParams) -> Fut,
        Fut: Future<Output = kube::Result<ObjectList<T>>>,
    {
        let mut params = params.limit(self.options.page_size);
        loop {
            let page = self.call(deadline, calls, || list(params.clone())).await?;
            page.items.into_iter().for_each(&mut each);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params.continue_token = Some(token),
                None => return Ok(()),
            }
        }
    }

    /// Everything in the namespaces that may be lingering (a Namespace with a stack's
    /// labels and no labelled object in it), into [`Inventory::unowned`]: one metadata
    /// list per type and namespace, no selector, over a discovery made now (a type created
    /// during the audit is seen, one deleted is not listed). A list or a group version that
    /// fails is unverified, so no namespace is called empty on a partial read.
    pub(super) async fn read_unowned(
        &self,
        inventory: &mut Inventory,
        deadline: Instant,
        progress: &Progress,
    ) -> Result<(), LookupError> {
        let candidates: Vec<String> = inventory
            .namespace_meta
            .iter()
            .filter(|(ns, meta)| {
                !inventory.owners.contains_key(ns.as_str())
                    && self.scheme.owner(&meta.labels).is_some()
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
        let shared = Mutex::new(inventory);
        let shared_ref = &shared;
        let failed: Vec<_> = stream::iter(jobs)
            .map(|(n, t)| async move {
                let (namespace, rt) = (&candidates_ref[n], &types[t]);
                let each = |meta: ObjectMeta| {
                    let object = UnownedObject {
                        api_version: rt.resource.api_version.clone(),
                        kind: rt.resource.kind.clone(),
                        name: meta.name.unwrap_or_default(),
                        annotations: meta.annotations.unwrap_or_default(),
                        created: meta.creation_timestamp.map(|t| t.0.to_string()),
                    };
                    shared_ref
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .add_unowned(namespace, object);
                };
                progress.start(&rt.id);
                let result = self
                    .list_matching(
                        Some(namespace),
                        rt,
                        None,
                        Pages::All,
                        deadline,
                        progress,
                        &each,
                    )
                    .await;
                progress.finish(&rt.id);
                result.err().map(|err| (namespace, rt, err))
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .filter_map(std::future::ready)
            .collect()
            .await;
        let inventory = shared.into_inner().unwrap_or_else(|e| e.into_inner());
        for (namespace, rt, err) in failed {
            inventory
                .unverified
                .push(err.unverified(format!("{} in namespace {namespace}", rt.id)));
        }
        for objects in inventory.unowned.values_mut() {
            objects.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        }
        Ok(())
    }
}
