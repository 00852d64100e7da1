//! The real-cluster suite: nsguard as shipped, against a real control plane it starts
//! itself (etcd, kube-apiserver, kube-controller-manager on 127.0.0.1, as envtest does with
//! `KUBEBUILDER_ASSETS`, plus the controller manager whose namespace and volume controllers
//! nsguard's behaviour depends on).
//!
//! The replay tests stay the fast, precise ones; this suite is the ground truth for what
//! only a real API server shows: RBAC as `kubectl kustomize` renders it, the admission
//! chain (webhooks called over HTTPS, `--dry-run=server`), Events as `kubectl describe`
//! reads them, the Lease, PolicyReports checked by a real CRD's schema, and the namespace
//! and PersistentVolume controllers.
//!
//! Configuration:
//! - `NSGUARD_KUBE_ASSETS=DIR`: a directory with `kube-apiserver` and
//!   `kube-controller-manager` (and `etcd`, else `etcd` on the PATH). `tests/run.sh`
//!   unpacks the ones in `../shared/kube` when it is not set.
//! - Without it the suite does not run and says so on its first line; with
//!   `NSGUARD_REAL_CLUSTER=required` (CI) that is a failure, never a silent pass.
//!
//! It owns what it starts: the control plane runs in a temporary directory, every process
//! is stopped when the suite ends (a failed scenario included) and dies with the suite
//! (`PR_SET_PDEATHSIG`); everything it creates in the cluster carries the label
//! `nsguard.dev/e2e=true` and is deleted at the end.
//!
//! Not a libtest binary (`harness = false`): one control plane serves every scenario in
//! order, and the suite prints its own lines (`test NAME ... ok`, then `N passed, N
//! failed`). A name filter (`cargo test --test real_cluster events`) and `--list` work.

mod common;
#[path = "real_cluster/on_a_node.rs"]
mod on_a_node;
#[path = "real_cluster/placement_policy.rs"]
mod placement_policy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::control_plane::{ControlPlane, b64, eventually, kube_config, kubeconfig, poll, text};
use common::{Cluster, Server, kustomize, repo_path};
use serde_json::{Value, json};

/// The label on everything the suite creates.
const E2E: &str = "nsguard.dev/e2e";

type Scenario = fn(&Suite);

const SCENARIOS: [(&str, Scenario); 9] = [
    (
        "a_shared_namespace_delete_is_refused_real_and_dry_run",
        a_shared_namespace_delete_is_refused_real_and_dry_run,
    ),
    (
        "the_refusal_is_a_warning_event_kubectl_events_shows",
        the_refusal_is_a_warning_event_kubectl_events_shows,
    ),
    (
        "an_allowed_delete_is_emptied_by_the_namespace_controller",
        an_allowed_delete_is_emptied_by_the_namespace_controller,
    ),
    (
        "a_type_created_a_moment_ago_is_counted_in_types_plus_two_calls",
        a_type_created_a_moment_ago_is_counted_in_types_plus_two_calls,
    ),
    (
        "two_replicas_one_lease_holder_one_policy_report_writer",
        two_replicas_one_lease_holder_one_policy_report_writer,
    ),
    (
        "a_plain_move_is_refused_at_its_first_step_and_loses_nothing",
        a_plain_move_is_refused_at_its_first_step_and_loses_nothing,
    ),
    (
        "a_namespace_being_left_keeps_a_moving_sub_envs_volume",
        a_namespace_being_left_keeps_a_moving_sub_envs_volume,
    ),
    (
        "the_migration_plan_hands_the_volume_over_with_the_pv_controller",
        the_migration_plan_hands_the_volume_over_with_the_pv_controller,
    ),
    (
        "the_placement_policy_answers_as_the_webhook_and_nsguard_check",
        placement_policy::the_placement_policy_answers_as_the_webhook_and_nsguard_check,
    ),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for name in SCENARIOS
            .iter()
            .map(|s| s.0)
            .chain(on_a_node::SCENARIOS.iter().map(|s| s.0))
        {
            println!("{name}: test");
        }
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let chosen: Vec<(&str, Scenario)> = SCENARIOS
        .into_iter()
        .filter(|(name, _)| wanted(name))
        .collect();
    let on_node: Vec<(&str, on_a_node::NodeScenario)> = on_a_node::SCENARIOS
        .into_iter()
        .filter(|(name, _)| wanted(name))
        .collect();
    if chosen.is_empty() && on_node.is_empty() {
        println!("real_cluster: no scenario matches {filters:?}\n0 passed, 0 failed");
        return;
    }
    let required = std::env::var("NSGUARD_REAL_CLUSTER").is_ok_and(|v| v == "required");
    let Some(assets) = common::control_plane::assets() else {
        println!(
            "real_cluster: SKIPPED, did not run: NSGUARD_KUBE_ASSETS is not set (a directory with \
             kube-apiserver and kube-controller-manager; tests/run.sh sets it from ../shared/kube)"
        );
        if required {
            eprintln!("real_cluster: NSGUARD_REAL_CLUSTER=required, so not running is a failure");
            std::process::exit(1);
        }
        return;
    };
    let started = Instant::now();
    let (mut passed, mut failed) = (0, Vec::new());
    if !chosen.is_empty() {
        let suite = match std::panic::catch_unwind(|| Suite::start(&assets)) {
            Ok(suite) => suite,
            Err(_) => {
                eprintln!("real_cluster: the control plane or nsguard did not start (above)");
                println!("0 passed, {} failed", chosen.len() + on_node.len());
                std::process::exit(1);
            }
        };
        println!(
            "real_cluster: Kubernetes {} at {} ready in {:.1} s",
            suite.plane.version,
            suite.plane.server,
            started.elapsed().as_secs_f64()
        );
        run_in_order(&chosen, &suite, &mut passed, &mut failed);
        let clean = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| suite.clean_up()));
        drop(suite);
        if clean.is_err() {
            failed.push("clean_up");
        }
    }
    // nsguard as it ships, on a real node: a cluster of its own.
    if !on_node.is_empty() {
        match common::node::available() {
            Err(why) => {
                println!("real_cluster: the node scenarios were SKIPPED, did not run: {why}");
                if required {
                    eprintln!(
                        "real_cluster: NSGUARD_REAL_CLUSTER=required, so not running them is a failure"
                    );
                    failed.push("on_a_node");
                }
            }
            Ok(kube_node) => {
                let at = Instant::now();
                match std::panic::catch_unwind(|| on_a_node::Installed::start(&kube_node, &assets))
                {
                    Ok(installed) => {
                        println!(
                            "real_cluster: nsguard installed on a node (Kubernetes {}) in {:.1} s",
                            installed.node.plane.version,
                            at.elapsed().as_secs_f64()
                        );
                        run_in_order(&on_node, &installed, &mut passed, &mut failed);
                    }
                    Err(_) => {
                        eprintln!("real_cluster: the node or the install did not come up (above)");
                        failed.extend(on_node.iter().map(|s| s.0));
                    }
                }
            }
        }
    }
    println!(
        "real_cluster: {:.1} s in all\n{passed} passed, {} failed",
        started.elapsed().as_secs_f64(),
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(1);
    }
}

