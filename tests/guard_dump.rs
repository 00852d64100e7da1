//! The namespace guard's decisions over cluster dumps: through `nsguard can-delete` and
//! `nsguard audit`, and through the webhook's review of the recorded DELETE over the
//! example dump.

mod common;

use std::process::{Command, Output};

use common::{example_webhook, fixture, repo_path};
use nsguard::decisions::placement::PlacementMode;

fn can_delete(namespace: &str, dump: &str, extra: &[&str]) -> Output {
    common::nsguard_cli(["can-delete", namespace, "--cluster-dump"])
        .arg(repo_path(dump))
        .args(extra)
        .output()
        .expect("run nsguard")
}

const EXAMPLE: &str = "examples/cluster-dump.yaml";
const GENERATIONS: &str = "tests/data/dumps/legacy-and-mixed.yaml";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shared_legacy_namespace_is_denied_and_every_owner_is_named() {
    let out = can_delete("pay-space-wallet", EXAMPLE, &[]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains("holds objects of 3 stacks"), "{text}");
    for owner in [
        "pay-space-wallet/production",
        "pay-space-wallet-tenant-a/tenant-a",
        "pay-space-wallet-tenant-b/tenant-b",
    ] {
        assert!(
            text.contains(&format!("stack {owner}")),
            "{owner} missing: {text}"
        );
    }
    assert!(text.contains("1 Deployment.apps"), "{text}");
    assert!(
        text.contains("kubectl annotate namespace pay-space-wallet nsguard.dev/allow-delete=true"),
        "{text}"
    );
}

#[test]
fn single_owner_and_empty_namespaces_are_allowed() {
    for ns in ["pay-space-wallet-tenant-c", "billing", "scratch"] {
        assert_exit(&can_delete(ns, EXAMPLE, &[]), 0);
    }
}

/// A namespace the dump's Namespace list does not hold is an error, never "may be deleted".
#[test]
fn a_namespace_that_does_not_exist_is_an_error() {
    let out = can_delete("does-not-exist", EXAMPLE, &[]);
    assert_exit(&out, 2);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "nsguard: error: namespace \"does-not-exist\" does not exist"
    );
    assert!(stdout(&out).is_empty());
}

/// nsguard in a given environment, with no cluster configuration unless the test sets one.
fn nsguard(home: &std::path::Path, args: &[&str]) -> Command {
    let mut command = common::nsguard_cli(args);
    command.env("HOME", home);
    command
}

/// `serve` on loopback ports chosen by the OS.
const SERVE: [&str; 5] = [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--metrics-listen",
    "127.0.0.1:0",
];

/// A cluster configuration that is named but broken is a startup error (exit 2) that names
/// it, never a silent fallback to the built-in example (which allowed real deletes).
#[test]
fn a_named_but_broken_cluster_configuration_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("missing-kubeconfig");
    let missing = missing.to_str().unwrap();
    let garbage = home.path().join("garbage");
    std::fs::write(&garbage, "this: [is not a kubeconfig").unwrap();
    let garbage = garbage.to_str().unwrap();
    let valid = home.path().join("kubeconfig");
    std::fs::write(
        &valid,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: real, context: {cluster: c, user: u}}]\n\
         current-context: real\n",
    )
    .unwrap();
    let valid = valid.to_str().unwrap();
    let both = format!("{valid}:{missing}");
    for (args, env, needle) in [
        // A typo in --context names the context.
        (
            vec![
                "can-delete",
                "x",
                "--kubeconfig",
                valid,
                "--context",
                "prodd",
            ],
            None,
            "context: prodd",
        ),
        // One missing file in a KUBECONFIG list is enough.
        (
            vec!["can-delete", "x"],
            Some(both.as_str()),
            "KUBECONFIG names",
        ),
        (vec!["can-delete", "x"], Some(missing), "KUBECONFIG names"),
        (
            vec!["can-delete", "x", "--kubeconfig", missing],
            None,
            "--kubeconfig names",
        ),
        (
            vec!["can-delete", "x", "--kubeconfig", garbage],
            None,
            "reading kubeconfig",
        ),
        (SERVE.to_vec(), Some(missing), "KUBECONFIG names"),
        (vec!["can-delete", "x"], None, "no cluster configured"),
        (SERVE.to_vec(), None, "no cluster configured"),
    ] {
        let mut command = nsguard(home.path(), &args);
        if args[0] == "serve" {
            command.arg("--cert-dir").arg(home.path().join("certs"));
        }
        if let Some(path) = env {
            command.env("KUBECONFIG", path);
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let line = stderr.lines().last().unwrap_or_default();
        assert!(
            line.starts_with("nsguard: error: ") && line.contains(needle),
            "{args:?}: {stderr}"
        );
        if needle.contains("names") {
            assert!(line.contains("missing-kubeconfig"), "{line}");
        }
    }
}

/// The built-in example is used only when asked for, and then whatever kubeconfig the
/// reader has.
#[test]
fn the_example_is_used_only_with_demo() {
    let home = tempfile::tempdir().unwrap();
    let out = nsguard(home.path(), &["can-delete", "pay-space-wallet", "--demo"])
        .env("KUBECONFIG", home.path().join("missing"))
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("holds objects of 3 stacks"));
    let out = nsguard(
        home.path(),
        &["can-delete", "x", "--demo", "--cluster-dump", EXAMPLE],
    )
    .output()
    .unwrap();
    assert_exit(&out, 2);
}

#[test]
fn break_glass_annotation_allows() {
    let out = can_delete("reports", EXAMPLE, &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("nsguard.dev/allow-delete=true"));
}

#[test]
fn exempt_users_and_groups_are_allowed() {
    assert_exit(
        &can_delete("pay-space-wallet", EXAMPLE, &["--as", "alice"]),
        1,
    );
    assert_exit(
        &can_delete(
            "pay-space-wallet",
            EXAMPLE,
            &["--as", "alice", "--exempt-user", "alice"],
        ),
        0,
    );
    assert_exit(
        &can_delete(
            "pay-space-wallet",
            EXAMPLE,
            &["--as-group", "platform", "--exempt-group", "platform,sre"],
        ),
        0,
    );
}

