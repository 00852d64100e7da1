//! A stand-in kube-apiserver over plain HTTP: replays the recorded discovery documents
//! from `tests/fixtures/kube-apiserver/discovery/` and answers metadata-only list calls
//! (`PartialObjectMetadataList`) from objects the test defines, with injectable faults.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::repo_path;

/// What a list of one resource type does instead of answering normally.
#[derive(Debug, Clone)]
pub enum Fault {
    Forbidden,
    ServerError,
    Slow(Duration),
    Hang,
    Garbage,
    /// Headers and half a body, then the connection is cut.
    Truncated,
    /// 404 NotFound, as for a type that is no longer served.
    NotFound,
    /// 503 ServiceUnavailable, as an aggregated API whose service is gone answers.
    Unavailable,
    /// 429 TooManyRequests (API priority and fairness), `Retry-After: 1`.
    Throttled,
    /// 404 NotFound, and from then on the discovery document at this path answers 503:
    /// a list whose type's group then cannot be rediscovered.
    NotFoundThenUndiscoverable(String),
    /// 404 NotFound, and the type's group is no longer served: its CRD was deleted.
    NotFoundThenRemoved(String),
}

#[derive(Default)]
pub struct ReplayState {
    /// (namespace, plural) -> object metadata.
    pub objects: HashMap<(String, String), Vec<Value>>,
    /// plural -> fault of its list calls.
    pub faults: HashMap<String, Fault>,
    /// Discovery path (`/apis/GROUP/VERSION`) -> fault.
    pub discovery_faults: HashMap<String, Fault>,
    /// Every request path served, for assertions.
    pub requests: Vec<String>,
    /// Response body bytes served, for the benchmarks' "bytes read".
    pub bytes_served: u64,
    /// When set, every request fails with 503 (an API server that is down).
    pub down: bool,
    /// Answer `/api` and `/apis` with aggregated discovery (`APIGroupDiscoveryList`) to a
    /// client that asks for it, as kube-apiserver 1.27+ does; off: as 1.26 does.
    pub aggregated: bool,
    /// The `resourceRules` a SelfSubjectRulesReview answers; `None`: list on everything.
    pub rules: Option<Value>,
    /// What a SelfSubjectRulesReview gets instead of its answer.
    pub access_review_fault: Option<Fault>,
    /// plural -> whole objects, for typed lists (PersistentVolumeClaims, PersistentVolumes).
    pub typed: HashMap<String, Vec<Value>>,
    /// Whether the PolicyReport CRD (wgpolicyk8s.io/v1alpha2) is installed: PolicyReports
    /// can then be applied, listed and deleted ([`Replay::install_policy_reports`]).
    pub policy_reports_installed: bool,
    /// (namespace, name) -> the PolicyReports applied, as applied.
    pub policy_reports: BTreeMap<(String, String), Value>,
    /// Every write of a PolicyReport: `METHOD path?query content-type`.
    pub policy_report_writes: Vec<String>,
    /// Namespaces made with [`Replay::add_namespace`]: name -> metadata. (Any namespace
    /// that holds objects exists too, without labels.)
    pub namespaces: BTreeMap<String, Value>,
    /// Leases (`coordination.k8s.io/v1`) by (namespace, name), as the API server keeps
    /// them: [`leases`].
    pub leases: BTreeMap<(String, String), Value>,
    /// The field manager owning each Lease's `spec.holderIdentity` (server-side apply's
    /// conflict rule, the one leader election relies on).
    pub lease_holder_managers: BTreeMap<(String, String), String>,
    /// Writes to Leases whose field manager contains the key fail with the fault: a
    /// replica whose renewals stop reaching the API server.
    pub lease_write_faults: Vec<(String, Fault)>,
    /// Every Lease call: `METHOD name fieldManager`, for assertions.
    pub lease_calls: Vec<String>,
    /// Events (`events.k8s.io/v1`) as written: created, then merge-patched.
    pub events: Vec<Value>,
    /// Every Event write: `METHOD namespace/name`.
    pub event_writes: Vec<String>,
    /// A group to serve from the first request whose path starts with the prefix on:
    /// (prefix, group, version, plural, Kind). A CRD created in the middle of a read.
    pub group_on_request: Option<(String, String, String, String, String)>,
}

pub struct Replay {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<ReplayState>>,
    discovery: Arc<Mutex<BTreeMap<String, Value>>>,
}

impl Replay {
    pub async fn start() -> Replay {
        Self::start_with_crds(0).await
    }

