//! The project stands on its own: every `*.md` file and heading that code, scripts or
//! docs cite exists in this repository, and nothing cites a `§` of notes that are not
//! part of it. Needs no Docker (fast tier).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Tracked text files whose citations must resolve.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "snapshots") {
                sources(&path, out);
            }
        } else if [".rs", ".sh", ".md", ".toml", ".yml", ".yaml"]
            .iter()
            .any(|ext| name.ends_with(ext))
            || name == "Dockerfile"
            || name == "run"
        {
            out.push(path);
        }
    }
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(md: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(md).unwrap();
    let mut in_code = false;
    let mut out = vec![];
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// `(file, anchor)` for every `something.md` or `something.md#anchor` in `text`.
fn citations(text: &str) -> Vec<(String, Option<String>)> {
    let bytes = text.as_bytes();
    let mut out = vec![];
    let mut at = 0;
    while let Some(i) = text[at..].find(".md") {
        let end = at + i + 3;
        let start = text[..at + i]
            .rfind(|c: char| !(c.is_alphanumeric() || "_-./".contains(c)))
            .map_or(0, |s| s + 1);
        let next = bytes.get(end).copied().unwrap_or(b' ');
        if start < at + i && !(next as char).is_alphanumeric() {
            let file = text[start..end].to_string();
            let anchor = (next == b'#').then(|| {
                text[end + 1..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
                    .collect::<String>()
            });
            out.push((file, anchor));
        }
        at = end;
    }
    out
}

fn resolve(cited: &str, from: &Path) -> Option<PathBuf> {
    let root = root();
    let cited = cited.trim_start_matches("./");
    [
        root.join(cited),
        root.join("docs").join(cited),
        from.parent().unwrap().join(cited),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

#[test]
fn every_cited_file_and_heading_exists_in_the_repository() {
    let mut files = vec![];
    sources(&root(), &mut files);
    assert!(files.len() > 30, "found only {} files", files.len());
    let mut broken = vec![];
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(root()).unwrap().display().to_string();
        if shown == "tests/integration/docs.rs" {
            continue;
        }
        if text.contains('§') {
            broken.push(format!(
                "{shown}: cites a § (cite a heading in docs/ instead)"
            ));
        }
        for (cited, anchor) in citations(&text) {
            checked += 1;
            match (resolve(&cited, file), anchor) {
                (None, _) => broken.push(format!("{shown}: {cited} is not in the repository")),
                (Some(md), Some(a)) if !anchors(&md).contains(&a) => {
                    broken.push(format!("{shown}: {cited}#{a}: no such heading"))
                }
                _ => {}
            }
        }
    }
    assert!(
        checked > 5,
        "only {checked} citations found: the scanner is broken"
    );
    assert!(
        broken.is_empty(),
        "broken citations:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_scanner_finds_what_it_must() {
    assert_eq!(
        citations("see docs/background.md#qemu-pinning, and README.md."),
        [
            (
                "docs/background.md".to_string(),
                Some("qemu-pinning".to_string())
            ),
            ("README.md".to_string(), None)
        ]
    );
    assert_eq!(
        slug(" Inner networks and the host's docker0"),
        "inner-networks-and-the-hosts-docker0"
    );
    let md = root().join("docs/background.md");
    assert!(anchors(&md).contains(&"qemu-pinning".to_string()));
    assert!(resolve("test-environment.md", &md).is_none());
}

/// Backticked `src/…` paths in the code map of docs/architecture.md, except the bold
/// folder headings (`**\`src/host/\`**`), which would cover any file.
fn code_map() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let spans: Vec<&str> = text.split('`').collect();
    (1..spans.len())
        .step_by(2)
        .filter(|&i| spans[i].starts_with("src/") && !spans[i - 1].ends_with("**"))
        .map(|i| spans[i].to_string())
        .collect()
}

fn covers(mention: &str, file: &str) -> bool {
    match mention.split_once('*') {
        Some((pre, post)) => file.starts_with(pre) && file.ends_with(post),
        None if mention.ends_with('/') => file.starts_with(mention),
        None => file == mention,
    }
}

#[test]
fn the_code_map_matches_the_tree_path_for_path() {
    let mut files = vec![];
    sources(&root().join("src"), &mut files);
    let files: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .chain(["src/builder/seccomp.json".to_string()])
        .collect();
    let map = code_map();
    assert!(map.len() > 20, "code map not found: {map:?}");
    let unmapped: Vec<&String> = files
        .iter()
        .filter(|f| !map.iter().any(|m| covers(m, f)))
        .collect();
    assert!(
        unmapped.is_empty(),
        "files missing from docs/architecture.md's code map: {unmapped:?}"
    );
    let stale: Vec<&String> = map
        .iter()
        .filter(|m| {
            !root().join(m.replace('*', "")).exists() && !files.iter().any(|f| covers(m, f))
        })
        .collect();
    assert!(
        stale.is_empty(),
        "code map entries that are not in the tree: {stale:?}"
    );
}
