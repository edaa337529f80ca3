//! `workflow:`: whether a pipeline is created at all (`rules`, first match wins, no
//! match means no pipeline, `when: never` too), the variables its matching rule adds
//! (above the global ones, below the job's), and its `name` (`CI_PIPELINE_NAME`).
//! `auto_cancel` is read and named as not honoured.

use serde_json::{Map, Value};

use super::rules::{self, Context, Decision};
use super::{JobDef, Pipeline, yaml::variables_of};
use crate::error::PipelineError;

/// What `workflow:` says for a pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workflow {
    /// Why no pipeline would be created; `None` when one would.
    pub skip: Option<String>,
    /// `CI_PIPELINE_NAME` and the matching rule's variables, in order.
    pub variables: Vec<(String, String)>,
    /// Keys read but not honoured.
    pub unhonoured: Vec<String>,
}

impl Pipeline {
    fn workflow_map(&self) -> Result<Map<String, Value>, PipelineError> {
        match self.doc.get("workflow") {
            None => Ok(Map::new()),
            Some(Value::Object(m)) => {
                if let Some(bad) = m
                    .keys()
                    .find(|k| !["rules", "name", "auto_cancel"].contains(&k.as_str()))
                {
                    return Err(format!(
                        "workflow has unknown keyword {bad:?} (it takes rules, name and auto_cancel)"
                    )
                    .into());
                }
                Ok(m.clone())
            }
            Some(_) => Err("workflow must be a mapping".to_string().into()),
        }
    }

    /// A job made of the global variables alone: what `workflow: rules` are decided on.
    pub fn globals(&self) -> Result<JobDef, PipelineError> {
        let variables = match self.doc.get("variables") {
            Some(v) => variables_of(v)?,
            None => vec![],
        };
        let raw = self
            .doc
            .get("variables")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|(_, v)| v.get("expand") == Some(&Value::Bool(false)))
            .map(|(k, _)| k.clone())
            .collect();
        Ok(JobDef {
            name: "workflow".into(),
            stage: ".pre".into(),
            variables,
            raw,
            ..JobDef::default()
        })
    }

    /// `workflow:` decided with `ctx` (predefined and global variables).
    pub fn workflow(&self, ctx: &Context) -> Result<Workflow, PipelineError> {
        let m = self.workflow_map()?;
        let mut out = Workflow::default();
        if let Some(name) = m.get("name") {
            let name = name.as_str().ok_or_else(|| {
                PipelineError::from("workflow: name must be a string".to_string())
            })?;
            out.variables
                .push(("CI_PIPELINE_NAME".into(), name.to_string()));
        }
        if m.contains_key("auto_cancel") {
            out.unhonoured.push("workflow: auto_cancel".into());
        }
        let Some(rules) = m.get("rules") else {
            return Ok(out);
        };
        let policy: Map<String, Value> = [
            ("rules".to_string(), rules.clone()),
            ("when".to_string(), Value::String("always".into())),
        ]
        .into_iter()
        .collect();
        match rules::decide(&policy, ctx).map_err(|e| format!("workflow: {e}"))? {
            Decision::Run { variables, .. } => out.variables.extend(variables),
            Decision::Skip(why) => out.skip = Some(format!("workflow: rules: {why}")),
        }
        Ok(out)
    }
}
