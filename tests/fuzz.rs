//! Fuzzing without a nightly toolchain: property tests that feed arbitrary and mutated
//! inputs to every parser and decision, seeded with the real corpus in the repository
//! (the kube-apiserver review fixtures, the test manifests and dumps). The property is
//! always the same: no panic, and a well-formed answer. Failing cases are kept by
//! proptest in `tests/fuzz.proptest-regressions`.

use std::sync::OnceLock;

use common::example_webhook;
use nsguard::admission::{self, Endpoint};
use nsguard::cluster::ClusterDump;
use nsguard::decisions::placement::PlacementMode;
use nsguard::manifests::{self, Source};
use nsguard::simple_container::labels::LabelScheme;
use proptest::prelude::*;

mod common;

fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    let mut stack = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "json" || e == "yaml") {
            files.push(std::fs::read(&path).unwrap());
        }
    }
    files.sort();
    assert!(!files.is_empty(), "empty corpus {dir}");
    files
}

fn reviews() -> &'static Vec<Vec<u8>> {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut all = corpus("tests/fixtures/admission-review");
        all.extend(claim_reviews());
        all
    })
}

/// A sub-env claim's CREATE and DELETE, the fixtures' ConfigMap CREATE made into them, so
/// the volume guard's path is mutated too.
fn claim_reviews() -> Vec<Vec<u8>> {
    let base: serde_json::Value =
        serde_json::from_slice(&common::fixture("configmap-create.json")).unwrap();
    ["CREATE", "DELETE"]
        .into_iter()
        .map(|operation| {
            let mut body = base.clone();
            let request = &mut body["request"];
            request["kind"] =
                serde_json::json!({"group": "", "version": "v1", "kind": "PersistentVolumeClaim"});
            request["resource"] = serde_json::json!({"group": "", "version": "v1", "resource": "persistentvolumeclaims"});
            request["operation"] = operation.into();
            request["name"] = "pay-space-wallet-ledger".into();
            let mut claim = request["object"].clone();
            claim["kind"] = "PersistentVolumeClaim".into();
            claim["metadata"]["name"] = "pay-space-wallet-ledger".into();
            if operation == "DELETE" {
                request["oldObject"] = claim;
                request["object"] = serde_json::Value::Null;
            } else {
                request["object"] = claim;
            }
            serde_json::to_vec(&body).unwrap()
        })
        .collect()
}

fn documents() -> &'static Vec<Vec<u8>> {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut all = corpus("tests/data/manifests");
        all.extend(corpus("tests/data/dumps"));
        all.extend(corpus("examples"));
        all
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(f64, u8),
    Insert(f64, Vec<u8>),
    Delete(f64, usize),
    Truncate(f64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        prop::sample::select(vec![
            b"{".to_vec(),
            b"}".to_vec(),
            b"[".to_vec(),
            b"]".to_vec(),
            b"\"".to_vec(),
            b",".to_vec(),
            b":".to_vec(),
            b"null".to_vec(),
            b"\\u0000".to_vec(),
            b"\\ud800".to_vec(),
            b"-1e999".to_vec(),
            b"\n---\n".to_vec(),
            b"- ".to_vec(),
            b"&anchor ".to_vec(),
            b"*anchor".to_vec(),
            b"!!binary ".to_vec(),
        ]),
    ];
    prop_oneof![
        (0.0..1.0f64, any::<u8>()).prop_map(|(at, b)| Mutation::Flip(at, b)),
        (0.0..1.0f64, token).prop_map(|(at, t)| Mutation::Insert(at, t)),
        (0.0..1.0f64, 1..64usize).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (0.0..1.0f64).prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut input: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |f: f64| ((input.len() as f64) * f) as usize;
        match m {
            Mutation::Flip(f, b) if !input.is_empty() => {
                let i = at(*f).min(input.len() - 1);
                input[i] = *b;
            }
            Mutation::Insert(f, bytes) => {
                let i = at(*f);
                input.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(f, n) => {
                let i = at(*f);
                let end = (i + n).min(input.len());
                input.drain(i..end);
            }
            Mutation::Truncate(f) => input.truncate(at(*f)),
            _ => {}
        }
    }
    input
}

/// Decode; when it succeeds, every endpoint and mode must answer a well-formed review
/// with the request's uid.
fn review_round_trip(body: &[u8]) {
    let Ok(request) = admission::decode(body) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for mode in [
        PlacementMode::Rewrite,
        PlacementMode::Enforce,
        PlacementMode::Warn,
    ] {
        let webhook = example_webhook(mode);
        for endpoint in Endpoint::ALL {
            let response = runtime.block_on(webhook.review(endpoint, &request));
            let encoded: serde_json::Value = serde_json::from_slice(&response.encode()).unwrap();
            assert_eq!(
                encoded["response"]["uid"].as_str(),
                Some(request.uid.as_str())
            );
            assert_eq!(encoded["apiVersion"], admission::API_VERSION);
        }
    }
}

/// Cases per property: 1,000 in CI; `NSGUARD_FUZZ_CASES=1000000 cargo test --release --test fuzz`
/// for a long run.
fn cases() -> u32 {
    std::env::var("NSGUARD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_reviews_never_panic(seed in 0..64usize, mutations in prop::collection::vec(mutation(), 1..6)) {
        let corpus = reviews();
        review_round_trip(&mutate(corpus[seed % corpus.len()].clone(), &mutations));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        review_round_trip(&bytes);
    }

    #[test]
    fn mutated_manifests_and_dumps_never_panic(seed in 0..64usize, mutations in prop::collection::vec(mutation(), 1..6)) {
        let corpus = documents();
        let input = mutate(corpus[seed % corpus.len()].clone(), &mutations);
        let text = String::from_utf8_lossy(&input).into_owned();
        let scheme = LabelScheme::default();
        let source = Source { name: "fuzz".into(), text: text.clone() };
        let scopes = nsguard::scope::Scopes::builtin();
        let rewritten = manifests::parse(&source)
            .and_then(|parsed| manifests::rewrite(&source, parsed, &scheme, &scopes, Some("fuzz")));
        if let Ok(rewritten) = rewritten {
            for finding in &rewritten.findings {
                if let manifests::Outcome::Misplaced(m) = &finding.outcome {
                    prop_assert!(!m.target.is_empty());
                }
            }
            // The edited text reads back as exactly the moved documents.
            let Ok(text) = &rewritten.text else { return Ok(()) };
            let again: Vec<serde_json::Value> = nsguard::documents::parse(text)
                .expect("the rewritten text parses")
                .into_iter()
                .map(|d| d.value)
                .collect();
            prop_assert_eq!(&again, &rewritten.documents);
            let _ = manifests::render_json(&rewritten.documents);
        }
        if let Ok(dump) = ClusterDump::parse(&text, &scheme) {
            let decision = nsguard::decisions::namespace_guard::decide(&Default::default(), "pay-space-wallet", Ok(&dump.scan("pay-space-wallet")));
            prop_assert!(!decision.message().is_empty());
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_manifest_reader(text in ".{0,512}") {
        let source = Source { name: "fuzz".into(), text };
        if let Ok(parsed) = manifests::parse(&source) {
            let _ = manifests::rewrite(&source, parsed, &LabelScheme::default(), &nsguard::scope::Scopes::builtin(), None);
        }
    }
}
