//! The HTTP routes on the TLS port and on the metrics port.
//!
//! Errors before a decision are Kubernetes `Status` objects (`kind: Status`), the shape
//! the API server and `kubectl` already know how to print.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::body::{self, BodyError, Budget};
use super::warnings::Warnings;
use super::watchdog::RequestStart;

use crate::admission::{self, Decision, Endpoint, Webhook};
use crate::cluster::ClusterHealth;
use crate::metrics::Metrics;

/// What every handler shares.
pub struct AppState {
    pub webhook: Arc<Webhook>,
    pub metrics: Arc<Metrics>,
    /// False until serving starts and again once shutdown begins, so the kubelet stops
    /// routing new reviews to a draining pod.
    pub ready: AtomicBool,
    /// Whether the cluster source has answered once.
    pub health: Arc<ClusterHealth>,
    pub max_body_bytes: usize,
    /// Buffered request bytes, server-wide (`--max-buffered-bytes`).
    pub budget: Budget,
    /// Bound on receiving one request, from its first byte (`--request-timeout`).
    pub request_timeout: Duration,
    /// The gate on WARN lines clients can trigger.
    pub warnings: Arc<Warnings>,
}

/// Routes of the webhook (TLS) port.
pub fn webhook_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/volume-guard", post(volume_guard))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Routes of the plain-HTTP metrics port. The probes are here too, so the kubelet's
/// checks do not queue behind a flood on the webhook port.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn render_metrics(State(state): State<Arc<AppState>>) -> Response {
    let metrics = &state.metrics;
    // What /readyz would answer now, for the replicas alert.
    metrics.ready(state.ready.load(Ordering::Relaxed) && state.health.status().is_ok());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

// The whole request, not the `HeaderMap` extractor: that one clones every header.
async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(&state, Endpoint::Validate, request).await
}

async fn mutate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(&state, Endpoint::Mutate, request).await
}

async fn volume_guard(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(&state, Endpoint::VolumeGuard, request).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: serving (not starting, not draining), the certificate loaded (it is before the
/// port opens), and the cluster source has answered once. The body names what nsguard may
/// not list, ready or not.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.ready.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n",
        )
            .into_response();
    }
    match state.health.status() {
        Ok(details) => format!("ok\n{details}").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn not_found(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> Response {
    state.metrics.rejection("not_found");
    status_error(
        StatusCode::NOT_FOUND,
        format!(
            "no route {}: nsguard serves POST /validate, /mutate and /volume-guard, GET /healthz and /readyz",
            uri.path()
        ),
    )
}

async fn method_not_allowed(
    State(state): State<Arc<AppState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    state.metrics.rejection("method_not_allowed");
    status_error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// One AdmissionReview: check the transport, read the body within limits, decide.
async fn handle(state: &AppState, endpoint: Endpoint, request: Request) -> Response {
    let started = Instant::now();
    if let Err(message) = check_content_type(request.headers()) {
        state.metrics.rejection("unsupported_media_type");
        return status_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, message);
    }
    // The deadline runs from the request's first byte (the connection wrapper knows it).
    let started_at = request
        .extensions()
        .get::<RequestStart>()
        .map_or_else(tokio::time::Instant::now, |start| start.0);
    let deadline = started_at + state.request_timeout;
    let (parts, body) = request.into_parts();
    let buffered = match body::read(
        body,
        &parts.headers,
        state.max_body_bytes,
        &state.budget,
        deadline,
    )
    .await
    {
        Ok(buffered) => buffered,
        Err(err) => return body_error(state, err),
    };
    let bytes = &buffered.bytes;
    let request = match admission::decode(bytes) {
        Ok(request) => request,
        Err(err) => {
            if let Some(suppressed) = state.warnings.reject(&state.metrics, "bad_review") {
                tracing::warn!(endpoint = endpoint.as_str(), suppressed, error = %err, "rejected request body");
            }
            return status_error(StatusCode::BAD_REQUEST, err.to_string());
        }
    };
    let response = state.webhook.review(endpoint, &request).await;
    let decision = Decision::of(&response);
    state.metrics.review(endpoint, decision, started.elapsed());
    tracing::debug!(
        endpoint = endpoint.as_str(),
        uid = %request.uid,
        decision = decision.as_str(),
        "answered review"
    );
    (
        [(header::CONTENT_TYPE, "application/json")],
        response.encode(),
    )
        .into_response()
}

/// The API server sends `application/json`; anything else is refused with this message.
fn check_content_type(headers: &HeaderMap) -> Result<(), String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(
            "missing Content-Type: an AdmissionReview is sent as application/json".to_owned(),
        );
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if essence.is_some_and(|v| v.eq_ignore_ascii_case("application/json")) {
        Ok(())
    } else {
        Err(format!(
            "Content-Type {:?} is not supported: an AdmissionReview is sent as application/json",
            String::from_utf8_lossy(value.as_bytes())
        ))
    }
}

/// The answer to a body that could not be read within its limits.
fn body_error(state: &AppState, err: BodyError) -> Response {
    match err {
        BodyError::TooLarge { declared } => {
            state.metrics.rejection("payload_too_large");
            let said = declared.map_or(String::new(), |n| format!(" (Content-Length {n})"));
            status_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body exceeds the {}-byte limit (--max-body-bytes){said}",
                    state.max_body_bytes
                ),
            )
        }
        BodyError::Timeout => {
            state.metrics.rejection("request_timeout");
            status_error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {:?} (--request-timeout)",
                    state.request_timeout
                ),
            )
        }
        BodyError::OverBudget => {
            state.metrics.rejection("over_budget");
            let mut response = status_error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "nsguard is buffering its limit of {} request bytes (--max-buffered-bytes); retry",
                    state.budget.total()
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
        BodyError::Read(err) => {
            state.metrics.rejection("body_read_error");
            status_error(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {err}"),
            )
        }
    }
}

/// A `metav1.Status` failure body.
pub fn status_error(code: StatusCode, message: String) -> Response {
    let reason = match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::REQUEST_TIMEOUT => "Timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        _ => "InternalError",
    };
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}
