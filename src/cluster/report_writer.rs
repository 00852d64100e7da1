//! Writing the background audit's PolicyReports into the cluster: server-side apply of
//! nsguard's report in each namespace whose findings changed, and removal of nsguard's
//! reports (found by their `managed-by` label, never anyone else's) in namespaces that no
//! longer have any.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::Value;
use tokio::time::Instant;

use super::live::{CallError, LiveCluster};
use crate::audit::policy_report::{API_VERSION, DIGEST_ANNOTATION, KIND, MANAGED_BY, NAME};

/// The field manager of nsguard's writes, as `kubectl get --show-managed-fields` shows it.
const FIELD_MANAGER: &str = "nsguard";

/// Why the rest of a round was not written: another replica may be writing by now.
const NOT_LEADING: &str = "stopped writing: this replica no longer holds the audit lease";

/// What one round of writes did.
#[derive(Debug, Default)]
pub struct Writes {
    pub applied: usize,
    /// Reports left as they were: what they say did not change.
    pub unchanged: usize,
    pub deleted: usize,
    /// What could not be written or removed, and why.
    pub failed: Vec<String>,
}

fn resource() -> ApiResource {
    ApiResource {
        group: "wgpolicyk8s.io".into(),
        version: "v1alpha2".into(),
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        plural: "policyreports".into(),
    }
}

impl LiveCluster {
    /// Apply those of `reports` (from [`crate::audit::policy_report::reports`]) whose content
    /// changed; when `prune`, also delete nsguard's reports in every other namespace (only
    /// after an audit that read every type of every namespace: an incomplete one cannot
    /// tell a clean namespace). What is in the cluster is read first, metadata only: a
    /// report whose [`DIGEST_ANNOTATION`] matches is not written again. Each call is
    /// bounded by `deadline`; one that fails is counted and the rest go on. Before each
    /// write `still_mine` is asked: once it says no (the lease may be another replica's),
    /// nothing more is written.
    pub async fn write_policy_reports(
        &self,
        reports: impl IntoIterator<Item = Value>,
        prune: bool,
        deadline: Instant,
        still_mine: impl Fn() -> bool,
    ) -> Writes {
        let mut writes = Writes::default();
        let resource = resource();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let all: Api<DynamicObject> = Api::all_with(self.client().clone(), &resource);
        let ours = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
        // namespace -> digest of nsguard's report there ("" without one). `None` when the
        // list failed: then every report is applied, and none is pruned.
        let existing: Option<BTreeMap<String, String>> = match self
            .call(deadline, &calls, || all.list_metadata(&ours))
            .await
        {
            Ok(listed) => Some(
                listed
                    .items
                    .into_iter()
                    .filter(|r| r.metadata.name.as_deref() == Some(NAME))
                    .filter_map(|r| {
                        let digest = r
                            .metadata
                            .annotations
                            .and_then(|mut a| a.remove(DIGEST_ANNOTATION))
                            .unwrap_or_default();
                        Some((r.metadata.namespace?, digest))
                    })
                    .collect(),
            ),
            Err(err) => {
                writes
                    .failed
                    .push(format!("listing nsguard's PolicyReports: {}", hint(&err)));
                None
            }
        };
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        let mut reported = BTreeSet::new();
        for report in reports {
            let Some(namespace) = report["metadata"]["namespace"].as_str() else {
                continue;
            };
            let report = &report;
            reported.insert(namespace.to_owned());
            let current = existing.as_ref().and_then(|e| e.get(namespace));
            if current
                .is_some_and(|d| Some(d.as_str()) == crate::audit::policy_report::digest_of(report))
            {
                writes.unchanged += 1;
                continue;
            }
            if !still_mine() {
                writes.failed.push(NOT_LEADING.to_owned());
                return writes;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client().clone(), namespace, &resource);
            let patch = Patch::Apply(report);
            match self
                .call(deadline, &calls, || api.patch(NAME, &apply, &patch))
                .await
            {
                Ok(_) => writes.applied += 1,
                Err(err) => writes
                    .failed
                    .push(format!("applying {namespace}/{NAME}: {}", hint(&err))),
            }
        }
        let Some(existing) = existing.filter(|_| prune) else {
            return writes;
        };
        for namespace in existing.into_keys() {
            if reported.contains(&namespace) {
                continue;
            }
            if !still_mine() {
                writes.failed.push(NOT_LEADING.to_owned());
                return writes;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client().clone(), &namespace, &resource);
            let gone = DeleteParams::default();
            match self
                .call(deadline, &calls, || api.delete(NAME, &gone))
                .await
            {
                Ok(_) => writes.deleted += 1,
                Err(CallError::Api(status)) if status.code == 404 => {}
                Err(err) => writes
                    .failed
                    .push(format!("removing {namespace}/{NAME}: {}", hint(&err))),
            }
        }
        writes
    }
}

/// The error, with what to do when the cause is a known setup gap.
fn hint(err: &CallError) -> String {
    match err.code() {
        Some(404) => format!(
            "{err} (is the PolicyReport CRD, wgpolicyk8s.io/v1alpha2, installed? Kyverno and Policy Reporter install it)"
        ),
        Some(403) => format!("{err} (apply manifests/overlays/policy-reports for the RBAC)"),
        _ => err.to_string(),
    }
}
