//! Turns SIGTERM/SIGINT into a cancellation token.
//!
//! gitlab-runner cancels a stage by sending SIGTERM to our process group, then SIGKILL
//! after its graceful timeout. Stages `select!` on the token and stop promptly (the run
//! stage also signals the script's process group inside the builder).

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled by the first SIGTERM or SIGINT.
pub(crate) fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; SIGTERM will kill runnerx outright");
        return token;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::warn!("SIGTERM received; stopping"),
            _ = int.recv() => tracing::warn!("SIGINT received; stopping"),
        }
        t.cancel();
    });
    token
}
