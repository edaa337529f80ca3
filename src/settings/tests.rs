//! Unit tests of settings: raw → validated, allow-listed job overrides, errors.
use std::time::Duration;

use super::registry::mask_userinfo;
use super::*;

fn load(toml_text: &str, env: &[(&str, &str)]) -> Result<Settings> {
    Settings::parse(
        Some(toml_text),
        Some("/etc/runnerx/runnerx.toml".into()),
        &Env::from_pairs(env.iter().copied()),
    )
}

#[test]
fn a_wrong_choice_lists_the_valid_ones() {
    let e = load("[builder]\nisolation = \"chroot\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("builder.isolation (in /etc/runnerx/runnerx.toml)"),
        "{e}"
    );
    assert!(e.contains("use rootless, privileged or auto"), "{e}");
    let e = load(
        "[builder]\ndriver = \"kubernetes\"\n",
        &[("RUNNERX_BUILDER_DRIVER", "k8s")],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("(from RUNNERX_BUILDER_DRIVER)"), "{e}");
    assert!(
        e.contains("\"k8s\" is not valid; use docker or docker-container"),
        "{e}"
    );
}

#[test]
fn every_choice_lists_its_valid_values_from_file_and_env() {
    let choices = [
        ("builder", "pull_policy", "always, if-not-present or never"),
        ("builder", "isolation", "rootless, privileged or auto"),
        ("builder", "publish_ports", "none or all"),
        ("builder", "privileged", "auto, always or never"),
        ("builder", "driver", "docker or docker-container"),
        ("binfmt", "mode", "auto, builtin, image or none"),
        ("cache", "mode", "none or per-project"),
    ];
    for (section, key, valid) in choices {
        let e = load(&format!("[{section}]\n{key} = \"bogus\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("{section}.{key} (in /etc/runnerx/runnerx.toml) = \"bogus\" is not valid; use {valid}")),
            "{e}"
        );
        let var = format!("RUNNERX_{}_{}", section.to_uppercase(), key.to_uppercase());
        let e = load("", &[(var.as_str(), "bogus")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "{section}.{key} (from {var}) = \"bogus\" is not valid; use {valid}"
            )),
            "{e}"
        );
    }
    // A boolean is not a choice (it once slipped through as "true"/"false").
    let e = load("[builder]\nprivileged = true\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("builder.privileged"), "{e}");
}