    /// Also serve a CRD group `bench.nsguard.dev/v1` with `crds` namespaced kinds
    /// (`widget0s` ...), for lookups over many resource types.
    pub async fn start_with_crds(crds: usize) -> Replay {
        let mut discovery = load_discovery();
        if crds > 0 {
            add_crd_group(&mut discovery, crds);
        }
        let discovery = Arc::new(Mutex::new(discovery));
        let state = Arc::new(Mutex::new(ReplayState::default()));
        let app = Router::new()
            .fallback(serve)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                count_bytes,
            ))
            .with_state((state.clone(), discovery.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Replay {
            addr,
            state,
            discovery,
        }
    }

    /// A kubeconfig in `dir` whose current context is this API server.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: replay, cluster: {{server: '{}'}}}}]\n\
                 users: [{{name: nsguard, user: {{token: replay-token}}}}]\n\
                 contexts: [{{name: replay, context: {{cluster: replay, user: nsguard}}}}]\ncurrent-context: replay\n",
                self.url()
            ),
        )
        .unwrap();
        path
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Add an owned object of `plural` in `namespace`.
    pub fn add(&self, namespace: &str, plural: &str, name: &str, labels: &[(&str, &str)]) {
        let mut state = self.state.lock().unwrap();
        let list = state
            .objects
            .entry((namespace.to_owned(), plural.to_owned()))
            .or_default();
        let uid = format!("uid-{namespace}-{plural}-{name}");
        let labels: BTreeMap<_, _> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        list.push(json!({"name": name, "namespace": namespace, "uid": uid, "labels": labels}));
    }

    /// Annotate the object `name` of `plural` in `namespace`, added before.
    pub fn annotate(&self, namespace: &str, plural: &str, name: &str, key: &str, value: &str) {
        let mut state = self.state.lock().unwrap();
        let list = state
            .objects
            .get_mut(&(namespace.to_owned(), plural.to_owned()))
            .unwrap();
        let object = list.iter_mut().find(|o| o["name"] == name).unwrap();
        object["annotations"][key] = value.into();
    }

    /// Serve a new API group with namespaced kinds `(plural, Kind)`, as a CRD or an
    /// APIService registered now does.
    pub fn add_group(&self, group: &str, version: &str, kinds: &[(&str, &str)]) {
        self.add_group_versions(group, &[(version, kinds)]);
    }

    /// Serve a new API group at several versions, the first preferred, each with its
    /// own namespaced kinds (a group whose CRDs sit at different versions).
    pub fn add_group_versions(&self, group: &str, versions: &[(&str, &[(&str, &str)])]) {
        let mut discovery = self.discovery.lock().unwrap();
        add_group_at(&mut discovery, group, versions);
    }

    /// Serve a new API group of cluster-scoped kinds `(plural, Kind)` (one the recorded
    /// discovery lacks, such as scheduling.k8s.io for PriorityClasses).
    pub fn add_cluster_group(&self, group: &str, version: &str, kinds: &[(&str, &str)]) {
        let mut discovery = self.discovery.lock().unwrap();
        add_scoped_group_at(&mut discovery, group, &[(version, kinds)], false);
    }

    /// Stop serving an API group, as when its CRD is deleted.
    pub fn remove_group(&self, group: &str) {
        remove_group(&mut self.discovery.lock().unwrap(), group);
    }

    /// A whole object for typed reads (`persistentvolumeclaims`, `persistentvolumes`), as
    /// `kubectl get -o json` would show it: lists across all namespaces or in one, and
    /// gets by name.
    pub fn add_typed(&self, plural: &str, object: Value) {
        self.state
            .lock()
            .unwrap()
            .typed
            .entry(plural.to_owned())
            .or_default()
            .push(object);
    }

    /// A Namespace with `labels` and a creation time, whether or not it holds objects.
    pub fn add_namespace(&self, name: &str, labels: &[(&str, &str)], created: &str) {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        self.state.lock().unwrap().namespaces.insert(
            name.to_owned(),
            json!({"name": name, "uid": format!("uid-ns-{name}"), "labels": labels,
                "creationTimestamp": created}),
        );
    }

    /// Install the PolicyReport CRD: serve its group and accept its writes.
    pub fn install_policy_reports(&self) {
        self.add_group(
            "wgpolicyk8s.io",
            "v1alpha2",
            &[("policyreports", "PolicyReport")],
        );
        self.state.lock().unwrap().policy_reports_installed = true;
    }

    /// Make the discovery document at `path` (`/apis/GROUP/VERSION`) fail.
    pub fn discovery_fault(&self, path: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .discovery_faults
            .insert(path.to_owned(), fault);
    }

    /// Every request served so far (path and query), in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Whether a request whose path and query start with `prefix` was served.
    pub fn was_requested(&self, prefix: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .any(|r| r.starts_with(prefix))
    }

    /// The Lease `namespace/name`, as stored.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        let state = self.state.lock().unwrap();
        state
            .leases
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Response body bytes served so far.
    pub fn bytes_served(&self) -> u64 {
        self.state.lock().unwrap().bytes_served
    }

    /// How many requests have been served so far.
    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    pub fn fault(&self, plural: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .insert(plural.to_owned(), fault);
    }

    pub fn clear_faults(&self) {
        let mut state = self.state.lock().unwrap();
        state.faults.clear();
        state.discovery_faults.clear();
        state.down = false;
    }

    /// How many namespaced, listable resource types the replayed discovery serves at
    /// each group's preferred version (what a discovery client should find).
    pub fn listable_types(&self) -> usize {
        let discovery = self.discovery.lock().unwrap();
        let mut versions = vec![(String::new(), "/api/v1".to_owned())];
        for group in discovery["/apis"]["groups"].as_array().unwrap() {
            for version in group["versions"].as_array().unwrap() {
                versions.push((
                    group["name"].as_str().unwrap().to_owned(),
                    format!("/apis/{}", version["groupVersion"].as_str().unwrap()),
                ));
            }
        }
        let ids: std::collections::BTreeSet<String> = versions
            .iter()
            .flat_map(|(group, path)| {
                discovery[path]["resources"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |r| (group.clone(), r))
            })
            .filter(|(_, r)| {
                r["namespaced"] == true
                    && !r["name"].as_str().unwrap().contains('/')
                    && r["verbs"].as_array().unwrap().iter().any(|v| v == "list")
            })
            .map(|(group, r)| format!("{}.{group}", r["name"].as_str().unwrap()))
            .collect();
        ids.len()
    }
}

