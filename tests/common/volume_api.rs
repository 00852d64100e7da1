//! The replay's PersistentVolumeClaims and PersistentVolumes as kubectl reads and writes
//! them (get, list by `metadata.name`, merge and JSON patches with `test` operations,
//! delete, each with `?dryRun=All`), Deployments' scale subresource, and the PV
//! controller's binding rules (Kubernetes' "Binding" and "Reserving a PersistentVolume"),
//! applied after every write that is not a dry run:
//! - a claim deleted: its volume goes `Released` (reclaim policy Retain) or is deleted
//!   with it (Delete);
//! - a volume whose `claimRef` has no uid is reserved for that claim name: `Available`
//!   until the claim exists, then both `Bound`;
//! - a new claim no volume is reserved for gets a new volume (dynamic provisioning,
//!   reclaim policy Delete).
//!
//! So that a migration script runs through real kubectl, line by line, against the states
//! docs/migration.md describes.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::replay::{ReplayState, json_response, status};

/// The answer to a claim, volume or scale call, or `None` for any other path.
pub fn serve(
    state: &Mutex<ReplayState>,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Option<Response> {
    let segments: Vec<&str> = path.split('/').collect();
    let (plural, namespace, name) = match segments.as_slice() {
        ["", "api", "v1", "persistentvolumes"] => ("persistentvolumes", None, None),
        // The volume guard's list of one claim name in every namespace.
        ["", "api", "v1", "persistentvolumeclaims"] => ("persistentvolumeclaims", None, None),
        ["", "api", "v1", "persistentvolumes", name] => ("persistentvolumes", None, Some(*name)),
        ["", "api", "v1", "namespaces", ns, "persistentvolumeclaims"] => {
            ("persistentvolumeclaims", Some(*ns), None)
        }
        [
            "",
            "api",
            "v1",
            "namespaces",
            ns,
            "persistentvolumeclaims",
            name,
        ] => ("persistentvolumeclaims", Some(*ns), Some(*name)),
        [
            "",
            "apis",
            "apps",
            "v1",
            "namespaces",
            ns,
            plural @ ("deployments" | "statefulsets"),
            name,
            rest @ ..,
        ] if rest.len() <= 1 => {
            return Some(workload(
                state,
                method,
                ns,
                plural,
                name,
                !rest.is_empty(),
                query,
            ));
        }
        _ => return None,
    };
    // Metadata-only lists (nsguard's scans) stay with the replay's list code; a
    // metadata-only get (the volume guard's CLI) is answered here, from the whole object.
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or_default();
    if accept.contains("PartialObjectMetadata") && name.is_none() {
        return None;
    }
    let mut state = state.lock().unwrap();
    state.requests.push(if *method == Method::GET {
        path.to_owned()
    } else {
        format!("{method} {path}")
    });
    if state.faults.contains_key(plural) || state.down {
        return None;
    }
    let here = |o: &Value| namespace.is_none_or(|ns| o["metadata"]["namespace"] == ns);
    // kubectl sends a delete's dryRun in its DeleteOptions body, a patch's in the query.
    let dry_run = query.get("dryRun").is_some_and(|d| d == "All")
        || serde_json::from_slice::<Value>(body).is_ok_and(|b| b["dryRun"][0] == "All");
    let objects = state.typed.entry(plural.to_owned()).or_default();
    let Some(name) = name else {
        if *method != Method::GET {
            return None;
        }
        // kubectl wait and the volume guard list by name; the audit lists everything.
        let wanted = query
            .get("fieldSelector")
            .and_then(|f| f.strip_prefix("metadata.name="));
        let items: Vec<Value> = objects
            .iter()
            .filter(|o| here(o) && wanted.is_none_or(|n| o["metadata"]["name"] == n))
            .cloned()
            .collect();
        let kind = if plural == "persistentvolumes" {
            "PersistentVolumeList"
        } else {
            "PersistentVolumeClaimList"
        };
        return Some(json_response(
            StatusCode::OK,
            &json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "4242"}, "items": items}),
        ));
    };
    let Some(index) = objects
        .iter()
        .position(|o| here(o) && o["metadata"]["name"] == name)
    else {
        return Some(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{plural} \"{name}\" not found"),
        ));
    };
    let current = objects[index].clone();
    let answer = match *method {
        Method::GET => return Some(json_response(StatusCode::OK, &current)),
        Method::DELETE => {
            if !dry_run {
                objects.remove(index);
                // Its metadata, as nsguard's metadata-only lists read it, goes too.
                if let Some(ns) = namespace
                    && let Some(list) = state.objects.get_mut(&(ns.to_owned(), plural.to_owned()))
                {
                    list.retain(|o| o["name"] != name);
                }
            }
            current
        }
        Method::PATCH => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|c| c.to_str().ok())
                .unwrap_or_default();
            let Ok(patch) = serde_json::from_slice::<Value>(body) else {
                return Some(status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON"));
            };
            let mut patched = current.clone();
            if content_type.starts_with("application/json-patch+json") {
                let patch: json_patch::Patch = match serde_json::from_value(patch) {
                    Ok(patch) => patch,
                    Err(err) => {
                        return Some(status(
                            StatusCode::BAD_REQUEST,
                            "BadRequest",
                            &err.to_string(),
                        ));
                    }
                };
                if let Err(err) = json_patch::patch(&mut patched, &patch) {
                    // What the API server answers a failed `test` operation.
                    return Some(status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        &format!(
                            "the server rejected our request due to an error in our request: {err}"
                        ),
                    ));
                }
            } else {
                json_patch::merge(&mut patched, &patch);
            }
            if !dry_run {
                objects[index] = patched.clone();
            }
            patched
        }
        _ => return None,
    };
    if !dry_run {
        settle(&mut state);
    }
    Some(json_response(StatusCode::OK, &answer))
}

