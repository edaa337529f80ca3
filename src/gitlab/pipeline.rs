//! `.gitlab-ci.yml` for `runnerx local` (and the template checks): load a pipeline
//! file with its `include: local:` files, validate its shape, and resolve one job
//! (`extends`, `default`, variables) into what gitlab-runner would hand the executor.
//! Also renders stage scripts in gitlab-runner's bash shape (`shells/bash.go`).
//!
//! Only the subset a build job uses is supported: `include: local`, `variables`,
//! `default`, `extends`, `image`, `before_script`, `script`, `after_script`. Anything
//! else is kept but ignored; unsupported `include` kinds are an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::PipelineError;
use crate::gitlab::services::{ResponseService, ResponseVariable};

/// Top-level keys that are not jobs.
const RESERVED: &[&str] = &[
    "default",
    "include",
    "stages",
    "variables",
    "workflow",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];

/// A loaded pipeline: the merged top level of the file and its includes.
#[derive(Debug, Clone)]
pub struct Pipeline {
    doc: Map<String, Value>,
}

/// One job, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDef {
    /// Job name.
    pub name: String,
    /// `image:` name, if any.
    pub image: Option<String>,
    /// Global then job variables, unexpanded, in order.
    pub variables: Vec<(String, String)>,
    /// `before_script` lines.
    pub before_script: Vec<String>,
    /// `script` lines.
    pub script: Vec<String>,
    /// `after_script` lines.
    pub after_script: Vec<String>,
    /// `services:`, in the job payload's shape.
    pub(crate) services: Vec<ResponseService>,
    /// `stage:` (GitLab's default: `test`).
    pub stage: String,
    /// Variables declared with `expand: false` (their values stay as written).
    pub raw: std::collections::BTreeSet<String>,
    /// `parallel: matrix` combinations (each a set of variables); empty without one.
    pub matrix: Vec<Vec<(String, String)>>,
}

/// Every job keyword GitLab knows (its CI/CD YAML reference).
const JOB_KEYWORDS: &[&str] = &[
    "after_script",
    "allow_failure",
    "artifacts",
    "before_script",
    "cache",
    "coverage",
    "dast_configuration",
    "dependencies",
    "environment",
    "except",
    "extends",
    "hooks",
    "id_tokens",
    "identity",
    "image",
    "inherit",
    "interruptible",
    "manual_confirmation",
    "needs",
    "only",
    "pages",
    "parallel",
    "release",
    "resource_group",
    "retry",
    "rules",
    "run",
    "script",
    "secrets",
    "services",
    "stage",
    "tags",
    "timeout",
    "trigger",
    "variables",
    "when",
];

/// The job keywords `runnerx local` honours; any other valid one is named in a warning.
const LOCAL_KEYWORDS: &[&str] = &[
    "after_script",
    "before_script",
    "extends",
    "image",
    "script",
    "services",
    "stage",
    "variables",
];

/// Levenshtein distance (for "did you mean").
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The job keyword nearest to `key`.
fn nearest(key: &str) -> &'static str {
    JOB_KEYWORDS
        .iter()
        .min_by_key(|k| distance(key, k))
        .copied()
        .unwrap_or("script")
}

