//! YAML read the way `kubectl` reads it, with the source positions an in-place edit needs.
//!
//! kubectl turns YAML into JSON with sigs.k8s.io/yaml, which resolves plain scalars by the
//! YAML 1.1 rules of go-yaml v2: `on`/`off`/`yes`/`no`/`y`/`n` are booleans, `0644` is
//! octal, `1_000` is 1000, `0x1F` is hex, a timestamp stays a string, merge keys (`<<`)
//! merge, and a key that resolves to a boolean or a number becomes its JSON text
//! (`yes:` is the key `"true"`). A YAML 1.2 reader (serde_yaml, most others) reads some of
//! these differently, so nsguard would judge an object other than the one kubectl applies.
//! Only plain scalars are resolved; quoted and block scalars are strings, as in go-yaml.
//!
//! Parsing is event by event (granit-parser, which kube's own kubeconfig reader uses),
//! with an explicit stack rather than recursion, so nesting costs no stack.

use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle, StructureStyle};
use serde_json::{Map, Number, Value};

/// The most nodes aliases may copy in one document: far above any manifest's merge keys,
/// far below what exhausts memory.
const MAX_ALIAS_NODES: usize = 1_000_000;

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Where a node is in the source text, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSpan {
    pub start: usize,
    pub end: usize,
    pub kind: NodeKind,
}

impl NodeSpan {
    /// The same node in a text that starts `by` bytes earlier.
    pub fn shifted(self, by: usize) -> Self {
        let kind = match self.kind {
            NodeKind::Mapping { flow, first_key } => NodeKind::Mapping {
                flow,
                first_key: first_key.map(|k| KeySpan {
                    start: k.start + by,
                    ..k
                }),
            },
            kind => kind,
        };
        Self {
            start: self.start + by,
            end: self.end + by,
            kind,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Scalar(Quoting),
    /// A mapping, with its first key when it has one.
    Mapping {
        flow: bool,
        first_key: Option<KeySpan>,
    },
    Sequence,
}

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    Plain,
    Single,
    Double,
    Block,
}

/// The first key of a mapping: where it starts, its column, and how it is quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpan {
    pub start: usize,
    pub column: usize,
    pub quoting: Quoting,
}

/// One document of a stream.
#[derive(Debug)]
pub struct Document {
    /// 1-based, counting every document of the stream (empty ones too), as a person
    /// counts the `---` separators.
    pub number: usize,
    pub value: Value,
    /// The positions of the nodes the caller asked for (see [`parse_stream`]).
    pub spans: HashMap<Vec<Step>, NodeSpan>,
}

