//! Streams of Kubernetes objects as people and `kubectl` write them: multi-document YAML,
//! a JSON object, or a `List` (`kind: List`, or any `*List` kind with `items`), as
//! `kubectl get ... -o yaml|json` prints it. Used by the cluster-dump loader and the
//! offline manifest commands.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::yaml::{self, NodeSpan, Step};

/// A document that could not be read, with its position for the message.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// `document` counts from 1, as a person counts the documents of a file.
    #[error("document {document}: {message}")]
    Invalid { document: usize, message: String },
}

/// One document of a stream, as kubectl reads it.
#[derive(Debug)]
pub struct Document {
    /// 1-based, counting every document of the stream.
    pub number: usize,
    pub value: Value,
    /// Where each object's `metadata` and `metadata.namespace` are in the source text,
    /// by path (`metadata`, `items/3/metadata/namespace`, ...), in bytes from the start
    /// of the whole text: what an edit in place needs.
    pub spans: HashMap<Vec<Step>, NodeSpan>,
}

/// Parse every document of a YAML stream or a JSON stream (objects one after another, as
/// kubectl accepts, or one array of objects). Empty YAML documents (`---` alone, comments
/// only) are skipped; their number still counts, so messages match the file.
pub fn parse(text: &str) -> Result<Vec<Document>, DocumentError> {
    let trimmed = text.trim_start();
    let documents = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        parse_json_stream(text)?
    } else {
        yaml::parse_stream(text, &keep_span)
            .map_err(|e| DocumentError::Invalid {
                document: e.document,
                message: format!(
                    "invalid YAML: line {} column {}: {}",
                    e.line, e.column, e.message
                ),
            })?
            .into_iter()
            .map(|d| Document {
                number: d.number,
                value: d.value,
                spans: d.spans,
            })
            .collect()
    };
    Ok(documents
        .into_iter()
        .filter(|d| !d.value.is_null())
        .collect())
}

/// Each JSON value of the stream is one document; a top-level array is a stream of
/// objects, as some tools emit. JSON is YAML, so each is read by the same reader (with
/// the same spans), its offsets moved to the whole text.
fn parse_json_stream(text: &str) -> Result<Vec<Document>, DocumentError> {
    let mut documents: Vec<Document> = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    let mut begin = 0;
    while let Some(next) = stream.next() {
        // Documents are numbered as they come, an array's items each one.
        let invalid = |message: String| DocumentError::Invalid {
            document: documents.len() + 1,
            message,
        };
        next.map_err(|e| invalid(format!("invalid JSON: {e}")))?;
        let end = stream.byte_offset();
        let slice = &text[begin..end];
        let parsed = yaml::parse_stream(slice, &keep_span_in_array)
            .map_err(|e| invalid(format!("invalid JSON: {}", e.message)))?;
        for document in parsed {
            let spans: HashMap<Vec<Step>, NodeSpan> = document
                .spans
                .into_iter()
                .map(|(path, span)| (path, span.shifted(begin)))
                .collect();
            match document.value {
                Value::Array(items) => {
                    // Each item is a document of its own, its spans re-rooted.
                    for (index, value) in items.into_iter().enumerate() {
                        let spans = spans
                            .iter()
                            .filter(|(path, _)| path.first() == Some(&Step::Index(index)))
                            .map(|(path, span)| (path[1..].to_vec(), *span))
                            .collect();
                        documents.push(Document {
                            number: documents.len() + 1,
                            value,
                            spans,
                        });
                    }
                }
                value => documents.push(Document {
                    number: documents.len() + 1,
                    value,
                    spans,
                }),
            }
        }
        begin = end;
    }
    Ok(documents)
}

/// The nodes an in-place namespace edit needs: each object's `metadata` mapping and its
/// `namespace` value, for a document or the items of a List.
fn keep_span(path: &[Step]) -> bool {
    let object = match path {
        [Step::Key(items), Step::Index(_), rest @ ..] if items == "items" => rest,
        rest => rest,
    };
    matches!(object, [Step::Key(m)] if m == "metadata")
        || matches!(object, [Step::Key(m), Step::Key(n)] if m == "metadata" && n == "namespace")
}

