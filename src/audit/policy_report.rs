//! The audit's findings as `wgpolicyk8s.io/v1alpha2` PolicyReports, one per namespace with
//! findings, so Policy Reporter and other dashboards that read Kyverno's and Kubewarden's
//! reports show nsguard's too.
//!
//! Only fields and values that both published PolicyReport CRDs declare (the
//! wg-policy-prototypes one and Kyverno's) are written: an API server with either CRD
//! installed accepts them under strict field validation, and prunes nothing.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::audit::{Finding, MisplacedRef, Report};

pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
pub const KIND: &str = "PolicyReport";
/// The name of nsguard's report in each namespace.
pub const NAME: &str = "nsguard";
/// The label that marks nsguard's reports, so it finds (and removes) only its own.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "nsguard");
/// The annotation holding a digest of what the report says (everything but the results'
/// timestamps): a report whose findings did not change is not written again.
pub const DIGEST_ANNOTATION: &str = "nsguard.dev/report-digest";
/// The bytes the results of one report may take. etcd refuses a request over 1.5 MiB by
/// default and the API server's own limits are near it; nsguard keeps each report under
/// 1 MiB serialized, whatever the findings, leaving room for metadata, the summary and the
/// managed fields the API server adds.
pub const RESULTS_BUDGET: usize = 768 * 1024;
/// The longest message or property value a result carries (a shared namespace's owner list
/// can be long); past it, the text is cut and says so.
const MAX_TEXT: usize = 2048;

/// The policy a finding reports on, its result and its severity.
fn policy(finding: &Finding) -> (&'static str, &'static str, &'static str) {
    match finding {
        Finding::SharedNamespace { .. } => ("nsguard-shared-namespace", "fail", "high"),
        Finding::Misplaced { .. } => ("nsguard-placement", "fail", "medium"),
        Finding::DataAtRisk { .. } => ("nsguard-data-at-risk", "fail", "high"),
        Finding::MoveDestroysData { .. } => ("nsguard-move-destroys-data", "fail", "high"),
        Finding::LingeringNamespace { .. } => ("nsguard-lingering-namespace", "warn", "low"),
    }
}

/// What one result reports: a finding, or one object of a misplaced sub-env (results are
/// per object, as policy reports' results are per resource).
#[derive(Clone, Copy)]
enum Item<'a> {
    Finding(&'a Finding),
    Misplaced(&'a Finding, MisplacedRef<'a>),
}

impl<'a> Item<'a> {
    fn finding(self) -> &'a Finding {
        match self {
            Item::Finding(finding) | Item::Misplaced(finding, _) => finding,
        }
    }
}

/// The results of a finding, each object of a misplaced sub-env its own.
fn items(finding: &Finding) -> Box<dyn Iterator<Item = Item<'_>> + '_> {
    match finding {
        Finding::Misplaced { objects, .. } => Box::new(
            objects
                .0
                .objects()
                .map(move |o| Item::Misplaced(finding, o)),
        ),
        _ => Box::new(std::iter::once(Item::Finding(finding))),
    }
}

/// How many results a finding gives.
fn result_count(finding: &Finding) -> usize {
    match finding {
        Finding::Misplaced { objects, .. } => objects.0.len(),
        _ => 1,
    }
}

