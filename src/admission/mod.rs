//! AdmissionReview in and out: decoding the API server's body, dispatching the request to
//! the decisions, and building the response. Transport-free, so the HTTPS handlers, the
//! benchmarks and the tests all go through the same code.

mod review;

pub use review::{Metadata, Operation, Request, Response, Text, TextMap};

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::error::Category;

use crate::cluster::ClusterSource;
use crate::decisions::namespace_guard::{DeleteRequest, GuardConfig, GuardDecision};
use crate::decisions::placement::{self, Placement, PlacementMode};
use crate::decisions::volume_guard;
use crate::excerpt::excerpt;
use crate::metrics::Metrics;
pub use crate::outcome::{Decision, Endpoint};
use crate::simple_container::labels::LabelScheme;

/// The only AdmissionReview version nsguard speaks (Kubernetes 1.16+; v1beta1 is gone
/// from admissionregistration.k8s.io/v1 webhooks' defaults and from 1.22's API).
pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// Why a body is not a review nsguard can answer. Each becomes an HTTP 400 whose
/// message says exactly what is wrong, and where, in a few hundred bytes at most however
/// large the body: a request-controlled value is quoted as a truncated [`excerpt`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("request body is not valid JSON: {0}")]
    NotJson(Problem),
    #[error("request body is JSON but not an AdmissionReview: {0}")]
    NotAReview(Problem),
    #[error(
        "unsupported AdmissionReview type apiVersion={api_version:?} kind={kind:?}: nsguard answers \
         {API_VERSION} {KIND} only (set admissionReviewVersions: [v1])"
    )]
    WrongType { api_version: String, kind: String },
    #[error("AdmissionReview has no request (it may be a response)")]
    NoRequest,
    #[error("AdmissionReview request has an empty uid")]
    NoUid,
    #[error(
        "AdmissionReview request.uid is {0} bytes; the API server sends a 36-byte UUID (nsguard takes up to {MAX_UID_BYTES})"
    )]
    LongUid(usize),
}

/// The longest `request.uid` nsguard echoes back. The API server's are UUIDs (36 bytes);
/// a longer one would be copied into the answer and the audit log.
pub const MAX_UID_BYTES: usize = 128;

/// Where in the body decoding failed, and why.
#[derive(Debug)]
pub struct Problem {
    /// The JSON path, as `request.oldObject.metadata.labels` (`.` for the top level).
    pub path: String,
    /// serde's message without its line and column, as an [`excerpt`].
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path.as_str() {
            "." | "" => f.write_str(&self.message),
            path => write!(f, "at {path}: {}", self.message),
        }
    }
}

/// Decode an AdmissionReview v1 body into its request, borrowing from the body. Only a
/// JSON object is a review, at every level (`review::object`).
pub fn decode(body: &[u8]) -> Result<Request<'_>, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let review: review::Review<'_> = review::object(&mut de)
        .and_then(|review| de.end().map(|()| review))
        .map_err(|err| problem(body, err))?;
    if review.api_version.as_str() != API_VERSION || review.kind.as_str() != KIND {
        return Err(DecodeError::WrongType {
            api_version: excerpt(review.api_version.as_str()).into_owned(),
            kind: excerpt(review.kind.as_str()).into_owned(),
        });
    }
    let request = review.request.ok_or(DecodeError::NoRequest)?;
    match request.uid.as_str().len() {
        0 => return Err(DecodeError::NoUid),
        n if n > MAX_UID_BYTES => return Err(DecodeError::LongUid(n)),
        _ => {}
    }
    Ok(request)
}

/// The error of a body that failed to decode, with the path where it failed: found by
/// decoding again with the path tracked, which only a bad body pays for.
fn problem(body: &[u8], err: serde_json::Error) -> DecodeError {
    let mut track = serde_path_to_error::Track::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let again = review::object::<_, review::Review<'_>>(serde_path_to_error::Deserializer::new(
        &mut de, &mut track,
    ));
    let path = match again {
        Err(_) => track.path().to_string(),
        Ok(_) => ".".to_owned(), // trailing characters after the object
    };
    let full = err.to_string();
    let bare = match full.rfind(" at line ") {
        Some(at) if err.line() > 0 => &full[..at],
        _ => &full,
    };
    let problem = Problem {
        path,
        message: excerpt(bare).into_owned(),
    };
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => DecodeError::NotJson(problem),
        Category::Data => DecodeError::NotAReview(problem),
    }
}

