//! What nsguard's own identity may list: the readiness check's access review.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use kube::api::Api;
use tokio::time::Instant;

use super::LiveCluster;
use super::calls::LookupError;
use crate::decisions::namespace_guard::Unverified;

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
pub(super) fn rule_allows_list(
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
