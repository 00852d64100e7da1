//! Placement as a ValidatingAdmissionPolicy (issue #41): the API server itself computes a
//! sub-env object's namespace in CEL and refuses (or warns about) a create elsewhere, with
//! no network hop and nothing to be down. Generated from the same sources as the webhook:
//! the label scheme's generations (read newest first, as [`LabelScheme::read`] does),
//! simple-container's naming ([`crate::simple_container::naming::target_namespace`],
//! sanitize spelled in CEL), placement's exemptions ([`placement::exempt`]) and its
//! messages ([`Misplacement::denial`], [`Misplacement::warning`], cut where the object's
//! values go).
//!
//! What CEL cannot compute it leaves to the webhook: a stack-plus-env name longer than 63
//! bytes after sanitizing, which simple-container truncates and hashes (FNV-1a; CEL has
//! no hash). Label values are ASCII (Kubernetes' label value syntax), so `lowerAscii`
//! lowercases them exactly as Go's `strings.ToLower` does.

use serde_json::{Value, json};

use crate::decisions::placement::{Misplacement, PlacementMode, SKIP_ANNOTATION};
use crate::simple_container::labels::{LabelScheme, Owner};
use crate::simple_container::naming::MAX_NAME_LEN;

/// The policy's and its binding's name.
pub const POLICY_NAME: &str = "nsguard-placement";

/// What the policy does not judge, as the webhook's `namespaceSelector` says.
pub const EXCLUDED_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-node-lease",
    "kube-public",
    "nsguard-system",
];

/// The ValidatingAdmissionPolicy and its binding for `mode` (a `List`, for `kubectl
/// apply -f -`): `Deny` in `enforce`, `Warn` in `warn`. `None` for `rewrite` and `off`:
/// a rewrite is a mutation, which a validating policy cannot make.
pub fn policy(scheme: &LabelScheme, mode: PlacementMode) -> Option<Value> {
    let (action, message) = match mode {
        PlacementMode::Enforce => ("Deny", denial_cel()),
        PlacementMode::Warn => ("Warn", warning_cel()),
        PlacementMode::Rewrite | PlacementMode::Off => return None,
    };
    let labels = "object.metadata.labels";
    let has = |key: &str| format!("{labels}[{}]", cel_string(key));
    let present = |key: &str| format!("{} in {labels} && {} != ''", cel_string(key), has(key));
    let generations = scheme.generations();
    // `gN`: generation N carries both app-name and env (LabelScheme::read's rule).
    let mut variables: Vec<Value> = generations
        .iter()
        .enumerate()
        .map(|(n, keys)| {
            variable(
                &format!("g{n}"),
                format!(
                    "has({labels}) && {} && {}",
                    present(&keys.app_name),
                    present(&keys.env)
                ),
            )
        })
        .collect();
    // The newest generation that matched, its values: a chain of conditionals.
    let pick = |value: &dyn Fn(usize) -> String| {
        (0..generations.len())
            .rev()
            .fold("''".to_owned(), |rest, n| {
                format!("variables.g{n} ? {} : {rest}", value(n))
            })
    };
    let app = pick(&|n| has(&generations[n].app_name));
    let env = pick(&|n| has(&generations[n].env));
    let parent = pick(&|n| {
        let key = &generations[n].parent_env;
        format!("({} in {labels} ? {} : '')", cel_string(key), has(key))
    });
    variables.extend([
        variable("app", app),
        variable("env", env),
        variable("parentEnv", parent),
        // simple-container's sanitize up to its truncation: lowercase, `_` to `-`, keep
        // [a-z0-9-], trim to the first and last alphanumeric; then `--` to `-` once.
        variable("appS", sanitize_cel("variables.app")),
        variable("envS", sanitize_cel("variables.env")),
        // sanitize(sanitize(env)): a second `--` pass (the first leaves no edge hyphen).
        variable("envS2", "variables.envS.replace('--', '-')".to_owned()),
        // stack + "-" + env, sanitized up to the truncation.
        variable(
            "rawTrimmed",
            trimmed_cel("(variables.app + '-' + variables.env)"),
        ),
        variable(
            "suffixed",
            ["variables.envS", "variables.envS2"]
                .map(|e| {
                    format!(
                        "({e} != '' && (variables.app.endsWith('-' + {e}) || variables.appS.endsWith('-' + {e})))"
                    )
                })
                .join(" || "),
        ),
        variable(
            "hashed",
            "variables.appS.matches('^.{28,}-[0-9a-f]{4}$')".to_owned(),
        ),
        // What simple-container names it, when CEL can say: the app-name it wrote, or
        // the stack's namespace for that env (sanitized twice).
        variable(
            "ownForm",
            "variables.suffixed || variables.envS == '' || variables.hashed".to_owned(),
        ),
        variable(
            "computable",
            format!(
                "variables.appS != '' && (variables.ownForm || size(variables.rawTrimmed) <= {MAX_NAME_LEN})"
            ),
        ),
        variable(
            "target",
            "variables.ownForm ? variables.appS : variables.rawTrimmed.replace('--', '-').replace('--', '-')"
                .to_owned(),
        ),
    ]);
    let parent_keys: Vec<String> = generations
        .iter()
        .map(|keys| format!("{} in {labels}", cel_string(&keys.parent_env)))
        .collect();
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME, "labels": {"app.kubernetes.io/name": "nsguard"}},
        "spec": {
            // As the placement webhooks: advice that must not block deployments on a
            // policy error; a misplaced object is still refused when CEL answers.
            "failurePolicy": "Ignore",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "resourceRules": [{
                    "apiGroups": ["*"], "apiVersions": ["*"], "operations": ["CREATE"],
                    "resources": ["*"], "scope": "Namespaced",
                }],
                "namespaceSelector": {"matchExpressions": [{
                    "key": "kubernetes.io/metadata.name", "operator": "NotIn",
                    "values": EXCLUDED_NAMESPACES,
                }]},
            },
            "matchConditions": [
                {
                    // The webhooks' objectSelector: some generation's parent-env label.
                    "name": "has-parent-env-label",
                    "expression": format!("has({labels}) && ({})", parent_keys.join(" || ")),
                },
                {
                    // placement::exempt: a controller's object follows its controller.
                    "name": "not-controller-owned",
                    "expression": "!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists(r, has(r.controller) && r.controller)",
                },
                {
                    "name": "not-skipped",
                    "expression": format!(
                        "!has(object.metadata.annotations) || !({key} in object.metadata.annotations && object.metadata.annotations[{key}] == 'true')",
                        key = cel_string(SKIP_ANNOTATION)
                    ),
                },
                {
                    "name": "not-being-deleted",
                    "expression": "!has(object.metadata.deletionTimestamp)",
                },
            ],
            "variables": variables,
            "validations": [{
                // Not a sub-env, a namespace CEL cannot compute (the webhook's), or in place.
                "expression": "!(variables.app != '' && variables.parentEnv != '' && variables.parentEnv != variables.env) || !variables.computable || variables.target == request.namespace",
                "messageExpression": message,
                "reason": "Forbidden",
            }],
        },
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME, "labels": {"app.kubernetes.io/name": "nsguard"}},
        "spec": {"policyName": POLICY_NAME, "validationActions": [action]},
    });
    Some(json!({"apiVersion": "v1", "kind": "List", "items": [policy, binding]}))
}

