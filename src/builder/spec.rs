//! The per-job DinD builder, as data: pure functions, no I/O.
//!
//! Owns the container spec ([`container_body`]), the shell that runs inside the builder
//! (boot, namespace init, exec wrapper: real `.sh` files next to this one, embedded),
//! the inner dockerd's `daemon.json`, the tar of files uploaded before start, and the
//! labels. Everything here is unit- and snapshot-tested; `stages` feeds the results to
//! `engine`.
//!
//! Invariants:
//! * Host networking, and the inner dockerd listens on a unix socket under a private
//!   tmpfs `/run` only — never on a TCP port the host network could reach (with a
//!   `docker:dind` service also on the namespace's own 127.0.0.1:2375).
//! * Rootless builders ([`Rights::Rootless`]) get no capability beyond CHOWN, MKNOD,
//!   SETUID and SETGID; their containerd and dockerd run under RootlessKit in their
//!   own user, mount and network namespace, so bridges, iptables and binfmt handlers
//!   never reach the host; every command runnerx runs in them drops to the
//!   unprivileged user first (`exec.sh`).
//! * Privileged builders (hosts without user namespaces) run their daemons in a
//!   network and mount namespace of their own too (unshare + slirp4netns), so no
//!   builder ever changes the host's links or iptables; jobs there run as root.
//! * Every container and volume carries `runnerx.job=<id>`.
//! * No secrets in the container spec: it is visible to `docker inspect`.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigCgroupnsModeEnum, Mount, MountBindOptions, MountType,
};

use ipnet::Ipv4Net;

use crate::host::network::NET_GID;
use crate::settings::{Limits, Proxy, Registry};
use crate::trust;

use super::build_cache::{self, BuildCache};
use super::labels::*;
use super::tarball::tar_owned;

/// Where stage scripts find gitlab-runner's helper (`gitlab-runner` on the job's PATH:
/// artifacts upload, cache archive and extract), bind-mounted read-only from the host.
pub(crate) const HELPER_PATH: &str = "/usr/local/bin/gitlab-runner";
/// Rootless builders: the host's sysfs, read-write and without its submounts (see
/// [`container_body`]).
pub(crate) const HOST_SYSFS: &str = "/run/runnerx-host-sysfs";
/// Where jobs find runnerx itself (on the job's PATH, read-only).
pub(crate) const RUNNERX_PATH: &str = "/usr/local/bin/runnerx";
/// Where the inner dockerd also listens when the job has a `docker:dind` service: the
/// builder's namespace's own loopback, never the runner host's.
pub(crate) const DIND_HOST: &str = "tcp://127.0.0.1:2375";
/// Inside the builder, where projects are cloned (`builds_dir` of `config`).
pub(crate) const BUILDS_DIR: &str = "/builds";
/// Inside the builder, where gitlab-runner keeps local cache archives (`cache_dir`).
pub(crate) const CACHE_DIR: &str = "/cache";

/// The boot script inside the builder.
pub(crate) const BOOT_SCRIPT_PATH: &str = "/etc/runnerx/boot.sh";
/// The wrapper every exec goes through.
pub(crate) const EXEC_PATH: &str = "/etc/runnerx/exec.sh";
/// The unprivileged user of rootless builders: jobs run as it, and it owns the
/// namespace the inner dockerd runs in (uid 0 inside). The builder image must have
/// it (with a subordinate id range in /etc/subuid and /etc/subgid).
pub(crate) const ROOTLESS_UID: u32 = 1000;
/// Its primary group, `runnerx-net`: the group RootlessKit and slirp4netns run with
/// in the host's network namespace, which the host's egress policy matches. The
/// namespace's gid 0 maps to it, so the job's files carry it too.
pub(crate) const ROOTLESS_GID: u32 = NET_GID;

/// The group files owned by `uid` get in a builder: the job user's primary group for
/// the job user, else the uid's own.
pub(crate) fn gid_of(uid: u32) -> u32 {
    if uid == ROOTLESS_UID {
        ROOTLESS_GID
    } else {
        uid
    }
}
/// Its home directory (docker config, rootless dockerd's certs.d).
pub(crate) const ROOTLESS_HOME: &str = "/home/rootless";
/// Where a rootless builder's inner dockerd listens.
pub(crate) const ROOTLESS_DOCKER_HOST: &str = "unix:///run/user/1000/docker.sock";

