//! The sub-env objects outside their namespace, kept by sub-env: the unit a person acts on
//! (`nsguard migrate plan --stack`), and compact, since a cluster that has not moved its
//! sub-envs yet holds nothing else (101,000 such objects in one cluster seen). Each object
//! costs its name and a small index; the stack, the namespaces and the types are kept once
//! per sub-env.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq};

use crate::simple_container::labels::StackRef;

/// A sub-env object outside its namespace, as placement judges it: what goes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MisplacedObject {
    pub namespace: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub owner: StackRef,
    pub target: String,
}

/// One misplaced object, as it is read back: borrowed from its [`MisplacedSubEnv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MisplacedRef<'a> {
    pub namespace: &'a str,
    pub api_version: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub owner: &'a StackRef,
    pub target: &'a str,
}

impl MisplacedRef<'_> {
    /// Whether it is a claim (`v1` PersistentVolumeClaim).
    pub fn is_claim(&self) -> bool {
        self.api_version == "v1" && self.kind == "PersistentVolumeClaim"
    }
}

/// Every object of one sub-env outside its namespace, in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MisplacedSubEnv {
    pub owner: StackRef,
    /// Where its objects are.
    pub namespace: String,
    /// Its own namespace, as simple-container names it.
    pub target: String,
    /// The (apiVersion, kind) of its objects, each once.
    types: Vec<(String, String)>,
    /// Its objects' names, one after another (no allocation of its own per name).
    names: String,
    /// Its objects, in the order read: their type (an index into `types`) and where their
    /// name ends in `names`. Eight bytes and the name's own: 100,000 objects take ~2.5 MB.
    objects: Vec<(u32, u32)>,
}

impl MisplacedSubEnv {
    /// `app-name/env`, as `nsguard migrate plan --stack` takes it.
    pub fn stack(&self) -> String {
        format!("{}/{}", self.owner.app_name, self.owner.env)
    }

    /// How many objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Its objects, in the order they were read.
    pub fn objects(&self) -> impl Iterator<Item = MisplacedRef<'_>> {
        let starts = std::iter::once(0).chain(self.objects.iter().map(|(_, end)| *end));
        self.objects.iter().zip(starts).map(|((kind, end), start)| {
            let (api_version, kind) = &self.types[*kind as usize];
            MisplacedRef {
                namespace: &self.namespace,
                api_version,
                kind,
                name: &self.names[start as usize..*end as usize],
                owner: &self.owner,
                target: &self.target,
            }
        })
    }

    /// Its claims' names.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        self.objects().filter(|o| o.is_claim()).map(|o| o.name)
    }

    /// How many objects of each kind (`Kind.group`, or `Kind` for the core group), most
    /// first, then by kind.
    pub fn by_kind(&self) -> Vec<(String, usize)> {
        let mut counts = vec![0usize; self.types.len()];
        for (kind, _) in &self.objects {
            counts[*kind as usize] += 1;
        }
        let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
        for ((api_version, kind), count) in self.types.iter().zip(counts) {
            let qualified =
                crate::documents::qualified_kind(kind, crate::documents::api_group(api_version));
            *by_kind.entry(qualified).or_default() += count;
        }
        let mut by_kind: Vec<(String, usize)> = by_kind.into_iter().collect();
        by_kind.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        by_kind
    }
}

/// Every objects of a sub-env, as JSON writes it: `{"apiVersion", "kind", "name"}` each,
/// written as they are serialized (never a copy of the list).
pub struct ObjectList<'a>(pub &'a MisplacedSubEnv);

impl Serialize for ObjectList<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for object in self.0.objects() {
            seq.serialize_element(&ObjectEntry(object))?;
        }
        seq.end()
    }
}

struct ObjectEntry<'a>(MisplacedRef<'a>);

impl Serialize for ObjectEntry<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("apiVersion", self.0.api_version)?;
        map.serialize_entry("kind", self.0.kind)?;
        map.serialize_entry("name", self.0.name)?;
        map.end()
    }
}

/// The misplaced objects of an inventory, by sub-env and namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Misplaced {
    sub_envs: Vec<Arc<MisplacedSubEnv>>,
    /// `namespace \0 app-name \0 env \0 target` → its index in `sub_envs`.
    index: HashMap<String, usize>,
}

