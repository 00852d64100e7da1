//! The audit's read of the whole cluster: labelled objects of every type across all
//! namespaces, the namespaces, claims and volumes, and what is left in namespaces that
//! may be lingering.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use tokio::time::Instant;

use super::LiveCluster;
use super::calls::LookupError;
use super::discovery::{ResourceType, still_served};
use super::lists::Progress;
use super::volumes::{claim_of, reclaim_policy_of};
use crate::audit::{Inventory, LabelledObject, NamespaceMeta, UnownedObject};

impl LiveCluster {
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

    pub(super) async fn inventory_unbounded(
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
}