/// Named scenarios that run on one kind of cluster.
type Scenarios<C> = [(&'static str, fn(&C))];

/// Run each scenario on `cluster`, in order, counting it.
fn run_in_order<C>(
    scenarios: &Scenarios<C>,
    cluster: &C,
    passed: &mut usize,
    failed: &mut Vec<&'static str>,
) {
    for (name, scenario) in scenarios {
        let at = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(cluster)));
        let took = at.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => {
                println!("test {name} ... ok ({took:.1} s)");
                *passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED ({took:.1} s)");
                failed.push(name);
            }
        }
    }
}

// ------------------------------------------------------------------ nsguard installed

/// The control plane with nsguard's shipped Namespace and RBAC applied, `nsguard serve`
/// running outside the cluster as its own ServiceAccount, and the shipped webhook
/// configurations registered with only `clientConfig` changed to that server's URL.
struct Suite {
    /// Dropped last (fields drop in order): the nsguard servers go first.
    nsguard: Server,
    /// The kubeconfig with the ServiceAccount's token.
    nsguard_kubeconfig: PathBuf,
    plane: ControlPlane,
}

const RBAC_KINDS: [&str; 6] = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// Labelled as everything the suite creates.
fn labelled(mut object: Value) -> Value {
    object["metadata"]["labels"][E2E] = json!("true");
    object
}

impl Suite {
    fn start(assets: &Path) -> Suite {
        let plane = ControlPlane::start(assets);
        let base = kustomize("manifests/base");
        let install: Vec<Value> = base
            .iter()
            .filter(|o| RBAC_KINDS.contains(&o["kind"].as_str().unwrap_or("")))
            .cloned()
            .map(labelled)
            .collect();
        plane.apply(&install);
        // A token of its own ServiceAccount, as the pod would have.
        let token = text(&plane.ok(&[
            "create",
            "token",
            "nsguard",
            "-n",
            "nsguard-system",
            "--duration=2h",
        ]));
        let nsguard_kubeconfig = plane.dir.path().join("nsguard.kubeconfig");
        kubeconfig(
            &nsguard_kubeconfig,
            &plane.server,
            &plane.ca_pem,
            &format!("    token: {}", token.trim()),
        );
        let nsguard = Server::builder()
            .cluster(Cluster::Kubeconfig(nsguard_kubeconfig.clone()))
            .start();
        let suite = Suite {
            nsguard,
            nsguard_kubeconfig,
            plane,
        };
        suite.register_webhooks(&base);
        suite
    }

