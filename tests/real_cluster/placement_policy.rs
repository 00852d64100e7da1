//! Placement as the API server's own ValidatingAdmissionPolicy (`nsguard policy`, issue
//! #41), against the same answers from the webhook and from the decision `nsguard check`
//! makes (`placement::place`): the naming vectors whose inputs are valid label values, in
//! the form people write (the stack name) and the form simple-container writes, every
//! label generation, the exemptions, a dry run and a real create, warn and enforce.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nsguard::decisions::placement::{Placement, PlacementMode, place};
use nsguard::placement_policy::{POLICY_NAME, policy};
use nsguard::simple_container::labels::LabelScheme;
use nsguard::simple_container::naming::sanitize;
use serde_json::{Value, json};

use super::common::control_plane::{ControlPlane, eventually, text};
use super::{Suite, labelled};

/// Where every case is created: the parent's namespace of a shared legacy install.
const SHARED: &str = "vap-shared";

/// One object's labels, and what it is.
struct Case {
    what: String,
    labels: BTreeMap<String, String>,
}

/// What the API server said to one create: refused (the policy's message) or not, and
/// the target each warning or the refusal named.
#[derive(Debug)]
struct Answer {
    refused: Option<String>,
    policy_target: Option<String>,
    webhook_target: Option<String>,
}