#[test]
fn strict_policy_denies_any_owned_object() {
    let strict = ["--guard-policy", "non-empty"];
    let out = can_delete("billing", EXAMPLE, &strict);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("policy non-empty"),
        "{}",
        stdout(&out)
    );
    assert_exit(&can_delete("scratch", EXAMPLE, &strict), 0);
    assert_exit(&can_delete("unowned", GENERATIONS, &strict), 0);
}

#[test]
fn legacy_keys_and_mixed_generations() {
    let out = can_delete("legacy-shared", GENERATIONS, &[]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("stack a-preview/preview"),
        "{}",
        stdout(&out)
    );

    let out = can_delete("mixed", GENERATIONS, &[]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("holds objects of 3 stacks"),
        "{}",
        stdout(&out)
    );

    // One stack seen through three generations is still one owner.
    let out = can_delete("same-stack-mixed", GENERATIONS, &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("3 objects"), "{}", stdout(&out));

    // Half a label pair identifies no one; generations never combine on one object.
    assert_exit(
        &can_delete(
            "half-labelled",
            GENERATIONS,
            &["--guard-policy", "non-empty"],
        ),
        0,
    );
}

#[test]
fn custom_label_keys_replace_the_defaults() {
    // With only the legacy generation configured, the current-key stacks are invisible.
    let legacy_only = [
        "--label-keys",
        "appName,appEnv,simplecontainer.com/parent-env",
    ];
    let out = can_delete("mixed", GENERATIONS, &legacy_only);
    assert_exit(&out, 0);
}

#[test]
fn json_output_for_machines() {
    let out = can_delete("pay-space-wallet", EXAMPLE, &["--output", "json"]);
    assert_exit(&out, 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["verdict"]["reason"], "multiple-owners");
    assert_eq!(v["owners"].as_array().unwrap().len(), 3);
    assert_eq!(v["owners"][0]["by_kind"]["Deployment.apps"], 1);
}

#[test]
fn unreadable_dumps_are_errors_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "kind: List\nitems: [\n").unwrap();
    for path in [broken.to_str().unwrap(), "/does/not/exist.yaml"] {
        let out = Command::new(env!("CARGO_BIN_EXE_nsguard"))
            .args(["can-delete", "x", "--cluster-dump", path])
            .output()
            .unwrap();
        assert_exit(&out, 2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("nsguard: error:"), "{err}");
    }
}

/// The recorded DELETE of the shared namespace, edited by `edit`.
fn namespace_delete(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&fixture("namespace-delete.json")).unwrap();
    edit(&mut body["request"]);
    serde_json::to_vec(&body).unwrap()
}

async fn answer(webhook: &nsguard::admission::Webhook, body: &[u8]) -> serde_json::Value {
    let request = nsguard::admission::decode(body).unwrap();
    let response = webhook
        .review(nsguard::admission::Endpoint::Validate, &request)
        .await;
    serde_json::from_slice(&response.encode()).unwrap()
}