/// A stream that is not YAML kubectl could read, or a value JSON cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("document {document}: line {line} column {column}: {message}")]
pub struct YamlError {
    pub document: usize,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

enum Frame {
    Sequence {
        items: Vec<Value>,
        start: usize,
        anchor: usize,
    },
    Mapping {
        map: Map<String, Value>,
        /// The key read, waiting for its value.
        key: Option<Key>,
        start: usize,
        flow: bool,
        first_key: Option<KeySpan>,
        anchor: usize,
    },
}

enum Key {
    Merge,
    Text(String),
}

/// Every document of `text`, with the spans of the nodes whose path `keep` accepts.
pub fn parse_stream(
    text: &str,
    keep: &dyn Fn(&[Step]) -> bool,
) -> Result<Vec<Document>, YamlError> {
    let mut options = granit_parser::Options::default();
    options.emit_comments = false;
    let mut documents = Vec::new();
    let mut number = 0;
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<Step> = Vec::new();
    // Each anchored value with its size in nodes, and the nodes aliases copied so far.
    let mut anchors: HashMap<usize, (Value, usize)> = HashMap::new();
    let mut copied = 0usize;
    let mut spans = HashMap::new();
    let mut root: Option<Value> = None;
    for event in Parser::new_from_str_with_options(text, options) {
        let (event, span) = event.map_err(|err| YamlError {
            document: number.max(1),
            line: err.marker().line(),
            column: err.marker().col() + 1,
            message: err.info(),
        })?;
        let start = span.start.byte_offset().unwrap_or(0);
        let end = span.end.byte_offset().unwrap_or(start);
        let current = number;
        let error = |message: String| YamlError {
            document: current,
            line: span.start.line(),
            column: span.start.col() + 1,
            message,
        };
        // A finished node: its value, where it is, and its anchor.
        let done: Option<(Value, NodeSpan, usize)> = match event {
            Event::DocumentStart(..) => {
                number += 1;
                anchors.clear();
                copied = 0;
                None
            }
            Event::DocumentEnd => {
                documents.push(Document {
                    number,
                    value: root.take().unwrap_or(Value::Null),
                    spans: std::mem::take(&mut spans),
                });
                None
            }
            Event::Scalar(value, style, anchor, tag) => {
                let quoting = match style {
                    ScalarStyle::Plain => Quoting::Plain,
                    ScalarStyle::SingleQuoted => Quoting::Single,
                    ScalarStyle::DoubleQuoted => Quoting::Double,
                    _ => Quoting::Block,
                };
                let core = tag.as_ref().map(|t| t.core_suffix().map(str::to_owned));
                let resolved = match (quoting, core) {
                    // A plain scalar, or one tagged with a type other than !!str.
                    (Quoting::Plain, None) => resolve(&value),
                    (_, Some(Some(tag))) if tag != "str" => resolve(&value),
                    _ => Resolved::Value(Value::String(value.into_owned())),
                };
                let value = match resolved {
                    Resolved::Value(value) => value,
                    Resolved::Merge => {
                        // `<<` is only a key; as a value it is the string.
                        if expects_key(&stack) {
                            set_key(
                                &mut stack,
                                &mut path,
                                Key::Merge,
                                start,
                                span.start.col(),
                                quoting,
                            );
                            continue;
                        }
                        Value::String("<<".to_owned())
                    }
                    Resolved::NotJson(what) => {
                        return Err(error(format!(
                            "{what} cannot be represented in JSON, which kubectl requires"
                        )));
                    }
                };
                leaf(
                    &mut stack,
                    &mut path,
                    value,
                    (start, end),
                    span.start.col(),
                    quoting,
                    anchor,
                )
                .map_err(error)?
            }
            Event::Alias(id) => {
                let (anchored, size) = anchors
                    .get(&id)
                    .ok_or_else(|| error("an alias refers to no anchor".to_owned()))?;
                // Aliases of aliases grow exponentially (a "billion laughs"): bound what
                // they may copy, before copying, as go-yaml does.
                copied = copied.saturating_add(*size);
                if copied > MAX_ALIAS_NODES {
                    return Err(error(format!(
                        "aliases expand to more than {MAX_ALIAS_NODES} nodes in one document"
                    )));
                }
                let value = anchored.clone();
                leaf(
                    &mut stack,
                    &mut path,
                    value,
                    (start, end),
                    span.start.col(),
                    Quoting::Plain,
                    0,
                )
                .map_err(error)?
            }
            Event::SequenceStart(_, anchor, _) => {
                if expects_key(&stack) {
                    return Err(error("a mapping key must be a scalar".to_owned()));
                }
                stack.push(Frame::Sequence {
                    items: Vec::new(),
                    start,
                    anchor,
                });
                path.push(Step::Index(0));
                None
            }
            Event::MappingStart(style, anchor, _) => {
                if expects_key(&stack) {
                    return Err(error("a mapping key must be a scalar".to_owned()));
                }
                stack.push(Frame::Mapping {
                    map: Map::new(),
                    key: None,
                    start,
                    flow: style == StructureStyle::Flow,
                    first_key: None,
                    anchor,
                });
                None
            }
            Event::SequenceEnd => {
                path.pop();
                match stack.pop() {
                    Some(Frame::Sequence {
                        items,
                        start,
                        anchor,
                    }) => Some((
                        Value::Array(items),
                        NodeSpan {
                            start,
                            end,
                            kind: NodeKind::Sequence,
                        },
                        anchor,
                    )),
                    _ => return Err(error("unbalanced sequence".to_owned())),
                }
            }
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Mapping {
                    map,
                    start,
                    flow,
                    first_key,
                    anchor,
                    ..
                }) => Some((
                    Value::Object(map),
                    NodeSpan {
                        start,
                        end,
                        kind: NodeKind::Mapping { flow, first_key },
                    },
                    anchor,
                )),
                _ => return Err(error("unbalanced mapping".to_owned())),
            },
            _ => None,
        };
        let Some((value, node, anchor)) = done else {
            continue;
        };
        if anchor != 0 {
            anchors.insert(anchor, (value.clone(), nodes(&value)));
        }
        if keep(&path) {
            spans.insert(path.clone(), node);
        }
        match stack.last_mut() {
            None => root = Some(value),
            Some(Frame::Sequence { items, .. }) => {
                items.push(value);
                if let Some(Step::Index(i)) = path.last_mut() {
                    *i += 1;
                }
            }
            Some(Frame::Mapping { map, key, .. }) => {
                match key.take() {
                    Some(Key::Text(name)) => {
                        map.insert(name, value);
                    }
                    Some(Key::Merge) => merge(map, value).map_err(error)?,
                    None => return Err(error("a value without a key".to_owned())),
                }
                path.pop();
            }
        }
    }
    Ok(documents)
}

