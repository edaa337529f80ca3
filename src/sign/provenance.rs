//! The build provenance runnerx signs (pure): an in-toto Statement v1 with an SLSA
//! provenance v1 predicate, made only from what a job cannot change — the job payload
//! gitlab-runner hands runnerx, runnerx's own version and settings, the builder image
//! and where each platform was built. Job variables never feed it.

use serde_json::{Value, json};

/// Where one platform was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    /// `linux/arm64`.
    pub platform: String,
    /// `node arm64-1`, `this builder (QEMU)`, `this builder (native)`.
    pub built_on: String,
}

/// The trusted facts of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Provenance {
    /// GitLab's URL (`https://gitlab.example.com`).
    pub gitlab: String,
    /// Project path and id.
    pub project_path: String,
    /// Project id.
    pub project_id: String,
    /// Pipeline id.
    pub pipeline: String,
    /// Job id.
    pub job: String,
    /// Commit SHA.
    pub commit: String,
    /// Branch or tag.
    pub git_ref: String,
    /// runnerx's version.
    pub runnerx: String,
    /// SHA-256 of the settings file.
    pub settings_digest: String,
    /// The builder image's id.
    pub builder_image: String,
    /// The runner host's name.
    pub host: String,
    /// Each platform and where it was built.
    pub placements: Vec<Placement>,
}

impl Provenance {
    /// The statement about `subjects` (`(repository, digest)`).
    pub(crate) fn statement(&self, subjects: &[(String, String)]) -> Vec<u8> {
        let subject: Vec<Value> = subjects
            .iter()
            .map(|(name, digest)| {
                json!({"name": name, "digest": {"sha256": digest.trim_start_matches("sha256:")}})
            })
            .collect();
        let placements: Vec<Value> = self
            .placements
            .iter()
            .map(|p| json!({"platform": p.platform, "builtOn": p.built_on}))
            .collect();
        let v = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": subject,
            "predicateType": super::SLSA_V1,
            "predicate": {
                "buildDefinition": {
                    "buildType": "https://gitlab.com/runnerx/gitlab-job/v1",
                    "externalParameters": {
                        "project": {"path": self.project_path, "id": self.project_id},
                        "pipeline": self.pipeline,
                        "job": self.job,
                        "ref": self.git_ref,
                        "commit": self.commit
                    },
                    "internalParameters": {
                        "settingsDigest": self.settings_digest,
                        "builderImage": self.builder_image,
                        "platforms": placements
                    },
                    "resolvedDependencies": [{
                        "uri": format!("git+{}/{}.git@{}", self.gitlab, self.project_path, self.git_ref),
                        "digest": {"gitCommit": self.commit}
                    }]
                },
                "runDetails": {
                    "builder": {
                        "id": format!("runnerx@{}", self.host),
                        "version": {"runnerx": self.runnerx}
                    },
                    "metadata": {"invocationId": format!("{}/{}/-/jobs/{}", self.gitlab, self.project_path, self.job)}
                }
            }
        });
        serde_json::to_vec(&v).expect("static JSON")
    }
}

/// The provenance's facts in a few lines, for `runnerx verify`.
pub(crate) fn summary(statement: &Value) -> Vec<(String, String)> {
    let p = &statement["predicate"];
    let ext = &p["buildDefinition"]["externalParameters"];
    let int = &p["buildDefinition"]["internalParameters"];
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let platforms: Vec<String> = int["platforms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| format!("{} on {}", s(&x["platform"]), s(&x["builtOn"])))
        .collect();
    vec![
        (
            "project".into(),
            format!(
                "{} (id {})",
                s(&ext["project"]["path"]),
                s(&ext["project"]["id"])
            ),
        ),
        (
            "pipeline / job".into(),
            format!("{} / {}", s(&ext["pipeline"]), s(&ext["job"])),
        ),
        (
            "commit".into(),
            format!("{} ({})", s(&ext["commit"]), s(&ext["ref"])),
        ),
        (
            "built by".into(),
            format!(
                "{} {}",
                s(&p["runDetails"]["builder"]["id"]),
                s(&p["runDetails"]["builder"]["version"]["runnerx"])
            ),
        ),
        ("builder image".into(), s(&int["builderImage"])),
        ("platforms".into(), platforms.join(", ")),
        (
            "job".into(),
            s(&p["runDetails"]["metadata"]["invocationId"]),
        ),
    ]
}
