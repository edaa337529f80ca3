//! Reading `.gitlab-ci.yml` values as GitLab does: the YAML itself (with `!reference`
//! tags kept), `include:` merging, and the shapes of `script`, `variables`,
//! `services` and `parallel: matrix` values. Pure: no file but the one asked for.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::gitlab::services::{ResponseService, ResponseVariable};

/// `parallel: matrix` entries: each a mapping of variables to a value or a list of
/// values; their combinations, in GitLab's order.
pub(super) fn matrix_of(v: &Value) -> Result<Vec<Vec<(String, String)>>, String> {
    let Value::Array(entries) = v else {
        return Err("must be a list of mappings".into());
    };
    let scalar = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!(
            "values are strings or lists of strings, found {other}"
        )),
    };
    let mut out = vec![];
    for entry in entries {
        let Value::Object(m) = entry else {
            return Err("entries must be mappings".into());
        };
        let mut combos: Vec<Vec<(String, String)>> = vec![vec![]];
        for (k, v) in m {
            let values: Vec<String> = match v {
                Value::Array(a) => a.iter().map(scalar).collect::<Result<_, _>>()?,
                other => vec![scalar(other)?],
            };
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |val| {
                        let mut c = c.clone();
                        c.push((k.clone(), val.clone()));
                        c
                    })
                })
                .collect();
        }
        out.extend(combos);
    }
    Ok(out)
}

/// The key a `!reference [a, b]` becomes before parsing (serde loses YAML tags).
const REFERENCE: &str = "__runnerx_reference__";

/// Rewrites `!reference [a, b]` (GitLab's flow form) to `{__runnerx_reference__: [a, b]}`,
/// so the reference survives parsing as data.
pub(super) fn mark_references(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("!reference") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "!reference".len()..];
        let trimmed = after.trim_start_matches([' ', '\t']);
        if !trimmed.starts_with('[') {
            out.push_str("!reference");
            rest = after;
            continue;
        }
        let mut depth = 0;
        let mut end = None;
        for (i, c) in trimmed.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        match end {
            Some(e) => {
                out.push_str(&format!("{{{REFERENCE}: {}}}", &trimmed[..e]));
                rest = &trimmed[e..];
            }
            None => {
                out.push_str("!reference");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `value` with every reference replaced by what it names in `doc`.
pub(super) fn resolve_refs(value: &Value, doc: &Value, depth: usize) -> Result<Value, String> {
    if depth > 10 {
        return Err("!reference nests deeper than 10 levels (a cycle?)".into());
    }
    match value {
        Value::Object(m) if m.len() == 1 && m.contains_key(REFERENCE) => {
            let path: Vec<&str> = m[REFERENCE]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut target = doc;
            for key in &path {
                target = target.get(*key).ok_or_else(|| {
                    format!("!reference [{}]: {key:?} does not exist", path.join(", "))
                })?;
            }
            resolve_refs(target, doc, depth + 1)
        }
        Value::Object(m) => Ok(Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), resolve_refs(v, doc, depth)?)))
                .collect::<Result<_, String>>()?,
        )),
        Value::Array(a) => Ok(Value::Array(
            a.iter()
                .map(|v| resolve_refs(v, doc, depth))
                .collect::<Result<_, String>>()?,
        )),
        other => Ok(other.clone()),
    }
}

pub(super) fn parse_yaml(path: &Path) -> Result<Map<String, Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = mark_references(&text);
    let v: Value = serde_saphyr::from_str(&text).map_err(|e| {
        format!(
            "{}: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or("invalid YAML")
        )
    })?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(format!(
            "{}: the top level must be a mapping of keywords and jobs",
            path.display()
        )),
    }
}

/// The repository root for `include: local:` paths: the nearest ancestor holding `.git`,
/// else the pipeline file's directory.
pub fn repo_root(file: &Path) -> PathBuf {
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    dir.ancestors()
        .find(|a| a.join(".git").exists())
        .map_or(dir.clone(), Path::to_path_buf)
}

/// Deep merge as GitLab does for `extends` and includes: mappings merge key by key,
/// everything else (arrays included) is replaced by `over`.
pub(super) fn merge(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                let merged = match out.get(k) {
                    Some(bv) => merge(bv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        _ => over.clone(),
    }
}

/// `services:` entries: an image name, or a mapping with `name`, `alias`,
/// `entrypoint`, `command` and `variables` (a mapping here, a list in the payload).
pub(super) fn services_of(v: &Value) -> Result<Vec<ResponseService>, String> {
    let Value::Array(items) = v else {
        return Err("must be a list".into());
    };
    let strings = |v: Option<&Value>| -> Result<Option<Vec<String>>, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "entrypoint and command take strings, found {other}"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(format!(
                "entrypoint and command take strings, found {other}"
            )),
        }
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(name) => Ok(ResponseService {
                name: name.clone(),
                ..Default::default()
            }),
            Value::Object(m) => Ok(ResponseService {
                name: m
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or("an entry has no name")?
                    .to_string(),
                alias: m.get("alias").and_then(Value::as_str).map(String::from),
                entrypoint: strings(m.get("entrypoint"))?,
                command: strings(m.get("command"))?,
                variables: match m.get("variables") {
                    Some(v) => Some(
                        variables_of(v)?
                            .into_iter()
                            .map(|(key, value)| ResponseVariable {
                                key,
                                value,
                                file: false,
                            })
                            .collect(),
                    ),
                    None => None,
                },
            }),
            other => Err(format!("entries are names or mappings, found {other}")),
        })
        .collect()
}

/// Script lines: a string or a list of strings (nested lists, as `!reference` gives,
/// are flattened one level).
pub(super) fn lines(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        // Nested lists (what `!reference` leaves) are flattened, as GitLab does.
        Value::Array(a) => {
            let mut out = vec![];
            for item in a {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    Value::Array(_) => out.extend(lines(item)?),
                    other => {
                        return Err(format!("script lines must be strings, found {other}"));
                    }
                }
            }
            Ok(out)
        }
        other => Err(format!(
            "must be a string or a list of strings, found {other}"
        )),
    }
}

/// `variables:` entries: scalars, or mappings with `value` (and `description`).
pub(super) fn variables_of(v: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Object(m) = v else {
        return Err("must be a mapping".into());
    };
    m.iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                Value::Object(o) => match o.get("value") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                },
                Value::Array(_) => return Err(format!("{k} must be a string, not a list")),
            };
            Ok((k.clone(), value))
        })
        .collect()
}
