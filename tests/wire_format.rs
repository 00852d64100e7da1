//! nsguard reads and writes AdmissionReview with its own borrowed types (the hot path);
//! these tests hold them to kube-rs's `AdmissionReview`, which follows
//! `k8s.io/api/admission/v1`, on every real body we have: the reviews a kube-apiserver
//! sent, and the API's own round-trip fixtures where every field is filled.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation as KubeOperation};
use nsguard::admission::{self, Metadata, Operation, Request, Response, TextMap};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut bodies = Vec::new();
    for dir in ["admission-review", "admission-review/mutating"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                bodies.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    // Round-trip fixtures hold placeholders; "operationValue" is no operation either
    // decoder accepts, so it becomes a real one.
    for file in [
        "admission.k8s.io.v1.AdmissionReview.json",
        "v1.35.0/admission.k8s.io.v1.AdmissionReview.json",
    ] {
        let text = std::fs::read_to_string(root.join("kube-apiserver/roundtrip").join(file))
            .unwrap()
            .replace("\"operationValue\"", "\"UPDATE\"");
        bodies.push((file.to_owned(), text.into_bytes()));
    }
    bodies.push(("namespace round-trip object".to_owned(), namespace_review()));
    assert!(bodies.len() >= 23, "fixtures missing: {}", bodies.len());
    bodies
}

/// A DELETE review whose oldObject is the API's Namespace round-trip fixture: random
/// Unicode, escapes and every ObjectMeta field.
fn namespace_review() -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let namespace =
        std::fs::read_to_string(root.join("kube-apiserver/roundtrip/core.v1.Namespace.json"))
            .unwrap();
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u-ns",
        "kind":{{"group":"","version":"v1","kind":"Namespace"}},
        "resource":{{"group":"","version":"v1","resource":"namespaces"}},
        "name":"x","operation":"DELETE","userInfo":{{"username":"admin","groups":["a","b\u0021"]}},
        "oldObject":{namespace}}}}}"#
    )
    .into_bytes()
}

/// kube's reading of the request. The round-trip fixtures also carry a response with
/// placeholder enums kube rejects; a request's reader ignores it, so it is dropped here.
fn kube_request(body: &[u8]) -> AdmissionRequest<DynamicObject> {
    let mut review: serde_json::Value = serde_json::from_slice(body).unwrap();
    review.as_object_mut().unwrap().remove("response");
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(review).unwrap();
    review.try_into().unwrap()
}

fn map(map: Option<&TextMap<'_>>) -> Option<BTreeMap<String, String>> {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

fn assert_same_metadata(what: &str, ours: Option<&Metadata<'_>>, kube: Option<&DynamicObject>) {
    assert_eq!(ours.is_some(), kube.is_some(), "{what}: presence");
    let (Some(ours), Some(kube)) = (ours, kube) else {
        return;
    };
    let meta = &kube.metadata;
    let text = |t: &Option<admission::Text<'_>>| t.as_ref().map(ToString::to_string);
    assert_eq!(text(&ours.name), meta.name, "{what}: name");
    assert_eq!(text(&ours.namespace), meta.namespace, "{what}: namespace");
    assert_eq!(
        text(&ours.generate_name),
        meta.generate_name,
        "{what}: generateName"
    );
    assert_eq!(map(ours.labels.as_ref()), meta.labels, "{what}: labels");
    assert_eq!(
        map(ours.annotations.as_ref()),
        meta.annotations,
        "{what}: annotations"
    );
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true));
    assert_eq!(ours.controller_owned(), controller, "{what}: controller");
}

