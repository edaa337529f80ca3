//! Whether a job runs in a pipeline, decided as GitLab decides it: `rules:` (`if`,
//! `exists`, `changes`, `when`, `variables`, `allow_failure`, first match wins, no
//! match means no job) and `only`/`except` (refs, `variables`, `changes`; without
//! either a job runs for branches and tags). CI/CD variable expressions: `$VAR`
//! (defined and non-empty), `==`/`!=` against a string, `null` or another variable,
//! `=~`/`!~` against `/pattern/flags` (RE2 syntax) or a variable holding one, `&&`
//! binding tighter than `||`, and parentheses.
//!
//! Pure: the caller gives the variables, the project's files and what changed.

use std::collections::BTreeMap;

use serde_json::Value;

/// What a pipeline knows when it decides.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Variables the expressions see: predefined, global and job (not rules').
    pub variables: BTreeMap<String, String>,
    /// The project's files, relative paths with `/` (for `exists`).
    pub files: Vec<String>,
    /// Files changed by what triggered the pipeline (for `changes`); `None` when
    /// unknown, where GitLab takes `changes` as true.
    pub changed: Option<Vec<String>>,
}

/// The outcome for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The job is in the pipeline.
    Run {
        /// `on_success`, `manual`, `always`, `delayed`, `on_failure`.
        when: String,
        /// Variables the matching rule adds (above job variables).
        variables: Vec<(String, String)>,
        /// `allow_failure` of the matching rule, if it sets one.
        allow_failure: Option<Value>,
    },
    /// The job is not in the pipeline, and why.
    Skip(String),
}

fn run(when: &str) -> Decision {
    Decision::Run {
        when: when.into(),
        variables: vec![],
        allow_failure: None,
    }
}

/// Decides one resolved job (its `rules`, `only`, `except`, `when`).
pub(super) fn decide(
    job: &serde_json::Map<String, Value>,
    ctx: &Context,
) -> Result<Decision, String> {
    let when = job
        .get("when")
        .and_then(Value::as_str)
        .unwrap_or("on_success");
    if let Some(rules) = job.get("rules") {
        if job.contains_key("only") || job.contains_key("except") {
            return Err("rules cannot be used with only/except (GitLab rejects the job)".into());
        }
        return decide_rules(rules, when, ctx);
    }
    if when == "never" {
        return Ok(Decision::Skip("when: never".into()));
    }
    // Without only:, GitLab's default is only: [branches, tags].
    match job.get("only") {
        Some(only) if !policy_matches(only, ctx, "only")? => {
            return Ok(Decision::Skip(format!(
                "only: {} does not match",
                show(only)
            )));
        }
        None if ref_name(ctx).is_none() => {
            return Ok(Decision::Skip(
                "no branch or tag (GitLab's default only: [branches, tags])".into(),
            ));
        }
        _ => {}
    }
    if let Some(except) = job.get("except")
        && policy_matches(except, ctx, "except")?
    {
        return Ok(Decision::Skip(format!("except: {} matches", show(except))));
    }
    Ok(run(when))
}

