//! simple-container's namespace naming, reproduced byte for byte.
//!
//! nsguard must agree with simple-container (`pkg/util/string.go`,
//! `pkg/clouds/pulumi/kubernetes/naming.go`) on every input, because a namespace name
//! that is off by one byte is a different namespace. The quirks are deliberate copies:
//! the FNV-1a hash is taken before `--` is collapsed, and the collapse is one
//! non-overlapping pass, so `a---b` becomes `a--b` (the function is not idempotent).

use std::borrow::Cow;

/// The longest name Kubernetes accepts for a namespace (an RFC 1123 label).
pub const MAX_NAME_LEN: usize = 63;

/// Bytes kept from a long name before `-` and the 4-hex-digit hash: 63 - 1 - 4.
const TRUNCATED_PREFIX_LEN: usize = MAX_NAME_LEN - 1 - 4;

/// A name that sanitizes to nothing. simple-container would silently use the empty
/// string; nsguard refuses, because an empty namespace means "cluster scope" or "default"
/// depending on the caller, and either is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    #[error(
        "{what} {input:?} has no character in [a-z0-9-] after sanitizing, so it yields an empty name"
    )]
    Empty { what: &'static str, input: String },
}

/// simple-container's `SanitizeK8sResourceName`. Returns the empty string when nothing
/// valid is left (callers that need a name use [`generate_namespace_name`] or
/// [`deployed_namespace`], which turn that into an error).
///
/// A name that is already sanitized (every app-name simple-container writes) comes back
/// borrowed: the webhook checks the placement of every sub-env write with this, and
/// most of those are already in place.
pub fn sanitize(name: &str) -> Cow<'_, str> {
    if is_sanitized(name) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(sanitize_owned(name))
    }
}

/// Whether [`sanitize`] leaves `name` as it is: only `[a-z0-9-]` (steps 1 and 2), no
/// hyphen at either end (3), short enough (4) and no `--` (5).
fn is_sanitized(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() <= MAX_NAME_LEN
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !bytes.windows(2).any(|pair| pair == b"--")
}

fn sanitize_owned(name: &str) -> String {
    // Steps 1 and 2: lowercase, `_` -> `-`, drop everything outside [a-z0-9-].
    // Rust's full lowercase mapping differs from Go's simple mapping only in characters
    // that expand to non-ASCII tails (e.g. U+0130 -> "i\u{307}"), which step 2 deletes,
    // so the surviving bytes are the same.
    let mut out = String::with_capacity(name.len());
    let mut keep = |lower: char| match lower {
        'a'..='z' | '0'..='9' | '-' => out.push(lower),
        '_' => out.push('-'),
        _ => {}
    };
    for c in name.chars() {
        // ASCII (every real label value) maps one to one; the Unicode tables only for the rest.
        if c.is_ascii() {
            keep(c.to_ascii_lowercase());
        } else {
            c.to_lowercase().for_each(&mut keep);
        }
    }

    // Step 3: trim leading and trailing hyphens.
    let trimmed = out.trim_matches('-');

    // Step 4: long names keep a readable prefix and a hash of the whole string.
    let shortened;
    let name = if trimmed.len() > MAX_NAME_LEN {
        let hash = fnv1a32(trimmed.as_bytes()) & 0xFFFF;
        // Only ASCII is left, so any byte index is a char boundary.
        let prefix = trimmed[..TRUNCATED_PREFIX_LEN].trim_end_matches('-');
        shortened = format!("{prefix}-{hash:04x}");
        shortened.as_str()
    } else {
        trimmed
    };

    // Step 5: one left-to-right, non-overlapping pass, exactly like Go's
    // `strings.ReplaceAll(s, "--", "-")`: each `--` becomes `-` and the scan goes on
    // after it, so `---` becomes `--`.
    collapse_double_hyphens(name)
}

/// `s.replace("--", "-")` without the generic substring searcher, which costs more
/// than the rest of [`sanitize`] on the short names it sees. Only ASCII reaches here.
fn collapse_double_hyphens(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        out.push(bytes[i]);
        i += if bytes[i] == b'-' && bytes.get(i + 1) == Some(&b'-') {
            2
        } else {
            1
        };
    }
    // Whole ASCII bytes of valid UTF-8 were copied, so the result is valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Whether a stack is a custom (sub-env) stack: `parentEnv != "" && parentEnv != stackEnv`,
/// compared as raw, case-sensitive strings.
pub fn is_custom_stack(stack_env: &str, parent_env: &str) -> bool {
    !parent_env.is_empty() && parent_env != stack_env
}