fn assert_same_request(what: &str, ours: &Request<'_>, kube: &AdmissionRequest<DynamicObject>) {
    assert_eq!(ours.uid.as_str(), kube.uid, "{what}: uid");
    assert_eq!(
        ours.kind.group.as_str(),
        kube.kind.group,
        "{what}: kind.group"
    );
    assert_eq!(
        ours.kind.version.as_str(),
        kube.kind.version,
        "{what}: kind.version"
    );
    assert_eq!(ours.kind.kind.as_str(), kube.kind.kind, "{what}: kind.kind");
    assert_eq!(
        ours.resource.resource.as_str(),
        kube.resource.resource,
        "{what}: resource"
    );
    assert_eq!(
        ours.sub_resource.as_ref().map(ToString::to_string),
        kube.sub_resource,
        "{what}: subResource"
    );
    assert_eq!(ours.name.as_str(), kube.name, "{what}: name");
    assert_eq!(
        ours.namespace.as_ref().map(ToString::to_string),
        kube.namespace,
        "{what}: namespace"
    );
    let operation = match kube.operation {
        KubeOperation::Create => Operation::Create,
        KubeOperation::Update => Operation::Update,
        KubeOperation::Delete => Operation::Delete,
        KubeOperation::Connect => Operation::Connect,
    };
    assert_eq!(ours.operation, operation, "{what}: operation");
    assert_eq!(ours.dry_run, kube.dry_run, "{what}: dryRun");
    assert_eq!(
        ours.user_info.username.as_ref().map(ToString::to_string),
        kube.user_info.username,
        "{what}: username"
    );
    assert_eq!(
        ours.user_info
            .groups
            .as_ref()
            .map(|g| g.iter().map(ToString::to_string).collect::<Vec<_>>()),
        kube.user_info.groups,
        "{what}: groups"
    );
    assert_same_metadata(
        &format!("{what} object"),
        ours.object.as_ref().map(|o| &o.metadata),
        kube.object.as_ref(),
    );
    assert_same_metadata(
        &format!("{what} oldObject"),
        ours.old_object.as_ref().map(|o| &o.metadata),
        kube.old_object.as_ref(),
    );
}

#[test]
fn requests_decode_as_kube_decodes_them() {
    for (name, body) in fixtures() {
        let ours = admission::decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_same_request(&name, &ours, &kube_request(&body));
    }
}

#[test]
fn responses_decode_in_kube_as_written() {
    for (name, body) in fixtures() {
        let request = admission::decode(&body).unwrap();
        let allowed = Response::allow(&request);
        let denied = Response::deny(&request, "nsguard: no \"quotes\" \u{2014} here");
        let warned = Response {
            warnings: vec!["nsguard: careful".to_owned()],
            ..Response::allow(&request)
        };
        for (what, response) in [("allowed", allowed), ("denied", denied), ("warned", warned)] {
            let review: AdmissionReview<DynamicObject> =
                serde_json::from_slice(&response.encode()).unwrap();
            assert_eq!(review.types.api_version, "admission.k8s.io/v1");
            assert_eq!(review.types.kind, "AdmissionReview");
            let kube = review.response.expect("a response");
            assert_eq!(kube.uid, request.uid.as_str(), "{name} {what}");
            assert_eq!(kube.allowed, response.allowed, "{name} {what}");
            assert_eq!(
                kube.warnings.unwrap_or_default(),
                response.warnings,
                "{name} {what}"
            );
            if let Some(message) = &response.denial {
                assert_eq!(&kube.result.message, message, "{name} {what}");
                assert_eq!(kube.result.code, 403, "{name} {what}");
                assert_eq!(kube.result.reason, "Forbidden", "{name} {what}");
            }
        }
    }
}

#[test]
fn a_patch_is_a_base64_string_of_the_json_patch() {
    use base64::Engine as _;
    let (_, body) = fixtures().swap_remove(0);
    let request = admission::decode(&body).unwrap();
    let patch = br#"[{"op":"add","path":"/metadata/namespace","value":"b"}]"#;
    let response = Response {
        patch: Some(patch.to_vec()),
        ..Response::allow(&request)
    };
    let review: serde_json::Value = serde_json::from_slice(&response.encode()).unwrap();
    let sent = review["response"]["patch"].as_str().expect("a string");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(sent)
            .unwrap(),
        patch
    );
    assert_eq!(review["response"]["patchType"], "JSONPatch");
}
