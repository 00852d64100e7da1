//! Which namespaced resource types the API server serves: a fresh discovery at every
//! lookup (the last good one standing in for a short while), and rediscovery when a list
//! answers 404. Two calls where the server serves aggregated discovery (1.27 on), else two
//! plus one per group version.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, stream};
use tokio::time::Instant;

use super::LiveCluster;
use super::aggregated::{ACCEPT, Root, RootDocument};
use super::calls::{CallError, LookupError, cause_chain};
use super::lists::Progress;
use super::resource_types::{ResourceType, group_skipped, listable};
use crate::decisions::namespace_guard::Unverified;

/// One discovery result.
#[derive(Debug)]
pub struct Discovered {
    pub(super) at: Instant,
    pub types: Vec<ResourceType>,
    /// Group versions whose discovery failed or did not answer in time: their types are
    /// unknown.
    pub failed: Vec<Unverified>,
    /// API calls it took.
    pub calls: usize,
}

impl LiveCluster {
    /// A fresh discovery, bounded by [`LiveOptions::discovery_timeout`](super::LiveOptions::discovery_timeout) and `deadline`.
    /// When it fails as a whole, the last good one stands in if it is younger than
    /// [`LiveOptions::discovery_ttl`](super::LiveOptions::discovery_ttl) (logged).
    ///
    /// # Guarantees
    /// With no time left before `deadline` (a lookup that waited for its slot until then),
    /// no call is started; and a refresh that only the caller's deadline cut short is
    /// neither replaced by the last good one nor logged as failed: the caller has no time
    /// left to use any discovery, and its own error says that its deadline passed.
    pub async fn discovery(&self, deadline: Instant) -> Result<Arc<Discovered>, LookupError> {
        let out_of_time = |cause| LookupError::Discovery {
            server: self.server.clone(),
            cause,
        };
        if Instant::now() >= deadline {
            return Err(out_of_time(CallError::Timeout(Duration::ZERO)));
        }
        let bound = (Instant::now() + self.options.discovery_timeout).min(deadline);
        match self.discover(bound).await {
            Ok(found) => {
                let found = Arc::new(found);
                *self.last_good.lock().unwrap_or_else(|e| e.into_inner()) = Some(found.clone());
                Ok(found)
            }
            Err(cause @ CallError::Timeout(_)) if Instant::now() >= deadline => {
                Err(out_of_time(cause))
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

    /// `/api` and `/apis` (aggregated where served), then the resource list of every
    /// group version they did not already describe, all before `bound`.
    pub(super) async fn discover(&self, bound: Instant) -> Result<Discovered, CallError> {
        let calls = AtomicUsize::new(0);
        let (core, groups) = tokio::try_join!(
            self.root(bound, &calls, "/api"),
            self.root(bound, &calls, "/apis"),
        )?;
        let mut types: Vec<ResourceType> = Vec::new();
        let mut failed = Vec::new();
        // (rank, group, groupVersion) of every version of every group the roots did not
        // describe, the preferred one ranked 0. A kind served only by a version the server
        // does not prefer (a group whose CRDs sit at different versions, an alpha kind) is
        // deleted with the namespace too, so it is listed, as the namespace controller and
        // `kubectl api-resources` find it.
        let mut versions: Vec<(usize, String, String)> = Vec::new();
        for root in [core, groups] {
            match root {
                Root::Aggregated(list) => {
                    let found = list.types(&self.options.skip);
                    types.extend(found.types);
                    failed.extend(found.stale.into_iter().map(|gv| Unverified {
                        resource: format!("{gv} (discovery)"),
                        reason: "stale in the API server's aggregated discovery (its API service did not answer)".to_owned(),
                        code: None,
                    }));
                }
                Root::Core(core) => versions.extend(
                    core.into_iter()
                        .enumerate()
                        .map(|(rank, v)| (rank, String::new(), v)),
                ),
                Root::Groups(groups) => {
                    for group in groups {
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
                }
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
        let mut seen: HashSet<String> = types.iter().map(|t| t.id.clone()).collect();
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

    /// `/api` or `/apis`, aggregated discovery preferred (kubectl's `Accept`).
    async fn root(
        &self,
        bound: Instant,
        calls: &AtomicUsize,
        path: &'static str,
    ) -> Result<Root, CallError> {
        let body = self
            .call(bound, calls, || async {
                let accept = if self.options.aggregated_discovery {
                    ACCEPT
                } else {
                    "application/json"
                };
                let request = http::Request::get(path)
                    .header(http::header::ACCEPT, accept)
                    .body(Vec::new())
                    .map_err(kube::Error::HttpError)?;
                self.client.request::<RootDocument>(request).await
            })
            .await?;
        Root::parse(path, body).map_err(|e| CallError::Transport(cause_chain(&e)))
    }

    /// After lists of the `gone` types (ids) answered 404: discovery is stale. Ask again;
    /// a type that is no longer served took its objects with it, one that still is
    /// (perhaps at another version) is returned, to be listed again. A type whose group
    /// could not be rediscovered goes into `unverified`: its discovery says nothing.
    pub(super) async fn rediscover(
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
}

/// A type that answered 404 again after it was rediscovered.
pub(super) fn still_served(id: String) -> Unverified {
    Unverified {
        resource: id,
        reason: "404 NotFound, though discovery still serves the type".to_owned(),
        code: Some(404),
    }
}

/// The discovery failure of `group` (`""` for the core group) among `failed`, whose
/// entries are named `group/version (discovery)` (`v1 (discovery)` for the core group).
pub(super) fn discovery_failure<'a>(
    failed: &'a [Unverified],
    group: &str,
) -> Option<&'a Unverified> {
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
}
