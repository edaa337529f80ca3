//! The egress policy (`runnerx host network`), tried from inside jobs against
//! addresses this test creates: a network namespace behind a veth pair (a link-local
//! address, as a cloud metadata service has, and an address the settings allow), an
//! address on a dummy link of the host itself, a listener on the host's loopback, and
//! a DNS resolver (dnsmasq) in the namespace on two link-local addresses, one of them
//! the host's configured resolver (as a cloud VPC resolver at 169.254.169.253 is).
//! No traffic goes anywhere else. The test loads and removes the policy itself, so no
//! other test's job runs meanwhile (`policy::exclusive`).

use std::process::{Child, Command, Stdio};

use crate::isolation::HOST_STATE;
use crate::support::{Job, assert_code, require_docker, text};

fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), all)
}

fn must(cmd: &str) {
    let (ok, out) = sh(cmd);
    assert!(ok, "{cmd}: {out}");
}

const LINK_LOCAL: &str = "169.254.77.2";
const ALLOWED: &str = "198.18.77.2";
const ON_HOST: &str = "198.19.77.1";
/// The resolver `runnerx host network` finds in the host's resolv.conf.
const RESOLVER: &str = "169.254.53.53";
/// What the test's resolver answers for [`DNS_NAME`].
const DNS_NAME: &str = "rx-dns.test";
const DNS_ANSWER: &str = "198.18.53.9";

/// What the test makes on the host, removed on drop.
struct Targets {
    tag: String,
    servers: Vec<Child>,
    loopback_port: u16,
}

fn http_server(netns: Option<&str>, bind: &str, port: u16) -> Child {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "python3"]);
            c
        }
        None => Command::new("python3"),
    };
    c.args(["-m", "http.server", "--bind", bind, &port.to_string()])
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

impl Targets {
    fn new(tag: &str) -> Targets {
        let (ns, host_end, ns_end, dummy) = (
            format!("rxe{tag}"),
            format!("rxe{tag}h"),
            format!("rxe{tag}n"),
            format!("rxe{tag}d"),
        );
        let mut t = Targets {
            tag: tag.to_string(),
            servers: vec![],
            loopback_port: crate::registry::free_port(),
        };
        // Routes a killed earlier run left would shadow ours.
        sh(&format!(
            "ip route del {LINK_LOCAL}/32; ip route del {ALLOWED}/32; ip route del {RESOLVER}/32"
        ));
        must(&format!(
            "ip netns add {ns} && ip link add {host_end} type veth peer name {ns_end} && \
             ip link set {ns_end} netns {ns} && ip link set {host_end} up && \
             ip -n {ns} link set lo up && ip -n {ns} link set {ns_end} up && \
             ip -n {ns} addr add {LINK_LOCAL}/32 dev {ns_end} && ip -n {ns} addr add {ALLOWED}/32 dev {ns_end} && \
             ip -n {ns} addr add {RESOLVER}/32 dev {ns_end} && \
             ip -n {ns} route add default dev {ns_end} && \
             ip route add {LINK_LOCAL}/32 dev {host_end} && ip route add {ALLOWED}/32 dev {host_end} && \
             ip route add {RESOLVER}/32 dev {host_end} && \
             ip link add {dummy} type veth peer name {dummy}p && ip addr add {ON_HOST}/32 dev {dummy} && ip link set {dummy} up"
        ));
        t.servers.push(http_server(Some(&ns), "0.0.0.0", 8080));
        // A real resolver on both link-local addresses: only the policy tells them apart.
        t.servers.push(
            Command::new("ip")
                .args(["netns", "exec", &ns, "dnsmasq", "--keep-in-foreground"])
                .args([
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    "--bind-interfaces",
                ])
                .arg(format!("--listen-address={RESOLVER}"))
                .arg(format!("--listen-address={LINK_LOCAL}"))
                .arg(format!("--address=/{DNS_NAME}/{DNS_ANSWER}"))
                .args(["--pid-file=", "--user=root", "--log-facility=/dev/null"])
                .stdout(Stdio::null())
                .spawn()
                .expect("dnsmasq (scripts/setup-host.sh --tests installs dnsmasq-base)"),
        );
        t.servers.push(http_server(None, ON_HOST, 8080));
        t.servers
            .push(http_server(None, "127.0.0.1", t.loopback_port));
        for url in [
            format!("http://{LINK_LOCAL}:8080/"),
            format!("http://{ALLOWED}:8080/"),
            format!("http://{ON_HOST}:8080/"),
            format!("http://127.0.0.1:{}/", t.loopback_port),
        ] {
            must(&format!(
                "for i in $(seq 50); do curl -s -o /dev/null -m 2 {url} && exit 0; sleep 0.1; done; exit 1"
            ));
        }
        t
    }

