//! What a redeploy with simple-container does to a sub-env's namespace, by release, and
//! the move nsguard advises: the one place nsguard's messages name simple-container's
//! releases and its procedure, so that no two messages can disagree.
//!
//! From simple-container-com/api (docs/migration.md has the table and the sources):
//! - before 2026.5.8, a sub-env shares its parent's namespace;
//! - 2026.5.8 (PR #230) names a sub-env's namespace `<stack>-<stackEnv>` and keeps
//!   namespaces on destroy; for a sub-env deployed before it, the first `pulumi up`
//!   renames its Namespace, Pulumi replaces it, and deleting the old, shared namespace
//!   took every sibling with it (the outages of PR #255). nsguard's guard refuses that
//!   delete while two stacks are inside;
//! - 2026.5.12 (PR #255) ignores changes of the Namespace's name, and 2026.5.13 (PR #258)
//!   puts Secrets and Jobs in the live namespace: a sub-env deployed before 2026.5.8 stays
//!   in its parent's namespace for good. It moves only when its Namespace (logical name
//!   `<deployment>-ns`) is forgotten in its Pulumi state (stack `<stack>--<env>`); the next
//!   `sc deploy` then creates the Namespace at its own name and replaces every namespaced
//!   object into it, create before delete, claims included.

use std::fmt::Write as _;

use crate::simple_container::labels::StackRef;

/// The release that first names a sub-env's namespace for the sub-env (PR #230).
pub const ISOLATES: &str = "2026.5.8";
/// The last release whose first deploy of an older sub-env deletes the shared namespace.
pub const LAST_UNSAFE: &str = "2026.5.11";
/// The first release that keeps an existing Namespace where it is (PR #255).
pub const KEEPS_NAMESPACE: &str = "2026.5.12";

/// Which simple-container to run.
pub fn release() -> String {
    format!(
        "simple-container {KEEPS_NAMESPACE} or later (never {ISOLATES} to {LAST_UNSAFE} on a stack deployed before {ISOLATES}: its first deploy deletes the shared namespace)"
    )
}

/// How to move the sub-env `stack` (`APP-NAME/ENV`) into its own namespace, with its
/// volumes kept when it has any.
pub fn how_to_move(stack: &str, volumes: bool) -> String {
    if volumes {
        format!(
            "move it with {}: keep its volumes (`nsguard migrate plan --stack {stack}`), forget its Namespace in its Pulumi state (the plan prints the commands), `sc deploy`, then `sh migrate.sh after`",
            release()
        )
    } else {
        format!(
            "move it with {}: forget its Namespace in its Pulumi state (`nsguard migrate plan --stack {stack}` prints the commands), then `sc deploy`",
            release()
        )
    }
}

/// How to move every sub-env of a shared namespace.
pub fn how_to_move_each() -> String {
    format!(
        "move each sub-env to its own namespace with {}: forget its Namespace in its Pulumi state, then `sc deploy` (`nsguard migrate plan` prints the commands and keeps the volumes)",
        release()
    )
}

/// Why a redeploy alone leaves a sub-env where it is.
pub fn why_it_stays() -> String {
    format!(
        "simple-container {KEEPS_NAMESPACE} and later keep a sub-env in the namespace its Pulumi state names; a redeploy moves it only once its Namespace is forgotten in that state"
    )
}

/// The Pulumi state step of one sub-env's move: forget its Namespace resource, so that
/// the next `sc deploy` creates it at the sub-env's own name. nsguard never runs Pulumi:
/// these are lines for a person to read and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateStep {
    /// The Pulumi stack, `<stack>--<env>`.
    pub pulumi_stack: String,
    /// The Namespace's logical name, `<deployment>-ns`, when the sub-env's Deployment is
    /// known.
    pub resource: Option<String>,
}

impl StateStep {
    /// The step for `owner`, whose Deployments (names) are `deployments`.
    ///
    /// simple-container names the Pulumi stack `<stack>--<env>` (`StackNameInEnv`) and
    /// a sub-env's app-name label `<stack>-<env>` (its service name, suffixed): the stack
    /// is the app-name less that suffix, or the app-name itself when it has none. The
    /// Namespace's logical name is `<deployment>-ns`, from the Deployment simple-container
    /// made (named as the app-name; another one only when there is none of that name).
    pub fn of(owner: &StackRef, deployments: &[String]) -> StateStep {
        let stack = owner
            .app_name
            .strip_suffix(&owner.env)
            .and_then(|s| s.strip_suffix('-'))
            .filter(|s| !s.is_empty())
            .unwrap_or(&owner.app_name);
        let deployment = deployments
            .iter()
            .find(|d| **d == owner.app_name)
            .or_else(|| deployments.first());
        StateStep {
            pulumi_stack: format!("{stack}--{}", owner.env),
            resource: deployment.map(|d| format!("{d}-ns")),
        }
    }