impl Decision {
    /// Read the decision back from a finished response.
    pub fn of(response: &Response<'_>) -> Self {
        if !response.allowed {
            Decision::Denied
        } else if response.patch.is_some() {
            Decision::Patched
        } else if !response.warnings.is_empty() {
            Decision::Warned
        } else {
            Decision::Allowed
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
    /// Where refused (non-dry-run) namespace deletes are recorded as Events; `None`: not
    /// recorded (a dump, or `--events=false`).
    pub events: Option<crate::cluster::events::EventSink>,
}

impl Webhook {
    /// The answer to one review on one endpoint.
    ///
    /// # Guarantees
    /// - A DELETE of the core `namespaces` resource on `/validate` always goes to the guard,
    ///   recognised by the resource the API server resolved, whatever `kind` says.
    /// - Placement judges CREATE only: an UPDATE cannot move an object, and refusing one
    ///   would keep an object that was misplaced before nsguard was installed from ever
    ///   losing its finalizers (its deletion would hang). An object already being deleted
    ///   is never judged.
    /// - `/volume-guard` judges only a CREATE or DELETE of core `persistentvolumeclaims`
    ///   (anything else sent there is allowed untouched), and nothing else.
    pub async fn review<'r>(&self, endpoint: Endpoint, request: &'r Request<'_>) -> Response<'r> {
        // The guards' lookups are boxed: their futures are kilobytes, and awaited in place
        // they would be part of every review's future, set up on the hot path of every
        // placement review (unboxed, the volume guard's cost 8.6% more instructions per
        // review: benches/instructions_per_review.sh; tests/allocations.rs bounds the size).
        if endpoint == Endpoint::VolumeGuard {
            return match volume_guard_operation(request) {
                Some(operation) => Box::pin(self.guard_claim(operation, request)).await,
                None => Response::allow(request),
            };
        }
        if endpoint == Endpoint::Validate && is_namespace_delete(request) {
            return Box::pin(self.guard_namespace_delete(request)).await;
        }
        if self.placement != PlacementMode::Off
            && request.operation == Operation::Create
            && request.sub_resource.is_none()
        {
            return self.place(endpoint, request);
        }
        Response::allow(request)
    }

    /// Sub-env placement of one CREATE, per mode and endpoint: `rewrite` patches on
    /// `/mutate`, `enforce` denies and `warn` warns on `/validate`. Objects that are not
    /// misplaced, cluster-scoped objects and exempt objects are allowed untouched.
    fn place<'r>(&self, endpoint: Endpoint, request: &'r Request<'_>) -> Response<'r> {
        let allow = || Response::allow(request);
        let (Some(object), Some(namespace)) = (&request.object, request.namespace.as_ref()) else {
            return allow();
        };
        let namespace = namespace.as_str();
        let meta = &object.metadata;
        let Some(labels) = meta.labels.as_ref() else {
            return allow();
        };
        if meta.deletion_timestamp.is_some() {
            return allow();
        }
        // A Namespace's request carries its own name as the namespace; the Namespace of a
        // shared legacy namespace may carry a sub-env's labels. Neither is "misplaced".
        if namespace.is_empty()
            || is_namespace(request)
            || placement::exempt(
                meta.annotations.as_ref().map(|a| a as _),
                meta.controller_owned(),
            )
        {
            return allow();
        }
        let kind = request.kind.kind.as_str();
        let misplaced = match placement::place(&self.scheme, labels, namespace) {
            Placement::Misplaced(misplaced) => misplaced,
            // Left where it is, never guessed at, but said (once, on /validate).
            Placement::Unresolvable { owner, reason } if endpoint == Endpoint::Validate => {
                let name = display_name(request, meta);
                return Response {
                    warnings: vec![placement::unresolvable_warning(
                        kind, &name, &owner, &reason,
                    )],
                    ..allow()
                };
            }
            _ => return allow(),
        };
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
                let patch = misplaced.patch(meta.namespace.is_some());
                match serde_json::to_vec(&patch) {
                    Ok(patch) => Response {
                        patch: Some(patch),
                        ..allow()
                    },
                    // A one-operation patch of strings always serializes; stay safe anyway.
                    Err(err) => {
                        tracing::error!(error = %err, "cannot serialize the placement patch");
                        allow()
                    }
                }
            }
            (Endpoint::Validate, PlacementMode::Enforce) => {
                Response::deny(request, misplaced.denial(kind, &name))
            }
            (Endpoint::Validate, PlacementMode::Warn) => Response {
                warnings: vec![misplaced.warning(kind, &name)],
                ..allow()
            },
            _ => allow(),
        }
    }