/// Discovery documents by request path. `/apis` is narrowed to the group versions whose
/// document was recorded (and to groups whose preferred version was), so every version it
/// names can be discovered.
fn load_discovery() -> BTreeMap<String, Value> {
    let dir = repo_path("tests/fixtures/kube-apiserver/discovery");
    let mut docs = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if name == "aggregated_v2" {
            continue;
        }
        let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        docs.insert(format!("/{}", name.replace("__", "/")), value);
    }
    let mut apis = docs["/apis"].clone();
    let groups: Vec<Value> = apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| {
            docs.contains_key(&format!(
                "/apis/{}",
                g["preferredVersion"]["groupVersion"].as_str().unwrap()
            ))
        })
        .cloned()
        .map(|mut g| {
            g["versions"].as_array_mut().unwrap().retain(|v| {
                docs.contains_key(&format!("/apis/{}", v["groupVersion"].as_str().unwrap()))
            });
            g
        })
        .collect();
    apis["groups"] = Value::Array(groups);
    docs.insert("/apis".to_owned(), apis);
    docs
}

fn add_crd_group(discovery: &mut BTreeMap<String, Value>, crds: usize) {
    let plurals: Vec<(String, String)> = (0..crds)
        .map(|i| (format!("widget{i}s"), format!("Widget{i}")))
        .collect();
    let kinds: Vec<(&str, &str)> = plurals
        .iter()
        .map(|(p, k)| (p.as_str(), k.as_str()))
        .collect();
    add_group(discovery, "bench.nsguard.dev", "v1", &kinds);
}

fn remove_group(discovery: &mut BTreeMap<String, Value>, group: &str) {
    discovery.get_mut("/apis").unwrap()["groups"]
        .as_array_mut()
        .unwrap()
        .retain(|g| g["name"] != group);
    discovery.retain(|path, _| !path.starts_with(&format!("/apis/{group}/")));
}

fn add_group(
    discovery: &mut BTreeMap<String, Value>,
    group: &str,
    version: &str,
    kinds: &[(&str, &str)],
) {
    add_group_at(discovery, group, &[(version, kinds)]);
}

fn add_group_at(
    discovery: &mut BTreeMap<String, Value>,
    group: &str,
    versions: &[(&str, &[(&str, &str)])],
) {
    add_scoped_group_at(discovery, group, versions, true);
}

fn add_scoped_group_at(
    discovery: &mut BTreeMap<String, Value>,
    group: &str,
    versions: &[(&str, &[(&str, &str)])],
    namespaced: bool,
) {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|(version, _)| json!({"groupVersion": format!("{group}/{version}"), "version": version}))
        .collect();
    discovery.get_mut("/apis").unwrap()["groups"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": group, "versions": gvs, "preferredVersion": gvs[0]}));
    for (version, kinds) in versions {
        let resources: Vec<Value> = kinds
            .iter()
            .map(|(plural, kind)| {
                json!({"name": plural, "singularName": kind.to_lowercase(), "namespaced": namespaced,
                       "kind": kind, "verbs": ["delete", "get", "list", "patch", "create", "update", "watch"]})
            })
            .collect();
        discovery.insert(
            format!("/apis/{group}/{version}"),
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{group}/{version}"), "resources": resources}),
        );
    }
}

