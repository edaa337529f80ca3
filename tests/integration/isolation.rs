//! Rootless isolation, checked from the host's side: what a hostile job tries, and
//! what the host looks like before and after a busy job.

use std::process::Command;
use std::sync::Mutex;

use crate::support::{Job, assert_code, require_docker, text};

/// Held by tests that look at (or, privileged, change) the host's network links,
/// iptables, mounts and binfmt handlers, so they never see each other's traffic.
pub(crate) static HOST_STATE: Mutex<()> = Mutex::new(());

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// binfmt_misc mounted on the host, so host-side checks see the host's handlers.
fn host_binfmt() -> String {
    sh(
        "[ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
        ls /proc/sys/fs/binfmt_misc | sort",
    )
}

/// The host state a job must not change: iptables (counters stripped), nftables, links,
/// mounts outside Docker's own container and volume mounts, binfmt handlers.
/// binfmt_misc is mounted before anything is read, so the first snapshot on a fresh
/// host already shows that mount.
fn host_state() -> Vec<(&'static str, String)> {
    let binfmt = host_binfmt();
    vec![
        (
            "iptables-save",
            sh("iptables-save | sed -e 's/\\[[0-9]*:[0-9]*\\]//' -e '/^#/d'"),
        ),
        (
            "ip link",
            sh("ip -o link show | sed 's/^[0-9]*: //' | sort"),
        ),
        (
            "mounts",
            sh(
                "cut -d' ' -f5 /proc/self/mountinfo | grep -v -e '^/var/lib/docker/' -e '^/run/docker/' | sort",
            ),
        ),
        ("binfmt_misc", binfmt),
        // -s: rules without their counters, which any host traffic moves.
        ("nft ruleset", sh("nft -s list ruleset 2>/dev/null")),
    ]
}

fn same_host_state(before: &[(&str, String)], after: &[(&str, String)], what: &str) {
    for ((name, b), (_, a)) in before.iter().zip(after) {
        assert_eq!(b, a, "{what} changed the host's {name}");
    }
}

#[test]
fn hostile_job_cannot_change_the_host() {
    require_docker();
    let _host = HOST_STATE.lock().unwrap_or_else(|e| e.into_inner());
    host_binfmt();
    let mut job = Job::new();
    assert_code(&job.prepare(), 0);
    let tag = &job.id[job.id.len() - 6..];
    let link = format!("rxprobe{tag}");
    let forward = sh("cat /proc/sys/net/ipv4/ip_forward").trim().to_string();
    let other = if forward == "1" { "0" } else { "1" };
    let core = sh("cat /proc/sys/kernel/core_pattern");
    // A host tunable in sysfs (rootless builders see the host's sysfs read-write so
    // privileged inner containers can start): root-owned, so only host root writes it.
    let thp = "/sys/kernel/mm/transparent_hugepage/enabled";
    let thp_before = sh(&format!("cat {thp}"));
    let thp_other = if thp_before.contains("[never]") {
        "always"
    } else {
        "never"
    };
    let cgroup_v1 = std::path::Path::new("/sys/fs/cgroup/memory").exists();
    let cgroup_dir = if cgroup_v1 {
        "/sys/fs/cgroup/memory"
    } else {
        "/sys/fs/cgroup"
    };
    // Each probe is tried as the job user in the builder, then as root of a
    // privileged inner container on the inner "host" network with the builder's root
    // filesystem and /sys mounted (the classic DinD escape).
    let probes = format!(
        "ip link add {link} type dummy\n\
         iptables -w -t nat -N RXPROBE{tag}\n\
         echo {other} > /proc/sys/net/ipv4/ip_forward\n\
         echo '|/bin/false rxprobe' > /proc/sys/kernel/core_pattern\n\
         mkdir {cgroup_dir}/rxprobe{tag}\n\
         mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc\n\
         echo ':rxprobe{tag}:E::rxprobe{tag}::/bin/true:' > /proc/sys/fs/binfmt_misc/register\n\
         echo {thp_other} > {thp}\n\
         echo {thp_other} > /run/runnerx-host-sysfs/kernel/mm/transparent_hugepage/enabled\n"
    );
    let as_job: String = probes
        .lines()
        .map(|l| format!("( {l} ) 2>&1 || echo \"denied: {}\"\n", l.replace('"', "'")))
        .collect();
    let image = "mkdir -p ctx && cp /bin/busybox ctx/ && printf 'FROM scratch\\nCOPY busybox /bin/busybox\\n' > ctx/Dockerfile\n\
                 docker build -q -t local/probe ctx\n";
    let inner = format!(
        "docker run --rm --privileged --net=host -v /:/host -v /sys:/sys local/probe /bin/busybox chroot /host bash -c {}\n",
        crate::support::shell_quote(
            &probes
                .lines()
                .map(|l| format!("( {l} ) || true"))
                .collect::<Vec<_>>()
                .join("; ")
        )
    );
    let out = job.run("build_script", &format!("{as_job}{image}{inner}"));
    let (stdout, stderr) = text(&out);

    // Restore anything that did change before asserting (never leave a change).
    let forward_after = sh("cat /proc/sys/net/ipv4/ip_forward").trim().to_string();
    if forward_after != forward {
        sh(&format!("echo {forward} > /proc/sys/net/ipv4/ip_forward"));
    }
    let core_after = sh("cat /proc/sys/kernel/core_pattern");
    if core_after != core {
        std::fs::write("/proc/sys/kernel/core_pattern", core.trim()).unwrap();
    }
    let thp_after = sh(&format!("cat {thp}"));
    if thp_after != thp_before {
        let was = thp_before
            .split_whitespace()
            .find(|w| w.starts_with('['))
            .map(|w| w.trim_matches(['[', ']']).to_string())
            .unwrap_or_default();
        sh(&format!("echo {was} > {thp}"));
    }
    let link_made = std::path::Path::new("/sys/class/net").join(&link).exists();
    sh(&format!("ip link del {link} 2>/dev/null"));
    let chain_made = sh("iptables-save -t nat").contains(&format!("RXPROBE{tag}"));
    sh(&format!(
        "iptables -w -t nat -X RXPROBE{tag} 2>/dev/null; rmdir {cgroup_dir}/rxprobe{tag} 2>/dev/null"
    ));
    let cgroup_made = std::path::Path::new(&format!("{cgroup_dir}/rxprobe{tag}")).exists();
    let binfmt_made =
        std::path::Path::new(&format!("/proc/sys/fs/binfmt_misc/rxprobe{tag}")).exists();
    if binfmt_made {
        let _ = std::fs::write(format!("/proc/sys/fs/binfmt_misc/rxprobe{tag}"), "-1");
    }

    // The inner container ran (so its probes were really tried).
    assert_code(&out, 0);
    assert!(stdout.contains("denied: ip link add"), "{stdout}\n{stderr}");
    assert!(!link_made, "a job created a host link");
    assert!(!chain_made, "a job wrote the host's iptables");
    assert_eq!(forward_after, forward, "a job wrote the host's ip_forward");
    assert_eq!(core_after, core, "a job wrote the host's core_pattern");
    assert!(!cgroup_made, "a job created a host cgroup");
    assert!(!binfmt_made, "a job registered a host binfmt handler");
    assert_eq!(thp_after, thp_before, "a job wrote a host sysfs tunable");
    assert_code(&job.cleanup(), 0);
}

