//! The naming functions against vectors computed by Go's standard library
//! (`tests/go-reference`), the runtime simple-container itself uses.

use nsguard::simple_container::naming::{deployed_namespace, generate_namespace_name, sanitize};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    sanitize: Vec<SanitizeVector>,
    namespace: Vec<NamespaceVector>,
}

#[derive(Deserialize)]
struct SanitizeVector {
    input: String,
    output: String,
}

#[derive(Deserialize)]
struct NamespaceVector {
    base: String,
    stack_env: String,
    parent_env: String,
    generated: String,
    deployed: String,
}

fn vectors() -> Vectors {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/naming-vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read vectors"))
        .expect("parse vectors")
}

#[test]
fn sanitize_matches_go() {
    let vectors = vectors();
    assert!(vectors.sanitize.len() > 1000, "vector file is truncated");
    let long = vectors
        .sanitize
        .iter()
        .filter(|v| v.output.len() == 63)
        .count();
    assert!(long > 50, "too few vectors exercise truncation: {long}");
    for v in &vectors.sanitize {
        assert_eq!(sanitize(&v.input), v.output, "input {:?}", v.input);
    }
}

#[test]
fn namespace_names_match_go() {
    let vectors = vectors();
    for v in &vectors.namespace {
        let ctx = format!(
            "base {:?} env {:?} parent {:?}",
            v.base, v.stack_env, v.parent_env
        );
        // Go returns "" where nsguard returns an error; both must agree on which inputs.
        match generate_namespace_name(&v.base, &v.stack_env, &v.parent_env) {
            Ok(name) => assert_eq!(name, v.generated, "{ctx}"),
            Err(_) => assert_eq!(v.generated, "", "{ctx}"),
        }
        match deployed_namespace(&v.base, &v.stack_env, &v.parent_env) {
            Ok(name) => assert_eq!(name, v.deployed, "{ctx}"),
            Err(_) => assert_eq!(v.deployed, "", "{ctx}"),
        }
    }
}