/// `parallel: matrix` entries: each a mapping of variables to a value or a list of
/// values; their combinations, in GitLab's order.
fn matrix_of(v: &Value) -> Result<Vec<Vec<(String, String)>>, String> {
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
fn mark_references(text: &str) -> String {
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
fn resolve_refs(value: &Value, doc: &Value, depth: usize) -> Result<Value, String> {
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

fn parse_yaml(path: &Path) -> Result<Map<String, Value>, String> {
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
fn merge(base: &Value, over: &Value) -> Value {
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

impl Pipeline {
    /// Loads `file` and its local includes (relative to [`repo_root`]).
    pub fn load(file: &Path) -> Result<Pipeline, PipelineError> {
        let root = repo_root(file);
        let main = parse_yaml(file)?;
        let mut merged = Map::new();
        let includes = match main.get("include") {
            None => vec![],
            Some(Value::Array(a)) => a.clone(),
            Some(other) => vec![other.clone()],
        };
        for inc in includes {
            let local = match &inc {
                Value::String(s) if !s.starts_with("http") => s.clone(),
                Value::Object(m) if m.get("local").is_some() => {
                    m["local"].as_str().unwrap_or_default().to_string()
                }
                other => {
                    return Err(format!(
                        "{}: include {other} is not supported by runnerx local (only `local:` files)",
                        file.display()
                    ).into());
                }
            };
            let path = root.join(local.trim_start_matches('/'));
            let doc = parse_yaml(&path).map_err(|e| format!("include {local:?}: {e}"))?;
            if doc.contains_key("include") {
                return Err(format!(
                    "{}: nested includes are not supported by runnerx local",
                    path.display()
                )
                .into());
            }
            merged = match merge(&Value::Object(merged), &Value::Object(doc)) {
                Value::Object(m) => m,
                _ => unreachable!("merging mappings gives a mapping"),
            };
        }
        let mut main = main;
        main.remove("include");
        let doc = match merge(&Value::Object(merged), &Value::Object(main)) {
            Value::Object(m) => m,
            _ => unreachable!("merging mappings gives a mapping"),
        };
        let mut p = Pipeline { doc };
        p.resolve_references()?;
        p.validate()?;
        Ok(p)
    }

    /// Replaces every `!reference [key, …]` (marked by [`mark_references`]) with the
    /// value it names, nested references included.
    fn resolve_references(&mut self) -> Result<(), PipelineError> {
        let doc = Value::Object(self.doc.clone());
        let resolved = resolve_refs(&doc, &doc, 0)?;
        if let Value::Object(m) = resolved {
            self.doc = m;
        }
        Ok(())
    }

    /// Checks the GitLab CI shape: jobs are mappings; visible jobs have a script after
    /// `extends`; `extends` targets exist; scripts are strings or lists of strings.
    pub fn validate(&self) -> Result<(), PipelineError> {
        for (name, v) in &self.doc {
            if RESERVED.contains(&name.as_str()) {
                if name == "variables" {
                    variables_of(v).map_err(|e| format!("variables: {e}"))?;
                }
                continue;
            }
            // Hidden keys hold anything (anchors of lists or scalars, as GitLab's docs
            // show); jobs are mappings.
            if name.starts_with('.') && !v.is_object() {
                continue;
            }
            if !v.is_object() {
                return Err(format!("job {name:?} must be a mapping").into());
            }
            let resolved = self.resolve(name, 0)?;
            if !name.starts_with('.')
                && resolved.get("script").is_none()
                && resolved.get("trigger").is_none()
            {
                return Err(
                    format!("job {name:?} has no script (directly or through extends)").into(),
                );
            }
            if !name.starts_with('.')
                && let Some(bad) = resolved
                    .keys()
                    .find(|k| !JOB_KEYWORDS.contains(&k.as_str()))
            {
                return Err(format!(
                    "job {name:?} has unknown keyword {bad:?}; did you mean {:?}?",
                    nearest(bad)
                )
                .into());
            }
            for key in ["before_script", "script", "after_script"] {
                if let Some(s) = resolved.get(key) {
                    lines(s).map_err(|e| format!("job {name:?} {key}: {e}"))?;
                }
            }
            if let Some(v) = resolved.get("variables") {
                variables_of(v).map_err(|e| format!("job {name:?} variables: {e}"))?;
            }
        }
        Ok(())
    }

    /// The job as it resolves (extends, then `default:` for what it leaves unset), for
    /// `--preview`.
    pub fn preview(&self, name: &str) -> Result<Value, PipelineError> {
        let mut job = self.resolve(name, 0)?;
        if let Some(Value::Object(default)) = self.doc.get("default") {
            for (k, v) in default {
                job.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        Ok(Value::Object(job))
    }

    /// Visible job names.
    pub fn jobs(&self) -> Vec<String> {
        self.doc
            .iter()
            .filter(|(k, v)| {
                !RESERVED.contains(&k.as_str()) && !k.starts_with('.') && v.is_object()
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn resolve(&self, name: &str, depth: usize) -> Result<Map<String, Value>, String> {
        if depth > 11 {
            return Err(format!(
                "job {name:?}: extends nests deeper than 11 levels (a cycle?)"
            ));
        }
        let Some(Value::Object(job)) = self.doc.get(name) else {
            return Err(format!("no job {name:?}; jobs: {}", self.jobs().join(", ")));
        };
        let parents = match job.get("extends") {
            None => vec![],
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            Some(_) => {
                return Err(format!(
                    "job {name:?}: extends must be a job name or a list of them"
                ));
            }
        };
        let mut base = Value::Object(Map::new());
        for p in parents {
            if !self.doc.contains_key(&p) {
                return Err(format!("job {name:?} extends {p:?}, which is not defined"));
            }
            base = merge(&base, &Value::Object(self.resolve(&p, depth + 1)?));
        }
        let mut own = job.clone();
        own.remove("extends");
        match merge(&base, &Value::Object(own)) {
            Value::Object(m) => Ok(m),
            _ => unreachable!("merging mappings gives a mapping"),
        }
    }

    /// Resolves one visible job.
    pub fn job(&self, name: &str) -> Result<JobDef, PipelineError> {
        if name.starts_with('.') {
            return Err(
                format!("{name:?} is a hidden job (template); run a job that extends it").into(),
            );
        }
        let job = self.resolve(name, 0)?;
        let matrix = match job.get("parallel") {
            Some(Value::Object(m)) if m.contains_key("matrix") => matrix_of(&m["matrix"])
                .map_err(|e| format!("job {name:?} parallel: matrix: {e}"))?,
            _ => vec![],
        };
        let honoured =
            |k: &str| LOCAL_KEYWORDS.contains(&k) || (k == "parallel" && !matrix.is_empty());
        for key in job.keys().filter(|k| !honoured(k)) {
            tracing::warn!(
                "job {name:?}: {key} is not honoured by runnerx local; the job runs without it"
            );
        }
        let default = self
            .doc
            .get("default")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let pick = |k: &str| {
            job.get(k)
                .or_else(|| default.get(k))
                .or_else(|| self.doc.get(k))
        };
        let script_of = |k: &str| {
            pick(k)
                .map(lines)
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let image = match pick("image") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(m)) => m.get("name").and_then(Value::as_str).map(String::from),
            _ => None,
        };
        let mut variables = match self.doc.get("variables") {
            Some(v) => variables_of(v)?,
            None => vec![],
        };
        if let Some(v) = job.get("variables") {
            variables.extend(variables_of(v)?);
        }
        let raw = [self.doc.get("variables"), job.get("variables")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .flat_map(|m| m.iter())
            .filter(|(_, v)| v.get("expand") == Some(&Value::Bool(false)))
            .map(|(k, _)| k.clone())
            .collect();
        Ok(JobDef {
            name: name.to_string(),
            image,
            variables,
            before_script: script_of("before_script")?,
            script: script_of("script")?,
            after_script: script_of("after_script")?,
            matrix,
            stage: job
                .get("stage")
                .and_then(Value::as_str)
                .unwrap_or("test")
                .to_string(),
            raw,
            services: match pick("services") {
                Some(v) => services_of(v).map_err(|e| format!("job {name:?} services: {e}"))?,
                None => vec![],
            },
        })
    }
}

/// `services:` entries: an image name, or a mapping with `name`, `alias`,
/// `entrypoint`, `command` and `variables` (a mapping here, a list in the payload).
fn services_of(v: &Value) -> Result<Vec<ResponseService>, String> {
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
fn lines(v: &Value) -> Result<Vec<String>, String> {
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
fn variables_of(v: &Value) -> Result<Vec<(String, String)>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn includes_extends_default_and_variables_resolve() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(".git")).unwrap();
        write(
            d.path(),
            "t/template.yml",
            "variables:\n  PLATFORMS: linux/amd64\n  TAGS: latest\n.build:\n  before_script: [echo before]\n  script:\n    - echo build $IMAGE\n  variables:\n    MODE: template\n",
        );
        let main = write(
            d.path(),
            "app/.gitlab-ci.yml",
            "include:\n  - local: /t/template.yml\nvariables:\n  IMAGE: reg/app\n  TAGS: v1\ndefault:\n  after_script: [echo after]\nbuild:\n  extends: .build\n  variables:\n    MODE: job\n",
        );
        let p = Pipeline::load(&main).unwrap();
        assert_eq!(p.jobs(), ["build"]);
        let j = p.job("build").unwrap();
        assert_eq!(j.before_script, ["echo before"]);
        assert_eq!(j.script, ["echo build $IMAGE"]);
        assert_eq!(j.after_script, ["echo after"]);
        let vars: BTreeMap<_, _> = j.variables.iter().cloned().collect();
        assert_eq!(vars["TAGS"], "v1", "the project overrides the template");
        assert_eq!(vars["PLATFORMS"], "linux/amd64");
        assert_eq!(vars["MODE"], "job");
        assert!(p.job(".build").is_err());
        assert!(
            p.job("nope")
                .unwrap_err()
                .to_string()
                .contains("jobs: build")
        );
    }

    #[test]
    fn shape_errors_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.yml", "build:\n  image: x\n");
        assert!(
            Pipeline::load(&f)
                .unwrap_err()
                .to_string()
                .contains("has no script")
        );
        let f = write(d.path(), "b.yml", "build:\n  extends: .missing\n");
        assert!(
            Pipeline::load(&f)
                .unwrap_err()
                .to_string()
                .contains("not defined")
        );
        let f = write(d.path(), "c.yml", "build:\n  script: [1, 2]\n");
        assert!(
            Pipeline::load(&f)
                .unwrap_err()
                .to_string()
                .contains("must be strings")
        );
        let f = write(d.path(), "d.yml", "build: [\n");
        assert!(
            Pipeline::load(&f)
                .unwrap_err()
                .to_string()
                .starts_with(&format!("{}:", f.display()))
        );
        let f = write(
            d.path(),
            "e.yml",
            "include:\n  - remote: https://x/y.yml\nb:\n  script: [x]\n",
        );
        assert!(
            Pipeline::load(&f)
                .unwrap_err()
                .to_string()
                .contains("only `local:`")
        );
    }

    #[test]
    fn variables_expand_like_gitlab() {
        let known = BTreeMap::from([
            ("A".to_string(), "x".to_string()),
            ("B_1".to_string(), "y".to_string()),
        ]);
        assert_eq!(expand("$A/${B_1}:$NOPE-$$A", &known), "x/y:-$A");
        assert_eq!(expand("cost: 5$", &known), "cost: 5$");
    }

    #[test]
    fn references_resolve_nested_and_hidden_keys_hold_lists() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(".gitlab-ci.yml");
        std::fs::write(
            &f,
            concat!(
                ".setup: &setup\n  - echo setup\n",
                ".login:\n  script:\n    - echo login\n    - !reference [.setup]\n",
                ".vars:\n  variables:\n    REGION: eu\n",
                "build:\n  variables:\n    REGION: !reference [.vars, variables, REGION]\n",
                "  script:\n    - !reference [.login, script]\n    - *setup\n    - echo build $REGION\n",
            ),
        )
        .unwrap();
        let p = Pipeline::load(&f).unwrap();
        let job = p.job("build").unwrap();
        assert_eq!(
            job.script,
            [
                "echo login",
                "echo setup",
                "echo setup",
                "echo build $REGION"
            ]
        );
        assert_eq!(job.variables, [("REGION".to_string(), "eu".to_string())]);
        assert_eq!(p.jobs(), ["build"]);
        std::fs::write(&f, "build:\n  script:\n    - !reference [.nope, script]\n").unwrap();
        let e = Pipeline::load(&f).unwrap_err().to_string();
        assert!(e.contains("!reference [.nope, script]"), "{e}");
    }

    #[test]
    fn an_unknown_keyword_is_an_error_naming_the_nearest() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(".gitlab-ci.yml");
        std::fs::write(&f, "build:\n  imgae: docker:27\n  script: [echo hi]\n").unwrap();
        let e = Pipeline::load(&f).unwrap_err().to_string();
        assert!(
            e.contains("unknown keyword \"imgae\"") && e.contains("did you mean \"image\""),
            "{e}"
        );
        std::fs::write(
            &f,
            "build:\n  rules: [{when: always}]\n  script: [echo hi]\n",
        )
        .unwrap();
        assert!(Pipeline::load(&f).unwrap().job("build").is_ok());
    }

    #[test]
    fn a_matrix_gives_every_combination() {
        let v: Value =
            serde_json::json!([{"ARCH": ["amd64", "arm64"], "OS": "linux"}, {"ARCH": "riscv64"}]);
        let m = matrix_of(&v).unwrap();
        let names: Vec<String> = m
            .iter()
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        assert_eq!(
            names,
            ["ARCH=amd64,OS=linux", "ARCH=arm64,OS=linux", "ARCH=riscv64"]
        );
    }

    #[test]
    fn bash_script_has_gitlab_runner_shape() {
        let s = bash_script(
            &[("K".into(), "it's".into())],
            Some("/builds/app"),
            &["echo hi".into()],
        );
        assert!(s.starts_with("#!/usr/bin/env bash\n\ntrap exit 1 TERM\n"));
        assert!(s.contains("set -o errexit"));
        assert!(s.contains("( trap 'exit 1' TERM; eval '"));
        assert!(s.ends_with(") < /dev/null\nexit 0\n"));
        assert!(s.contains(r"export K='\''it'\''\'\'''\''s'\''"), "{s}");
    }
}
