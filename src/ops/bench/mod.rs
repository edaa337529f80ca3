//! `runnerx bench`: where the time goes on this host, against the real engine.
//!
//! Every figure is a median over `--runs` repetitions of the real binary, spawned the
//! way gitlab-runner spawns it: prepare to a ready builder (next to the inner
//! dockerd's own boot), one `run` of a trivial script vs plain `docker exec`, 100 MB of
//! job output through `run` vs `docker exec`, the example project built cold and then
//! warm with the per-project cache, and runnerx's peak RSS (from `wait4`, per child, so
//! docker CLI children never count). Targets are printed next to the figures; the
//! command does not fail on a miss — it is a measurement, not a test.

use std::path::Path;
use std::time::Duration;

use crate::builder::engine::Engine;
use crate::cli::BenchArgs;
use crate::error::{Error, Result};
use crate::settings::Settings;

mod build;
mod isolation;
mod measure;

use measure::{measure, median, ms, prepare};

/// Reads `inner dockerd ready (1.38s)` / `(840ms)` from prepare's log.
fn dockerd_boot(stderr: &str) -> Option<Duration> {
    let line = stderr
        .lines()
        .find(|l| l.contains("inner dockerd ready ("))?;
    let inner = line.rsplit_once('(')?.1.trim_end_matches(')');
    if let Some(v) = inner.strip_suffix("ms") {
        v.parse().ok().map(Duration::from_millis)
    } else {
        inner
            .strip_suffix('s')?
            .parse()
            .ok()
            .map(Duration::from_secs_f64)
    }
}

