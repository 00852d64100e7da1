//! The command line as a person meets it, run as the built binary: `nsguard sanitize`,
//! `nsguard ns-name`, every subcommand's help, usage errors, and the kubectl plugin.

use std::process::{Command, Output};

fn nsguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsguard"))
        .args(args)
        .output()
        .expect("run nsguard")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn sanitize_prints_the_sanitized_name() {
    let out = nsguard(&["sanitize", "--Foo_Bar--"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "foo-bar\n");
}

#[test]
fn sanitize_truncates_long_names_with_a_hash() {
    let long = "a".repeat(70);
    let out = nsguard(&["sanitize", &long]);
    let name = stdout(&out);
    let name = name.trim_end();
    assert_eq!(name.len(), 63);
    assert!(name.starts_with(&"a".repeat(58)));
}

#[test]
fn sanitize_to_empty_is_a_one_line_error() {
    let out = nsguard(&["sanitize", "..._"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("empty"), "{err}");
}

#[cfg(unix)]
#[test]
fn sanitize_accepts_non_utf8_arguments() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(env!("CARGO_BIN_EXE_nsguard"))
        .arg("sanitize")
        .arg(OsStr::from_bytes(b"My\xffApp"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "myapp\n");
}

#[test]
fn ns_name_follows_the_upstream_table() {
    let cases: &[(&[&str], &str)] = &[
        (&["--base", "myapp", "--stack-env", "staging"], "myapp"),
        (
            &[
                "--base",
                "myapp",
                "--stack-env",
                "production",
                "--parent-env",
                "production",
            ],
            "myapp",
        ),
        (
            &[
                "--base",
                "myapp",
                "--stack-env",
                "tenant-a",
                "--parent-env",
                "production",
            ],
            "myapp-tenant-a",
        ),
        (
            &[
                "--base",
                "my_app",
                "--stack-env",
                "tenant-a",
                "--parent-env",
                "production",
            ],
            "my-app-tenant-a",
        ),
        (
            &[
                "--base",
                "MyApp",
                "--stack-env",
                "TenantA",
                "--parent-env",
                "production",
            ],
            "myapp-tenanta",
        ),
        (
            &[
                "--base",
                "api",
                "--stack-env",
                "staging-pr-123",
                "--parent-env",
                "staging",
            ],
            "api-staging-pr-123",
        ),
        // Deployed namespace: sanitized twice.
        (&["--base", "a---b", "--stack-env", "x"], "a-b"),
    ];
    for (args, want) in cases {
        let mut full = vec!["ns-name"];
        full.extend_from_slice(args);
        let out = nsguard(&full);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim_end(), *want, "{args:?}");
    }
}

#[test]
fn ns_name_empty_result_is_an_error() {
    let out = nsguard(&["ns-name", "--base", "___", "--stack-env", "prod"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out).lines().count(), 1);
}

/// Usage errors follow the one rule of every error: one `nsguard: error:` line (with the
/// usage), exit 2.
#[test]
fn usage_errors_are_one_line_with_the_usage() {
    for (args, needle) in [
        (&["ns-name", "--base", "x"][..], "--stack-env <STACK_ENV>"),
        (&["check", "--bogus"][..], "unexpected argument '--bogus'"),
        (&["nope"][..], "unrecognized subcommand 'nope'"),
        // The bounds of one delete's lookup are not the audit's (it has --timeout).
        (
            &["audit", "--demo", "--lookup-timeout", "1s"][..],
            "unexpected argument '--lookup-timeout'",
        ),
        (
            &["dump", "--demo", "--max-concurrent-lookups", "2"][..],
            "unexpected argument '--max-concurrent-lookups'",
        ),
    ] {
        let out = nsguard(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("nsguard: error: ") && err.contains(needle),
            "{err}"
        );
        assert!(err.contains("(usage: nsguard"), "{err}");
    }
}

#[test]
fn every_subcommand_has_help_with_examples_and_global_options_apart() {
    for sub in [
        "sanitize",
        "ns-name",
        "serve",
        "certs",
        "can-delete",
        "check",
        "rewrite",
    ] {
        let out = nsguard(&[sub, "--help"]);
        assert!(out.status.success(), "{sub}");
        let help = stdout(&out);
        assert!(help.contains("Usage: nsguard"), "{sub}");
        assert!(
            help.contains("\nExamples:\n  nsguard ") || help.contains("\nExamples:\n  helm "),
            "{sub}: {help}"
        );
        let global = help
            .find("Global options:")
            .unwrap_or_else(|| panic!("{sub}: {help}"));
        assert!(help[global..].contains("--log-format"), "{sub}");
    }
}

/// Installed as `kubectl-nsguard`, the same binary is a kubectl plugin: `kubectl nsguard
/// can-delete` and `kubectl nsguard check` run through the real kubectl, exit codes
/// come through, and help speaks of `kubectl nsguard`.
#[test]
fn the_binary_is_a_kubectl_plugin() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_nsguard"),
        dir.path().join("kubectl-nsguard"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .arg("nsguard")
            .args(args)
            .env("PATH", &path)
            .env("KUBECONFIG", "/dev/null")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("kubectl on the PATH (tests/run.sh installs it)")
    };
    let out = kubectl(&["can-delete", "pay-space-wallet", "--demo"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("holds objects of 3 stacks"),
        "{}",
        stdout(&out)
    );
    let out = kubectl(&["check", "-f", "tests/data/manifests/stack/app.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("3 misplaced sub-env objects"),
        "{}",
        stdout(&out)
    );
    let out = kubectl(&["--help"]);
    assert!(
        stdout(&out).contains("Usage: kubectl nsguard"),
        "{}",
        stdout(&out)
    );
    let out = kubectl(&["check", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("(usage: kubectl nsguard check"),
        "{}",
        stderr(&out)
    );
    // Global flags go after the plugin's name, as the README shows. Before it, kubectl
    // itself refuses, with exit 1: the code of "denied", which is why the README warns.
    let out = kubectl(&[
        "can-delete",
        "pay-space-wallet",
        "--demo",
        "--output",
        "text",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("holds objects of 3 stacks"));
    let before = Command::new("kubectl")
        .args([
            "--kubeconfig",
            "/dev/null",
            "nsguard",
            "can-delete",
            "x",
            "--demo",
        ])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(before.status.code(), Some(1));
    assert!(
        stderr(&before).contains("flags cannot be placed before plugin name"),
        "{}",
        stderr(&before)
    );
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        readme.contains("`kubectl nsguard can-delete NS --kubeconfig F`")
            && readme.contains("flags cannot be placed before plugin name"),
        "the README's plugin section shows where flags go, and why"
    );
}
