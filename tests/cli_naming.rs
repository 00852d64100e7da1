//! `nsguard sanitize` and `nsguard ns-name`, run as the built binary.

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

#[test]
fn ns_name_requires_its_flags() {
    let out = nsguard(&["ns-name", "--base", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--stack-env"), "{}", stderr(&out));
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["sanitize", "ns-name"] {
        let out = nsguard(&[sub, "--help"]);
        assert!(out.status.success());
        assert!(stdout(&out).contains("Usage: nsguard"), "{sub}");
    }
}