/// A Deployment or StatefulSet added with [`super::replay::Replay::add`], whole (GET), or
/// its scale subresource (GET, PATCH): scaling is recorded in `requests`.
fn workload(
    state: &Mutex<ReplayState>,
    method: &Method,
    namespace: &str,
    plural: &str,
    name: &str,
    scale: bool,
    query: &HashMap<String, String>,
) -> Response {
    let mut state = state.lock().unwrap();
    state.requests.push(format!(
        "{method} {plural}/{name}{} in {namespace}{}",
        if scale { "/scale" } else { "" },
        if query.contains_key("dryRun") {
            " (dry run)"
        } else {
            ""
        }
    ));
    let found = state
        .objects
        .get(&(namespace.to_owned(), plural.to_owned()))
        .and_then(|list| list.iter().find(|o| o["name"] == name))
        .cloned();
    let Some(metadata) = found else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{plural}.apps \"{name}\" not found"),
        );
    };
    let kind = if plural == "deployments" {
        "Deployment"
    } else {
        "StatefulSet"
    };
    if scale {
        return json_response(
            StatusCode::OK,
            &json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": metadata,
                "spec": {"replicas": 0}, "status": {"replicas": 0}}),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": kind, "apiVersion": "apps/v1", "metadata": metadata,
            "spec": {"replicas": 1}}),
    )
}

/// The PV controller's binding rules, applied until nothing changes.
fn settle(state: &mut ReplayState) {
    let claims = state
        .typed
        .remove("persistentvolumeclaims")
        .unwrap_or_default();
    let mut volumes = state.typed.remove("persistentvolumes").unwrap_or_default();
    let mut claims = claims;
    let key = |o: &Value| {
        (
            o["namespace"].as_str().unwrap_or_default().to_owned(),
            o["name"].as_str().unwrap_or_default().to_owned(),
        )
    };
    // A bound volume whose claim is gone: Released, or deleted with it.
    volumes.retain_mut(|volume| {
        let reference = &volume["spec"]["claimRef"];
        if reference["uid"].as_str().is_none_or(str::is_empty) {
            return true;
        }
        let (ns, name) = key(reference);
        let exists = claims.iter().any(|c| {
            c["metadata"]["namespace"] == ns.as_str() && c["metadata"]["name"] == name.as_str()
        });
        if exists {
            return true;
        }
        if volume["spec"]["persistentVolumeReclaimPolicy"] == "Delete" {
            return false;
        }
        volume["status"] = json!({"phase": "Released"});
        true
    });
    // Reserved volumes: Available until their claim exists, then bound to it.
    for volume in &mut volumes {
        let reference = volume["spec"]["claimRef"].clone();
        if reference.is_null() || !reference["uid"].as_str().is_none_or(str::is_empty) {
            continue;
        }
        let (ns, name) = key(&reference);
        let claim = claims.iter_mut().find(|c| {
            c["metadata"]["namespace"] == ns.as_str()
                && c["metadata"]["name"] == name.as_str()
                && c["status"]["phase"] != "Bound"
        });
        match claim {
            Some(claim) => {
                claim["spec"]["volumeName"] = volume["metadata"]["name"].clone();
                claim["status"] = json!({"phase": "Bound"});
                volume["spec"]["claimRef"]["uid"] = claim["metadata"]["uid"].clone();
                volume["status"] = json!({"phase": "Bound"});
            }
            None => volume["status"] = json!({"phase": "Available"}),
        }
    }
    // A new claim nothing is reserved for: a new, empty volume.
    for claim in &mut claims {
        if claim["status"]["phase"] == "Bound" {
            continue;
        }
        let uid = claim["metadata"]["uid"]
            .as_str()
            .unwrap_or("new")
            .to_owned();
        let volume_name = format!("pvc-{uid}");
        claim["spec"]["volumeName"] = volume_name.clone().into();
        claim["status"] = json!({"phase": "Bound"});
        volumes.push(json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": volume_name},
            "spec": {"persistentVolumeReclaimPolicy": "Delete", "claimRef": {"kind": "PersistentVolumeClaim",
                "namespace": claim["metadata"]["namespace"], "name": claim["metadata"]["name"], "uid": uid}},
            "status": {"phase": "Bound"}}));
    }
    state.typed.insert("persistentvolumeclaims".into(), claims);
    state.typed.insert("persistentvolumes".into(), volumes);
}

/// Add a claim the way its creator does (the redeploy, in a test): the PV controller
/// binds it at once.
pub fn create_claim(state: &Mutex<ReplayState>, namespace: &str, name: &str, labels: Value) {
    let mut state = state.lock().unwrap();
    state
        .typed
        .entry("persistentvolumeclaims".into())
        .or_default()
        .push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"), "labels": labels},
            "spec": {}, "status": {"phase": "Pending"}}));
    settle(&mut state);
}