    /// The shipped webhook configurations, each webhook's `clientConfig` pointing at the
    /// server under test, nothing else changed.
    fn register_webhooks(&self, objects: &[Value]) {
        let url = format!("https://{}", self.nsguard.addr);
        let configs: Vec<Value> = objects
            .iter()
            .filter(|o| {
                o["kind"] == "ValidatingWebhookConfiguration"
                    || o["kind"] == "MutatingWebhookConfiguration"
            })
            .cloned()
            .map(|mut config| {
                for hook in config["webhooks"].as_array_mut().unwrap() {
                    let path = hook["clientConfig"]["service"]["path"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    hook["clientConfig"] = json!({
                        "url": format!("{url}{path}"),
                        "caBundle": b64(&self.nsguard.certs.ca_cert),
                    });
                }
                labelled(config)
            })
            .collect();
        assert!(!configs.is_empty());
        self.plane.apply(&configs);
    }

    fn namespace_with_stacks(&self, namespace: &str, stacks: &[(&str, &str)]) {
        namespace_with_stacks(&self.plane, namespace, stacks);
    }

    /// Everything labelled `nsguard.dev/e2e=true` deleted, the webhooks first, and nothing
    /// left of it (the Events nsguard wrote in `default` are its output, not the suite's;
    /// they expire with the API server's event TTL).
    fn clean_up(&self) {
        let selector = format!("{E2E}=true");
        // The webhooks first: nothing the suite deletes then waits on nsguard, whose
        // ServiceAccount goes with its namespace.
        self.plane.ok(&[
            "delete",
            "validatingwebhookconfiguration,mutatingwebhookconfiguration",
            "-l",
            &selector,
        ]);
        self.plane.ok(&[
            "delete",
            "namespace,persistentvolume,customresourcedefinition",
            "-l",
            &selector,
            "--wait=true",
            "--timeout=90s",
        ]);
        self.plane.ok(&[
            "delete",
            "clusterrole,clusterrolebinding,role,rolebinding",
            "-A",
            "-l",
            &selector,
        ]);
        let left = self.plane.get(&[
            "namespace,persistentvolume,customresourcedefinition,validatingwebhookconfiguration,clusterrole,clusterrolebinding,role,rolebinding",
            "-A",
            "-l",
            &selector,
        ]);
        assert_eq!(left.unwrap()["items"], json!([]), "left behind");
    }
}

/// A namespace labelled for the suite, with objects of the given stacks: for each
/// (app-name, env), a ConfigMap named after the app.
fn namespace_with_stacks(plane: &ControlPlane, namespace: &str, stacks: &[(&str, &str)]) {
    let mut objects = vec![labelled(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}
    }))];
    for (app, env) in stacks {
        objects.push(labelled(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{app}-config"), "namespace": namespace,
                "labels": stack_labels(app, env, None)},
            "data": {"k": "v"}
        })));
    }
    plane.apply(&objects);
}

fn stack_labels(app: &str, env: &str, parent_env: Option<&str>) -> Value {
    let mut labels = json!({
        "simple-container-com/app-name": app,
        "simple-container-com/env": env,
        "simple-container-com/app-type": "simple-container",
        E2E: "true",
    });
    if let Some(parent) = parent_env {
        labels["simple-container-com/parent-env"] = json!(parent);
        labels["simple-container-com/custom-stack"] = json!("true");
    }
    labels
}

// ------------------------------------------------------------------ scenarios

const SHARED: &str = "e2e-shared";

/// Through the real admission chain: kubectl's delete of a namespace holding two stacks
/// is refused by the shipped webhook, dry run and real alike, naming both owners; the
/// namespace stays.
fn a_shared_namespace_delete_is_refused_real_and_dry_run(suite: &Suite) {
    suite.namespace_with_stacks(
        SHARED,
        &[("e2e-shop", "production"), ("e2e-billing", "production")],
    );
    for dry_run in [true, false] {
        let mut args = vec!["delete", "namespace", SHARED, "--wait=false"];
        if dry_run {
            args.push("--dry-run=server");
        }
        let out = suite.plane.kubectl(&args);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} was allowed");
        for needle in [
            r#"admission webhook "namespace-guard.nsguard.dev" denied the request"#,
            "e2e-shop/production",
            "e2e-billing/production",
            "kubectl annotate namespace e2e-shared nsguard.dev/allow-delete=true",
        ] {
            assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
        }
    }
    let namespace = suite.plane.get(&["namespace", SHARED]).unwrap();
    assert_eq!(namespace["status"]["phase"], "Active");
    assert!(namespace["metadata"].get("deletionTimestamp").is_none());
}