    /// The namespace guard, with its audit event. Runs the same way under `dryRun`: the
    /// decision has no side effects, so `kubectl delete ns X --dry-run=server` asks
    /// "would this be allowed?".
    async fn guard_namespace_delete<'r>(&self, request: &'r Request<'_>) -> Response<'r> {
        let started = Instant::now();
        if request.name.as_str().is_empty() {
            // The API server names the namespace of every DELETE (a deletecollection is
            // reviewed item by item); without a name there is nothing to check.
            tracing::warn!(uid = %request.uid, "namespace DELETE without a name refused");
            return Response::bad_request(
                request,
                "nsguard: a namespace DELETE review must name the namespace (request.name is empty)",
            );
        }
        if request.name.as_str().len() > crate::simple_container::naming::MAX_NAME_LEN {
            // No such namespace can exist; do not carry the name into a lookup or the log.
            return Response::bad_request(
                request,
                format!(
                    "nsguard: request.name {:?} is {} bytes; a namespace name has at most {}",
                    excerpt(request.name.as_str()),
                    request.name.as_str().len(),
                    crate::simple_container::naming::MAX_NAME_LEN
                ),
            );
        }
        // Not the hot path: a few owned strings are nothing next to the namespace scan.
        let groups = groups(request);
        let delete = DeleteRequest {
            namespace: request.name.as_str(),
            username: request.user_info.username.as_ref().map_or("", Text::as_str),
            groups: &groups,
            annotations: request
                .old_object
                .as_ref()
                .and_then(|ns| ns.metadata.annotations.as_ref())
                .map(|a| a as _),
        };
        let (decision, scan) = self
            .cluster
            .guard(&self.guard, &delete, self.lookup_timeout)
            .await;
        match &scan {
            Some(Err(err)) => self.metrics.lookup_error(err.reason()),
            Some(Ok(scan)) => {
                if !scan.unverified.is_empty() {
                    self.metrics.lookup_error("unverified_types");
                }
                self.metrics.lookup_api_calls(scan.api_calls);
                if scan.stale_discovery.is_some() {
                    self.metrics.stale_discovery();
                }
            }
            None => {}
        }
        audit(request, &delete, &decision, started.elapsed());
        self.metrics
            .namespace_delete_verdict(decision.verdict.code());
        if decision.allowed() {
            // The delete goes ahead; say what it destroys for good, where kubectl shows it.
            Response {
                warnings: (decision.volumes.sentence().into_iter())
                    .map(|said| format!("nsguard: namespace {:?}: {said}", decision.namespace))
                    .collect(),
                ..Response::allow(request)
            }
        } else {
            let message = decision.message();
            // A dry run asks "would this be refused?": nothing happened to record.
            if let Some(events) = &self.events
                && !request.dry_run
            {
                events.record(crate::cluster::events::Refusal {
                    regarding: crate::cluster::events::Regarding::Namespace {
                        name: request.name.as_str().to_owned(),
                        uid: request
                            .old_object
                            .as_ref()
                            .and_then(|ns| ns.metadata.uid.as_ref())
                            .map(|uid| uid.as_str().to_owned()),
                    },
                    action: "Delete",
                    user: delete.username.to_owned(),
                    message: message.clone(),
                });
            }
            Response::deny(request, message)
        }
    }

    /// The volume guard on one claim's create or delete, with its audit event. Dry runs
    /// get the same answer as real requests, without an Event. Every refusal is a 409
    /// Conflict (why: `Response::conflict`).
    async fn guard_claim<'r>(
        &self,
        operation: volume_guard::ClaimOperation,
        request: &'r Request<'_>,
    ) -> Response<'r> {
        let started = Instant::now();
        let object = match operation {
            volume_guard::ClaimOperation::Create => request.object.as_ref(),
            volume_guard::ClaimOperation::Delete => request.old_object.as_ref(),
        };
        let meta = object.map(|o| &o.metadata);
        // The validating phase sees a generated name in the object, not in request.name.
        let name = Some(request.name.as_str())
            .filter(|n| !n.is_empty())
            .or_else(|| meta.and_then(|m| m.name.as_ref()).map(Text::as_str))
            .unwrap_or_default();
        let namespace = request.namespace.as_ref().map_or("", Text::as_str);
        let groups = groups(request);
        let claim = volume_guard::ClaimRequest {
            operation,
            namespace,
            name,
            labels: meta.and_then(|m| m.labels.as_ref()).map(|l| l as _),
            annotations: meta.and_then(|m| m.annotations.as_ref()).map(|a| a as _),
            ephemeral_pod: meta.and_then(Metadata::ephemeral_pod),
            username: request.user_info.username.as_ref().map_or("", Text::as_str),
            groups: &groups,
        };
        if let Some(invalid) = claim.invalid_names() {
            return Response::bad_request(request, format!("nsguard: {invalid}"));
        }
        let (decision, lookup) = self
            .cluster
            .volume_guard(&self.scheme, &self.guard, &claim, self.lookup_timeout)
            .await;
        let api_calls = match lookup {
            Some(Ok(calls)) => calls,
            Some(Err(reason)) => {
                self.metrics.lookup_error(reason);
                0
            }
            None => 0,
        };
        self.metrics
            .volume_guard_decision(operation.as_str(), decision.verdict.reason());
        tracing::info!(
            target: "nsguard::audit",
            event = "claim",
            operation = operation.as_str(),
            uid = %request.uid,
            user = claim.username,
            namespace,
            name,
            stack = %decision.stack_arg(),
            target_namespace = decision.target.as_deref().unwrap_or_default(),
            dry_run = request.dry_run,
            decision = if decision.allowed() { "allowed" } else { "denied" },
            reason = decision.verdict.reason(),
            api_calls,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "claim {} {}",
            operation.as_str(),
            if decision.allowed() { "allowed" } else { "denied" }
        );
        if decision.allowed() {
            return Response::allow(request);
        }
        let message = decision.message();
        if let Some(events) = &self.events
            && !request.dry_run
        {
            events.record(crate::cluster::events::Refusal {
                regarding: crate::cluster::events::Regarding::Claim {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    uid: meta
                        .and_then(|m| m.uid.as_ref())
                        .map(|uid| uid.as_str().to_owned()),
                },
                action: match operation {
                    volume_guard::ClaimOperation::Create => "Create",
                    volume_guard::ClaimOperation::Delete => "Delete",
                },
                user: claim.username.to_owned(),
                message: message.clone(),
            });
        }
        Response::conflict(request, message)
    }
}

