//! The egress policy every test job runs under, as on a runner host installed by the
//! README: `network.egress = "policy"` is the default, so a job's prepare needs the
//! policy for its settings loaded (`runnerx host network`, which the tests run as root).
//!
//! One host has one policy. Most tests' settings make the same one (loopback
//! registries add no rule of their own), so their jobs share it; a job whose settings
//! make another waits until no job of this process holds the loaded one, then loads
//! its own. A [`Lease`] is held from a job's prepare (or an earlier
//! [`crate::support::Job::hold_policy`]) until the job is dropped, so the table never
//! changes under a running job. A test that manages the table itself (network.rs)
//! takes [`exclusive`]; its own jobs then take no lease.

use std::cell::Cell;
use std::collections::HashMap;
use std::process::Output;
use std::sync::{Condvar, LazyLock, Mutex};
use std::thread::ThreadId;

#[derive(Default)]
struct State {
    /// The settings digest of the policy this process loaded ("" = none yet).
    digest: String,
    /// Leases on it, per thread that took them.
    holders: HashMap<ThreadId, usize>,
    /// Requests are served in order: the next ticket to hand out, and the one served.
    next: u64,
    serving: u64,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(Mutex::default);
static CHANGED: Condvar = Condvar::new();

thread_local! {
    /// This thread holds [`exclusive`]: its jobs take no lease.
    static EXCLUSIVE: Cell<bool> = const { Cell::new(false) };
}

/// With `RUNNERX_TEST_TIMELINE` naming a file, each lease appends a line: when it was
/// asked for, how long it waited and whether it loaded the policy (the VM tier prints
/// the file, to show where its time goes).
fn timeline(event: &str, asked: std::time::Instant) {
    static START: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);
    let Some(path) = std::env::var_os("RUNNERX_TEST_TIMELINE") else {
        return;
    };
    let at = asked.saturating_duration_since(*START).as_secs();
    let waited = asked.elapsed().as_secs();
    let name = std::thread::current().name().unwrap_or("?").to_string();
    let line = format!("+{at}s waited {waited}s {event}: {name}\n");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write;
        let _ = f.write_all(line.as_bytes());
    }
}

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the loaded policy from changing while held.
#[derive(Debug)]
pub(crate) struct Lease {
    holder: Option<ThreadId>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(t) = self.holder else { return };
        timeline("released", std::time::Instant::now());
        let mut s = state();
        if let Some(n) = s.holders.get_mut(&t) {
            *n -= 1;
            if *n == 0 {
                s.holders.remove(&t);
            }
        }
        CHANGED.notify_all();
    }
}

/// The settings digest `runnerx host network --dry-run` prints for a job's settings.
fn digest_of(dry_run: &Output) -> String {
    let text = String::from_utf8_lossy(&dry_run.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("# settings digest: "))
        .unwrap_or_else(|| {
            panic!(
                "runnerx host network --dry-run printed no digest:\n{text}\n{}",
                String::from_utf8_lossy(&dry_run.stderr)
            )
        })
        .trim()
        .to_string()
}

/// A lease on the policy for the settings `runnerx` (a job's own invocation of the
/// binary, with its settings and environment) reads, loading it when no job holds
/// another. Requests are served in order; a thread that already holds a lease on the
/// same policy (a test with two jobs alive) is served at once.
pub(crate) fn lease(runnerx: impl Fn(&[&str]) -> Output) -> Lease {
    if EXCLUSIVE.get() {
        return Lease { holder: None };
    }
    let me = std::thread::current().id();
    let dry_run = runnerx(&["host", "network", "--dry-run"]);
    if !dry_run.status.success() {
        // Settings runnerx refuses: the command under test fails before any policy.
        return Lease { holder: None };
    }
    let want = digest_of(&dry_run);
    let asked = std::time::Instant::now();
    let mut s = state();
    if s.holders.contains_key(&me) {
        assert_eq!(
            s.digest, want,
            "a test holds jobs whose settings make two egress policies at once; give them the same [network], registries and builder.host_loopback"
        );
    } else {
        let ticket = s.next;
        s.next += 1;
        while s.serving != ticket || !(s.digest == want || s.holders.is_empty()) {
            s = CHANGED.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.digest != want {
            let out = runnerx(&["host", "network"]);
            if !out.status.success() {
                // Let the next request in before failing this test.
                s.serving += 1;
                s.digest.clear();
                CHANGED.notify_all();
                drop(s);
                panic!(
                    "runnerx host network (the tests run as root):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            timeline(&format!("loaded {}", &want[..12.min(want.len())]), asked);
            s.digest = want;
        } else {
            timeline(&format!("shared {}", &want[..12.min(want.len())]), asked);
        }
        s.serving += 1;
    }
    *s.holders.entry(me).or_default() += 1;
    CHANGED.notify_all();
    Lease { holder: Some(me) }
}

/// For a test that loads and removes the policy itself: waits its turn until no job
/// holds the loaded policy, and keeps every other job waiting until dropped.
/// Afterwards the next job loads its own policy again.
pub(crate) struct Exclusive {
    _lease: Lease,
}

pub(crate) fn exclusive() -> Exclusive {
    let me = std::thread::current().id();
    let asked = std::time::Instant::now();
    let mut s = state();
    let ticket = s.next;
    s.next += 1;
    while s.serving != ticket || !s.holders.is_empty() {
        s = CHANGED.wait(s).unwrap_or_else(|e| e.into_inner());
    }
    s.serving += 1;
    s.digest = "(managed by a test)".into();
    timeline("exclusive", asked);
    *s.holders.entry(me).or_default() += 1;
    EXCLUSIVE.set(true);
    Exclusive {
        _lease: Lease { holder: Some(me) },
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        EXCLUSIVE.set(false);
        state().digest.clear();
    }
}
