//! Unit tests of the builder spec: container bodies per isolation, daemon.json, the boot bundle.
use super::*;

fn pool() -> Ipv4Net {
    "10.213.0.0/16".parse().unwrap()
}

fn spec() -> BuilderSpec {
    BuilderSpec {
        job_id: "42".into(),
        name: "runnerx-42".into(),
        image: "runnerx-builder:local".into(),
        host_loopback: false,
        publish_on_host: false,
        build_cache: None,
        extra_hosts: vec!["registry.test:127.0.0.1".into()],
        created: 1_700_000_000,
        registries: vec![],
        proxy: Proxy::default(),
        binfmt: vec!["aarch64".into()],
        data_root: DataRoot::Job(volume_name("42")),
        inner_net: InnerNet::of(pool()),
        limits: Limits {
            memory: 8 << 30,
            cpus: Some(1.5),
            pids: 16384,
        },
        lease: Some("77:1234".into()),
        helper: None,
        runnerx: None,
        cache_dir: None,
        dind_aliases: vec![],
        platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
        gc_keep_storage: None,
        apparmor: "apparmor=unconfined".into(),
    }
}

#[test]
fn rootless_socket_belongs_to_the_rootless_uid() {
    assert_eq!(
        ROOTLESS_DOCKER_HOST,
        format!("unix:///run/user/{ROOTLESS_UID}/docker.sock")
    );
}