/// The refused real delete left one Warning Event on the Namespace, written by nsguard as
/// its own ServiceAccount under the shipped RBAC; `kubectl events --for namespace/NS`
/// shows it (`kubectl describe namespace` shows no Events for any namespace: kubectl's
/// Namespace describer reads only the namespace, its quotas and limit ranges, as its
/// request log shows). The dry run left none.
fn the_refusal_is_a_warning_event_kubectl_events_shows(suite: &Suite) {
    let for_namespace = format!("namespace/{SHARED}");
    let args = ["events", "-n", "default", "--for", &for_namespace];
    let shown = poll(Duration::from_secs(30), || {
        let shown = text(&suite.plane.kubectl(&args).stdout);
        shown.contains("DeleteDenied").then_some(shown)
    })
    .unwrap_or_else(|| {
        panic!(
            "no DeleteDenied Event in kubectl {args:?}; nsguard logged: {:#?}",
            suite.nsguard.logs()
        )
    });
    let line = shown.lines().find(|l| l.contains("DeleteDenied")).unwrap();
    for needle in [
        "Warning",
        &format!("Namespace/{SHARED}"),
        "delete requested by nsguard-e2e-admin refused",
        "holds objects of 2 stacks",
        // The whole denial on the one line.
        "e2e-billing/production",
        "e2e-shop/production",
        "kubectl annotate namespace e2e-shared nsguard.dev/allow-delete=true",
    ] {
        assert!(line.contains(needle), "{needle:?} not in {line:?}\n{shown}");
    }
    // What describe shows, so the README says the truth about it.
    let described = text(&suite.plane.ok(&["describe", "namespace", SHARED]));
    assert!(
        !described.contains("Events"),
        "kubectl describe shows Events now:\n{described}"
    );
    let events = suite
        .plane
        .get(&[
            "events.v1.events.k8s.io",
            "-n",
            "default",
            "--field-selector",
            "reason=DeleteDenied",
        ])
        .unwrap();
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{events:#}");
    assert_eq!(items[0]["regarding"]["name"], SHARED);
    assert!(
        items[0].get("series").is_none(),
        "the dry run was counted: {:#}",
        items[0]
    );
    assert!(
        !suite
            .nsguard
            .logs()
            .iter()
            .any(|l| l.contains("could not write the Event")),
        "{:#?}",
        suite.nsguard.logs()
    );
}

/// A namespace with one stack: the delete is allowed, and the namespace controller
/// empties it and removes it.
fn an_allowed_delete_is_emptied_by_the_namespace_controller(suite: &Suite) {
    let namespace = "e2e-single";
    suite.namespace_with_stacks(namespace, &[("e2e-lone", "production")]);
    suite
        .plane
        .ok(&["delete", "namespace", namespace, "--wait=false"]);
    eventually("the namespace gone", Duration::from_secs(90), || {
        suite
            .plane
            .get(&["namespace", namespace])
            .is_none()
            .then_some(())
    });
    let left = suite
        .plane
        .get(&["configmap", "-n", namespace, "e2e-lone-config"]);
    assert!(left.is_none(), "{left:?}");
}

/// nsguard's own lookup, in process, as its ServiceAccount (the shipped RBAC).
fn lookup(suite: &Suite, runtime: &tokio::runtime::Runtime) -> nsguard::cluster::LiveCluster {
    runtime.block_on(async {
        let config = kube_config(&suite.nsguard_kubeconfig).await;
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(nsguard::cluster::live::client_config(config)).unwrap();
        nsguard::cluster::LiveCluster::new(
            client,
            server,
            nsguard::simple_container::labels::LabelScheme::default(),
            nsguard::cluster::LiveOptions::default(),
        )
    })
}

/// On 1.36, which serves aggregated discovery: one decision is the two discovery roots
/// plus one list per type, every type listable under the shipped RBAC; and a CRD
/// established a moment ago is counted at once: an object of a second stack in it makes
/// the delete refused, by the lookup and through the webhook, three CRDs in a row.
fn a_type_created_a_moment_ago_is_counted_in_types_plus_two_calls(suite: &Suite) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = lookup(suite, &runtime);
    for i in 0..3 {
        let namespace = format!("e2e-fresh-{i}");
        suite.namespace_with_stacks(&namespace, &[("e2e-fresh", "production")]);
        let scan = runtime
            .block_on(cluster.scan(&namespace, Duration::from_secs(10)))
            .unwrap();
        assert!(scan.unverified.is_empty(), "{:?}", scan.unverified);
        assert_eq!(
            scan.api_calls,
            2 + scan.resource_types,
            "two discovery calls and one list per type"
        );
        let types = scan.resource_types;

        let group = format!("g{i}.e2e.nsguard.dev");
        suite.plane.apply(&[labelled(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("gadgets.{group}")},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true}}}]}
        }))]);
        suite.plane.ok(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/gadgets.{group}"),
            "--timeout=30s",
        ]);
        // The CRD's read-only role for `view`, as operators publish it: the shipped
        // lookup ClusterRole aggregates it.
        suite.plane.apply(&[labelled(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("e2e-gadgets-{i}-view"),
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [{"apiGroups": [group], "resources": ["gadgets"], "verbs": ["get", "list", "watch"]}]
        }))]);
        let resource = format!("gadgets.{group}");
        eventually(
            "nsguard may list the Gadgets",
            Duration::from_secs(30),
            || {
                let out = suite.plane.kubectl(&[
                    "auth",
                    "can-i",
                    "list",
                    &resource,
                    "--as=system:serviceaccount:nsguard-system:nsguard",
                    "-n",
                    &namespace,
                ]);
                (text(&out.stdout).trim() == "yes").then_some(())
            },
        );
        // Created as soon as the API server takes it.
        let gadget = json!({"apiVersion": format!("{group}/v1"), "kind": "Gadget",
            "metadata": {"name": "intruder", "namespace": namespace,
                "labels": stack_labels("e2e-intruder", "production", None)}});
        eventually("the Gadget created", Duration::from_secs(30), || {
            let list = json!({"apiVersion": "v1", "kind": "List", "items": [gadget]});
            suite
                .plane
                .kubectl_with(&["create", "-f", "-"], Some(&list.to_string()))
                .status
                .success()
                .then_some(())
        });
        let out = suite
            .plane
            .kubectl(&["delete", "namespace", &namespace, "--dry-run=server"]);
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "allowed with a Gadget of another stack inside"
        );
        assert!(
            stderr.contains("e2e-intruder/production") && stderr.contains("Gadget"),
            "{stderr}"
        );
        let scan = runtime
            .block_on(cluster.scan(&namespace, Duration::from_secs(10)))
            .unwrap();
        assert_eq!(scan.resource_types, types + 1);
        assert_eq!(scan.api_calls, 2 + scan.resource_types);
    }
}