/// The shipped placement webhooks, one per label generation of the default scheme.
pub const PLACEMENT_WEBHOOKS: [&str; 3] = [
    "placement.nsguard.dev",
    "placement-dot.nsguard.dev",
    "placement-legacy.nsguard.dev",
];

/// A strategic-merge patch of the shipped ValidatingWebhookConfiguration that gives each
/// placement webhook a `matchCondition`, so that beside the policy the API server calls
/// nsguard only where CEL may not name the namespace: some generation's app-name and env
/// together 63 bytes or more, where simple-container may truncate and hash the stack-env
/// name. (A superset: a long name CEL can name is answered by both, the same way. Label
/// values always hold an alphanumeric, so an app-name never sanitizes to nothing.)
pub fn webhook_match_conditions(scheme: &LabelScheme) -> Value {
    let labels = "object.metadata.labels";
    let long: Vec<String> = scheme
        .generations()
        .iter()
        .map(|keys| {
            let (app, env) = (cel_string(&keys.app_name), cel_string(&keys.env));
            format!(
                "({app} in {labels} && {env} in {labels} && size({labels}[{app}]) + size({labels}[{env}]) >= {MAX_NAME_LEN})"
            )
        })
        .collect();
    let condition = json!({
        "name": "cel-may-not-name-the-namespace",
        "expression": format!("has({labels}) && ({})", long.join(" || ")),
    });
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "nsguard"},
        "webhooks": PLACEMENT_WEBHOOKS
            .map(|name| json!({"name": name, "matchConditions": [condition.clone()]})),
    })
}

fn variable(name: &str, expression: String) -> Value {
    json!({"name": name, "expression": expression})
}

/// simple-container's sanitize of `expr` without step 4 (truncation): what it is for
/// every value of at most 63 bytes after step 3.
fn sanitize_cel(expr: &str) -> String {
    format!("{}.replace('--', '-')", trimmed_cel(expr))
}

