//! Protocol-level behaviour that needs no Docker engine: config output, settings
//! errors (fast tier).

use crate::support::{Job, assert_code, text};

#[test]
fn config_prints_one_json_object_and_nothing_else() {
    let job = Job::new();
    let out = job.config();
    assert_code(&out, 0);
    let (stdout, _) = text(&out);
    assert_eq!(stdout.lines().count(), 1, "stdout: {stdout:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    assert!(v.is_object());
    assert_eq!(v["builds_dir"], "/builds");
    assert_eq!(v["cache_dir"], "/cache");
    assert_eq!(v["builds_dir_is_shared"], false);
    assert_eq!(v["hostname"], format!("runnerx-{}", job.id));
    assert_eq!(v["driver"]["name"], "runnerx");
    assert_eq!(v["shell"], "bash");
}

#[test]
fn config_stays_pure_json_with_debug_logging() {
    let job = Job::new().var("IGNORED", "x").env("RUNNERX_LOG", "debug");
    let out = job.runnerx(&["config"]);
    assert_code(&out, 0);
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("stdout is only JSON");
    // Debug logging really was on: its lines went to stderr.
    let (_, stderr) = text(&out);
    assert!(stderr.contains("debug: settings from"), "{stderr}");
}

#[test]
fn bad_settings_fail_as_system_failure_with_one_line() {
    let job = Job::new().settings("[builder]\npull_policy = \"sometimes\"\n");
    let out = job.prepare();
    assert_code(&out, 2);
    let (stdout, stderr) = text(&out);
    assert!(stdout.is_empty(), "{stdout}");
    let errors: Vec<_> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("builder.pull_policy"), "{stderr}");
    assert!(errors[0].contains("if-not-present"), "{stderr}");

    let job = Job::new().settings("[builder]\nimage = \"x\"\nunknown_key = 1\n");
    let out = job.config();
    assert_code(&out, 2);
    assert!(
        text(&out).1.contains("unknown field `unknown_key`"),
        "{}",
        text(&out).1
    );
}
