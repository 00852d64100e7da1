//! The audit's findings as `wgpolicyk8s.io/v1alpha2` PolicyReports, one per namespace with
//! findings, so Policy Reporter and other dashboards that read Kyverno's and Kubewarden's
//! reports show nsguard's too.
//!
//! Only fields and values that both published PolicyReport CRDs declare (the
//! wg-policy-prototypes one and Kyverno's) are written: an API server with either CRD
//! installed accepts them under strict field validation, and prunes nothing.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::audit::{Finding, Report};

pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
pub const KIND: &str = "PolicyReport";
/// The name of nsguard's report in each namespace.
pub const NAME: &str = "nsguard";
/// The label that marks nsguard's reports, so it finds (and removes) only its own.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "nsguard");

/// The policy a finding reports on, its result and its severity.
fn policy(finding: &Finding) -> (&'static str, &'static str, &'static str) {
    match finding {
        Finding::SharedNamespace { .. } => ("nsguard-shared-namespace", "fail", "high"),
        Finding::Misplaced { .. } => ("nsguard-placement", "fail", "medium"),
        Finding::DataAtRisk { .. } => ("nsguard-data-at-risk", "fail", "high"),
        Finding::LingeringNamespace { .. } => ("nsguard-lingering-namespace", "warn", "low"),
    }
}

/// The object a finding is about, as an `ObjectReference`.
fn resource(finding: &Finding) -> Value {
    match finding {
        Finding::SharedNamespace { namespace, .. }
        | Finding::LingeringNamespace { namespace, .. } => {
            json!({"apiVersion": "v1", "kind": "Namespace", "name": namespace})
        }
        Finding::Misplaced {
            namespace,
            api_version,
            kind,
            name,
            ..
        } => json!({"apiVersion": api_version, "kind": kind, "name": name, "namespace": namespace}),
        Finding::DataAtRisk {
            namespace, claim, ..
        } => {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": claim, "namespace": namespace})
        }
    }
}

/// The finding's details, as the string map `properties` is.
fn properties(finding: &Finding) -> BTreeMap<&'static str, String> {
    match finding {
        Finding::SharedNamespace { owners, .. } => [
            ("stacks", owners.len().to_string()),
            (
                "owners",
                owners
                    .iter()
                    .map(|o| format!("{}/{}={}", o.app_name, o.env, o.objects))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ]
        .into(),
        Finding::Misplaced {
            owner,
            target,
            target_exists,
            ..
        } => [
            ("appName", owner.app_name.clone()),
            ("env", owner.env.clone()),
            ("parentEnv", owner.parent_env.clone()),
            ("target", target.clone()),
            (
                "targetExists",
                target_exists.map_or("unknown".to_owned(), |e| e.to_string()),
            ),
        ]
        .into(),
        Finding::DataAtRisk {
            volume,
            reclaim_policy,
            ..
        } => [
            ("volume", volume.clone()),
            ("reclaimPolicy", reclaim_policy.clone()),
        ]
        .into(),
        Finding::LingeringNamespace {
            owner, empty_since, ..
        } => {
            let mut properties = BTreeMap::from([
                ("appName", owner.app_name.clone()),
                ("env", owner.env.clone()),
                ("parentEnv", owner.parent_env.clone()),
            ]);
            if let Some(since) = empty_since {
                properties.insert("emptySince", since.clone());
            }
            properties
        }
    }
}

/// One PolicyReport per namespace with findings, in namespace order; `seconds` is the time
/// of the audit (Unix time).
pub fn reports(report: &Report, seconds: i64) -> Vec<Value> {
    let mut by_namespace: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for finding in &report.findings {
        by_namespace
            .entry(finding.namespace())
            .or_default()
            .push(finding);
    }
    by_namespace
        .into_iter()
        .map(|(namespace, findings)| {
            let mut summary = BTreeMap::from([
                ("pass", 0),
                ("fail", 0),
                ("warn", 0),
                ("error", 0),
                ("skip", 0),
            ]);
            let results: Vec<Value> = findings
                .iter()
                .map(|finding| {
                    let (policy, result, severity) = policy(finding);
                    *summary.entry(result).or_default() += 1;
                    json!({
                        "policy": policy,
                        "result": result,
                        "severity": severity,
                        "category": "nsguard",
                        "scored": true,
                        "message": format!("{}: {}", finding.summary(None), finding.advice()),
                        "resources": [resource(finding)],
                        "properties": properties(finding),
                        "timestamp": {"seconds": seconds, "nanos": 0},
                    })
                })
                .collect();
            json!({
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {
                    "name": NAME,
                    "namespace": namespace,
                    "labels": {MANAGED_BY.0: MANAGED_BY.1},
                },
                "scope": {"apiVersion": "v1", "kind": "Namespace", "name": namespace},
                "summary": summary,
                "results": results,
            })
        })
        .collect()
}

/// The reports as one `v1 List`, what `kubectl apply -f -` takes.
pub fn list(reports: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": reports})
}