/// The PolicyReport CRD, from the schema the published CRDs agree on (tests/data/crds):
/// the API server then checks every report nsguard writes against it.
fn policy_report_crd() -> Value {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("tests/data/crds/policyreport-v1alpha2.json")).unwrap(),
    )
    .unwrap();
    labelled(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "policyreports.wgpolicyk8s.io"},
        "spec": {
            "group": "wgpolicyk8s.io",
            "names": {"kind": "PolicyReport", "listKind": "PolicyReportList",
                "plural": "policyreports", "singular": "policyreport", "shortNames": ["polr"]},
            "scope": "Namespaced",
            "versions": [{"name": "v1alpha2", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": schema["openAPIV3Schema"]}}]
        }
    }))
}

fn metric(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Two `serve` processes with the background audit and the policy-reports overlay's
/// RBAC: exactly one holds the Lease, and only that one writes PolicyReports, which the
/// API server accepted against the CRD's schema.
fn two_replicas_one_lease_holder_one_policy_report_writer(suite: &Suite) {
    suite.plane.apply(&[policy_report_crd()]);
    suite.plane.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/policyreports.wgpolicyk8s.io",
        "--timeout=30s",
    ]);
    let overlay: Vec<Value> = kustomize("manifests/overlays/policy-reports")
        .into_iter()
        .filter(|o| o["metadata"]["name"] == "nsguard-policy-reports")
        .map(labelled)
        .collect();
    assert_eq!(overlay.len(), 2, "the overlay's ClusterRole and binding");
    suite.plane.apply(&overlay);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let replica = |identity: &str| {
        Server::builder()
            .cluster(Cluster::Kubeconfig(suite.nsguard_kubeconfig.clone()))
            .args(&[
                "--audit-interval=2s",
                "--write-policy-reports",
                "--lease-namespace=nsguard-system",
                &format!("--lease-identity={identity}"),
                "--lease-duration=3s",
            ])
            .start()
    };
    let replicas = [replica("e2e-replica-a"), replica("e2e-replica-b")];
    let report = eventually(
        "the PolicyReport of e2e-shared",
        Duration::from_secs(60),
        || {
            suite
                .plane
                .get(&["policyreports.wgpolicyk8s.io", "-n", SHARED, "nsguard"])
        },
    );
    assert!(
        report["results"].as_array().is_some_and(|r| !r.is_empty()),
        "{report:#}"
    );
    let lease = suite
        .plane
        .get(&["lease", "-n", "nsguard-system", "nsguard-audit"])
        .unwrap();
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap().to_owned();
    // Two more audits, then count each replica's writes and leadership.
    std::thread::sleep(Duration::from_secs(5));
    let mut leaders = 0;
    let mut writers = Vec::new();
    for (identity, server) in ["e2e-replica-a", "e2e-replica-b"].iter().zip(&replicas) {
        let exposition = runtime.block_on(server.metrics());
        let leader = metric(&exposition, "nsguard_audit_leader ");
        let created = metric(
            &exposition,
            "nsguard_policy_report_writes_total{result=\"applied\"}",
        );
        if leader == 1.0 {
            leaders += 1;
            assert!(
                holder.starts_with(identity),
                "{holder} holds the Lease, {identity} leads"
            );
        }
        if created > 0.0 {
            writers.push(*identity);
        }
    }
    assert_eq!(leaders, 1, "one leader");
    assert_eq!(writers.len(), 1, "one writer: {writers:?}");
    assert!(holder.starts_with(writers[0]), "{holder} vs {writers:?}");
    drop(replicas);
}

/// A stateful sub-env in its parent's namespace, as simple-container made it before
/// 2026.5.8: a claim `data` on a `Delete` hostPath volume holding a file, and the
/// Deployment that mounts it.
struct StatefulSubEnv {
    parent: &'static str,
    target: &'static str,
    app: &'static str,
    env: &'static str,
    volume: &'static str,
    /// The volume's directory, where the data file is.
    dir: PathBuf,
}

/// The data file on every volume, and what it holds.
const LEDGER: (&str, &str) = ("ledger.txt", "every byte of the sub-env\n");

impl StatefulSubEnv {
    /// Applied: the volume (its file written), the parent's namespace with a ConfigMap of
    /// the parent stack, the claim (Bound by the PV controller) and the Deployment.
    fn set_up(
        plane: &ControlPlane,
        parent: &'static str,
        app: &'static str,
        env: &'static str,
        volume: &'static str,
    ) -> StatefulSubEnv {
        let dir = plane.dir.path().join("volumes").join(volume);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(LEDGER.0), LEDGER.1).unwrap();
        let sub_env = StatefulSubEnv {
            parent,
            target: app,
            app,
            env,
            volume,
            dir,
        };
        plane.apply(&[
            labelled(json!({"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": volume},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "e2e-hostpath",
                    "hostPath": {"path": sub_env.dir.display().to_string(), "type": "Directory"}}})),
            labelled(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": parent}})),
            labelled(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{parent}-config"), "namespace": parent,
                    "labels": stack_labels(parent, "production", None)}})),
            sub_env.claim(parent),
            sub_env.deployment(parent),
        ]);
        let bound = eventually("the old claim Bound", Duration::from_secs(60), || {
            sub_env.bound(plane, parent)
        });
        assert_eq!(bound, volume);
        sub_env
    }

    /// The sub-env's own namespace created: a move under way (simple-container's first
    /// step once the Namespace is forgotten in its Pulumi state).
    fn make_target(&self, plane: &ControlPlane) {
        plane.apply(&[labelled(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.target}}),
        )]);
    }

    fn claim(&self, namespace: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": namespace,
                "labels": stack_labels(self.app, self.env, Some("production"))},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "e2e-hostpath",
                "resources": {"requests": {"storage": "1Gi"}}}
        })
    }

    fn deployment(&self, namespace: &str) -> Value {
        let app = self.app;
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": app, "namespace": namespace,
                "labels": stack_labels(app, self.env, Some("production"))},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app}},
                "template": {"metadata": {"labels": {"app": app}}, "spec": {
                    "terminationGracePeriodSeconds": 1,
                    // On a node, the node's own pause image (nothing is ever pulled).
                    "containers": [{"name": "app", "image": "localhost/kube-node/pause:1.0",
                        "imagePullPolicy": "Never",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}
        })
    }

    /// The volume the claim `namespace/data` is Bound to.
    fn bound(&self, plane: &ControlPlane, namespace: &str) -> Option<Value> {
        let claim = plane.get(&["pvc", "-n", namespace, "data"])?;
        (claim["status"]["phase"] == "Bound").then(|| claim["spec"]["volumeName"].clone())
    }

    fn stack(&self) -> String {
        format!("{}/{}", self.app, self.env)
    }

    fn data_intact(&self) {
        assert_eq!(
            std::fs::read_to_string(self.dir.join(LEDGER.0)).unwrap(),
            LEDGER.1,
            "the data"
        );
    }
}

