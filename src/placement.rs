//! Where a sub-env object belongs, decided over plain data.
//!
//! The target is the namespace simple-container deploys the object's stack into. For a
//! custom stack with the default base (the stack name), simple-container writes
//! `app-name = sanitize(stack + "-" + stackEnv)` and creates the namespace
//! `sanitize(sanitize(stack + "-" + stackEnv))`, so the target is `sanitize(app-name)`.
//! It is derived from the labels alone and never from the namespace the object is in:
//! suffixing the current namespace is how `myapp-tenant-a-tenant-a` happens.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::labels::{LabelScheme, Owner};
use crate::naming::sanitize;

/// The outcome of [`place`] for one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "placement", rename_all = "kebab-case")]
pub enum Placement {
    /// A standard object, or one without simple-container labels: never touched.
    NotSubEnv,
    /// A sub-env object already in its deployed namespace.
    Placed { namespace: String },
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
        let current = if self.current.is_empty() {
            "no namespace"
        } else {
            &self.current
        };
        write!(
            f,
            "sub-env stack {} (app-name {:?}, env {:?}, parent-env {:?}) belongs in namespace {:?}, not {:?}",
            self.owner, self.owner.app_name, self.owner.env, self.parent_env, self.target, current
        )
    }
}

/// The deployed namespace of a sub-env stack, from its app-name label.
pub fn target_namespace(app_name: &str) -> Option<String> {
    Some(sanitize(app_name)).filter(|ns| !ns.is_empty())
}

/// Decide where an object with these labels belongs, given the namespace it is in.
pub fn place(
    scheme: &LabelScheme,
    labels: &BTreeMap<String, String>,
    namespace: &str,
) -> Placement {
    let Some(stack) = scheme.read(labels).filter(|s| s.is_sub_env()) else {
        return Placement::NotSubEnv;
    };
    let Some(target) = target_namespace(stack.app_name) else {
        return Placement::Unresolvable {
            owner: stack.owner(),
            reason: format!(
                "app-name {:?} sanitizes to an empty namespace name",
                stack.app_name
            ),
        };
    };
    if target == namespace {
        Placement::Placed { namespace: target }
    } else {
        Placement::Misplaced(Misplacement {
            owner: stack.owner(),
            parent_env: stack.parent_env.unwrap_or_default().to_owned(),
            current: namespace.to_owned(),
            target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::deployed_namespace;

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
        assert_eq!(
            got,
            Placement::Placed {
                namespace: "myapp-tenant-a".into()
            }
        );
    }

    #[test]
    fn standard_objects_are_untouched() {
        let scheme = LabelScheme::default();
        let parent = sub_env("myapp", "production", "production");
        assert_eq!(place(&scheme, &parent, "elsewhere"), Placement::NotSubEnv);
        assert_eq!(place(&scheme, &BTreeMap::new(), "x"), Placement::NotSubEnv);
    }

    #[test]
    fn target_agrees_with_deployed_namespace_of_the_stack() {
        // app-name is what simple-container writes: sanitize(stack-env).
        for (stack, env) in [
            ("MyApp", "TenantA"),
            ("my_app", "tenant-a"),
            ("a---b", "x"),
            (&"long-stack-name".repeat(5) as &str, "tenant-a"),
        ] {
            let app_name = sanitize(&format!("{stack}-{env}"));
            assert_eq!(
                target_namespace(&app_name).unwrap(),
                deployed_namespace(stack, env, "production").unwrap(),
                "{stack}/{env}"
            );
        }
    }

    #[test]
    fn unresolvable_app_name_is_reported_not_guessed() {
        let scheme = LabelScheme::default();
        let got = place(&scheme, &sub_env("___", "tenant-a", "production"), "myapp");
        assert!(matches!(got, Placement::Unresolvable { .. }), "{got:?}");
    }
}
