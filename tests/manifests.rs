//! The install manifests agree with the code and with what a production webhook needs.
//! (Schema validation of the rendered kustomizations runs in .ci/run.)

mod common;

use std::collections::BTreeSet;

use common::repo_path;
use nsguard::labels::LabelScheme;
use serde_json::Value;

fn load(relative: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_path(relative)).unwrap();
    nsguard::documents::parse(&text)
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

fn webhooks(relative: &str) -> Vec<Value> {
    load(relative)[0]["webhooks"].as_array().unwrap().clone()
}

const EXEMPT: [&str; 4] = [
    "kube-system",
    "kube-node-lease",
    "kube-public",
    "nsguard-system",
];

fn assert_common(webhook: &Value, path: &str) {
    let name = webhook["name"].as_str().unwrap();
    assert_eq!(
        webhook["admissionReviewVersions"],
        serde_json::json!(["v1"]),
        "{name}"
    );
    assert_eq!(webhook["sideEffects"], "None", "{name}");
    let timeout = webhook["timeoutSeconds"].as_u64().unwrap();
    assert!(
        (1..=10).contains(&timeout),
        "{name}: timeoutSeconds {timeout}"
    );
    let service = &webhook["clientConfig"]["service"];
    assert_eq!(service["name"], "nsguard", "{name}");
    assert_eq!(service["namespace"], "nsguard-system", "{name}");
    assert_eq!(service["path"], path, "{name}");
    let selector = &webhook["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(selector["key"], "kubernetes.io/metadata.name");
    assert_eq!(selector["operator"], "NotIn");
    let exempt: BTreeSet<&str> = selector["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(exempt, EXEMPT.into_iter().collect(), "{name}");
}

fn parent_env_keys() -> BTreeSet<String> {
    LabelScheme::default()
        .generations()
        .iter()
        .map(|g| g.parent_env.clone())
        .collect()
}

#[test]
fn validating_webhooks_guard_namespaces_fail_closed_and_place_sub_envs_fail_open() {
    let hooks = webhooks("manifests/base/validatingwebhookconfiguration.yaml");
    let guard = &hooks[0];
    assert_common(guard, "/validate");
    assert_eq!(guard["failurePolicy"], "Fail");
    assert_eq!(
        guard["rules"][0]["operations"],
        serde_json::json!(["DELETE"])
    );
    assert_eq!(
        guard["rules"][0]["resources"],
        serde_json::json!(["namespaces"])
    );
    assert!(
        guard.get("objectSelector").is_none(),
        "every namespace must be checked"
    );

    let mut keys = BTreeSet::new();
    for hook in &hooks[1..] {
        assert_common(hook, "/validate");
        assert_eq!(hook["failurePolicy"], "Ignore");
        assert_eq!(
            hook["rules"][0]["operations"],
            serde_json::json!(["CREATE"])
        );
        assert_eq!(hook["rules"][0]["scope"], "Namespaced");
        let selector = &hook["objectSelector"]["matchExpressions"][0];
        assert_eq!(selector["operator"], "Exists");
        keys.insert(selector["key"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        keys,
        parent_env_keys(),
        "one placement webhook per label generation"
    );
}

#[test]
fn the_mutating_overlay_mirrors_the_placement_webhooks() {
    let hooks = webhooks("manifests/overlays/rewrite/mutatingwebhookconfiguration.yaml");
    let keys: BTreeSet<String> = hooks
        .iter()
        .map(|hook| {
            assert_common(hook, "/mutate");
            assert_eq!(hook["failurePolicy"], "Ignore");
            assert_eq!(hook["reinvocationPolicy"], "Never");
            hook["objectSelector"]["matchExpressions"][0]["key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys, parent_env_keys());
}

#[test]
fn the_deployment_is_highly_available_and_locked_down() {
    let deployment = &load("manifests/base/deployment.yaml")[0];
    let spec = &deployment["spec"];
    assert!(spec["replicas"].as_u64().unwrap() >= 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["priorityClassName"],
        load("manifests/base/priorityclass.yaml")[0]["metadata"]["name"]
    );
    assert!(pod["affinity"]["podAntiAffinity"].is_object());
    // Longer than serve's default --shutdown-delay + --shutdown-grace (3s + 20s).
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > 23);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    // Probes on the plain metrics port, which a flood of the webhook port does not reach.
    let metrics_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["containerPort"] == 9090)
        .expect("the metrics port is declared");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(container[probe]["httpGet"]["port"], metrics_port["name"]);
        assert_eq!(container[probe]["httpGet"]["scheme"], "HTTP");
    }
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert!(container["resources"]["requests"]["cpu"].is_string());
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&format!("--tls-cert={mount}/tls.crt").as_str()),
        "{args:?}"
    );
    assert!(
        args.contains(&format!("--tls-key={mount}/tls.key").as_str()),
        "{args:?}"
    );
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "nsguard-tls");

    let pdb = &load("manifests/base/poddisruptionbudget.yaml")[0];
    assert_eq!(pdb["spec"]["minAvailable"], 1);
}

#[test]
fn rbac_only_reads_and_leaves_secrets_out() {
    let objects = load("manifests/base/rbac.yaml");
    for object in objects.iter().filter(|o| o["kind"] == "ClusterRole") {
        for rule in object["rules"].as_array().into_iter().flatten() {
            let verbs = rule["verbs"].as_array().unwrap();
            // list, and get only on Namespaces and PersistentVolumes (neither holds
            // secret data): a read of one object the guard or the audit needs.
            let get_too = rule["resources"] == serde_json::json!(["namespaces"])
                || rule["resources"] == serde_json::json!(["persistentvolumes"]);
            assert!(
                verbs == &[serde_json::json!("list")]
                    || (get_too && verbs == &[serde_json::json!("get"), serde_json::json!("list")]),
                "{rule}"
            );
            let resources = rule["resources"].as_array().unwrap();
            let core = rule["apiGroups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == "" || g == "*");
            assert!(!resources.iter().any(|r| r == "secrets"), "{rule}");
            assert!(
                !(core && resources.iter().any(|r| r == "*")),
                "wildcard on the core group grants Secrets: {rule}"
            );
        }
    }
    // The lookup role aggregates nsguard's own roles and the read-only roles operators
    // publish for `view` (which never include Secrets), so CRDs work without a new role.
    let lookup = objects
        .iter()
        .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "nsguard-lookup")
        .unwrap();
    let selectors = &lookup["aggregationRule"]["clusterRoleSelectors"];
    assert_eq!(
        selectors,
        &serde_json::json!([
            {"matchLabels": {"nsguard.dev/aggregate-to-lookup": "true"}},
            {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}
        ])
    );
}

#[test]
fn the_dockerfile_builds_locked_and_runs_non_root_without_a_shell() {
    let dockerfile = std::fs::read_to_string(repo_path("Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release --locked"));
    let runtime = dockerfile
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .unwrap();
    assert!(
        runtime.contains("distroless") && runtime.contains("nonroot"),
        "{runtime}"
    );
    assert!(dockerfile.lines().any(|l| l.starts_with("USER 65532")));
    assert!(dockerfile.contains("EXPOSE 8443 9090"));
    // Everything the binary embeds is copied into the build stage.
    assert!(dockerfile.contains("COPY examples ./examples"));
}

/// The NetworkPolicy selects nsguard's pods, opens the webhook port (the API server's
/// sources cannot be named by a selector) and the metrics port only to a monitoring
/// namespace; its named ports are the container's; the base installs it.
#[test]
fn the_network_policy_opens_the_webhook_port_and_keeps_metrics_to_monitoring() {
    let policy = &load("manifests/base/networkpolicy.yaml")[0];
    assert_eq!(policy["kind"], "NetworkPolicy");
    let deployment = &load("manifests/base/deployment.yaml")[0];
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in policy["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &pod_labels[key], value,
            "the policy does not select nsguard's pods"
        );
    }
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress"])
    );
    let container_ports: BTreeSet<&str> =
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    let rule_for = |port: &str| {
        rules
            .iter()
            .find(|r| {
                r["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"] == port)
            })
            .unwrap_or_else(|| panic!("no rule for port {port}"))
    };
    for port in ["https", "metrics"] {
        assert!(
            container_ports.contains(port),
            "{port} is not a container port"
        );
    }
    assert!(
        rule_for("https").get("from").is_none(),
        "the API server must reach the webhook port"
    );
    let metrics_from = rule_for("metrics")["from"].as_array().unwrap();
    assert_eq!(metrics_from.len(), 1);
    assert_eq!(
        metrics_from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    let kustomization =
        std::fs::read_to_string(repo_path("manifests/base/kustomization.yaml")).unwrap();
    assert!(kustomization.contains("- networkpolicy.yaml"));
}

