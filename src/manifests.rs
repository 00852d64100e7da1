//! Offline placement over manifest files: where the rewrite can take effect, because it
//! happens before `kubectl apply`. Uses the webhook's engine: [`placement::place`] for
//! the decision and [`crate::decisions::placement::Misplacement::patch`] for the change.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::decisions::placement::{self, Misplacement, Placement};
use crate::documents::{self, Document, ObjectHead};
use crate::scope::{Scope, Scopes};
use crate::simple_container::labels::LabelScheme;
use crate::simple_container::labels::Owner;
use crate::yaml::{self, NodeKind, NodeSpan, Quoting, Step};

/// How messages name standard input.
pub const STDIN: &str = "<stdin>";

/// One input: a file's text, or standard input's.
#[derive(Debug)]
pub struct Source {
    /// The path as given, or [`STDIN`].
    pub name: String,
    pub text: String,
}

/// Bad input, with where it is.
#[derive(Debug, Clone, thiserror::Error)]
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
                    source_name: STDIN.into(),
                    message: format!("reading standard input: {e}"),
                })?;
            sources.push(Source {
                name: STDIN.into(),
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

/// A sub-env object of a manifest that is misplaced, or whose namespace cannot be told.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub file: String,
    /// The document in the file, from 1 as a person counts.
    pub document: usize,
    /// The item in the document's `items`, from 1, when the document is a List.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    pub kind: String,
    pub name: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What placement says of a manifest object worth reporting.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "placement", rename_all = "kebab-case")]
pub enum Outcome {
    /// Moved by `rewrite`.
    Misplaced(Misplacement),
    /// Sub-env labels from which no namespace can be computed: left as is.
    Unresolvable { owner: Owner, reason: String },
    /// Misplaced if its kind is namespaced, but nsguard does not know the kind's scope
    /// (no CRD in the stream, no --namespaced/--cluster-scoped): left as is.
    UnknownScope {
        kind: String,
        misplacement: Misplacement,
    },
}

impl Finding {
    pub fn misplaced(&self) -> bool {
        matches!(self.outcome, Outcome::Misplaced(_))
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} document {}", self.file, self.document)?;
        if let Some(item) = self.item {
            write!(f, " item {item}")?;
        }
        write!(f, ": {} {:?}: ", self.kind, self.name)?;
        match &self.outcome {
            Outcome::Misplaced(m) => write!(f, "{m}"),
            Outcome::Unresolvable { owner, reason } => write!(
                f,
                "sub-env stack {owner}: {reason}; its namespace cannot be told, so it is left as it is"
            ),
            Outcome::UnknownScope { kind, misplacement } => write!(
                f,
                "the scope of {kind} is unknown, so it is left as it is; if it is namespaced, {misplacement} \
                 (include its CustomResourceDefinition, or pass --namespaced {kind} or --cluster-scoped {kind})"
            ),
        }
    }
}

/// One source with its misplaced objects moved.
#[derive(Debug)]
pub struct Rewritten {
    /// The source text with only the `metadata.namespace` of each moved object changed
    /// (replaced in place, or one line inserted): comments, order, quoting, anchors and
    /// separators are the input's. An error when a move cannot be written in place, or
    /// the edited text would not read back as the moved objects: `check` still reports,
    /// `rewrite` prints nothing.
    pub text: Result<String, ManifestError>,
    /// Every object document as read, after the move.
    pub documents: Vec<Value>,
    pub findings: Vec<Finding>,
}

/// The documents of one source, as kubectl reads them, with the positions `rewrite`
/// edits; an error names the source and the document.
pub fn parse(source: &Source) -> Result<Vec<Document>, ManifestError> {
    documents::parse(&source.text).map_err(|e| ManifestError {
        source_name: source.name.clone(),
        message: e.to_string(),
    })
}

/// The documents of one source (read by [`parse`]), each with its misplaced objects
/// moved to their target namespace, and what was found. `default_namespace` stands for a
/// missing `metadata.namespace`, as `kubectl apply --namespace` would.
pub fn rewrite(
    source: &Source,
    parsed: Vec<Document>,
    scheme: &LabelScheme,
    scopes: &Scopes,
    default_namespace: Option<&str>,
) -> Result<Rewritten, ManifestError> {
    let error = |message: String| ManifestError {
        source_name: source.name.clone(),
        message,
    };
    let json = source.text.trim_start().starts_with(['{', '[']);
    let mut documents = Vec::new();
    let mut findings = Vec::new();
    let mut edits = Vec::new();
    let mut unwritable = None;
    for mut document in parsed {
        let list = documents::is_list(&document.value);
        let objects: Vec<&mut Value> = if list {
            document.value["items"]
                .as_array_mut()
                .into_iter()
                .flatten()
                .collect()
        } else {
            vec![&mut document.value]
        };
        for (index, object) in objects.into_iter().enumerate() {
            let item = list.then_some(index + 1);
            let position = match item {
                Some(item) => format!("document {}, item {item}", document.number),
                None => format!("document {}", document.number),
            };
            let head = ObjectHead::of(object).map_err(|e| error(format!("{position}: {e}")))?;
            let Some(outcome) = judge(&head, object, scheme, scopes, default_namespace) else {
                continue;
            };
            if let Outcome::Misplaced(misplacement) = &outcome {
                let has_namespace = head.metadata.namespace.is_some();
                json_patch::patch(object, &misplacement.patch(has_namespace)).map_err(|e| {
                    error(format!("{position}: cannot set metadata.namespace: {e}"))
                })?;
                let prefix: Vec<Step> = match list {
                    true => vec![Step::Key("items".into()), Step::Index(index)],
                    false => Vec::new(),
                };
                match namespace_edit(
                    &source.text,
                    &document.spans,
                    &prefix,
                    &misplacement.target,
                    has_namespace,
                    json,
                ) {
                    Some(edit) => edits.push(edit),
                    None => {
                        unwritable.get_or_insert_with(|| {
                            error(format!(
                                "{position}: cannot set metadata.namespace in place: it is not \
                                 written in the object itself (an alias or a merge key?); move it by hand"
                            ))
                        });
                    }
                }
            }
            findings.push(Finding {
                file: source.name.clone(),
                document: document.number,
                item,
                kind: head.kind,
                name: head.metadata.name,
                outcome,
            });
        }
        documents.push(document.value);
    }
    let text = match unwritable {
        Some(err) => Err(err),
        None => edited(&source.text, edits, &documents).map_err(error),
    };
    Ok(Rewritten {
        text,
        documents,
        findings,
    })
}

