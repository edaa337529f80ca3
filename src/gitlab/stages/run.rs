//! `run SCRIPT STAGE`: run one stage script inside the job's builder.
//!
//! Stages that carry the user's script (step_script, build_script, after_script,
//! step_*) run in the job's own image when prepare made a container of it
//! (`builder::job_image`); every other stage, and every stage of a job without one,
//! runs in the builder. The script goes in on
//! stdin and never touches the builder's filesystem (it holds the job token); output is
//! copied to our stdout/stderr chunk by chunk as it arrives, bytes untouched (ANSI and
//! `\r` kept). A non-zero script exit is the job's failure: its code goes to
//! `$BUILD_EXIT_CODE_FILE`. SIGTERM signals the script's process group in the builder
//! and returns within a few seconds.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bollard::container::LogOutput;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::builder;
use crate::builder::engine::{Engine, ExecStream};
use crate::error::{Error, Result};
use crate::gitlab::job::Job;
use crate::host::random_hex;
use crate::settings::Settings;

/// How long a cancelled script gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(2500);

/// Runs the stage; `settings` loads the settings when a push needs signing (most
/// stages never pay for that).
pub(crate) async fn run(
    job: &Job,
    engine: &Engine,
    script: &Path,
    stage: &str,
    cancel: &CancellationToken,
    settings: &dyn Fn() -> Result<Settings>,
) -> Result<()> {
    // The file is shared by all stages: a stale code from an earlier stage must not stick.
    if let Some(f) = &job.build_exit_code_file {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", f, e)),
        }
    }
    let bytes = std::fs::read(script).map_err(|e| Error::io("read stage script", script, e))?;
    let name = job.builder_name();
    // No inspect first: exec creation itself says "no such container" (404) or "not
    // running" (409), which the engine maps to NoBuilder / BuilderStopped.
    tracing::debug!("running stage {stage} ({} bytes) in {name}", bytes.len());
    let token = random_hex(8);
    let mut ex = engine
        .exec(
            &name,
            builder::exec_wrapper(
                bytes.len(),
                &token,
                builder::job_image::runs_in_job_image(stage),
            ),
            Some(&bytes),
        )
        .await?;
    let mut pushes = Pushes::default();
    tokio::select! {
        biased;
        () = cancel.cancelled() => {
            cancel_script(engine, &name, &token, &mut ex).await;
            return Err(Error::Cancelled("SIGTERM"));
        }
        r = forward(&mut ex, &mut pushes) => r?,
    }
    let code = engine.exec_exit_code(&ex.id).await?;
    // What the job pushed is in the registry whatever its exit code: sign it.
    if !pushes.claims.is_empty() {
        crate::sign::push::sign_claims(&settings()?, job, engine, &pushes.claims).await?;
    }
    if code == 0 {
        return Ok(());
    }
    // A script's own failure is the job's; a builder or inner dockerd that died under
    // it is ours (gitlab-runner then reports a system failure instead of blaming the
    // job). Checked only on failure: it costs an inspect and an exec.
    if let Some(what) = builder_fault(engine, &name).await {
        return Err(Error::BuilderDied {
            stage: stage.to_string(),
            code,
            what,
        });
    }
    if let Some(f) = &job.build_exit_code_file {
        std::fs::write(f, format!("{code}\n")).map_err(|e| Error::io("write", f, e))?;
    }
    Err(Error::Script { code })
}

/// What died under a failed stage, if anything: the builder container, or its inner
/// dockerd (socket no longer answering).
async fn builder_fault(engine: &Engine, name: &str) -> Option<String> {
    match engine.running(name).await {
        Ok(None) => return Some(format!("the builder {name} was removed")),
        Ok(Some(false)) => {
            return Some(format!(
                "the builder {name} stopped (its log: docker logs {name})"
            ));
        }
        Ok(Some(true)) => {}
        Err(e) => return Some(format!("the builder {name} cannot be inspected ({e})")),
    }
    match engine.exec_capture(name, builder::wait_ready_cmd(1)).await {
        Ok((0, _)) => None,
        _ => Some(format!(
            "the inner dockerd of {name} stopped answering (its log: docker logs {name})"
        )),
    }
}

/// The pushes a job's `docker` wrapper reported on stderr (`runnerx: pushed …`).
#[derive(Default)]
struct Pushes {
    /// The unfinished last line of stderr.
    partial: Vec<u8>,
    /// `(repository, digest)` claims.
    claims: BTreeSet<(String, String)>,
}

impl Pushes {
    /// Looks at a chunk of stderr; only lines of the wrapper's form count.
    fn scan(&mut self, chunk: &[u8]) {
        self.partial.extend_from_slice(chunk);
        let prefix = crate::sign::push::PUSHED.as_bytes();
        let mut start = 0;
        while let Some(len) = self.partial[start..].iter().position(|b| *b == b'\n') {
            let line = &self.partial[start..start + len];
            // Most stderr is build progress: only a line with the prefix is decoded.
            if line.starts_with(prefix)
                && let Some(c) = crate::sign::push::claim(&String::from_utf8_lossy(line))
            {
                self.claims.insert(c);
            }
            start += len + 1;
        }
        self.partial.drain(..start);
        // A claim line is short: a long unfinished line is none.
        if self.partial.len() > 4096 {
            self.partial.clear();
        }
    }
}

/// Copies the exec's output to our stdout/stderr until it ends: one `write` per chunk
/// straight to fd 1/2 (std's stdout is line-buffered, which would split a chunk into a
/// write plus a flush), so output stays unbuffered and nothing is reordered.
async fn forward(ex: &mut ExecStream, pushes: &mut Pushes) -> Result<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: fds 1 and 2 stay open for the life of the process; ManuallyDrop keeps
    // these handles from closing them.
    let mut out = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    let mut err = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(2) });
    while let Some(item) = ex.output.next().await {
        let chunk = item.map_err(|e| Error::docker("read script output", e))?;
        // Write errors are ignored: if gitlab-runner stopped reading, there is no one
        // to tell, and the script must still finish and report its exit code.
        let _ = match chunk {
            LogOutput::StdErr { message } => {
                pushes.scan(&message);
                err.write_all(&message)
            }
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                out.write_all(&message)
            }
            LogOutput::StdIn { .. } => Ok(()),
        };
    }
    Ok(())
}

/// SIGTERM to the script's process group, a short grace (output still forwarded),
/// then SIGKILL.
async fn cancel_script(engine: &Engine, name: &str, token: &str, ex: &mut ExecStream) {
    tracing::warn!("stopping the stage script in {name}");
    if let Err(e) = engine
        .exec_capture(name, builder::kill_cmd(token, "TERM"))
        .await
    {
        tracing::warn!("cannot signal the script: {e}");
    }
    if tokio::time::timeout(TERM_GRACE, forward(ex, &mut Pushes::default()))
        .await
        .is_err()
    {
        let _ = engine
            .exec_capture(name, builder::kill_cmd(token, "KILL"))
            .await;
    }
}
