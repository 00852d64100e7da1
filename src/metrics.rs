//! Prometheus metrics, served in text format on the plain-HTTP metrics port.
//!
//! Label values are `&'static str` from fixed sets, so cardinality is bounded no matter
//! what clients send.

use std::time::Duration;

use crate::outcome::{Decision, Endpoint};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    endpoint: &'static str,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    finding: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    certificate: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClaimLabels {
    operation: &'static str,
    reason: &'static str,
}

/// Latency buckets from 100 µs to 10 s: webhooks answer in well under a millisecond,
/// the guard's cluster lookup can take seconds.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// API calls per lookup: one list per resource type (more for a type with more than a page
/// of objects in the namespace) plus discovery and the volume check, from a handful to a
/// CRD-heavy cluster's 500+.
const API_CALL_BUCKETS: [f64; 10] = [
    10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0,
];

/// Every reason a request or connection is refused before a decision
/// (`nsguard_http_rejections_total{reason}`).
pub const REJECTION_REASONS: [&str; 15] = [
    "bad_review",
    "body_read_error",
    "idle_timeout",
    "method_not_allowed",
    "no_request",
    "not_found",
    "over_budget",
    "payload_too_large",
    "plain_http",
    "reclaimed_idle_connection",
    "request_timeout",
    "tls_handshake",
    "tls_handshake_timeout",
    "too_many_connections",
    "unsupported_media_type",
];

/// Why a guard's lookup failed, as `nsguard_lookup_errors_total{reason}` names it: the
/// one list of these names ([`crate::cluster::LookupError::reason`] maps each error to
/// one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupErrorReason {
    /// Its deadline passed.
    Deadline,
    /// Discovery failed with nothing to stand in for it.
    Discovery,
    /// A read besides discovery and the lists failed.
    Read,
    /// The guard's lookups at once were all taken until its deadline.
    Busy,
    /// It finished, but some types could not be read.
    UnverifiedTypes,
}

impl LookupErrorReason {
    pub const ALL: [LookupErrorReason; 5] = [
        LookupErrorReason::Deadline,
        LookupErrorReason::Discovery,
        LookupErrorReason::Read,
        LookupErrorReason::Busy,
        LookupErrorReason::UnverifiedTypes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LookupErrorReason::Deadline => "deadline",
            LookupErrorReason::Discovery => "discovery",
            LookupErrorReason::Read => "read",
            LookupErrorReason::Busy => "busy",
            LookupErrorReason::UnverifiedTypes => "unverified_types",
        }
    }
}

/// Every metric nsguard exports.
pub struct Metrics {
    registry: Registry,
    /// The series of every review, resolved once: a family lookup hashes its labels and
    /// takes a lock, which is not needed on the path of every review. Indexed by
    /// [`Endpoint::ALL`] and [`Decision::ALL`] positions; all start at zero, as
    /// Prometheus advises for known label sets.
    reviews: [[Counter; Decision::ALL.len()]; Endpoint::ALL.len()],
    latency: [Histogram; Endpoint::ALL.len()],
    rejections: Family<ReasonLabels, Counter>,
    lookup_errors: Family<ReasonLabels, Counter>,
    lookup_api_calls: Histogram,
    stale_discoveries: Counter,
    unlistable_types: Gauge,
    tls_reloads: Family<ResultLabels, Counter>,
    not_before: Family<CertificateLabels, Gauge>,
    not_after: Family<CertificateLabels, Gauge>,
    ready: Gauge,
    verdicts: Family<VerdictLabels, Counter>,
    claims: Family<ClaimLabels, Counter>,
    events: Family<ResultLabels, Counter>,
    audit: AuditMetrics,
}

/// The background audit's gauges (`serve --audit-interval`).
struct AuditMetrics {
    findings: Family<FindingLabels, Gauge>,
    unverified: Gauge,
    last_success: Gauge,
    duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    runs: Family<ResultLabels, Counter>,
    report_writes: Family<ResultLabels, Counter>,
    leader: Gauge,
    interval: Gauge,
    sub_envs_outside: Gauge,
}

