use super::install::{Status, check_at, status_at};
use super::*;
use crate::settings::Settings;

fn settings(extra: &str) -> Settings {
    Settings::from_toml(&format!(
        "[builder]\nhost_loopback = false\n\n[[registries]]\nhost = \"harbor.example.com\"\n\n\
         [[registries]]\nhost = \"10.9.8.7:5000\"\nhttp = true\n\n\
         [proxy]\nhttps_proxy = \"http://user:pw@proxy.corp:3128/\"\n\n{extra}"
    ))
    .unwrap()
}

#[test]
fn inputs_name_registries_and_the_proxy_with_their_ports() {
    let i = inputs(&settings(""));
    let eps: Vec<(&str, &str, u16)> = i
        .endpoints
        .iter()
        .map(|(w, h, p)| (w.as_str(), h.as_str(), *p))
        .collect();
    assert_eq!(
        eps,
        [
            ("registries[0]", "harbor.example.com", 443),
            ("registries[1]", "10.9.8.7", 5000),
            ("proxy.https_proxy", "proxy.corp", 3128),
        ]
    );
    assert!(!i.host_loopback);
}

#[test]
fn the_digest_follows_what_the_policy_is_made_of() {
    let base = digest(&inputs(&settings("")));
    assert_eq!(base, digest(&inputs(&settings(""))));
    for other in [
        "[network]\nallow = [\"10.1.0.0/16\"]\n",
        "[network]\ndeny = [\"10.1.0.0/16\"]\n",
        "[network]\ndeny_private = true\n",
        "[[registries]]\nhost = \"other.example.com\"\n",
    ] {
        assert_ne!(base, digest(&inputs(&settings(other))), "{other}");
    }
    // Whether prepare insists on it is not part of the policy.
    assert_eq!(
        base,
        digest(&inputs(&settings("[network]\negress = \"policy\"\n")))
    );
}

#[test]
fn loopback_endpoints_add_nothing_host_loopback_decides_them() {
    // Two jobs' settings that differ only in where their loopback registry listens
    // make the same policy; a registry elsewhere does not.
    let with = |registry: &str| {
        digest(&inputs(
            &Settings::from_toml(&format!(
                "[builder]\nhost_loopback = true\nextra_hosts = [\"registry.test:127.0.0.1\", \"both.test:127.0.0.1\", \"both.test:192.0.2.5\"]\n\n\
                 [[registries]]\nhost = \"{registry}\"\n"
            ))
            .unwrap(),
        ))
    };
    let none = with("registry.test:5000");
    for same in ["registry.test:6000", "127.0.0.1:5000", "localhost:5000"] {
        assert_eq!(none, with(same), "{same}");
    }
    for other in ["both.test:5000", "harbor.example.com", "192.0.2.5:5000"] {
        assert_ne!(none, with(other), "{other}");
    }
}

fn resolved() -> Resolved {
    Resolved {
        allow_tcp: vec![("registries[0]".into(), "192.0.2.10".parse().unwrap(), 443)],
        deny_tcp: vec![("192.0.2.99".parse().unwrap(), 22)],
        nameservers: vec!["127.0.0.53".parse().unwrap()],
    }
}

#[test]
fn the_ruleset_allows_what_is_named_before_it_denies_the_host_and_link_local() {
    let i = inputs(&settings(
        "[network]\nallow = [\"203.0.113.0/24\"]\ndeny = [\"198.51.100.0/24\"]\ndeny_private = true\n",
    ));
    let rules = render(&i, &resolved(), "abc");
    let at = |needle: &str| {
        rules
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from\n{rules}"))
    };
    // Atomic replace of our own table only.
    assert!(rules.contains("table inet runnerx\ndelete table inet runnerx\ntable inet runnerx {"));
    assert!(rules.contains("# settings digest: abc"));
    let gid = at("meta skgid != 65530 return");
    let dns = at("ip daddr 127.0.0.53 meta l4proto { tcp, udp } th dport 53 accept");
    let registry = at("ip daddr 192.0.2.10 tcp dport 443 accept comment \"registries[0]\"");
    let allow = at("ip daddr 203.0.113.0/24 accept");
    let deny = at("ip daddr 198.51.100.0/24 reject");
    let deny_port = at("ip daddr 192.0.2.99 tcp dport 22 reject");
    let local = at("fib daddr type local reject");
    let metadata = at("ip daddr 169.254.0.0/16 reject");
    at("ip6 daddr fe80::/10 reject");
    at("ip6 daddr fd00:ec2::254 reject");
    let private = at("ip daddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 } reject");
    at("ip6 daddr fc00::/7 reject");
    assert!(gid < dns && dns < registry && registry < allow && allow < deny_port);
    assert!(deny_port < deny && deny < local && local < metadata && metadata < private);
    assert!(
        !rules.contains("127.0.0.0/8"),
        "host_loopback is off:\n{rules}"
    );
}

#[test]
fn host_loopback_opens_the_host_loopback_and_nothing_private_is_closed_by_default() {
    let on = Settings::from_toml("[builder]\nhost_loopback = true\n").unwrap();
    let rules = render(&inputs(&on), &Resolved::default(), "d");
    assert!(rules.contains("ip daddr 127.0.0.0/8 accept"), "{rules}");
    assert!(rules.contains("ip6 daddr ::1 accept"), "{rules}");
    assert!(!rules.contains("10.0.0.0/8"), "{rules}");
}

#[test]
fn nameservers_come_from_resolv_conf() {
    let text = "# comment\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nsearch corp\nnameserver bogus\n";
    let ns = nameservers(text);
    assert_eq!(
        ns,
        [
            "127.0.0.53".parse::<IpAddr>().unwrap(),
            "fe80::1".parse().unwrap()
        ]
    );
}

#[test]
fn prepare_needs_the_policy_for_these_settings_unless_the_operator_opts_out() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("network.digest");
    let open = settings("[network]\negress = \"open\"\n");
    let policy = settings("");
    assert!(check_at(&open, &marker).is_ok());
    let e = check_at(&policy, &marker).unwrap_err().to_string();
    assert!(e.contains("run `runnerx host network`"), "{e}");
    assert_eq!(status_at(&policy, &marker), Status::Missing);
    std::fs::write(&marker, "0123\n").unwrap();
    let e = check_at(&policy, &marker).unwrap_err().to_string();
    assert!(e.contains("made for other settings"), "{e}");
    std::fs::write(&marker, format!("{}\n", digest(&inputs(&policy)))).unwrap();
    assert!(check_at(&policy, &marker).is_ok());
    assert_eq!(status_at(&policy, &marker), Status::Current);
}
