//! Reading simple-container's labels, in every key generation it has written.
//!
//! No label carries the stack name. A stack deployment (an *owner*) is the pair
//! (app-name, env); sibling sub-envs differ in both. Three generations of keys are
//! still found on live clusters, so the keys are data ([`LabelScheme`]), not constants.
//!
//! Rules for the ambiguous cases (also in the README):
//! - A label with an empty value counts as absent: it identifies nothing.
//! - An object is read through the **newest generation that carries both app-name and
//!   env**; its parent-env is read from that same generation. Keys of other generations
//!   on the same object are ignored, so a half-relabelled object cannot mix one
//!   generation's app-name with another's env.
//! - An object with no generation carrying both app-name and env has no owner.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Read access to a string map (labels, annotations) by key, whoever owns the strings:
/// the CLI and the dump hold `BTreeMap<String, String>`, the webhook's hot path holds
/// maps borrowed from the request body. The decisions read through this, so both share
/// one implementation. `Sync` so a request holding one can cross an `.await`.
pub trait StringMap: fmt::Debug + Sync {
    fn get_str(&self, key: &str) -> Option<&str>;
}

impl<K, V> StringMap for BTreeMap<K, V>
where
    K: Borrow<str> + Ord + fmt::Debug + Sync,
    V: AsRef<str> + fmt::Debug + Sync,
{
    fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).map(AsRef::as_ref)
    }
}

/// The three label keys of one simple-container generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelKeys {
    pub app_name: String,
    pub env: String,
    pub parent_env: String,
}

impl LabelKeys {
    pub fn new(app_name: &str, env: &str, parent_env: &str) -> Self {
        Self {
            app_name: app_name.to_owned(),
            env: env.to_owned(),
            parent_env: parent_env.to_owned(),
        }
    }
}

impl std::str::FromStr for LabelKeys {
    type Err = String;

    /// `APP_NAME_KEY,ENV_KEY,PARENT_ENV_KEY`, the form used by `--label-keys`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        match parts.as_slice() {
            [app, env, parent] if !app.is_empty() && !env.is_empty() && !parent.is_empty() => {
                Ok(Self::new(app, env, parent))
            }
            _ => Err(format!(
                "label keys {s:?} must be three non-empty keys: APP_NAME_KEY,ENV_KEY,PARENT_ENV_KEY"
            )),
        }
    }
}

/// The label generations nsguard reads, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelScheme {
    generations: Vec<LabelKeys>,
}

impl Default for LabelScheme {
    /// simple-container's three generations: current (2026-02-22 on), the one-day
    /// `simple-container.com/` keys of 2026-02-21, and the original camelCase keys.
    fn default() -> Self {
        Self {
            generations: vec![
                LabelKeys::new(
                    "simple-container-com/app-name",
                    "simple-container-com/env",
                    "simple-container-com/parent-env",
                ),
                LabelKeys::new(
                    "simple-container.com/app-name",
                    "simple-container.com/env",
                    "simple-container.com/parent-env",
                ),
                LabelKeys::new("appName", "appEnv", "simplecontainer.com/parent-env"),
            ],
        }
    }
}

impl LabelScheme {
    /// A scheme from explicit generations, newest first. `None` when the list is empty:
    /// a scheme that can read no label would silently allow every namespace deletion.
    pub fn new(generations: Vec<LabelKeys>) -> Option<Self> {
        (!generations.is_empty()).then_some(Self { generations })
    }

    pub fn generations(&self) -> &[LabelKeys] {
        &self.generations
    }

    /// The stack labels of an object, read by the rules in the module docs.
    pub fn read<'a, M>(&self, labels: &'a M) -> Option<StackLabels<'a>>
    where
        M: StringMap + ?Sized,
    {
        let value = |key: &str| labels.get_str(key).filter(|v| !v.is_empty());
        self.generations
            .iter()
            .enumerate()
            .find_map(|(generation, keys)| {
                Some(StackLabels {
                    app_name: value(&keys.app_name)?,
                    env: value(&keys.env)?,
                    parent_env: value(&keys.parent_env),
                    generation,
                })
            })
    }

    /// The owner of an object, if it carries one.
    pub fn owner<M: StringMap + ?Sized>(&self, labels: &M) -> Option<Owner> {
        self.read(labels).map(|stack| stack.owner())
    }
}