/// The guard is chosen by the resource the API server resolved, so a review whose
/// `kind` is spelled otherwise is still guarded (it was allowed before).
#[tokio::test]
async fn a_namespace_delete_is_known_by_its_resource_not_its_kind() {
    let webhook = example_webhook(PlacementMode::Enforce);
    for edit in [
        (|r: &mut serde_json::Value| r["kind"]["kind"] = "namespace".into())
            as fn(&mut serde_json::Value),
        |r| r["kind"]["group"] = "core".into(),
        |r| r["kind"] = serde_json::json!({"group": "", "version": "v1", "kind": "Pod"}),
        |_| {},
    ] {
        let body = namespace_delete(edit);
        let resp = answer(&webhook, &body).await;
        assert_eq!(resp["response"]["allowed"], false, "{resp}");
        let message = resp["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("holds objects of 3 stacks"), "{message}");
    }
    // Another resource with kind Namespace is not a namespace delete.
    let body = namespace_delete(|r| {
        r["resource"]["resource"] = "configmaps".into();
    });
    assert_eq!(answer(&webhook, &body).await["response"]["allowed"], true);
}

#[tokio::test]
async fn a_namespace_delete_without_a_name_is_a_400_never_an_allow() {
    let webhook = example_webhook(PlacementMode::Enforce);
    for edit in [
        (|r: &mut serde_json::Value| r["name"] = "".into()) as fn(&mut serde_json::Value),
        |r| {
            r.as_object_mut().unwrap().remove("name");
        },
    ] {
        let resp = answer(&webhook, &namespace_delete(edit)).await;
        let response = &resp["response"];
        assert_eq!(response["allowed"], false, "{resp}");
        assert_eq!(response["status"]["code"], 400, "{resp}");
        assert_eq!(response["status"]["reason"], "BadRequest", "{resp}");
        assert!(
            response["status"]["message"]
                .as_str()
                .unwrap()
                .contains("must name the namespace")
        );
    }
}

const AUDIT: &str = "tests/data/dumps/audit.yaml";

/// A denial also counts the volumes the delete would destroy for good: the claim on a
/// Delete volume, not the one on a Retain volume nor the unbound one; JSON names them.
#[test]
fn a_denial_counts_the_volumes_the_delete_would_destroy() {
    let out = can_delete("shop", AUDIT, &[]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains("deleting it also destroys the data of 1 PersistentVolume for good (reclaim policy Delete): claim orders (volume pv-orders)"),
        "{text}"
    );
    assert!(
        !text.contains("pv-logs") && !text.contains("pending"),
        "{text}"
    );
    let out = can_delete("shop", AUDIT, &["-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["volumes"]["checked"],
        serde_json::json!([{"namespace": "shop", "claim": "orders", "volume": "pv-orders", "reclaimPolicy": "Delete"}]),
        "{json}"
    );
    // A namespace with one stack and no claim: nothing to say about volumes.
    let text = stdout(&can_delete("clean", AUDIT, &[]));
    assert!(!text.contains("PersistentVolume"), "{text}");
}

/// An allowed delete (one stack) that destroys a Delete volume goes ahead with a warning
/// kubectl prints; without such a volume, no warning.
#[tokio::test]
async fn an_allowed_delete_warns_of_the_volumes_it_destroys() {
    let dump = "apiVersion: v1\nkind: List\nitems:\n\
        - {apiVersion: v1, kind: Namespace, metadata: {name: solo}}\n\
        - {apiVersion: v1, kind: PersistentVolumeClaim, metadata: {name: db, namespace: solo, labels: {simple-container-com/app-name: solo, simple-container-com/env: production}}, spec: {volumeName: pv-db}, status: {phase: Bound}}\n\
        - {apiVersion: v1, kind: PersistentVolume, metadata: {name: pv-db}, spec: {persistentVolumeReclaimPolicy: Delete}}\n";
    let mut webhook = example_webhook(PlacementMode::Enforce);
    let scheme = nsguard::simple_container::labels::LabelScheme::default();
    webhook.cluster = nsguard::cluster::ClusterSource::Dump(
        nsguard::cluster::ClusterDump::parse(dump, &scheme).unwrap(),
    );
    let resp = answer(&webhook, &namespace_delete(|r| r["name"] = "solo".into())).await;
    assert_eq!(resp["response"]["allowed"], true, "{resp}");
    assert_eq!(
        resp["response"]["warnings"],
        serde_json::json!([
            "nsguard: namespace \"solo\": deleting it also destroys the data of 1 PersistentVolume for good (reclaim policy Delete): claim db (volume pv-db); set persistentVolumeReclaimPolicy to Retain first to keep it"
        ]),
        "{resp}"
    );
    let resp = answer(
        &example_webhook(PlacementMode::Enforce),
        &namespace_delete(|r| r["name"] = "billing".into()),
    )
    .await;
    assert_eq!(resp["response"]["allowed"], true, "{resp}");
    assert!(resp["response"].get("warnings").is_none(), "{resp}");
}

/// The audit over a dump: a shared namespace with its owners, misplaced sub-env objects
/// (whether their namespace exists; a controller-owned ReplicaSet is not one), and a claim
/// on a Delete volume in the shared namespace; a Retain volume, an unbound claim and clean
/// namespaces are not findings. Exit 1 with findings.
#[test]
fn audit_finds_shared_namespaces_misplaced_objects_and_data_at_risk() {
    let home = tempfile::tempdir().unwrap();
    let out = nsguard(
        home.path(),
        &["audit", "--cluster-dump", AUDIT, "-o", "json"],
    )
    .output()
    .unwrap();
    assert_exit(&out, 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["namespaces"], 4);
    assert_eq!(report["unverified"], serde_json::json!([]));
    let findings = report["findings"].as_array().unwrap();
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        findings.iter().filter(|f| f["type"] == kind).collect()
    };
    let shared = of("SharedNamespace");
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0]["namespace"], "shop");
    assert_eq!(
        shared[0]["owners"],
        serde_json::json!([
            {"appName": "shop", "env": "production", "objects": 2},
            {"appName": "shop-tenant-a", "env": "tenant-a", "objects": 2},
            {"appName": "shop-tenant-b", "env": "tenant-b", "objects": 1}
        ])
    );
    // One finding per sub-env outside its namespace, every object of it listed.
    let misplaced: Vec<(String, String, bool, &serde_json::Value)> = of("Misplaced")
        .iter()
        .map(|f| {
            (
                format!(
                    "{}/{}",
                    f["namespace"].as_str().unwrap(),
                    f["owner"]["appName"].as_str().unwrap()
                ),
                f["target"].as_str().unwrap().to_owned(),
                f["targetExists"].as_bool().unwrap(),
                &f["objects"],
            )
        })
        .collect();
    let object = |api_version: &str, kind: &str, name: &str| serde_json::json!([{"apiVersion": api_version, "kind": kind, "name": name}]);
    assert_eq!(
        misplaced,
        [
            (
                "legacy/legacy-preview".to_owned(),
                "legacy-preview".to_owned(),
                false,
                &object("v1", "Service", "old")
            ),
            (
                "shop/shop-tenant-a".to_owned(),
                "shop-tenant-a".to_owned(),
                false,
                &object("apps/v1", "Deployment", "shop-tenant-a")
            ),
            (
                "shop/shop-tenant-b".to_owned(),
                "shop-tenant-b".to_owned(),
                true,
                &object("v1", "Service", "shop-tenant-b")
            ),
        ]
    );
    assert_eq!(of("Misplaced")[1]["objectCount"], 1);
    assert_eq!(
        of("DataAtRisk"),
        [
            &serde_json::json!({"type": "DataAtRisk", "namespace": "shop", "claim": "orders", "volume": "pv-orders", "reclaimPolicy": "Delete"})
        ]
    );
}

/// The text report groups findings by namespace with what to do; a selection with
/// nothing to report exits 0; without a dump the audit says how to make one (exit 2).
#[test]
fn audit_text_selection_and_sources() {
    let home = tempfile::tempdir().unwrap();
    let out = nsguard(home.path(), &["audit", "--cluster-dump", AUDIT])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.starts_with("3 sub-envs outside their own namespace, the riskiest first:\n  - legacy-preview/preview in legacy (belongs in legacy-preview, not created yet): 1 object (1 Service): Service/old; move it: nsguard migrate plan --stack legacy-preview/preview\n"),
        "{text}"
    );
    assert!(
        text.contains("1 namespace shared by several stacks (deleting one would delete them all; the guard refuses it):\n  - shop: shop/production (2), shop-tenant-a/tenant-a (2), shop-tenant-b/tenant-b (1)\nnamespace shop:\n  - PersistentVolumeClaim \"orders\""),
        "{text}"
    );
    assert!(text.contains("Retain"), "{text}");
    assert!(
        text.contains("5 findings in 4 namespaces (8 labelled objects, 3 of them outside their sub-env's namespace)\nTo move them: move each sub-env to its own namespace with simple-container 2026.5.12 or later")
            && text.contains("\nplacement in enforce would refuse every new object of 3 sub-envs")
            && text.ends_with("or keep placement in warn\n"),
        "{text}"
    );
    // The advice that holds for every sub-env is said once.
    assert_eq!(
        text.matches("never 2026.5.8 to 2026.5.11").count(),
        2,
        "{text}"
    );

    let out = nsguard(
        home.path(),
        &[
            "audit",
            "--cluster-dump",
            AUDIT,
            "-n",
            "clean",
            "-n",
            "shop-tenant-b",
        ],
    )
    .output()
    .unwrap();
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("0 findings in 2 namespaces"),
        "{}",
        stdout(&out)
    );

    let out = nsguard(home.path(), &["audit"]).output().unwrap();
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("nsguard: error:"), "{err}");
}

