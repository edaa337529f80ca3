//! The registry build cache: where a job's `docker build` / `docker buildx build`
//! read and write their layer cache, so a project's jobs share it across runner hosts.
//!
//! Prepare decides it from trusted input only: the project id of the job payload, the
//! registry entry (or `[[registries.credentials]]` entry) that gives this project its
//! login and names a `cache_repository`, and the payload's ref. The job's `docker`
//! wrapper (`docker-cli.sh`) reads the result from `/etc/runnerx/build-cache.env` and
//! adds the flags to builds that name no cache of their own.
//!
//! Tags: `p<project id>-<ref slug>-<key>`, where the wrapper derives `key` from the
//! Dockerfile, the target and the context, so two images of a project never evict each
//! other's cache. A build reads its ref's cache, then the default branch's, and writes
//! its ref's (GitLab's documented pattern).

use crate::settings::Registry;

/// Where a job's builds keep their cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildCache {
    /// `host[:port]/repository`.
    pub repository: String,
    /// The project id (trusted).
    pub project: String,
    /// The slug of the job's ref.
    pub ref_slug: String,
    /// The slug of the project's default branch, when it differs from the ref.
    pub default_slug: Option<String>,
}

/// `CI_COMMIT_REF_SLUG` as GitLab makes it: lower case, every character outside
/// `a-z0-9` replaced by `-`, at most 63 bytes, no leading or trailing `-`.
pub(crate) fn slug(text: &str) -> String {
    let s: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    s.trim_matches('-').to_string()
}

/// The cache for a job of `project` (id) on `git_ref`, from its registries as
/// [`Registry::for_project`] gives them: the first that names a `cache_repository`.
pub(crate) fn for_job(
    registries: &[Registry],
    project: Option<&str>,
    git_ref: Option<&str>,
    default_branch: Option<&str>,
) -> Option<BuildCache> {
    let project = project?;
    let (registry, repo) = registries
        .iter()
        .find_map(|r| r.cache_repository.as_ref().map(|c| (r, c)))?;
    let ref_slug = git_ref.map(slug).filter(|s| !s.is_empty())?;
    let default_slug = default_branch
        .map(slug)
        .filter(|s| !s.is_empty() && *s != ref_slug);
    Some(BuildCache {
        repository: format!("{}/{repo}", registry.host),
        project: project.to_string(),
        ref_slug,
        default_slug,
    })
}

/// `/etc/runnerx/build-cache.env`, sourced by the job's `docker` wrapper.
pub(crate) fn env_file(c: &BuildCache) -> String {
    format!(
        "RUNNERX_CACHE_REPOSITORY={}\nRUNNERX_CACHE_PROJECT={}\nRUNNERX_CACHE_REF={}\nRUNNERX_CACHE_DEFAULT={}\n",
        c.repository,
        c.project,
        c.ref_slug,
        c.default_slug.as_deref().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn registries(toml: &str, project: &str, id: &str) -> Vec<Registry> {
        let s = Settings::from_toml(toml).unwrap();
        let who = crate::settings::Project {
            id: Some(id.into()),
            path: Some(project.into()),
        };
        s.registries.iter().map(|r| r.for_project(&who)).collect()
    }

    #[test]
    fn slugs_are_gitlabs() {
        assert_eq!(slug("feature/Add_Cache"), "feature-add-cache");
        assert_eq!(slug("-v1.2-"), "v1-2");
        assert_eq!(slug(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn the_cache_follows_the_projects_login() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret\n").unwrap();
        let pw = pw.display();
        let toml = format!(
            "[[registries]]\nhost = \"harbor.example.com\"\n\n\
             [[registries.credentials]]\nprojects = [\"team-a/**\"]\nusername = \"robot-a\"\npassword_file = \"{pw}\"\ncache_repository = \"team-a/cache\"\n\n\
             [[registries.credentials]]\nprojects = [\"team-b/**\"]\nusername = \"robot-b\"\npassword_file = \"{pw}\"\n"
        );
        let a = registries(&toml, "team-a/app", "1");
        assert_eq!(
            for_job(&a, Some("1"), Some("main"), None).map(|c| c.repository),
            Some("harbor.example.com/team-a/cache".into())
        );
        // Team b's entry names no cache; a project no entry is for gets none either.
        assert_eq!(
            for_job(
                &registries(&toml, "team-b/app", "2"),
                Some("2"),
                Some("main"),
                None
            ),
            None
        );
        assert_eq!(
            for_job(
                &registries(&toml, "other/app", "3"),
                Some("3"),
                Some("main"),
                None
            ),
            None
        );
    }

    #[test]
    fn a_job_gets_the_first_registry_naming_a_cache_and_both_refs() {
        let toml = "[[registries]]\nhost = \"mirror.example.com\"\n\n\
            [[registries]]\nhost = \"harbor.example.com:8443\"\ncache_repository = \"ci/cache\"\n";
        let regs = registries(toml, "team-a/app", "42");
        let c = for_job(&regs, Some("42"), Some("feature/x"), Some("main")).unwrap();
        assert_eq!(c.repository, "harbor.example.com:8443/ci/cache");
        assert_eq!(
            (c.project.as_str(), c.ref_slug.as_str()),
            ("42", "feature-x")
        );
        assert_eq!(c.default_slug.as_deref(), Some("main"));
        assert_eq!(
            env_file(&c),
            "RUNNERX_CACHE_REPOSITORY=harbor.example.com:8443/ci/cache\nRUNNERX_CACHE_PROJECT=42\nRUNNERX_CACHE_REF=feature-x\nRUNNERX_CACHE_DEFAULT=main\n"
        );
        // On the default branch itself, one ref; without a trusted project id, none.
        let c = for_job(&regs, Some("42"), Some("main"), Some("main")).unwrap();
        assert_eq!(c.default_slug, None);
        assert_eq!(for_job(&regs, None, Some("main"), Some("main")), None);
    }
}