fn show(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn decide_rules(rules: &Value, job_when: &str, ctx: &Context) -> Result<Decision, String> {
    let Value::Array(list) = rules else {
        return Err("rules must be a list".into());
    };
    for (i, rule) in list.iter().enumerate() {
        let Value::Object(r) = rule else {
            return Err(format!("rules[{i}] must be a mapping"));
        };
        if let Some(bad) = r.keys().find(|k| {
            ![
                "if",
                "changes",
                "exists",
                "when",
                "variables",
                "allow_failure",
                "start_in",
                "needs",
                "interruptible",
            ]
            .contains(&k.as_str())
        }) {
            return Err(format!("rules[{i}] has unknown key {bad:?}"));
        }
        if let Some(cond) = r.get("if") {
            let text = cond
                .as_str()
                .ok_or(format!("rules[{i}].if must be a string"))?;
            if !eval(text, &ctx.variables).map_err(|e| format!("rules[{i}].if {text:?}: {e}"))? {
                continue;
            }
        }
        if let Some(c) = r.get("changes")
            && !changes_match(c, ctx).map_err(|e| format!("rules[{i}].changes: {e}"))?
        {
            continue;
        }
        if let Some(e) = r.get("exists")
            && !exists_match(e, ctx).map_err(|e| format!("rules[{i}].exists: {e}"))?
        {
            continue;
        }
        let when = r
            .get("when")
            .and_then(Value::as_str)
            .unwrap_or(job_when)
            .to_string();
        if when == "never" {
            return Ok(Decision::Skip(format!(
                "rules[{i}] matches with when: never"
            )));
        }
        let variables = match r.get("variables") {
            Some(v) => {
                super::yaml::variables_of(v).map_err(|e| format!("rules[{i}].variables: {e}"))?
            }
            None => vec![],
        };
        return Ok(Decision::Run {
            when,
            variables,
            allow_failure: r.get("allow_failure").cloned(),
        });
    }
    Ok(Decision::Skip("no rule matches".into()))
}

/// Patterns of a `changes:`/`exists:` value: a list, or `{paths: [...]}`.
fn patterns(v: &Value) -> Result<Vec<String>, String> {
    let list = match v {
        Value::Object(m) => m.get("paths").ok_or("needs paths:")?,
        other => other,
    };
    match list {
        Value::Array(a) => a
            .iter()
            .map(|p| {
                p.as_str()
                    .map(String::from)
                    .ok_or("entries must be strings".to_string())
            })
            .collect(),
        Value::String(s) => Ok(vec![s.clone()]),
        _ => Err("must be a list of paths".into()),
    }
}

fn changes_match(v: &Value, ctx: &Context) -> Result<bool, String> {
    let pats = patterns(v)?;
    let Some(changed) = &ctx.changed else {
        return Ok(true);
    };
    Ok(changed.iter().any(|f| pats.iter().any(|p| glob(p, f))))
}

fn exists_match(v: &Value, ctx: &Context) -> Result<bool, String> {
    let pats = patterns(v)?;
    Ok(ctx.files.iter().any(|f| pats.iter().any(|p| glob(p, f))))
}

/// GitLab's path globs (Ruby `File.fnmatch?` with `**` and braces): `*` and `?` stay
/// within a path segment, `**/` spans directories, `{a,b}` alternates.
pub(super) fn glob(pattern: &str, path: &str) -> bool {
    if let Some(open) = pattern.find('{')
        && let Some(len) = pattern[open..].find('}')
    {
        let (pre, rest) = (&pattern[..open], &pattern[open + 1..open + len]);
        let post = &pattern[open + len + 1..];
        return rest
            .split(',')
            .any(|alt| glob(&format!("{pre}{alt}{post}"), path));
    }
    fn m(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = if p.get(2) == Some(&b'/') {
                    &p[3..]
                } else {
                    &p[2..]
                };
                (0..=s.len()).any(|k| (k == 0 || s[k - 1] == b'/') && m(rest, &s[k..]))
                    || m(rest, s)
            }
            Some(b'*') => (0..=s.len())
                .take_while(|k| *k == 0 || s[k - 1] != b'/')
                .any(|k| m(&p[1..], &s[k..])),
            Some(b'?') => s.first().is_some_and(|c| *c != b'/') && m(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && m(&p[1..], &s[1..]),
        }
    }
    m(pattern.trim_start_matches("./").as_bytes(), path.as_bytes())
}

/// The pipeline's ref: `CI_COMMIT_TAG`, else `CI_COMMIT_BRANCH`.
fn ref_name(ctx: &Context) -> Option<&str> {
    ["CI_COMMIT_TAG", "CI_COMMIT_BRANCH"]
        .iter()
        .find_map(|k| ctx.variables.get(*k).filter(|v| !v.is_empty()))
        .map(String::as_str)
}