/// The audit reads like a plan: a sub-env with 45 objects of four kinds outside its
/// namespace is one line naming it once, with its count by kind, three names and "42
/// more", its claims and the command that moves it; the same sub-env in a second namespace
/// is a line of its own. `--objects` lists each object; JSON keeps every object, grouped.
#[test]
fn the_audit_names_a_misplaced_sub_env_once_with_its_objects_counted() {
    let home = tempfile::tempdir().unwrap();
    let sub_env = serde_json::json!({"simple-container-com/app-name": "big-tenant",
        "simple-container-com/env": "tenant", "simple-container-com/parent-env": "production"});
    let parent = serde_json::json!({"simple-container-com/app-name": "big", "simple-container-com/env": "production"});
    let mut items = vec![
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "big"}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "old"}}),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "big", "namespace": "big", "labels": parent}}),
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "stray", "namespace": "old", "labels": sub_env}}),
    ];
    for i in 0..45 {
        let (api_version, kind) = match i % 9 {
            0 => ("apps/v1", "Deployment"),
            1 | 2 => ("v1", "Service"),
            3 => ("v1", "PersistentVolumeClaim"),
            _ => ("v1", "ConfigMap"),
        };
        let mut object = serde_json::json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"name": format!("big-tenant-{i:02}"), "namespace": "big", "labels": sub_env}});
        if kind == "PersistentVolumeClaim" {
            object["spec"] = serde_json::json!({"volumeName": format!("pv-{i}")});
            object["status"] = serde_json::json!({"phase": "Bound"});
        }
        items.push(object);
    }
    let dump = home.path().join("dump.json");
    std::fs::write(
        &dump,
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    )
    .unwrap();
    let dump = dump.to_str().unwrap();
    let out = nsguard(home.path(), &["audit", "--cluster-dump", dump])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "2 sub-envs outside their own namespace, the riskiest first:",
            "  - big-tenant/tenant in big (belongs in big-tenant, not created yet): 45 objects (25 ConfigMap, 10 Service, 5 Deployment.apps, 5 PersistentVolumeClaim): Deployment/big-tenant-00, Service/big-tenant-01, Service/big-tenant-02, and 42 more; claims big-tenant-03, big-tenant-12, big-tenant-21, and 2 more; move it: nsguard migrate plan --stack big-tenant/tenant",
            "  - big-tenant/tenant in old (belongs in big-tenant, not created yet): 1 object (1 ConfigMap): ConfigMap/stray; move it: nsguard migrate plan --stack big-tenant/tenant",
        ],
        "{text}"
    );
    assert_eq!(text.matches("big-tenant-4").count(), 0, "{text}");
    let out = nsguard(home.path(), &["audit", "--cluster-dump", dump, "--objects"])
        .output()
        .unwrap();
    let every = stdout(&out);
    for i in 0..45 {
        assert!(
            every.contains(&format!("/big-tenant-{i:02} (")),
            "{i}: {every}"
        );
    }
    let out = nsguard(
        home.path(),
        &["audit", "--cluster-dump", dump, "-o", "json"],
    )
    .output()
    .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let misplaced: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] == "Misplaced")
        .collect();
    assert_eq!(misplaced.len(), 2, "{report:#}");
    assert_eq!(misplaced[0]["namespace"], "big");
    assert_eq!(misplaced[0]["objectCount"], 45);
    assert_eq!(misplaced[0]["claims"], 5);
    assert_eq!(misplaced[0]["objects"].as_array().unwrap().len(), 45);
    assert_eq!(
        misplaced[0]["kinds"],
        serde_json::json!({"ConfigMap": 25, "Deployment.apps": 5, "PersistentVolumeClaim": 5, "Service": 10})
    );
}

/// `audit -o policyreport`: one wgpolicyk8s.io/v1alpha2 PolicyReport per namespace with
/// findings, each valid under the CRD's schema as the API server applies it (strict: no
/// undeclared field), with a summary that counts its results; kubectl reads the List as
/// those PolicyReports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_policy_reports_follow_the_crd_schema_and_kubectl_reads_them() {
    let home = tempfile::tempdir().unwrap();
    let out = nsguard(
        home.path(),
        &["audit", "--cluster-dump", AUDIT, "-o", "policyreport"],
    )
    .output()
    .unwrap();
    assert_exit(&out, 1);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&list["apiVersion"], &list["kind"]),
        (&"v1".into(), &"List".into())
    );
    let crd: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("tests/data/crds/policyreport-v1alpha2.json")).unwrap(),
    )
    .unwrap();
    let schema = &crd["openAPIV3Schema"];
    let reports = list["items"].as_array().unwrap();
    let namespaces: Vec<&str> = reports
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["legacy", "shop"]);
    for report in reports {
        let violations = common::schema::violations(schema, report);
        assert!(violations.is_empty(), "{violations:?}\n{report:#}");
        let results = report["results"].as_array().unwrap();
        assert_eq!(report["summary"]["fail"], results.len(), "{report:#}");
        assert_eq!(report["metadata"]["name"], "nsguard");
        assert_eq!(report["scope"]["kind"], "Namespace");
    }
    let shop = &reports[1]["results"];
    let policies: Vec<&str> = shop
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["policy"].as_str().unwrap())
        .collect();
    // High severity first (a report cut to size keeps those).
    assert_eq!(
        policies,
        [
            "nsguard-shared-namespace",
            "nsguard-data-at-risk",
            "nsguard-placement",
            "nsguard-placement",
        ]
    );
    let at_risk = &shop[1];
    assert_eq!(at_risk["resources"][0]["kind"], "PersistentVolumeClaim");
    assert_eq!(at_risk["properties"]["volume"], "pv-orders");

    let read = kubectl_reads_policy_reports(&out.stdout).await;
    assert_eq!(read.len(), 2);
    for (read, written) in read.iter().zip(reports) {
        assert_eq!(read["kind"], "PolicyReport");
        assert_eq!(read["results"], written["results"]);
        assert_eq!(
            read["metadata"]["namespace"],
            written["metadata"]["namespace"]
        );
    }
}