/// The shipped Deployment runs the background audit (an interval nsguard parses) on the
/// one replica elected on its Lease; the policy-reports overlay turns on the writes and
/// grants exactly them: nsguard's own PolicyReports, to nsguard's ServiceAccount, nothing
/// else.
#[test]
fn the_audit_runs_in_the_background_and_only_the_overlay_writes_policy_reports() {
    let deployment = &load("manifests/base/deployment.yaml")[0];
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    let interval = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NSGUARD_AUDIT_INTERVAL")
        .unwrap();
    assert_eq!(
        humantime::parse_duration(interval["value"].as_str().unwrap()).unwrap(),
        std::time::Duration::from_secs(600)
    );
    let overlay = std::fs::read_to_string(common::repo_path(
        "manifests/overlays/policy-reports/kustomization.yaml",
    ))
    .unwrap();
    assert!(overlay.contains("name: NSGUARD_WRITE_POLICY_REPORTS\n        value: \"true\""));
    let rbac = load("manifests/overlays/policy-reports/rbac.yaml");
    assert_eq!(
        rbac[0]["rules"],
        serde_json::json!([{"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports"],
            "verbs": ["get", "list", "create", "patch", "delete"]}])
    );
    assert_eq!(
        rbac[1]["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "nsguard", "namespace": "nsguard-system"}])
    );
    // The base grants no write cluster-wide: its only write is its own Lease, in a Role
    // of its namespace, by name wherever the verb allows it.
    let base = load("manifests/base/rbac.yaml");
    for object in &base {
        if object["kind"] == "Role" {
            continue;
        }
        for rule in object["rules"].as_array().into_iter().flatten() {
            assert!(
                !rule["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v == "patch" || v == "create" || v == "delete" || v == "update"),
                "{rule}"
            );
        }
    }
    let lease_role = base.iter().find(|o| o["kind"] == "Role").unwrap();
    assert_eq!(lease_role["metadata"]["namespace"], "nsguard-system");
    assert_eq!(
        lease_role["rules"],
        serde_json::json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                "resourceNames": ["nsguard-audit"], "verbs": ["get", "update", "patch"]}
        ])
    );
    let binding = base.iter().find(|o| o["kind"] == "RoleBinding").unwrap();
    assert_eq!(binding["roleRef"]["name"], "nsguard-audit-lease");
    assert_eq!(binding["metadata"]["namespace"], "nsguard-system");
    assert_eq!(base.iter().filter(|o| o["kind"] == "Role").count(), 1);
    // The Lease lives in the pod's own namespace, named for the pod, from the downward API.
    for (name, field) in [
        ("NSGUARD_LEASE_NAMESPACE", "metadata.namespace"),
        ("NSGUARD_LEASE_IDENTITY", "metadata.name"),
    ] {
        let var = env
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap();
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], field, "{var}");
    }
}