/// Pid 1 of a rootless builder.
pub(crate) const BOOT_ROOTLESS: &str = include_str!("boot-rootless.sh");
/// The RootlessKit child: binfmt, hosts, containerd and dockerd in the namespace.
pub(crate) const NS_INIT: &str = include_str!("ns-init.sh");
/// Pid 1 of a privileged builder.
pub(crate) const BOOT_PRIVILEGED: &str = include_str!("boot-privileged.sh");
/// The exec wrapper (stage scripts, cancellation, readiness, binfmt checks).
pub(crate) const EXEC_SCRIPT: &str = include_str!("exec.sh");
/// The `docker` job scripts find first on their PATH: a plain `docker pull` fetches
/// every platform of `builder.platforms`, so a pulled multi-arch image can be retagged
/// and pushed whole.
pub(crate) const DOCKER_CLI: &str = include_str!("docker-cli.sh");
/// The wrapper's build report (steps per platform, what the build reused, the
/// registry cache), from BuildKit's plain progress.
pub(crate) const BUILD_REPORT: &str = include_str!("build-report.awk");
/// The seccomp profile of rootless builders: Docker's default profile plus the calls
/// that create and enter user namespaces and mount inside them (clone/unshare with
/// namespace flags, setns, mount, pivot_root, the new mount API), with the keyring
/// calls answering ENOSYS so runc does not fail joining a session keyring. Not
/// `unconfined`: everything else Docker's default forbids (kexec, modules, bpf,
/// perf, …) stays forbidden. See docs/background.md#rootless-builder-options.
pub(crate) const SECCOMP_PROFILE: &str = include_str!("seccomp.json");
/// Seconds the inner dockerd gives the job's containers at cleanup before killing them
/// (its default, 10 s, made every cleanup of a job with a running service take 10 s;
/// nothing in a builder outlives the job anyway).
pub(crate) const INNER_SHUTDOWN_SECS: u64 = 2;
/// Seconds `docker stop` waits for the boot script's teardown.
pub(crate) const STOP_TIMEOUT_SECS: i64 = 20;

/// The inner dockerd's own networks, from the first two /24s of `builder.subnet_pool`:
/// its default bridge and the pool for networks jobs create. Every builder has its own
/// network namespace, so all builders use the same ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InnerNet {
    /// Default bridge address with prefix, e.g. `10.213.0.1/24`.
    pub bip: String,
    /// Base of the pool for networks created inside, e.g. `10.213.1.0/24`.
    pub pool_base: String,
}

impl InnerNet {
    /// The inner networks of `pool` (validated: prefix /23 or shorter).
    pub(crate) fn of(pool: Ipv4Net) -> InnerNet {
        let base = u32::from(pool.network());
        let o = Ipv4Addr::from(base).octets();
        InnerNet {
            bip: format!("{}.{}.{}.1/24", o[0], o[1], o[2]),
            pool_base: format!("{}/24", Ipv4Addr::from(base + 256)),
        }
    }
}