#[test]
fn busy_rootless_job_leaves_the_host_exactly_as_it_was() {
    busy_job_leaves_the_host_exactly_as_it_was("rootless");
}

#[test]
fn busy_privileged_job_leaves_the_host_exactly_as_it_was() {
    busy_job_leaves_the_host_exactly_as_it_was("privileged");
}

fn busy_job_leaves_the_host_exactly_as_it_was(isolation: &str) {
    require_docker();
    let _host = HOST_STATE.lock().unwrap_or_else(|e| e.into_inner());
    if isolation == "privileged" {
        // A privileged builder shares the host's user namespace: it uses the host's
        // handlers and registers none (it used to leave qemu-aarch64 behind).
        crate::support::register_host_handlers();
    }
    let mut job = Job::new().with_settings(&format!("isolation = \"{isolation}\"\n"));
    // The egress policy is host state too: it stays as it is until the job is gone.
    job.hold_policy();
    let before = host_state();
    assert_code(&job.prepare(), 0);
    let tag = &job.id[job.id.len() - 4..];
    let port = 20000 + tag.parse::<u16>().unwrap() % 5000;
    // A real arm64 binary for the arm64 image (run under QEMU in the namespace).
    crate::multiarch::arm64_busybox_in(&job.builder());
    let out = job.run(
        "build_script",
        &format!(
            "mkdir -p ctx && cp /bin/busybox ctx/busybox-amd64 && cp /tmp/busybox-arm64 ctx/\n\
             printf 'FROM scratch\\nARG TARGETARCH\\nCOPY busybox-$TARGETARCH /bin/busybox\\nRUN [\"/bin/busybox\", \"mkdir\", \"/www\"]\\n' > ctx/Dockerfile\n\
             docker buildx build -q --platform linux/amd64,linux/arm64 -t local/busy:1 ctx\n\
             docker network create one && docker network create two\n\
             docker run --rm --network one local/busy:1 /bin/busybox true\n\
             docker run -d --name web -p {port}:8080 local/busy:1 /bin/busybox httpd -f -p 8080 -h /www\n\
             sleep 1; curl -s -o /dev/null -w 'published %{{http_code}}\\n' http://127.0.0.1:{port}/\n\
             docker run --rm --platform linux/arm64 local/busy:1 /bin/busybox uname -m"
        ),
    );
    let during = host_state();
    assert_code(&out, 0);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("published 404"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "aarch64"), "{stdout}");
    same_host_state(&before, &during, &format!("a running {isolation} job"));
    assert_code(&job.cleanup(), 0);
    same_host_state(
        &before,
        &host_state(),
        &format!("a {isolation} job and its cleanup"),
    );
}

