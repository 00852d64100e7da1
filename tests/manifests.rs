//! The install manifests, as `kubectl kustomize` renders them for users, agree with the
//! code and with what a production webhook needs. (Schema validation of the rendered
//! kustomizations runs in .ci/run.)

mod common;

use std::collections::BTreeSet;

use common::{kustomize, repo_path};
use nsguard::simple_container::labels::LabelScheme;
use serde_json::Value;

/// Every kustomization users install: the base and each overlay.
const KUSTOMIZATIONS: [&str; 6] = [
    "manifests/base",
    "manifests/overlays/cert-manager",
    "manifests/overlays/monitoring",
    "manifests/overlays/placement-policy",
    "manifests/overlays/policy-reports",
    "manifests/overlays/rewrite",
];

/// The objects of `kind` that `kubectl kustomize dir` renders: what is shipped is what
/// kustomize makes of the files, not the files.
fn load(dir: &str, kind: &str) -> Vec<Value> {
    kustomize(dir)
        .into_iter()
        .filter(|o| o["kind"] == kind)
        .collect()
}

fn webhooks(dir: &str, kind: &str) -> Vec<Value> {
    let configs = load(dir, kind);
    assert_eq!(configs.len(), 1, "one {kind} in {dir}");
    configs[0]["webhooks"].as_array().unwrap().clone()
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
    let all = webhooks("manifests/base", "ValidatingWebhookConfiguration");
    let (volume_guard, hooks): (Vec<Value>, Vec<Value>) = all
        .into_iter()
        .partition(|hook| hook["clientConfig"]["service"]["path"] == "/volume-guard");
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

    // The volume guard: sub-env claims only, fail closed, one entry per generation.
    let mut keys = BTreeSet::new();
    for hook in &volume_guard {
        assert_common(hook, "/volume-guard");
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["matchPolicy"], "Equivalent");
        let rules = hook["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0]["operations"],
            serde_json::json!(["CREATE", "DELETE"])
        );
        assert_eq!(rules[0]["apiGroups"], serde_json::json!([""]));
        assert_eq!(
            rules[0]["resources"],
            serde_json::json!(["persistentvolumeclaims"])
        );
        let selector = &hook["objectSelector"]["matchExpressions"];
        assert_eq!(selector.as_array().unwrap().len(), 1);
        assert_eq!(selector[0]["operator"], "Exists");
        keys.insert(selector[0]["key"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        keys,
        parent_env_keys(),
        "one volume-guard webhook per label generation"
    );
}

#[test]
fn the_mutating_overlay_mirrors_the_placement_webhooks() {
    let hooks = webhooks("manifests/overlays/rewrite", "MutatingWebhookConfiguration");
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
    let deployment = &load("manifests/base", "Deployment")[0];
    let spec = &deployment["spec"];
    assert!(spec["replicas"].as_u64().unwrap() >= 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["priorityClassName"],
        load("manifests/base", "PriorityClass")[0]["metadata"]["name"]
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

    let pdb = &load("manifests/base", "PodDisruptionBudget")[0];
    assert_eq!(pdb["spec"]["minAvailable"], 1);
}

/// The RBAC objects `kubectl kustomize dir` renders.
fn rbac(dir: &str) -> Vec<Value> {
    kustomize(dir)
        .into_iter()
        .filter(|o| {
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
            ]
            .contains(&o["kind"].as_str().unwrap())
        })
        .collect()
}

/// As every kustomization renders it (kustomize's namespace transformer moves namespaced
/// objects, so the files alone prove nothing): nsguard reads, never Secrets, and writes
/// only its own Lease in nsguard-system and Events about its refusals, each bound to the
/// ServiceAccount the Deployment runs as.
#[test]
fn rbac_only_reads_and_leaves_secrets_out() {
    for dir in KUSTOMIZATIONS {
        let objects = rbac(dir);
        rbac_of(dir, &objects);
    }
}

fn rbac_of(dir: &str, objects: &[Value]) {
    // The policy-reports overlay's one ClusterRole writes nsguard's PolicyReports
    // (the_audit_runs_in_the_background_and_only_the_overlay_writes_policy_reports);
    // nsguard-events, checked below, writes Events.
    for object in objects.iter().filter(|o| {
        o["kind"] == "ClusterRole"
            && o["metadata"]["name"] != "nsguard-policy-reports"
            && o["metadata"]["name"] != "nsguard-events"
    }) {
        for rule in object["rules"].as_array().into_iter().flatten() {
            let verbs = rule["verbs"].as_array().unwrap();
            // list, and get only on Namespaces and PersistentVolumes (neither holds
            // secret data): a read of one object the guard or the audit needs.
            let get_too = rule["resources"] == serde_json::json!(["namespaces"])
                || rule["resources"] == serde_json::json!(["persistentvolumes"]);
            assert!(
                verbs == &[serde_json::json!("list")]
                    || (get_too && verbs == &[serde_json::json!("get"), serde_json::json!("list")]),
                "{dir}: {rule}"
            );
            let resources = rule["resources"].as_array().unwrap();
            let core = rule["apiGroups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == "" || g == "*");
            assert!(!resources.iter().any(|r| r == "secrets"), "{dir}: {rule}");
            assert!(
                !(core && resources.iter().any(|r| r == "*")),
                "{dir}: wildcard on the core group grants Secrets: {rule}"
            );
        }
    }
    // Its writes: its own Lease (a Role in nsguard-system), and Events about what it
    // refused (create and patch, every namespace: a claim's Events live in its namespace).
    let placed = |kind: &str| -> BTreeSet<(String, String)> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .map(|o| {
                (
                    o["metadata"]["name"].as_str().unwrap().to_owned(),
                    o["metadata"]["namespace"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let expected: BTreeSet<(String, String)> = [("nsguard-audit-lease", "nsguard-system")]
        .into_iter()
        .map(|(n, ns)| (n.to_owned(), ns.to_owned()))
        .collect();
    assert_eq!(placed("Role"), expected, "{dir}");
    assert_eq!(placed("RoleBinding"), expected, "{dir}");
    for binding in objects.iter().filter(|o| o["kind"] == "RoleBinding") {
        assert_eq!(binding["roleRef"]["kind"], "Role", "{dir}");
        assert_eq!(
            binding["roleRef"]["name"], binding["metadata"]["name"],
            "{dir}"
        );
    }
    let events = objects
        .iter()
        .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "nsguard-events")
        .unwrap();
    assert_eq!(
        events["rules"],
        serde_json::json!([{"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}]),
        "{dir}"
    );
    let binding = objects
        .iter()
        .find(|o| o["kind"] == "ClusterRoleBinding" && o["metadata"]["name"] == "nsguard-events")
        .unwrap();
    assert_eq!(
        binding["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "nsguard-events"}),
        "{dir}"
    );
    // Every binding names the one ServiceAccount the Deployment runs as, where it is.
    let deployment = &load(dir, "Deployment")[0];
    let account = (
        deployment["spec"]["template"]["spec"]["serviceAccountName"].clone(),
        deployment["metadata"]["namespace"].clone(),
    );
    assert_eq!(
        account,
        (
            serde_json::json!("nsguard"),
            serde_json::json!("nsguard-system")
        ),
        "{dir}"
    );
    assert!(
        objects.iter().any(|o| o["kind"] == "ServiceAccount"
            && (
                o["metadata"]["name"].clone(),
                o["metadata"]["namespace"].clone()
            ) == account),
        "{dir}: the ServiceAccount"
    );
    for binding in objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
    {
        assert_eq!(
            binding["subjects"],
            serde_json::json!([{"kind": "ServiceAccount", "name": "nsguard", "namespace": "nsguard-system"}]),
            "{dir}: {}",
            binding["metadata"]["name"]
        );
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
        ]),
        "{dir}"
    );
    // Its rules are the aggregation controller's: a manifest that names them (even `[]`)
    // makes every `kubectl apply` reset them, and the lookups fail until they are refilled.
    assert!(
        lookup.get("rules").is_none(),
        "{dir}: nsguard-lookup sets rules: {}",
        lookup["rules"]
    );
}

/// The test above can fail: Events granted by a Role in `default` only (what the base had
/// before the volume guard, whose Events live in each claim's namespace) are refused.
#[test]
fn the_rbac_check_refuses_events_granted_in_one_namespace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_path("manifests/base/deployment.yaml"),
        dir.path().join("deployment.yaml"),
    )
    .unwrap();
    let rbac_yaml = std::fs::read_to_string(repo_path("manifests/base/rbac.yaml")).unwrap();
    let narrowed = rbac_yaml
        .replace(
            "kind: ClusterRole\nmetadata:\n  name: nsguard-events\n",
            "kind: Role\nmetadata:\n  name: nsguard-events\n  namespace: default\n",
        )
        .replace(
            "kind: ClusterRoleBinding\nmetadata:\n  name: nsguard-events\n",
            "kind: RoleBinding\nmetadata:\n  name: nsguard-events\n  namespace: default\n",
        )
        .replace(
            "  kind: ClusterRole\n  name: nsguard-events\n",
            "  kind: Role\n  name: nsguard-events\n",
        );
    assert_ne!(
        narrowed, rbac_yaml,
        "rbac.yaml changed shape: update this test"
    );
    std::fs::write(dir.path().join("rbac.yaml"), narrowed).unwrap();
    std::fs::copy(
        repo_path("manifests/base/kustomization.yaml"),
        dir.path().join("kustomization.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        std::fs::read_to_string(dir.path().join("kustomization.yaml"))
            .unwrap()
            .lines()
            .take_while(|l| *l != "resources:")
            .chain(["resources:", "- rbac.yaml", "- deployment.yaml"])
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let dir = dir.path().to_str().unwrap();
    let objects = rbac(dir);
    let refused = std::panic::catch_unwind(|| rbac_of(dir, &objects)).unwrap_err();
    let message = refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains(r#"("nsguard-events", "default")"#),
        "{message}"
    );
}

/// The image builds anywhere its two base images can be had (a registry mirror through the
/// build args): nothing else is fetched (no `# syntax=` frontend image) and no BuildKit-only
/// instruction is used, so the classic builder builds it too. `tests/image.sh` builds its
/// context; this checks what that cannot: the runtime stage.
#[test]
fn the_dockerfile_builds_locked_and_runs_non_root_without_a_shell() {
    let dockerfile = std::fs::read_to_string(repo_path("Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(
        !dockerfile.contains("# syntax="),
        "a syntax line makes every build fetch a frontend image"
    );
    assert!(
        !dockerfile.contains("--mount="),
        "RUN --mount needs BuildKit"
    );
    let arg = |name: &str| {
        dockerfile
            .lines()
            .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("no ARG {name}= default"))
            .to_owned()
    };
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        froms,
        ["FROM ${RUST_IMAGE} AS build", "FROM ${RUNTIME_IMAGE}"]
    );
    let runtime = arg("RUNTIME_IMAGE");
    assert!(
        runtime.contains("distroless") && runtime.ends_with(":nonroot"),
        "{runtime}"
    );
    assert!(arg("RUST_IMAGE").starts_with("rust:"));
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
    let policy = &load("manifests/base", "NetworkPolicy")[0];
    assert_eq!(policy["kind"], "NetworkPolicy");
    let deployment = &load("manifests/base", "Deployment")[0];
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
    let deployment = &load("manifests/base", "Deployment")[0];
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
    let overlay = "manifests/overlays/policy-reports";
    let writes =
        &load(overlay, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        writes.as_array().unwrap().contains(
            &serde_json::json!({"name": "NSGUARD_WRITE_POLICY_REPORTS", "value": "true"})
        ),
        "{writes}"
    );
    let named = |kind: &str, name: &str| {
        load(overlay, kind)
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} in {overlay}"))
    };
    assert_eq!(
        named("ClusterRole", "nsguard-policy-reports")["rules"],
        serde_json::json!([{"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports"],
            "verbs": ["get", "list", "create", "patch", "delete"]}])
    );
    assert_eq!(
        named("ClusterRoleBinding", "nsguard-policy-reports")["roleRef"]["name"],
        "nsguard-policy-reports"
    );
    // The base writes no object but its own: its Lease, in a Role of its namespace, by
    // name wherever the verb allows it, and the Events of its refusals (checked in
    // rbac_only_reads_and_leaves_secrets_out).
    let base = rbac("manifests/base");
    for object in &base {
        if object["kind"] == "Role" || object["metadata"]["name"] == "nsguard-events" {
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
    let lease_role = base
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "nsguard-audit-lease")
        .unwrap();
    assert_eq!(lease_role["metadata"]["namespace"], "nsguard-system");
    assert_eq!(
        lease_role["rules"],
        serde_json::json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                "resourceNames": ["nsguard-audit"], "verbs": ["get", "update", "patch"]}
        ])
    );
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

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// Run a tool (promtool) and return its output; it must be on the PATH (tests/run.sh installs
/// Debian's prometheus package).
fn run_tool(tool: &str, args: &[&str], dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{tool} on the PATH (tests/run.sh installs it): {e}"))
}

/// promtool with `args` in `dir`, which must succeed: its standard output.
fn promtool(args: &[&str], dir: &std::path::Path) -> String {
    let out = run_tool("promtool", args, dir);
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The monitoring overlay renders; its ServiceMonitor and PrometheusRule validate against
/// the published CRD schemas (tests/data/crds); the ServiceMonitor selects the Service's
/// metrics port; every alert has a severity and a runbook_url whose section exists in
/// docs/runbook.md, and every section there is an alert's; the dashboard ConfigMap is
/// labelled for the Grafana sidecar and holds docs/grafana-dashboard.json.
#[test]
fn the_monitoring_overlay_validates_and_every_alert_has_its_runbook() {
    let objects = kustomize("manifests/overlays/monitoring");
    for (kind, schema) in [
        ("ServiceMonitor", "tests/data/crds/servicemonitor-v1.json"),
        ("PrometheusRule", "tests/data/crds/prometheusrule-v1.json"),
    ] {
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(repo_path(schema)).unwrap()).unwrap();
        let object = of_kind(&objects, kind);
        let violations = common::schema::violations(&schema["openAPIV3Schema"], object);
        assert!(violations.is_empty(), "{kind}: {violations:?}");
        assert_eq!(object["metadata"]["namespace"], "nsguard-system");
    }
    // The checker can fail: a rule without expr, a ServiceMonitor with an unknown scheme.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("tests/data/crds/prometheusrule-v1.json")).unwrap(),
    )
    .unwrap();
    let mut broken = of_kind(&objects, "PrometheusRule").clone();
    broken["spec"]["groups"][0]["rules"][0]
        .as_object_mut()
        .unwrap()
        .remove("expr");
    broken["spec"]["groups"][0]["rules"][1]["for"] = "15 minutes".into();
    assert_eq!(
        common::schema::violations(&schema["openAPIV3Schema"], &broken).len(),
        2
    );

    let service = of_kind(&objects, "Service");
    let monitor = of_kind(&objects, "ServiceMonitor");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][key], value, "{service}");
    }
    let port = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == port && p["port"] == 9090),
        "{service}"
    );

    let runbook = std::fs::read_to_string(repo_path("docs/runbook.md")).unwrap();
    let sections: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let rules = &of_kind(&objects, "PrometheusRule")["spec"]["groups"][0]["rules"];
    let mut alerts = BTreeSet::new();
    for rule in rules.as_array().unwrap() {
        let alert = rule["alert"].as_str().unwrap();
        alerts.insert(alert.to_lowercase());
        assert!(
            ["critical", "warning", "info"].contains(&rule["labels"]["severity"].as_str().unwrap()),
            "{rule}"
        );
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        assert_eq!(url, format!("docs/runbook.md#{}", alert.to_lowercase()));
        assert!(rule["annotations"]["summary"].is_string(), "{rule}");
    }
    assert_eq!(alerts, sections, "alerts and runbook sections differ");
    assert_eq!(alerts.len(), 13);

    let dashboard = of_kind(&objects, "ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped = std::fs::read_to_string(repo_path("docs/grafana-dashboard.json")).unwrap();
    assert_eq!(dashboard["data"]["nsguard.json"].as_str().unwrap(), shipped);
    let json: Value = serde_json::from_str(&shipped).unwrap();
    assert_eq!(json["uid"], "nsguard");
}

