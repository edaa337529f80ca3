//! `services:` as gitlab-runner hands them over in the job payload (trusted: the job
//! response file), turned into what a builder starts. Aliases follow gitlab-runner's
//! docker executor: the image without tag and registry port, `/` replaced by `__`, and
//! again by `-`, plus the job's own `alias` (comma- or space-separated).

use serde::Deserialize;

use crate::builder::services::Service;

/// One entry of the payload's `services`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct ResponseService {
    /// Image reference.
    #[serde(default)]
    pub name: String,
    /// Extra host names.
    #[serde(default)]
    pub alias: Option<String>,
    /// Entrypoint override.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Command override.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// The service's own variables.
    #[serde(default)]
    pub variables: Option<Vec<ResponseVariable>>,
}

/// A variable of the payload (`variables`, or a service's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct ResponseVariable {
    /// Name.
    #[serde(default)]
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
    /// File-type variables are written to files for scripts, not passed to services.
    #[serde(default)]
    pub file: bool,
}

/// gitlab-runner's default aliases of `image` (`SplitNameAndVersion`).
pub(crate) fn default_aliases(image: &str) -> Vec<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    // The tag is after the last `/`; a `:` before it is a registry port.
    let (path, last) = without_digest
        .rsplit_once('/')
        .map_or(("", without_digest), |(p, l)| (p, l));
    let last = last.split(':').next().unwrap_or(last);
    let name = if path.is_empty() {
        last.to_string()
    } else {
        let mut parts = path.splitn(2, '/');
        let first = parts.next().unwrap_or("");
        let first = first.split(':').next().unwrap_or(first);
        match parts.next() {
            Some(rest) => format!("{first}/{rest}/{last}"),
            None => format!("{first}/{last}"),
        }
    };
    let mut aliases = vec![name.replace('/', "__")];
    let dashed = name.replace('/', "-");
    if dashed != aliases[0] {
        aliases.push(dashed);
    }
    aliases
}

/// Whether `image` is Docker-in-Docker (`docker:dind`, `docker:24.0.4-dind`, …): the
/// builder already is one.
pub(crate) fn is_dind(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((repo, tag)) => repo == "docker" && tag.contains("dind"),
        None => false,
    }
}

/// Whether `image` is Docker-in-Docker: the rule of [`is_dind`], or one of the
/// operator's `builder.dind_images` (exact names, or globs: `*` within a path segment,
/// `**` across segments).
pub(crate) fn is_dind_for(image: &str, dind_images: &[String]) -> bool {
    let image = image.trim();
    is_dind(image)
        || dind_images
            .iter()
            .any(|g| g == image || crate::settings::glob(g, image))
}

/// `services` with those `builder.dind_images` names marked Docker-in-Docker.
pub(crate) fn with_dind_images(services: &[Service], dind_images: &[String]) -> Vec<Service> {
    services
        .iter()
        .map(|s| Service {
            dind: s.dind || is_dind_for(&s.image, dind_images),
            ..s.clone()
        })
        .collect()
}

/// The services a builder starts for the job. `job_vars` (the payload's variables)
/// go to every service, as under the docker executor, then the service's own.
pub(crate) fn services(list: &[ResponseService], job_vars: &[ResponseVariable]) -> Vec<Service> {
    list.iter()
        .filter(|s| !s.name.trim().is_empty())
        .map(|s| {
            let mut aliases = default_aliases(&s.name);
            for a in s
                .alias
                .iter()
                .flat_map(|a| a.split([',', ' ']))
                .map(str::trim)
                .filter(|a| !a.is_empty())
            {
                if !aliases.iter().any(|x| x == a) {
                    aliases.push(a.to_string());
                }
            }
            let env = job_vars
                .iter()
                .chain(s.variables.iter().flatten())
                .filter(|v| !v.file && !v.key.is_empty())
                .map(|v| (v.key.clone(), v.value.clone()))
                .collect();
            Service {
                image: s.name.trim().to_string(),
                aliases,
                entrypoint: s.entrypoint.clone().unwrap_or_default(),
                command: s.command.clone().unwrap_or_default(),
                env,
                dind: is_dind(&s.name),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_follow_gitlab_runner() {
        assert_eq!(default_aliases("postgres:16"), ["postgres"]);
        assert_eq!(default_aliases("docker:24.0.4-dind"), ["docker"]);
        assert_eq!(
            default_aliases("tutum/wordpress:latest"),
            ["tutum__wordpress", "tutum-wordpress"]
        );
        assert_eq!(
            default_aliases("registry.example.com:5000/group/sub/image:1.2"),
            [
                "registry.example.com__group__sub__image",
                "registry.example.com-group-sub-image"
            ]
        );
        assert_eq!(default_aliases("redis@sha256:abc"), ["redis"]);
    }

    #[test]
    fn the_operators_dind_images_are_recognised_too() {
        let mine = [
            "ci/dind:*".to_string(),
            "harbor.example.com/**/dind:1".into(),
        ];
        assert!(is_dind_for("ci/dind:1", &mine));
        assert!(is_dind_for("harbor.example.com/proxy/team/dind:1", &mine));
        assert!(is_dind_for("docker:27-dind", &mine));
        assert!(!is_dind_for("other/dind:1", &mine));
        assert!(!is_dind_for("ci/dind-tools/x:1", &mine));
    }

    #[test]
    fn dind_is_recognised() {
        assert!(is_dind("docker:24.0.4-dind"));
        assert!(is_dind("docker:dind"));
        assert!(is_dind("harbor.example.com/mirror/docker:27-dind-rootless"));
        assert!(!is_dind("docker:27-cli"));
        assert!(!is_dind("postgres:16"));
        assert!(!is_dind("docker"));
    }

    #[test]
    fn services_get_job_and_own_variables_and_extra_aliases() {
        let v = |k: &str, val: &str, file: bool| ResponseVariable {
            key: k.into(),
            value: val.into(),
            file,
        };
        let list = [ResponseService {
            name: "postgres:16".into(),
            alias: Some("db, pg".into()),
            variables: Some(vec![v("POSTGRES_DB", "app", false)]),
            ..Default::default()
        }];
        let s = services(
            &list,
            &[
                v("POSTGRES_PASSWORD", "pw", false),
                v("KUBECONFIG", "x", true),
            ],
        );
        assert_eq!(s[0].aliases, ["postgres", "db", "pg"]);
        assert_eq!(
            s[0].env,
            [
                ("POSTGRES_PASSWORD".to_string(), "pw".to_string()),
                ("POSTGRES_DB".to_string(), "app".to_string())
            ]
        );
        assert!(!s[0].dind);
    }
}
