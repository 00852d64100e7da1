//! `nsguard check` and `nsguard rewrite` over manifest files, run as the built binary.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::repo_path;
use serde_json::Value;

fn nsguard(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nsguard"))
        .args(args)
        .current_dir(repo_path("tests/data/manifests"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every document of a YAML stream, read as nsguard reads it (kubectl's own reading is
/// compared in `the_tricky_corpus_reads_the_same_in_kubectl_before_and_after_rewrite`).
fn documents(yaml: &str) -> Vec<Value> {
    nsguard::documents::parse(yaml)
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

#[test]
fn check_reports_every_misplaced_object_with_its_position() {
    let o = nsguard(&["check", "-f", "stack", "-f", "long.yaml"], None);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let text = out(&o);
    for line in [
        "stack/app.yaml document 1: Deployment \"myapp-tenant-a\"",
        "stack/app.yaml document 2: Service \"myapp-tenant-a\"",
        "stack/app.yaml document 3: ConfigMap \"myapp-tenant-a-config\"",
        "stack/list.json document 1 item 1: CronJob \"cleanup\"",
        "long.yaml document 1: Deployment \"settlement\"",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        text.contains("belongs in namespace \"myapp-preview-test\""),
        "{text}"
    );
    assert!(text.contains("5 misplaced sub-env objects"), "{text}");
    // Standard, already placed and cluster-scoped objects are not reported.
    assert!(!text.contains("Deployment \"myapp\""), "{text}");
    assert!(!text.contains("Secret"), "{text}");
    assert!(!text.contains("Namespace \"myapp-tenant-a\""), "{text}");
}

#[test]
fn check_json_for_machines() {
    let o = nsguard(&["check", "-f", "stack/app.yaml", "--output", "json"], None);
    assert_eq!(o.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let misplaced = report["misplaced"].as_array().unwrap();
    assert_eq!(misplaced.len(), 3);
    assert_eq!(misplaced[0]["document"], 1);
    assert_eq!(misplaced[0]["placement"], "misplaced");
    assert_eq!(report["unresolvable"], serde_json::json!([]));
    assert_eq!(misplaced[0]["kind"], "Deployment");
    assert_eq!(misplaced[0]["current"], "myapp");
    assert_eq!(misplaced[0]["target"], "myapp-tenant-a");
    assert_eq!(misplaced[0]["owner"]["env"], "tenant-a");
}

#[test]
fn check_passes_when_everything_is_placed() {
    let o = nsguard(&["check", "-f", "stack/placed.yaml"], None);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("no misplaced"));
}

#[test]
fn bad_input_is_exit_2_naming_file_and_document() {
    let o = nsguard(&["check", "-f", "broken"], None);
    assert_eq!(o.status.code(), Some(2));
    let e = err(&o);
    assert!(
        e.contains("broken/broken.yaml: document 2: invalid YAML"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    let o = nsguard(&["rewrite", "-f", "missing.yaml"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("missing.yaml"), "{}", err(&o));
    let o = nsguard(&["check", "-f", "-"], Some("- just\n- a list\n"));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("<stdin>: document 1: expected a Kubernetes object"),
        "{}",
        err(&o)
    );
}

#[test]
fn rewrite_moves_misplaced_objects_and_keeps_every_other_field() {
    let input = std::fs::read_to_string(repo_path("tests/data/manifests/stack/app.yaml")).unwrap();
    let o = nsguard(&["rewrite", "-f", "stack/app.yaml"], None);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let before = documents(&input);
    let after = documents(&out(&o));
    assert_eq!(before.len(), after.len());
    let moved = [true, true, true, false, false];
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let mut expected = b.clone();
        if moved[i] {
            expected["metadata"]["namespace"] = "myapp-tenant-a".into();
        }
        assert_eq!(a, &expected, "document {i}");
    }
    // Strings that look like other YAML types survive as strings.
    assert_eq!(
        after[0]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "true"
    );
    assert_eq!(
        after[0]["spec"]["template"]["spec"]["containers"][0]["env"][2]["value"],
        "01234"
    );
    // kubectl reads the key `yes` as the boolean true, so JSON's "true"; the value stays
    // the quoted string it was (a re-serializing rewrite unquoted it, and kubectl then
    // read `{"true": false}`).
    assert_eq!(after[2]["data"]["true"], "no");
    assert_eq!(
        err(&o).lines().filter(|l| l.starts_with("moved: ")).count(),
        3
    );
    assert_only_namespace_lines_differ(&input, &out(&o));
}

#[test]
fn rewrite_of_a_json_list_and_of_long_names() {
    let o = nsguard(
        &["rewrite", "-f", "stack/list.json", "--output", "json"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        list["items"][0]["metadata"]["namespace"],
        "myapp-preview-test"
    );
    assert_eq!(list["items"][1]["metadata"]["namespace"], "myapp");

    let o = nsguard(&["rewrite", "-f", "long.yaml"], None);
    let docs = documents(&out(&o));
    let target = docs[0]["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_owned();
    let ns_name = nsguard(
        &[
            "ns-name",
            "--base",
            "payments-settlement-reconciliation-service-for-european-markets",
            "--stack-env",
            "tenant-customer-acme-corporation",
            "--parent-env",
            "production",
        ],
        None,
    );
    assert_eq!(target, out(&ns_name).trim());
    assert_eq!(target.len(), 63);
}

#[test]
fn rewrite_from_stdin_uses_the_default_namespace() {
    let manifest = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  labels: {appName: shop-tenant-x, appEnv: tenant-x, simplecontainer.com/parent-env: prod}\n";
    let o = nsguard(
        &["rewrite", "-f", "-", "--namespace", "shop-tenant-x"],
        Some(manifest),
    );
    assert_eq!(
        documents(&out(&o))[0]["metadata"].get("namespace"),
        None,
        "already placed via --namespace"
    );
    let o = nsguard(
        &["rewrite", "-f", "-", "--namespace", "shop"],
        Some(manifest),
    );
    assert_eq!(
        documents(&out(&o))[0]["metadata"]["namespace"],
        "shop-tenant-x"
    );
    // A rewritten stream checks clean.
    let o = nsguard(&["check", "-f", "-"], Some(&out(&o)));
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
}

/// The output is the input but for namespace entries: a value replaced in place, or one
/// entry inserted (its own line in block style, inline in flow style or compact JSON).
/// Comments, order, quoting, anchors, flow style and separators stay.
fn assert_only_namespace_lines_differ(input: &str, output: &str) {
    let strip = |text: &str| -> Vec<String> {
        text.lines()
            .map(without_namespace_entries)
            .filter(|l| !l.trim().is_empty())
            .collect()
    };
    assert_eq!(strip(input), strip(output), "more than namespaces changed");
    assert_eq!(input.ends_with('\n'), output.ends_with('\n'));
}

/// A line with every `namespace: value` entry (YAML or JSON, with its separator) cut out.
fn without_namespace_entries(line: &str) -> String {
    let mut out = line.to_owned();
    while let Some(at) = out.find("namespace") {
        let start = if at > 0 && out.as_bytes()[at - 1] == b'"' {
            at - 1
        } else {
            at
        };
        let mut rest = &out[at + "namespace".len()..];
        rest = rest.strip_prefix('"').unwrap_or(rest);
        let Some(after_colon) = rest.trim_start().strip_prefix(':') else {
            break;
        };
        let value = after_colon.trim_start();
        let value_len = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].find(q).map_or(value.len(), |end| end + 2),
            _ => value.find([',', '}', ' ']).unwrap_or(value.len()),
        };
        let mut tail = &value[value_len..];
        tail = tail.strip_prefix(',').unwrap_or(tail);
        tail = tail.strip_prefix(' ').unwrap_or(tail);
        out = format!("{}{}", &out[..start], tail);
    }
    out
}

/// Numbers compared by value (kubectl prints `1e3` as 1000, nsguard keeps 1000.0), and
/// the namespace kubectl gives an object that names none left out.
fn normalized(mut value: Value, default_namespace: &str) -> Value {
    fn numbers(value: &mut Value) {
        match value {
            Value::Number(n) => *value = serde_json::json!(n.as_f64().unwrap()),
            Value::Array(items) => items.iter_mut().for_each(numbers),
            Value::Object(map) => map.values_mut().for_each(numbers),
            _ => {}
        }
    }
    numbers(&mut value);
    if value["metadata"]["namespace"] == default_namespace {
        value["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
    }
    value
}

/// Every object of a stream, List items flattened, as kubectl creates them.
fn objects(documents: Vec<Value>) -> Vec<Value> {
    documents
        .into_iter()
        .flat_map(|d| match d["kind"].as_str() {
            Some(kind) if kind.ends_with("List") => d["items"].as_array().unwrap().clone(),
            _ => vec![d],
        })
        .collect()
}

/// The tricky corpus (YAML 1.1 look-alikes quoted and not, comments, anchors, merge
/// keys, flow style, block scalars, `# Source:` lines, JSON streams, Lists): kubectl
/// reads the rewritten text exactly as nsguard says it moved it, and the text differs
/// from the input only in namespace entries. Before, `rewrite` re-serialized the
/// documents and kubectl read `"on"` as true and `yes: "no"` as `{"true": false}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tricky_corpus_reads_the_same_in_kubectl_before_and_after_rewrite() {
    let replay = common::replay::Replay::start().await;
    let namespace = "pay-space-wallet";
    for file in [
        "tricky/helm-template.yaml",
        "tricky/stream.json",
        "stack/app.yaml",
        "stack/list.json",
    ] {
        let input = std::fs::read_to_string(repo_path("tests/data/manifests").join(file)).unwrap();
        let o = nsguard(&["rewrite", "-f", file, "-n", namespace], None);
        assert_eq!(o.status.code(), Some(0), "{file}: {}", err(&o));
        let rewritten = out(&o);
        assert_only_namespace_lines_differ(&input, &rewritten);
        let o = nsguard(
            &["rewrite", "-f", file, "-n", namespace, "-o", "json"],
            None,
        );
        let ours: Vec<Value> = objects(documents(&out(&o)))
            .into_iter()
            .map(|v| normalized(v, ""))
            .collect();
        // kubectl puts an object that names no namespace in its context's, "default".
        let read = common::replay::kubectl_reads(&replay, &rewritten, &[]).await;
        let theirs: Vec<Value> = objects(read)
            .into_iter()
            .map(|v| normalized(v, "default"))
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{file}");
        for (ours, theirs) in ours.iter().zip(&theirs) {
            assert_eq!(
                ours, theirs,
                "{file}: nsguard and kubectl read {} differently",
                ours["metadata"]["name"]
            );
        }
    }
}

/// `check` and the webhook give the same answer for every object of the corpus: each
/// object, sent as the CREATE the API server would send, is denied (enforce) exactly
/// when `check` reports it misplaced, naming the same target.
#[tokio::test]
async fn check_agrees_with_the_webhook_on_every_corpus_object() {
    use nsguard::admission::{self, Endpoint};
    use nsguard::decisions::placement::PlacementMode;
    let webhook = common::example_webhook(PlacementMode::Enforce);
    let namespace = "pay-space-wallet";
    for file in [
        "tricky/helm-template.yaml",
        "tricky/stream.json",
        "stack/app.yaml",
    ] {
        let o = nsguard(&["check", "-f", file, "-n", namespace, "-o", "json"], None);
        let report: Value = serde_json::from_slice(&o.stdout).unwrap();
        let text = std::fs::read_to_string(repo_path("tests/data/manifests").join(file)).unwrap();
        for document in nsguard::documents::parse(&text).unwrap() {
            let object = document.value;
            if object["kind"] == "Namespace" {
                continue;
            }
            let name = object["metadata"]["name"].as_str().unwrap().to_owned();
            let in_namespace = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or(namespace)
                .to_owned();
            let review = serde_json::json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {
                    "uid": format!("u-{}", document.number),
                    "kind": {"group": "", "version": "v1", "kind": object["kind"]},
                    "resource": {"group": "", "version": "v1", "resource": "things"},
                    "name": name, "namespace": in_namespace, "operation": "CREATE",
                    "userInfo": {"username": "ci"}, "object": object
                }
            });
            let body = serde_json::to_vec(&review).unwrap();
            let request = admission::decode(&body).unwrap();
            let response = webhook.review(Endpoint::Validate, &request).await;
            let reported = report["misplaced"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name.as_str() && f["document"] == document.number);
            match reported {
                Some(finding) => {
                    let target = finding["target"].as_str().unwrap();
                    let denial = response.denial.as_deref().unwrap_or_default();
                    assert!(
                        !response.allowed && denial.contains(&format!("{target:?}")),
                        "{file}: {name}: check reports {target}, the webhook: {denial:?}"
                    );
                }
                None => assert!(
                    response.allowed,
                    "{file}: {name}: the webhook denies what check passes: {:?}",
                    response.denial
                ),
            }
        }
    }
}

/// `rewrite` as a Helm post-renderer: the rendered stream on stdin (no -f), the same
/// stream on stdout with only namespaces changed (`# Source:` lines kept), what moved on
/// stderr, and a non-zero exit on bad input so Helm stops.
#[test]
fn rewrite_is_a_helm_post_renderer() {
    let rendered =
        std::fs::read_to_string(repo_path("tests/data/manifests/tricky/helm-template.yaml"))
            .unwrap();
    let o = nsguard(&["rewrite"], Some(&rendered));
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_only_namespace_lines_differ(&rendered, &out(&o));
    assert!(out(&o).contains("# Source: wallet/templates/cronjob.yaml"));
    assert!(
        err(&o).contains("moved: <stdin> document 1: ConfigMap \"wallet-flags\""),
        "{}",
        err(&o)
    );
    let o = nsguard(&["rewrite"], Some("kind: A\n---\nkind: [unclosed\n"));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).starts_with("nsguard: error: <stdin>: document 2:"),
        "{}",
        err(&o)
    );
    assert!(out(&o).is_empty(), "a partial stream was printed");
}

/// A sub-env object whose app-name sanitizes to nothing is reported, never passed in
/// silence: check exits 1 naming it, rewrite leaves it and says so, the webhook warns.
#[tokio::test]
async fn an_unresolvable_app_name_is_reported_everywhere() {
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: odd\n  namespace: shop\n  labels: {simple-container-com/app-name: ___, simple-container-com/env: tenant-a, simple-container-com/parent-env: production}\n";
    let o = nsguard(&["check"], Some(manifest));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("<stdin> document 1: ConfigMap \"odd\""),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("sanitizes to an empty namespace name"),
        "{}",
        out(&o)
    );
    let o = nsguard(&["check", "-o", "json"], Some(manifest));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["unresolvable"][0]["placement"], "unresolvable");
    let o = nsguard(&["rewrite"], Some(manifest));
    assert_eq!(out(&o), manifest);
    assert!(
        err(&o).starts_with("not moved: <stdin> document 1"),
        "{}",
        err(&o)
    );

    let webhook = common::example_webhook(nsguard::decisions::placement::PlacementMode::Enforce);
    let object = documents(manifest).remove(0);
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": "odd", "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "ci"}, "object": object}
    });
    let body = serde_json::to_vec(&review).unwrap();
    let request = nsguard::admission::decode(&body).unwrap();
    let response = webhook
        .review(nsguard::admission::Endpoint::Validate, &request)
        .await;
    assert!(response.allowed, "placement fails open");
    assert!(
        response
            .warnings
            .iter()
            .any(|w| w.contains("cannot tell which namespace")),
        "{:?}",
        response.warnings
    );
}

