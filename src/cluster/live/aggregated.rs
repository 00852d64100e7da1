//! Aggregated discovery (`apidiscovery.k8s.io/v2`, GA in Kubernetes 1.30; `v2beta1`, on
//! by default from 1.27): `/api` and `/apis` answer every group version's resources in
//! one document each, so a discovery is two calls instead of two plus one per group
//! version (26 on a bare 1.36 server, hundreds with CRDs).
//!
//! nsguard asks for it as kubectl does, with the legacy document as the last choice in
//! `Accept`: a server without it (1.26) answers `APIVersions` / `APIGroupList`, and the
//! caller then reads each group version's `APIResourceList` as before. Each root is
//! judged by the `kind` it came back as, so a server that aggregates one root and not the
//! other is read correctly too.
//!
//! A version whose `freshness` is `Stale` (an aggregated API server that did not answer
//! the API server's own discovery) says nothing reliable about its types: it is reported
//! as a failed discovery, exactly as its legacy document answering 503 is.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroup;
use kube::core::ApiResource;
use serde::Deserialize;

use super::resource_types::{ResourceType, group_skipped};

/// Aggregated discovery first (v2, then v2beta1), the legacy document last.
pub const ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
     application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

/// What `/api` or `/apis` answered.
#[derive(Debug)]
pub enum Root {
    /// Every group version's resources.
    Aggregated(GroupDiscoveryList),
    /// `/api` of a server without aggregated discovery (`APIVersions`): the core versions.
    Core(Vec<String>),
    /// `/apis` of a server without aggregated discovery (`APIGroupList`): the groups and
    /// their versions.
    Groups(Vec<APIGroup>),
}

/// `/api` or `/apis` in one pass, whichever document it is: the fields of all three.
#[derive(Debug, Deserialize)]
pub struct RootDocument {
    #[serde(default)]
    kind: String,
    /// `APIGroupDiscoveryList`.
    #[serde(default)]
    items: Vec<GroupDiscovery>,
    /// `APIVersions`.
    #[serde(default)]
    versions: Vec<String>,
    /// `APIGroupList`.
    #[serde(default)]
    groups: Vec<APIGroup>,
}

/// A root document of a kind nsguard does not read: never taken for an empty list of
/// groups (that would hide every type, and let a delete through).
#[derive(Debug, thiserror::Error)]
#[error("{path} answered a document nsguard cannot read (kind {kind:?})")]
pub struct RootError {
    path: &'static str,
    kind: String,
}

impl Root {
    /// What `path` (`/api` or `/apis`) answered, by the document's `kind`.
    pub fn parse(path: &'static str, document: RootDocument) -> Result<Root, RootError> {
        match (document.kind.as_str(), path) {
            ("APIGroupDiscoveryList", _) => Ok(Root::Aggregated(GroupDiscoveryList {
                items: document.items,
            })),
            ("APIVersions", "/api") => Ok(Root::Core(document.versions)),
            ("APIGroupList", "/apis") => Ok(Root::Groups(document.groups)),
            _ => Err(RootError {
                path,
                kind: document.kind,
            }),
        }
    }
}

/// `apidiscovery.k8s.io` `APIGroupDiscoveryList`, the fields nsguard reads.
#[derive(Debug, Default)]
pub struct GroupDiscoveryList {
    items: Vec<GroupDiscovery>,
}

#[derive(Debug, Deserialize)]
struct GroupDiscovery {
    /// The group's name in `metadata.name` (empty for the core group).
    #[serde(default)]
    metadata: GroupName,
    /// In order of preference: the first is the preferred version.
    #[serde(default)]
    versions: Vec<VersionDiscovery>,
}

