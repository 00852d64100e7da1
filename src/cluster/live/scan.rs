//! The guard's read of one namespace: every discovered type listed once, under one
//! deadline, with a bound on scans at once.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use tokio::time::Instant;

use super::LiveCluster;
use super::calls::LookupError;
use super::discovery::still_served;
use super::lists::{Progress, Seen};
use super::resource_types::ResourceType;
use crate::cluster::Deadline;
use crate::decisions::namespace_guard::{NamespaceScan, OwnedObject};
use crate::documents::qualified_kind;

impl LiveCluster {
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
        self.scan_by(namespace, Deadline::after(timeout)).await
    }

    /// [`Self::scan`] by `deadline`, which a decision set once for all its reads.
    ///
    /// # Guarantees
    /// Answers by `deadline` (plus scheduling); a scan that got its slot with no time
    /// left starts no call and says the lookups were busy; one that runs out of time
    /// says its deadline passed and what it had done, whichever read was cut short.
    pub async fn scan_by(
        &self,
        namespace: &str,
        deadline: Deadline,
    ) -> Result<NamespaceScan, LookupError> {
        let _permit = self.slot(&self.scans, "namespace", deadline).await?;
        let progress = Progress::default();
        let timeout = deadline.timeout();
        match tokio::time::timeout_at(
            deadline.at(),
            self.scan_unbounded(namespace, deadline.at(), &progress),
        )
        .await
        {
            Ok(Err(_)) | Err(_) if deadline.passed() => {
                Err(progress.past_deadline(&self.server, timeout))
            }
            Ok(result) => result,
            Err(_) => Err(progress.past_deadline(&self.server, timeout)),
        }
    }

    pub(super) async fn scan_unbounded(
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
        let seen = Seen::default();
        let gone = self
            .list_types(
                namespace,
                &discovered.types,
                deadline,
                progress,
                &mut scan,
                &seen,
            )
            .await;
        if !gone.is_empty() {
            let again = self
                .rediscover(&discovered, &gone, deadline, progress, &mut scan.unverified)
                .await?;
            let still_gone = self
                .list_types(namespace, &again, deadline, progress, &mut scan, &seen)
                .await;
            scan.unverified
                .extend(still_gone.into_iter().map(still_served));
        }
        scan.unverified.sort_by(|a, b| a.resource.cmp(&b.resource));
        scan.unverified.dedup_by(|a, b| a.resource == b.resource);
        scan.api_calls = progress.calls.load(Ordering::Relaxed);
        Ok(scan)
    }

    /// List every type of `types` in `namespace` into `scan`, once each and without a
    /// selector; returns the ids of the types that answered 404.
    pub(super) async fn list_types(
        &self,
        namespace: &str,
        types: &[ResourceType],
        deadline: Instant,
        progress: &Progress,
        scan: &mut NamespaceScan,
        seen: &Seen,
    ) -> BTreeSet<String> {
        let found = Mutex::new(Vec::new());
        let keep = |rt: &ResourceType, owner, meta: ObjectMeta| {
            let object = OwnedObject {
                owner,
                kind: qualified_kind(&rt.resource.kind, &rt.resource.group),
                name: meta.name.unwrap_or_default(),
            };
            found.lock().unwrap_or_else(|e| e.into_inner()).push(object);
        };
        let failed = self
            .list_every(
                Some(namespace),
                types,
                &[None],
                deadline,
                progress,
                seen,
                &keep,
            )
            .await;
        scan.objects
            .extend(found.into_inner().unwrap_or_else(|e| e.into_inner()));
        let mut gone = BTreeSet::new();
        for (id, err) in failed {
            if err.code() == Some(404) {
                gone.insert(id.to_owned());
            } else {
                scan.unverified.push(err.unverified(id));
            }
        }
        gone
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
