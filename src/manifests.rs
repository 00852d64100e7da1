//! Offline placement over manifest files: where the rewrite can take effect, because it
//! happens before `kubectl apply`. Uses the webhook's engine: [`placement::place`] for
//! the decision and [`crate::placement::Misplacement::patch`] for the change.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::documents::{self, ObjectHead};
use crate::labels::LabelScheme;
use crate::placement::{self, Misplacement, Placement};

/// Kinds that live outside namespaces (from the API's discovery documents), so a
/// manifest without `metadata.namespace` is not "missing" one. Kinds not listed,
/// custom resources included, are taken as namespaced.
const CLUSTER_SCOPED_KINDS: &[&str] = &[
    "APIService",
    "CSIDriver",
    "CSINode",
    "CertificateSigningRequest",
    "ClusterIssuer",
    "ClusterRole",
    "ClusterRoleBinding",
    "ComponentStatus",
    "CustomResourceDefinition",
    "DeviceClass",
    "FlowSchema",
    "IPAddress",
    "IngressClass",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "ResourceSlice",
    "RuntimeClass",
    "ServiceCIDR",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
    "VolumeAttributesClass",
];

/// One input: a file's text, or standard input's.
#[derive(Debug)]
pub struct Source {
    /// The path as given, or `-` for standard input.
    pub name: String,
    pub text: String,
}

/// Bad input, with where it is.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ManifestError {
    pub source_name: String,
    pub message: String,
}

/// Read `-f` arguments: files, directories (their `.yaml`, `.yml` and `.json` files,
/// recursively, in name order) and `-` for standard input.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<Source>, ManifestError> {
    let mut sources = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| ManifestError {
                    source_name: "-".into(),
                    message: format!("reading standard input: {e}"),
                })?;
            sources.push(Source {
                name: "-".into(),
                text,
            });
        } else if path.is_dir() {
            let mut files = Vec::new();
            collect_manifest_files(path, &mut files).map_err(|e| io_error(path, e))?;
            files.sort();
            for file in files {
                sources.push(read_file(&file)?);
            }
        } else {
            sources.push(read_file(path)?);
        }
    }
    Ok(sources)
}

fn collect_manifest_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_manifest_files(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Source, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    Ok(Source {
        name: path.display().to_string(),
        text,
    })
}

fn io_error(path: &Path, err: std::io::Error) -> ManifestError {
    ManifestError {
        source_name: path.display().to_string(),
        message: err.to_string(),
    }
}

/// A misplaced object found in a manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub file: String,
    /// Index of the YAML/JSON document in the file, from 0.
    pub document: usize,
    /// Index in the document's `items` when the document is a List.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    pub kind: String,
    pub name: String,
    #[serde(flatten)]
    pub misplacement: Misplacement,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} document {}", self.file, self.document)?;
        if let Some(item) = self.item {
            write!(f, " item {item}")?;
        }
        write!(f, ": {} {:?}: {}", self.kind, self.name, self.misplacement)
    }
}

/// The documents of one source, each with its misplaced objects moved to their target
/// namespace, and what was moved. `default_namespace` stands for a missing
/// `metadata.namespace`, as `kubectl apply --namespace` would.
pub fn rewrite(
    source: &Source,
    scheme: &LabelScheme,
    default_namespace: Option<&str>,
) -> Result<(Vec<Value>, Vec<Finding>), ManifestError> {
    let error = |message: String| ManifestError {
        source_name: source.name.clone(),
        message,
    };
    let mut documents = Vec::new();
    let mut findings = Vec::new();
    for (index, mut document) in documents::parse(&source.text).map_err(|e| error(e.to_string()))? {
        let list = documents::is_list(&document);
        let objects: Vec<&mut Value> = if list {
            document["items"]
                .as_array_mut()
                .into_iter()
                .flatten()
                .collect()
        } else {
            vec![&mut document]
        };
        for (item, object) in objects.into_iter().enumerate() {
            let item = list.then_some(item);
            let position = match item {
                Some(item) => format!("document {index}, item {item}"),
                None => format!("document {index}"),
            };
            let head = ObjectHead::of(object).map_err(|e| error(format!("{position}: {e}")))?;
            if let Some(misplacement) = misplaced(&head, object, scheme, default_namespace) {
                let has_namespace = head.metadata.namespace.is_some();
                json_patch::patch(object, &misplacement.patch(has_namespace)).map_err(|e| {
                    error(format!("{position}: cannot set metadata.namespace: {e}"))
                })?;
                findings.push(Finding {
                    file: source.name.clone(),
                    document: index,
                    item,
                    kind: head.kind,
                    name: head.metadata.name,
                    misplacement,
                });
            }
        }
        documents.push(document);
    }
    Ok((documents, findings))
}

