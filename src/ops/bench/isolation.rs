//! `runnerx bench`, isolation side by side: the same figures for rootless and
//! privileged builders (prepare, 8 prepares at once, a 200 MB layer pushed and
//! pulled), so the cost of isolation is a number. Measurements, not tests.

use std::path::Path;
use std::time::{Duration, Instant};

use super::measure::{measure, median, ms, prepare};
use crate::error::{Error, Result};

/// Prints the side-by-side figures; `push_to` (a repository in a configured
/// registry) enables the layer push/pull figure.
pub(crate) fn isolation_figures(
    me: &Path,
    runs: usize,
    tag: &str,
    push_to: Option<&str>,
) -> Result<()> {
    println!("isolation side by side       rootless | privileged");
    let mut rows: Vec<(String, Vec<String>)> = vec![
        ("prepare (median)".into(), vec![]),
        ("8 prepares at once (last ready)".into(), vec![]),
        ("200 MB layer push / pull".into(), vec![]),
    ];
    for iso in ["rootless", "privileged"] {
        let env = [("RUNNERX_BUILDER_ISOLATION", iso)];
        let mut prep = vec![];
        for i in 0..runs {
            let id = format!("bench-{tag}-{iso}-{i}");
            let m = prepare(me, &id, &env);
            let _ = measure(me, &["cleanup", "--job-id", &id], &env)?;
            prep.push(m?.wall);
        }
        rows[0].1.push(ms(median(prep)));

        let start = Instant::now();
        let ids: Vec<String> = (0..8).map(|i| format!("bench-{tag}-{iso}-c{i}")).collect();
        let ok = std::thread::scope(|s| {
            let hs: Vec<_> = ids
                .iter()
                .map(|id| s.spawn(move || measure(me, &["prepare", "--job-id", id], &env)))
                .collect();
            hs.into_iter().all(|h| {
                h.join()
                    .ok()
                    .and_then(|r| r.ok())
                    .is_some_and(|m| m.code == 0)
            })
        });
        let last = start.elapsed();
        std::thread::scope(|s| {
            for id in &ids {
                s.spawn(move || measure(me, &["cleanup", "--job-id", id], &env));
            }
        });
        rows[1].1.push(if ok { ms(last) } else { "failed".into() });

        rows[2].1.push(match push_to {
            Some(repo) => layer_push_pull(me, tag, iso, repo)?,
            None => "skipped (--push-to)".into(),
        });
    }
    for (what, cells) in rows {
        println!("  {what:<29} {}", cells.join(" | "));
    }
    Ok(())
}

fn layer_push_pull(me: &Path, tag: &str, iso: &str, repo: &str) -> Result<String> {
    let env = [("RUNNERX_BUILDER_ISOLATION", iso)];
    let id = format!("bench-{tag}-{iso}-layer");
    if let Err(e) = prepare(me, &id, &env) {
        let _ = measure(me, &["cleanup", "--job-id", &id], &env);
        return Ok(format!("failed: {e}"));
    }
    let image = format!("{repo}:layer-{tag}-{iso}");
    let script = std::env::temp_dir().join(format!("runnerx-bench-layer-{tag}"));
    let body = format!(
        "set -e; mkdir -p /tmp/l && cd /tmp/l\n\
         head -c 200000000 /dev/urandom > blob\n\
         printf 'FROM scratch\\nCOPY blob /blob\\n' > Dockerfile\n\
         docker build -q -t {image} . >/dev/null\n\
         s=$(date +%s%N); docker push -q {image} >/dev/null; e=$(date +%s%N); echo push_ms=$(( (e-s)/1000000 ))\n\
         docker rmi -f {image} >/dev/null; docker builder prune -af >/dev/null\n\
         s=$(date +%s%N); docker pull -q {image} >/dev/null; e=$(date +%s%N); echo pull_ms=$(( (e-s)/1000000 ))\n"
    );
    std::fs::write(&script, body).map_err(|e| Error::io("write", &script, e))?;
    let m = measure(
        me,
        &[
            "run",
            "--job-id",
            &id,
            script.to_str().unwrap_or_default(),
            "build_script",
        ],
        &env,
    )?;
    let _ = measure(me, &["cleanup", "--job-id", &id], &env)?;
    let _ = std::fs::remove_file(&script);
    let figure = |key: &str| {
        m.stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
            .map(|v| ms(Duration::from_millis(v)))
    };
    Ok(match (figure("push_ms="), figure("pull_ms=")) {
        (Some(p), Some(q)) => format!("{p} / {q}"),
        _ => format!("failed: {}", m.stderr.lines().last().unwrap_or("").trim()),
    })
}