/// The PrometheusRule's spec, as a Prometheus rules file.
fn rules_file(dir: &std::path::Path) {
    let objects = kustomize("manifests/overlays/monitoring");
    let spec = &of_kind(&objects, "PrometheusRule")["spec"];
    std::fs::write(dir.join("rules.json"), spec.to_string()).unwrap();
}

/// promtool accepts the rules, and its unit tests (tests/data/monitoring/alerts.test.yaml)
/// fire and do not fire each alert; every alert has a test where it fires. A rule that
/// does not parse, and an expectation that does not hold, make promtool fail.
#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = tempfile::tempdir().unwrap();
    rules_file(dir.path());
    let tests =
        std::fs::read_to_string(repo_path("tests/data/monitoring/alerts.test.yaml")).unwrap();
    std::fs::write(dir.path().join("alerts.test.yaml"), &tests).unwrap();
    let checked = promtool(&["check", "rules", "rules.json"], dir.path());
    assert!(checked.contains("SUCCESS: 13 rules found"), "{checked}");
    promtool(&["test", "rules", "alerts.test.yaml"], dir.path());
    // Every alert fires in some test.
    let unit: Value = nsguard::documents::parse(&tests).unwrap().remove(0).value;
    let rules: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("rules.json")).unwrap())
            .unwrap();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let alert = &rule["alert"];
        let fires = unit["tests"].as_array().unwrap().iter().any(|t| {
            t["alert_rule_test"].as_array().unwrap().iter().any(|a| {
                &a["alertname"] == alert && !a["exp_alerts"].as_array().unwrap().is_empty()
            })
        });
        assert!(fires, "no test where {alert} fires");
    }
    // promtool can fail: a wrong expectation, and a rule that does not parse.
    std::fs::write(
        dir.path().join("alerts.test.yaml"),
        tests.replace("'Only 1 nsguard replica(s)", "'Only 2 nsguard replica(s)"),
    )
    .unwrap();
    let out = run_tool(
        "promtool",
        &["test", "rules", "alerts.test.yaml"],
        dir.path(),
    );
    assert!(!out.status.success());
    std::fs::write(
        dir.path().join("rules.json"),
        r#"{"groups":[{"name":"x","rules":[{"alert":"X","expr":"sum(("}]}]}"#,
    )
    .unwrap();
    let out = run_tool("promtool", &["check", "rules", "rules.json"], dir.path());
    assert!(!out.status.success());
}

