//! What a resolved job becomes for the executor: variables expanded as gitlab-runner
//! expands them, and stage scripts in gitlab-runner's bash shape (`shells/bash.go`).

use std::collections::{BTreeMap, BTreeSet};

/// Walks `value`'s `$NAME` / `${NAME}` references: each is replaced by what `on_ref`
/// makes of (name, the reference as written); `$$` becomes `$`, or stays `$$` with
/// `keep_escapes`. A `$` starting no name stays.
fn walk(value: &str, keep_escapes: bool, on_ref: &mut dyn FnMut(&str, &str) -> String) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'$') {
            out.push_str(if keep_escapes { "$$" } else { "$" });
            i += 2;
            continue;
        }
        let (name, next) = if chars.get(i + 1) == Some(&'{') {
            match chars[i + 2..].iter().position(|c| *c == '}') {
                Some(end) => (
                    chars[i + 2..i + 2 + end].iter().collect::<String>(),
                    i + 3 + end,
                ),
                None => (String::new(), i + 1),
            }
        } else {
            let len = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            (chars[i + 1..i + 1 + len].iter().collect(), i + 1 + len)
        };
        if name.is_empty() {
            out.push('$');
            i += 1;
        } else {
            let written: String = chars[i..next].iter().collect();
            out.push_str(&on_ref(&name, &written));
            i = next;
        }
    }
    out
}

/// Expands `$VAR` and `${VAR}` from `known` (unknown ones become empty, `$$` is `$`),
/// once, as gitlab-runner's `JobVariables.Expand` does (`os.Expand` over the raw
/// values: a value that refers to another gets that one's value as written).
pub fn expand(value: &str, known: &BTreeMap<String, String>) -> String {
    walk(value, false, &mut |name, _| {
        known.get(name).cloned().unwrap_or_default()
    })
}

/// Replaces each `$NAME` / `${NAME}` for which `lookup` answers; leaves the others
/// (and `$$`) exactly as written: GitLab's server-side pass, which leaves unknown
/// references and escapes to the runner.
fn substitute(value: &str, lookup: &mut dyn FnMut(&str) -> Option<String>) -> String {
    walk(value, true, &mut |name, written| {
        lookup(name).unwrap_or_else(|| written.to_string())
    })
}

/// Variables as a job gets them: GitLab's nested expansion over the whole set (a
/// variable referring to another gets that one fully expanded; `raw` ones, from
/// `expand: false`, are used as written at every level), then gitlab-runner's own
/// pass ([`expand`]: `$$`, references left unknown become empty). Variables that
/// refer to each other in a cycle keep their values as written; the cycles are
/// returned for one warning each.
pub fn expand_all(
    vars: &BTreeMap<String, String>,
    raw: &BTreeSet<String>,
) -> (BTreeMap<String, String>, Vec<Vec<String>>) {
    struct Pass<'a> {
        vars: &'a BTreeMap<String, String>,
        raw: &'a BTreeSet<String>,
        done: BTreeMap<String, String>,
        stack: Vec<String>,
        cyclic: BTreeSet<String>,
        cycles: Vec<Vec<String>>,
    }
    fn resolve(p: &mut Pass, name: &str) -> Option<String> {
        if let Some(v) = p.done.get(name) {
            return Some(v.clone());
        }
        let written = p.vars.get(name)?.clone();
        if p.raw.contains(name) {
            // Escaped, so the runner's pass leaves it as written too.
            return Some(written.replace('$', "$$"));
        }
        if let Some(at) = p.stack.iter().position(|n| n == name) {
            let cycle = p.stack[at..].to_vec();
            p.cyclic.extend(cycle.iter().cloned());
            p.cycles.push(cycle);
            return None;
        }
        p.stack.push(name.to_string());
        let expanded = substitute(&written, &mut |n| resolve(p, n));
        p.stack.pop();
        let value = if p.cyclic.contains(name) {
            written
        } else {
            expanded
        };
        p.done.insert(name.to_string(), value.clone());
        Some(value)
    }
    let mut p = Pass {
        vars,
        raw,
        done: BTreeMap::new(),
        stack: vec![],
        cyclic: BTreeSet::new(),
        cycles: vec![],
    };
    for name in vars.keys() {
        resolve(&mut p, name);
    }
    let server: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                p.done.get(k).cloned().unwrap_or_else(|| v.clone()),
            )
        })
        .collect();
    let out = server
        .iter()
        .map(|(k, v)| {
            let kept = raw.contains(k) || p.cyclic.contains(k);
            (
                k.clone(),
                if kept {
                    vars[k].clone()
                } else {
                    expand(v, &server)
                },
            )
        })
        .collect();
    (out, p.cycles)
}

fn single_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A stage script in gitlab-runner's bash shape: shebang, `trap exit 1 TERM`, pipefail
/// and errexit, then the body (variables exported, `cd` into the project, each command
/// echoed in green before it runs) evaluated in a subshell reading /dev/null.
/// `project_dir` is `None` for stages that run before the checkout exists. Variables
/// named in `files` are file-type: as gitlab-runner's bash shell does, their value is
/// written to `<project_dir>.tmp/<KEY>` (0600) and the variable holds that path.
pub fn bash_script(
    vars: &[(String, String)],
    files: &BTreeSet<String>,
    project_dir: Option<&str>,
    commands: &[String],
) -> String {
    let mut body = String::new();
    for (k, v) in vars {
        if !files.contains(k) {
            body.push_str(&format!("export {k}={}\n", single_quote(v)));
        } else if let Some(dir) = project_dir {
            let path = single_quote(&format!("{dir}.tmp/{k}"));
            body.push_str(&format!(
                "mkdir -p {dir_q} && (umask 077 && printf '%s' {v_q} > {path})\nexport {k}={path}\n",
                dir_q = single_quote(&format!("{dir}.tmp")),
                v_q = single_quote(v),
            ));
        }
    }
    if let Some(dir) = project_dir {
        body.push_str(&format!("cd {}\n", single_quote(dir)));
    }
    for c in commands {
        let first = c.lines().next().unwrap_or("");
        let shown = if c.trim_end().contains('\n') {
            format!("{first} # collapsed multi-line command")
        } else {
            first.to_string()
        };
        body.push_str(&format!(
            "echo {}\n{c}\n",
            single_quote(&format!("\x1b[32;1m$ {shown}\x1b[0;m"))
        ));
    }
    format!(
        "#!/usr/bin/env bash\n\ntrap exit 1 TERM\n\nif set -o | grep pipefail > /dev/null; then set -o pipefail; fi; set -o errexit\nset +o noclobber\n( trap 'exit 1' TERM; eval {} ) < /dev/null\nexit 0\n",
        single_quote(&body)
    )
}