/// Every table of the README and the docs renders as one table, as GitHub's CommonMark
/// reads it: a blank line inside a table ends it, and the rows after it render as plain
/// text with pipes. Each line that starts with `|` outside a code block must be inside a
/// table the parser found, and each table must have its header row.
#[test]
fn markdown_tables_are_whole() {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let mut files = vec![repo_path("README.md"), repo_path("SECURITY.md")];
    for entry in std::fs::read_dir(repo_path("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut tables = Vec::new();
        let mut code = Vec::new();
        let mut in_head = false;
        let mut head_cells = 0;
        for (event, range) in Parser::new_ext(&text, Options::ENABLE_TABLES).into_offset_iter() {
            match event {
                Event::Start(Tag::Table(_)) => tables.push(range),
                Event::Start(Tag::CodeBlock(_)) => code.push(range),
                Event::Start(Tag::TableHead) => {
                    in_head = true;
                    head_cells = 0;
                }
                Event::Start(Tag::TableCell) if in_head => head_cells += 1,
                Event::End(TagEnd::TableHead) => {
                    in_head = false;
                    assert!(
                        head_cells > 0,
                        "{}: a table without a header",
                        path.display()
                    );
                }
                _ => {}
            }
        }
        let mut offset = 0;
        for (number, line) in text.split_inclusive('\n').enumerate() {
            let inside =
                |ranges: &[std::ops::Range<usize>]| ranges.iter().any(|r| r.contains(&offset));
            if line.starts_with('|') && !inside(&code) {
                assert!(
                    inside(&tables),
                    "{}:{}: a table row outside any table (a blank line splits its table?): {}",
                    path.display(),
                    number + 1,
                    line.trim_end()
                );
            }
            offset += line.len();
        }
    }
}