/// The built-in scopes agree with what a real kube-apiserver's discovery says of each
/// kind (`namespaced`), for every kind both know.
#[test]
fn built_in_scopes_agree_with_the_api_servers_discovery() {
    use nsguard::scope::{Scope, Scopes};
    let scopes = Scopes::builtin();
    let dir = repo_path("../shared/fixtures/kube-apiserver/discovery");
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let list: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if list["kind"] != "APIResourceList" {
            continue;
        }
        let group_version = list["groupVersion"].as_str().unwrap();
        let group = group_version.rsplit_once('/').map_or("", |(g, _)| g);
        for resource in list["resources"].as_array().unwrap() {
            if resource["name"].as_str().unwrap().contains('/') {
                continue;
            }
            let kind = resource["kind"].as_str().unwrap();
            if let Some(scope) = scopes.of(group, kind) {
                let namespaced = resource["namespaced"].as_bool().unwrap();
                assert_eq!(scope == Scope::Namespaced, namespaced, "{kind}.{group}");
                compared += 1;
            }
        }
    }
    assert!(compared > 40, "only {compared} kinds compared");
}

/// A cluster-scoped custom kind (GatewayClass) with sub-env labels is never moved: with
/// its CRD in the stream or --cluster-scoped it is not reported; with neither, its scope
/// is reported as unknown. A namespaced custom kind whose CRD is in the stream is moved.
/// Before, every kind off a hand-written list was taken as namespaced and moved.
#[test]
fn custom_kinds_are_scoped_by_their_crd_or_a_flag_and_never_guessed() {
    let labels = "labels: {simple-container-com/app-name: shop-tenant-a, simple-container-com/env: tenant-a, simple-container-com/parent-env: production}";
    let class = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: shop\n  {labels}\nspec: {{controllerName: example.com/gw}}\n"
    );
    let route = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: shop\n  namespace: shop\n  {labels}\n"
    );
    let crd = |kind: &str, scope: &str| {
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {}s.gateway.networking.k8s.io\nspec:\n  group: gateway.networking.k8s.io\n  scope: {scope}\n  names: {{kind: {kind}, plural: {}s}}\n",
            kind.to_lowercase(),
            kind.to_lowercase()
        )
    };

    let o = nsguard(&["rewrite", "-n", "shop"], Some(&class));
    assert_eq!(out(&o), class, "a kind of unknown scope was changed");
    assert!(err(&o).contains("not moved: <stdin> document 1: GatewayClass \"shop\": the scope of GatewayClass.gateway.networking.k8s.io is unknown"), "{}", err(&o));
    let o = nsguard(&["check", "-n", "shop"], Some(&class));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));

    let with_crd = format!("{}---\n{class}", crd("GatewayClass", "Cluster"));
    let o = nsguard(&["check", "-n", "shop"], Some(&with_crd));
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let o = nsguard(
        &["check", "-n", "shop", "--cluster-scoped", "GatewayClass"],
        Some(&class),
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));

    let routes = format!("{}---\n{route}", crd("HTTPRoute", "Namespaced"));
    let o = nsguard(&["rewrite"], Some(&routes));
    assert!(
        out(&o).contains("  namespace: shop-tenant-a\n"),
        "{}",
        out(&o)
    );
    let o = nsguard(
        &[
            "rewrite",
            "--namespaced",
            "HTTPRoute.gateway.networking.k8s.io",
        ],
        Some(&route),
    );
    assert!(
        out(&o).contains("  namespace: shop-tenant-a\n"),
        "{}",
        out(&o)
    );
}