fn keep_span_in_array(path: &[Step]) -> bool {
    match path {
        [Step::Index(_), rest @ ..] => keep_span(rest),
        rest => keep_span(rest),
    }
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
        // The path says which field, as kubectl's "... of type string" error does.
        let head: Self = serde_path_to_error::deserialize(value)
            .map_err(|e| format!("malformed object: {}: {}", e.path(), e.inner()))?;
        if head.kind.is_empty() {
            return Err("object has no kind".to_owned());
        }
        Ok(head)
    }

    /// The API group from `apiVersion` (`apps/v1` -> `apps`, `v1` -> ``).
    pub fn group(&self) -> &str {
        api_group(&self.api_version)
    }

    /// `Kind.group`, or `Kind` for the core group: unambiguous across API groups.
    pub fn qualified_kind(&self) -> String {
        qualified_kind(&self.kind, self.group())
    }
}

/// The API group of an `apiVersion` (`apps/v1` -> `apps`, `v1` -> ``).
pub fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
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

    fn numbered(text: &str) -> Vec<(usize, String)> {
        parse(text)
            .unwrap()
            .iter()
            .map(|d| (d.number, d.value["kind"].as_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn multi_document_yaml_with_empty_documents() {
        assert_eq!(
            numbered("---\n# only a comment\n---\nkind: A\n---\n---\nkind: B\n"),
            vec![(2, "A".to_owned()), (4, "B".to_owned())]
        );
    }

    #[test]
    fn json_objects_streams_and_arrays() {
        assert_eq!(numbered(r#"{"kind":"A"}"#), vec![(1, "A".to_owned())]);
        assert_eq!(
            numbered("{\"kind\":\"A\"}\n{\"kind\": \"B\"}\n"),
            vec![(1, "A".to_owned()), (2, "B".to_owned())]
        );
        assert_eq!(
            numbered(r#"[{"kind":"A"},{"kind":"B"}]"#),
            vec![(1, "A".to_owned()), (2, "B".to_owned())]
        );
        assert_eq!(
            numbered("[{\"kind\":\"A\"},{\"kind\":\"B\"}]\n[]\n{\"kind\":\"C\"}"),
            vec![
                (1, "A".to_owned()),
                (2, "B".to_owned()),
                (3, "C".to_owned())
            ]
        );
        assert!(parse("{\"kind\":").is_err());
    }

    #[test]
    fn broken_yaml_names_the_document() {
        let err = parse("kind: A\n---\nkind: [unclosed\n").unwrap_err();
        assert!(err.to_string().starts_with("document 2:"), "{err}");
    }

    #[test]
    fn spans_of_metadata_are_kept_for_objects_and_list_items() {
        let text = "kind: List\nitems:\n- kind: A\n  metadata: {name: a, namespace: x}\n";
        let doc = &parse(text).unwrap()[0];
        let path = [
            Step::Key("items".into()),
            Step::Index(0),
            Step::Key("metadata".into()),
            Step::Key("namespace".into()),
        ];
        let span = doc.spans[&path.to_vec()];
        assert_eq!(&text[span.start..span.end], "x");
        let json = "{\"kind\":\"A\"}\n{\"kind\":\"B\",\"metadata\":{\"namespace\":\"x\"}}";
        let docs = parse(json).unwrap();
        let span =
            docs[1].spans[&vec![Step::Key("metadata".into()), Step::Key("namespace".into())]];
        assert_eq!(&json[span.start..span.end], "\"x\"");
    }

    #[test]
    fn lists_are_flattened() {
        let docs = parse("kind: List\nitems:\n- kind: A\n- kind: B\n").unwrap();
        assert_eq!(objects(&docs[0].value).count(), 2);
        let typed = parse("kind: DeploymentList\napiVersion: apps/v1\nitems: []\n").unwrap();
        assert_eq!(objects(&typed[0].value).count(), 0);
    }

    #[test]
    fn heads_and_qualified_kinds() {
        let v: Value = serde_json::json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x","labels":null}});
        let head = ObjectHead::of(&v).unwrap();
        assert_eq!(head.qualified_kind(), "Deployment.apps");
        assert!(head.metadata.labels.is_empty());
        assert!(ObjectHead::of(&serde_json::json!("text")).is_err());
        assert!(ObjectHead::of(&serde_json::json!({"metadata":{}})).is_err());
        let err = ObjectHead::of(&serde_json::json!({"kind":"A","metadata":{"labels":{"a":true}}}))
            .unwrap_err();
        assert_eq!(
            err,
            "malformed object: metadata.labels.a: invalid type: boolean `true`, expected a string"
        );
    }
}
