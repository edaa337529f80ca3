//! The tree's seams hold: no import cycle between source files (a `crate::`/`super::`
//! path counts as an edge to the file that defines its deepest existing module; test
//! modules and comments do not count). Needs no Docker (fast tier).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `["a", "b"]`; lib.rs and main.rs → `[]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

/// The file defining the deepest existing module on `path`.
fn file_of(path: &[String]) -> Option<PathBuf> {
    (1..=path.len()).rev().find_map(|n| {
        let base = path[..n].iter().fold(src(), |p, s| p.join(s));
        [base.with_extension("rs"), base.join("mod.rs")]
            .into_iter()
            .find(|p| p.is_file())
    })
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every `crate::…`/`super::…` path in `code`, with `use x::{a, b::c}` lists expanded.
fn paths(code: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = vec![];
    for (at, root) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut base: Vec<String> = if root == "crate::" {
            vec![]
        } else {
            me[..me.len().saturating_sub(1)].to_vec()
        };
        let mut rest = &code[at + root.len()..];
        loop {
            if let Some(list) = rest.strip_prefix('{') {
                let inner = &list[..list.find('}').unwrap_or(list.len())];
                for item in inner.split(',') {
                    let item: Vec<String> = item.trim().split("::").map(ident).collect();
                    if !item[0].is_empty() && item[0] != "self" {
                        out.push(base.iter().cloned().chain(item).collect());
                    }
                }
                break;
            }
            let seg = ident(rest);
            if seg.is_empty() {
                out.push(base);
                break;
            }
            base.push(seg.clone());
            match rest[seg.len()..].strip_prefix("::") {
                Some(r) => rest = r,
                None => {
                    out.push(base);
                    break;
                }
            }
        }
    }
    out
}

#[test]
fn no_import_cycles_between_source_files() {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let deps = paths(&code, &module_of(f))
            .iter()
            .filter_map(|p| file_of(p))
            .filter(|d| d != f)
            .collect();
        graph.insert(f.clone(), deps);
    }
    assert!(graph.len() > 40, "only {} files", graph.len());
    // A file is on a cycle when it can reach itself.
    let mut cycles = vec![];
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&PathBuf> = graph[start].iter().collect();
        while let Some(f) = todo.pop() {
            if f == start {
                let shown = start.strip_prefix(src()).unwrap().display().to_string();
                cycles.push(shown);
                break;
            }
            if seen.insert(f) {
                todo.extend(graph.get(f).into_iter().flatten());
            }
        }
    }
    assert!(cycles.is_empty(), "files on an import cycle: {cycles:?}");
}

#[test]
fn the_path_reader_sees_lists_and_super() {
    let me = vec!["registry".to_string(), "session".to_string()];
    let p = paths(
        "use super::client::{Answer, Auth};\nuse crate::settings::Registry;",
        &me,
    );
    assert!(p.contains(&vec!["registry".into(), "client".into(), "Answer".into()]));
    assert!(p.contains(&vec!["settings".into(), "Registry".into()]));
    assert_eq!(
        file_of(&["registry".into(), "client".into(), "Answer".into()]),
        Some(src().join("registry/client.rs"))
    );
}