/// `only:`/`except:` as a list of refs, or `{refs, variables, changes, kubernetes}`;
/// every given part must match.
fn policy_matches(v: &Value, ctx: &Context, key: &str) -> Result<bool, String> {
    let (refs, variables, changes) = match v {
        Value::Array(_) | Value::String(_) => (Some(v), None, None),
        Value::Object(m) => {
            if let Some(bad) = m
                .keys()
                .find(|k| !["refs", "variables", "changes", "kubernetes"].contains(&k.as_str()))
            {
                return Err(format!("{key} has unknown key {bad:?}"));
            }
            (m.get("refs"), m.get("variables"), m.get("changes"))
        }
        _ => return Err(format!("{key} must be a list or a mapping")),
    };
    if let Some(refs) = refs {
        let list: Vec<&str> = match refs {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            Value::String(s) => vec![s.as_str()],
            _ => return Err(format!("{key}: refs must be a list")),
        };
        if !list.iter().any(|r| ref_matches(r, ctx)) {
            return Ok(false);
        }
    }
    if let Some(vars) = variables {
        let list: Vec<&str> = match vars {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{key}: variables must be a list of expressions")),
        };
        let mut any = false;
        for e in list {
            any |= eval(e, &ctx.variables).map_err(|m| format!("{key}: variables {e:?}: {m}"))?;
        }
        if !any {
            return Ok(false);
        }
    }
    if let Some(c) = changes
        && !changes_match(c, ctx)?
    {
        return Ok(false);
    }
    Ok(true)
}

/// One `only`/`except` ref: a keyword, a `/regex/`, or a branch or tag name.
fn ref_matches(r: &str, ctx: &Context) -> bool {
    let var = |k: &str| ctx.variables.get(k).map(String::as_str).unwrap_or("");
    let source = var("CI_PIPELINE_SOURCE");
    match r {
        "branches" => !var("CI_COMMIT_BRANCH").is_empty(),
        "tags" => !var("CI_COMMIT_TAG").is_empty(),
        "pushes" => source == "push",
        "merge_requests" => source == "merge_request_event",
        "schedules" => source == "schedule",
        "api"
        | "web"
        | "triggers"
        | "pipelines"
        | "chat"
        | "external"
        | "external_pull_requests" => {
            source == r.trim_end_matches('s')
                || source == r
                || (r == "triggers" && source == "trigger")
        }
        _ => {
            let Some(name) = ref_name(ctx) else {
                return false;
            };
            match regex_literal(r) {
                Some(re) => re.is_match(name),
                None => r == name,
            }
        }
    }
}