    /// The step as shell comments, each command on a line of its own after `#   $ `.
    /// Every name is single-quoted; the caller has checked that each is a label value or
    /// a DNS-1123 name (no quote, no space).
    pub fn comment(&self) -> String {
        let stack = &self.pulumi_stack;
        let mut out = String::new();
        let file = format!("nsguard-{stack}.json");
        let _ = writeln!(
            out,
            "#   state step: forget the Namespace in Pulumi stack {stack} (`pulumi stack ls` lists it;\n#   simple-container names it <stack>--<env>), so that `sc deploy` creates it at its own name:"
        );
        match &self.resource {
            Some(resource) => {
                let _ = writeln!(
                    out,
                    "#   $ pulumi stack export --stack '{stack}' --file '{file}'\n#   $ jq --arg name '{resource}' '{}' '{file}' > 'forgotten-{file}'\n#   $ pulumi stack import --stack '{stack}' --file 'forgotten-{file}'",
                    FORGET_NAMESPACE
                );
                let _ = writeln!(
                    out,
                    "#   (the filter removes the one resource of type kubernetes:core/v1:Namespace whose URN ends\n#   in ::{resource}, and the other resources' references to it; it stops when there is not exactly\n#   one such resource. Keep '{file}': importing it undoes the step.)"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "#   no Deployment of it was found, so the Namespace's logical name (<deployment>-ns) is\n#   not known: `pulumi stack --stack '{stack}' --show-urns` lists it (type\n#   kubernetes:core/v1:Namespace); then export, filter as for the other sub-envs, import."
                );
            }
        }
        out
    }
}

/// The jq filter that forgets one Namespace resource (`$name`, its logical name) in an
/// exported Pulumi state: that resource out of `.deployment.resources`, and its URN out of
/// the others' `dependencies` and `propertyDependencies` (Pulumi refuses to import a state
/// that refers to a resource it does not hold); an error unless exactly one matched.
pub const FORGET_NAMESPACE: &str = "[.deployment.resources[] | select(.type == \"kubernetes:core/v1:Namespace\" and (.urn | endswith(\"::\" + $name))) | .urn] as $gone | if ($gone | length) != 1 then error(\"expected one Namespace resource named \" + $name + \", found \" + ($gone | length | tostring)) else . end | .deployment.resources |= map(select(.urn as $u | $gone | index($u) | not) | if .dependencies then .dependencies |= map(select(. as $d | $gone | index($d) | not)) else . end | if .propertyDependencies then .propertyDependencies |= map_values(map(select(. as $d | $gone | index($d) | not))) else . end)";

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(app_name: &str, env: &str) -> StackRef {
        StackRef {
            app_name: app_name.into(),
            env: env.into(),
            parent_env: "production".into(),
        }
    }

    #[test]
    fn the_pulumi_stack_and_the_namespace_resource_are_named_as_simple_container_names_them() {
        let step = StateStep::of(
            &owner("pay-space-wallet-tenant-a", "tenant-a"),
            &["pay-space-wallet-tenant-a".into()],
        );
        assert_eq!(step.pulumi_stack, "pay-space-wallet--tenant-a");
        assert_eq!(
            step.resource.as_deref(),
            Some("pay-space-wallet-tenant-a-ns")
        );
        // An app-name that is the stack alone (no -<env> suffix).
        let step = StateStep::of(&owner("shop", "tenant-a"), &[]);
        assert_eq!(step.pulumi_stack, "shop--tenant-a");
        assert_eq!(step.resource, None);
        // An app-name that is the env alone is not emptied.
        let step = StateStep::of(&owner("tenant-a", "tenant-a"), &["x".into()]);
        assert_eq!(step.pulumi_stack, "tenant-a--tenant-a");
        assert_eq!(step.resource.as_deref(), Some("x-ns"));
        // Only a whole -<env> suffix is the env's.
        assert_eq!(
            StateStep::of(&owner("shopxtenant-a", "tenant-a"), &[]).pulumi_stack,
            "shopxtenant-a--tenant-a"
        );
    }

    /// Every message that names a simple-container release takes it from here: no other
    /// source line (comments aside) spells one.
    #[test]
    fn no_other_code_names_a_simple_container_release() {
        fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("releases.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (n, line) in text.lines().enumerate() {
                        if !line.trim_start().starts_with("//") && line.contains("2026.5.") {
                            found.push(format!("{}:{}: {line}", path.display(), n + 1));
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn the_advice_names_the_safe_release_and_the_state_step() {
        let advice = how_to_move("shop-tenant-a/tenant-a", true);
        for needle in [
            "simple-container 2026.5.12 or later",
            "never 2026.5.8 to 2026.5.11",
            "nsguard migrate plan --stack shop-tenant-a/tenant-a",
            "forget its Namespace in its Pulumi state",
            "sh migrate.sh after",
        ] {
            assert!(advice.contains(needle), "{needle:?} not in {advice}");
        }
        assert!(!how_to_move("a/b", false).contains("migrate.sh after"));
    }
}