/// What a builder is made of.
#[derive(Debug, Clone)]
pub(crate) struct BuilderSpec {
    /// Job id.
    pub job_id: String,
    /// Container name, `runnerx-<id>`.
    pub name: String,
    /// Image.
    pub image: String,
    /// Rootless: whether the namespace may reach the host's loopback (10.0.2.2).
    pub host_loopback: bool,
    /// Rootless: whether ports a job publishes also listen on the host (RootlessKit's
    /// builtin port driver); otherwise only in the namespace.
    pub publish_on_host: bool,
    /// The project's registry build cache, if its registry names one.
    pub build_cache: Option<BuildCache>,
    /// `host:ip` entries.
    pub extra_hosts: Vec<String>,
    /// Unix time of creation (label).
    pub created: u64,
    /// Registries to trust and log in to (files only; never in the spec).
    pub registries: Vec<Registry>,
    /// Proxy for dockerd, builds and job scripts.
    pub proxy: Proxy,
    /// QEMU handlers the boot script registers from the image's binfmt.d (builtin/auto).
    pub binfmt: Vec<String>,
    /// The volume mounted at /var/lib/docker.
    pub data_root: DataRoot,
    /// The inner dockerd's bridge and network pool.
    pub inner_net: InnerNet,
    /// Resource limits of the whole builder (jobs, dockerd, inner containers).
    pub limits: Limits,
    /// The lease label (see [`LABEL_LEASE`]).
    pub lease: Option<String>,
    /// The host's gitlab-runner binary, mounted read-only at [`HELPER_PATH`].
    pub helper: Option<String>,
    /// The running runnerx binary, mounted read-only at [`RUNNERX_PATH`] (jobs call
    /// `runnerx manifest` with the builder's trust and logins).
    pub runnerx: Option<String>,
    /// The project's `cache_dir` volume, mounted at [`CACHE_DIR`] (none: the cache
    /// lives and dies with the builder).
    pub cache_dir: Option<String>,
    /// Aliases of a `docker:dind` service: the inner dockerd answers them on the
    /// namespace's loopback, port 2375 (empty: no TCP at all).
    pub dind_aliases: Vec<String>,
    /// `builder.platforms` (`os/arch[/variant]`): what a plain `docker pull` fetches.
    pub platforms: Vec<String>,
    /// The inner daemon's build cache garbage collection keeps this many bytes (a
    /// kept cache's share of `cache.total`); `None`: no builder GC settings.
    pub gc_keep_storage: Option<u64>,
    /// The AppArmor `--security-opt` (`apparmor=runnerx-builder` where the engine
    /// applies AppArmor, else `apparmor=unconfined`): see `host::apparmor`.
    pub apparmor: String,
}

/// The volume a builder mounts at /var/lib/docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DataRoot {
    /// The job's own volume (job label; removed at cleanup).
    Job(String),
    /// A project cache volume (no job label; kept). `warm`: it holds an earlier job's data.
    Cache {
        /// Volume name, also the builder's `runnerx.cache` label.
        name: String,
        /// Whether it existed already.
        warm: bool,
    },
}

impl DataRoot {
    /// The volume's name.
    pub(crate) fn name(&self) -> &str {
        match self {
            DataRoot::Job(n) | DataRoot::Cache { name: n, .. } => n,
        }
    }
}

impl BuilderSpec {
    /// Labels for the container.
    pub(crate) fn labels(&self, rights: Rights) -> HashMap<String, String> {
        let mut l = job_labels(&self.job_id, self.created);
        l.insert(LABEL_ISOLATION.into(), rights.isolation().into());
        if let Some(lease) = &self.lease {
            l.insert(LABEL_LEASE.into(), lease.clone());
        }
        if let DataRoot::Cache { name, .. } = &self.data_root {
            l.insert(LABEL_CACHE.into(), name.clone());
        }
        if let Some(name) = &self.cache_dir {
            l.insert(LABEL_CACHE_DIR.into(), name.clone());
        }
        l
    }
}

/// How the builder gets its rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rights {
    /// Four capabilities, runnerx's seccomp profile, inner daemons under RootlessKit,
    /// jobs as the unprivileged user.
    Rootless,
    /// `--privileged`.
    Privileged,
    /// The explicit-capabilities form that works where `--privileged` is refused
    /// (on VMs whose bounding set lacks it): all caps but SYS_RESOURCE, no seccomp/apparmor, no
    /// masked paths, all devices, host cgroup namespace with a writable cgroupfs.
    Capabilities,
}

impl Rights {
    /// The isolation's name (messages, the builder's `runnerx.isolation` label).
    pub(crate) fn isolation(self) -> &'static str {
        match self {
            Rights::Rootless => "rootless",
            Rights::Privileged | Rights::Capabilities => "privileged",
        }
    }

    /// Whose ids the files of its data volumes carry (the caches' `runnerx.isolation`
    /// label, part of `cache_dir` volume names): a builder reuses only volumes made
    /// under its own id map. Rootless: uid 1000 and [`ROOTLESS_GID`] (older rootless
    /// caches, labelled `rootless`, had gid 1000 and start afresh).
    pub(crate) fn id_map(self) -> &'static str {
        match self {
            Rights::Rootless => "rootless-g65530",
            Rights::Privileged | Rights::Capabilities => "privileged",
        }
    }
}

