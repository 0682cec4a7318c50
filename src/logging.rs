//! tracing set-up: human-readable by default, JSON when configured, filtered by `PCII_LOG` or else by the
//! caller's default (the server's keeps its framework's own output at warnings).

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(format: &str, default_filter: &str) {
    let _ = tracing_log::LogTracer::init();
    let filter =
        EnvFilter::try_from_env("PCII_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = fmt().with_env_filter(filter).with_target(false);
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