#[test]
fn eight_concurrent_jobs_each_create_networks_and_publish_ports() {
    require_docker();
    for round in 0..3u16 {
        let started = std::time::Instant::now();
        let jobs: Vec<Job> = (0..8).map(|_| Job::new()).collect();
        let outs: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .iter()
                .enumerate()
                .map(|(i, j)| {
                    s.spawn(move || {
                        let p = j.prepare();
                        assert_code(&p, 0);
                        let port = 26000 + round * 10 + i as u16;
                        j.run(
                            "build_script",
                            &format!(
                                "mkdir -p ctx && cp /bin/busybox ctx/ && printf 'FROM scratch\\nCOPY busybox /bin/busybox\\n' > ctx/Dockerfile\n\
                                 docker build -q -t local/bb ctx\n\
                                 docker network create net{i}\n\
                                 docker run --rm --network net{i} local/bb /bin/busybox true\n\
                                 docker run -d -p {port}:8080 local/bb /bin/busybox httpd -f -p 8080 -h /\n\
                                 sleep 1; curl -s -o /dev/null -w 'published %{{http_code}}\\n' http://127.0.0.1:{port}/"
                            ),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for o in &outs {
            assert_code(o, 0);
            assert!(text(o).0.contains("published 404"), "{}", text(o).0);
        }
        // Cleanups run side by side too, as gitlab-runner's do.
        std::thread::scope(|s| {
            for mut j in jobs {
                s.spawn(move || assert_code(&j.cleanup(), 0));
            }
        });
        eprintln!("round {round}: 8 jobs in {:?}", started.elapsed());
    }
}

#[test]
fn a_job_reaches_the_hosts_loopback_only_with_host_loopback() {
    require_docker();
    // A service on the runner host's loopback (gitlab-runner's metrics, a local
    // registry, another job's tooling): jobs run in their builder's own network
    // namespace, where 127.0.0.1 is their own; the host is 10.0.2.2, and only with
    // builder.host_loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!(
        "for a in 127.0.0.1 10.0.2.2; do if timeout 3 bash -c \"exec 3<>/dev/tcp/$a/{port}\" 2>/dev/null; then echo \"reached $a\"; else echo \"not reached $a\"; fi; done"
    );
    let closed = Job::new().settings(&format!(
        "[builder]\nimage = \"{}\"\npull_policy = \"never\"\n",
        crate::support::BUILDER_IMAGE
    ));
    let open = Job::new();
    for (mut job, reach) in [(closed, false), (open, true)] {
        assert_code(&job.prepare(), 0);
        let out = job.run("build_script", &probe);
        assert_code(&out, 0);
        let stdout = text(&out).0;
        assert!(stdout.contains("not reached 127.0.0.1"), "{stdout}");
        let via_alias = if reach {
            "reached 10.0.2.2"
        } else {
            "not reached 10.0.2.2"
        };
        assert!(stdout.contains(via_alias), "{stdout}");
        job.cleanup_leaves_nothing();
    }
    drop(listener);
}

/// Whether something on the runner host accepts TCP on `port` (any address a
/// listener on 0.0.0.0 or 127.0.0.1 would take).
fn host_listens(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        std::time::Duration::from_secs(2),
    )
    .is_ok()
}

/// A job publishes a port: the job reaches it at its own 127.0.0.1, and by default
/// nothing listens on the runner host (other jobs and the network cannot reach it);
/// `builder.publish_ports = "all"` opens it on the host.
#[test]
fn published_ports_stay_in_the_job_unless_publish_ports_is_all() {
    require_docker();
    for (setting, on_host) in [("", false), ("publish_ports = \"all\"\n", true)] {
        let mut job = Job::new().with_settings(setting);
        assert_code(&job.prepare(), 0);
        let port = crate::registry::free_port();
        let out = job.run(
            "build_script",
            &format!(
                "mkdir -p ctx && cp /bin/busybox ctx/ && printf 'FROM scratch\\nCOPY busybox /bin/busybox\\n' > ctx/Dockerfile\n\
                 docker build -q -t local/web ctx >/dev/null\n\
                 docker run -d -p {port}:8080 local/web /bin/busybox httpd -f -p 8080 -h /\n\
                 for i in 1 2 3 4 5 6 7 8 9 10; do curl -s -o /dev/null -w 'published %{{http_code}}\\n' http://127.0.0.1:{port}/ && break; sleep 0.5; done"
            ),
        );
        assert_code(&out, 0);
        let (stdout, stderr) = text(&out);
        assert!(stdout.contains("published 404"), "{stdout}\n{stderr}");
        assert_eq!(
            host_listens(port),
            on_host,
            "with {setting:?}, the host {} port {port}",
            if on_host {
                "should listen on"
            } else {
                "listens on"
            }
        );
        assert_code(&job.cleanup(), 0);
    }
}
