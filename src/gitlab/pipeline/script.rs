//! What a resolved job becomes for the executor: variables expanded as gitlab-runner
//! expands them, and stage scripts in gitlab-runner's bash shape (`shells/bash.go`).

use std::collections::BTreeMap;

/// Expands `$VAR` and `${VAR}` from `known` (unknown ones become empty, `$$` is `$`),
/// once, as gitlab-runner's `JobVariables.Expand` does (`os.Expand` over the raw
/// values: a value that refers to another gets that one's value as written).
pub fn expand(value: &str, known: &BTreeMap<String, String>) -> String {
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
            out.push('$');
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
            out.push_str(known.get(&name).map_or("", String::as_str));
            i = next;
        }
    }
    out
}

fn single_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A stage script in gitlab-runner's bash shape: shebang, `trap exit 1 TERM`, pipefail
/// and errexit, then the body (variables exported, `cd` into the project, each command
/// echoed in green before it runs) evaluated in a subshell reading /dev/null.
/// `project_dir` is `None` for stages that run before the checkout exists.
pub fn bash_script(
    vars: &[(String, String)],
    project_dir: Option<&str>,
    commands: &[String],
) -> String {
    let mut body = String::new();
    for (k, v) in vars {
        body.push_str(&format!("export {k}={}\n", single_quote(v)));
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