/// simple-container's `GenerateNamespaceName`: custom stacks get `base-stackEnv`, suffixed
/// before sanitizing so that a long result is truncated and hashed as one string.
pub fn generate_namespace_name(
    base: &str,
    stack_env: &str,
    parent_env: &str,
) -> Result<String, NamingError> {
    let raw = if is_custom_stack(stack_env, parent_env) {
        format!("{base}-{stack_env}")
    } else {
        base.to_owned()
    };
    non_empty(sanitize(&raw).into_owned(), "namespace base", &raw)
}

/// The namespace simple-container actually creates: it sanitizes the generated name a
/// second time when it creates the Namespace. Differs from [`generate_namespace_name`]
/// only for inputs with runs of three or more hyphens.
pub fn deployed_namespace(
    base: &str,
    stack_env: &str,
    parent_env: &str,
) -> Result<String, NamingError> {
    let generated = generate_namespace_name(base, stack_env, parent_env)?;
    non_empty(
        sanitize(&generated).into_owned(),
        "generated namespace",
        &generated,
    )
}

fn non_empty(name: String, what: &'static str, input: &str) -> Result<String, NamingError> {
    if name.is_empty() {
        Err(NamingError::Empty {
            what,
            input: input.to_owned(),
        })
    } else {
        Ok(name)
    }
}

/// 32-bit FNV-1a, as Go's `hash/fnv.New32a`.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A DNS-1123 label: what the API server requires of a namespace name (and shell-safe).
pub fn is_dns1123_label(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN && is_label_shaped(name)
}

/// A DNS-1123 subdomain, as Kubernetes' `IsDNS1123Subdomain` checks it: what the API
/// server requires of a claim's, a volume's or a Deployment's name. At most 253 bytes of
/// label-shaped parts joined by dots, each of any length (Kubernetes' pattern bounds only
/// the whole); shell-safe.
pub fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_label_shaped)
}

/// Lowercase letters, digits and '-', not empty, not starting or ending with '-'.
fn is_label_shaped(part: &str) -> bool {
    let bytes = part.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The deployed namespace of a sub-env stack, from its labels.
///
/// simple-container writes app-name as `sanitize(<stack>-<env>)`, so its namespace is
/// `sanitize(app-name)`: such an app-name ends with `-<env>`, or, past 63 bytes, was
/// truncated and hashed (`...-1a2b`). A person writing the labels by hand gives the stack
/// name alone (`app-name: pay-space-wallet`, `env: tenant-a`); its namespace is then the
/// one simple-container makes for that stack and env, the answer of `nsguard ns-name`.
/// `None` when the app-name has no valid character.
pub fn target_namespace<'a>(
    app_name: &'a str,
    env: &str,
    parent_env: &str,
) -> Option<Cow<'a, str>> {
    let app = sanitize(app_name);
    if app.is_empty() {
        return None;
    }
    let env_part = sanitize(env);
    // Sanitizing is not idempotent on runs of hyphens, so compare before and after.
    let env_again = sanitize(&env_part);
    let suffixed = [app_name, &*app].into_iter().any(|name| {
        [&*env_part, &*env_again].into_iter().any(|env| {
            name.strip_suffix(env)
                .is_some_and(|stack| stack.ends_with('-'))
        })
    });
    if suffixed || env_part.is_empty() || hashed(&app) {
        return Some(app);
    }
    deployed_namespace(app_name, env, parent_env)
        .ok()
        .map(Cow::Owned)
}

