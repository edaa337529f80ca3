//! Measuring one child process the way gitlab-runner spawns runnerx: wall and CPU
//! time, peak RSS from `wait4` (per child), exit code and output; medians.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// One measured child process.
pub(crate) struct Measured {
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
    pub(crate) max_rss_kb: i64,
    pub(crate) code: i32,
    pub(crate) stdout_bytes: u64,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Spawns, counts stdout bytes (keeping the first 64 KiB), and reaps with `wait4` to
/// read the child's own peak RSS.
pub(crate) fn measure(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Measured> {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("run", program, e))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let (mut n, mut keep, mut buf) = (0u64, Vec::new(), vec![0u8; 1 << 16]);
        while let Ok(k) = out.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k as u64;
            if keep.len() < 65_536 {
                keep.extend_from_slice(&buf[..k.min(65_536 - keep.len())]);
            }
        }
        (n, String::from_utf8_lossy(&keep).into_owned())
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let pid = i32::try_from(child.id()).unwrap_or(0);
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it for our own child `pid`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    let wall = start.elapsed();
    let (stdout_bytes, stdout) = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if reaped != pid {
        return Err(Error::Usage(format!(
            "failed to wait for {}",
            program.display()
        )));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    Ok(Measured {
        wall,
        cpu,
        max_rss_kb: usage.ru_maxrss,
        code,
        stdout_bytes,
        stdout,
        stderr,
    })
}

/// `runnerx prepare --job-id id`, measured; a failure is an error carrying its ERROR
/// line.
pub(crate) fn prepare(program: &Path, id: &str, env: &[(&str, &str)]) -> Result<Measured> {
    let m = measure(program, &["prepare", "--job-id", id], env)?;
    if m.code != 0 {
        return Err(Error::Bench(format!(
            "prepare failed in the benchmark: {}",
            m.stderr
                .lines()
                .rev()
                .find(|l| l.contains("ERROR"))
                .unwrap_or("see `runnerx prepare` output")
                .trim()
        )));
    }
    Ok(m)
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