/// The simple-container labels found on one object, borrowed from its label map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackLabels<'a> {
    pub app_name: &'a str,
    pub env: &'a str,
    pub parent_env: Option<&'a str>,
    /// Index into [`LabelScheme::generations`] of the generation that matched.
    pub generation: usize,
}

impl StackLabels<'_> {
    pub fn owner(&self) -> Owner {
        Owner::new(self.app_name, self.env)
    }

    /// A sub-env (custom stack) object: parent-env present, non-empty and != env,
    /// the same rule as [`crate::simple_container::naming::is_custom_stack`].
    pub fn is_sub_env(&self) -> bool {
        self.parent_env.is_some_and(|parent| {
            crate::simple_container::naming::is_custom_stack(self.env, parent)
        })
    }
}

/// One stack deployment: the pair (app-name, env).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner {
    pub app_name: String,
    pub env: String,
}

impl Owner {
    pub fn new(app_name: &str, env: &str) -> Owner {
        Owner {
            app_name: app_name.to_owned(),
            env: env.to_owned(),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app_name, self.env)
    }
}

/// A sub-env, named by its three labels' values: what the audit, the migration and the
/// volume guard say a finding belongs to, and what `--stack APP/ENV/PARENT` names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackRef {
    pub app_name: String,
    pub env: String,
    pub parent_env: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_each_generation() {
        let scheme = LabelScheme::default();
        let current = labels(&[
            ("simple-container-com/app-name", "myapp-tenant-a"),
            ("simple-container-com/env", "tenant-a"),
            ("simple-container-com/parent-env", "production"),
        ]);
        let one_day = labels(&[
            ("simple-container.com/app-name", "myapp-tenant-a"),
            ("simple-container.com/env", "tenant-a"),
            ("simple-container.com/parent-env", "production"),
        ]);
        let legacy = labels(&[
            ("appName", "myapp-tenant-a"),
            ("appEnv", "tenant-a"),
            ("simplecontainer.com/parent-env", "production"),
        ]);
        for (generation, map) in [current, one_day, legacy].iter().enumerate() {
            let stack = scheme.read(map).expect("owned");
            assert_eq!(stack.generation, generation);
            assert_eq!(
                stack.owner(),
                Owner {
                    app_name: "myapp-tenant-a".into(),
                    env: "tenant-a".into()
                }
            );
            assert!(stack.is_sub_env());
        }
    }

    #[test]
    fn newest_complete_generation_wins_and_generations_do_not_mix() {
        let scheme = LabelScheme::default();
        // New app-name without new env: the legacy pair is the only complete one.
        let map = labels(&[
            ("simple-container-com/app-name", "new"),
            ("appName", "old"),
            ("appEnv", "prod"),
            ("simple-container-com/parent-env", "production"),
        ]);
        let stack = scheme.read(&map).unwrap();
        assert_eq!(
            (stack.app_name, stack.env, stack.generation),
            ("old", "prod", 2)
        );
        // parent-env is read from the matching (legacy) generation only.
        assert_eq!(stack.parent_env, None);
        assert!(!stack.is_sub_env());
    }

    #[test]
    fn empty_values_count_as_absent() {
        let scheme = LabelScheme::default();
        let map = labels(&[
            ("simple-container-com/app-name", ""),
            ("simple-container-com/env", "prod"),
        ]);
        assert_eq!(scheme.owner(&map), None);
        let map = labels(&[
            ("simple-container-com/app-name", "a"),
            ("simple-container-com/env", "prod"),
            ("simple-container-com/parent-env", ""),
        ]);
        assert!(!scheme.read(&map).unwrap().is_sub_env());
    }

    #[test]
    fn standard_objects_are_not_sub_envs() {
        let scheme = LabelScheme::default();
        let same_env = labels(&[
            ("simple-container-com/app-name", "myapp"),
            ("simple-container-com/env", "production"),
            ("simple-container-com/parent-env", "production"),
        ]);
        assert!(!scheme.read(&same_env).unwrap().is_sub_env());
        assert_eq!(scheme.read(&labels(&[("app", "x")])), None);
    }

    #[test]
    fn label_keys_parse_from_flag_form() {
        let keys: LabelKeys = "a/app, a/env ,a/parent".parse().unwrap();
        assert_eq!(keys, LabelKeys::new("a/app", "a/env", "a/parent"));
        assert!("a,b".parse::<LabelKeys>().is_err());
        assert!("a,,c".parse::<LabelKeys>().is_err());
        assert!(LabelScheme::new(vec![]).is_none());
    }
}
