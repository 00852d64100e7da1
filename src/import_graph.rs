//! The crate's import graph, read from its own source: every `crate::` and `super::` path
//! outside comments and test modules is an edge from the file's module to the module it
//! names. A folder's `mod.rs` declaring, re-exporting or calling its own children is the
//! module tree, not an import, and is left out; a child importing its parent counts.
//!
//! Checked: no import circle at any depth, and every import between top-level modules
//! points down [`LAYERS`] (the order of lib.rs's map). `cargo test --lib import_graph --
//! --nocapture` prints the layers and each module's imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, bottom first: each may import only from those before it.
const LAYERS: &[&str] = &[
    "excerpt",
    "outcome",
    "yaml",
    "documents",
    "scope",
    "simple_container",
    "decisions",
    "placement_policy",
    "manifests",
    "audit",
    "migration",
    "telemetry",
    "metrics",
    "certs",
    "cluster",
    "admission",
    "background_audit",
    "server",
    "cli",
];

/// Module path (`cluster::live::scan`) to its source file, for every file under `src/`.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] || parts == ["import_graph"] {
                continue;
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// The code of a file without its comments and its `#[cfg(test)]` modules.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i64> = None;
    let mut depth = 0i64;
    let mut pending_test = false;
    for line in text.lines() {
        let line = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]" {
            pending_test = true;
            continue;
        }
        let opens = line.matches('{').count() as i64;
        let closes = line.matches('}').count() as i64;
        if pending_test && skip_depth.is_none() {
            pending_test = false;
            skip_depth = Some(depth);
        }
        depth += opens - closes;
        if let Some(at) = skip_depth {
            if depth <= at && (opens > 0 || closes > 0 || trimmed.ends_with(';')) {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The module a path names: the longest prefix of `segments` that is a module.
fn resolve(modules: &BTreeMap<String, PathBuf>, segments: &[&str]) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

/// Every path in `code` that starts with `crate::` or `super::`, as module segments from
/// the crate root, with `use a::{b, c::d}` groups expanded one level.
fn paths(code: &str, me: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut at = 0;
    while at < bytes.len() {
        let rest = &code[at..];
        let starts = (at == 0 || !word(bytes[at - 1]))
            && (rest.starts_with("crate::") || rest.starts_with("super::"));
        if !starts {
            at += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches(':');
        let mut base: Vec<String> = Vec::new();
        let mut segments = path.split("::").peekable();
        // The module a `super::` chain starts from: a file's module, then its parents.
        let mut from: Vec<&str> = me.split("::").collect();
        while let Some(&first) = segments.peek() {
            match first {
                "crate" => {
                    base.clear();
                    from.clear();
                    segments.next();
                }
                "super" => {
                    from.pop();
                    segments.next();
                }
                _ => break,
            }
        }
        base.extend(from.iter().map(|s| s.to_string()));
        base.extend(segments.map(str::to_owned));
        // `use crate::a::{b, c::d}`: each item of the group.
        if rest[end..].starts_with('{') {
            let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
            for item in rest[end + 1..close].split(',') {
                let item = item.trim().split(" as ").next().unwrap_or("").trim();
                let mut full = base.clone();
                full.extend(
                    item.split("::")
                        .filter(|s| !s.is_empty() && *s != "self")
                        .map(str::to_owned),
                );
                out.push(full);
            }
        }
        out.push(base);
        at += end.max(1);
    }
    out
}

fn graph() -> (
    BTreeMap<String, PathBuf>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (me, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        for path in paths(&code(&text), me) {
            let segments: Vec<&str> = path.iter().map(String::as_str).collect();
            let Some(target) = resolve(&modules, &segments) else {
                continue;
            };
            // A parent and its own children are the module tree.
            if target == *me || target.starts_with(&format!("{me}::")) {
                continue;
            }
            edges.entry(me.clone()).or_default().insert(target);
        }
    }
    (modules, edges)
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap()
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
fn circles(nodes: &[String], edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let low = s.low[v].min(s.low[w.as_str()]);
                s.low.insert(v, low);
            } else if s.on.contains(w.as_str()) {
                let low = s.low[v].min(s.index[w.as_str()]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in nodes {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

#[test]
fn import_graph_has_no_circle_and_every_import_points_down() {
    let (modules, edges) = graph();
    let rank = |m: &str| LAYERS.iter().position(|l| *l == top(m));
    for layer in LAYERS {
        println!("{layer}");
        for (module, targets) in edges.iter().filter(|(m, _)| top(m) == *layer) {
            println!(
                "  {module} -> {}",
                Vec::from_iter(targets.iter().cloned()).join(", ")
            );
        }
    }
    let unlisted: BTreeSet<&str> = (modules.keys())
        .map(|m| top(m))
        .filter(|m| !LAYERS.contains(m))
        .collect();
    assert!(
        unlisted.is_empty(),
        "modules missing from LAYERS: {unlisted:?}"
    );
    let upward: Vec<String> = (edges.iter())
        .flat_map(|(from, targets)| targets.iter().map(move |to| (from, to)))
        .filter(|(from, to)| top(from) != top(to) && rank(to) >= rank(from))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect();
    assert!(
        upward.is_empty(),
        "imports that point up the layers: {upward:#?}"
    );
    let nodes: Vec<String> = modules.keys().cloned().collect();
    let circles = circles(&nodes, &edges);
    assert!(circles.is_empty(), "import circles: {circles:#?}");
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 50,
        "the graph was read"
    );
}

#[test]
fn lib_names_every_top_level_module_in_its_map() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for layer in LAYERS {
        assert!(
            lib.contains(&format!("[`{layer}`]")),
            "lib.rs's map does not name {layer}"
        );
        assert!(
            lib.contains(&format!("pub mod {layer};")),
            "lib.rs declares no {layer}"
        );
    }
}

#[test]
fn the_reader_finds_what_a_file_imports() {
    let code = code(
        "use crate::a::{b, c::d as e};\nuse super::sib::X;\n// crate::commented\nfn f() { crate::z::g(); }\n#[cfg(test)]\nmod tests {\n    use crate::only_in_tests;\n}\n",
    );
    let found: Vec<String> = paths(&code, "m::me").iter().map(|p| p.join("::")).collect();
    assert!(found.contains(&"a::b".to_owned()), "{found:?}");
    assert!(found.contains(&"a::c::d".to_owned()), "{found:?}");
    assert!(found.contains(&"m::sib::X".to_owned()), "{found:?}");
    assert!(found.contains(&"z::g".to_owned()), "{found:?}");
    assert!(
        !found
            .iter()
            .any(|p| p.contains("commented") || p.contains("only_in_tests")),
        "{found:?}"
    );
    let nodes = ["a", "b", "c"].map(str::to_owned);
    let edges = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        (
            "b".to_owned(),
            BTreeSet::from(["a".to_owned(), "c".to_owned()]),
        ),
    ]);
    assert_eq!(
        circles(&nodes, &edges),
        vec![vec!["a".to_owned(), "b".to_owned()]]
    );
}

/// A file names its own items and its children's from where it is (`leader::Turn`, not
/// `crate::background_audit::leader::Turn`): a `crate::` path back into the file's own
/// module hides which imports leave it.
#[test]
fn no_file_reaches_itself_through_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (me, file) in modules(&src) {
        let code = code(&std::fs::read_to_string(&file).unwrap());
        for own in [format!("crate::{me}::"), format!("crate::{me};")] {
            if code.contains(&own) {
                found.push(format!("{}: {own}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}