#[test]
fn every_section_key_can_come_from_the_environment() {
    let s = load(
        "[cache]\nslots = 2\n",
        &[
            ("RUNNERX_CACHE_SLOTS", "3"),
            ("RUNNERX_CACHE_MAX_AGE", "2d"),
            ("RUNNERX_BUILDER_HOST_LOOPBACK", "true"),
            ("RUNNERX_BUILDER_CPUS", "1.5"),
            ("RUNNERX_BINFMT_MODE", "none"),
            // Not a setting: warned about and ignored, like any other variable.
            ("RUNNERX_BUILDER_REPO", "x"),
        ],
    )
    .unwrap();
    assert_eq!(s.cache.slots, 3);
    assert_eq!(s.cache.max_age, Duration::from_secs(2 * 86_400));
    assert!(s.builder.host_loopback);
    assert_eq!(s.builder.limits.cpus, Some(1.5));
    assert_eq!(s.binfmt.mode, BinfmtMode::None);
    let e = load("", &[("RUNNERX_CACHE_SLOTS", "0")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cache.slots (from RUNNERX_CACHE_SLOTS)"), "{e}");
    let e = load("", &[("RUNNERX_BUILDER_HOST_LOOPBACK", "yes")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("RUNNERX_BUILDER_HOST_LOOPBACK"), "{e}");
}

#[test]
fn per_project_credentials_pick_the_first_matching_entry() {
    let text = "[[registries]]\nhost = \"harbor.example.com\"\n\
        [[registries.credentials]]\nprojects = [\"team-a/*\", \"platform/base-images\"]\nusername = \"robot$team-a+ci\"\npassword_env = \"PW_A\"\n\
        [[registries.credentials]]\nproject_ids = [77]\nprojects = [\"team-b/**\"]\nusername = \"robot$team-b+ci\"\npassword_env = \"PW_B\"\n";
    let s = load(text, &[("PW_A", "a"), ("PW_B", "b")]).unwrap();
    let r = &s.registries[0];
    let who = |id: Option<&str>, path: Option<&str>| Project {
        id: id.map(String::from),
        path: path.map(String::from),
    };
    let user = |p: Project| r.for_project(&p).credentials.map(|c| c.username);
    assert_eq!(
        user(who(None, Some("team-a/app"))).as_deref(),
        Some("robot$team-a+ci")
    );
    assert_eq!(
        user(who(None, Some("team-a/sub/app"))),
        None,
        "* stays in one segment"
    );
    assert_eq!(
        user(who(None, Some("platform/base-images"))).as_deref(),
        Some("robot$team-a+ci")
    );
    assert_eq!(
        user(who(None, Some("team-b/sub/app"))).as_deref(),
        Some("robot$team-b+ci")
    );
    assert_eq!(
        user(who(Some("77"), Some("other/app"))).as_deref(),
        Some("robot$team-b+ci")
    );
    assert_eq!(user(who(Some("78"), Some("other/app"))), None);
    assert_eq!(user(who(None, None)), None);
    assert!(
        !format!("{s:?}").contains("\"a\""),
        "Debug leaks a password"
    );

    let e = load(
        "[[registries]]\nhost = \"h\"\nusername = \"u\"\npassword_env = \"PW_A\"\n[[registries.credentials]]\nprojects = [\"x/*\"]\nusername = \"v\"\npassword_env = \"PW_A\"\n",
        &[("PW_A", "a")],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("registries[0].username") && e.contains("projects = [\"**\"]"),
        "{e}"
    );
    let e = load(
        "[[registries]]\nhost = \"h\"\n[[registries.credentials]]\nusername = \"v\"\npassword_env = \"PW_A\"\n",
        &[("PW_A", "a")],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("registries[0].credentials[0].projects"), "{e}");
    let e = load(
        "[[registries]]\nhost = \"h\"\n[[registries.credentials]]\nprojects = [\"x/*\"]\nusername = \"v\"\npassword_env = \"NOPE\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("registries[0].credentials[0].password_env") && e.contains("NOPE"),
        "{e}"
    );
}

#[test]
fn pull_policies_decide_once() {
    assert_eq!(PullPolicy::Always.wants_pull(true), Some(true));
    assert_eq!(PullPolicy::IfNotPresent.wants_pull(true), Some(false));
    assert_eq!(PullPolicy::IfNotPresent.wants_pull(false), Some(true));
    assert_eq!(PullPolicy::Never.wants_pull(true), Some(false));
    assert_eq!(PullPolicy::Never.wants_pull(false), None);
}

#[test]
fn helper_binary_must_be_a_file() {
    let e = load(
        "[builder]\nhelper_binary = \"/nonexistent/gitlab-runner\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("builder.helper_binary (in /etc/runnerx/runnerx.toml)")
            && e.contains("command -v gitlab-runner"),
        "{e}"
    );
    let s = load("[builder]\nhelper_binary = \"/bin/sh\"\n", &[]).unwrap();
    assert_eq!(
        s.builder.helper_binary.as_deref(),
        Some(Path::new("/bin/sh"))
    );
    assert_eq!(load("", &[]).unwrap().builder.helper_binary, None);
}

#[test]
fn toml_errors_name_the_key_and_the_fix() {
    let text = "[builder]\nimage = \"x\"\nhost_loopback = \"yes\"\n";
    let e = Settings::parse_toml(text, Path::new("/etc/runnerx/runnerx.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("runnerx.toml:3: builder.host_loopback:"), "{e}");
    assert!(e.contains("give it a value of that type"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    let e = Settings::parse_toml("[builder\n", Path::new("s.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("fix the TOML syntax"), "{e}");
}

#[test]
fn defaults_are_sane() {
    let s = load("", &[]).unwrap();
    assert_eq!(s.builder.image, "runnerx-builder:latest");
    assert_eq!(s.builder.pull_policy, PullPolicy::IfNotPresent);
    assert_eq!(s.builder.privileged, Privileged::Auto);
    assert_eq!(s.builder.platforms.len(), 2);
    assert_eq!(s.builder.platforms[1].to_string(), "linux/arm64");
    assert_eq!(s.builder.boot_timeout, Duration::from_secs(60));
}

#[test]
fn full_file_parses() {
    let s = load(
        r#"
[builder]
image = "registry.example.com/dind:28"
pull_policy = "never"
privileged = "never"
extra_hosts = ["harbor.example.com:10.0.0.5"]
platforms = ["linux/amd64", "linux/arm/v7"]
boot_timeout = "2m"
subnet_pool = "10.50.0.0/20"
"#,
        &[],
    )
    .unwrap();
    assert_eq!(s.builder.pull_policy, PullPolicy::Never);
    assert_eq!(s.builder.privileged, Privileged::Never);
    assert_eq!(s.builder.platforms[1].variant.as_deref(), Some("v7"));
    assert_eq!(s.builder.boot_timeout, Duration::from_secs(120));
    assert_eq!(s.builder.subnet_pool.prefix_len(), 20);
}

#[test]
fn env_overrides_the_file() {
    let s = load(
        "[builder]\npull_policy = \"always\"\n",
        &[
            ("RUNNERX_BUILDER_PULL_POLICY", "never"),
            ("RUNNERX_BUILDER_PLATFORMS", "linux/amd64,linux/s390x"),
        ],
    )
    .unwrap();
    assert_eq!(s.builder.pull_policy, PullPolicy::Never);
    assert_eq!(s.builder.platforms[1].arch, "s390x");
}

#[test]
fn bad_values_name_key_origin_and_fix() {
    let e = load("[builder]\npull_policy = \"sometimes\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("builder.pull_policy"), "{e}");
    assert!(e.contains("/etc/runnerx/runnerx.toml"), "{e}");
    assert!(e.contains("if-not-present"), "{e}");

    let e = load("", &[("RUNNERX_BUILDER_PRIVILEGED", "maybe")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("RUNNERX_BUILDER_PRIVILEGED"), "{e}");

    let e = load("[builder]\nplatforms = [\"linux/sparc\"]\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown architecture \"sparc\""), "{e}");

    let e = load("[builder]\nextra_hosts = [\"harbor\"]\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("hostname:ip"), "{e}");

    let e = load("[builder]\nboot_timeout = \"soon\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("builder.boot_timeout"), "{e}");

    let e = load("[builder]\nsubnet_pool = \"10.213.0.0/25\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("/23 or shorter"), "{e}");
}

#[test]
fn typos_and_syntax_errors_are_one_line_with_position() {
    let e = load("[builder]\nimagee = \"x\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `imagee`"), "{e}");
    assert!(e.contains("runnerx.toml:2"), "{e}");
    assert!(!e.contains('\n'), "{e}");

    let e = load("[builder\n", &[]).unwrap_err().to_string();
    assert!(
        e.starts_with("settings: /etc/runnerx/runnerx.toml:1"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn proxy_credentials_never_reach_debug_output() {
    let s = load(
        "[proxy]\nhttps_proxy = \"http://alice:s3cret@proxy:3128\"\n",
        &[],
    )
    .unwrap();
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("alice"),
        "{shown}"
    );
    assert!(shown.contains("http://***@proxy:3128"), "{shown}");
    assert_eq!(mask_userinfo("http://proxy:3128"), "http://proxy:3128");
}

#[test]
fn cache_settings() {
    let s = load("", &[]).unwrap();
    assert_eq!(s.cache.mode, CacheMode::None);
    let s = load(
        "[cache]\nmode = \"per-project\"\nslots = 2\nmax_age = \"2d\"\nmax_size = \"1.5GiB\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(s.cache.mode, CacheMode::PerProject);
    assert_eq!(s.cache.slots, 2);
    assert_eq!(s.cache.max_size, 1_610_612_736);
    let e = load("[cache]\nmax_size = \"lots\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cache.max_size"), "{e}");
    let e = load("", &[("RUNNERX_CACHE_MODE", "global")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("RUNNERX_CACHE_MODE"), "{e}");
    assert_eq!(values::size("500MB").unwrap(), 500_000_000);
}

#[test]
fn binfmt_and_driver_settings() {
    let s = load("", &[]).unwrap();
    assert_eq!(s.binfmt.mode, BinfmtMode::Auto);
    assert_eq!(s.builder.driver, Driver::Docker);
    let s = load(
        "[builder]\ndriver = \"docker-container\"\nbuildkit_image = \"harbor.example.com/mirror/buildkit:v0.23.2\"\n[binfmt]\nmode = \"image\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(s.builder.driver, Driver::DockerContainer);
    assert_eq!(s.binfmt.mode, BinfmtMode::Image);
    let e = load("[binfmt]\nimage = \"tonistiigi/binfmt:latest\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not pinned"), "{e}");
    let e = load("[binfmt]\nmode = \"qemu\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("binfmt.mode") && e.contains("builtin"), "{e}");
    let e = load("", &[("RUNNERX_BUILDER_DRIVER", "kubernetes")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("RUNNERX_BUILDER_DRIVER"), "{e}");
}

#[test]
fn registries_validate_and_read_secrets_from_runner_env() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let text = format!(
        "[[registries]]\nhost = \"harbor.example.com:8443\"\nca_file = \"{}\"\nusername = \"robot$ci\"\npassword_env = \"HARBOR_PW\"\nmirror_for = [\"docker.io\"]\n[proxy]\nhttps_proxy = \"http://proxy:3128\"\n",
        ca.display()
    );
    let s = load(&text, &[("HARBOR_PW", "s3cret")]).unwrap();
    let r = &s.registries[0];
    assert_eq!(r.host, "harbor.example.com:8443");
    assert_eq!(r.credentials.as_ref().unwrap().password.expose(), "s3cret");
    assert!(
        !format!("{s:?}").contains("s3cret"),
        "Debug leaks the password"
    );
    assert_eq!(s.proxy.https_proxy.as_deref(), Some("http://proxy:3128"));

    let e = load(&text, &[]).unwrap_err().to_string();
    assert!(
        e.contains("registries[0].password_env") && e.contains("HARBOR_PW"),
        "{e}"
    );
    let e = load("[[registries]]\nhost = \"https://harbor\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("has a scheme"), "{e}");
    let e = load(
        "[[registries]]\nhost = \"h\"\nca_file = \"/nonexistent/ca.crt\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("registries[0].ca_file") && e.contains("/nonexistent/ca.crt"),
        "{e}"
    );
    let e = load(
        "[[registries]]\nhost = \"h\"\ninsecure = true\nhttp = true\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("both true"), "{e}");
    let e = load("[[registries]]\nhost = \"h\"\nusername = \"u\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no password_env or password_file"), "{e}");
    let e = load("[proxy]\nhttp_proxy = \"proxy:3128\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("proxy.http_proxy"), "{e}");
}

#[test]
fn missing_explicit_file_is_an_error_missing_default_is_not() {
    let env = Env::from_pairs([("RUNNERX_CONFIG", "/nonexistent/runnerx.toml")]);
    let e = Settings::load(None, &env).unwrap_err().to_string();
    assert!(e.contains("RUNNERX_CONFIG"), "{e}");
    let e = Settings::load(Some(Path::new("/nonexistent/x.toml")), &Env::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--config"), "{e}");
}

#[test]
fn the_old_allowed_images_key_names_its_new_name_and_image_globs_are_checked() {
    let e = load("[builder]\nallowed_images = [\"x:1\"]\n", &[]).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("builder.allowed_images") && m.contains("builder.builder_images"),
        "{m}"
    );
    let s = load(
        "[builder]\nbuilder_images = [\"reg.test/ci/builder:2\"]\nimages_in_builder = [\"reg.test/**/docker-tools:*\"]\n",
        &[],
    )
    .unwrap();
    assert_eq!(s.builder.builder_images, ["reg.test/ci/builder:2"]);
    assert_eq!(s.builder.images_in_builder, ["reg.test/**/docker-tools:*"]);
    let e = load("[builder]\nimages_in_builder = [\"a b\"]\n", &[]).unwrap_err();
    assert!(e.to_string().contains("images_in_builder"), "{e}");
}
