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

const BOTH: &str = "linux/amd64,linux/arm64";

/// How the builds of a figure run.
#[derive(Clone, Copy)]
struct How<'a> {
    /// `RUNNERX_PLATFORMS`.
    platforms: &'a str,
    /// `cache.mode`: `per-project` (kept volume) or `none` (a fresh builder each time).
    cache_mode: &'a str,
    /// Whether the registry build cache is used (else the job opts out).
    registry: bool,
}

/// The example build of the benchmark.
struct Example<'a> {
    me: &'a Path,
    args: &'a BenchArgs,
    base: &'a str,
    repo: &'a str,
    /// runnerx's peak RSS seen (KiB).
    rss: i64,
    /// How long signing each push took (when the settings give a signing key).
    signing: Vec<Duration>,
}

impl Example<'_> {
    /// One build: how long its build step took (the template prints it).
    fn build(&mut self, tag: &str, work: u64, how: How) -> Result<Duration> {
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
                &format!("RUNNERX_PLATFORMS={}", how.platforms),
                "--var",
                &format!("RUNNERX_BUILD_ARGS=BASE_IMAGE={} WORK={work}", self.base),
                "--var",
                if how.registry {
                    "RUNNERX_BUILD_CACHE=on"
                } else {
                    "RUNNERX_BUILD_CACHE=off"
                },
            ],
            &[("RUNNERX_CACHE_MODE", how.cache_mode)],
        )?;
        self.rss = self.rss.max(m.max_rss_kb);
        // "runnerx: signed REPO@DIGEST and attested its provenance (key …, N ms)"
        self.signing.extend(
            m.stderr
                .lines()
                .filter(|l| l.starts_with("runnerx: signed "))
                .filter_map(|l| {
                    l.rsplit(", ")
                        .next()?
                        .strip_suffix(" ms)")?
                        .parse::<u64>()
                        .ok()
                        .map(Duration::from_millis)
                }),
        );
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

    /// A cold and a warm build with the same WORK; their medians over `pairs` and the
    /// ratio; with `engine`, the local caches are dropped before each pair.
    async fn pairs(
        &mut self,
        pairs: usize,
        tag: &str,
        work: impl Fn(usize) -> u64,
        how: How<'_>,
        engine: Option<&Engine>,
    ) -> Result<(Duration, Duration, f64)> {
        let (mut cold, mut warm) = (vec![], vec![]);
        for i in 0..pairs {
            if let Some(engine) = engine {
                drop_local_caches(engine, &self.args.example).await?;
            }
            cold.push(self.build(&format!("bench-{tag}-{i}-0"), work(i), how)?);
            warm.push(self.build(&format!("bench-{tag}-{i}-1"), work(i), how)?);
        }
        let (c, w) = (median(cold), median(warm));
        Ok((c, w, w.as_secs_f64() / c.as_secs_f64().max(1e-9)))
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
    let (Some(base), Some(repo)) = (&args.base_image, &args.push_to) else {
        println!(
            "example build                skipped: pass --base-image and --push-to (scripts/bench.sh does)"
        );
        return Ok(0);
    };
    let mut ex = Example {
        me,
        args,
        base,
        repo,
        rss: 0,
        signing: vec![],
    };
    let pairs = runs.min(3);
    // The per-project cache: the same host's kept volume, dropped before each pair.
    let how = How {
        platforms: BOTH,
        cache_mode: "per-project",
        registry: false,
    };
    let (c, w, ratio) = ex
        .pairs(pairs, tag, |_| args.work, how, Some(engine))
        .await?;
    drop_local_caches(engine, &args.example).await?;
    println!(
        "example build (amd64+arm64)  first {}  second {}  ratio {ratio:.2}  (per-project cache, same host; target ≤ 0.20: {}; WORK={}, {pairs} pairs)",
        ms(c),
        ms(w),
        check(ratio <= 0.2),
        args.work
    );
    // The registry cache: every build in a fresh builder (no local cache); a WORK of
    // its own per pair, so the first build of a pair finds no cache anywhere.
    for (label, platforms, offset) in [("amd64+arm64", BOTH, 1), ("amd64", "linux/amd64", 101)] {
        let how = How {
            platforms,
            cache_mode: "none",
            registry: true,
        };
        let work = |i: usize| args.work + offset + i as u64;
        let (c, w, ratio) = ex
            .pairs(pairs, &format!("{tag}-r{offset}"), work, how, None)
            .await?;
        println!(
            "example build ({label:<11}) cold {}  fresh builder, registry cache {}  ratio {ratio:.2}  (target ≤ 0.30: {}; {pairs} pairs)",
            ms(c),
            ms(w),
            check(ratio <= 0.3),
        );
    }
    let n = ex.signing.len();
    if n > 0 {
        println!(
            "signing a push               median {}  (signature + provenance, pushed by digest; {n} pushes)",
            ms(median(ex.signing))
        );
    } else {
        println!(
            "signing a push               not measured: the settings give no signing_key_file"
        );
    }
    Ok(ex.rss)
}