/// The object a result is about, as an `ObjectReference`.
fn resource(item: Item<'_>) -> Value {
    match item {
        Item::Misplaced(_, object) => json!({"apiVersion": object.api_version,
            "kind": object.kind, "name": object.name, "namespace": object.namespace}),
        Item::Finding(finding) => match finding {
            Finding::SharedNamespace { namespace, .. }
            | Finding::LingeringNamespace { namespace, .. }
            | Finding::Misplaced { namespace, .. } => {
                json!({"apiVersion": "v1", "kind": "Namespace", "name": namespace})
            }
            Finding::DataAtRisk {
                namespace, claim, ..
            }
            | Finding::MoveDestroysData {
                namespace, claim, ..
            } => {
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": claim, "namespace": namespace})
            }
        },
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
        Finding::MoveDestroysData {
            volume,
            reclaim_policy,
            owner,
            target,
            ..
        } => {
            let mut properties = BTreeMap::from([
                ("volume", volume.clone()),
                ("reclaimPolicy", reclaim_policy.clone()),
            ]);
            if let Some(owner) = owner {
                properties.insert("appName", owner.app_name.clone());
                properties.insert("env", owner.env.clone());
                properties.insert("parentEnv", owner.parent_env.clone());
            }
            if let Some(target) = target {
                properties.insert("target", target.clone());
            }
            properties
        }
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
///
/// # Guarantees
/// - Each report stays under 1 MiB serialized: past [`RESULTS_BUDGET`], the high-severity
///   results are kept first and the rest are summed up in one last result (`skip`, policy
///   `nsguard-report-truncated`) that says how many more there are and how to list them;
///   the `summary` counts every finding all the same.
/// - The same findings give the same [`DIGEST_ANNOTATION`] whatever `seconds` is.
pub fn reports(report: &Report, seconds: i64) -> impl Iterator<Item = Value> + '_ {
    // Findings come sorted by namespace: each report is made when its turn comes, so
    // however many namespaces have findings, one report is built at a time.
    report
        .findings
        .chunk_by(|a, b| a.namespace() == b.namespace())
        .map(move |findings| {
            let findings: Vec<&Finding> = findings.iter().collect();
            namespace_report(findings[0].namespace(), &findings, seconds)
        })
}

/// The report of one namespace.
fn namespace_report(namespace: &str, findings: &[&Finding], seconds: i64) -> Value {
    let mut summary = BTreeMap::from([
        ("pass", 0),
        ("fail", 0),
        ("warn", 0),
        ("error", 0),
        ("skip", 0),
    ]);
    for finding in findings {
        *summary.entry(policy(finding).1).or_default() += result_count(finding);
    }
    // High severity first, so that a cut keeps what matters most; the order of findings
    // within a severity is kept.
    let mut ordered: Vec<&Finding> = findings.to_vec();
    ordered.sort_by_key(|f| match policy(f).2 {
        "high" => 0,
        "medium" => 1,
        _ => 2,
    });
    let mut results = Vec::new();
    let mut used = 0;
    let mut omitted = 0;
    for item in ordered.into_iter().flat_map(items) {
        if omitted > 0 {
            omitted += 1;
            continue;
        }
        let result = result(item);
        let size = serde_json::to_vec(&result).map_or(usize::MAX, |v| v.len() + 1);
        if used + size > RESULTS_BUDGET {
            omitted = 1;
            continue;
        }
        used += size;
        results.push(result);
    }
    if omitted > 0 {
        results.push(json!({
            "policy": "nsguard-report-truncated",
            "result": "skip",
            "category": "nsguard",
            "scored": false,
            "message": format!(
                "{omitted} more finding{} in namespace {namespace} are not listed here, to keep this report within the API server's size limit (the summary counts them all); list them with `nsguard audit -n {namespace}`",
                if omitted == 1 { "" } else { "s" }
            ),
            "resources": [{"apiVersion": "v1", "kind": "Namespace", "name": namespace}],
            "properties": {"omitted": omitted.to_string()},
        }));
    }
    let scope = json!({"apiVersion": "v1", "kind": "Namespace", "name": namespace});
    let digest = digest(&scope, &summary, &results);
    for result in &mut results {
        if result["result"] != "skip" {
            result["timestamp"] = json!({"seconds": seconds, "nanos": 0});
        }
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": NAME,
            "namespace": namespace,
            "labels": {MANAGED_BY.0: MANAGED_BY.1},
            "annotations": {DIGEST_ANNOTATION: digest},
        },
        "scope": scope,
        "summary": summary,
        "results": results,
    })
}

/// One result, without its timestamp.
fn result(item: Item<'_>) -> Value {
    let finding = item.finding();
    let (policy, result, severity) = policy(finding);
    let properties: BTreeMap<&str, String> = properties(finding)
        .into_iter()
        .map(|(k, v)| (k, bounded(v)))
        .collect();
    let message = match item {
        Item::Misplaced(finding, object) => crate::audit::misplaced_object_message(finding, object),
        Item::Finding(finding) => format!("{}: {}", finding.summary(None), finding.advice()),
    };
    json!({
        "policy": policy,
        "result": result,
        "severity": severity,
        "category": "nsguard",
        "scored": true,
        "message": bounded(message),
        "resources": [resource(item)],
        "properties": properties,
    })
}

/// `text`, cut at [`MAX_TEXT`] bytes (on a character boundary) with a note that it was.
fn bounded(mut text: String) -> String {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!(
        "... ({cut} more bytes; `nsguard audit` prints all of it)"
    ));
    text
}

/// SHA-256 (hex, first 16 bytes) of what a report says: its scope, summary and results,
/// timestamps aside.
fn digest(scope: &Value, summary: &BTreeMap<&str, usize>, results: &[Value]) -> String {
    let said = json!({"scope": scope, "summary": summary, "results": results});
    let bytes = serde_json::to_vec(&said).unwrap_or_default();
    let hash = ring::digest::digest(&ring::digest::SHA256, &bytes);
    hash.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The digest a report carries, as [`reports`] wrote it.
pub fn digest_of(report: &Value) -> Option<&str> {
    report["metadata"]["annotations"][DIGEST_ANNOTATION].as_str()
}

/// The reports of `report` as one `v1 List`, what `kubectl apply -f -` takes, serialized
/// as they are made (a cluster's reports are never all held at once).
pub struct List<'a> {
    pub report: &'a Report,
    /// The audit's time, Unix seconds.
    pub seconds: i64,
}

impl serde::Serialize for List<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Items<'a>(&'a List<'a>);
        impl serde::Serialize for Items<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(reports(self.0.report, self.0.seconds))
            }
        }
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("apiVersion", "v1")?;
        map.serialize_entry("kind", "List")?;
        map.serialize_entry("items", &Items(self))?;
        map.end()
    }
}