/// The volume guard's operation for a review: a CREATE or DELETE of the core
/// `persistentvolumeclaims` resource itself (not a subresource), known by the resource the
/// API server resolved.
fn volume_guard_operation(request: &Request<'_>) -> Option<volume_guard::ClaimOperation> {
    if !request.resource.group.as_str().is_empty()
        || request.resource.resource.as_str() != "persistentvolumeclaims"
        || request.sub_resource.is_some()
    {
        return None;
    }
    match request.operation {
        Operation::Create => Some(volume_guard::ClaimOperation::Create),
        Operation::Delete => Some(volume_guard::ClaimOperation::Delete),
        _ => None,
    }
}

/// The groups of who asks, owned (not the hot path: a guard's decision, which reads the
/// cluster anyway).
fn groups(request: &Request<'_>) -> Vec<String> {
    request
        .user_info
        .groups
        .iter()
        .flatten()
        .map(ToString::to_string)
        .collect()
}

/// The object's name for messages; `generateName` creates have none yet.
fn display_name(request: &Request<'_>, meta: &Metadata<'_>) -> String {
    if !request.name.as_str().is_empty() {
        request.name.to_string()
    } else if let Some(name) = &meta.name {
        name.to_string()
    } else {
        format!("{}*", meta.generate_name.as_ref().map_or("", Text::as_str))
    }
}

/// A request about a core Namespace, known by the resource the API server resolved from
/// the URL (group "", resource `namespaces`): `kind` is only what the object calls itself.
fn is_namespace(request: &Request<'_>) -> bool {
    request.resource.group.as_str().is_empty() && request.resource.resource.as_str() == "namespaces"
}

fn is_namespace_delete(request: &Request<'_>) -> bool {
    request.operation == Operation::Delete
        && is_namespace(request)
        && request.sub_resource.is_none()
}

/// One structured audit event per guard decision, allowed or denied.
fn audit(
    request: &Request<'_>,
    delete: &DeleteRequest<'_>,
    decision: &GuardDecision,
    elapsed: Duration,
) {
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
        user = delete.username,
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
        assert_eq!(req.uid.as_str(), "u-1");
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
        let resp = Response {
            patch: Some(br#"[{"op":"replace","path":"/metadata/namespace","value":"b"}]"#.to_vec()),
            ..Response::allow(&req)
        };
        let body: serde_json::Value = serde_json::from_slice(&resp.encode()).unwrap();
        assert_eq!(
            body["response"]["patch"],
            "W3sib3AiOiJyZXBsYWNlIiwicGF0aCI6Ii9tZXRhZGF0YS9uYW1lc3BhY2UiLCJ2YWx1ZSI6ImIifV0="
        );
        assert_eq!(body["response"]["patchType"], "JSONPatch");
    }

    #[test]
    fn deny_is_a_403_with_the_message() {
        let req = decode(MINIMAL.as_bytes()).unwrap();
        let resp = Response::deny(&req, "no");
        assert!(!resp.allowed);
        assert_eq!(resp.uid, "u-1");
        let body: serde_json::Value = serde_json::from_slice(&resp.encode()).unwrap();
        assert_eq!(body["response"]["status"]["code"], 403);
        assert_eq!(body["response"]["status"]["message"], "no");
        assert_eq!(body["apiVersion"], API_VERSION);
        assert_eq!(body["kind"], KIND);
    }
}