pub fn the_placement_policy_answers_as_the_webhook_and_nsguard_check(suite: &Suite) {
    let plane = &suite.plane;
    let scheme = LabelScheme::default();
    plane.apply(&[labelled(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SHARED}}),
    )]);
    let cases = cases();
    assert!(cases.len() > 100, "{} cases", cases.len());

    // The policy's warning and the webhook's (the suite's nsguard warns) in one answer,
    // each naming its target.
    // Warn: the shipped overlay as `kubectl kustomize` renders it (the base's mode).
    let overlay = super::kustomize("manifests/overlays/placement-policy");
    let shipped: Vec<Value> = overlay
        .iter()
        .filter(|o| {
            o["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("ValidatingAdmissionPolicy"))
        })
        .cloned()
        .map(labelled)
        .collect();
    assert_eq!(shipped.len(), 2);
    let binding = shipped
        .iter()
        .find(|o| o["kind"] == "ValidatingAdmissionPolicyBinding")
        .unwrap();
    assert_eq!(binding["spec"]["validationActions"], json!(["Warn"]));
    plane.apply(&shipped);
    // A sub-env's ConfigMap in its parent's namespace, as in the outage.
    let probe = &Case {
        what: "the probe".to_owned(),
        labels: BTreeMap::from(
            [
                ("simple-container-com/app-name", "myapp-tenant-a"),
                ("simple-container-com/env", "tenant-a"),
                ("simple-container-com/parent-env", "production"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        ),
    };
    eventually("the policy warns", Duration::from_secs(30), || {
        create(plane, SHARED, "probe", &probe.labels, true)
            .policy_target
            .map(|_| ())
    });
    let (mut misplaced, mut left_to_the_webhook) = (0, Vec::new());
    // The policy's target for each case, as it warned.
    let mut named = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let expected = match place(&scheme, &case.labels, SHARED) {
            Placement::Misplaced(m) => Some(m.target),
            _ => None,
        };
        let answer = create(plane, SHARED, &format!("warn-{n}"), &case.labels, true);
        assert!(
            answer.refused.is_none(),
            "{}: warn refused: {answer:?}",
            case.what
        );
        assert_eq!(
            answer.webhook_target, expected,
            "{}: the webhook",
            case.what
        );
        if expected.is_some() {
            misplaced += 1;
        }
        if answer.policy_target != expected {
            // Only what CEL cannot compute: simple-container truncates and hashes it.
            assert!(
                answer.policy_target.is_none() && beyond_cel(&case.labels),
                "{}: policy {:?}, nsguard {expected:?}",
                case.what,
                answer.policy_target
            );
            left_to_the_webhook.push(case.what.clone());
        }
        named.push(answer.policy_target);
    }
    assert!(misplaced > 40, "{misplaced} misplaced cases");
    // The long ones are sampled on purpose; the policy names every other target.
    assert!(
        left_to_the_webhook.len() * 2 < misplaced,
        "{misplaced} misplaced, left to the webhook: {left_to_the_webhook:#?}"
    );
    println!(
        "  {} cases, {misplaced} misplaced: the policy named {} targets as nsguard does, and left {} (stack-env past 63 bytes, hashed) to the webhook",
        cases.len(),
        misplaced - left_to_the_webhook.len(),
        left_to_the_webhook.len()
    );

    // An object misplaced before enforcement (a warn-mode create goes through), for the
    // teardown below.
    let answer = create(plane, SHARED, "teardown", &probe.labels, false);
    assert!(
        answer.refused.is_none() && answer.policy_target.is_some(),
        "{answer:?}"
    );

    // The placement webhooks with the overlay's matchCondition: the API server calls
    // nsguard only where CEL may not name the namespace, so each misplaced create is
    // answered once, by the policy or (a long stack-env name) by the webhook.
    // The rendered overlay's conditions, on the webhooks the suite registered.
    let rendered = overlay
        .iter()
        .find(|o| o["kind"] == "ValidatingWebhookConfiguration")
        .unwrap();
    let patch = json!({"webhooks": rendered["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h.get("matchConditions").is_some())
        .map(|h| json!({"name": h["name"], "matchConditions": h["matchConditions"]}))
        .collect::<Vec<_>>()});
    assert_eq!(patch["webhooks"].as_array().unwrap().len(), 3, "{patch}");
    plane.ok(&[
        "patch",
        "validatingwebhookconfiguration",
        "nsguard",
        "--type",
        "strategic",
        "-p",
        &patch.to_string(),
    ]);
    let long = cases
        .iter()
        .zip(&named)
        .position(|(case, policy)| policy.is_none() && beyond_cel(&case.labels))
        .expect("a case CEL cannot name");
    eventually("only the policy warns", Duration::from_secs(30), || {
        let answer = create(plane, SHARED, "probe", &probe.labels, true);
        (answer.policy_target.is_some() && answer.webhook_target.is_none()).then_some(())
    });
    let answer = create(plane, SHARED, "long", &cases[long].labels, true);
    assert!(
        answer.policy_target.is_none() && answer.webhook_target.is_some(),
        "{}: {answer:?}",
        cases[long].what
    );

    // Enforce: the API server refuses, with the webhook's message, and stores nothing; the
    // same object is allowed in its own namespace.
    apply_policy(plane, &scheme, PlacementMode::Enforce);
    eventually("the policy refuses", Duration::from_secs(30), || {
        create(plane, SHARED, "probe", &probe.labels, true)
            .refused
            .map(|_| ())
    });
    let mut targets = BTreeSet::new();
    for (n, (case, expected)) in cases.iter().zip(named).enumerate() {
        let answer = create(plane, SHARED, &format!("deny-{n}"), &case.labels, true);
        assert_eq!(answer.policy_target, expected, "{}: {answer:?}", case.what);
        assert_eq!(
            answer.refused.is_some(),
            expected.is_some(),
            "{}",
            case.what
        );
        if let Some(message) = &answer.refused {
            let kind_name = format!(
                "nsguard: ConfigMap \"deny-{n}\" is in the wrong namespace: sub-env stack "
            );
            assert!(message.starts_with(&kind_name), "{message}");
            assert!(
                message.contains("simple-container 2026.5.12 or later"),
                "{message}"
            );
        }
        targets.extend(expected.map(|t| (t, n)));
    }
    // In its own namespace: allowed (a few targets, each a namespace to create).
    for (target, n) in targets.iter().take(8) {
        plane.apply(&[labelled(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}}),
        )]);
        let answer = create(plane, target, &format!("home-{n}"), &cases[*n].labels, true);
        assert!(answer.refused.is_none(), "{target}: {answer:?}");
    }
    // A real create is refused as the dry run was, and nothing is stored.
    let answer = create(plane, SHARED, "real", &probe.labels, false);
    assert!(answer.refused.is_some(), "{answer:?}");
    assert!(plane.get(&["configmap", "-n", SHARED, "real"]).is_none());
    // The exemptions: the skip annotation, a controller's object.
    let skipped = json!({"nsguard.dev/skip-placement": "true"});
    assert!(
        create_object(
            plane,
            SHARED,
            "skipped",
            &probe.labels,
            Some(skipped),
            None,
            true
        )
        .refused
        .is_none()
    );
    let owned = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
        "uid": "00000000-0000-0000-0000-000000000001", "controller": true}]);
    assert!(
        create_object(
            plane,
            SHARED,
            "owned",
            &probe.labels,
            None,
            Some(owned),
            true
        )
        .refused
        .is_none()
    );

    // Teardown: the policy judges creates only, so an object misplaced before it can
    // still be updated (labels, finalizers) and deleted.
    plane.ok(&["label", "configmap", "-n", SHARED, "teardown", "tier=old"]);
    plane.ok(&["delete", "configmap", "-n", SHARED, "teardown"]);

    plane.ok(&[
        "delete",
        "validatingadmissionpolicybinding,validatingadmissionpolicy",
        POLICY_NAME,
        "--ignore-not-found",
    ]);
}

