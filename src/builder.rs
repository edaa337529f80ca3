//! The per-job DinD builder, as data: pure functions, no I/O.
//!
//! Owns the container spec ([`container_body`]), the boot script the container runs,
//! the inner dockerd's `daemon.json`, the tar of files uploaded before start, the
//! exec wrapper that runs stage scripts, and the labels. Everything here is unit- and
//! snapshot-tested; `stages` feeds the results to `engine`.
//!
//! Invariants:
//! * Host networking, and the inner dockerd listens on a unix socket under a private
//!   tmpfs `/run` only — never on TCP (the host network would expose it).
//! * Each builder gets its own bridge (`runnerx<slot>`) and subnets carved from
//!   `builder.subnet_pool`, so concurrent builders never share `docker0`
//!   (test-environment.md §6). The boot script removes its bridge when it stops.
//! * Every container and volume carries `runnerx.job=<id>`.
//! * No secrets in the container spec: it is visible to `docker inspect`.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigCgroupnsModeEnum, Mount, MountType,
};

use crate::settings::{Ipv4Net, Proxy, Registry};
use crate::trust;

/// Label every runnerx object carries: the job id.
pub const LABEL_JOB: &str = "runnerx.job";
/// Unix time the object was created (for `gc`).
pub const LABEL_CREATED: &str = "runnerx.created";
/// On a builder: the cache volume it mounts. On a cache volume: its key.
pub const LABEL_CACHE: &str = "runnerx.cache";
/// On a cache volume: the project it belongs to.
pub const LABEL_CACHE_PROJECT: &str = "runnerx.cache-project";
/// The network slot a builder holds.
pub const LABEL_SLOT: &str = "runnerx.slot";
/// The host bridge a builder owns.
pub const LABEL_BRIDGE: &str = "runnerx.bridge";

/// The boot script inside the builder.
pub const BOOT_SCRIPT_PATH: &str = "/etc/runnerx/boot.sh";
/// Seconds `docker stop` waits for the boot script's teardown.
pub const STOP_TIMEOUT_SECS: i64 = 20;

/// A builder's share of the host network: a bridge and two /24s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Slot number, unique among builders on this host.
    pub index: u32,
    /// Host bridge name (≤ 15 chars).
    pub bridge: String,
    /// Gateway address with prefix for the bridge, e.g. `10.213.2.1/24`.
    pub bridge_cidr: String,
    /// Base of the address pool for networks created inside, e.g. `10.213.3.0/24`.
    pub pool_base: String,
}

impl Slot {
    /// How many slots a pool holds (two /24s each).
    pub fn capacity(pool: Ipv4Net) -> u32 {
        (1u32 << (24 - u32::from(pool.prefix))) / 2
    }

    /// The slot `index` of `pool`; `None` if the pool is too small.
    pub fn new(pool: Ipv4Net, index: u32) -> Option<Slot> {
        if index >= Self::capacity(pool) {
            return None;
        }
        let base = u32::from(pool.addr);
        let bridge_net = Ipv4Addr::from(base + (2 * index) * 256);
        let pool_net = Ipv4Addr::from(base + (2 * index + 1) * 256);
        let o = bridge_net.octets();
        Some(Slot {
            index,
            bridge: format!("runnerx{index}"),
            bridge_cidr: format!("{}.{}.{}.1/24", o[0], o[1], o[2]),
            pool_base: format!("{pool_net}/24"),
        })
    }
}

/// What a builder is made of.
#[derive(Debug, Clone)]
pub struct BuilderSpec {
    /// Job id.
    pub job_id: String,
    /// Container name, `runnerx-<id>`.
    pub name: String,
    /// Image.
    pub image: String,
    /// Network slot.
    pub slot: Slot,
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
}

/// The volume a builder mounts at /var/lib/docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataRoot {
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
    pub fn name(&self) -> &str {
        match self {
            DataRoot::Job(n) | DataRoot::Cache { name: n, .. } => n,
        }
    }
}

