//! The shape of the code, checked: modules import only their own layer and those below it,
//! no two modules import each other (directly or round a cycle), and no function is longer
//! than a screen. Read from the sources, so it runs anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's modules, bottom layer first: a module may use its own layer and those below.
const LAYERS: &[&[&str]] = &[
    &["error", "rng", "choice", "output", "resources", "interrupt", "vector", "fastmath", "objective", "svd"],
    &["data", "lab"],
    &["grid"],
    &["cache"],
    &["schedule", "problem"],
    &["model"],
    &["metrics", "ranking", "update"],
    &["svdpp", "solver"],
    &["cpu", "gpu", "ensemble"],
    &["training"],
    &["distributed", "search", "validate", "bench"],
    &["job"],
];

/// Lines a function may take, its signature and closing brace included: a screen (a longer
/// one is doing two jobs).
const LONGEST_FUNCTION: usize = 60;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's code before its test module: an item marked `#[cfg(test)]` (a helper the tests
/// use) is code like the rest, and what follows it is checked too.
fn before_tests(code: &str) -> &str {
    code.match_indices("#[cfg(test)]\n").find(|&(at, _)| (at == 0 || code[..at].ends_with('\n')) && code[at..].lines().nth(1).is_some_and(|l| l.starts_with("mod "))).map_or(code, |(at, _)| &code[..at])
}

/// Each library file's module path (`distributed::worker`) and its code before its tests.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut out = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(&root).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts.first().is_some_and(|p| p == "main" || p == "cli" || p == "lib") {
            continue;
        }
        let code = std::fs::read_to_string(&path).unwrap();
        let code = before_tests(&code).to_string();
        out.insert(parts.join("::"), code);
    }
    out
}

/// The modules `code` (of module `me`) names through `crate::` and `super::` paths: the
/// longest known module each path starts with.
fn uses(me: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let own: Vec<&str> = me.split("::").collect();
    let mut out = BTreeSet::new();
    let code: String = code.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n");
    let bytes = code.as_bytes();
    for (at, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':') {
            continue;
        }
        let rest = &code[at..];
        let (head, tail) = rest.split_once("::").unwrap();
        let mut path: Vec<String> = if head == "crate" { Vec::new() } else { own[..own.len() - 1].iter().map(|s| s.to_string()).collect() };
        // `use crate::{a, b::c}` names several.
        let tail = tail.trim_start();
        let names: Vec<String> = if let Some(group) = tail.strip_prefix('{') {
            group.split('}').next().unwrap().split(',').map(|s| s.trim().to_string()).collect()
        } else {
            vec![tail.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).next().unwrap().to_string()]
        };
        for name in names {
            let segments: Vec<&str> = name.split("::").filter(|s| !s.is_empty()).collect();
            let mut full = path.clone();
            full.extend(segments.iter().map(|s| s.to_string()));
            for n in (1..=full.len()).rev() {
                let candidate = full[..n].join("::");
                if known.contains(&candidate) {
                    if candidate != me && !me.starts_with(&format!("{candidate}::")) {
                        out.insert(candidate);
                    }
                    break;
                }
            }
        }
        path.clear();
    }
    out
}

fn layer_of(module: &str) -> usize {
    let top = module.split("::").next().unwrap();
    LAYERS.iter().position(|l| l.contains(&top)).unwrap_or_else(|| panic!("module {top} is in no layer of tests/structure.rs: place it"))
}

#[test]
fn modules_import_only_their_layer_and_those_below() {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut wrong = Vec::new();
    for (me, code) in &modules {
        for used in uses(me, code, &known) {
            if layer_of(&used) > layer_of(me) {
                wrong.push(format!("{me} (layer {}) uses {used} (layer {})", layer_of(me), layer_of(&used)));
            }
        }
    }
    assert!(wrong.is_empty(), "imports of a module above:\n{}", wrong.join("\n"));
}

#[test]
fn no_module_imports_itself_round_a_cycle() {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let edges: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|(me, code)| (me.clone(), uses(me, code, &known))).collect();
    // Depth-first search for a back edge, reporting the cycle it closes.
    fn visit(node: &str, edges: &BTreeMap<String, BTreeSet<String>>, state: &mut BTreeMap<String, u8>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(cycle) = visit(next, edges, state, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node) {
            let cycle = visit(node, &edges, &mut state, &mut Vec::new());
            assert!(cycle.is_none(), "an import cycle: {}", cycle.unwrap().join(" -> "));
        }
    }
}

/// Each function's name and length in lines, from its `fn` line to its closing brace at the
/// same indentation.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let signature = ["fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn ", "unsafe fn ", "pub unsafe fn ", "pub(super) unsafe fn "].iter().find_map(|p| trimmed.strip_prefix(p));
        if let Some(rest) = signature {
            if !line.trim_end().ends_with(';') {
                let name = rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap().to_string();
                // A body on the signature's line (`fn start(&mut self) {}`) ends there.
                let one_line = line.trim_end().ends_with('}');
                let end = (i + 1..lines.len()).find(|&j| lines[j].len() - lines[j].trim_start().len() == indent && lines[j].trim_start().starts_with('}')).filter(|_| !one_line).unwrap_or(i);
                out.push((name, i + 1, end - i + 1));
                i = end;
            }
        }
        i += 1;
    }
    out
}

#[test]
fn no_function_is_longer_than_a_screen() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    sources(&root.join("python/src"), &mut files);
    let mut long = Vec::new();
    for path in files {
        let code = std::fs::read_to_string(&path).unwrap();
        let code = before_tests(&code);
        for (name, line, length) in functions(code) {
            if length > LONGEST_FUNCTION {
                long.push(format!("{}:{line} {name}: {length} lines", path.strip_prefix(root).unwrap().display()));
            }
        }
    }
    assert!(long.is_empty(), "functions longer than {LONGEST_FUNCTION} lines (split them by what they do):\n{}", long.join("\n"));
}

#[test]
fn the_checks_see_what_they_check() {
    let known: BTreeSet<String> = ["data", "model", "distributed", "distributed::worker", "objective"].iter().map(|s| s.to_string()).collect();
    let used = uses("distributed::solver", "use super::worker::{Command, Worker};\nuse crate::{data::Rating, objective::Loss};\nlet x = crate::model::Model::init();", &known);
    assert_eq!(used, ["data", "distributed::worker", "model", "objective"].iter().map(|s| s.to_string()).collect());
    let f = functions("fn a() {\n    x\n}\n\nimpl B {\n    fn c(&self) {}\n    pub fn b(&self) {\n        y\n    }\n}\n");
    assert_eq!(f, vec![("a".to_string(), 1, 3), ("c".to_string(), 6, 1), ("b".to_string(), 7, 3)]);
}