/// The aggregated discovery document (`apidiscovery.k8s.io/v2`) of `/api` or `/apis`,
/// made from the per-group-version documents as kube-apiserver makes it: each group's
/// versions in order of preference, and a version whose document fails (an aggregated API
/// whose service is gone) marked `Stale`, with no resources.
fn aggregated(
    docs: &BTreeMap<String, Value>,
    root: &str,
    faulty: &HashMap<String, Fault>,
) -> Value {
    let groups: Vec<(String, Vec<(String, String)>)> = if root == "/api" {
        vec![(String::new(), vec![("v1".to_owned(), "/api/v1".to_owned())])]
    } else {
        docs["/apis"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let preferred = g["preferredVersion"]["groupVersion"].clone();
                let mut versions: Vec<&Value> = g["versions"].as_array().unwrap().iter().collect();
                versions.sort_by_key(|v| v["groupVersion"] != preferred);
                (
                    g["name"].as_str().unwrap().to_owned(),
                    versions
                        .into_iter()
                        .map(|v| {
                            let gv = v["groupVersion"].as_str().unwrap();
                            (
                                v["version"].as_str().unwrap().to_owned(),
                                format!("/apis/{gv}"),
                            )
                        })
                        .collect(),
                )
            })
            .collect()
    };
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .into_iter()
                .map(|(version, path)| {
                    if faulty.contains_key(&path) {
                        return json!({"version": version, "resources": [], "freshness": "Stale"});
                    }
                    let resources: Vec<Value> = docs[&path]["resources"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|r| !r["name"].as_str().unwrap().contains('/'))
                        .map(|r| {
                            json!({
                                "resource": r["name"],
                                "responseKind": {"group": "", "version": "", "kind": r["kind"]},
                                "scope": if r["namespaced"] == true { "Namespaced" } else { "Cluster" },
                                "singularResource": r["singularName"],
                                "verbs": r["verbs"],
                            })
                        })
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": name}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {}, "items": items})
}

/// Adds each answer's body size (when known up front, as for every JSON answer) to
/// [`ReplayState::bytes_served`].
async fn count_bytes(
    State(state): State<Arc<Mutex<ReplayState>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(size) = axum::body::HttpBody::size_hint(response.body()).exact() {
        state.lock().unwrap().bytes_served += size;
    }
    response
}

type AppState = (Arc<Mutex<ReplayState>>, Arc<Mutex<BTreeMap<String, Value>>>);

async fn serve(
    State((state, discovery)): State<AppState>,
    method: axum::http::Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let appears = {
        let mut state = state.lock().unwrap();
        match &state.group_on_request {
            Some((prefix, ..)) if path.starts_with(prefix.as_str()) => {
                state.group_on_request.take()
            }
            _ => None,
        }
    };
    if let Some((_, group, version, plural, kind)) = appears {
        add_group_at(
            &mut discovery.lock().unwrap(),
            &group,
            &[(version.as_str(), &[(plural.as_str(), kind.as_str())][..])],
        );
    }
    if path.starts_with("/apis/wgpolicyk8s.io/v1alpha2/")
        && let Some(response) = policy_reports(&state, &method, &uri, &headers, &query, &body)
    {
        return response;
    }
    if path.starts_with("/apis/events.k8s.io/v1/namespaces/")
        && method != axum::http::Method::GET
        && let Some(response) = events(&state, &method, &path, &body).await
    {
        return response;
    }
    if path.starts_with("/apis/coordination.k8s.io/v1/namespaces/")
        && let Some(response) = leases(&state, &method, &uri, &headers, &query, &body).await
    {
        return response;
    }
    if let Some(response) =
        super::volume_api::serve(&state, &method, &path, &query, &headers, &body)
    {
        return response;
    }
    let metadata_only = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("PartialObjectMetadata"));
    if let Some(response) = typed_read(&state, &path, metadata_only).await {
        return response;
    }
    // A list across all namespaces: /api/v1/PLURAL or /apis/G/V/PLURAL.
    let cluster_wide = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["", "api", _, plural] | ["", "apis", _, _, plural]
            if *plural != "selfsubjectrulesreviews" =>
        {
            Some(plural.to_string())
        }
        _ => None,
    };
    if let Some(plural) = cluster_wide {
        let (down, fault, snapshot) = {
            let mut state = state.lock().unwrap();
            state.requests.push(uri.to_string());
            // Only what this list reads: a copy of every object per list call would make
            // the replay, not nsguard, the cost of a 20,000-object benchmark.
            let snapshot = Snapshot {
                namespaces: state.namespaces.clone(),
                objects: state
                    .objects
                    .iter()
                    .map(|(key, objects)| {
                        let wanted = key.1 == plural;
                        (
                            key.clone(),
                            if wanted { objects.clone() } else { Vec::new() },
                        )
                    })
                    .collect(),
                typed: state.typed.clone(),
            };
            (state.down, state.faults.get(&plural).cloned(), snapshot)
        };
        if down {
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the server is down",
            );
        }
        match &fault {
            Some(Fault::NotFoundThenUndiscoverable(path)) => {
                state
                    .lock()
                    .unwrap()
                    .discovery_faults
                    .insert(path.clone(), Fault::Unavailable);
            }
            Some(Fault::NotFoundThenRemoved(group)) => {
                remove_group(&mut discovery.lock().unwrap(), group);
            }
            _ => {}
        }
        if let Some(fault) = fault
            && let Some(response) = fault_response(fault).await
        {
            return response;
        }
        return cluster_list(&snapshot, &plural, metadata_only, &query);
    }
    let (fault, objects, down, discovery_fault) = {
        let mut state = state.lock().unwrap();
        state.requests.push(uri.to_string());
        let segments: Vec<&str> = path.split('/').collect();
        // /api/v1/namespaces/NS/PLURAL or /apis/G/V/namespaces/NS/PLURAL
        let list = match segments.as_slice() {
            ["", "api", _, "namespaces", ns, plural]
            | ["", "apis", _, _, "namespaces", ns, plural] => {
                Some((ns.to_string(), plural.to_string()))
            }
            _ => None,
        };
        if let Some(Fault::NotFoundThenUndiscoverable(discovery)) = list
            .as_ref()
            .and_then(|(_, plural)| state.faults.get(plural))
            .cloned()
        {
            state.discovery_faults.insert(discovery, Fault::Unavailable);
        }
        // GET /api/v1/namespaces/NS: a Namespace exists while it holds objects.
        if let ["", "api", "v1", "namespaces", ns] = segments.as_slice() {
            let fault = state.faults.get("namespaces").cloned();
            let exists =
                state.objects.keys().any(|(n, _)| n == ns) || state.namespaces.contains_key(*ns);
            return namespace_response(ns, exists, fault, state.down);
        }
        match list {
            Some((ns, plural)) => (
                state.faults.get(&plural).cloned(),
                // Only the page asked for is copied out: a namespace of 20,000 objects
                // read in pages must not cost the replay 20,000 copies a page.
                Some(page(
                    state
                        .objects
                        .get(&(ns, plural))
                        .map_or(&[][..], Vec::as_slice),
                    &query,
                )),
                state.down,
                None,
            ),
            None => (
                None,
                None,
                state.down,
                state.discovery_faults.get(&path).cloned(),
            ),
        }
    };
    if !down && path == "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews" {
        let fault = state.lock().unwrap().access_review_fault.clone();
        if let Some(fault) = fault
            && let Some(response) = fault_response(fault).await
        {
            return response;
        }
        let rules = state.lock().unwrap().rules.clone().unwrap_or_else(
            || json!([{"verbs": ["list"], "apiGroups": ["*"], "resources": ["*"]}]),
        );
        let body = json!({"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
            "spec": {}, "status": {"resourceRules": rules, "nonResourceRules": [], "incomplete": false}});
        return (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    if down {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the server is down",
        );
    }
    let Some(objects) = objects else {
        if let Some(fault) = discovery_fault
            && let Some(response) = fault_response(fault).await
        {
            return response;
        }
        let asks_aggregated = headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("as=APIGroupDiscoveryList"));
        if (path == "/api" || path == "/apis")
            && asks_aggregated
            && state.lock().unwrap().aggregated
        {
            let faulty = state.lock().unwrap().discovery_faults.clone();
            let doc = aggregated(&discovery.lock().unwrap(), &path, &faulty);
            return (
                [(
                    header::CONTENT_TYPE,
                    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                )],
                doc.to_string(),
            )
                .into_response();
        }
        let doc = discovery.lock().unwrap().get(&path).cloned();
        return match doc {
            Some(doc) => (
                [(header::CONTENT_TYPE, "application/json")],
                doc.to_string(),
            )
                .into_response(),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            ),
        };
    };
    match fault {
        Some(fault) => match fault_response(fault).await {
            Some(response) => response,
            None => page_response(objects),
        },
        None => page_response(objects),
    }
}