    /// A job script printing `<name> <http code>` for each target (000: no answer),
    /// and `<resolver> 200` when a resolver answered.
    fn probe(&self) -> String {
        let mut s = String::new();
        for (name, url) in [
            ("link-local", format!("http://{LINK_LOCAL}:8080/")),
            ("allowed", format!("http://{ALLOWED}:8080/")),
            ("host-address", format!("http://{ON_HOST}:8080/")),
            (
                "host-loopback",
                format!("http://10.0.2.2:{}/", self.loopback_port),
            ),
        ] {
            s.push_str(&format!(
                "echo \"{name} $(curl -s -o /dev/null -m 5 -w '%{{http_code}}' {url})\"\n"
            ));
        }
        // DNS: "200" when the resolver's answer came back.
        for (name, server) in [("resolver", RESOLVER), ("other-resolver", LINK_LOCAL)] {
            s.push_str(&format!(
                "a=$(timeout 4 busybox nslookup -type=a {DNS_NAME} {server} 2>&1 || :); case \"$a\" in *{DNS_ANSWER}*) echo '{name} 200' ;; *) echo '{name} none' ;; esac\n"
            ));
        }
        s
    }
}

impl Drop for Targets {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let tag = &self.tag;
        sh(&format!(
            "ip netns del rxe{tag}; ip link del rxe{tag}h; ip link del rxe{tag}d; \
             ip route del {LINK_LOCAL}/32; ip route del {ALLOWED}/32; ip route del {RESOLVER}/32"
        ));
    }
}

fn reached(stdout: &str, name: &str) -> bool {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} line in\n{stdout}"))
        == "200"
}

const POLICY: &str = "[network]\negress = \"policy\"\nallow = [\"198.18.77.2:8080\"]\n";

