//! Where a sub-env object belongs, decided over plain data.
//!
//! The target is the namespace simple-container deploys the object's stack into. For a
//! custom stack with the default base (the stack name), simple-container writes
//! `app-name = sanitize(stack + "-" + stackEnv)` and creates the namespace
//! `sanitize(sanitize(stack + "-" + stackEnv))`, so the target is `sanitize(app-name)`.
//! It is derived from the labels alone and never from the namespace the object is in:
//! suffixing the current namespace is how `myapp-tenant-a-tenant-a` happens.
//!
//! Two kinds of objects are never judged: those a controller owns (an ownerReference with
//! `controller: true`: a ReplicaSet or Pod follows its Deployment, and denying the
//! controller's writes would break rollouts of stacks already deployed), and those that
//! opt out with [`SKIP_ANNOTATION`] (stacks with an explicit simple-container namespace,
//! whose target the labels cannot reveal).

use std::fmt;

use serde::Serialize;

use crate::simple_container::labels::{LabelScheme, Owner, StringMap};
use crate::simple_container::naming::target_namespace;

/// `nsguard.dev/skip-placement: "true"` on an object exempts it from placement.
pub const SKIP_ANNOTATION: &str = "nsguard.dev/skip-placement";

/// What the webhook does with a misplaced sub-env object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementMode {
    /// `/mutate` answers with a JSONPatch to the target namespace (for clients that apply
    /// it; a live kube-apiserver refuses to store the moved object).
    Rewrite,
    /// `/validate` denies, naming the target namespace and the fix.
    Enforce,
    /// `/validate` allows with a warning that kubectl prints.
    #[default]
    Warn,
    /// Placement is not checked.
    Off,
}

/// The outcome of [`place`] for one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "placement", rename_all = "kebab-case")]
pub enum Placement {
    /// A standard object, or one without simple-container labels: never touched.
    NotSubEnv,
    /// A sub-env object already in its deployed namespace (the one it was checked
    /// against). Deciding this allocates nothing: it is the common case.
    Placed,
    /// A sub-env object outside its deployed namespace.
    Misplaced(Misplacement),
    /// Sub-env labels from which no namespace can be computed (the app-name has no
    /// valid character). Left alone, and said so, rather than guessed at.
    Unresolvable { owner: Owner, reason: String },
}

/// A sub-env object in the wrong namespace, with everything a message needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Misplacement {
    pub owner: Owner,
    pub parent_env: String,
    /// The namespace it is in; empty when a manifest names none.
    pub current: String,
    pub target: String,
}

impl fmt::Display for Misplacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sub-env stack {} (app-name {:?}, env {:?}, parent-env {:?}) belongs in namespace {:?}, ",
            self.owner, self.owner.app_name, self.owner.env, self.parent_env, self.target
        )?;
        match self.current.as_str() {
            "" => f.write_str("and names no namespace"),
            current => write!(f, "not {current:?}"),
        }
    }
}

impl Misplacement {
    /// The denial for `enforce` mode: what, where, where instead, and the fix.
    pub fn denial(&self, kind: &str, name: &str) -> String {
        format!(
            "nsguard: {kind} {name:?} is in the wrong namespace: {self}. \
             Fix: a new sub-env, deploy it with simple-container {release}, which creates {target:?}, \
             or run `nsguard rewrite -f <manifests>` before applying them. A sub-env that already \
             runs outside {target:?}: {how}.",
            release = crate::simple_container::releases::KEEPS_NAMESPACE.to_owned() + " or later",
            how = crate::simple_container::releases::how_to_move(
                &format!("{}/{}", self.owner.app_name, self.owner.env),
                true
            ),
            target = self.target,
        )
    }

    /// The short warning for `warn` mode (kubectl prints it as `Warning: ...`). Written
    /// piece by piece: it is built for every misplaced write, and `{:?}` escapes
    /// character by character what is almost always plain ASCII.
    pub fn warning(&self, kind: &str, name: &str) -> String {
        let mut out = String::with_capacity(
            96 + kind.len() + name.len() + 2 * self.target.len() + self.current.len(),
        );
        out.push_str("nsguard: ");
        out.push_str(kind);
        out.push(' ');
        push_quoted(&mut out, name);
        out.push_str(" of sub-env ");
        out.push_str(&self.owner.app_name);
        out.push('/');
        out.push_str(&self.owner.env);
        out.push_str(" belongs in namespace ");
        push_quoted(&mut out, &self.target);
        out.push_str(", not ");
        push_quoted(&mut out, &self.current);
        out
    }