/// A legacy namespace with 10,000 misplaced sub-env objects (the migration nsguard exists
/// for) gets a report under 1 MiB that the CRD's schema accepts and kubectl reads: the
/// shared-namespace result first, then as many placement results as fit, then one that
/// says how many more there are and how to list them; the summary counts every finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_with_10000_findings_gets_a_report_under_1_mib() {
    let home = tempfile::tempdir().unwrap();
    let parent = serde_json::json!({"simple-container-com/app-name": "shop", "simple-container-com/env": "production"});
    let mut items = vec![
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "shop", "namespace": "shop", "labels": parent}}),
    ];
    for i in 0..10_000 {
        let tenant = format!("tenant-{}", i % 50);
        items.push(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("shop-{tenant}-config-with-a-long-name-{i:05}"), "namespace": "shop",
                "labels": {"simple-container-com/app-name": format!("shop-{tenant}"),
                    "simple-container-com/env": tenant, "simple-container-com/parent-env": "production"}}}));
    }
    let dump = home.path().join("dump.json");
    std::fs::write(
        &dump,
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    )
    .unwrap();
    let out = nsguard(
        home.path(),
        &["audit", "-o", "policyreport", "--cluster-dump"],
    )
    .arg(&dump)
    .output()
    .unwrap();
    assert_exit(&out, 1);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &list["items"][0];
    let size = serde_json::to_vec(report).unwrap().len();
    assert!(size < 1024 * 1024, "{size} bytes");
    let crd: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("tests/data/crds/policyreport-v1alpha2.json")).unwrap(),
    )
    .unwrap();
    let violations = common::schema::violations(&crd["openAPIV3Schema"], report);
    assert!(violations.is_empty(), "{violations:?}");
    // 1 shared namespace + 10,000 misplaced objects, every one counted.
    assert_eq!(report["summary"]["fail"], 10_001, "{}", report["summary"]);
    let results = report["results"].as_array().unwrap();
    assert!(
        results.len() > 100 && results.len() < 10_001,
        "{}",
        results.len()
    );
    assert_eq!(results[0]["policy"], "nsguard-shared-namespace");
    let last = results.last().unwrap();
    assert_eq!(last["policy"], "nsguard-report-truncated");
    assert_eq!(last["result"], "skip");
    let listed = results.len() - 1;
    let omitted = 10_001 - listed;
    assert_eq!(last["properties"]["omitted"], omitted.to_string());
    let message = last["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{omitted} more findings in namespace shop"))
            && message.contains("`nsguard audit -n shop`"),
        "{message}"
    );
    // The shared-namespace result names 51 stacks; its long texts are cut, and say so.
    assert!(results[0]["message"].as_str().unwrap().len() < 2200);

    let read = kubectl_reads_policy_reports(&out.stdout).await;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0]["results"], report["results"]);
}

/// A misplaced sub-env claim on a Delete volume: `MoveDestroysData` in JSON and as a
/// PolicyReport result the CRD's schema accepts (policy nsguard-move-destroys-data); a
/// claim of the same sub-env on a Retain volume gets none.
#[test]
fn a_move_that_deletes_a_volume_is_reported_as_its_own_finding() {
    let home = tempfile::tempdir().unwrap();
    let tenant = "{simple-container-com/app-name: shop-tenant-a, simple-container-com/env: tenant-a, simple-container-com/parent-env: production}";
    let dump = format!(
        "apiVersion: v1\nkind: List\nitems:\n\
         - {{apiVersion: v1, kind: Namespace, metadata: {{name: shop}}}}\n\
         - {{apiVersion: v1, kind: PersistentVolumeClaim, metadata: {{name: data, namespace: shop, labels: {tenant}}}, spec: {{volumeName: pv-data}}, status: {{phase: Bound}}}}\n\
         - {{apiVersion: v1, kind: PersistentVolumeClaim, metadata: {{name: cache, namespace: shop, labels: {tenant}}}, spec: {{volumeName: pv-cache}}, status: {{phase: Bound}}}}\n\
         - {{apiVersion: v1, kind: PersistentVolume, metadata: {{name: pv-data}}, spec: {{persistentVolumeReclaimPolicy: Delete}}}}\n\
         - {{apiVersion: v1, kind: PersistentVolume, metadata: {{name: pv-cache}}, spec: {{persistentVolumeReclaimPolicy: Retain}}}}\n"
    );
    let path = home.path().join("dump.yaml");
    std::fs::write(&path, dump).unwrap();
    let run = |format: &str| {
        nsguard(home.path(), &["audit", "-o", format, "--cluster-dump"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = run("json");
    assert_exit(&out, 1);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let moves: Vec<&serde_json::Value> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] == "MoveDestroysData")
        .collect();
    assert_eq!(moves.len(), 1, "{json:#}");
    assert_eq!(moves[0]["claim"], "data");
    let out = run("policyreport");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &list["items"][0];
    let crd: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("tests/data/crds/policyreport-v1alpha2.json")).unwrap(),
    )
    .unwrap();
    let violations = common::schema::violations(&crd["openAPIV3Schema"], report);
    assert!(violations.is_empty(), "{violations:?}");
    let result = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["policy"] == "nsguard-move-destroys-data")
        .unwrap();
    assert_eq!(result["severity"], "high");
    assert_eq!(result["resources"][0]["name"], "data");
    assert_eq!(result["properties"]["target"], "shop-tenant-a");
}

/// What kubectl reads of `yaml` (`create --dry-run=client`), against an API server that
/// serves the PolicyReport CRD.
async fn kubectl_reads_policy_reports(yaml: &[u8]) -> Vec<serde_json::Value> {
    let replay = common::replay::Replay::start().await;
    replay.add_group(
        "wgpolicyk8s.io",
        "v1alpha2",
        &[("policyreports", "PolicyReport")],
    );
    common::replay::kubectl_reads(&replay, &String::from_utf8_lossy(yaml), &[]).await
}