impl BuilderSpec {
    /// Labels for the container and its volume.
    pub fn labels(&self) -> HashMap<String, String> {
        let mut l = job_labels(&self.job_id, self.created);
        l.insert(LABEL_SLOT.into(), self.slot.index.to_string());
        l.insert(LABEL_BRIDGE.into(), self.slot.bridge.clone());
        if let DataRoot::Cache { name, .. } = &self.data_root {
            l.insert(LABEL_CACHE.into(), name.clone());
        }
        l
    }
}

/// The `runnerx.created` label as Unix seconds (0 when missing or unreadable, i.e. old).
pub fn created_of(labels: &HashMap<String, String>) -> u64 {
    labels
        .get(LABEL_CREATED)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Name of a job's `/var/lib/docker` volume.
pub fn volume_name(job_id: &str) -> String {
    format!("runnerx-{job_id}-docker")
}

/// Name of a project's cache volume in `slot`.
pub fn cache_volume_name(project: &str, slot: u32) -> String {
    format!("runnerx-cache-p{project}-{slot}")
}

/// The labels of a cache volume: no job label, so cleanup keeps it.
pub fn cache_labels(project: &str, key: &str, created: u64) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_CACHE.to_string(), key.to_string()),
        (LABEL_CACHE_PROJECT.to_string(), project.to_string()),
        (LABEL_CREATED.to_string(), created.to_string()),
    ])
}

/// The labels every object of a job carries.
pub fn job_labels(job_id: &str, created: u64) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_JOB.to_string(), job_id.to_string()),
        (LABEL_CREATED.to_string(), created.to_string()),
    ])
}

/// How the builder gets its rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rights {
    /// `--privileged`.
    Privileged,
    /// The explicit-capabilities form that works where `--privileged` is refused
    /// (test-environment.md §1): all caps but SYS_RESOURCE, no seccomp/apparmor, no
    /// masked paths, all devices, host cgroup namespace with a writable cgroupfs.
    Capabilities,
}

