//! The resource types a lookup lists, as discovery finds them: namespaced, listable, not
//! a subresource, not skipped. Shared by both discoveries (aggregated and per group
//! version) and the lists that read them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::core::ApiResource;

/// A namespaced resource type that supports `list`.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub resource: ApiResource,
    /// `plural.group`, or `plural` for the core group, as kubectl names types.
    pub id: String,
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

/// The namespaced, listable, non-subresource types of one group version.
pub(super) fn listable<'a>(
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