#[derive(Debug, Default, Deserialize)]
struct GroupName {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct VersionDiscovery {
    version: String,
    #[serde(default)]
    resources: Vec<ResourceDiscovery>,
    /// `Current` or `Stale`.
    #[serde(default)]
    freshness: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceDiscovery {
    resource: String,
    #[serde(default)]
    response_kind: Option<ResponseKind>,
    /// `Namespaced` or `Cluster`.
    #[serde(default)]
    scope: String,
    #[serde(default)]
    verbs: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ResponseKind {
    #[serde(default)]
    kind: String,
}

/// What one aggregated document says, as the legacy path finds it: the namespaced,
/// listable types, each group's preferred version first and another version adding only
/// kinds the group has not shown; and the group versions that are stale.
#[derive(Debug, Default)]
pub struct Found {
    pub types: Vec<ResourceType>,
    /// `group/version` (`v1` for the core group) of every stale version.
    pub stale: Vec<String>,
}

impl GroupDiscoveryList {
    /// The types of every group not skipped (`--skip-resource` `*.group` entries and
    /// plural ids), in the legacy path's terms.
    pub fn types(&self, skip: &[String]) -> Found {
        let mut found = Found::default();
        let mut seen = std::collections::HashSet::new();
        for group in &self.items {
            let name = group.metadata.name.as_str();
            if !name.is_empty() && group_skipped(skip, name) {
                continue;
            }
            for version in &group.versions {
                let gv = if name.is_empty() {
                    version.version.clone()
                } else {
                    format!("{name}/{}", version.version)
                };
                if version.freshness.as_deref() == Some("Stale") {
                    found.stale.push(gv);
                    continue;
                }
                for resource in &version.resources {
                    if resource.scope != "Namespaced"
                        || resource.resource.contains('/')
                        || !resource.verbs.iter().any(|v| v == "list")
                    {
                        continue;
                    }
                    let id = if name.is_empty() {
                        resource.resource.clone()
                    } else {
                        format!("{}.{name}", resource.resource)
                    };
                    if skip.contains(&id) || !seen.insert(id.clone()) {
                        continue;
                    }
                    found.types.push(ResourceType {
                        resource: ApiResource {
                            group: name.to_owned(),
                            version: version.version.clone(),
                            api_version: gv.clone(),
                            kind: resource
                                .response_kind
                                .as_ref()
                                .map(|k| k.kind.clone())
                                .unwrap_or_default(),
                            plural: resource.resource.clone(),
                        },
                        id,
                    });
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;
    use crate::cluster::live::resource_types::listable;

    fn fixture(name: &str) -> serde_json::Value {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kube-apiserver/discovery")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn root(path: &'static str, body: serde_json::Value) -> Result<Root, RootError> {
        Root::parse(path, serde_json::from_value(body).unwrap())
    }

    fn ids(types: &[ResourceType]) -> BTreeSet<(String, String, String)> {
        types
            .iter()
            .map(|t| {
                (
                    t.id.clone(),
                    t.resource.api_version.clone(),
                    t.resource.kind.clone(),
                )
            })
            .collect()
    }

    /// The `/apis` a real kube-apiserver aggregated says what its per-group-version
    /// documents say, for every preferred group version recorded both ways: the same
    /// namespaced, listable types with the same kinds. (Kinds of other versions, such as
    /// the alpha LeaseCandidate, are found both ways too, from those versions.)
    #[test]
    fn the_aggregated_document_finds_the_types_the_legacy_documents_find() {
        let Root::Aggregated(list) = root("/apis", fixture("aggregated_v2.json")).unwrap() else {
            panic!("not read as aggregated");
        };
        let found = list.types(&[]);
        assert!(found.stale.is_empty());
        let Root::Groups(groups) = root("/apis", fixture("apis.json")).unwrap() else {
            panic!("not read as an APIGroupList");
        };
        let mut compared = 0;
        for group in &groups {
            let gv = &group.preferred_version.as_ref().unwrap().group_version;
            let name = format!("apis__{}.json", gv.replace('/', "__"));
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/kube-apiserver/discovery")
                .join(&name);
            if !path.exists() {
                continue;
            }
            let legacy: Vec<ResourceType> = listable(
                &[],
                &group.name,
                gv,
                serde_json::from_value(fixture(&name)).unwrap(),
            )
            .collect();
            let aggregated: Vec<ResourceType> = found
                .types
                .iter()
                .filter(|t| &t.resource.api_version == gv)
                .cloned()
                .collect();
            assert_eq!(ids(&aggregated), ids(&legacy), "{gv}");
            compared += legacy.len();
        }
        assert!(compared >= 15, "only {compared} types compared");
    }

    /// A stale version is named, not read; `--skip-resource` entries and cluster-scoped,
    /// unlistable and subresource entries are left out; another version adds only kinds
    /// the preferred one does not have.
    #[test]
    fn stale_versions_are_named_and_skips_apply() {
        let body = serde_json::json!({
            "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
            "items": [
                {"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [
                    {"resource": "configmaps", "responseKind": {"kind": "ConfigMap"}, "scope": "Namespaced", "verbs": ["list"]},
                    {"resource": "secrets", "responseKind": {"kind": "Secret"}, "scope": "Namespaced", "verbs": ["list"]},
                    {"resource": "nodes", "responseKind": {"kind": "Node"}, "scope": "Cluster", "verbs": ["list"]},
                    {"resource": "bindings", "responseKind": {"kind": "Binding"}, "scope": "Namespaced", "verbs": ["create"]}
                ]}]},
                {"metadata": {"name": "metrics.k8s.io"}, "versions": [{"version": "v1beta1", "freshness": "Stale", "resources": [
                    {"resource": "pods", "responseKind": {"kind": "PodMetrics"}, "scope": "Namespaced", "verbs": ["list"]}
                ]}]},
                {"metadata": {"name": "shop.example.com"}, "versions": [
                    {"version": "v2", "freshness": "Current", "resources": [
                        {"resource": "carts", "responseKind": {"kind": "Cart"}, "scope": "Namespaced", "verbs": ["list"]}]},
                    {"version": "v1", "freshness": "Current", "resources": [
                        {"resource": "carts", "responseKind": {"kind": "Cart"}, "scope": "Namespaced", "verbs": ["list"]},
                        {"resource": "orders", "responseKind": {"kind": "Order"}, "scope": "Namespaced", "verbs": ["list"]}]}
                ]},
                {"metadata": {"name": "skipped.example.com"}, "versions": [{"version": "v1", "resources": [
                    {"resource": "things", "responseKind": {"kind": "Thing"}, "scope": "Namespaced", "verbs": ["list"]}]}]}
            ]
        });
        let Root::Aggregated(list) = root("/api", body).unwrap() else {
            panic!("not read as aggregated");
        };
        let found = list.types(&["secrets".to_owned(), "*.skipped.example.com".to_owned()]);
        assert_eq!(
            ids(&found.types),
            [
                ("configmaps", "v1", "ConfigMap"),
                ("carts.shop.example.com", "shop.example.com/v2", "Cart"),
                ("orders.shop.example.com", "shop.example.com/v1", "Order"),
            ]
            .into_iter()
            .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
            .collect()
        );
        assert_eq!(found.stale, ["metrics.k8s.io/v1beta1"]);
    }

    /// A legacy root is read as what it is, and a document that is neither, or a legacy
    /// one at the other root, is an error naming the path and the kind, never an empty
    /// list of groups.
    #[test]
    fn legacy_roots_and_anything_else() {
        assert!(matches!(root("/api", fixture("api.json")), Ok(Root::Core(v)) if v == ["v1"]));
        assert!(matches!(root("/apis", fixture("apis.json")), Ok(Root::Groups(g)) if g.len() > 10));
        for (path, body) in [
            ("/apis", serde_json::json!({"kind": "Status", "groups": []})),
            ("/apis", serde_json::json!({})),
            ("/api", fixture("apis.json")),
            ("/apis", fixture("api.json")),
        ] {
            let err = root(path, body).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!(
                    "{path} answered a document nsguard cannot read (kind "
                )),
                "{err}"
            );
        }
    }
}