/// `/pattern/flags` as a regex (RE2 syntax; flag `i`), if `text` is one.
fn regex_literal(text: &str) -> Option<regex::Regex> {
    let body = text.strip_prefix('/')?;
    let end = body.rfind('/')?;
    let (pattern, flags) = (&body[..end], &body[end + 1..]);
    let mut b = regex::RegexBuilder::new(pattern);
    b.case_insensitive(flags.contains('i'))
        .multi_line(flags.contains('m'));
    b.build().ok()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Var(String),
    Str(String),
    Regex(String),
    Null,
    Eq,
    Ne,
    Match,
    NoMatch,
    And,
    Or,
    Open,
    Close,
}

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let two: String = c[i..c.len().min(i + 2)].iter().collect();
        match c[i] {
            ' ' | '\t' | '\n' => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            '$' => {
                let braced = c.get(i + 1) == Some(&'{');
                let start = if braced { i + 2 } else { i + 1 };
                let len = c[start..]
                    .iter()
                    .take_while(|ch| ch.is_ascii_alphanumeric() || **ch == '_')
                    .count();
                if len == 0 {
                    return Err(format!("`$` without a variable name at {i}"));
                }
                out.push(Tok::Var(c[start..start + len].iter().collect()));
                i = start + len + usize::from(braced);
            }
            q @ ('"' | '\'') => {
                let end = c[i + 1..]
                    .iter()
                    .position(|ch| *ch == q)
                    .ok_or("unterminated string")?;
                out.push(Tok::Str(c[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            '/' => {
                // A regex literal: up to the next unescaped '/', then flags.
                let mut j = i + 1;
                while j < c.len() && c[j] != '/' {
                    j += if c[j] == '\\' { 2 } else { 1 };
                }
                if j >= c.len() {
                    return Err("unterminated /regex/".into());
                }
                let flags = c[j + 1..]
                    .iter()
                    .take_while(|ch| ch.is_ascii_alphabetic())
                    .count();
                out.push(Tok::Regex(c[i..j + 1 + flags].iter().collect()));
                i = j + 1 + flags;
            }
            _ if two == "==" => {
                out.push(Tok::Eq);
                i += 2;
            }
            _ if two == "!=" => {
                out.push(Tok::Ne);
                i += 2;
            }
            _ if two == "=~" => {
                out.push(Tok::Match);
                i += 2;
            }
            _ if two == "!~" => {
                out.push(Tok::NoMatch);
                i += 2;
            }
            _ if two == "&&" => {
                out.push(Tok::And);
                i += 2;
            }
            _ if two == "||" => {
                out.push(Tok::Or);
                i += 2;
            }
            _ if c[i..].iter().take(4).collect::<String>() == "null" => {
                out.push(Tok::Null);
                i += 4;
            }
            ch => return Err(format!("unexpected {ch:?} at {i}")),
        }
    }
    Ok(out)
}

/// A value in an expression: a string, or null (an undefined variable).
type Val = Option<String>;

struct Parser<'a> {
    toks: Vec<Tok>,
    at: usize,
    vars: &'a BTreeMap<String, String>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn or(&mut self) -> Result<bool, String> {
        let mut v = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.at += 1;
            let r = self.and()?;
            v = v || r;
        }
        Ok(v)
    }

    fn and(&mut self) -> Result<bool, String> {
        let mut v = self.term()?;
        while self.peek() == Some(&Tok::And) {
            self.at += 1;
            let r = self.term()?;
            v = v && r;
        }
        Ok(v)
    }

    fn operand(&mut self) -> Result<Val, String> {
        let t = self
            .toks
            .get(self.at)
            .cloned()
            .ok_or("expression ends early")?;
        self.at += 1;
        Ok(match t {
            Tok::Var(n) => self.vars.get(&n).cloned(),
            Tok::Str(s) | Tok::Regex(s) => Some(s),
            Tok::Null => None,
            other => return Err(format!("expected a value, found {other:?}")),
        })
    }

    fn term(&mut self) -> Result<bool, String> {
        if self.peek() == Some(&Tok::Open) {
            self.at += 1;
            let v = self.or()?;
            if self.peek() != Some(&Tok::Close) {
                return Err("missing )".into());
            }
            self.at += 1;
            return Ok(v);
        }
        let left = self.operand()?;
        let op = match self.peek() {
            Some(t @ (Tok::Eq | Tok::Ne | Tok::Match | Tok::NoMatch)) => t.clone(),
            // `$VAR` alone: defined and not empty.
            _ => return Ok(left.is_some_and(|s| !s.is_empty())),
        };
        self.at += 1;
        let right = self.operand()?;
        Ok(match op {
            Tok::Eq => left == right,
            Tok::Ne => left != right,
            Tok::Match | Tok::NoMatch => {
                let pattern = right.unwrap_or_default();
                let re = regex_literal(&pattern).ok_or(format!("{pattern:?} is not a /regex/"))?;
                let hit = left.is_some_and(|l| re.is_match(&l));
                if op == Tok::Match { hit } else { !hit }
            }
            _ => unreachable!("only comparison operators are taken"),
        })
    }
}

/// Evaluates a CI/CD variable expression.
pub(super) fn eval(text: &str, vars: &BTreeMap<String, String>) -> Result<bool, String> {
    let mut p = Parser {
        toks: lex(text)?,
        at: 0,
        vars,
    };
    let v = p.or()?;
    if p.at != p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.at]));
    }
    Ok(v)
}
