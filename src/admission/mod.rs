//! AdmissionReview in and out: decoding the API server's body, dispatching the request to
//! the decisions, and building the response. Transport-free, so the HTTPS handlers, the
//! benchmarks and the tests all go through the same code.

mod object;

pub use object::ReviewedObject;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::Status;
use serde_json::error::Category;

use crate::cluster::{ClusterSource, LookupError};
use crate::guard::{DeleteRequest, GuardConfig, GuardDecision};
use crate::labels::LabelScheme;
use crate::metrics::Metrics;
use crate::placement::{self, Placement, PlacementMode};

/// The only AdmissionReview version nsguard speaks (Kubernetes 1.16+; v1beta1 is gone
/// from admissionregistration.k8s.io/v1 webhooks' defaults and from 1.22's API).
pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// Which webhook endpoint a review arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Validate,
    Mutate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// Why a body is not a review nsguard can answer. Each becomes an HTTP 400 whose
/// message says exactly what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("request body is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("request body is JSON but not an AdmissionReview: {0}")]
    NotAReview(#[source] serde_json::Error),
    #[error(
        "unsupported AdmissionReview type apiVersion={api_version:?} kind={kind:?}: nsguard answers \
         {API_VERSION} {KIND} only (set admissionReviewVersions: [v1])"
    )]
    WrongType { api_version: String, kind: String },
    #[error("AdmissionReview has no request (it may be a response)")]
    NoRequest,
    #[error("AdmissionReview request has an empty uid")]
    NoUid,
}

/// Decode an AdmissionReview v1 body into its request.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest<ReviewedObject>, DecodeError> {
    let review: AdmissionReview<ReviewedObject> =
        serde_json::from_slice(body).map_err(|err| match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => DecodeError::NotJson(err),
            Category::Data => DecodeError::NotAReview(err),
        })?;
    if review.types.api_version != API_VERSION || review.types.kind != KIND {
        return Err(DecodeError::WrongType {
            api_version: review.types.api_version,
            kind: review.types.kind,
        });
    }
    let request: AdmissionRequest<ReviewedObject> =
        review.try_into().map_err(|_| DecodeError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(DecodeError::NoUid);
    }
    Ok(request)
}

/// What nsguard decided, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
    /// Allowed with a JSONPatch.
    Patched,
    /// Allowed with warnings for the client.
    Warned,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Patched => "patched",
            Decision::Warned => "warned",
        }
    }

    /// Read the decision back from a finished response.
    pub fn of(response: &AdmissionResponse) -> Self {
        if !response.allowed {
            Decision::Denied
        } else if response.patch.is_some() {
            Decision::Patched
        } else if response.warnings.as_ref().is_some_and(|w| !w.is_empty()) {
            Decision::Warned
        } else {
            Decision::Allowed
        }
    }
}

/// A denial in the form `kubectl` prints well: HTTP-style code 403, reason Forbidden.
pub fn deny(
    request: &AdmissionRequest<ReviewedObject>,
    message: impl Into<String>,
) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request);
    response.allowed = false;
    response.result = Status::failure(&message.into(), "Forbidden").with_code(403);
    response
}

/// Serialize a response as a full AdmissionReview body.
///
/// `response.patch` is a Go `[]byte`, which JSON carries as a base64 string. kube-core
/// serializes its `Vec<u8>` as an array of numbers (kube-rs/kube#1781), so a patched
/// response is re-encoded here.
pub fn encode(response: AdmissionResponse) -> Vec<u8> {
    use base64::Engine as _;
    let patch = response
        .patch
        .as_ref()
        .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes));
    let review = response.into_review();
    // A review of strings, bools and bytes always serializes.
    match patch {
        None => serde_json::to_vec(&review).expect("AdmissionReview serializes"),
        Some(patch) => {
            let mut value = serde_json::to_value(&review).expect("AdmissionReview serializes");
            value["response"]["patch"] = serde_json::Value::String(patch);
            serde_json::to_vec(&value).expect("JSON value serializes")
        }
    }
}

/// Answers reviews: routes each request to the decision that applies to it.
pub struct Webhook {
    pub scheme: LabelScheme,
    pub guard: GuardConfig,
    pub cluster: ClusterSource,
    /// Deadline of the guard's cluster lookup; past it, the delete is denied.
    pub lookup_timeout: Duration,
    pub placement: PlacementMode,
    pub metrics: Arc<Metrics>,
}

