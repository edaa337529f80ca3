//! The build figures of `runnerx bench`: the example project built through
//! `runnerx local` cold and warm, with the per-project layer cache (same host) and with
//! the registry build cache (a fresh builder, as on another runner host).

use std::path::Path;
use std::time::Duration;

use super::measure::{measure, median, ms};
use super::{check, drop_local_caches};
use crate::builder::engine::Engine;
use crate::cli::BenchArgs;
use crate::error::{Error, Result};

/// One example build: how long the build step took (the template prints it).
struct Example<'a> {
    me: &'a Path,
    args: &'a BenchArgs,
    base: &'a str,
    repo: &'a str,
}

impl Example<'_> {
    /// `registry`: whether the registry build cache is used (else the job opts out).
    fn build(
        &self,
        tag: &str,
        work: u64,
        platforms: &str,
        cache_mode: &str,
        registry: bool,
        rss: &mut i64,
    ) -> Result<Duration> {
        let m = measure(
            self.me,
            &[
                "local",
                "build",
                "-f",
                self.args.example.to_str().unwrap_or_default(),
                "--var",
                &format!("RUNNERX_IMAGE={}", self.repo),
                "--var",
                &format!("RUNNERX_TAGS={tag}"),
                "--var",
                &format!("RUNNERX_PLATFORMS={platforms}"),
                "--var",
                &format!("RUNNERX_BUILD_ARGS=BASE_IMAGE={} WORK={work}", self.base),
                "--var",
                if registry {
                    "RUNNERX_BUILD_CACHE=on"
                } else {
                    "RUNNERX_BUILD_CACHE=off"
                },
            ],
            &[("RUNNERX_CACHE_MODE", cache_mode)],
        )?;
        *rss = (*rss).max(m.max_rss_kb);
        m.stdout
            .lines()
            .find_map(|l| {
                l.split("(build took ")
                    .nth(1)?
                    .split(" ms")
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .map(Duration::from_millis)
            .ok_or_else(|| {
                Error::Bench(format!(
                    "the example build failed in the benchmark: {}",
                    m.stderr.lines().last().unwrap_or("")
                ))
            })
    }
}

/// Prints the build figures; returns runnerx's peak RSS seen (KiB).
pub(super) async fn figures(
    me: &Path,
    engine: &Engine,
    args: &BenchArgs,
    runs: usize,
    tag: &str,
) -> Result<i64> {
    let mut rss = 0;
    let (Some(base), Some(repo)) = (&args.base_image, &args.push_to) else {
        println!(
            "example build                skipped: pass --base-image and --push-to (scripts/bench.sh does)"
        );
        return Ok(rss);
    };
    let ex = Example {
        me,
        args,
        base,
        repo,
    };
    let pairs = runs.min(3);
    let both = "linux/amd64,linux/arm64";
    // The per-project cache: the same host's kept volume.
    let (mut cold, mut warm) = (vec![], vec![]);
    for i in 0..pairs {
        drop_local_caches(engine, &args.example).await?;
        cold.push(ex.build(
            &format!("bench-{tag}-{i}-0"),
            args.work,
            both,
            "per-project",
            false,
            &mut rss,
        )?);
        warm.push(ex.build(
            &format!("bench-{tag}-{i}-1"),
            args.work,
            both,
            "per-project",
            false,
            &mut rss,
        )?);
    }
    drop_local_caches(engine, &args.example).await?;
    let (c, w) = (median(cold), median(warm));
    let ratio = w.as_secs_f64() / c.as_secs_f64().max(1e-9);
    println!(
        "example build (amd64+arm64)  first {}  second {}  ratio {ratio:.2}  (per-project cache, same host; target ≤ 0.20: {}; WORK={}, {pairs} pairs)",
        ms(c),
        ms(w),
        check(ratio <= 0.2),
        args.work
    );
    // The registry cache: every build in a fresh builder (no local cache); a WORK of
    // its own per pair, so the first build of a pair finds no cache anywhere.
    for (label, platforms) in [("amd64+arm64", both), ("amd64", "linux/amd64")] {
        let (mut cold, mut warm) = (vec![], vec![]);
        for i in 0..pairs {
            let work = args.work + 1 + (i as u64) + if platforms == both { 0 } else { 100 };
            cold.push(ex.build(
                &format!("bench-{tag}-r{i}-0"),
                work,
                platforms,
                "none",
                true,
                &mut rss,
            )?);
            warm.push(ex.build(
                &format!("bench-{tag}-r{i}-1"),
                work,
                platforms,
                "none",
                true,
                &mut rss,
            )?);
        }
        let (c, w) = (median(cold), median(warm));
        let ratio = w.as_secs_f64() / c.as_secs_f64().max(1e-9);
        println!(
            "example build ({label:<11}) cold {}  fresh builder, registry cache {}  ratio {ratio:.2}  (target ≤ 0.30: {}; {pairs} pairs)",
            ms(c),
            ms(w),
            check(ratio <= 0.3),
        );
    }
    Ok(rss)
}