/// The misplacement of one manifest object, if it is a misplaced sub-env object.
fn misplaced(
    head: &ObjectHead,
    object: &Value,
    scheme: &LabelScheme,
    default_namespace: Option<&str>,
) -> Option<Misplacement> {
    if CLUSTER_SCOPED_KINDS.contains(&head.kind.as_str()) {
        return None;
    }
    let controller_owned = object["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["controller"] == true));
    if placement::exempt(Some(&head.metadata.annotations), controller_owned) {
        return None;
    }
    let namespace = head
        .metadata
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .or(default_namespace)
        .unwrap_or("");
    match placement::place(scheme, &head.metadata.labels, namespace) {
        Placement::Misplaced(m) => Some(m),
        _ => None,
    }
}

/// Render documents as a YAML stream (`---` between documents) or as JSON documents.
pub fn render(documents: &[Value], json: bool) -> Result<String, String> {
    let mut out = String::new();
    for (i, document) in documents.iter().enumerate() {
        if json {
            out.push_str(&serde_json::to_string_pretty(document).map_err(|e| e.to_string())?);
            out.push('\n');
        } else {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(&serde_yaml::to_string(document).map_err(|e| e.to_string())?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source {
            name: "test.yaml".into(),
            text: text.into(),
        }
    }

    const SUB_ENV: &str = "simple-container-com/app-name: myapp-tenant-a\n    simple-container-com/env: tenant-a\n    simple-container-com/parent-env: production";

    #[test]
    fn moves_misplaced_objects_and_keeps_the_rest() {
        let text = format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  namespace: myapp\n  labels:\n    {SUB_ENV}\nspec:\n  ports: [{{port: 80}}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n  namespace: myapp\n"
        );
        let (docs, findings) = rewrite(&source(&text), &LabelScheme::default(), None).unwrap();
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].misplacement.target, "myapp-tenant-a");
        assert_eq!(docs[0]["metadata"]["namespace"], "myapp-tenant-a");
        assert_eq!(docs[0]["spec"]["ports"][0]["port"], 80);
        assert_eq!(docs[1]["metadata"]["namespace"], "myapp");
    }

    #[test]
    fn missing_namespace_uses_the_default_and_cluster_scoped_kinds_are_skipped() {
        let text = format!(
            "kind: Deployment\napiVersion: apps/v1\nmetadata:\n  name: a\n  labels:\n    {SUB_ENV}\n---\nkind: Namespace\napiVersion: v1\nmetadata:\n  name: myapp-tenant-a\n  labels:\n    {SUB_ENV}\n"
        );
        let (_, findings) = rewrite(
            &source(&text),
            &LabelScheme::default(),
            Some("myapp-tenant-a"),
        )
        .unwrap();
        assert!(findings.is_empty(), "{findings:?}");
        let (docs, findings) = rewrite(&source(&text), &LabelScheme::default(), None).unwrap();
        assert_eq!(findings.len(), 1);
        assert_eq!(docs[0]["metadata"]["namespace"], "myapp-tenant-a");
        assert!(docs[1]["metadata"].get("namespace").is_none());
    }

    #[test]
    fn list_items_are_positioned() {
        let text = "kind: List\napiVersion: v1\nitems:\n- kind: ConfigMap\n  apiVersion: v1\n  metadata: {name: x, namespace: myapp}\n- kind: Service\n  apiVersion: v1\n  metadata:\n    name: s\n    namespace: myapp\n    labels: {simple-container-com/app-name: myapp-tenant-a, simple-container-com/env: tenant-a, simple-container-com/parent-env: production}\n";
        let (docs, findings) = rewrite(&source(text), &LabelScheme::default(), None).unwrap();
        assert_eq!(findings[0].item, Some(1));
        assert_eq!(
            docs[0]["items"][1]["metadata"]["namespace"],
            "myapp-tenant-a"
        );
        assert!(
            findings[0]
                .to_string()
                .starts_with("test.yaml document 0 item 1: Service \"s\"")
        );
    }

    #[test]
    fn bad_input_names_file_and_document() {
        let err = rewrite(
            &source("kind: A\nmetadata: {name: a}\n---\n- not\n- an object\n"),
            &LabelScheme::default(),
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.yaml: document 1: expected a Kubernetes object, found a list"
        );
    }
}