/// The checker above refuses what the API server would: a missing required field, a value
/// outside its enum or its int32 range, a value of the wrong type, an undeclared field.
#[test]
fn the_schema_checker_finds_what_the_api_server_refuses() {
    let schema = serde_json::json!({"type": "object", "required": ["policy"], "properties": {
        "policy": {"type": "string"}, "result": {"type": "string", "enum": ["pass", "fail"]},
        "n": {"type": "integer", "format": "int32"},
        "props": {"type": "object", "additionalProperties": {"type": "string"}}}});
    assert!(
        common::schema::violations(
            &schema,
            &serde_json::json!({"policy": "p", "result": "pass", "n": 1, "props": {"a": "b"}})
        )
        .is_empty()
    );
    let found = common::schema::violations(
        &schema,
        &serde_json::json!({"result": "maybe", "n": 5_000_000_000_i64, "props": {"a": 1}, "source": "x"}),
    );
    assert_eq!(found.len(), 5, "{found:?}");
}

const LINGERING: &str = "tests/data/dumps/lingering.yaml";

/// Lingering namespaces: a Namespace with a stack's labels (each of the three label
/// generations) holding nothing but what Kubernetes puts in every namespace, or nothing.
/// Its creator's own objects (alive), another stack's (Misplaced), an unlabelled object
/// someone made or a claim keep it from lingering; a Namespace without stack labels is not
/// simple-container's. The guard allows each lingering namespace's delete.
#[test]
fn lingering_namespaces_are_found_in_every_label_generation() {
    let home = tempfile::tempdir().unwrap();
    let out = nsguard(
        home.path(),
        &["audit", "--cluster-dump", LINGERING, "-o", "json"],
    )
    .output()
    .unwrap();
    assert_exit(&out, 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<(&str, &str)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["type"].as_str().unwrap(),
                f["namespace"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("LingeringNamespace", "dot-gen"),
            ("Misplaced", "foreign"),
            ("LingeringNamespace", "legacy-gen"),
            ("LingeringNamespace", "shop-preview"),
        ]
    );
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(
        findings[3],
        serde_json::json!({"type": "LingeringNamespace", "namespace": "shop-preview",
            "owner": {"appName": "shop-preview", "env": "preview", "parentEnv": "production"},
            "emptySince": "2026-05-01T00:00:02Z",
            "left": ["ConfigMap/kube-root-ca.crt", "Event/shop-preview.1830c0ffee",
                "Secret/default-token-x7k2p", "ServiceAccount/default"]})
    );
    // Generations 2 and 3; with nothing left, the Namespace's own creation time.
    assert_eq!(findings[0]["owner"]["appName"], "billing-staging");
    assert_eq!(findings[0]["emptySince"], "2026-03-01T12:00:00Z");
    assert_eq!(findings[2]["owner"]["appName"], "old-app");
    assert!(findings[2].get("emptySince").is_none(), "{}", findings[2]);
    for namespace in ["shop-preview", "dot-gen", "legacy-gen"] {
        assert_exit(&can_delete(namespace, LINGERING, &[]), 0);
    }
}

/// `--cleanup-script`: exactly the lingering namespaces' delete lines, server-side dry
/// runs unless --apply-ready, each under a comment naming the stack; a shell reads it.
/// A name no API server would accept (possible in a hand-edited dump) never becomes a
/// command, and label text cannot break out of its comment.
#[test]
fn the_cleanup_script_deletes_exactly_the_lingering_namespaces() {
    let home = tempfile::tempdir().unwrap();
    let script = |extra: &[&str]| {
        let out = nsguard(
            home.path(),
            &[
                &["audit", "--cluster-dump", LINGERING, "--cleanup-script"][..],
                extra,
            ]
            .concat(),
        )
        .output()
        .unwrap();
        assert_exit(&out, 0);
        stdout(&out)
    };
    let dry = script(&[]);
    let commands: Vec<&str> = dry
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(
        commands,
        [
            "set -e",
            "kubectl delete namespace dot-gen --dry-run=server",
            "kubectl delete namespace legacy-gen --dry-run=server",
            "kubectl delete namespace shop-preview --dry-run=server",
        ]
    );
    assert!(dry.contains("# left by stack shop-preview/preview (parent-env production); holds nothing of any stack since 2026-05-01T00:00:02Z or earlier\nkubectl delete namespace shop-preview"), "{dry}");
    let ready = script(&["--apply-ready"]);
    assert!(
        ready.contains("\nkubectl delete namespace shop-preview\n") && !ready.contains("--dry-run"),
        "{ready}"
    );
    // sh parses it (syntax only).
    let check = std::process::Command::new("sh")
        .args(["-n", "-c", &dry])
        .status()
        .unwrap();
    assert!(check.success());

    let hostile = home.path().join("hostile.yaml");
    std::fs::write(
        &hostile,
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: 'x; rm -rf ~', labels: {simple-container-com/app-name: \"a\\nrm -rf ~\", simple-container-com/env: production}}}\n",
    )
    .unwrap();
    let out = nsguard(
        home.path(),
        &[
            "audit",
            "--cluster-dump",
            hostile.to_str().unwrap(),
            "--cleanup-script",
        ],
    )
    .output()
    .unwrap();
    let text = stdout(&out);
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("kubectl") || l.starts_with("rm")),
        "{text}"
    );
    assert!(
        text.contains("# skipped: x; rm -rf ~ is not a valid namespace name"),
        "{text}"
    );

    let out = nsguard(
        home.path(),
        &["audit", "--cluster-dump", LINGERING, "--apply-ready"],
    )
    .output()
    .unwrap();
    assert_exit(&out, 2);
}

/// Lingering namespaces are PolicyReport results of their own policy, `warn`, valid under
/// the CRD's schema.
#[test]
fn lingering_namespaces_are_warnings_in_policy_reports() {
    let home = tempfile::tempdir().unwrap();
    let out = nsguard(
        home.path(),
        &["audit", "--cluster-dump", LINGERING, "-o", "policyreport"],
    )
    .output()
    .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let crd: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("tests/data/crds/policyreport-v1alpha2.json")).unwrap(),
    )
    .unwrap();
    let report = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metadata"]["namespace"] == "shop-preview")
        .unwrap();
    let violations = common::schema::violations(&crd["openAPIV3Schema"], report);
    assert!(violations.is_empty(), "{violations:?}");
    let result = &report["results"][0];
    assert_eq!(
        (
            &result["policy"],
            &result["result"],
            &report["summary"]["warn"]
        ),
        (
            &"nsguard-lingering-namespace".into(),
            &"warn".into(),
            &1.into()
        )
    );
    assert_eq!(result["properties"]["emptySince"], "2026-05-01T00:00:02Z");
}