/// The container create body for a builder.
pub fn container_body(spec: &BuilderSpec, rights: Rights) -> ContainerCreateBody {
    let mut mounts = vec![Mount {
        typ: Some(MountType::VOLUME),
        source: Some(spec.data_root.name().to_string()),
        target: Some("/var/lib/docker".into()),
        ..Default::default()
    }];
    let mut host = HostConfig {
        network_mode: Some("host".into()),
        // A private /run: the inner docker and containerd sockets and pid files never
        // meet another builder's (test-environment.md §6).
        tmpfs: Some(HashMap::from([("/run".into(), "rw,exec,mode=755".into())])),
        extra_hosts: Some(spec.extra_hosts.clone()).filter(|h| !h.is_empty()),
        ..Default::default()
    };
    match rights {
        Rights::Privileged => host.privileged = Some(true),
        Rights::Capabilities => {
            host.cap_add = Some(vec!["ALL".into()]);
            host.cap_drop = Some(vec!["SYS_RESOURCE".into()]);
            host.security_opt = Some(vec![
                "seccomp=unconfined".into(),
                "apparmor=unconfined".into(),
            ]);
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
    host.mounts = Some(mounts);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(vec!["/bin/sh".into()]),
        cmd: Some(vec![BOOT_SCRIPT_PATH.into()]),
        labels: Some(spec.labels()),
        stop_signal: Some("SIGTERM".into()),
        stop_timeout: Some(STOP_TIMEOUT_SECS),
        host_config: Some(host),
        ..Default::default()
    }
}

/// The inner dockerd's configuration: unix socket only, own bridge and address pool,
/// containerd image store (multi-platform images with the `docker` buildx driver),
/// plus registry options (insecure registries, Hub mirrors) and proxies.
pub fn daemon_json(spec: &BuilderSpec) -> String {
    let mut v = serde_json::json!({
        "hosts": ["unix:///var/run/docker.sock"],
        "bridge": spec.slot.bridge,
        "default-address-pools": [{"base": spec.slot.pool_base, "size": 28}],
        "features": {"containerd-snapshotter": true},
    });
    if let serde_json::Value::Object(m) = &mut v {
        m.extend(trust::daemon_options(&spec.registries, &spec.proxy));
    }
    serde_json::to_string_pretty(&v).expect("static JSON") + "\n"
}

/// Values the boot script sources (`/etc/runnerx/boot.env`).
pub fn boot_env(spec: &BuilderSpec, rights: Rights) -> String {
    format!(
        "RUNNERX_BRIDGE={}\nRUNNERX_BRIDGE_CIDR={}\nRUNNERX_CGROUP_NEST={}\nRUNNERX_BINFMT=\"{}\"\n",
        spec.slot.bridge,
        spec.slot.bridge_cidr,
        u8::from(rights == Rights::Privileged),
        spec.binfmt.join(" "),
    )
}

/// The builder's pid 1 (POSIX sh, so it runs in docker:dind's busybox too).
///
/// Creates the bridge in the host namespace, starts dockerd with runnerx's config, and
/// on SIGTERM (docker stop) or dockerd exit stops dockerd and deletes the bridge.
pub const BOOT_SCRIPT: &str = r#"#!/bin/sh
# runnerx builder boot: written by runnerx, do not edit.
set -eu
. /etc/runnerx/boot.env
mkdir -p /run/runnerx
if [ "$RUNNERX_CGROUP_NEST" = 1 ] && [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  # cgroup v2 with a private cgroup namespace: move ourselves to a leaf so dockerd
  # can enable controllers for its children (moby hack/dind).
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
  sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
    > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || :
fi
# Registry CAs runnerx placed in the system store: trust them for curl, git and the
# buildx client's token requests (buildkit.md §0).
# Appending to the bundle is instant; the full update-ca-certificates (hash links for
# CApath users) costs ~0.6 s, so it runs in the background.
if ls /usr/local/share/ca-certificates/runnerx-*.crt >/dev/null 2>&1; then
  cat /usr/local/share/ca-certificates/runnerx-*.crt >> /etc/ssl/certs/ca-certificates.crt 2>/dev/null || :
  (update-ca-certificates >/dev/null 2>&1 || echo "runnerx: update-ca-certificates failed" >&2) &
fi
# QEMU handlers from the image (binfmt builtin/auto), before dockerd starts so its
# BuildKit sees the emulated platforms; already-registered handlers are kept.
if [ -n "$RUNNERX_BINFMT" ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || :
  for a in $RUNNERX_BINFMT; do
    [ -e "/proc/sys/fs/binfmt_misc/qemu-$a" ] && continue
    conf="/usr/lib/binfmt.d/qemu-$a.conf"
    [ -r "$conf" ] || continue
    grep -h "^:qemu-$a:" "$conf" > /proc/sys/fs/binfmt_misc/register 2>/dev/null \
      || echo "runnerx: cannot register qemu-$a from $conf" >&2
  done
fi
# A kept /var/lib/docker (per-project cache) holds the last builder's network store.
# Its stale default "bridge" network makes dockerd delete the interface named docker0
# on start (moby initBridgeDriver + default-address-pools) -- on the host network that
# is the HOST's docker0. Networks never carry over between slots anyway: drop them.
rm -f /var/lib/docker/network/files/local-kv.db
ip link show "$RUNNERX_BRIDGE" >/dev/null 2>&1 || ip link add "$RUNNERX_BRIDGE" type bridge
ip addr replace "$RUNNERX_BRIDGE_CIDR" dev "$RUNNERX_BRIDGE"
ip link set "$RUNNERX_BRIDGE" up
# containerd started here rather than by dockerd: dockerd polls the containerd it
# manages slowly (~1 s of a ~1.4 s boot). Same root and state paths as dockerd's own,
# so a kept /var/lib/docker works either way; images without containerd fall back.
ctd=""
set --
if command -v containerd >/dev/null 2>&1; then
  mkdir -p /run/containerd
  containerd --config /etc/runnerx/containerd.toml --root /var/lib/docker/containerd/daemon \
    --state /run/docker/containerd/daemon --address /run/containerd/containerd.sock &
  ctd=$!
  i=0
  while [ ! -S /run/containerd/containerd.sock ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
  [ -S /run/containerd/containerd.sock ] && set -- --containerd /run/containerd/containerd.sock
fi
dockerd --config-file /etc/runnerx/daemon.json "$@" &
pid=$!
stop_all() {
  kill -TERM "$pid" 2>/dev/null || :
  wait "$pid" 2>/dev/null || :
  if [ -n "$ctd" ]; then kill -TERM "$ctd" 2>/dev/null || :; wait "$ctd" 2>/dev/null || :; fi
  ip link del "$RUNNERX_BRIDGE" 2>/dev/null || :
}
teardown() {
  stop_all
  exit 0
}
trap teardown TERM INT
wait "$pid" || :
stop_all
echo "runnerx: dockerd exited" >&2
exit 1
"#;

/// Name of the buildx builder runnerx creates for the docker-container driver.
pub const BUILDX_BUILDER: &str = "runnerx";

/// `docker buildx create` for the docker-container driver: the rendered buildkitd.toml
/// (registry CAs, mirrors), host networking (resolves registries as the builder does),
/// a pinned BuildKit image, the configured platforms, and `--use` so plain
/// `docker buildx build` in job scripts picks it.
pub fn buildx_create_cmd(
    buildkit_image: &str,
    platforms: &[crate::settings::Platform],
) -> Vec<String> {
    let platforms = platforms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    [
        "docker",
        "buildx",
        "create",
        "--name",
        BUILDX_BUILDER,
        "--driver",
        "docker-container",
        "--driver-opt",
        "network=host",
        "--driver-opt",
        &format!("image={buildkit_image}"),
        "--buildkitd-config",
        trust::BUILDKITD_TOML,
        "--platform",
        &platforms,
        "--use",
        "--bootstrap",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

/// Config for the containerd the boot script starts: no CRI plugin (Kubernetes only).
pub const CONTAINERD_TOML: &str =
    "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n";

/// Command that succeeds once the inner dockerd answers, polling for up to `secs`.
/// One exec for the whole wait instead of one per poll: an exec costs tens of ms.
pub fn wait_ready_cmd(secs: u64) -> Vec<String> {
    let polls = secs * 10;
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "i=0; while [ $i -lt {polls} ]; do docker version >/dev/null 2>&1 && exit 0; i=$((i+1)); sleep 0.1; done; exit 1"
        ),
    ]
}

/// The files uploaded into a created builder before it starts (tar, rooted at `/`).
/// Holds registry secrets (credentials, client keys) in 0600 files: files are the one
/// channel `docker inspect` does not show.
pub fn bundle(spec: &BuilderSpec, rights: Rights) -> Vec<u8> {
    let mut files: Vec<trust::File> = vec![
        (
            "etc/runnerx/boot.sh".into(),
            BOOT_SCRIPT.as_bytes().to_vec(),
            0o755,
        ),
        (
            "etc/runnerx/boot.env".into(),
            boot_env(spec, rights).into_bytes(),
            0o644,
        ),
        (
            "etc/runnerx/daemon.json".into(),
            daemon_json(spec).into_bytes(),
            0o644,
        ),
        (
            "etc/runnerx/containerd.toml".into(),
            CONTAINERD_TOML.as_bytes().to_vec(),
            0o644,
        ),
    ];
    files.extend(trust::files(&spec.registries, &spec.proxy));
    let refs: Vec<(&str, &[u8], u32)> = files
        .iter()
        .map(|(p, c, m)| (p.as_str(), c.as_slice(), *m))
        .collect();
    tar_of(&refs)
}

/// An uncompressed tar of `(path, content, mode)` entries owned by root.
pub fn tar_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data)
            .expect("writing a tar to memory cannot fail");
    }
    b.into_inner().expect("writing a tar to memory cannot fail")
}

/// Runs a stage script inside the builder without leaving a copy of it there.
///
/// The script (it holds the job token) arrives on stdin, length-prefixed by `$1`, and
/// is read through a pipe: it is never written to the container's filesystem, and
/// stdin EOF is not needed (docker exec cannot half-close it reliably). `setsid` gives
/// the script its own process group so cancellation can signal the whole tree, as
/// gitlab-runner does with `kill(-pid)`; its pid goes to `/run/runnerx/<token>.pid`.
/// The script's own stdin is /dev/null.
pub fn exec_wrapper(script_len: usize, token: &str) -> Vec<String> {
    vec![
        "bash".into(),
        "-c".into(),
        format!(
            "mkdir -p /run/runnerx; pidf=/run/runnerx/$2.pid; \
             if [ -r {env} ]; then set -a; . {env}; set +a; fi; \
             exec 3< <(head -c \"$1\"); \
             setsid bash /dev/fd/3 </dev/null & pid=$!; echo \"$pid\" > \"$pidf\"; \
             wait \"$pid\"; rc=$?; rm -f \"$pidf\"; exit $rc",
            env = trust::JOB_ENV
        ),
        "runnerx-run".into(),
        script_len.to_string(),
        token.into(),
    ]
}

/// Sends `signal` to the process group of the script started with `token`.
/// Waits briefly for the pid file, which the wrapper writes right after starting.
pub fn kill_cmd(token: &str, signal: &str) -> Vec<String> {
    vec![
        "bash".into(),
        "-c".into(),
        format!(
            "for i in $(seq 1 20); do if [ -s /run/runnerx/{token}.pid ]; then \
             kill -{signal} -- -$(cat /run/runnerx/{token}.pid) 2>/dev/null; exit 0; fi; sleep 0.05; done; exit 1"
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Ipv4Net {
        Ipv4Net {
            addr: Ipv4Addr::new(10, 213, 0, 0),
            prefix: 16,
        }
    }

    fn spec() -> BuilderSpec {
        BuilderSpec {
            job_id: "42".into(),
            name: "runnerx-42".into(),
            image: "runnerx-builder:local".into(),
            slot: Slot::new(pool(), 1).unwrap(),
            extra_hosts: vec!["registry.test:127.0.0.1".into()],
            created: 1_700_000_000,
            registries: vec![],
            proxy: Proxy::default(),
            binfmt: vec!["aarch64".into()],
            data_root: DataRoot::Job(volume_name("42")),
        }
    }

    #[test]
    fn slots_carve_distinct_subnets() {
        assert_eq!(Slot::capacity(pool()), 128);
        let a = Slot::new(pool(), 0).unwrap();
        let b = Slot::new(pool(), 1).unwrap();
        assert_eq!(a.bridge_cidr, "10.213.0.1/24");
        assert_eq!(a.pool_base, "10.213.1.0/24");
        assert_eq!(b.bridge, "runnerx1");
        assert_eq!(b.bridge_cidr, "10.213.2.1/24");
        assert_eq!(b.pool_base, "10.213.3.0/24");
        assert_eq!(Slot::new(pool(), 127).unwrap().pool_base, "10.213.255.0/24");
        assert!(Slot::new(pool(), 128).is_none());
        assert!(Slot::new(pool(), 127).unwrap().bridge.len() <= 15);
    }

    #[test]
    fn privileged_spec_is_host_network_private_run_and_labelled() {
        let body = container_body(&spec(), Rights::Privileged);
        let v = serde_json::to_value(&body).unwrap();
        let h = &v["HostConfig"];
        assert_eq!(h["NetworkMode"], "host");
        assert_eq!(h["Privileged"], true);
        assert_eq!(h["Tmpfs"]["/run"], "rw,exec,mode=755");
        assert_eq!(h["ExtraHosts"][0], "registry.test:127.0.0.1");
        assert_eq!(h["Mounts"][0]["Source"], "runnerx-42-docker");
        assert_eq!(h["Mounts"][0]["Target"], "/var/lib/docker");
        assert!(h.get("CapAdd").is_none());
        assert_eq!(v["Labels"]["runnerx.job"], "42");
        assert_eq!(v["Labels"]["runnerx.bridge"], "runnerx1");
        assert_eq!(v["Cmd"][0], BOOT_SCRIPT_PATH);
        // Nothing that could carry a secret or expose the daemon.
        assert!(v.get("Env").is_none());
        assert!(!v.to_string().contains("tcp://"));
    }

    #[test]
    fn capabilities_spec_matches_the_measured_fallback() {
        let v = serde_json::to_value(container_body(&spec(), Rights::Capabilities)).unwrap();
        let h = &v["HostConfig"];
        assert!(h.get("Privileged").is_none());
        assert_eq!(h["CapAdd"], serde_json::json!(["ALL"]));
        assert_eq!(h["CapDrop"], serde_json::json!(["SYS_RESOURCE"]));
        assert_eq!(h["MaskedPaths"], serde_json::json!([]));
        assert_eq!(h["ReadonlyPaths"], serde_json::json!([]));
        assert_eq!(h["DeviceCgroupRules"], serde_json::json!(["a *:* rwm"]));
        assert_eq!(h["CgroupnsMode"], "host");
        assert_eq!(h["Mounts"][1]["Target"], "/sys/fs/cgroup");
    }

    #[test]
    fn cache_volumes_carry_no_job_label() {
        let l = cache_labels("77", "runnerx-cache-p77-0", 1);
        assert!(!l.contains_key(LABEL_JOB));
        assert_eq!(l[LABEL_CACHE_PROJECT], "77");
        let mut s = spec();
        s.data_root = DataRoot::Cache {
            name: cache_volume_name("77", 0),
            warm: false,
        };
        let v = serde_json::to_value(container_body(&s, Rights::Privileged)).unwrap();
        assert_eq!(
            v["HostConfig"]["Mounts"][0]["Source"],
            "runnerx-cache-p77-0"
        );
        assert_eq!(v["Labels"]["runnerx.cache"], "runnerx-cache-p77-0");
        assert_eq!(v["Labels"]["runnerx.job"], "42");
    }

    #[test]
    fn daemon_json_uses_unix_socket_and_own_bridge() {
        let v: serde_json::Value = serde_json::from_str(&daemon_json(&spec())).unwrap();
        assert_eq!(
            v["hosts"],
            serde_json::json!(["unix:///var/run/docker.sock"])
        );
        assert_eq!(v["bridge"], "runnerx1");
        assert_eq!(v["default-address-pools"][0]["base"], "10.213.3.0/24");
        assert_eq!(v["features"]["containerd-snapshotter"], true);
    }

    #[test]
    fn bundle_holds_boot_files() {
        let tar_bytes = bundle(&spec(), Rights::Capabilities);
        let mut a = tar::Archive::new(tar_bytes.as_slice());
        let mut seen = vec![];
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            if path.ends_with("boot.env") {
                assert!(s.contains("RUNNERX_BRIDGE=runnerx1\n"));
                assert!(s.contains("RUNNERX_CGROUP_NEST=0\n"));
                assert!(s.contains("RUNNERX_BINFMT=\"aarch64\"\n"), "{s}");
            }
            seen.push(path);
        }
        assert_eq!(
            &seen[..3],
            [
                "etc/runnerx/boot.sh",
                "etc/runnerx/boot.env",
                "etc/runnerx/daemon.json"
            ]
        );
        assert!(
            seen.contains(&"etc/buildkit/buildkitd.toml".to_string()),
            "{seen:?}"
        );
    }

    #[test]
    fn buildx_create_uses_rendered_config_host_network_and_pinned_image() {
        let platforms: Vec<_> = ["linux/amd64", "linux/arm64"]
            .iter()
            .map(|p| crate::settings::parse_platform(p).unwrap())
            .collect();
        let cmd =
            buildx_create_cmd("harbor.example.com/mirror/buildkit:v0.23.2", &platforms).join(" ");
        assert_eq!(
            cmd,
            "docker buildx create --name runnerx --driver docker-container --driver-opt network=host \
             --driver-opt image=harbor.example.com/mirror/buildkit:v0.23.2 \
             --buildkitd-config /etc/buildkit/buildkitd.toml --platform linux/amd64,linux/arm64 --use --bootstrap"
        );
    }

    #[test]
    fn exec_wrapper_never_puts_the_script_in_argv() {
        let cmd = exec_wrapper(1234, "tok");
        assert_eq!(cmd[4], "1234");
        assert!(cmd[2].contains("head -c"));
        assert!(cmd[2].contains("setsid"));
    }
}
