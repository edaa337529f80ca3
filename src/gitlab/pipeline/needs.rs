//! What a job depends on, as GitLab orders a pipeline: `needs:` (the listed jobs,
//! each after its own needs; `artifacts: false` takes none of its artifacts), else
//! every job of the earlier `stages:` that the pipeline runs; and `artifacts:` (the
//! `paths`, and `reports: dotenv` files whose variables reach the jobs downstream).
//! Pure: [`upstream`] gives the order, the caller runs the jobs.

use serde_json::Value;

use super::{JobDef, Pipeline};
use crate::error::PipelineError;

/// GitLab's stages when `stages:` is not given.
const DEFAULT_STAGES: &[&str] = &[".pre", "build", "test", "deploy", ".post"];

/// One `needs:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The job needed.
    pub job: String,
    /// Whether its artifacts are downloaded.
    pub artifacts: bool,
}

/// `artifacts:` of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Artifacts {
    /// `paths:` globs, relative to the project directory.
    pub paths: Vec<String>,
    /// `reports: dotenv:` files.
    pub dotenv: Vec<String>,
}

impl Artifacts {
    /// Whether the job keeps anything.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.dotenv.is_empty()
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => vec![],
    }
}

/// Reads `needs:` (names, or `{job, artifacts}` mappings); `None` without the key.
pub(super) fn needs_of(v: Option<&Value>) -> Result<Option<Vec<Need>>, String> {
    let Some(v) = v else { return Ok(None) };
    let Value::Array(list) = v else {
        return Err("needs must be a list".into());
    };
    list.iter()
        .map(|n| match n {
            Value::String(s) => Ok(Need {
                job: s.clone(),
                artifacts: true,
            }),
            Value::Object(m) => Ok(Need {
                job: m
                    .get("job")
                    .and_then(Value::as_str)
                    .ok_or("needs entries need job:")?
                    .to_string(),
                artifacts: m.get("artifacts").and_then(Value::as_bool).unwrap_or(true),
            }),
            _ => Err("needs entries must be job names or {job: …}".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Reads `artifacts:` (`paths`, `reports: dotenv`).
pub(super) fn artifacts_of(v: Option<&Value>) -> Artifacts {
    let Some(Value::Object(m)) = v else {
        return Artifacts::default();
    };
    Artifacts {
        paths: m.get("paths").map(strings).unwrap_or_default(),
        dotenv: m
            .get("reports")
            .and_then(|r| r.get("dotenv"))
            .map(strings)
            .unwrap_or_default(),
    }
}

impl Pipeline {
    /// The pipeline's stages, in order.
    pub fn stages(&self) -> Vec<String> {
        match self.doc.get("stages") {
            Some(v) => {
                let mut s = strings(v);
                // .pre and .post always exist, first and last.
                s.insert(0, ".pre".into());
                s.push(".post".into());
                s
            }
            None => DEFAULT_STAGES.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    /// The jobs that run before `name` in a pipeline, in an order that runs every job
    /// after what it depends on, each with whether `name` (or the job that needs it)
    /// takes its artifacts. `runs` says whether the pipeline has a job at all (its
    /// rules); a `needs:` entry the pipeline does not run is an error, as in GitLab.
    pub fn upstream(
        &self,
        name: &str,
        runs: &dyn Fn(&JobDef) -> Result<bool, PipelineError>,
    ) -> Result<Vec<String>, PipelineError> {
        let mut order = Vec::new();
        self.collect(name, runs, &mut order, 0)?;
        order.retain(|n| n != name);
        Ok(order)
    }

    fn collect(
        &self,
        name: &str,
        runs: &dyn Fn(&JobDef) -> Result<bool, PipelineError>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), PipelineError> {
        if depth > 50 {
            return Err(format!("job {name:?}: needs form a cycle").into());
        }
        if order.iter().any(|n| n == name) {
            return Ok(());
        }
        let def = self.job(name)?;
        let before: Vec<String> = match &def.needs {
            Some(needs) => {
                for n in needs {
                    let needed = self
                        .job(&n.job)
                        .map_err(|e| format!("job {name:?} needs {:?}: {e}", n.job))?;
                    if !runs(&needed)? {
                        return Err(format!(
                            "job {name:?} needs {:?}, which is not in the pipeline (its rules or only: leave it out)",
                            n.job
                        )
                        .into());
                    }
                }
                needs.iter().map(|n| n.job.clone()).collect()
            }
            None => {
                let stages = self.stages();
                let mine = stages.iter().position(|s| *s == def.stage).ok_or_else(|| {
                    format!(
                        "job {name:?} has stage {:?}, which is not in stages: {}",
                        def.stage,
                        stages.join(", ")
                    )
                })?;
                let mut earlier = Vec::new();
                for stage in &stages[..mine] {
                    for job in self.jobs() {
                        let d = self.job(&job)?;
                        if d.stage == *stage && d.matrix.is_empty() && runs(&d)? {
                            earlier.push(job);
                        }
                    }
                }
                earlier
            }
        };
        for b in before {
            self.collect(&b, runs, order, depth + 1)?;
        }
        order.push(name.to_string());
        Ok(())
    }
}

impl JobDef {
    /// Whether this job takes the artifacts of `other` (a job of `other_stage`), as
    /// GitLab passes them: listed in `needs` (without `artifacts: false`); else only a
    /// job of an earlier stage in `stages`, and of those only the ones in
    /// `dependencies` when it is set. Never a job of its own stage it does not need.
    pub fn takes_artifacts_of(&self, other: &str, other_stage: &str, stages: &[String]) -> bool {
        if let Some(needs) = &self.needs {
            return needs.iter().any(|n| n.job == other && n.artifacts);
        }
        let at = |s: &str| stages.iter().position(|x| x == s);
        let earlier = matches!((at(other_stage), at(&self.stage)), (Some(o), Some(m)) if o < m);
        earlier
            && self
                .dependencies
                .as_ref()
                .is_none_or(|deps| deps.iter().any(|d| d == other))
    }
}

/// `KEY=VALUE` lines of a dotenv report (GitLab's format: no quotes processing, `#`
/// comments and blank lines skipped).
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect()
}