fn apply_policy(plane: &ControlPlane, scheme: &LabelScheme, mode: PlacementMode) {
    let list = policy(scheme, mode).unwrap();
    let items: Vec<Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .map(labelled)
        .collect();
    plane.apply(&items);
}

/// The cases: each naming vector whose inputs are valid label values, as a person writes
/// the labels (app-name = the stack) and as simple-container writes them (app-name =
/// sanitize(stack-env)), in the current label keys; then a few in each older generation.
fn cases() -> Vec<Case> {
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(super::repo_path("tests/data/naming-vectors.json")).unwrap(),
    )
    .unwrap();
    let mut cases = Vec::new();
    let generations = LabelScheme::default().generations().to_vec();
    let labels = |generation: usize, app: &str, env: &str, parent: &str| {
        let keys = &generations[generation];
        BTreeMap::from([
            (keys.app_name.clone(), app.to_owned()),
            (keys.env.clone(), env.to_owned()),
            (keys.parent_env.clone(), parent.to_owned()),
        ])
    };
    let mut seen = BTreeSet::new();
    for vector in vectors["namespace"].as_array().unwrap() {
        // Each input as a label can hold it: its characters outside a label value's
        // dropped, at most 63 bytes, alphanumeric at both ends (case, `_`, `.`, runs of
        // hyphens and long names stay).
        let [base, env, parent] = ["base", "stack_env", "parent_env"]
            .map(|k| label_form(vector[k].as_str().unwrap_or_default()));
        let (base, env, parent) = (base.as_str(), env.as_str(), parent.as_str());
        if ![base, env, parent].iter().all(|v| label_value(v))
            || parent == env
            || !seen.insert((base.to_owned(), env.to_owned()))
        {
            continue;
        }
        // One in two long ones (where truncation starts), one in eight of the rest: a
        // few hundred creates in all.
        let every = if base.len() + env.len() > 60 { 2 } else { 8 };
        if seen.len() % every != 0 {
            continue;
        }
        cases.push(Case {
            what: format!("hand-written {base:?}/{env:?}/{parent:?}"),
            labels: labels(0, base, env, parent),
        });
        let written = sanitize(&format!("{base}-{env}")).into_owned();
        if label_value(&written) {
            cases.push(Case {
                what: format!("simple-container's {written:?}/{env:?}/{parent:?}"),
                labels: labels(0, &written, env, parent),
            });
        }
    }
    for generation in [1, 2] {
        for (app, env) in [
            ("myapp-tenant-a", "tenant-a"),
            ("pay-space-wallet", "tenant-b"),
        ] {
            cases.push(Case {
                what: format!("generation {generation}: {app}/{env}"),
                labels: labels(generation, app, env, "production"),
            });
        }
    }
    // The newest generation with both app-name and env wins; parent-env is its own.
    let mut mixed = labels(2, "legacy-app", "tenant-a", "production");
    mixed.extend(labels(0, "shop-tenant-c", "tenant-c", "production"));
    cases.push(Case {
        what: "two generations".to_owned(),
        labels: mixed,
    });
    cases.push(Case {
        what: "a parent stack".to_owned(),
        labels: labels(0, "myapp", "production", "production"),
    });
    cases
}