impl AuditMetrics {
    fn register(registry: &mut Registry) -> Self {
        let audit = Self {
            findings: Family::default(),
            unverified: Gauge::default(),
            last_success: Gauge::default(),
            duration: Gauge::default(),
            runs: Family::default(),
            leader: Gauge::default(),
            report_writes: Family::default(),
            interval: Gauge::default(),
            sub_envs_outside: Gauge::default(),
        };
        registry.register(
            "audit_sub_envs_outside_namespace",
            "Sub-envs the last background audit found with objects outside their own namespace: placement in enforce refuses their new objects there (a deploy of them fails until they are moved)",
            audit.sub_envs_outside.clone(),
        );
        registry.register(
            "audit_interval_seconds",
            "The background audit's interval (--audit-interval), 0 when it is off: the staleness alert compares the last success with it",
            audit.interval.clone(),
        );
        registry.register(
            "audit_findings",
            "Findings of the last background audit that read the cluster, by type (a partial one counts what it read)",
            audit.findings.clone(),
        );
        registry.register(
            "audit_unverified_resource_types",
            "Resource types the last background audit could not read (its findings may miss some)",
            audit.unverified.clone(),
        );
        registry.register(
            "audit_last_success_timestamp_seconds",
            "Unix time the last background audit finished reading the cluster",
            audit.last_success.clone(),
        );
        registry.register(
            "audit_duration_seconds",
            "How long the last background audit took",
            audit.duration.clone(),
        );
        registry.register(
            "audit_runs",
            "Background audits, by result (complete, partial: some types unread, failed)",
            audit.runs.clone(),
        );
        registry.register(
            "policy_report_writes",
            "PolicyReports written, left unchanged (same findings) or removed by the background audit, by result",
            audit.report_writes.clone(),
        );
        registry.register(
            "audit_leader",
            "1 while this replica holds the audit's Lease (or audits without one) and may run the background audit and write PolicyReports, else 0",
            audit.leader.clone(),
        );
        // Known series exist from the start, at zero.
        for finding in crate::audit::Finding::TYPES {
            let _ = audit.findings.get_or_create(&FindingLabels { finding });
        }
        for result in ["complete", "partial", "failed"] {
            let _ = audit.runs.get_or_create(&ResultLabels { result });
        }
        for result in ["applied", "unchanged", "deleted", "failed"] {
            let _ = audit.report_writes.get_or_create(&ResultLabels { result });
        }
        audit
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nsguard");
        let reviews = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "admission_reviews",
            "AdmissionReviews answered, by endpoint and decision",
            reviews.clone(),
        );
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(LATENCY_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "admission_review_duration_seconds",
            "Time from request received to response ready, by endpoint",
            latency.clone(),
        );
        let rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "http_rejections",
            "Requests or connections refused before a decision, by reason",
            rejections.clone(),
        );
        let lookup_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "lookup_errors",
            "Failed or incomplete cluster-state lookups, by reason",
            lookup_errors.clone(),
        );
        let lookup_api_calls = Histogram::new(API_CALL_BUCKETS);
        registry.register(
            "lookup_api_calls",
            "API calls one namespace-delete lookup made (discovery, lists, retries)",
            lookup_api_calls.clone(),
        );
        let stale_discoveries = Counter::default();
        registry.register(
            "lookup_stale_discoveries",
            "Namespace-delete lookups that used the last good discovery because the refresh failed",
            stale_discoveries.clone(),
        );
        let unlistable_types = Gauge::default();
        registry.register(
            "unlistable_resource_types",
            "Discovered resource types nsguard's RBAC does not let it list (a delete of a namespace fails closed while any remain)",
            unlistable_types.clone(),
        );
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "Attempts to load a changed serving certificate, by result",
            tls_reloads.clone(),
        );
        let not_before = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "tls_certificate_not_before_seconds",
            "Unix time from which a certificate is valid: the serving certificate (updated on every reload), and the client CA with --client-ca (the one that expires first)",
            not_before.clone(),
        );
        let not_after = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "tls_certificate_not_after_seconds",
            "Unix time a certificate expires: the serving certificate (updated on every reload), and the client CA with --client-ca (the one that expires first)",
            not_after.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while /readyz answers 200 (serving, and the cluster source has answered), else 0",
            ready.clone(),
        );
        let verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "namespace_delete_verdicts",
            "Namespace deletes decided by the guard, by verdict (why a delete was allowed or denied)",
            verdicts.clone(),
        );
        let claims = Family::<ClaimLabels, Counter>::default();
        registry.register(
            "volume_guard_decisions",
            "PersistentVolumeClaim creates and deletes decided by the volume guard, by operation and reason (allowed, exempt, or why refused)",
            claims.clone(),
        );
        for operation in crate::decisions::volume_guard::ClaimOperation::ALL {
            for reason in crate::decisions::volume_guard::Verdict::REASONS {
                let _ = claims.get_or_create(&ClaimLabels {
                    operation: operation.as_str(),
                    reason,
                });
            }
        }
        let events = Family::<ResultLabels, Counter>::default();
        registry.register(
            "events",
            "Kubernetes Events for refused namespace deletes and claims, by result (created, updated: a repeat counted in its series, failed, dropped: the writer was behind)",
            events.clone(),
        );
        for result in ["created", "updated", "failed", "dropped"] {
            let _ = events.get_or_create(&ResultLabels { result });
        }
        for verdict in crate::decisions::namespace_guard::Verdict::CODES {
            let _ = verdicts.get_or_create(&VerdictLabels { verdict });
        }
        // Known series exist from the start, at zero: an alert or a dashboard naming one
        // finds it before the first event.
        for reason in REJECTION_REASONS {
            let _ = rejections.get_or_create(&ReasonLabels { reason });
        }
        for reason in LookupErrorReason::ALL {
            let _ = lookup_errors.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        for result in ["success", "error"] {
            let _ = tls_reloads.get_or_create(&ResultLabels { result });
        }
        let audit = AuditMetrics::register(&mut registry);
        Self {
            registry,
            audit,
            not_before,
            not_after,
            ready,
            verdicts,
            claims,
            events,
            reviews: Endpoint::ALL.map(|endpoint| {
                Decision::ALL.map(|decision| {
                    reviews
                        .get_or_create(&DecisionLabels {
                            endpoint: endpoint.as_str(),
                            decision: decision.as_str(),
                        })
                        .clone()
                })
            }),
            latency: Endpoint::ALL.map(|endpoint| {
                latency
                    .get_or_create(&EndpointLabels {
                        endpoint: endpoint.as_str(),
                    })
                    .clone()
            }),
            rejections,
            lookup_errors,
            lookup_api_calls,
            stale_discoveries,
            unlistable_types,
            tls_reloads,
        }
    }

    /// Count one answered review and its latency.
    pub fn review(&self, endpoint: Endpoint, decision: Decision, elapsed: Duration) {
        self.reviews[endpoint as usize][decision as usize].inc();
        self.latency[endpoint as usize].observe(elapsed.as_secs_f64());
    }

    /// Count a request or connection refused before any decision.
    pub fn rejection(&self, reason: &'static str) {
        self.rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn lookup_error(&self, reason: LookupErrorReason) {
        self.lookup_errors
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// API calls of one namespace-delete lookup.
    pub fn lookup_api_calls(&self, calls: usize) {
        self.lookup_api_calls.observe(calls as f64);
    }

    /// One lookup that used the last good discovery because the refresh failed.
    pub fn stale_discovery(&self) {
        self.stale_discoveries.inc();
    }

    /// Resource types nsguard may not list, from the last access check.
    pub fn unlistable_types(&self, count: usize) {
        self.unlistable_types.set(count as i64);
    }

    pub fn tls_reload(&self, result: &'static str) {
        self.tls_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The validity of a certificate nsguard serves (`serving`) or trusts (`client_ca`),
    /// as Unix seconds.
    pub fn certificate(&self, certificate: &'static str, not_before: i64, not_after: i64) {
        let labels = CertificateLabels { certificate };
        self.not_before.get_or_create(&labels).set(not_before);
        self.not_after.get_or_create(&labels).set(not_after);
    }

    /// Whether `/readyz` answers 200, as of the last scrape.
    pub fn ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// One namespace delete decided by the guard.
    pub fn namespace_delete_verdict(&self, verdict: &'static str) {
        self.verdicts
            .get_or_create(&VerdictLabels { verdict })
            .inc();
    }

    /// One claim's create or delete decided by the volume guard.
    pub fn volume_guard_decision(&self, operation: &'static str, reason: &'static str) {
        self.claims
            .get_or_create(&ClaimLabels { operation, reason })
            .inc();
    }

    /// One write (or drop) of an Event for a refusal.
    pub fn event_write(&self, result: &'static str) {
        self.events.get_or_create(&ResultLabels { result }).inc();
    }

    /// The background audit's interval (`None`: off).
    pub fn audit_interval(&self, interval: Option<Duration>) {
        self.audit
            .interval
            .set(interval.map_or(0, |i| i.as_secs() as i64));
    }

    /// Sub-envs with objects outside their namespace, from the last background audit.
    pub fn audit_sub_envs_outside(&self, count: usize) {
        self.audit.sub_envs_outside.set(count as i64);
    }

    /// One background audit finished reading the cluster: its findings by type, how many
    /// types it could not read, and how long it took.
    pub fn audit_done(
        &self,
        findings: &[(&'static str, usize)],
        unverified: usize,
        took: Duration,
    ) {
        for (finding, count) in findings {
            self.audit
                .findings
                .get_or_create(&FindingLabels { finding })
                .set(*count as i64);
        }
        self.audit.unverified.set(unverified as i64);
        self.audit
            .last_success
            .set(k8s_openapi::jiff::Timestamp::now().as_second());
        self.audit.duration.set(took.as_secs_f64());
        let result = if unverified == 0 {
            "complete"
        } else {
            "partial"
        };
        self.audit
            .runs
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// One background audit that could not read the cluster; the gauges keep the last
    /// good run's values (and its timestamp, which ages).
    pub fn audit_failed(&self, took: Duration) {
        self.audit.duration.set(took.as_secs_f64());
        self.audit
            .runs
            .get_or_create(&ResultLabels { result: "failed" })
            .inc();
    }

    /// Whether this replica may run the background audit now (it leads, or runs alone).
    pub fn audit_leader(&self, leads: bool) {
        self.audit.leader.set(i64::from(leads));
    }

    /// What [`Self::audit_leader`] last said.
    pub fn audit_leads(&self) -> bool {
        self.audit.leader.get() == 1
    }

    /// PolicyReports `applied`, left `unchanged` (not written: same findings), `deleted`,
    /// or `failed` by one background audit.
    pub fn policy_report_writes(&self, result: &'static str, count: usize) {
        self.audit
            .report_writes
            .get_or_create(&ResultLabels { result })
            .inc_by(count as u64);
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_up_in_the_exposition() {
        let metrics = Metrics::new();
        metrics.review(
            Endpoint::Validate,
            Decision::Denied,
            Duration::from_millis(3),
        );
        metrics.rejection("plain_http");
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"nsguard_admission_reviews_total{endpoint="validate",decision="denied"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"nsguard_http_rejections_total{reason="plain_http"} 1"#));
        assert!(text.contains("nsguard_admission_review_duration_seconds_bucket"));
        // Known series exist from the start, at zero.
        assert!(
            text.contains(
                r#"nsguard_admission_reviews_total{endpoint="mutate",decision="patched"} 0"#
            ),
            "{text}"
        );
    }

    #[test]
    fn review_series_are_indexed_by_declaration_order() {
        for (i, endpoint) in Endpoint::ALL.into_iter().enumerate() {
            assert_eq!(endpoint as usize, i);
        }
        for (i, decision) in Decision::ALL.into_iter().enumerate() {
            assert_eq!(decision as usize, i);
        }
    }

    /// Every reason the code counts is one of the series that start at zero: the alerts
    /// and the dashboard find them all.
    #[test]
    fn every_reason_counted_is_known_from_the_start() {
        let counted =
            regex::Regex::new(r#"(?:reject\([^,()]+, |rejection\()"([a-z_]+)"\)"#).unwrap();
        let mut found = std::collections::BTreeSet::new();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for c in counted.captures_iter(&text) {
                        if let Some(m) = c.get(1) {
                            found.insert(m.as_str().to_owned());
                        }
                    }
                }
            }
        }
        assert!(found.contains("plain_http"));
        for reason in &found {
            assert!(
                REJECTION_REASONS.contains(&reason.as_str()),
                "{reason} is counted but not known from the start"
            );
        }
        // A lookup's reasons are an enum: a new one must join ALL (this match stops
        // compiling until it is placed), and each is exported at zero from the start.
        let place = |r: LookupErrorReason| match r {
            LookupErrorReason::Deadline => 0,
            LookupErrorReason::Discovery => 1,
            LookupErrorReason::Read => 2,
            LookupErrorReason::Busy => 3,
            LookupErrorReason::UnverifiedTypes => 4,
        };
        let text = Metrics::new().encode();
        for (i, reason) in LookupErrorReason::ALL.into_iter().enumerate() {
            assert_eq!(place(reason), i, "{reason:?}");
            assert!(
                text.contains(&format!(
                    "nsguard_lookup_errors_total{{reason=\"{}\"}} 0",
                    reason.as_str()
                )),
                "{reason:?}"
            );
        }
        let text = Metrics::new().encode();
        for reason in REJECTION_REASONS {
            assert!(
                text.contains(&format!(
                    "nsguard_http_rejections_total{{reason=\"{reason}\"}} 0"
                )),
                "{reason}"
            );
        }
    }
}