/// Whether a sanitized name is one `sanitize` truncated and hashed: long, ending in `-`
/// and four hex digits.
fn hashed(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() > 32
        && bytes[bytes.len() - 5] == b'-'
        && bytes[bytes.len() - 4..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// As Kubernetes' validation: a subdomain's parts are not bound to 63 bytes (a claim
    /// named with 70 letters exists), only the whole to 253; a label is bound to 63.
    #[test]
    fn subdomains_and_labels_as_kubernetes_bounds_them() {
        let seventy = "a".repeat(70);
        assert!(is_dns1123_subdomain(&seventy));
        assert!(!is_dns1123_label(&seventy));
        assert!(is_dns1123_subdomain(&format!("{}.b", "a".repeat(251))));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        for bad in [
            "", "a..b", ".a", "a.", "-a", "a-", "a.-b", "A", "a_b", "a,b", "a b",
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
        }
        assert!(is_dns1123_subdomain("data-0.shop"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// The borrowed fast path is exactly the names the full algorithm leaves as they
        /// are, and gives the same answer.
        #[test]
        fn borrowed_exactly_when_already_sanitized(
            name in prop_oneof!["[a-z0-9-]{0,70}", "[a-zA-Z0-9_.-]{0,70}", any::<String>()]
        ) {
            let full = sanitize_owned(&name);
            let fast = sanitize(&name);
            prop_assert_eq!(fast.as_ref(), full.as_str());
            prop_assert_eq!(matches!(fast, Cow::Borrowed(_)), full == name);
        }
    }

    #[test]
    fn collapsing_is_one_non_overlapping_pass() {
        for s in [
            "", "-", "--", "---", "----", "a--b", "a---b", "a----b", "-a--", "abc",
        ] {
            assert_eq!(collapse_double_hyphens(s), s.replace("--", "-"), "{s:?}");
        }
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Reference values of the FNV-1a 32-bit test suite.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn upstream_table() {
        let table = [
            ("myapp", "staging", "", "myapp"),
            ("myapp", "production", "production", "myapp"),
            ("myapp", "tenant-a", "production", "myapp-tenant-a"),
            ("my_app", "tenant-a", "production", "my-app-tenant-a"),
            ("MyApp", "TenantA", "production", "myapp-tenanta"),
            ("api", "staging-pr-123", "staging", "api-staging-pr-123"),
            ("myapp", "preview-test", "production", "myapp-preview-test"),
            ("myapp", "tenant-b", "production", "myapp-tenant-b"),
        ];
        for (base, env, parent, want) in table {
            assert_eq!(
                generate_namespace_name(base, env, parent).unwrap(),
                want,
                "{base}/{env}/{parent}"
            );
            assert_eq!(deployed_namespace(base, env, parent).unwrap(), want);
        }
    }

    #[test]
    fn sanitizer_examples() {
        assert_eq!(sanitize("--Foo_Bar--"), "foo-bar");
        assert_eq!(sanitize("My.App"), "myapp");
        assert_eq!(sanitize("a---b"), "a--b");
        assert_eq!(sanitize("a----b"), "a--b");
        assert_eq!(sanitize("a-----b"), "a---b");
        assert_eq!(sanitize("a__b"), "a-b");
        assert_eq!(sanitize(""), "");
        assert_eq!(sanitize("...___..."), "");
        // Non-ASCII: dotted capital I lowercases to `i` + combining dot; the dot goes.
        assert_eq!(sanitize("İstanbul"), "istanbul");
        // Kelvin sign lowercases to ASCII `k`.
        assert_eq!(sanitize("\u{212A}ube"), "kube");
        assert_eq!(sanitize("Ünïcödé-ñame"), "ncd-ame");
    }

    #[test]
    fn long_names_hash_the_full_string_before_collapsing() {
        let long = "a".repeat(70);
        let hash = fnv1a32(long.as_bytes()) & 0xFFFF;
        assert_eq!(sanitize(&long), format!("{}-{hash:04x}", "a".repeat(58)));

        // The 58-byte prefix ends in a hyphen: it is trimmed before the hash is added.
        let with_dash = format!("{}-{}", "b".repeat(57), "c".repeat(20));
        let hash = fnv1a32(with_dash.as_bytes()) & 0xFFFF;
        assert_eq!(
            sanitize(&with_dash),
            format!("{}-{hash:04x}", "b".repeat(57))
        );

        // `--` inside a long name: hashed with the double hyphen, collapsed after.
        let doubled = format!("{}--{}", "d".repeat(30), "e".repeat(40));
        let hash = fnv1a32(doubled.as_bytes()) & 0xFFFF;
        let out = sanitize(&doubled);
        assert_eq!(
            out,
            format!("{}-{}-{hash:04x}", "d".repeat(30), "e".repeat(26))
        );
        assert!(out.len() <= MAX_NAME_LEN);
    }

    #[test]
    fn deployed_differs_only_for_hyphen_runs() {
        assert_eq!(generate_namespace_name("a---b", "x", "").unwrap(), "a--b");
        assert_eq!(deployed_namespace("a---b", "x", "").unwrap(), "a-b");
    }

    #[test]
    fn empty_results_are_errors() {
        assert!(generate_namespace_name("", "staging", "").is_err());
        assert!(deployed_namespace("___", "", "").is_err());
        // A custom stack with an empty base still has its env suffix.
        assert_eq!(
            deployed_namespace("", "tenant-a", "prod").unwrap(),
            "tenant-a"
        );
    }

    #[test]
    fn custom_stack_rule_is_raw_and_case_sensitive() {
        assert!(!is_custom_stack("staging", ""));
        assert!(!is_custom_stack("prod", "prod"));
        assert!(is_custom_stack("Prod", "prod"));
        assert!(is_custom_stack("tenant-a", "production"));
    }
}