/// PolicyReports, once their CRD is installed: server-side apply (PATCH), delete, and a
/// metadata list across all namespaces or in one, by `key=value` label selector. `None`
/// otherwise.
fn policy_reports(
    state: &Mutex<ReplayState>,
    method: &axum::http::Method,
    uri: &Uri,
    headers: &axum::http::HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Option<Response> {
    let mut state = state.lock().unwrap();
    if !state.policy_reports_installed {
        return None;
    }
    state.requests.push(uri.to_string());
    let segments: Vec<String> = uri.path().split('/').map(str::to_owned).collect();
    let json = |body: Value| json_response(StatusCode::OK, &body);
    match (method.as_str(), segments.as_slice()) {
        ("PATCH" | "DELETE", [_, _, _, _, ns, namespace, plural, name])
            if ns == "namespaces" && plural == "policyreports" =>
        {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|c| c.to_str().ok())
                .unwrap_or("");
            state
                .policy_report_writes
                .push(format!("{method} {uri} {content_type}"));
            let key = (namespace.clone(), name.clone());
            if method == "DELETE" {
                return Some(match state.policy_reports.remove(&key) {
                    Some(_) => {
                        json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
                    }
                    None => status(StatusCode::NOT_FOUND, "NotFound", "policyreports not found"),
                });
            }
            let mut object: Value = serde_json::from_slice(body).unwrap();
            object["metadata"]["uid"] = format!("uid-{namespace}-{name}").into();
            state.policy_reports.insert(key, object.clone());
            Some(json(object))
        }
        ("GET", [_, _, _, _, plural]) | ("GET", [_, _, _, _, _, _, plural])
            if plural == "policyreports" =>
        {
            // Across all namespaces, or in one (`.../namespaces/NS/policyreports`).
            let in_namespace = (segments.len() == 7).then(|| segments[5].clone());
            let wanted: Vec<(&str, &str)> = query
                .get("labelSelector")
                .map(|s| s.split(',').filter_map(|kv| kv.split_once('=')).collect())
                .unwrap_or_default();
            let items: Vec<Value> = state
                .policy_reports
                .iter()
                .filter(|((ns, _), _)| in_namespace.as_ref().is_none_or(|want| want == ns))
                .map(|(_, r)| r)
                .filter(|r| wanted.iter().all(|(k, v)| r["metadata"]["labels"][*k] == *v))
                .map(|r| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": r["metadata"]}))
                .collect();
            Some(json(
                json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "1"}, "items": items}),
            ))
        }
        _ => None,
    }
}