#[test]
fn the_egress_policy_keeps_jobs_from_the_host_and_link_local_but_not_from_what_is_named() {
    require_docker();
    let _host = HOST_STATE.lock().unwrap_or_else(|e| e.into_inner());
    let _policy = crate::policy::exclusive();
    let probe_job = Job::new().with_settings(POLICY);
    let tag = probe_job.id[probe_job.id.len() - 5..].to_string();
    assert_code(&probe_job.runnerx(&["host", "network", "--remove"]), 0);
    let targets = Targets::new(&tag);
    // The host's resolver, as `runnerx host network` reads it: resolv.conf in a mount
    // namespace of the install's own.
    let resolv = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(resolv.path(), format!("nameserver {RESOLVER}\n")).unwrap();
    let bind = format!(
        "mount --bind {} /etc/resolv.conf && exec \"$0\" \"$@\"",
        resolv.path().display()
    );
    let install =
        || probe_job.runnerx_via("unshare", &["-m", "sh", "-c", &bind], &["host", "network"]);

    // Without the policy, a job reaches every target (so what fails below is the policy)
    // and prepare of a job whose settings ask for it refuses, in one line.
    let out = probe_job.prepare();
    assert_code(&out, 2);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("run `runnerx host network`"), "{stderr}");
    // A rootless job under the operator's opt-out, kept for after the install.
    let mut open = Job::new()
        .with_settings(&POLICY.replace("\"policy\"", "\"open\""))
        .env("RUNNERX_BUILDER_ISOLATION", "rootless");
    let out = open.prepare();
    assert_code(&out, 0);
    // The operator's opt-out shows in the job's log, in one line.
    assert_eq!(
        text(&out)
            .1
            .lines()
            .filter(|l| l.contains("network.egress = \"open\""))
            .count(),
        1,
        "{}",
        text(&out).1
    );
    let out = open.run("build_script", &targets.probe());
    let (stdout, stderr) = text(&out);
    for name in [
        "link-local",
        "allowed",
        "host-address",
        "host-loopback",
        "resolver",
        "other-resolver",
    ] {
        assert!(
            reached(&stdout, name),
            "without the policy, {name}:\n{stdout}\n{stderr}"
        );
    }

    // Installed twice: the same table.
    assert_code(&install(), 0);
    let (ok, first) = sh("nft list table inet runnerx");
    assert!(ok, "{first}");
    assert!(first.contains(RESOLVER), "{first}");
    assert_code(&install(), 0);
    assert_eq!(sh("nft list table inet runnerx").1, first);

    // The job's own tools, then an inner container on the namespace's host network
    // with every privilege the inner dockerd gives.
    let script = format!(
        "{}\nmkdir -p ctx && cp /bin/busybox ctx/ && printf 'FROM scratch\\nCOPY busybox /bin/busybox\\n' > ctx/Dockerfile\n\
         docker build -q -t local/bb ctx >/dev/null\n\
         echo \"inner $(docker run --rm --privileged --net=host local/bb /bin/busybox wget -q -T 5 -O /dev/null http://{LINK_LOCAL}:8080/ 2>&1 && echo 200 || echo refused)\"\n",
        targets.probe()
    );
    let held = |isolation: &str, out: &std::process::Output| {
        assert_code(out, 0);
        let (stdout, stderr) = text(out);
        let why = format!("{isolation}:\n{stdout}\n{stderr}");
        assert!(!reached(&stdout, "link-local"), "{why}");
        assert!(!reached(&stdout, "host-address"), "{why}");
        assert!(!reached(&stdout, "inner"), "{why}");
        assert!(reached(&stdout, "allowed"), "{why}");
        // DNS to the host's resolver passes although it is link-local; any other
        // resolver there is just another link-local address.
        assert!(reached(&stdout, "resolver"), "{why}");
        assert!(!reached(&stdout, "other-resolver"), "{why}");
        assert!(
            reached(&stdout, "host-loopback"),
            "builder.host_loopback: {why}"
        );
    };
    // The policy holds from the moment it is loaded, for the rootless builder that
    // booted before it (its network helper carries the group whatever the settings
    // say: "open" only skips prepare's check) and for a privileged job prepared under
    // it. The two run at once: the guest of the VM tier runs this test alone.
    let mut privileged = Job::new()
        .with_settings(POLICY)
        .env("RUNNERX_BUILDER_ISOLATION", "privileged");
    let rootless_out = std::thread::scope(|scope| {
        let rootless = scope.spawn(|| open.run("build_script", &script));
        assert_code(&privileged.prepare(), 0);
        held("privileged", &privileged.run("build_script", &script));
        rootless.join().unwrap()
    });
    held("rootless, booted before the policy", &rootless_out);
    assert_code(&open.cleanup(), 0);
    assert_code(&privileged.cleanup(), 0);

    let (doctor, _) = text(&probe_job.runnerx(&["doctor"]));
    assert!(
        doctor.contains("ok    egress policy: loaded for these settings"),
        "{doctor}"
    );

    // Other settings: prepare names the fix; removal takes the table and the marker.
    let other = Job::new().with_settings(&POLICY.replace("198.18.77.2:8080", "198.18.77.3:8080"));
    let (_, stderr) = text(&other.prepare());
    assert!(stderr.contains("made for other settings"), "{stderr}");
    assert_code(&probe_job.runnerx(&["host", "network", "--remove"]), 0);
    assert!(
        !sh("nft list table inet runnerx").0,
        "the table outlived --remove"
    );
    assert_code(&probe_job.prepare(), 2);
    drop(targets);
}

#[test]
fn a_builder_image_without_the_network_group_fails_prepare_in_one_line() {
    require_docker();
    // The builder image with its user moved out of runnerx-net (gid 65530): its
    // network helper would not carry the group the host's policy matches.
    let image = "runnerx-builder:test-no-net-group";
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN sed -i 's/^rootless:x:1000:65530:/rootless:x:1000:1000:/' /etc/passwd\n",
            crate::support::BUILDER_IMAGE
        ),
    )
    .unwrap();
    let made = Command::new("docker")
        .args(["build", "-q", "-t", image])
        .arg(ctx.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    for egress in ["policy", "open"] {
        let mut job = Job::new().settings(&format!(
            "[builder]\nimage = \"{image}\"\npull_policy = \"never\"\nhost_loopback = true\n[network]\negress = \"{egress}\"\n"
        ));
        let out = job.prepare();
        assert_code(&out, 2);
        let (_, stderr) = text(&out);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.contains("runnerx-net (gid 65530)") && last.contains("image contract"),
            "egress = {egress}:\n{stderr}"
        );
        job.cleanup_leaves_nothing();
    }
    let _ = Command::new("docker").args(["rmi", "-f", image]).output();
}