impl Webhook {
    /// The answer to one review on one endpoint.
    pub async fn review(
        &self,
        endpoint: Endpoint,
        request: &AdmissionRequest<ReviewedObject>,
    ) -> AdmissionResponse {
        if endpoint == Endpoint::Validate && is_namespace_delete(request) {
            return self.guard_namespace_delete(request).await;
        }
        if self.placement != PlacementMode::Off
            && matches!(request.operation, Operation::Create | Operation::Update)
            && request.sub_resource.is_none()
        {
            return self.place(endpoint, request);
        }
        AdmissionResponse::from(request)
    }

    /// Sub-env placement of one CREATE/UPDATE, per mode and endpoint: `rewrite` patches on
    /// `/mutate`, `enforce` denies and `warn` warns on `/validate`. Objects that are not
    /// misplaced, cluster-scoped objects and exempt objects are allowed untouched.
    fn place(
        &self,
        endpoint: Endpoint,
        request: &AdmissionRequest<ReviewedObject>,
    ) -> AdmissionResponse {
        let allow = || AdmissionResponse::from(request);
        let (Some(object), Some(namespace)) = (&request.object, request.namespace.as_deref())
        else {
            return allow();
        };
        let meta = &object.metadata;
        let controller_owned = meta
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.controller == Some(true));
        let Some(labels) = meta.labels.as_ref() else {
            return allow();
        };
        // A Namespace's request carries its own name as the namespace; the Namespace of a
        // shared legacy namespace may carry a sub-env's labels. Neither is "misplaced".
        if namespace.is_empty()
            || is_namespace(request)
            || placement::exempt(meta.annotations.as_ref(), controller_owned)
        {
            return allow();
        }
        let Placement::Misplaced(misplaced) = placement::place(&self.scheme, labels, namespace)
        else {
            return allow();
        };
        let kind = request.kind.kind.as_str();
        let name = display_name(request, meta);
        // Debug, not info: this runs for every misplaced write, on the hot path. Each
        // decision is counted in nsguard_admission_reviews_total, and the API server's
        // audit log keeps the denials and warnings.
        tracing::debug!(
            uid = %request.uid,
            endpoint = endpoint.as_str(),
            mode = ?self.placement,
            kind,
            name = %name,
            owner = %misplaced.owner,
            namespace,
            target = %misplaced.target,
            dry_run = request.dry_run,
            "misplaced sub-env object"
        );
        match (endpoint, self.placement) {
            (Endpoint::Mutate, PlacementMode::Rewrite) => {
                match allow().with_patch(misplaced.patch(meta.namespace.is_some())) {
                    Ok(response) => response,
                    // A one-operation patch of strings always serializes; stay safe anyway.
                    Err(err) => {
                        tracing::error!(error = %err, "cannot serialize the placement patch");
                        allow()
                    }
                }
            }
            (Endpoint::Validate, PlacementMode::Enforce) => {
                deny(request, misplaced.denial(kind, &name))
            }
            (Endpoint::Validate, PlacementMode::Warn) => {
                let mut response = allow();
                response.warnings = Some(vec![misplaced.warning(kind, &name)]);
                response
            }
            _ => allow(),
        }
    }

    /// The namespace guard, with its audit event. Runs the same way under `dryRun`: the
    /// decision has no side effects, so `kubectl delete ns X --dry-run=server` asks
    /// "would this be allowed?".
    async fn guard_namespace_delete(
        &self,
        request: &AdmissionRequest<ReviewedObject>,
    ) -> AdmissionResponse {
        let started = Instant::now();
        let namespace = request.name.as_str();
        let delete = DeleteRequest {
            namespace,
            username: request.user_info.username.as_deref().unwrap_or(""),
            groups: request.user_info.groups.as_deref().unwrap_or(&[]),
            annotations: request
                .old_object
                .as_ref()
                .and_then(|ns| ns.metadata.annotations.as_ref()),
        };
        let (decision, scan) = self
            .cluster
            .guard(&self.guard, &delete, self.lookup_timeout)
            .await;
        match scan {
            Some(Err(LookupError::Deadline { .. })) => self.metrics.lookup_error("deadline"),
            Some(Err(LookupError::Discovery(_))) => self.metrics.lookup_error("discovery"),
            Some(Err(LookupError::Busy { .. })) => self.metrics.lookup_error("busy"),
            Some(Ok(scan)) if !scan.unverified.is_empty() => {
                self.metrics.lookup_error("unverified_types")
            }
            _ => {}
        }
        audit(request, &decision, started.elapsed());
        if decision.allowed() {
            AdmissionResponse::from(request)
        } else {
            deny(request, decision.message())
        }
    }
}