/// One Lease (`/apis/coordination.k8s.io/v1/namespaces/NS/leases[/NAME]`) as the API
/// server answers it: GET; POST (409 AlreadyExists); PUT with `metadata.resourceVersion`
/// (409 Conflict when stale); PATCH as server-side apply (`application/apply-patch+yaml`:
/// 409 Conflict when `spec.holderIdentity` would change and another field manager owns
/// it, unless `force=true`) or as a strategic/merge patch (a `null` removes a field; a
/// stale `metadata.resourceVersion` is 409). Every write bumps the resourceVersion.
/// `None` for lists and other paths.
async fn leases(
    state: &Mutex<ReplayState>,
    method: &axum::http::Method,
    uri: &Uri,
    headers: &axum::http::HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Option<Response> {
    let segments: Vec<&str> = uri.path().split('/').collect();
    let (namespace, name) = match segments.as_slice() {
        [
            "",
            "apis",
            "coordination.k8s.io",
            "v1",
            "namespaces",
            ns,
            "leases",
            name,
        ] => (ns.to_string(), Some(name.to_string())),
        [
            "",
            "apis",
            "coordination.k8s.io",
            "v1",
            "namespaces",
            ns,
            "leases",
        ] if method == "POST" => (ns.to_string(), None),
        _ => return None,
    };
    let manager = query.get("fieldManager").cloned().unwrap_or_default();
    let fault = {
        let mut state = state.lock().unwrap();
        state.requests.push(uri.to_string());
        state.lease_calls.push(format!(
            "{method} {} {manager}",
            name.as_deref().unwrap_or("-")
        ));
        if method == "GET" {
            None
        } else {
            state
                .lease_write_faults
                .iter()
                .find(|(who, _)| manager.contains(who.as_str()))
                .map(|(_, fault)| fault.clone())
        }
    };
    if let Some(fault) = fault
        && let Some(response) = fault_response(fault).await
    {
        return Some(response);
    }
    let ok = |code: StatusCode, lease: &Value| {
        (
            code,
            [(header::CONTENT_TYPE, "application/json")],
            lease.to_string(),
        )
            .into_response()
    };
    let not_found = |name: &str| {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("leases.coordination.k8s.io \"{name}\" not found"),
        )
    };
    let conflict = |message: String| status(StatusCode::CONFLICT, "Conflict", &message);
    let mut state = state.lock().unwrap();
    let Ok(patch) = (if method == "GET" || method == "DELETE" {
        Ok(Value::Null)
    } else {
        serde_json::from_slice::<Value>(body)
    }) else {
        return Some(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "body is not JSON",
        ));
    };
    if method == "POST" {
        let name = patch["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = (namespace.clone(), name.clone());
        if state.leases.contains_key(&key) {
            return Some(status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("leases.coordination.k8s.io \"{name}\" already exists"),
            ));
        }
        let mut lease = patch;
        lease["apiVersion"] = "coordination.k8s.io/v1".into();
        lease["kind"] = "Lease".into();
        lease["metadata"]["namespace"] = namespace.clone().into();
        lease["metadata"]["uid"] = format!("uid-lease-{name}").into();
        lease["metadata"]["resourceVersion"] = "1".into();
        if lease.get("spec").is_none_or(Value::is_null) {
            lease["spec"] = json!({});
        }
        if let Some(holder) = lease["spec"]["holderIdentity"].as_str()
            && !holder.is_empty()
        {
            state
                .lease_holder_managers
                .insert(key.clone(), manager.clone());
        }
        state.leases.insert(key, lease.clone());
        return Some(ok(StatusCode::CREATED, &lease));
    }
    let name = name.unwrap_or_default();
    let key = (namespace.clone(), name.clone());
    if method == "GET" {
        return Some(match state.leases.get(&key) {
            Some(lease) => ok(StatusCode::OK, lease),
            None => not_found(&name),
        });
    }
    let Some(current) = state.leases.get(&key).cloned() else {
        return Some(not_found(&name));
    };
    let version: u64 = current["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    if let Some(wanted) = patch["metadata"]["resourceVersion"].as_str()
        && wanted != version.to_string()
    {
        return Some(conflict(format!(
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        )));
    }
    let mut lease = current.clone();
    let owner = state.lease_holder_managers.get(&key).cloned();
    match method.as_str() {
        "PUT" => {
            lease["spec"] = patch["spec"].clone();
        }
        "PATCH" => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|c| c.to_str().ok())
                .unwrap_or("");
            let apply = content_type.starts_with("application/apply-patch");
            let force = query.get("force").is_some_and(|f| f == "true");
            let holder = &patch["spec"]["holderIdentity"];
            if apply
                && !force
                && let Some(new) = holder.as_str()
                && let Some(old) = current["spec"]["holderIdentity"].as_str()
                && old != new
                && owner.as_deref().is_some_and(|o| o != manager)
            {
                return Some(conflict(format!(
                    "Apply failed with 1 conflict: conflict with \"{}\": .spec.holderIdentity",
                    owner.unwrap_or_default()
                )));
            }
            if let Some(fields) = patch["spec"].as_object() {
                let spec = lease["spec"].as_object_mut().unwrap();
                for (field, value) in fields {
                    if value.is_null() {
                        spec.remove(field);
                    } else {
                        spec.insert(field.clone(), value.clone());
                    }
                }
            }
        }
        _ => {
            return Some(status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "not supported by the replay",
            ));
        }
    }
    match lease["spec"]["holderIdentity"].as_str() {
        Some(holder)
            if !holder.is_empty() && current["spec"]["holderIdentity"].as_str() != Some(holder) =>
        {
            state.lease_holder_managers.insert(key.clone(), manager);
        }
        Some(_) => {}
        None => {
            state.lease_holder_managers.remove(&key);
        }
    }
    lease["metadata"]["resourceVersion"] = (version + 1).to_string().into();
    state.leases.insert(key, lease.clone());
    Some(ok(StatusCode::OK, &lease))
}

