//! tracing set-up: human-readable by default, JSON when configured. Rocket's own `log` output is bridged and
//! kept at warnings (its request lines would print raw URIs, and setup links carry a token in the path).

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(format: &str) {
    let _ = tracing_log::LogTracer::init();
    let filter = EnvFilter::try_from_env("PCII_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,rocket=warn,_=warn"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