/// Each expression of the dashboard, Grafana's variables replaced as Grafana would.
pub fn dashboard_expressions() -> Vec<String> {
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("docs/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$job", "nsguard")
        })
        .collect()
}

/// Every dashboard expression parses (promtool, as recording rules) and names only
/// metrics nsguard exports (the families a running server exposes, with their `_total`,
/// `_bucket` series).
#[test]
fn the_dashboard_expressions_parse_and_name_only_nsguard_metrics() {
    let expressions = dashboard_expressions();
    assert!(expressions.len() >= 12);
    let rules: Vec<Value> = expressions
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"record": format!("dashboard:panel_{i}"), "expr": e}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dashboard.json"),
        serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .unwrap();
    promtool(&["check", "rules", "dashboard.json"], dir.path());
    let exported = exported_series();
    let names = regex::Regex::new(r"\b(nsguard_[a-z_]+)").unwrap();
    for expression in &expressions {
        for name in names.captures_iter(expression) {
            assert!(
                exported.contains(&name[1]),
                "{} in {expression} is not exported",
                &name[1]
            );
        }
    }
}

/// The series names a running `nsguard serve` exports, from its `# TYPE` lines.
fn exported_series() -> BTreeSet<String> {
    let server = common::Server::start();
    let text = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(server.metrics());
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => names.insert(format!("{name}_total")),
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
                true
            }
            _ => names.insert(name.to_owned()),
        };
    }
    names
}