/// Reads of whole typed objects ([`Replay::add_typed`]) in one namespace or by name:
/// `GET /api/v1/namespaces/NS/PLURAL` (not metadata-only) and `GET /api/v1/PLURAL/NAME`,
/// with the plural's fault. `None` for every other path.
async fn typed_read(
    state: &Mutex<ReplayState>,
    path: &str,
    metadata_only: bool,
) -> Option<Response> {
    let segments: Vec<&str> = path.split('/').collect();
    let (namespace, plural, name) = match segments.as_slice() {
        ["", "api", "v1", "namespaces", ns, plural] if !metadata_only => (Some(*ns), *plural, None),
        ["", "api", "v1", plural, name] if *plural != "namespaces" => (None, *plural, Some(*name)),
        _ => return None,
    };
    let (items, fault, down) = {
        let mut state = state.lock().unwrap();
        let items = state.typed.get(plural)?.clone();
        state.requests.push(path.to_owned());
        (items, state.faults.get(plural).cloned(), state.down)
    };
    if down {
        return Some(status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the server is down",
        ));
    }
    if let Some(fault) = fault
        && let Some(response) = fault_response(fault).await
    {
        return Some(response);
    }
    let json = |body: Value| json_response(StatusCode::OK, &body);
    Some(match (namespace, name) {
        (Some(ns), _) => {
            let items: Vec<Value> = items
                .into_iter()
                .filter(|o| o["metadata"]["namespace"] == ns)
                .collect();
            json(
                json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "4242"}, "items": items}),
            )
        }
        (None, Some(name)) => match items.into_iter().find(|o| o["metadata"]["name"] == name) {
            Some(object) => json(object),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{plural} \"{name}\" not found"),
            ),
        },
        (None, None) => unreachable!("every pattern names a namespace or a name"),
    })
}

/// Event writes, as the API server takes them: POST creates (409 if the name is taken),
/// PATCH merges into an existing one (404 if none); `fault("events", ...)` answers instead.
async fn events(
    state: &Mutex<ReplayState>,
    method: &axum::http::Method,
    path: &str,
    body: &[u8],
) -> Option<Response> {
    let rest = path.strip_prefix("/apis/events.k8s.io/v1/namespaces/")?;
    let (namespace, name) = match rest.split('/').collect::<Vec<_>>().as_slice() {
        [ns, "events"] => (ns.to_string(), None),
        [ns, "events", name] => (ns.to_string(), Some(name.to_string())),
        _ => return None,
    };
    let fault = {
        let mut state = state.lock().unwrap();
        state.requests.push(format!("{method} {path}"));
        state.faults.get("events").cloned()
    };
    if let Some(fault) = fault
        && let Some(response) = fault_response(fault).await
    {
        return Some(response);
    }
    let Ok(written) = serde_json::from_slice::<Value>(body) else {
        return Some(status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON"));
    };
    let mut state = state.lock().unwrap();
    Some(match (method.as_str(), name) {
        ("POST", None) => {
            let name = written["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if state
                .events
                .iter()
                .any(|e| e["metadata"]["name"] == name.as_str())
            {
                return Some(status(StatusCode::CONFLICT, "AlreadyExists", "exists"));
            }
            let mut created = written.clone();
            created["metadata"]["namespace"] = namespace.as_str().into();
            state.event_writes.push(format!("POST {namespace}/{name}"));
            state.events.push(created.clone());
            json_response(StatusCode::CREATED, &created)
        }
        ("PATCH", Some(name)) => {
            let Some(event) = state
                .events
                .iter_mut()
                .find(|e| e["metadata"]["name"] == name)
            else {
                return Some(status(StatusCode::NOT_FOUND, "NotFound", "no such event"));
            };
            json_patch::merge(event, &written);
            let patched = event.clone();
            state.event_writes.push(format!("PATCH {namespace}/{name}"));
            json_response(StatusCode::OK, &patched)
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not here",
        ),
    })
}

/// A Namespace GET: the object, 404, or the fault's answer.
fn namespace_response(name: &str, exists: bool, fault: Option<Fault>, down: bool) -> Response {
    match fault {
        _ if down => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the server is down",
        ),
        Some(Fault::Forbidden) => status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "namespaces \"{name}\" is forbidden: User \"alice\" cannot get resource \"namespaces\""
            ),
        ),
        _ if !exists => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("namespaces \"{name}\" not found"),
        ),
        _ => (
            [(header::CONTENT_TYPE, "application/json")],
            json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name}})
                .to_string(),
        )
            .into_response(),
    }
}

