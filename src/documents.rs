//! Streams of Kubernetes objects as people and `kubectl` write them: multi-document YAML,
//! a JSON object, or a `List` (`kind: List`, or any `*List` kind with `items`), as
//! `kubectl get ... -o yaml|json` prints it. Used by the cluster-dump loader and the
//! offline manifest commands.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// A document that could not be read, with its position for the message.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("document {index}: {message}")]
    Invalid { index: usize, message: String },
}

/// Parse every document of a YAML or JSON text. Empty YAML documents (`---` alone,
/// comments only) are skipped; their index still counts, so messages match the file.
pub fn parse(text: &str) -> Result<Vec<(usize, Value)>, DocumentError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // JSON proper: faster and with JSON's own error positions. `[...]` is a stream
        // of objects, as some tools emit.
        let value: Value = serde_json::from_str(text).map_err(|e| DocumentError::Invalid {
            index: 0,
            message: format!("invalid JSON: {e}"),
        })?;
        return Ok(match value {
            Value::Array(items) => items.into_iter().enumerate().collect(),
            other => vec![(0, other)],
        });
    }
    let mut out = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| DocumentError::Invalid {
            index,
            message: format!("invalid YAML: {e}"),
        })?;
        if !value.is_null() {
            out.push((index, value));
        }
    }
    Ok(out)
}

/// Whether a document is a list of objects (`kind: List`, `DeploymentList`, ...).
pub fn is_list(value: &Value) -> bool {
    value.get("items").is_some_and(Value::is_array)
        && value
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind.ends_with("List"))
}

/// The objects of a document: its items when it is a list, else itself.
pub fn objects(value: &Value) -> Box<dyn Iterator<Item = &Value> + '_> {
    if is_list(value) {
        Box::new(value["items"].as_array().into_iter().flatten())
    } else {
        Box::new(std::iter::once(value))
    }
}

/// The part of an object nsguard reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectHead {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: MetadataHead,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetadataHead {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

impl ObjectHead {
    /// Read the head of one object; a message names what is wrong.
    pub fn of(value: &Value) -> Result<Self, String> {
        if !value.is_object() {
            return Err(format!(
                "expected a Kubernetes object, found {}",
                type_name(value)
            ));
        }
        let head = Self::deserialize(value).map_err(|e| format!("malformed object: {e}"))?;
        if head.kind.is_empty() {
            return Err("object has no kind".to_owned());
        }
        Ok(head)
    }

    /// The API group from `apiVersion` (`apps/v1` -> `apps`, `v1` -> ``).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// `Kind.group`, or `Kind` for the core group: unambiguous across API groups.
    pub fn qualified_kind(&self) -> String {
        qualified_kind(&self.kind, self.group())
    }
}

/// `Kind.group`, or `Kind` for the core group.
pub fn qualified_kind(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_with_empty_documents() {
        let docs = parse("---\n# only a comment\n---\nkind: A\n---\n---\nkind: B\n").unwrap();
        let kinds: Vec<_> = docs
            .iter()
            .map(|(i, v)| (*i, v["kind"].as_str().unwrap()))
            .collect();
        assert_eq!(kinds, vec![(1, "A"), (3, "B")]);
    }

    #[test]
    fn json_object_and_array() {
        assert_eq!(parse(r#"{"kind":"A"}"#).unwrap().len(), 1);
        assert_eq!(parse(r#"[{"kind":"A"},{"kind":"B"}]"#).unwrap().len(), 2);
        assert!(parse("{\"kind\":").is_err());
    }

    #[test]
    fn broken_yaml_names_the_document() {
        let err = parse("kind: A\n---\nkind: [unclosed\n").unwrap_err();
        assert!(err.to_string().starts_with("document 1:"), "{err}");
    }

    #[test]
    fn lists_are_flattened() {
        let docs = parse("kind: List\nitems:\n- kind: A\n- kind: B\n").unwrap();
        assert_eq!(objects(&docs[0].1).count(), 2);
        let typed = parse("kind: DeploymentList\napiVersion: apps/v1\nitems: []\n").unwrap();
        assert_eq!(objects(&typed[0].1).count(), 0);
    }

    #[test]
    fn heads_and_qualified_kinds() {
        let v: Value = serde_json::json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x","labels":null}});
        let head = ObjectHead::of(&v).unwrap();
        assert_eq!(head.qualified_kind(), "Deployment.apps");
        assert!(head.metadata.labels.is_empty());
        assert!(ObjectHead::of(&serde_json::json!("text")).is_err());
        assert!(ObjectHead::of(&serde_json::json!({"metadata":{}})).is_err());
        assert!(
            ObjectHead::of(&serde_json::json!({"kind":"A","metadata":{"labels":{"a":1}}})).is_err()
        );
    }
}