/// Steps 1 to 3 of sanitize: lowercase, `_` to `-`, keep `[a-z0-9-]`, trim hyphens.
fn trimmed_cel(expr: &str) -> String {
    format!(
        "{expr}.lowerAscii().replace('_', '-').findAll('[a-z0-9-]+').join('').find('[a-z0-9](.*[a-z0-9])?')"
    )
}

/// A CEL string literal of `s`.
fn cel_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Markers put where the object's values go, to cut the webhook's own messages into the
/// CEL that rebuilds them. Valid label values and names are quoted by `{:?}` as they are.
const MARKS: [(&str, &str); 7] = [
    ("zqkindqz", "request.kind.kind"),
    ("zqnameqz", "object.metadata.name"),
    ("zqappqz", "variables.app"),
    ("zqenvqz", "variables.env"),
    ("zqparentqz", "variables.parentEnv"),
    ("zqtargetqz", "variables.target"),
    ("zqcurrentqz", "request.namespace"),
];

fn marked() -> Misplacement {
    Misplacement {
        owner: Owner::new("zqappqz", "zqenvqz"),
        parent_env: "zqparentqz".to_owned(),
        current: "zqcurrentqz".to_owned(),
        target: "zqtargetqz".to_owned(),
    }
}

/// The webhook's denial in `enforce` mode, as a CEL expression.
fn denial_cel() -> String {
    to_cel(&marked().denial("zqkindqz", "zqnameqz"))
}

/// The webhook's warning in `warn` mode, as a CEL expression.
fn warning_cel() -> String {
    to_cel(&marked().warning("zqkindqz", "zqnameqz"))
}

/// `text` as a concatenation of literals and the expressions its markers stand for.
fn to_cel(text: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let next = MARKS
            .iter()
            .filter_map(|(mark, expr)| rest.find(mark).map(|at| (at, *mark, *expr)))
            .min_by_key(|(at, ..)| *at);
        match next {
            Some((at, mark, expr)) => {
                if at > 0 {
                    parts.push(cel_string(&rest[..at]));
                }
                parts.push(expr.to_owned());
                rest = &rest[at + mark.len()..];
            }
            None => {
                parts.push(cel_string(rest));
                rest = "";
            }
        }
    }
    parts.join(" + ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_are_the_webhooks_with_the_values_put_back() {
        let cel = denial_cel();
        assert!(cel.starts_with("'nsguard: ' + request.kind.kind + ' \"' + object.metadata.name + '\" is in the wrong namespace: sub-env stack ' + variables.app + '/' + variables.env"), "{cel}");
        assert!(cel.contains("variables.target") && cel.contains("request.namespace"));
        assert!(!cel.contains("zq"), "a marker left in {cel}");
        let release = crate::simple_container::releases::KEEPS_NAMESPACE;
        assert!(cel.contains(&format!("{release} or later")), "{cel}");
        let warn = warning_cel();
        assert_eq!(
            warn,
            "'nsguard: ' + request.kind.kind + ' \"' + object.metadata.name + '\" of sub-env ' + variables.app + '/' + variables.env + ' belongs in namespace \"' + variables.target + '\", not \"' + request.namespace + '\"'"
        );
    }

    #[test]
    fn one_policy_reads_every_generation_newest_first_and_the_binding_follows_the_mode() {
        let scheme = LabelScheme::default();
        let list = policy(&scheme, PlacementMode::Enforce).unwrap();
        let policy = &list["items"][0];
        let variables = policy["spec"]["variables"].as_array().unwrap();
        let app = variables.iter().find(|v| v["name"] == "app").unwrap();
        assert_eq!(
            app["expression"],
            "variables.g0 ? object.metadata.labels['simple-container-com/app-name'] : variables.g1 ? object.metadata.labels['simple-container.com/app-name'] : variables.g2 ? object.metadata.labels['appName'] : ''"
        );
        let selector = &policy["spec"]["matchConditions"][0]["expression"];
        for key in [
            "'simple-container-com/parent-env'",
            "'simple-container.com/parent-env'",
            "'simplecontainer.com/parent-env'",
        ] {
            assert!(selector.as_str().unwrap().contains(key), "{selector}");
        }
        assert_eq!(
            list["items"][1]["spec"]["validationActions"],
            json!(["Deny"])
        );
        let warn = super::policy(&scheme, PlacementMode::Warn).unwrap();
        assert_eq!(
            warn["items"][1]["spec"]["validationActions"],
            json!(["Warn"])
        );
        assert!(super::policy(&scheme, PlacementMode::Rewrite).is_none());
        assert!(super::policy(&scheme, PlacementMode::Off).is_none());
    }

    #[test]
    fn cel_strings_escape_quotes_and_backslashes() {
        assert_eq!(cel_string(r"a'b\c"), r"'a\'b\\c'");
    }
}
