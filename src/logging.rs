//! Log lines on stderr, never stdout (stdout is the protocol: `config` JSON and job
//! output). Format: `runnerx: message`, with `WARNING:`/`ERROR:` like gitlab-runner's
//! own lines. `RUNNERX_LOG` sets the filter (default `info`).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
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

/// The level `RUNNERX_LOG` names (`error`, `warn`, `info`, `debug`, `trace`, `off`);
/// `info` when unset or unknown. A plain level, not per-module directives: that needs
/// no regex engine in the binary.
fn level(value: Option<&str>) -> LevelFilter {
    value
        .and_then(|v| v.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO)
}

/// Installs the stderr subscriber (idempotent).
pub fn init() {
    let filter = level(std::env::var("RUNNERX_LOG").ok().as_deref());
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(filter)
        .with_ansi(false)
        .event_format(Plain)
        .try_init();
}

/// Formats a measured duration for log lines: `840ms`, `3.21s`.
pub(crate) fn human(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runnerx_log_names_a_level() {
        assert_eq!(level(Some("debug")), LevelFilter::DEBUG);
        assert_eq!(level(Some("WARN")), LevelFilter::WARN);
        assert_eq!(level(Some("nonsense")), LevelFilter::INFO);
        assert_eq!(level(None), LevelFilter::INFO);
    }

    #[test]
    fn human_formats() {
        assert_eq!(super::human(std::time::Duration::from_millis(840)), "840ms");
        assert_eq!(
            super::human(std::time::Duration::from_millis(3210)),
            "3.21s"
        );
    }
}