/// A scalar or alias: the key a mapping waits for (`None`), or a finished node.
fn leaf(
    stack: &mut [Frame],
    path: &mut Vec<Step>,
    value: Value,
    (start, end): (usize, usize),
    column: usize,
    quoting: Quoting,
    anchor: usize,
) -> Result<Option<(Value, NodeSpan, usize)>, String> {
    if expects_key(stack) {
        let key = key_text(&value).ok_or("a mapping key must be a scalar")?;
        set_key(stack, path, Key::Text(key), start, column, quoting);
        return Ok(None);
    }
    let span = NodeSpan {
        start,
        end,
        kind: NodeKind::Scalar(quoting),
    };
    Ok(Some((value, span, anchor)))
}

/// How many nodes a value holds, itself included.
fn nodes(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nodes).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(nodes).sum::<usize>(),
        _ => 1,
    }
}

fn expects_key(stack: &[Frame]) -> bool {
    matches!(stack.last(), Some(Frame::Mapping { key: None, .. }))
}

fn set_key(
    stack: &mut [Frame],
    path: &mut Vec<Step>,
    key: Key,
    start: usize,
    column: usize,
    quoting: Quoting,
) {
    if let Some(Frame::Mapping {
        key: slot,
        first_key,
        ..
    }) = stack.last_mut()
    {
        if first_key.is_none() {
            *first_key = Some(KeySpan {
                start,
                column,
                quoting,
            });
        }
        path.push(match &key {
            Key::Text(name) => Step::Key(name.clone()),
            Key::Merge => Step::Key("<<".to_owned()),
        });
        *slot = Some(key);
    }
}

/// `<<: *base` or `<<: [*a, *b]`: each mapping's keys are set in turn, as go-yaml v2
/// does (a later key wins).
fn merge(map: &mut Map<String, Value>, value: Value) -> Result<(), String> {
    let sources = match value {
        Value::Object(source) => vec![source],
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(source) => Ok(source),
                _ => Err("a merge key (<<) takes mappings only".to_owned()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("a merge key (<<) takes a mapping or a list of mappings".to_owned()),
    };
    for source in sources {
        map.extend(source);
    }
    Ok(())
}

/// A key as sigs.k8s.io/yaml writes it in JSON.
fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(match n.as_f64() {
            Some(f) if !n.is_f64() || f.fract() != 0.0 => n.to_string(),
            Some(f) => format!("{}", f as i64),
            None => n.to_string(),
        }),
        Value::Null => Some("null".to_owned()),
        _ => None,
    }
}

/// Whether `text` written as a plain scalar reads back as that string (and not a bool, a
/// number or null, nor anything YAML would parse as syntax): safe for names.
pub fn plain_is_string(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !text.starts_with(['-', '.'])
        && matches!(resolve(text), Resolved::Value(Value::String(_)))
}

enum Resolved {
    Value(Value),
    Merge,
    NotJson(&'static str),
}

/// go-yaml v2's resolution of a plain scalar (resolve.go), as kubectl sees it in JSON.
fn resolve(text: &str) -> Resolved {
    let value = match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" | "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            Value::Bool(true)
        }
        "false" | "False" | "FALSE" | "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            Value::Bool(false)
        }
        "<<" => return Resolved::Merge,
        ".nan" | ".NaN" | ".NAN" => return Resolved::NotJson("NaN"),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF" => {
            return Resolved::NotJson("an infinite number");
        }
        _ => match text.as_bytes()[0] {
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                number(text).unwrap_or_else(|| Value::String(text.to_owned()))
            }
            _ => Value::String(text.to_owned()),
        },
    };
    Resolved::Value(value)
}

/// An int (Go's `ParseInt(s, 0, 64)` after dropping `_`, then `ParseUint`), or a float
/// in YAML's float syntax; `None` leaves the scalar a string.
fn number(text: &str) -> Option<Value> {
    if text.starts_with('.') {
        return text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(float);
    }
    let plain: String = text.chars().filter(|c| *c != '_').collect();
    if let Some(int) = go_parse_int(&plain) {
        return Some(Value::Number(int));
    }
    if yaml_style_float(&plain) {
        return plain
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(float);
    }
    None
}

fn float(f: f64) -> Option<Value> {
    Number::from_f64(f).map(Value::Number)
}

/// Go's `strconv.ParseInt(s, 0, 64)`, falling back to `ParseUint(s, 0, 64)`: an optional
/// sign, then `0x`, `0o`, `0b` or a leading `0` (octal) prefix, or decimal.
fn go_parse_int(s: &str) -> Option<Number> {
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = unsigned.to_ascii_lowercase();
    let (radix, digits) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        if magnitude <= i64::MAX as u64 + 1 {
            Some(Number::from((magnitude as i128).wrapping_neg() as i64))
        } else {
            None
        }
    } else {
        Some(Number::from(magnitude))
    }
}