/// `value` cut to what a label value may hold.
fn label_form(value: &str) -> String {
    let kept: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(63)
        .collect();
    kept.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// A valid, non-empty Kubernetes label value.
fn label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !value.is_empty()
        && value.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
}

/// Whether the stack-and-env name is past 63 bytes before truncation, which
/// simple-container hashes (CEL cannot): the webhook's alone.
fn beyond_cel(labels: &BTreeMap<String, String>) -> bool {
    let (app, env) = (
        labels
            .get("simple-container-com/app-name")
            .map_or("", String::as_str),
        labels
            .get("simple-container-com/env")
            .map_or("", String::as_str),
    );
    let kept: String = format!("{app}-{env}")
        .to_ascii_lowercase()
        .replace('_', "-")
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect();
    kept.trim_matches('-').len() > 63
}

fn create(
    plane: &ControlPlane,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    dry_run: bool,
) -> Answer {
    create_object(plane, namespace, name, labels, None, None, dry_run)
}

/// `kubectl create` of a ConfigMap, read back as the policy's and the webhook's answers.
fn create_object(
    plane: &ControlPlane,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    annotations: Option<Value>,
    owners: Option<Value>,
    dry_run: bool,
) -> Answer {
    let mut object = labelled(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace}}));
    let meta = &mut object["metadata"];
    for (key, value) in labels {
        meta["labels"][key] = json!(value);
    }
    if let Some(annotations) = annotations {
        meta["annotations"] = annotations;
    }
    if let Some(owners) = owners {
        meta["ownerReferences"] = owners;
    }
    let mut args = vec!["create", "-o", "name", "-f", "-"];
    if dry_run {
        args.push("--dry-run=server");
    }
    let out = plane.kubectl_with(&args, Some(&object.to_string()));
    let stderr = text(&out.stderr);
    let denied = format!(
        "ValidatingAdmissionPolicy '{POLICY_NAME}' with binding '{POLICY_NAME}' denied request: "
    );
    let refused = (!out.status.success()).then(|| {
        let at = stderr
            .find(&denied)
            .unwrap_or_else(|| panic!("not the policy's refusal: {stderr}"));
        stderr[at + denied.len()..].trim().to_owned()
    });
    let warned = format!(
        "Warning: Validation failed for ValidatingAdmissionPolicy '{POLICY_NAME}' with binding '{POLICY_NAME}': "
    );
    let policy_line = stderr.lines().find_map(|l| l.strip_prefix(&warned));
    let webhook_line = stderr
        .lines()
        .find(|l| l.starts_with("Warning: nsguard: ConfigMap") && l.contains(" of sub-env "));
    Answer {
        policy_target: refused.as_deref().or(policy_line).and_then(target),
        webhook_target: webhook_line.and_then(target),
        refused,
    }
}

/// The namespace a message says the object belongs in.
fn target(message: &str) -> Option<String> {
    let at = message.find("belongs in namespace \"")? + "belongs in namespace \"".len();
    let end = message[at..].find('"')?;
    Some(message[at..at + end].to_owned())
}
