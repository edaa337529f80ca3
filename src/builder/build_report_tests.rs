//! The job wrapper's build report (`build-report.awk`) on BuildKit's plain progress as
//! real builds printed it (`fixtures/*.progress`, recorded through runnerx), and on
//! the shapes around them. Run with the host's awk (the builder's is the same mawk).

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

const REF: &str = "registry.test:5000/ci/cache:p7-main-afbd9f86a421";
const DEF: &str = "registry.test:5000/ci/cache:p7-main-afbd9f86a421";

/// The report for `progress`, with `placement` lines and the cache refs.
fn report(progress: &str, placement: &str, cache: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("progress");
    std::fs::write(&log, progress).unwrap();
    let place = dir.path().join("placement");
    std::fs::File::create(&place)
        .unwrap()
        .write_all(placement.as_bytes())
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/builder/build-report.awk");
    let out = Command::new("awk")
        .arg("-v")
        .arg(format!("placement={}", place.display()))
        .arg("-v")
        .arg(format!("ref={}", if cache { REF } else { "" }))
        .arg("-v")
        .arg(format!("def={}", if cache { DEF } else { "" }))
        .arg("-f")
        .arg(script)
        .arg(&log)
        .output()
        .expect("awk");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/builder/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (steps, cached) summed over the report's lines.
fn counts(report: &str) -> (u32, u32) {
    let mut total = (0, 0);
    for l in report.lines().filter(|l| l.contains(" cached, ")) {
        let (_, rest) = l.rsplit_once("steps ").unwrap();
        let (c, _) = rest.split_once(" cached").unwrap();
        let (s, c) = c.split_once(", ").unwrap();
        total.0 += s.parse::<u32>().unwrap();
        total.1 += c.parse::<u32>().unwrap();
    }
    total
}

#[test]
fn a_cold_build_reused_nothing_found_no_cache_and_wrote_one() {
    let r = report(&fixture("cold.progress"), "", true);
    assert_eq!(counts(&r), (2, 0), "{r}");
    assert!(
        r.contains(&format!(
            "registry cache: nothing read from {REF}: no cache there yet"
        )),
        "{r}"
    );
    assert!(
        r.contains(&format!("registry cache: written to {REF}")),
        "{r}"
    );
}

#[test]
fn a_step_taken_lazily_from_the_imported_cache_is_reused_without_cached() {
    // The shape that fooled the report: the RUN step printed no CACHED, only the
    // blobs of its layer (pulled from the registry cache for the export) and DONE 0.1s.
    let progress = fixture("pulled-from-cache.progress");
    assert!(!progress.contains("#7 CACHED"));
    let r = report(&progress, "", true);
    assert_eq!(counts(&r), (2, 2), "{r}");
    assert!(
        r.contains(&format!("registry cache: read {REF} (2 steps cached)")),
        "{r}"
    );
}

#[test]
fn steps_printed_cached_and_then_pulled_count_once_as_reused() {
    // BuildKit printed both steps CACHED, then the RUN step again with the blobs of
    // its layer, pulled from the imported cache when the image was exported.
    let r = report(&fixture("cached-then-pulled.progress"), "", true);
    assert_eq!(counts(&r), (2, 2), "{r}");
    assert!(
        r.contains(&format!("registry cache: read {REF} (2 steps cached)")),
        "{r}"
    );
}

#[test]
fn a_platform_that_ran_its_step_is_not_counted_as_reused() {
    // amd64 came from the cache; arm64 ran its RUN step (2.3 s) under QEMU on top of a
    // COPY layer pulled from the cache.
    let placement = "linux/amd64 this builder\nlinux/arm64 QEMU, this builder\n";
    let r = report(
        &fixture("two-platforms-one-cached.progress"),
        placement,
        true,
    );
    assert_eq!(counts(&r), (3, 2), "{r}");
    assert!(
        r.lines()
            .any(|l| l.contains("linux/arm64") && l.contains("QEMU, this builder")),
        "{r}"
    );
}

#[test]
fn without_a_registry_cache_only_the_steps_are_reported() {
    let r = report(&fixture("cold.progress"), "", false);
    assert_eq!(counts(&r), (2, 0), "{r}");
    assert!(!r.contains("registry cache"), "{r}");
}

/// The same shapes as a real build prints them, around the recorded ones: a FROM step
/// that pulls its base image, a step that ran with output, a failed step.
#[test]
fn pulling_a_base_image_or_running_a_step_is_not_reuse() {
    let progress = "\
#5 [linux/amd64 1/3] FROM registry.test:5000/base/busybox:1@sha256:0000000000000000000000000000000000000000000000000000000000000001
#5 resolve registry.test:5000/base/busybox:1@sha256:0000000000000000000000000000000000000000000000000000000000000001 0.0s done
#5 sha256:1111111111111111111111111111111111111111111111111111111111111111 1.05MB / 1.05MB 0.1s done
#5 extracting sha256:1111111111111111111111111111111111111111111111111111111111111111 0.1s done
#5 DONE 0.3s

#6 [linux/amd64 2/3] RUN echo hello
#6 0.215 hello
#6 DONE 0.3s

#7 [linux/amd64 3/3] RUN false
#7 ERROR: process \"/bin/sh -c false\" did not complete successfully: exit code: 1
";
    let r = report(progress, "", false);
    assert_eq!(counts(&r), (3, 0), "{r}");
}

#[test]
fn no_steps_no_report() {
    assert_eq!(
        report("#0 building with \"default\" instance\n", "", false),
        ""
    );
}
