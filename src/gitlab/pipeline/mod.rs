//! `.gitlab-ci.yml` for `runnerx local` (and the template checks): load a pipeline
//! file with its `include: local:` files, validate its shape (unknown keywords are
//! errors naming the nearest valid one), and resolve one job (`extends`, `default`,
//! `inherit`, variables, `rules`/`only`/`except`) into what gitlab-runner would hand
//! the executor. [`yaml`] reads values, [`rules`] decides whether a job runs, and
//! [`script`] renders what the executor gets.
//!
//! A valid keyword runnerx local cannot honour is named in a warning; unsupported
//! `include` kinds are an error.

mod needs;
mod rules;
mod script;
mod workflow;
mod yaml;

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::PipelineError;
use crate::gitlab::services::ResponseService;
pub use needs::{Artifacts, Need, parse_dotenv};
pub use rules::{Context, Decision};
pub use script::{bash_script, expand, expand_all};
pub use workflow::Workflow;
pub use yaml::repo_root;
use yaml::{lines, matrix_of, merge, parse_yaml, resolve_refs, services_of, variables_of};

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
    /// `workflow:`'s variables (its name, its matching rule's), once decided: above
    /// the global variables, below the job's.
    workflow_variables: Vec<(String, String)>,
}

/// One job, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// `rules`, `only`, `except` and `when` as written (see [`JobDef::decide`]).
    pub policy: Map<String, Value>,
    /// `allow_failure`.
    pub allow_failure: AllowFailure,
    /// `needs:`; `None` without the keyword (the job follows the stages).
    pub needs: Option<Vec<Need>>,
    /// `dependencies:`; `None` without the keyword (all earlier jobs' artifacts).
    pub dependencies: Option<Vec<String>>,
    /// `artifacts:` it keeps.
    pub artifacts: Artifacts,
}

/// `allow_failure:` — whether a failed job fails the pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowFailure {
    /// It does (the default).
    #[default]
    No,
    /// It never does.
    Yes,
    /// Only these exit codes are allowed.
    ExitCodes(Vec<i64>),
}

impl AllowFailure {
    /// Reads `true`/`false` or `{exit_codes: N | [N, …]}`.
    pub fn parse(v: &Value) -> Result<AllowFailure, crate::error::Invalid> {
        match v {
            Value::Bool(true) => Ok(AllowFailure::Yes),
            Value::Bool(false) => Ok(AllowFailure::No),
            Value::Object(m) => {
                let codes = match m.get("exit_codes") {
                    Some(Value::Number(n)) => {
                        vec![n.as_i64().ok_or("exit_codes must be integers")?]
                    }
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|c| c.as_i64().ok_or("exit_codes must be integers"))
                        .collect::<Result<_, _>>()?,
                    _ => {
                        return Err("allow_failure must be true, false or {exit_codes: […]}".into());
                    }
                };
                Ok(AllowFailure::ExitCodes(codes))
            }
            _ => Err("allow_failure must be true, false or {exit_codes: […]}".into()),
        }
    }

    /// Whether a script that exited with `code` is allowed to fail.
    pub fn allows(&self, code: i64) -> bool {
        match self {
            AllowFailure::No => false,
            AllowFailure::Yes => true,
            AllowFailure::ExitCodes(codes) => codes.contains(&code),
        }
    }
}

impl JobDef {
    /// Whether the job is in a pipeline with `ctx` ([`rules`]): its `when` and the
    /// variables and `allow_failure` of the matching rule, or why it is left out.
    pub fn decide(&self, ctx: &Context) -> Result<Decision, PipelineError> {
        rules::decide(&self.policy, ctx).map_err(|e| format!("job {:?}: {e}", self.name).into())
    }
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
    "allow_failure",
    "artifacts",
    "before_script",
    "dependencies",
    "except",
    "extends",
    "image",
    "inherit",
    "needs",
    "only",
    "rules",
    "script",
    "services",
    "stage",
    "variables",
    "when",
];

/// What `inherit:` names: `true`/`false`, or the list of what to inherit.
fn inherits(inherit: Option<&Value>, part: &str, name: &str) -> bool {
    match inherit.and_then(|i| i.get(part)) {
        None | Some(Value::Bool(true)) => true,
        Some(Value::Array(list)) => list.iter().any(|v| v.as_str() == Some(name)),
        Some(_) => false,
    }
}

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
        let mut p = Pipeline {
            doc,
            workflow_variables: vec![],
        };
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
        // Every unknown keyword of every job, in one error: a run per typo is slow.
        let mut unknown: Vec<String> = vec![];
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
            if !name.starts_with('.') {
                unknown.extend(
                    resolved
                        .keys()
                        .filter(|k| !JOB_KEYWORDS.contains(&k.as_str()))
                        .map(|bad| {
                            format!(
                                "job {name:?} has unknown keyword {bad:?} (did you mean {:?}?)",
                                nearest(bad)
                            )
                        }),
                );
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
        if !unknown.is_empty() {
            return Err(unknown.join("; ").into());
        }
        Ok(())
    }

    /// Sets what `workflow:` adds to every job's variables (see [`Pipeline::workflow`]).
    pub fn set_workflow_variables(&mut self, variables: Vec<(String, String)>) {
        self.workflow_variables = variables;
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
        // Of artifacts:, --needs passes paths and dotenv reports on; name the rest.
        if let Some(Value::Object(a)) = job.get("artifacts") {
            let reports = a.get("reports").and_then(Value::as_object);
            let unhonoured = a
                .keys()
                .filter(|k| {
                    !["paths", "reports", "name", "expire_in", "expose_as"].contains(&k.as_str())
                })
                .map(|k| format!("artifacts: {k}"))
                .chain(reports.into_iter().flat_map(|r| {
                    r.keys()
                        .filter(|k| k.as_str() != "dotenv")
                        .map(|k| format!("artifacts: reports: {k}"))
                }));
            for what in unhonoured {
                tracing::warn!(
                    "job {name:?}: {what} is not honoured by runnerx local; the job runs without it"
                );
            }
        }
        let inherit = job.get("inherit");
        let default: Map<String, Value> = self
            .doc
            .get("default")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| inherits(inherit, "default", k))
            .collect();
        // Top-level image/services/… are the deprecated form of default:.
        let pick = |k: &str| {
            job.get(k)
                .or_else(|| default.get(k))
                .or_else(|| self.doc.get(k).filter(|_| inherits(inherit, "default", k)))
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
        let mut variables: Vec<(String, String)> = match self.doc.get("variables") {
            Some(v) => variables_of(v)?
                .into_iter()
                .filter(|(k, _)| inherits(inherit, "variables", k))
                .collect(),
            None => vec![],
        };
        variables.extend(self.workflow_variables.iter().cloned());
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
            policy: ["rules", "only", "except", "when"]
                .iter()
                .filter_map(|k| job.get(*k).map(|v| ((*k).to_string(), v.clone())))
                .collect(),
            needs: needs::needs_of(job.get("needs")).map_err(|e| format!("job {name:?}: {e}"))?,
            dependencies: job.get("dependencies").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            }),
            artifacts: needs::artifacts_of(job.get("artifacts")),
            allow_failure: match job.get("allow_failure") {
                Some(v) => AllowFailure::parse(v).map_err(|e| format!("job {name:?}: {e}"))?,
                None => AllowFailure::No,
            },
            services: match pick("services") {
                Some(v) => services_of(v).map_err(|e| format!("job {name:?} services: {e}"))?,
                None => vec![],
            },
        })
    }
}

#[cfg(test)]
mod tests;