/// A namespace that reaches the object through a merge key (or an alias) cannot be set in
/// place: an entry inserted beside `<<` is overridden by the merge for kubectl and nsguard
/// alike. `rewrite` refuses it (exit 2, nothing printed) instead of saying "moved" and
/// printing the old namespace, as it did.
#[test]
fn a_namespace_from_a_merge_key_is_refused_not_silently_kept() {
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  <<: &m\n    namespace: shop\n    labels: {simple-container-com/app-name: shop-tenant-a, simple-container-com/env: tenant-a, simple-container-com/parent-env: production}\n  name: x\n";
    let o = nsguard(&["rewrite"], Some(manifest));
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).is_empty(), "{}", out(&o));
    assert!(
        err(&o).contains("<stdin>: document 1: cannot set metadata.namespace in place"),
        "{}",
        err(&o)
    );
    // check still reports it, so nothing passes in silence.
    let o = nsguard(&["check"], Some(manifest));
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
}

/// `nsguard policy`: a List of the policy and its binding, Deny by default; a mode a
/// policy cannot express is an error naming it as the user wrote it.
#[test]
fn policy_prints_the_policy_and_refuses_a_mode_it_cannot_express() {
    let out = nsguard(&["policy"], None);
    assert!(out.status.success(), "{out:?}");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    assert_eq!(list["items"][1]["spec"]["validationActions"][0], "Deny");
    for mode in ["rewrite", "off"] {
        let out = nsguard(&["policy", "--placement-mode", mode], None);
        assert_eq!(out.status.code(), Some(2), "{mode}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "placement mode {mode} has no ValidatingAdmissionPolicy"
            )),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "{mode}: printed something");
    }
}