/// The container create body for a builder.
pub(crate) fn container_body(spec: &BuilderSpec, rights: Rights) -> ContainerCreateBody {
    let mut mounts = vec![Mount {
        typ: Some(MountType::VOLUME),
        source: Some(spec.data_root.name().to_string()),
        target: Some("/var/lib/docker".into()),
        ..Default::default()
    }];
    if let Some(volume) = &spec.cache_dir {
        mounts.push(Mount {
            typ: Some(MountType::VOLUME),
            source: Some(volume.clone()),
            target: Some(CACHE_DIR.into()),
            ..Default::default()
        });
    }
    for (source, target) in [(&spec.helper, HELPER_PATH), (&spec.runnerx, RUNNERX_PATH)] {
        if let Some(source) = source {
            mounts.push(Mount {
                typ: Some(MountType::BIND),
                source: Some(source.clone()),
                target: Some(target.into()),
                read_only: Some(true),
                ..Default::default()
            });
        }
    }
    let mut host = HostConfig {
        network_mode: Some("host".into()),
        // A private /run: the inner docker and containerd sockets and pid files never
        // meet another builder's.
        tmpfs: Some(HashMap::from([("/run".into(), "rw,exec,mode=755".into())])),
        extra_hosts: Some(spec.extra_hosts.clone()).filter(|h| !h.is_empty()),
        ..Default::default()
    };
    let mut env = None;
    match rights {
        Rights::Rootless => {
            // What the rootless builder needs, nothing more: SETUID/SETGID for
            // newuidmap/newgidmap and the drop to the user, CHOWN for the user's
            // runtime dir and data root, MKNOD for /dev/net/tun (Docker's default
            // device rules allow c 10:200). No NET_ADMIN, no SYS_ADMIN.
            host.cap_drop = Some(vec!["ALL".into()]);
            host.cap_add = Some(
                ["CHOWN", "MKNOD", "SETUID", "SETGID"]
                    .map(String::from)
                    .to_vec(),
            );
            host.security_opt = Some(vec![
                format!("seccomp={SECCOMP_PROFILE}"),
                // runnerx's own profile where the host has AppArmor (docker-default
                // denies the mounts RootlessKit makes, and Ubuntu lets only profiles
                // with `userns,` create user namespaces with capabilities).
                spec.apparmor.clone(),
            ]);
            // systempaths=unconfined: inner `docker run` mounts a fresh proc, which
            // the kernel refuses while masked paths cover /proc. It leaves /proc/sys
            // writable by the builder's uid 0, which is why no job runs as it.
            host.masked_paths = Some(vec![]);
            host.readonly_paths = Some(vec![]);
            // A read-write sysfs somewhere in view: a privileged inner container (the
            // BuildKit of the docker-container driver, a job's `docker run
            // --privileged`) mounts a fresh read-write sysfs, which the kernel allows
            // inside a user namespace only while one is already visible read-write
            // (the builder's own /sys is read-only). Not recursive and not at /sys, so
            // the builder's /sys and cgroup view stay as Docker made them. Writing it
            // takes host root: the inner containers' root is a subordinate uid, and no
            // job runs as the builder's root.
            mounts.push(Mount {
                typ: Some(MountType::BIND),
                source: Some("/sys".into()),
                target: Some(HOST_SYSFS.into()),
                read_only: Some(false),
                bind_options: Some(MountBindOptions {
                    non_recursive: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            });
            env = Some(vec![format!("DOCKER_HOST={ROOTLESS_DOCKER_HOST}")]);
        }
        Rights::Privileged | Rights::Capabilities => {
            // Confined like rootless builders where the host has AppArmor.
            grant_privileges(rights, &spec.apparmor, &mut host, &mut mounts);
        }
    }
    host.mounts = Some(mounts);
    if spec.limits.memory > 0 {
        let m = i64::try_from(spec.limits.memory).unwrap_or(i64::MAX);
        host.memory = Some(m);
        host.memory_swap = Some(m);
    }
    host.nano_cpus = spec.limits.cpus.map(|c| (c * 1e9) as i64);
    host.pids_limit = Some(spec.limits.pids);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(vec!["/bin/sh".into()]),
        cmd: Some(vec![BOOT_SCRIPT_PATH.into()]),
        env,
        labels: Some(spec.labels(rights)),
        stop_signal: Some("SIGTERM".into()),
        stop_timeout: Some(STOP_TIMEOUT_SECS),
        host_config: Some(host),
        ..Default::default()
    }
}

/// What a daemon that runs containers needs on the host engine: `--privileged`, or
/// where the engine refuses it (VMs whose bounding set lacks CAP_SYS_RESOURCE) the
/// measured equivalent — all capabilities but SYS_RESOURCE, no seccomp or AppArmor,
/// no masked paths, every device, the host's cgroup tree writable. Also used for
/// BuildKit nodes (`runnerx node --start`). `apparmor` is the explicit-capabilities
/// form's `--security-opt` (`apparmor=…`); `--privileged` always runs unconfined:
/// Docker ignores a named profile for it (seen on Docker 26).
pub(crate) fn grant_privileges(
    rights: Rights,
    apparmor: &str,
    host: &mut HostConfig,
    mounts: &mut Vec<Mount>,
) {
    match rights {
        Rights::Rootless => {}
        Rights::Privileged => host.privileged = Some(true),
        Rights::Capabilities => {
            host.cap_add = Some(vec!["ALL".into()]);
            host.cap_drop = Some(vec!["SYS_RESOURCE".into()]);
            host.security_opt = Some(vec!["seccomp=unconfined".into(), apparmor.into()]);
            // `--security-opt systempaths=unconfined` is a CLI flag; on the API it is
            // empty masked and read-only path lists.
            host.masked_paths = Some(vec![]);
            host.readonly_paths = Some(vec![]);
            host.device_cgroup_rules = Some(vec!["a *:* rwm".into()]);
            host.cgroupns_mode = Some(HostConfigCgroupnsModeEnum::HOST);
            mounts.push(Mount {
                typ: Some(MountType::BIND),
                source: Some("/sys/fs/cgroup".into()),
                target: Some("/sys/fs/cgroup".into()),
                read_only: Some(false),
                ..Default::default()
            });
        }
    }
}

/// The inner dockerd's configuration: unix socket only, own bridge and address pool,
/// containerd image store (multi-platform images with the `docker` buildx driver),
/// plus registry options (insecure registries, Hub mirrors) and proxies.
///
/// Rootless: the socket under the user's runtime dir. The data root is the builder's
/// volume; the default bridge and pools are [`InnerNet`] (the operator keeps them
/// clear of addresses builds must reach).
pub(crate) fn daemon_json(spec: &BuilderSpec, rights: Rights) -> String {
    let host = if rights == Rights::Rootless {
        ROOTLESS_DOCKER_HOST
    } else {
        "unix:///var/run/docker.sock"
    };
    let mut hosts = vec![host.to_string()];
    if !spec.dind_aliases.is_empty() {
        // Only the namespace's own loopback: nothing outside the builder's network
        // namespace (the runner host, other jobs) can reach it.
        hosts.push(DIND_HOST.to_string());
    }
    let mut v = serde_json::json!({
        "hosts": hosts,
        "data-root": "/var/lib/docker",
        "bip": spec.inner_net.bip,
        "default-address-pools": [{"base": spec.inner_net.pool_base, "size": 28}],
        "features": {"containerd-snapshotter": true},
        "shutdown-timeout": INNER_SHUTDOWN_SECS,
    });
    if let serde_json::Value::Object(m) = &mut v {
        m.extend(trust::daemon_options(&spec.registries, &spec.proxy));
        if !spec.dind_aliases.is_empty() {
            // Plain TCP is what `DOCKER_HOST=tcp://docker:2375` jobs expect.
            m.insert("tls".into(), false.into());
        }
        if let Some(keep) = spec.gc_keep_storage {
            // BuildKit trims its own oldest records to stay within the share, so a
            // kept cache rarely has to be evicted whole.
            m.insert(
                "builder".into(),
                serde_json::json!({"gc": {"enabled": true, "defaultKeepStorage": format!("{}MB", (keep / 1_000_000).max(1))}}),
            );
        }
    }
    serde_json::to_string_pretty(&v).expect("static JSON") + "\n"
}

/// Values the boot scripts and the exec wrapper source (`/etc/runnerx/boot.env`).
pub(crate) fn boot_env(spec: &BuilderSpec, rights: Rights) -> String {
    let mut env = format!(
        "RUNNERX_BINFMT=\"{}\"\nRUNNERX_HOST_LOOPBACK={}\nRUNNERX_PORT_DRIVER={}\nRUNNERX_PLATFORMS=\"{}\"\n",
        spec.binfmt.join(" "),
        u8::from(spec.host_loopback),
        if spec.publish_on_host {
            "builtin"
        } else {
            "none"
        },
        spec.platforms.join(" ")
    );
    // The group the network helper runs with, which the host's egress policy matches.
    env.push_str(&format!("RUNNERX_NET_GID={NET_GID}\n"));
    if !spec.dind_aliases.is_empty() {
        env.push_str(&format!(
            "RUNNERX_DIND_ALIASES=\"{}\"\n",
            spec.dind_aliases.join(" ")
        ));
    }
    if rights == Rights::Rootless {
        env.push_str(&format!("RUNNERX_UID={ROOTLESS_UID}\n"));
    } else {
        env.push_str(&format!(
            "RUNNERX_CGROUP_NEST={}\n",
            u8::from(rights == Rights::Privileged)
        ));
    }
    env
}

/// Config for the containerd the boot script starts: no CRI plugin (Kubernetes only).
pub(crate) const CONTAINERD_TOML: &str =
    "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n";

/// The files uploaded into a created builder before it starts (tar, rooted at `/`).
/// Holds registry secrets (credentials, client keys) in 0600 files: files are the one
/// channel `docker inspect` does not show.
pub(crate) fn bundle(spec: &BuilderSpec, rights: Rights) -> Vec<u8> {
    let boot = if rights == Rights::Rootless {
        BOOT_ROOTLESS
    } else {
        BOOT_PRIVILEGED
    };
    let mut files: Vec<trust::File> = vec![
        (
            "etc/runnerx/boot.sh".into(),
            boot.as_bytes().to_vec(),
            0o755,
        ),
        (
            "etc/runnerx/boot.env".into(),
            boot_env(spec, rights).into_bytes(),
            0o644,
        ),
        (
            "etc/runnerx/daemon.json".into(),
            daemon_json(spec, rights).into_bytes(),
            0o644,
        ),
        (
            EXEC_PATH.trim_start_matches('/').into(),
            EXEC_SCRIPT.as_bytes().to_vec(),
            0o755,
        ),
        (
            "etc/runnerx/containerd.toml".into(),
            CONTAINERD_TOML.as_bytes().to_vec(),
            0o644,
        ),
        (
            "etc/runnerx/ns-init.sh".into(),
            NS_INIT.as_bytes().to_vec(),
            0o755,
        ),
        (
            "etc/runnerx/bin/docker".into(),
            DOCKER_CLI.as_bytes().to_vec(),
            0o755,
        ),
        (
            "etc/runnerx/build-report.awk".into(),
            BUILD_REPORT.as_bytes().to_vec(),
            0o644,
        ),
    ];
    if let Some(c) = &spec.build_cache {
        files.push((
            "etc/runnerx/build-cache.env".into(),
            build_cache::env_file(c).into_bytes(),
            0o644,
        ));
    }
    let home = (rights == Rights::Rootless).then_some(ROOTLESS_HOME);
    files.extend(trust::files(&spec.registries, &spec.proxy, home));
    let refs: Vec<(&str, &[u8], u32)> = files
        .iter()
        .map(|(p, c, m)| (p.as_str(), c.as_slice(), *m))
        .collect();
    let user = home.map(|h| (h.trim_start_matches('/'), (ROOTLESS_UID, ROOTLESS_GID)));
    tar_owned(&refs, user)
}

/// The job user's home and (uid, gid): `/home/rootless` and 1000:65530 in rootless builders, else
/// root's.
pub(crate) fn job_home(rootless: bool) -> (&'static str, (u32, u32)) {
    if rootless {
        (ROOTLESS_HOME, (ROOTLESS_UID, ROOTLESS_GID))
    } else {
        ("/root", (0, 0))
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
