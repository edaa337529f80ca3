//! Log lines on stderr, never stdout (stdout is the protocol: `config` JSON and job
//! output). Format: `runnerx: message`, with `WARNING:`/`ERROR:` like gitlab-runner's
//! own lines. `RUNNERX_LOG` sets the filter (default `info`).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR: ",
            Level::WARN => "WARNING: ",
            Level::DEBUG | Level::TRACE => "debug: ",
            Level::INFO => "",
        };
        write!(w, "runnerx: {level}")?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Installs the stderr subscriber (idempotent).
pub fn init() {
    let filter = EnvFilter::try_from_env("RUNNERX_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(false)
        .event_format(Plain)
        .try_init();
}