    /// The JSONPatch that moves the object: `replace` when the object names a namespace,
    /// `add` when it names none. Nothing else changes.
    pub fn patch(&self, has_namespace: bool) -> json_patch::Patch {
        let path = json_patch::jsonptr::PointerBuf::from_tokens(["metadata", "namespace"]);
        let value = serde_json::Value::String(self.target.clone());
        let op = if has_namespace {
            json_patch::PatchOperation::Replace(json_patch::ReplaceOperation { path, value })
        } else {
            json_patch::PatchOperation::Add(json_patch::AddOperation { path, value })
        };
        json_patch::Patch(vec![op])
    }
}

/// Append `s` as `{s:?}` would, without the per-character escaping when none is needed.
fn push_quoted(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        use fmt::Write as _;
        let _ = write!(out, "{s:?}");
    }
}

/// What `warn`, `enforce` and `rewrite` say of a sub-env object whose namespace cannot be
/// computed: it is left where it is.
pub fn unresolvable_warning(kind: &str, name: &str, owner: &Owner, reason: &str) -> String {
    format!(
        "nsguard: {kind} {name:?} of sub-env {owner}: {reason}; nsguard cannot tell which namespace it belongs in and leaves it where it is"
    )
}

/// Whether placement leaves an object alone whatever its labels: controller-owned
/// objects and objects with the skip annotation.
pub fn exempt(annotations: Option<&dyn StringMap>, controller_owned: bool) -> bool {
    controller_owned
        || annotations
            .and_then(|a| a.get_str(SKIP_ANNOTATION))
            .is_some_and(|v| v == "true")
}