pub(super) fn check(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Runs the benchmark and prints the figures.
pub(crate) async fn bench(settings: &Settings, args: &BenchArgs) -> Result<()> {
    let me = std::env::current_exe().map_err(|e| Error::io("find", "runnerx", e))?;
    let docker = Path::new("docker");
    let runs = args.runs.max(1);
    let engine = Engine::connect().await?;
    println!(
        "runnerx bench: {runs} runs per figure; engine {}; builder image {}",
        engine.info().await?.version,
        settings.builder.image
    );
    let mut peak_rss = 0i64;
    let tag = crate::host::random_hex(3);

    // 1. prepare to a ready builder; keep the last one for the run figures.
    let (mut prep, mut boot, mut clean) = (vec![], vec![], vec![]);
    let keep = format!("bench-{tag}");
    for i in 0..runs {
        let id = if i + 1 == runs {
            keep.clone()
        } else {
            format!("bench-{tag}-{i}")
        };
        let m = prepare(&me, &id, &[])?;
        peak_rss = peak_rss.max(m.max_rss_kb);
        prep.push(m.wall);
        boot.extend(dockerd_boot(&m.stderr));
        if i + 1 != runs {
            let c = measure(&me, &["cleanup", "--job-id", &id], &[])?;
            peak_rss = peak_rss.max(c.max_rss_kb);
            clean.push(c.wall);
        }
    }
    let (p, b) = (median(prep), median(boot));
    println!(
        "prepare to a ready builder   median {}  (inner dockerd boot {}, runnerx's own share {})",
        ms(p),
        ms(b),
        ms(p.saturating_sub(b))
    );
    if !clean.is_empty() {
        println!("cleanup                      median {}", ms(median(clean)));
    }

    // 2. run overhead and 3. log throughput, against plain docker exec.
    let dir = std::env::temp_dir().join(format!("runnerx-bench-{tag}"));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let trivial = dir.join("trivial");
    let flood = dir.join("flood");
    std::fs::write(&trivial, "true\n").map_err(|e| Error::io("write", &trivial, e))?;
    std::fs::write(&flood, "head -c 104857600 /dev/zero\n")
        .map_err(|e| Error::io("write", &flood, e))?;
    let builder = format!("runnerx-{keep}");
    // Interleaved, so drift on the machine hits both sides alike.
    let (mut rx, mut dx) = (vec![], vec![]);
    for _ in 0..runs.max(10) * 2 {
        let m = measure(
            &me,
            &[
                "run",
                "--job-id",
                &keep,
                trivial.to_str().unwrap_or_default(),
                "build_script",
            ],
            &[],
        )?;
        peak_rss = peak_rss.max(m.max_rss_kb);
        rx.push(m.wall);
        dx.push(measure(docker, &["exec", &builder, "bash", "-c", "true"], &[])?.wall);
    }
    let (mut rt, mut dt, mut cpu) = (vec![], vec![], vec![]);
    for _ in 0..runs.max(5) * 2 {
        let m = measure(
            &me,
            &[
                "run",
                "--job-id",
                &keep,
                flood.to_str().unwrap_or_default(),
                "build_script",
            ],
            &[],
        )?;
        peak_rss = peak_rss.max(m.max_rss_kb);
        if m.stdout_bytes != 104_857_600 {
            return Err(Error::Bench(format!(
                "run delivered {} of 104857600 bytes",
                m.stdout_bytes
            )));
        }
        rt.push(m.wall);
        cpu.push(m.cpu);
        dt.push(
            measure(
                docker,
                &["exec", &builder, "head", "-c", "104857600", "/dev/zero"],
                &[],
            )?
            .wall,
        );
    }
    let _ = measure(&me, &["cleanup", "--job-id", &keep], &[])?;
    let _ = std::fs::remove_dir_all(&dir);
    let (r, d) = (median(rx), median(dx));
    let ratio = r.as_secs_f64() / d.as_secs_f64().max(1e-9);
    println!(
        "run of a trivial script      runnerx {}  docker exec {}  ratio {ratio:.2}  (target ≤ 1.10: {})",
        ms(r),
        ms(d),
        check(ratio <= 1.10)
    );
    let mbps = |t: Duration| 100.0 / t.as_secs_f64();
    let (rm, dm) = (mbps(median(rt)), mbps(median(dt)));
    println!(
        "100 MB of job output         runnerx {rm:.0} MB/s  docker exec {dm:.0} MB/s  (target ≥ docker exec: {}; runnerx CPU {} per 100 MB)",
        check(rm >= dm),
        ms(median(cpu))
    );

    // 4. the example project: per-project cache and registry cache.
    peak_rss = peak_rss.max(build::figures(&me, &engine, args, runs, &tag).await?);
    isolation::isolation_figures(&me, runs, &tag, args.push_to.as_deref())?;
    let rss_mb = peak_rss as f64 / 1024.0;
    println!(
        "runnerx peak RSS             {rss_mb:.1} MB  (target ≤ 20 MB: {})",
        check(rss_mb <= 20.0)
    );
    Ok(())
}

/// The cache key `runnerx local` uses is derived from the project directory's name.
pub(super) async fn drop_local_caches(engine: &Engine, example: &Path) -> Result<()> {
    let (_, name) = crate::ops::local::project_of(example, None)?;
    let project = crate::gitlab::job::local_project_key(&name);
    for v in engine
        .volumes_with_label(&format!(
            "{}={project}",
            crate::builder::LABEL_CACHE_PROJECT
        ))
        .await?
    {
        engine.remove_volume(&v.name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerd_boot_is_read_from_prepare_logs() {
        assert_eq!(
            dockerd_boot("runnerx: inner dockerd ready (1.38s)\n"),
            Some(Duration::from_millis(1380))
        );
        assert_eq!(
            dockerd_boot("runnerx: inner dockerd ready (840ms)\n"),
            Some(Duration::from_millis(840))
        );
        assert_eq!(dockerd_boot("nothing"), None);
        assert_eq!(
            median(vec![
                Duration::from_secs(3),
                Duration::from_secs(1),
                Duration::from_secs(2)
            ]),
            Duration::from_secs(2)
        );
    }
}