/// `kubectl ARGS` as the admin, refused by the volume guard: a 409 Conflict whose message
/// holds every one of `needles`. Returns the message.
fn refused_by_the_volume_guard(
    plane: &ControlPlane,
    args: &[&str],
    stdin: Option<&str>,
    needles: &[&str],
) -> String {
    let out = plane.kubectl_with(args, stdin);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "kubectl {args:?} went through: {}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains("Error from server (Conflict)")
            && stderr.contains("admission webhook \"volume-guard.nsguard.dev\" denied the request"),
        "kubectl {args:?}: {stderr}"
    );
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    stderr
}

/// The plain move of a stateful sub-env through the shipped webhooks, as simple-container
/// 2026.5.12+ runs it once the Namespace is forgotten in the Pulumi state but without
/// `nsguard migrate plan`: the new namespace is created, then the claim there is refused
/// (real and `--dry-run=server` alike, 409, naming the old claim, the volume, its policy
/// and the plan), so the update stops before any delete. Deleting the old claim by hand
/// while the new namespace exists is refused too. Each real refusal is a Warning Event
/// `kubectl events --for pvc/data` shows, in the claim's namespace. The volume stays Bound
/// to the old claim and its file is intact. Then the teardown (the new namespace gone):
/// the old claim's delete is allowed.
fn a_plain_move_is_refused_at_its_first_step_and_loses_nothing(suite: &Suite) {
    let plane = &suite.plane;
    let sub_env = StatefulSubEnv::set_up(
        plane,
        "e2e-store",
        "e2e-store-tenant-b",
        "tenant-b",
        "e2e-store-data",
    );
    let (parent, target) = (sub_env.parent, sub_env.target);
    sub_env.make_target(plane);
    let claim = sub_env.claim(target).to_string();
    let plan = format!("`nsguard migrate plan --stack {}`", sub_env.stack());
    let create_needles = [
        &format!("refusing to create claim {target}/data") as &str,
        &format!("claim {parent}/data (volume {})", sub_env.volume),
        "new, empty volume",
        &format!(
            "destroys volume {} and the data on it (reclaim policy Delete)",
            sub_env.volume
        ),
        &plan,
    ];
    for dry_run in [true, false] {
        let mut args = vec!["create", "-f", "-"];
        if dry_run {
            args.push("--dry-run=server");
        }
        refused_by_the_volume_guard(plane, &args, Some(&claim), &create_needles);
    }
    assert!(plane.get(&["pvc", "-n", target, "data"]).is_none());
    // The CLI's answer is the webhook's, word for word after kubectl's prefix.
    let file = plane.dir.path().join("store-claim.json");
    std::fs::write(&file, &claim).unwrap();
    let cli = nsguard_as_admin(plane, &["can-create-claim", "-f", file.to_str().unwrap()]);
    assert_eq!(cli.status.code(), Some(1), "{}", text(&cli.stderr));
    let webhook = refused_by_the_volume_guard(
        plane,
        &["create", "-f", "-", "--dry-run=server"],
        Some(&claim),
        &create_needles,
    );
    let said = text(&cli.stdout);
    assert!(
        webhook.contains(said.trim()),
        "CLI: {said}\nwebhook: {webhook}"
    );
    let delete_needles = [
        &format!("refusing to delete claim {parent}/data") as &str,
        &format!("moving to namespace {target}"),
        &plan,
    ];
    for dry_run in [true, false] {
        let mut args = vec!["delete", "pvc", "-n", parent, "data", "--wait=false"];
        if dry_run {
            args.push("--dry-run=server");
        }
        refused_by_the_volume_guard(plane, &args, None, &delete_needles);
    }
    assert_eq!(sub_env.bound(plane, parent), Some(json!(sub_env.volume)));
    let volume = plane.get(&["pv", sub_env.volume]).unwrap();
    assert_eq!(volume["status"]["phase"], "Bound");
    sub_env.data_intact();

    // One Warning Event per real refusal, where `kubectl events` looks for the claim.
    for (namespace, reason, needle) in [
        (
            target,
            "CreateDenied",
            "create requested by nsguard-e2e-admin refused",
        ),
        (
            parent,
            "DeleteDenied",
            "delete requested by nsguard-e2e-admin refused",
        ),
    ] {
        let args = ["events", "-n", namespace, "--for", "pvc/data"];
        let shown = poll(Duration::from_secs(30), || {
            let shown = text(&plane.kubectl(&args).stdout);
            shown.contains(reason).then_some(shown)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {reason} Event in kubectl {args:?}; nsguard logged: {:#?}",
                suite.nsguard.logs()
            )
        });
        let line = shown.lines().find(|l| l.contains(reason)).unwrap();
        for needle in ["Warning", "PersistentVolumeClaim/data", needle, &plan] {
            assert!(line.contains(needle), "{needle:?} not in {line:?}\n{shown}");
        }
        let events = plane
            .get(&[
                "events.v1.events.k8s.io",
                "-n",
                namespace,
                "--field-selector",
                &format!("reason={reason}"),
            ])
            .unwrap();
        let items = events["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "the dry run wrote none: {events:#}");
        assert!(
            items[0].get("series").is_none(),
            "the dry run was counted: {:#}",
            items[0]
        );
    }
    // The counter, by operation and reason: every review counted, dry runs included.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = runtime.block_on(suite.nsguard.metrics());
    for (operation, reason, count) in [
        ("create", "strands-data", 3.0),
        ("delete", "destroys-data", 2.0),
    ] {
        let series = format!(
            "nsguard_volume_guard_decisions_total{{operation=\"{operation}\",reason=\"{reason}\"}}"
        );
        assert_eq!(metric(&metrics, &series), count, "{series}");
    }

    // The teardown: no namespace to move to, so the old claim's delete goes through.
    plane.ok(&[
        "delete",
        "namespace",
        target,
        "--wait=true",
        "--timeout=60s",
    ]);
    plane.ok(&["delete", "deployment", "-n", parent, sub_env.app]);
    plane.ok(&[
        "delete",
        "pvc",
        "-n",
        parent,
        "data",
        "--wait=true",
        "--timeout=60s",
    ]);
    assert!(plane.get(&["pvc", "-n", parent, "data"]).is_none());
}

/// The namespace controller is refused like anyone: a namespace holding only a moving
/// sub-env (its own namespace exists) may be deleted (one stack), but the controller's
/// delete of the sub-env's claim on a `Delete` volume is refused, so the namespace stays
/// `Terminating`, saying why in its conditions, the volume Bound and its file intact. Kept
/// (`Retain`), the claim goes, and the namespace with it; the volume stays.
fn a_namespace_being_left_keeps_a_moving_sub_envs_volume(suite: &Suite) {
    let plane = &suite.plane;
    let sub_env = StatefulSubEnv::set_up(
        plane,
        "e2e-solo",
        "e2e-solo-tenant-c",
        "tenant-c",
        "e2e-solo-data",
    );
    let parent = sub_env.parent;
    // The sub-env alone in its parent's namespace, its own namespace made (a move begun).
    plane.ok(&[
        "delete",
        "configmap",
        "-n",
        parent,
        &format!("{parent}-config"),
    ]);
    sub_env.make_target(plane);
    plane.ok(&["delete", "namespace", parent, "--wait=false"]);
    let condition = eventually(
        "the namespace controller refused",
        Duration::from_secs(60),
        || {
            let namespace = plane.get(&["namespace", parent])?;
            namespace["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| {
                    c["type"] == "NamespaceDeletionContentFailure"
                        && c["status"] == "True"
                        && c["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("volume-guard.nsguard.dev"))
                })
                .cloned()
        },
    );
    assert!(
        condition["message"]
            .as_str()
            .unwrap()
            .contains(&format!("refusing to delete claim {parent}/data")),
        "{condition:#}"
    );
    let namespace = plane.get(&["namespace", parent]).unwrap();
    assert_eq!(namespace["status"]["phase"], "Terminating");
    assert_eq!(sub_env.bound(plane, parent), Some(json!(sub_env.volume)));
    sub_env.data_intact();
    // The way out the message gives: keep the volume; the controller's next try passes.
    plane.ok(&[
        "patch",
        "pv",
        sub_env.volume,
        "-p",
        r#"{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}"#,
    ]);
    eventually("the namespace gone", Duration::from_secs(120), || {
        plane.get(&["namespace", parent]).is_none().then_some(())
    });
    let volume = plane.get(&["pv", sub_env.volume]).unwrap();
    assert_eq!(volume["status"]["phase"], "Released", "{volume:#}");
    sub_env.data_intact();
}

/// `nsguard migrate plan` end to end with the real PersistentVolume controller and the
/// shipped webhooks: a sub-env claim in its parent's namespace on a `Delete` hostPath
/// volume, `before`; the redeploy of simple-container 2026.5.12+ without the state step
/// (the claim re-created where it was) is refused by the volume guard, the volume still
/// reserved; created anyway past it (the break-glass annotation), the PV controller leaves
/// the reserved volume alone and `after` and `check` stop, naming it; then the redeploy as
/// simple-container does it once the Namespace is forgotten in its Pulumi state (the
/// namespace and the claim created at the new place, allowed: the volume is handed over;
/// the old Deployment deleted), `after`: the new claim is Bound to the old volume and the
/// data file is still there.
fn the_migration_plan_hands_the_volume_over_with_the_pv_controller(suite: &Suite) {
    let plane = &suite.plane;
    let sub_env = StatefulSubEnv::set_up(
        plane,
        "e2e-shop",
        "e2e-shop-tenant-a",
        "tenant-a",
        "e2e-data",
    );
    let (parent, target, app, env) = (sub_env.parent, sub_env.target, sub_env.app, sub_env.env);
    let stack = sub_env.stack();
    let plan = nsguard_as_admin(
        plane,
        &[
            "migrate",
            "plan",
            "--stack",
            &stack,
            "--apply-ready",
            "--restore-reclaim-policy",
        ],
    );
    assert!(
        plan.status.success(),
        "migrate plan: {}",
        text(&plan.stderr)
    );
    let script = plane.dir.path().join("migrate.sh");
    std::fs::write(&script, &plan.stdout).unwrap();
    run_stage(plane, &script, "before");
    let kept = plane.get(&["pv", sub_env.volume]).unwrap();
    assert_eq!(kept["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(kept["spec"]["claimRef"]["namespace"], target, "{kept:#}");
    sub_env.data_intact();

    // First the trap: the redeploy of simple-container 2026.5.12+ without the state step
    // refreshes, finds the claim gone and creates it again where it was: refused.
    refused_by_the_volume_guard(
        plane,
        &["create", "-f", "-"],
        Some(&sub_env.claim(parent).to_string()),
        &[
            &format!("refusing to create claim {parent}/data"),
            &format!("handed over to {target}/data"),
            "Forget its Namespace in its Pulumi state",
        ],
    );
    assert!(plane.get(&["pvc", "-n", parent, "data"]).is_none());
    // Created past the guard all the same, the PV controller does not give it the
    // reserved volume; `after` and `check` stop, naming it.
    let mut anyway = sub_env.claim(parent);
    anyway["metadata"]["annotations"] = json!({"nsguard.dev/allow-delete": "true"});
    plane.apply(&[anyway]);
    let out = Command::new("sh")
        .arg(&script)
        .arg("after")
        .env("KUBECONFIG", &plane.kubeconfig)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "after went on: {stderr}");
    assert!(
        stderr.contains(&format!(
            "nsguard: claim {parent}/data exists again: the redeploy did not move {app}/{env}"
        )),
        "{stderr}"
    );
    let (_, status) = migrate_check(plane, &stack);
    assert_eq!(status[0]["state"], "stuck", "{status:#}");
    assert!(
        status
            .to_string()
            .contains("the redeploy did not move the sub-env"),
        "{status:#}"
    );
    let held = plane.get(&["pv", sub_env.volume]).unwrap();
    assert_eq!(
        held["spec"]["claimRef"]["namespace"], target,
        "still reserved: {held:#}"
    );
    // Not Bound: its delete destroys nothing, and is allowed.
    plane.ok(&["delete", "pvc", "-n", parent, "data", "--wait=true"]);

    // The redeploy, as simple-container 2026.5.12+ does it once the Namespace is forgotten
    // in the Pulumi state: the namespace and every object at the new place (the claim
    // allowed: its volume is handed over), then the old Deployment deleted.
    plane.apply(&[
        labelled(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}})),
        sub_env.claim(target),
        sub_env.deployment(target),
    ]);
    plane.ok(&["delete", "deployment", "-n", parent, app]);
    run_stage(plane, &script, "after");

    let moved = eventually("the new claim Bound", Duration::from_secs(60), || {
        sub_env.bound(plane, target)
    });
    assert_eq!(moved, sub_env.volume, "the new claim is on the old volume");
    let volume = plane.get(&["pv", sub_env.volume]).unwrap();
    assert_eq!(volume["status"]["phase"], "Bound");
    assert_eq!(volume["spec"]["claimRef"]["namespace"], target);
    assert_eq!(
        volume["spec"]["persistentVolumeReclaimPolicy"], "Delete",
        "restored"
    );
    sub_env.data_intact();
    assert!(plane.get(&["pvc", "-n", parent, "data"]).is_none());
    let (done, status) = migrate_check(plane, &stack);
    assert!(done, "migrate check: {status:#}");
}

/// The nsguard CLI with the admin's kubeconfig.
fn nsguard_as_admin(plane: &ControlPlane, args: &[&str]) -> Output {
    let mut full = args.to_vec();
    let kubeconfig = plane.kubeconfig.display().to_string();
    full.extend(["--kubeconfig", &kubeconfig]);
    common::nsguard_cli(&full).output().unwrap()
}

/// `nsguard migrate check --stack STACK -o json` as the admin: whether it said all done
/// (exit 0), and what it said.
fn migrate_check(plane: &ControlPlane, stack: &str) -> (bool, Value) {
    let out = nsguard_as_admin(plane, &["migrate", "check", "--stack", stack, "-o", "json"]);
    let status = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.success(), status)
}

/// `sh migrate.sh STAGE` with real kubectl as the admin, which must succeed.
fn run_stage(plane: &ControlPlane, script: &Path, stage: &str) {
    let out = Command::new("sh")
        .arg(script)
        .arg(stage)
        .env("KUBECONFIG", &plane.kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "migrate.sh {stage}:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