/// The example a newcomer runs shows the audit's findings, a lingering namespace among
/// them (scratch: its stack was destroyed, only Kubernetes' defaults are left).
#[test]
fn the_example_audit_shows_a_lingering_namespace() {
    let home = tempfile::tempdir().unwrap();
    let out = nsguard(home.path(), &["audit", "--demo", "-o", "json"])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lingering: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] == "LingeringNamespace")
        .map(|f| f["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(lingering, ["scratch"]);
    assert_exit(&can_delete("scratch", EXAMPLE, &[]), 0);
}

const MIGRATION: &str = "tests/data/dumps/migration.yaml";

/// Run `tool` (a shell or shellcheck) over `script` on its standard input.
fn script_passes(tool: &str, args: &[&str], script: &[u8]) {
    use std::io::Write as _;
    let mut child = Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} on the PATH (tests/run.sh installs it): {e}"));
    child.stdin.take().unwrap().write_all(script).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{tool}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nsguard migrate plan` of the migration dump's sub-env shop/tenant-a (exit 0).
fn plan_of_tenant_a(home: &std::path::Path) -> String {
    let out = nsguard(
        home,
        &[
            "migrate",
            "plan",
            "--cluster-dump",
            MIGRATION,
            "--stack",
            "shop/tenant-a",
        ],
    )
    .output()
    .unwrap();
    assert_exit(&out, 0);
    String::from_utf8(out.stdout).unwrap()
}

/// The audit says whether placement in `enforce` would refuse deploys: the sub-envs still
/// outside their namespace, once per namespace, in text (with what to do) and JSON.
#[test]
fn the_audit_names_the_sub_envs_enforce_would_refuse() {
    let home = tempfile::tempdir().unwrap();
    let out = nsguard(home.path(), &["audit", "--demo"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("placement in enforce would refuse"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("3 sub-envs")
            && line.contains("reports-preview/preview in reports (belongs in reports-preview)")
            && line.ends_with("or keep placement in warn"),
        "{line}"
    );
    let out = nsguard(home.path(), &["audit", "--demo", "-o", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["subEnvsOutside"][0],
        serde_json::json!({"stack": "pay-space-wallet-tenant-a/tenant-a", "namespace": "pay-space-wallet",
            "target": "pay-space-wallet-tenant-a", "objects": 3})
    );
    assert_eq!(report["subEnvsOutside"].as_array().unwrap().len(), 3);
}

/// The plan's state step, the commands a person copies: for each sub-env its Pulumi
/// stack (`<stack>--<env>`, an app-name that is the stack alone included) and the
/// Namespace's logical name from its Deployment; the commands parse (`sh -n`, shellcheck),
/// and real jq forgets exactly that Namespace in an exported state (the resource and the
/// references to it; a ConfigMap of the same name, another Namespace and every other
/// resource stay), and stops with a message when the state holds no such Namespace.
#[test]
fn the_state_step_forgets_exactly_the_sub_envs_namespace_with_real_jq() {
    let home = tempfile::tempdir().unwrap();
    let text = plan_of_tenant_a(home.path());
    let commands: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#   $ "))
        .collect();
    assert_eq!(commands.len(), 3, "{text}");
    assert_eq!(
        commands[0],
        "pulumi stack export --stack 'shop--tenant-a' --file 'nsguard-shop--tenant-a.json'"
    );
    assert!(
        commands[1].starts_with("jq --arg name 'tenant-a-web-ns' '"),
        "{}",
        commands[1]
    );
    assert_eq!(
        commands[2],
        "pulumi stack import --stack 'shop--tenant-a' --file 'forgotten-nsguard-shop--tenant-a.json'"
    );
    let script = format!("#!/bin/sh\nset -eu\n{}\n", commands.join("\n"));
    script_passes("sh", &["-n"], script.as_bytes());
    script_passes("shellcheck", &["-s", "sh", "-"], script.as_bytes());

    let urn = |kind: &str, name: &str| format!("urn:pulumi:shop--tenant-a::shop::{kind}::{name}");
    let namespace = urn("kubernetes:core/v1:Namespace", "tenant-a-web-ns");
    let other = urn("kubernetes:core/v1:Namespace", "other-tenant-a-web-ns");
    let state = serde_json::json!({"version": 3, "deployment": {"manifest": {}, "resources": [
        {"urn": urn("pulumi:pulumi:Stack", "shop-shop--tenant-a"), "type": "pulumi:pulumi:Stack", "custom": false},
        {"urn": namespace, "type": "kubernetes:core/v1:Namespace", "custom": true, "id": "shop"},
        {"urn": other, "type": "kubernetes:core/v1:Namespace", "custom": true},
        {"urn": urn("kubernetes:core/v1:ConfigMap", "tenant-a-web-ns"), "type": "kubernetes:core/v1:ConfigMap", "custom": true},
        {"urn": urn("kubernetes:apps/v1:Deployment", "tenant-a-web"), "type": "kubernetes:apps/v1:Deployment",
         "custom": true, "dependencies": [namespace, other],
         "propertyDependencies": {"metadata": [namespace], "spec": [other]}}
    ]}});
    let dir = tempfile::tempdir().unwrap();
    let jq = |state: &serde_json::Value| {
        std::fs::write(
            dir.path().join("nsguard-shop--tenant-a.json"),
            state.to_string(),
        )
        .unwrap();
        Command::new("sh")
            .args(["-c", commands[1]])
            .current_dir(dir.path())
            .output()
            .expect("sh")
    };
    let out = jq(&state);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let forgotten: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("forgotten-nsguard-shop--tenant-a.json")).unwrap(),
    )
    .unwrap();
    let mut expected = state.clone();
    let resources = expected["deployment"]["resources"].as_array_mut().unwrap();
    resources.remove(1);
    resources[3]["dependencies"] = serde_json::json!([other]);
    resources[3]["propertyDependencies"] = serde_json::json!({"metadata": [], "spec": [other]});
    assert_eq!(forgotten, expected);
    // Nothing to forget (done already, or another name): jq stops, saying so.
    let out = jq(&forgotten);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("expected one Namespace resource named tenant-a-web-ns, found 0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nsguard migrate check` over a dump with a sub-env at each point of a migration: the
/// dump carries what the check reads (claims' deletionTimestamp, volumes' phase, claimRef
/// and the plan's annotations), and `nsguard dump` of it reads back the same. Exit 1: not
/// all done.
#[test]
fn migrate_check_reads_where_each_sub_env_stands_from_a_dump() {
    let home = tempfile::tempdir().unwrap();
    let check = |dump: &str| {
        let out = nsguard(
            home.path(),
            &["migrate", "check", "--cluster-dump", dump, "-o", "json"],
        )
        .output()
        .unwrap();
        assert_exit(&out, 1);
        let statuses: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        statuses
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let claims = common::claim_stages(s);
                format!(
                    "{} {}: {}",
                    s["stack"].as_str().unwrap(),
                    s["state"].as_str().unwrap(),
                    claims.join(", ")
                )
            })
            .collect::<Vec<_>>()
    };
    // For a person: each sub-env, its claims, what is left behind and the next step.
    let out = nsguard(
        home.path(),
        &["migrate", "check", "--cluster-dump", MIGRATION],
    )
    .output()
    .unwrap();
    assert_exit(&out, 1);
    let text = stdout(&out);
    for line in [
        "sub-env shop/tenant-a (shop -> shop-tenant-a): not-started",
        "  claim tenant-a-data (volume pv-a-data): not-started",
        "  claim tenant-b-logs (volume pv-b-logs): releasing (deleted at 2026-12-02T10:00:00Z)",
        "  next: claim shop/tenant-b-logs waits for the pods that mount it to stop",
        "sub-env shop/tenant-c (shop -> shop-tenant-c): done",
        "  claim tenant-d-data (volume pv-d-data): stuck: claims shop/tenant-d-data and shop-tenant-d/tenant-d-data both exist",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{line:?} not in:\n{text}"
        );
    }
    let found = check(MIGRATION);
    assert_eq!(
        found,
        [
            "shop/tenant-a not-started: tenant-a-cache kept, tenant-a-data not-started",
            "shop/tenant-b handed-over: tenant-b-data reserved, tenant-b-logs releasing",
            "shop/tenant-c done: tenant-c-data done",
            "shop/tenant-d stuck: tenant-d-data stuck",
        ]
    );
    // What `nsguard dump` writes of it, read again, says the same.
    let written = home.path().join("again.json");
    let out = nsguard(
        home.path(),
        &[
            "dump",
            "--cluster-dump",
            MIGRATION,
            "-o",
            written.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_exit(&out, 0);
    assert_eq!(check(written.to_str().unwrap()), found);
    // Only shop's: the volumes handed over from it come along, though their claims are gone.
    let out = nsguard(
        home.path(),
        &[
            "dump",
            "--cluster-dump",
            MIGRATION,
            "-n",
            "shop",
            "-o",
            written.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_exit(&out, 0);
    let only_shop = check(written.to_str().unwrap());
    assert!(only_shop.contains(&found[1]), "{only_shop:?}");
}

/// `nsguard migrate plan` over the same dump: a script that parses and that shellcheck
/// passes, dry run and apply-ready alike, planning each sub-env from where it stands (the
/// not-started one from keeping its Delete volume, the handed-over one from reserving the
/// volume its held claim frees) and none for the stuck one, which is named on stderr (exit
/// 1). `--stack` picks one sub-env.
#[test]
fn migrate_plan_writes_a_script_from_where_each_sub_env_stands() {
    let home = tempfile::tempdir().unwrap();
    for extra in [&[][..], &["--apply-ready", "--restore-reclaim-policy"][..]] {
        let mut args = vec!["migrate", "plan", "--cluster-dump", MIGRATION];
        args.extend_from_slice(extra);
        let out = nsguard(home.path(), &args).output().unwrap();
        assert_exit(&out, 1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("nsguard: not planned: shop/tenant-d (shop -> shop-tenant-d): claim tenant-d-data: claims shop/tenant-d-data and shop-tenant-d/tenant-d-data both exist"),
            "{stderr}"
        );
        script_passes("sh", &["-n"], &out.stdout);
        script_passes("shellcheck", &["-s", "sh", "-"], &out.stdout);
        let text = String::from_utf8(out.stdout).unwrap();
        let commands: Vec<&str> = text
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with("kubectl"))
            .collect();
        let with = |needle: &str| commands.iter().filter(|c| c.contains(needle)).count();
        // tenant-a: kept (its Delete volume only), stopped, released, reserved.
        assert_eq!(
            with(
                "kubectl patch pv 'pv-a-data' --type=merge -p '{\"spec\":{\"persistentVolumeReclaimPolicy\":\"Retain\"}}'"
            ),
            1
        );
        assert_eq!(with("kubectl patch pv 'pv-a-cache' --type=merge"), 0);
        assert_eq!(with("kubectl delete pvc 'tenant-a-data' -n 'shop'"), 1);
        // tenant-b: its held claim's workload stopped again, the freed volume reserved;
        // the volume reserved already is left alone.
        assert_eq!(
            with("kubectl scale 'deployment/tenant-b-web' -n 'shop' --replicas=0"),
            1
        );
        assert_eq!(with("kubectl delete pvc 'tenant-b-logs'"), 0);
        assert_eq!(with("kubectl patch pv 'pv-b-logs' --type=json"), 1);
        assert_eq!(with("kubectl patch pv 'pv-b-data' --type=json"), 0);
        assert_eq!(
            with(
                "kubectl patch pv 'pv-b-data' --type=merge -p '{\"spec\":{\"persistentVolumeReclaimPolicy\":\"Retain\"}}'"
            ),
            0
        );
        // tenant-c: done; tenant-d: nothing.
        assert_eq!(with("tenant-d"), 0, "{text}");
        assert_eq!(
            with(
                "kubectl patch pv 'pv-c-data' --type=merge -p '{\"spec\":{\"persistentVolumeReclaimPolicy\":\"Delete\"}}'"
            ),
            usize::from(!extra.is_empty())
        );
    }
    let text = plan_of_tenant_a(home.path());
    assert!(
        text.contains("tenant-a") && !text.contains("tenant-b"),
        "{text}"
    );
}
