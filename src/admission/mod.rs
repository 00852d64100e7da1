//! AdmissionReview in and out: decoding the API server's body, dispatching the request to
//! its guard (the namespace guard and the volume guard through [`pipeline`], placement
//! here), and building the response. Transport-free, so the HTTPS handlers, the
//! benchmarks and the tests all go through the same code.

pub mod guards;
pub mod pipeline;
mod review;

pub use guards::{NamespaceFacts, NamespaceGuard, VolumeGuard};
pub use review::{Metadata, Operation, Request, Response, Text, TextMap};

use std::sync::Arc;
use std::time::Duration;

use serde_json::error::Category;

use crate::cluster::ClusterSource;
use crate::decisions::namespace_guard::GuardConfig;
use crate::decisions::placement::{self, Placement, PlacementMode};
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
            if guards::claim_operation(request).is_none() {
                return Response::allow(request);
            }
            let guard = VolumeGuard {
                scheme: &self.scheme,
                config: &self.guard,
            };
            return Box::pin(self.judge(&guard, request)).await;
        }
        if endpoint == Endpoint::Validate && is_namespace_delete(request) {
            let guard = NamespaceGuard {
                config: &self.guard,
            };
            return Box::pin(self.judge(&guard, request)).await;
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
    ///
    /// Placement is the guard that reads nothing: its exemptions
    /// ([`placement::exempt`]) and its decision ([`placement::place`]) over the labels
    /// alone, so it has no deadline, lookup or lookup error, and is not run through
    /// [`pipeline`]: it stays synchronous and allocation-free on the hot path (every
    /// create of a labelled object). Its answers are counted with every review's
    /// (`nsguard_admission_reviews_total`) and kept in the API server's audit log.
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