/// Decide where an object with these labels belongs, given the namespace it is in.
pub fn place<M: StringMap + ?Sized>(
    scheme: &LabelScheme,
    labels: &M,
    namespace: &str,
) -> Placement {
    let Some(stack) = scheme.read(labels).filter(|s| s.is_sub_env()) else {
        return Placement::NotSubEnv;
    };
    let parent_env = stack.parent_env.unwrap_or_default();
    let Some(target) = target_namespace(stack.app_name, stack.env, parent_env) else {
        return Placement::Unresolvable {
            owner: stack.owner(),
            reason: format!(
                "app-name {:?} sanitizes to an empty namespace name",
                stack.app_name
            ),
        };
    };
    if target == namespace {
        Placement::Placed
    } else {
        Placement::Misplaced(Misplacement {
            owner: stack.owner(),
            parent_env: parent_env.to_owned(),
            current: namespace.to_owned(),
            target: target.into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simple_container::naming::deployed_namespace;
    use crate::simple_container::naming::sanitize;
    use std::collections::BTreeMap;

    fn sub_env(app: &str, env: &str, parent: &str) -> BTreeMap<String, String> {
        [
            ("simple-container-com/app-name", app),
            ("simple-container-com/env", env),
            ("simple-container-com/parent-env", parent),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn quoting_matches_debug() {
        for s in [
            "",
            "plain-name",
            "with \"quotes\"",
            "back\\slash",
            "tab\there",
            "ünïcode",
            "x\u{7f}",
        ] {
            let mut out = String::new();
            push_quoted(&mut out, s);
            assert_eq!(out, format!("{s:?}"));
        }
    }

    #[test]
    fn warning_names_the_object_the_stack_and_both_namespaces() {
        let scheme = LabelScheme::default();
        let Placement::Misplaced(m) = place(
            &scheme,
            &sub_env("myapp-tenant-a", "tenant-a", "production"),
            "myapp",
        ) else {
            panic!("misplaced")
        };
        assert_eq!(
            m.warning("Deployment", "web"),
            r#"nsguard: Deployment "web" of sub-env myapp-tenant-a/tenant-a belongs in namespace "myapp-tenant-a", not "myapp""#
        );
    }

    #[test]
    fn legacy_shared_namespace_is_misplaced() {
        let scheme = LabelScheme::default();
        let got = place(
            &scheme,
            &sub_env("myapp-tenant-a", "tenant-a", "production"),
            "myapp",
        );
        let Placement::Misplaced(m) = got else {
            panic!("expected misplaced, got {got:?}")
        };
        assert_eq!(m.target, "myapp-tenant-a");
        assert_eq!(m.current, "myapp");
        assert_eq!(m.parent_env, "production");
    }

    #[test]
    fn already_placed_is_never_suffixed_again() {
        let scheme = LabelScheme::default();
        let got = place(
            &scheme,
            &sub_env("myapp-tenant-a", "tenant-a", "production"),
            "myapp-tenant-a",
        );
        assert_eq!(got, Placement::Placed);
    }

    #[test]
    fn standard_objects_are_untouched() {
        let scheme = LabelScheme::default();
        let parent = sub_env("myapp", "production", "production");
        assert_eq!(place(&scheme, &parent, "elsewhere"), Placement::NotSubEnv);
        assert_eq!(
            place(&scheme, &BTreeMap::<String, String>::new(), "x"),
            Placement::NotSubEnv
        );
    }

    #[test]
    fn target_agrees_with_deployed_namespace_of_the_stack() {
        // app-name is what simple-container writes: sanitize(stack-env), hashed when long.
        for (stack, env) in [
            ("MyApp", "TenantA"),
            ("my_app", "tenant-a"),
            ("a---b", "x"),
            (&"long-stack-name".repeat(5) as &str, "tenant-a"),
            (&"long-stack-name".repeat(4) as &str, "preview-pr-1234"),
        ] {
            let app_name = sanitize(&format!("{stack}-{env}")).into_owned();
            assert_eq!(
                target_namespace(&app_name, env, "production").unwrap(),
                deployed_namespace(stack, env, "production").unwrap(),
                "{stack}/{env}"
            );
        }
    }

    /// Labels written by hand name the stack, not the stack-env: the target is what
    /// `nsguard ns-name --base <app-name> --stack-env <env> --parent-env <parent>` prints.
    /// Before, such an object in the stack's own namespace passed without a word.
    #[test]
    fn hand_written_labels_name_the_stack_and_get_ns_names_answer() {
        let scheme = LabelScheme::default();
        let labels = sub_env("pay-space-wallet", "tenant-a", "production");
        let got = place(&scheme, &labels, "pay-space-wallet");
        let Placement::Misplaced(m) = got else {
            panic!("expected misplaced, got {got:?}")
        };
        assert_eq!(m.target, "pay-space-wallet-tenant-a");
        assert_eq!(
            m.target,
            deployed_namespace("pay-space-wallet", "tenant-a", "production").unwrap()
        );
        assert_eq!(
            place(&scheme, &labels, "pay-space-wallet-tenant-a"),
            Placement::Placed
        );
    }

    #[test]
    fn patch_moves_only_the_namespace() {
        let scheme = LabelScheme::default();
        let Placement::Misplaced(m) = place(
            &scheme,
            &sub_env("myapp-tenant-a", "tenant-a", "production"),
            "myapp",
        ) else {
            panic!()
        };
        let mut object = serde_json::json!({"kind": "Service", "metadata": {"name": "x", "namespace": "myapp"}, "spec": {"a": 1}});
        let original = object.clone();
        json_patch::patch(&mut object, &m.patch(true)).unwrap();
        assert_eq!(object["metadata"]["namespace"], "myapp-tenant-a");
        object["metadata"]["namespace"] = original["metadata"]["namespace"].clone();
        assert_eq!(object, original);
        assert_eq!(
            serde_json::to_value(m.patch(true)).unwrap(),
            serde_json::json!([{"op": "replace", "path": "/metadata/namespace", "value": "myapp-tenant-a"}])
        );
        let mut bare = serde_json::json!({"metadata": {"name": "x"}});
        json_patch::patch(&mut bare, &m.patch(false)).unwrap();
        assert_eq!(bare["metadata"]["namespace"], "myapp-tenant-a");
        assert!(m.denial("Deployment", "x").contains("\"myapp-tenant-a\""));
        assert!(m.warning("Deployment", "x").len() < 256);
    }

    #[test]
    fn controller_owned_and_opted_out_objects_are_exempt() {
        assert!(exempt(None, true));
        assert!(!exempt(None, false));
        let skip = BTreeMap::from([(SKIP_ANNOTATION.to_owned(), "true".to_owned())]);
        assert!(exempt(Some(&skip), false));
        let no = BTreeMap::from([(SKIP_ANNOTATION.to_owned(), "false".to_owned())]);
        assert!(!exempt(Some(&no), false));
    }

    #[test]
    fn unresolvable_app_name_is_reported_not_guessed() {
        let scheme = LabelScheme::default();
        let got = place(&scheme, &sub_env("___", "tenant-a", "production"), "myapp");
        assert!(matches!(got, Placement::Unresolvable { .. }), "{got:?}");
    }
}