/// The object's name for messages; `generateName` creates have none yet.
fn display_name(request: &AdmissionRequest<ReviewedObject>, meta: &ObjectMeta) -> String {
    if !request.name.is_empty() {
        request.name.clone()
    } else if let Some(name) = &meta.name {
        name.clone()
    } else {
        format!("{}*", meta.generate_name.as_deref().unwrap_or(""))
    }
}

/// A request about a core Namespace object.
fn is_namespace(request: &AdmissionRequest<ReviewedObject>) -> bool {
    request.kind.group.is_empty() && request.kind.kind == "Namespace"
}

fn is_namespace_delete(request: &AdmissionRequest<ReviewedObject>) -> bool {
    request.operation == Operation::Delete
        && is_namespace(request)
        && request.sub_resource.is_none()
}

/// One structured audit event per guard decision, allowed or denied.
fn audit(request: &AdmissionRequest<ReviewedObject>, decision: &GuardDecision, elapsed: Duration) {
    let owners: Vec<String> = decision
        .owners
        .iter()
        .map(|o| format!("{}({})", o.owner, o.total))
        .collect();
    let unverified: Vec<&str> = decision
        .unverified
        .iter()
        .map(|u| u.resource.as_str())
        .collect();
    tracing::info!(
        target: "nsguard::audit",
        event = "namespace-delete",
        uid = %request.uid,
        user = request.user_info.username.as_deref().unwrap_or(""),
        namespace = %decision.namespace,
        dry_run = request.dry_run,
        decision = if decision.allowed() { "allowed" } else { "denied" },
        reason = decision.verdict.code(),
        owners = %owners.join(","),
        unverified = %unverified.join(","),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "namespace delete {}",
        if decision.allowed() { "allowed" } else { "denied" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
        "uid":"u-1","kind":{"group":"","version":"v1","kind":"ConfigMap"},
        "resource":{"group":"","version":"v1","resource":"configmaps"},
        "name":"x","namespace":"ns","operation":"CREATE","userInfo":{"username":"me"},
        "object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}}}"#;

    #[test]
    fn decodes_a_minimal_review() {
        let req = decode(MINIMAL.as_bytes()).unwrap();
        assert_eq!(req.uid, "u-1");
    }

    #[test]
    fn classifies_bad_bodies() {
        assert!(matches!(decode(b"{not json"), Err(DecodeError::NotJson(_))));
        assert!(matches!(decode(b""), Err(DecodeError::NotJson(_))));
        assert!(matches!(decode(b"[1,2]"), Err(DecodeError::NotAReview(_))));
        let v1beta1 = MINIMAL.replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
        assert!(matches!(
            decode(v1beta1.as_bytes()),
            Err(DecodeError::WrongType { .. })
        ));
        let no_request = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
        assert!(matches!(
            decode(no_request.as_bytes()),
            Err(DecodeError::NoRequest)
        ));
        let no_uid = MINIMAL.replace("\"u-1\"", "\"\"");
        assert!(matches!(decode(no_uid.as_bytes()), Err(DecodeError::NoUid)));
    }

    #[test]
    fn patches_are_base64_strings_on_the_wire() {
        let req = decode(MINIMAL.as_bytes()).unwrap();
        let patch: json_patch::Patch =
            serde_json::from_str(r#"[{"op":"replace","path":"/metadata/namespace","value":"b"}]"#)
                .unwrap();
        let resp = AdmissionResponse::from(&req).with_patch(patch).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&encode(resp)).unwrap();
        assert_eq!(
            body["response"]["patch"],
            "W3sib3AiOiJyZXBsYWNlIiwicGF0aCI6Ii9tZXRhZGF0YS9uYW1lc3BhY2UiLCJ2YWx1ZSI6ImIifV0="
        );
        assert_eq!(body["response"]["patchType"], "JSONPatch");
    }

    #[test]
    fn deny_is_a_403_with_the_message() {
        let req = decode(MINIMAL.as_bytes()).unwrap();
        let resp = deny(&req, "no");
        assert!(!resp.allowed);
        assert_eq!(resp.uid, "u-1");
        let body: serde_json::Value = serde_json::from_slice(&encode(resp)).unwrap();
        assert_eq!(body["response"]["status"]["code"], 403);
        assert_eq!(body["response"]["status"]["message"], "no");
        assert_eq!(body["apiVersion"], API_VERSION);
        assert_eq!(body["kind"], KIND);
    }
}