#[test]
fn inner_networks_are_the_first_two_24s_of_the_pool() {
    let a = InnerNet::of(pool());
    assert_eq!(a.bip, "10.213.0.1/24");
    assert_eq!(a.pool_base, "10.213.1.0/24");
    let small = InnerNet::of("192.168.8.0/23".parse().unwrap());
    assert_eq!(small.bip, "192.168.8.1/24");
    assert_eq!(small.pool_base, "192.168.9.0/24");
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
    assert!(v["Labels"].get("runnerx.bridge").is_none());
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
    let l = cache_labels("77", "runnerx-cache-p77-0", 1, "rootless");
    assert_eq!(l[LABEL_ISOLATION], "rootless");
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
fn boot_env_names_the_network_group_in_every_isolation() {
    let s = spec();
    for rights in [Rights::Rootless, Rights::Privileged] {
        assert!(boot_env(&s, rights).contains("RUNNERX_NET_GID=65530\n"));
    }
}

#[test]
fn the_rootless_id_map_names_the_job_users_group() {
    assert!(
        Rights::Rootless
            .id_map()
            .ends_with(&format!("-g{ROOTLESS_GID}"))
    );
    assert_eq!(gid_of(ROOTLESS_UID), ROOTLESS_GID);
    assert_eq!(gid_of(0), 0);
}

#[test]
fn privileged_daemon_json_uses_the_unix_socket_and_the_pool() {
    let v: serde_json::Value =
        serde_json::from_str(&daemon_json(&spec(), Rights::Privileged)).unwrap();
    assert_eq!(
        v["hosts"],
        serde_json::json!(["unix:///var/run/docker.sock"])
    );
    assert!(v.get("bridge").is_none());
    assert_eq!(v["bip"], "10.213.0.1/24");
    assert_eq!(v["default-address-pools"][0]["base"], "10.213.1.0/24");
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
            assert!(!s.contains("RUNNERX_BRIDGE"));
            assert!(!s.contains("RUNNERX_UID"));
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

fn rootless_spec() -> BuilderSpec {
    BuilderSpec {
        host_loopback: true,
        ..spec()
    }
}

#[test]
fn rootless_spec_adds_four_capabilities_and_its_own_seccomp_profile() {
    let v = serde_json::to_value(container_body(&rootless_spec(), Rights::Rootless)).unwrap();
    let h = &v["HostConfig"];
    assert_eq!(h["NetworkMode"], "host");
    assert!(h.get("Privileged").is_none());
    assert_eq!(h["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(
        h["CapAdd"],
        serde_json::json!(["CHOWN", "MKNOD", "SETUID", "SETGID"])
    );
    let opts: Vec<&str> = h["SecurityOpt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    let seccomp = opts
        .iter()
        .find_map(|o| o.strip_prefix("seccomp="))
        .expect("a seccomp profile");
    assert_ne!(seccomp, "unconfined");
    let profile: serde_json::Value = serde_json::from_str(seccomp).unwrap();
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    // No host cgroups, no devices, no bridge.
    assert!(h.get("DeviceCgroupRules").is_none());
    assert_eq!(h["Memory"], 8i64 << 30);
    assert_eq!(h["MemorySwap"], 8i64 << 30);
    assert_eq!(h["NanoCpus"], 1_500_000_000i64);
    assert_eq!(h["PidsLimit"], 16384);
    assert!(h.get("CgroupnsMode").is_none());
    // The data root and the host's /sys (read-write: privileged inner containers);
    // no host cgroup tree.
    let mounts = h["Mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert!(mounts.iter().any(|m| m["Target"] == HOST_SYSFS
        && m["ReadOnly"] == false
        && m["BindOptions"]["NonRecursive"] == true));
    assert!(
        !mounts
            .iter()
            .any(|m| m["Target"] == "/sys" || m["Target"] == "/sys/fs/cgroup")
    );
    assert!(v["Labels"].get("runnerx.bridge").is_none());
    assert_eq!(v["Labels"]["runnerx.isolation"], "rootless");
    assert_eq!(v["Labels"]["runnerx.lease"], "77:1234");
    assert_eq!(
        v["Env"],
        serde_json::json!(["DOCKER_HOST=unix:///run/user/1000/docker.sock"])
    );
}

#[test]
fn rootless_daemon_json_and_boot_files() {
    let v: serde_json::Value =
        serde_json::from_str(&daemon_json(&rootless_spec(), Rights::Rootless)).unwrap();
    assert_eq!(v["hosts"], serde_json::json!([ROOTLESS_DOCKER_HOST]));
    assert_eq!(v["data-root"], "/var/lib/docker");
    assert_eq!(v["bip"], "10.213.0.1/24");
    assert!(v.get("bridge").is_none());
    let env = boot_env(&rootless_spec(), Rights::Rootless);
    assert!(env.contains("RUNNERX_UID=1000\n"), "{env}");
    assert!(env.contains("RUNNERX_HOST_LOOPBACK=1\n"), "{env}");
    assert!(!env.contains("BRIDGE"), "{env}");
    let tar_bytes = bundle(&rootless_spec(), Rights::Rootless);
    let mut a = tar::Archive::new(tar_bytes.as_slice());
    let mut boot = String::new();
    let mut paths = vec![];
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        if path == "etc/runnerx/boot.sh" {
            std::io::Read::read_to_string(&mut e, &mut boot).unwrap();
        }
        paths.push(path);
    }
    assert!(
        boot.contains("rootlesskit"),
        "rootless boot script expected"
    );
    assert!(paths.contains(&"etc/runnerx/ns-init.sh".to_string()));
    assert!(paths.contains(&"etc/runnerx/exec.sh".to_string()));
}

#[test]
fn files_in_the_users_home_belong_to_the_user() {
    let tar_bytes = tar_owned(
        &[
            ("etc/x", b"a", 0o644),
            ("home/u/.docker/config.json", b"{}", 0o600),
            ("home/u/.config/docker/certs.d/r:1/ca.crt", b"c", 0o644),
        ],
        Some(("home/u", (1000, 65530))),
    );
    let mut a = tar::Archive::new(tar_bytes.as_slice());
    let got: Vec<(String, u64)> = a
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path()
                    .unwrap()
                    .display()
                    .to_string()
                    .trim_end_matches('/')
                    .to_string(),
                e.header().uid().unwrap(),
            )
        })
        .collect();
    let owner = |p: &str| got.iter().find(|(q, _)| q == p).map(|(_, u)| *u);
    assert_eq!(owner("etc/x"), Some(0));
    assert_eq!(owner("home/u/.docker"), Some(1000));
    assert_eq!(owner("home/u/.docker/config.json"), Some(1000));
    assert_eq!(owner("home/u/.config/docker/certs.d/r:1"), Some(1000));
    assert_eq!(
        owner("home/u/.config/docker/certs.d/r:1/ca.crt"),
        Some(1000)
    );
    assert_eq!(owner("home/u"), None, "the home itself is the image's");
}