/// go-yaml's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn yaml_style_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Vec<Value> {
        parse_stream(text, &|_| false)
            .unwrap()
            .into_iter()
            .map(|d| d.value)
            .collect()
    }

    #[test]
    fn plain_scalars_resolve_as_go_yaml_v2_does() {
        let docs = read(
            "a: on\nb: Off\nc: y\nd: NO\ne: 0644\nf: 1_000\ng: 0x1F\nh: 1:20\ni: 2026-01-01\n\
             j: ~\nk:\nl: '0644'\nm: \"on\"\nexp: 1e3\no: 0o17\np: +12\nq: 012345678\nr: -0b101\n\
             s: !!str 12\nt: |\n  on\nu: 0.5\nv: .5\nw: 1.\nx: -1\nbig: 9223372036854775808\n",
        );
        assert_eq!(
            docs[0],
            json!({"a": true, "b": false, "c": true, "d": false, "e": 420, "f": 1000, "g": 31,
                "h": "1:20", "i": "2026-01-01", "j": null, "k": null, "l": "0644", "m": "on",
                "exp": 1000.0, "o": 15, "p": 12, "q": 12345678.0, "r": -5, "s": "12", "t": "on\n",
                "u": 0.5, "v": 0.5, "w": 1.0, "x": -1, "big": 9223372036854775808u64})
        );
    }

    #[test]
    fn keys_become_their_json_text_and_merge_keys_merge() {
        let docs =
            read("yes: \"no\"\n1: one\noff: 1\nbase: &b {a: 1, b: 2}\nmerged:\n  <<: *b\n  b: 3\n");
        assert_eq!(
            docs[0],
            json!({"true": "no", "1": "one", "false": 1, "base": {"a": 1, "b": 2}, "merged": {"a": 1, "b": 3}})
        );
        // go-yaml v2 reads `y` as true, so it does too as a key.
        assert_eq!(read("y: 1\n")[0], json!({"true": 1}));
    }

    #[test]
    fn documents_are_numbered_as_people_count_them() {
        let docs = parse_stream("# c\n---\nkind: A\n---\n---\nkind: B\n", &|_| false).unwrap();
        let numbered: Vec<_> = docs.iter().map(|d| (d.number, d.value.clone())).collect();
        assert_eq!(
            numbered,
            vec![
                (1, json!({"kind": "A"})),
                (2, Value::Null),
                (3, json!({"kind": "B"}))
            ]
        );
    }

    #[test]
    fn spans_point_at_the_source() {
        let text = "kind: A\nmetadata:\n  name: x\n  namespace: 'ns'\n";
        let docs = parse_stream(text, &|p| p.len() <= 2).unwrap();
        let ns = docs[0].spans[&vec![Step::Key("metadata".into()), Step::Key("namespace".into())]];
        assert_eq!(&text[ns.start..ns.end], "'ns'");
        assert_eq!(ns.kind, NodeKind::Scalar(Quoting::Single));
        let meta = docs[0].spans[&vec![Step::Key("metadata".into())]];
        let NodeKind::Mapping {
            flow: false,
            first_key: Some(first),
        } = meta.kind
        else {
            panic!("{meta:?}")
        };
        assert_eq!((first.start, first.column), (text.find("name").unwrap(), 2));
    }

    /// Nine levels of ten aliases each would copy a billion nodes: an error, at once.
    #[test]
    fn an_alias_bomb_is_an_error_not_an_out_of_memory() {
        let mut text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
        for level in 1..10 {
            let previous = format!("*a{}", level - 1);
            let list = [previous.as_str(); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{list}]\n"));
        }
        let started = std::time::Instant::now();
        let err = parse_stream(&text, &|_| false).unwrap_err();
        assert!(err.message.contains("aliases expand to more than"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Merge keys and a few aliases, as manifests use them, are fine.
        assert!(parse_stream("base: &b {x: 1}\na: {<<: *b}\nb: {<<: *b}\n", &|_| false).is_ok());
    }

    #[test]
    fn what_json_cannot_hold_and_broken_yaml_are_errors() {
        assert!(parse_stream("a: .inf\n", &|_| false).is_err());
        let err = parse_stream("kind: A\n---\nkind: [unclosed\n", &|_| false).unwrap_err();
        assert_eq!(err.document, 2, "{err}");
        assert!(parse_stream("? [a]\n: b\n", &|_| false).is_err());
    }
}
