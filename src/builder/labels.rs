//! The names and labels of what runnerx makes on the host engine: every container and
//! volume of a job carries `runnerx.job=<id>` (cleanup removes exactly those); cache
//! volumes carry no job label (cleanup keeps them, gc prunes them by age and size).

use std::collections::HashMap;

/// Label every runnerx object carries: the job id.
pub(crate) const LABEL_JOB: &str = "runnerx.job";
/// Unix time the object was created (for `gc`).
pub(crate) const LABEL_CREATED: &str = "runnerx.created";
/// On a builder: the cache volume it mounts. On a cache volume: its key.
pub(crate) const LABEL_CACHE: &str = "runnerx.cache";
/// On a cache volume: the project it belongs to.
pub(crate) const LABEL_CACHE_PROJECT: &str = "runnerx.cache-project";
/// The host bridge a builder of an earlier runnerx owns (cleanup and gc still delete
/// it; builders now have no host bridge).
pub(crate) const LABEL_BRIDGE: &str = "runnerx.bridge";
/// On a builder: `pid:starttime` of the process that prepared it (gitlab-runner); gc
/// never removes a builder whose lease holder still runs.
pub(crate) const LABEL_LEASE: &str = "runnerx.lease";
/// On a builder and a cache volume: `rootless` or `privileged`.
pub(crate) const LABEL_ISOLATION: &str = "runnerx.isolation";
/// On a project's `cache_dir` volume: the project id; on a builder: the volume it mounts.
pub(crate) const LABEL_CACHE_DIR: &str = "runnerx.cache-dir";

/// The `runnerx.created` label as Unix seconds (0 when missing or unreadable, i.e. old).
pub(crate) fn created_of(labels: &HashMap<String, String>) -> u64 {
    labels
        .get(LABEL_CREATED)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Name of a job's `/var/lib/docker` volume.
pub(crate) fn volume_name(job_id: &str) -> String {
    format!("runnerx-{job_id}-docker")
}

/// Name of a project's cache volume in `slot`.
pub(crate) fn cache_volume_name(project: &str, slot: u32) -> String {
    format!("runnerx-cache-p{project}-{slot}")
}

/// The labels of a cache volume: no job label, so cleanup keeps it. `isolation`:
/// whose uid map its files carry (a rootless namespace cannot use root-owned files).
pub(crate) fn cache_labels(
    project: &str,
    key: &str,
    created: u64,
    isolation: &str,
) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_CACHE.to_string(), key.to_string()),
        (LABEL_CACHE_PROJECT.to_string(), project.to_string()),
        (LABEL_CREATED.to_string(), created.to_string()),
        (LABEL_ISOLATION.to_string(), isolation.to_string()),
    ])
}

/// Name of a project's `cache_dir` volume. Per isolation: a rootless builder cannot
/// write files a privileged one left (another uid map).
pub(crate) fn cache_dir_volume_name(project: &str, isolation: &str) -> String {
    format!("runnerx-cachedir-p{project}-{isolation}")
}

/// The labels of a `cache_dir` volume: no job label (cleanup keeps it); `runnerx.cache`
/// so gc prunes it like the layer caches (unused, older than `cache.max_age` or larger
/// than `cache.max_size`).
pub(crate) fn cache_dir_labels(
    project: &str,
    name: &str,
    created: u64,
    isolation: &str,
) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_CACHE.to_string(), name.to_string()),
        (LABEL_CACHE_DIR.to_string(), project.to_string()),
        (LABEL_CREATED.to_string(), created.to_string()),
        (LABEL_ISOLATION.to_string(), isolation.to_string()),
    ])
}

/// The labels every object of a job carries.
pub(crate) fn job_labels(job_id: &str, created: u64) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_JOB.to_string(), job_id.to_string()),
        (LABEL_CREATED.to_string(), created.to_string()),
    ])
}