/// A Prometheus server process, stopped when dropped.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `path?query=expr` of Prometheus' HTTP API on `port`, as JSON.
fn prometheus_api(port: u16, path: &str, expr: Option<&str>) -> Value {
    use std::io::{Read as _, Write as _};
    let mut target = path.to_owned();
    if let Some(expr) = expr {
        target.push_str("?query=");
        for byte in expr.bytes() {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                target.push(byte as char);
            } else {
                target.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(tcp, "GET {target} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// The real Prometheus server scrapes a running nsguard (its OpenMetrics exposition),
/// loads the alert rules, and evaluates every alert and dashboard expression through its
/// query API without error; every series they name exists, and every rule's evaluation
/// is healthy. (`promtool check metrics` reads only the classic text format; this is the
/// consumer that counts.)
#[test]
fn prometheus_scrapes_nsguard_and_evaluates_every_alert_and_panel() {
    let dir = tempfile::tempdir().unwrap();
    rules_file(dir.path());
    let server = common::Server::builder()
        .args(&["--audit-interval", "2s"])
        .start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [rules.json]\n\
             scrape_configs:\n- job_name: nsguard\n  static_configs:\n  - targets: ['{}']\n",
            server.metrics_addr
        ),
    )
    .unwrap();
    let _prometheus = Prometheus(
        std::process::Command::new("prometheus")
            .current_dir(dir.path())
            .args([
                "--config.file=prometheus.yml",
                "--storage.tsdb.path=data",
                &format!("--web.listen-address=127.0.0.1:{port}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus on the PATH (tests/run.sh installs Debian's prometheus package)"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let up = std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()
            .then(|| prometheus_api(port, "/api/v1/query", Some(r#"up{job="nsguard"} == 1"#)));
        if up.is_some_and(|up| {
            up["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus never scraped nsguard"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    // Scraped as OpenMetrics, every sample taken.
    let targets = prometheus_api(port, "/api/v1/targets", None);
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "", "{target}");

    let rules: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("rules.json")).unwrap())
            .unwrap();
    let mut expressions: Vec<String> = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_owned())
        .collect();
    expressions.extend(dashboard_expressions());
    let names = regex::Regex::new(r"\b(nsguard_[a-z_]+|up)\{").unwrap();
    let mut named = BTreeSet::new();
    for expression in &expressions {
        let answer = prometheus_api(port, "/api/v1/query", Some(expression));
        assert_eq!(answer["status"], "success", "{expression}: {answer}");
        for name in names.captures_iter(expression) {
            named.insert(name[1].to_owned());
        }
    }
    assert!(named.len() >= 15, "{named:?}");
    for name in &named {
        let answer = prometheus_api(
            port,
            "/api/v1/query",
            Some(&format!(r#"count({name}{{job="nsguard"}})"#)),
        );
        assert!(
            answer["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
            "no series {name} scraped from nsguard: {answer}"
        );
    }
    // Every rule evaluated, without error.
    loop {
        let answer = prometheus_api(port, "/api/v1/rules", None);
        let rules = answer["data"]["groups"][0]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let evaluated = rules.len() == 13
            && rules.iter().all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            });
        if evaluated {
            for rule in &rules {
                assert_eq!(rule["health"], "ok", "{rule}");
            }
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{answer}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// The monitoring overlay installs with `kubectl apply -k`: real kubectl, against an API
/// server that serves the Prometheus Operator's group (as one with its CRDs does), maps
/// every object and would create each (client-side dry run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitoring_overlay_installs_with_kubectl_apply_k() {
    let replay = common::replay::Replay::start().await;
    replay.add_group(
        "monitoring.coreos.com",
        "v1",
        &[
            ("servicemonitors", "ServiceMonitor"),
            ("prometheusrules", "PrometheusRule"),
        ],
    );
    // The base's PriorityClass: a group the recorded discovery documents do not hold.
    replay.add_cluster_group(
        "scheduling.k8s.io",
        "v1",
        &[("priorityclasses", "PriorityClass")],
    );
    let server = replay.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("kubectl")
            .args(["apply", "-k"])
            .arg(repo_path("manifests/overlays/monitoring"))
            .args([
                "--dry-run=client",
                "--validate=false",
                "-o",
                "name",
                "--server",
                &server,
            ])
            .env("KUBECONFIG", "/dev/null")
            .output()
            .expect("kubectl on the PATH (tests/run.sh installs it)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "servicemonitor.monitoring.coreos.com/nsguard",
        "prometheusrule.monitoring.coreos.com/nsguard",
        "configmap/nsguard-dashboard",
        "deployment.apps/nsguard",
    ] {
        assert!(
            stdout.lines().any(|l| l == name),
            "{name} not in:\n{stdout}"
        );
    }
}

/// The shipped ValidatingAdmissionPolicy is `nsguard policy`'s output for the base's
/// placement mode, byte for byte, and judges what the placement webhooks are sent: the
/// same parent-env keys (their objectSelectors) and the same excluded namespaces.
#[test]
fn the_shipped_placement_policy_is_nsguard_policys_output_and_matches_the_webhooks() {
    let shipped =
        std::fs::read_to_string(repo_path("manifests/overlays/placement-policy/policy.json"))
            .unwrap();
    let mode = load("manifests/base", "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
        ["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NSGUARD_PLACEMENT_MODE")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        shipped,
        nsguard_prints(&["policy", "--placement-mode", &mode]),
        "manifests/overlays/placement-policy/policy.json is not `nsguard policy --placement-mode {mode}`: regenerate it"
    );
    let policies = load(
        "manifests/overlays/placement-policy",
        "ValidatingAdmissionPolicy",
    );
    let bindings = load(
        "manifests/overlays/placement-policy",
        "ValidatingAdmissionPolicyBinding",
    );
    assert_eq!((policies.len(), bindings.len()), (1, 1));
    let spec = &policies[0]["spec"];
    let hooks: Vec<Value> = webhooks("manifests/base", "ValidatingWebhookConfiguration")
        .into_iter()
        .filter(|h| h["name"].as_str().unwrap().starts_with("placement"))
        .collect();
    assert_eq!(hooks.len(), LabelScheme::default().generations().len());
    let selector = spec["matchConditions"][0]["expression"].as_str().unwrap();
    for hook in &hooks {
        let key = hook["objectSelector"]["matchExpressions"][0]["key"]
            .as_str()
            .unwrap();
        assert!(
            selector.contains(&format!("'{key}' in")),
            "{key} not in {selector}"
        );
        assert_eq!(
            hook["namespaceSelector"], spec["matchConstraints"]["namespaceSelector"],
            "{}",
            hook["name"]
        );
        assert_eq!(
            hook["rules"][0]["operations"],
            spec["matchConstraints"]["resourceRules"][0]["operations"]
        );
    }
    // Beside the policy, the placement webhooks are called only where CEL may not name
    // the namespace; the guards' webhooks are untouched.
    let patch = std::fs::read_to_string(repo_path(
        "manifests/overlays/placement-policy/webhook-match-conditions.json",
    ))
    .unwrap();
    assert_eq!(
        patch,
        nsguard_prints(&["policy", "--webhook-match-conditions"]),
        "regenerate webhook-match-conditions.json"
    );
    let patched = webhooks(
        "manifests/overlays/placement-policy",
        "ValidatingWebhookConfiguration",
    );
    let names: Vec<&str> = hooks.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, nsguard::placement_policy::PLACEMENT_WEBHOOKS);
    for hook in &patched {
        let name = hook["name"].as_str().unwrap();
        let conditions = hook["matchConditions"].as_array().map_or(0, Vec::len);
        assert_eq!(conditions, usize::from(names.contains(&name)), "{name}");
    }
    assert_eq!(
        bindings[0]["spec"]["validationActions"],
        serde_json::json!([if mode == "enforce" { "Deny" } else { "Warn" }])
    );
}

/// What `nsguard ARGS` prints, which must succeed.
fn nsguard_prints(args: &[&str]) -> String {
    let printed = common::nsguard_cli(args).output().unwrap();
    assert!(printed.status.success(), "{printed:?}");
    String::from_utf8(printed.stdout).unwrap()
}
