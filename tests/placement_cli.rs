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

/// The output is the input but for lines that set a namespace: replaced in place, or one
/// line inserted. Comments, order, quoting, anchors, flow style and separators stay.
fn assert_only_namespace_lines_differ(input: &str, output: &str) {
    let strip = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.contains("namespace"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        strip(input),
        strip(output),
        "lines other than namespaces changed"
    );
    let (before, after): (Vec<_>, Vec<_>) = (
        input.lines().filter(|l| l.contains("namespace")).collect(),
        output.lines().filter(|l| l.contains("namespace")).collect(),
    );
    assert!(after.len() >= before.len());
    assert_eq!(input.ends_with('\n'), output.ends_with('\n'));
}