/// The answer a fault gives, or `None` when it only delays the normal answer.
async fn fault_response(fault: Fault) -> Option<Response> {
    Some(match fault {
        Fault::Forbidden => status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "User \"system:serviceaccount:nsguard-system:nsguard\" cannot list resource",
        ),
        Fault::ServerError => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "etcdserver: request timed out",
        ),
        Fault::NotFound | Fault::NotFoundThenUndiscoverable(_) | Fault::NotFoundThenRemoved(_) => {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
        Fault::Unavailable => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        Fault::Throttled => {
            let mut response = status(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "too many requests, please try again later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            return None;
        }
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return None;
        }
        Fault::Garbage => (
            [(header::CONTENT_TYPE, "application/json")],
            "<html>proxy error</html>",
        )
            .into_response(),
        Fault::Truncated => {
            let stream = futures::stream::iter(vec![
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                    b"{\"kind\":\"PartialObjectMetadataList\",\"items\":[",
                )),
                Err(std::io::Error::other("connection reset")),
            ]);
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, "4096")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    })
}

/// One page of a PartialObjectMetadataList: label selector (`k1,k2` existence), limit,
/// continue; only the page's objects are copied.
fn page(objects: &[Value], query: &HashMap<String, String>) -> (Vec<Value>, Option<String>) {
    let required: Vec<&str> = query
        .get("labelSelector")
        .map(|s| s.split(',').filter(|k| !k.is_empty()).collect())
        .unwrap_or_default();
    let start: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    // `start` and the continue token count matching objects, as the API server's do.
    let mut matching = objects
        .iter()
        .filter(|o| required.iter().all(|k| o["labels"].get(*k).is_some()))
        .skip(start);
    let items: Vec<Value> = matching.by_ref().take(limit).cloned().collect();
    let next = matching
        .next()
        .is_some()
        .then(|| (start + items.len()).to_string());
    (items, next)
}

/// A PartialObjectMetadataList answer of one [`page`].
fn page_response((items, next): (Vec<Value>, Option<String>)) -> Response {
    let items: Vec<Value> = items
        .into_iter()
        .map(|m| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": m}))
        .collect();
    let mut meta = json!({"resourceVersion": "4242"});
    if let Some(next) = next {
        meta["continue"] = next.into();
    }
    let body = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

/// `body` as a JSON answer with `code`.
pub fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The objects `kubectl create --dry-run=client -o json` reads from `yaml` (with `args`, such as
/// `--namespace`), against this replayed API server's discovery: the real consumer's
/// reading, to compare nsguard's with.
pub async fn kubectl_reads(replay: &Replay, yaml: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let (server, yaml) = (replay.url(), yaml.to_owned());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = std::process::Command::new("kubectl")
            .args([
                "create",
                "--dry-run=client",
                "--validate=false",
                "-o",
                "json",
                "-f",
                "-",
            ])
            .args(["--server", &server])
            .args(&args)
            .env("KUBECONFIG", "/dev/null")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl on the PATH (tests/run.sh installs it)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // One JSON object per created object, one after another.
        serde_json::Deserializer::from_slice(&out.stdout)
            .into_iter()
            .map(Result::unwrap)
            .collect()
    })
    .await
    .unwrap()
}

/// The types the benchmarks fill: five built-in ones and every kind of the CRD group of
/// [`Replay::start_with_crds`]`(crds)`.
pub fn bench_plurals(crds: usize) -> Vec<String> {
    [
        "configmaps",
        "services",
        "deployments",
        "serviceaccounts",
        "cronjobs",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain((0..crds).map(|i| format!("widget{i}s")))
    .collect()
}

/// What a list across all namespaces reads.
struct Snapshot {
    namespaces: BTreeMap<String, Value>,
    objects: HashMap<(String, String), Vec<Value>>,
    typed: HashMap<String, Vec<Value>>,
}

/// A list across all namespaces: typed whole objects when asked for them (and held), or
/// the metadata of every object of `plural` in every namespace (`namespaces`: each
/// namespace that holds objects, or typed ones).
fn cluster_list(
    snapshot: &Snapshot,
    plural: &str,
    metadata_only: bool,
    query: &HashMap<String, String>,
) -> Response {
    if !metadata_only && let Some(items) = snapshot.typed.get(plural) {
        let kind = match plural {
            "persistentvolumeclaims" => "PersistentVolumeClaimList",
            "persistentvolumes" => "PersistentVolumeList",
            _ => "List",
        };
        let body = json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "4242"}, "items": items});
        return (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    if plural == "namespaces" {
        let mut names: BTreeSet<String> =
            snapshot.objects.keys().map(|(ns, _)| ns.clone()).collect();
        for items in snapshot.typed.values() {
            names.extend(
                items
                    .iter()
                    .filter_map(|o| o["metadata"]["namespace"].as_str().map(str::to_owned)),
            );
        }
        names.extend(snapshot.namespaces.keys().cloned());
        let objects: Vec<Value> = names
            .into_iter()
            .map(|name| {
                snapshot.namespaces.get(&name).cloned().unwrap_or_else(
                    || json!({"name": name, "uid": format!("uid-ns-{name}"), "labels": {}}),
                )
            })
            .collect();
        return page_response(page(&objects, &HashMap::new()));
    }
    let mut keys: Vec<&(String, String)> = snapshot
        .objects
        .keys()
        .filter(|(_, p)| p == plural)
        .collect();
    keys.sort();
    let objects: Vec<Value> = keys
        .into_iter()
        .flat_map(|key| snapshot.objects[key].clone())
        .collect();
    page_response(page(&objects, query))
}
