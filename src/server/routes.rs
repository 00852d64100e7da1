//! The HTTP routes on the TLS port and on the metrics port.
//!
//! Errors before a decision are Kubernetes `Status` objects (`kind: Status`), the shape
//! the API server and `kubectl` already know how to print.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};

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
}

/// Routes of the webhook (TLS) port.
pub fn webhook_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Routes of the plain-HTTP metrics port.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
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
            "no route {}: nsguard serves POST /validate and /mutate, GET /healthz and /readyz",
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
    // Slow bodies are bounded by the connection watchdog (--request-timeout).
    let bytes = match read_body(request.into_body(), state.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            state.metrics.rejection("payload_too_large");
            return status_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body exceeds the {}-byte limit (--max-body-bytes)",
                    state.max_body_bytes
                ),
            );
        }
        Err(BodyError::Read(err)) => {
            state.metrics.rejection("body_read_error");
            return status_error(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {err}"),
            );
        }
    };
    let request = match admission::decode(&bytes) {
        Ok(request) => request,
        Err(err) => {
            state.metrics.rejection("bad_review");
            tracing::warn!(endpoint = endpoint.as_str(), error = %err, "rejected request body");
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

enum BodyError {
    TooLarge,
    Read(String),
}

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Err(err) => Err(BodyError::Read(err.to_string())),
    }
}

/// A `metav1.Status` failure body.
pub fn status_error(code: StatusCode, message: String) -> Response {
    let reason = match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
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