impl Misplaced {
    /// Take in one misplaced object.
    pub fn push(&mut self, object: MisplacedObject) {
        let key = format!(
            "{}\0{}\0{}\0{}",
            object.namespace, object.owner.app_name, object.owner.env, object.target
        );
        let at = match self.index.get(&key) {
            Some(at) => *at,
            None => {
                self.sub_envs.push(Arc::new(MisplacedSubEnv {
                    owner: object.owner,
                    namespace: object.namespace,
                    target: object.target,
                    types: Vec::new(),
                    names: String::new(),
                    objects: Vec::new(),
                }));
                self.index.insert(key, self.sub_envs.len() - 1);
                self.sub_envs.len() - 1
            }
        };
        // Built here only: no other handle exists yet, so this never copies.
        let sub_env = Arc::make_mut(&mut self.sub_envs[at]);
        let kind = match (sub_env.types.iter())
            .position(|(v, k)| *v == object.api_version && *k == object.kind)
        {
            Some(kind) => kind,
            None => {
                sub_env.types.push((object.api_version, object.kind));
                sub_env.types.len() - 1
            }
        };
        sub_env.names.push_str(&object.name);
        // A name is at most 253 bytes; a sub-env's names past 4 GiB are not a cluster.
        let end = u32::try_from(sub_env.names.len()).unwrap_or(u32::MAX);
        sub_env.objects.push((kind as u32, end));
    }

    /// Give back the room kept for growth, once everything is read.
    pub fn shrink_to_fit(&mut self) {
        for sub_env in &mut self.sub_envs {
            let sub_env = Arc::make_mut(sub_env);
            sub_env.names.shrink_to_fit();
            sub_env.objects.shrink_to_fit();
        }
    }

    /// The sub-envs, in the order first seen.
    pub fn sub_envs(&self) -> &[Arc<MisplacedSubEnv>] {
        &self.sub_envs
    }

    /// Every misplaced object, sub-env by sub-env.
    pub fn iter(&self) -> impl Iterator<Item = MisplacedRef<'_>> {
        self.sub_envs.iter().flat_map(|s| s.objects())
    }

    /// How many objects, in all.
    pub fn len(&self) -> usize {
        self.sub_envs.iter().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.sub_envs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(
        namespace: &str,
        app: &str,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> MisplacedObject {
        MisplacedObject {
            namespace: namespace.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            owner: StackRef {
                app_name: app.into(),
                env: "tenant".into(),
                parent_env: "production".into(),
            },
            target: app.into(),
        }
    }

    /// Objects are kept by sub-env and namespace, each type once, read back in order.
    #[test]
    fn objects_are_kept_by_sub_env_and_namespace() {
        let mut misplaced = Misplaced::default();
        for (namespace, app, api_version, kind, name) in [
            ("shop", "shop-tenant", "v1", "ConfigMap", "a"),
            ("shop", "shop-tenant", "apps/v1", "Deployment", "web"),
            ("shop", "other-tenant", "v1", "ConfigMap", "x"),
            ("shop", "shop-tenant", "v1", "ConfigMap", "b"),
            (
                "legacy",
                "shop-tenant",
                "v1",
                "PersistentVolumeClaim",
                "data",
            ),
            ("shop", "shop-tenant", "v1", "PersistentVolumeClaim", "data"),
        ] {
            misplaced.push(object(namespace, app, api_version, kind, name));
        }
        assert_eq!(misplaced.len(), 6);
        let sub_envs = misplaced.sub_envs();
        assert_eq!(sub_envs.len(), 3);
        let shop = &sub_envs[0];
        assert_eq!(
            (shop.namespace.as_str(), shop.stack()),
            ("shop", "shop-tenant/tenant".into())
        );
        let names: Vec<&str> = shop.objects().map(|o| o.name).collect();
        assert_eq!(names, ["a", "web", "b", "data"]);
        assert_eq!(
            shop.by_kind(),
            [
                ("ConfigMap".to_owned(), 2),
                ("Deployment.apps".to_owned(), 1),
                ("PersistentVolumeClaim".to_owned(), 1)
            ]
        );
        assert_eq!(shop.claims().collect::<Vec<_>>(), ["data"]);
        assert_eq!(sub_envs[2].namespace, "legacy");
        let every: Vec<(&str, &str)> = misplaced.iter().map(|o| (o.namespace, o.name)).collect();
        assert_eq!(every.len(), 6);
        let json = serde_json::to_value(ObjectList(shop)).unwrap();
        assert_eq!(
            json[1],
            serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
        );
    }
}
