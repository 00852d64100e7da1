//! Properties every sanitized name must have, over arbitrary input.

use nsguard::simple_container::naming::target_namespace;
use nsguard::simple_container::naming::{MAX_NAME_LEN, deployed_namespace, sanitize};
use proptest::prelude::*;

/// Strings biased toward the interesting alphabet: case, separators, runs of hyphens and
/// characters whose lowercase is ASCII or expands.
fn name_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9]{1,8}",
        Just("-".to_owned()),
        Just("---".to_owned()),
        Just("_".to_owned()),
        Just(".".to_owned()),
        Just("İ".to_owned()),
        Just("\u{212A}".to_owned()),
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|p| p.concat())
}

fn assert_valid_name(name: &str) {
    assert!(
        name.len() <= MAX_NAME_LEN,
        "{name:?} is {} bytes",
        name.len()
    );
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{name:?}"
    );
    let (first, last) = (name.as_bytes()[0], name.as_bytes()[name.len() - 1]);
    assert!(
        first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric(),
        "{name:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn sanitized_names_are_valid_rfc1123_labels(input in name_like()) {
        let out = sanitize(&input);
        if !out.is_empty() {
            assert_valid_name(&out);
        }
    }

    #[test]
    fn arbitrary_unicode_never_breaks_the_rules(input in any::<String>()) {
        let out = sanitize(&input);
        if !out.is_empty() {
            assert_valid_name(&out);
        }
    }

    #[test]
    fn truncation_is_deterministic_and_hash_suffixed(input in "[a-z0-9-]{64,120}") {
        let once = sanitize(&input);
        prop_assert_eq!(&once, &sanitize(&input));
        let trimmed = input.trim_matches('-');
        if trimmed.len() > MAX_NAME_LEN {
            let suffix = &once[once.len() - 5..];
            prop_assert!(suffix.starts_with('-'), "{}", once);
            prop_assert!(suffix[1..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{}", once);
        }
    }

    #[test]
    fn deployed_namespaces_are_valid_or_an_error(base in name_like(), env in name_like(), parent in name_like()) {
        if let Ok(ns) = deployed_namespace(&base, &env, &parent) {
            assert_valid_name(&ns);
        }
    }

    /// For every label set simple-container writes (app-name = sanitize(stack-env), hashed
    /// when long), placement's target is the stack's deployed namespace; labels written by
    /// hand with the stack name get the same answer.
    #[test]
    fn placement_targets_the_deployed_namespace(stack in "[a-z][a-z0-9-]{0,70}[a-z0-9]", env in "[a-z][a-z0-9-]{0,20}[a-z0-9]") {
        let parent = "production";
        prop_assume!(env != parent);
        let Ok(expected) = deployed_namespace(&stack, &env, parent) else { return Ok(()) };
        let written = sanitize(&format!("{stack}-{env}")).into_owned();
        prop_assert_eq!(target_namespace(&written, &env, parent).unwrap(), expected.as_str(), "written by simple-container: {}", written);
        if !stack.ends_with(&format!("-{env}")) && stack.len() < 32 {
            prop_assert_eq!(target_namespace(&stack, &env, parent).unwrap(), expected.as_str(), "written by hand");
        }
    }
}