/// `text` with `edits` made. What is printed must read, for nsguard and kubectl alike, as
/// the objects said to be moved (`documents`); anything else is refused, not printed.
fn edited(
    text: &str,
    mut edits: Vec<(usize, usize, String)>,
    documents: &[Value],
) -> Result<String, String> {
    let mut text = text.to_owned();
    edits.sort_by_key(|edit| std::cmp::Reverse(edit.0));
    for (start, end, replacement) in edits {
        text.replace_range(start..end, &replacement);
    }
    let again = documents::parse(&text).map_err(|e| format!("the rewritten text: {e}"))?;
    if !again.iter().map(|d| &d.value).eq(documents.iter()) {
        return Err(
            "the rewritten text does not read back as the moved objects; nothing was printed"
                .to_owned(),
        );
    }
    Ok(text)
}

/// The one change that sets an object's namespace in its source: the namespace value
/// replaced in its own quoting, or a `namespace` entry inserted before the first key of
/// `metadata`, in that mapping's indentation (block) or style (flow, JSON). `None` when
/// that cannot be done in place.
fn namespace_edit(
    text: &str,
    spans: &std::collections::HashMap<Vec<Step>, NodeSpan>,
    prefix: &[Step],
    target: &str,
    has_namespace: bool,
    json: bool,
) -> Option<(usize, usize, String)> {
    let at = |steps: &[&str]| {
        let mut path = prefix.to_vec();
        path.extend(steps.iter().map(|s| Step::Key((*s).to_owned())));
        spans.get(&path).copied()
    };
    let quoted = serde_json::to_string(target).ok()?;
    if let Some(span) = at(&["metadata", "namespace"]) {
        let NodeKind::Scalar(quoting) = span.kind else {
            return None;
        };
        let value = match quoting {
            _ if json => quoted,
            Quoting::Plain if yaml::plain_is_string(target) => target.to_owned(),
            Quoting::Single => format!("'{}'", target.replace('\'', "''")),
            _ => quoted,
        };
        if span.start == span.end {
            // `namespace:` with no value: the empty scalar sits at the key's colon.
            let colon = span.start + text.get(span.start..)?.find(':')? + 1;
            return Some((colon, colon, format!(" {value}")));
        }
        let replaced = text.get(span.start..span.end)?;
        let newline = if quoting == Quoting::Block && replaced.ends_with('\n') {
            "\n"
        } else {
            ""
        };
        return Some((span.start, span.end, format!("{value}{newline}")));
    }
    if has_namespace {
        // Read, but not written here: it comes through an alias or a merge key, which an
        // inserted entry might not override.
        return None;
    }
    let metadata = at(&["metadata"])?;
    let NodeKind::Mapping { flow, first_key } = metadata.kind else {
        return None;
    };
    let quote_key = json || first_key.is_some_and(|k| k.quoting == Quoting::Double);
    let key = if quote_key {
        "\"namespace\""
    } else {
        "namespace"
    };
    let value = if json || !yaml::plain_is_string(target) {
        quoted
    } else {
        target.to_owned()
    };
    let entry = format!("{key}: {value}");
    match (flow, first_key) {
        (false, Some(first)) => Some((
            first.start,
            first.start,
            format!("{entry}\n{}", " ".repeat(first.column)),
        )),
        (true, Some(first)) => {
            let separate_line = text.get(metadata.start..first.start)?.contains('\n');
            let after = if separate_line {
                format!(",\n{}", " ".repeat(first.column))
            } else {
                ", ".to_owned()
            };
            Some((first.start, first.start, format!("{entry}{after}")))
        }
        (true, None) => Some((metadata.start + 1, metadata.start + 1, entry)),
        (false, None) => None,
    }
}

/// What placement says of one manifest object, when there is something to say.
fn judge(
    head: &ObjectHead,
    object: &Value,
    scheme: &LabelScheme,
    scopes: &Scopes,
    default_namespace: Option<&str>,
) -> Option<Outcome> {
    let scope = scopes.of(head.group(), &head.kind);
    if scope == Some(Scope::Cluster) {
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
        Placement::Misplaced(misplacement) if scope.is_none() => Some(Outcome::UnknownScope {
            kind: head.qualified_kind(),
            misplacement,
        }),
        Placement::Misplaced(misplacement) => Some(Outcome::Misplaced(misplacement)),
        Placement::Unresolvable { owner, reason } => Some(Outcome::Unresolvable { owner, reason }),
        Placement::NotSubEnv | Placement::Placed => None,
    }
}

/// Documents as a stream of pretty JSON documents, one after another (which `kubectl
/// apply -f` and nsguard read back).
pub fn render_json(documents: &[Value]) -> String {
    let mut out = String::new();
    for document in documents {
        // A Value always serializes.
        out.push_str(&serde_json::to_string_pretty(document).unwrap_or_default());
        out.push('\n');
    }
    out
}
