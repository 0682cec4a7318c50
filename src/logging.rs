//! tracing set-up: human-readable by default, JSON when configured, filtered by `PCII_LOG` or else by the
//! caller's default. Rocket's own output stays at warnings whatever `PCII_LOG` says: its request lines print
//! raw URIs, and setup, invitation, reset and confirmation links carry their token in the path. The few lines it
//! logs about one request at error or warn level print the URI too ("No matching routes for GET /password/reset/
//! <token>/x."): those targets are off. What Rocket says about its launch (`rocket::launch`, `rocket::error`,
//! `rocket::config`, a shutdown in `rocket::server`) stays.

use tracing_subscriber::{filter::Directive, fmt, EnvFilter};

/// Targets capped in every filter: Rocket's at warnings (`rocket`, and `_` for its request and response lines);
/// the ones where it logs a request's URI at error or warn level, off: `rocket::server::_` (the lines about one
/// request: "No matching routes for …", "Dispatching salvaged request to catcher: …", a handler's panic, a failed
/// write) and `rocket::request` (a URI hyper and Rocket disagree on, a header dropped).
const FRAMEWORK_CAPS: [&str; 4] = [
    "rocket=warn",
    "_=warn",
    "rocket::server::_=off",
    "rocket::request=off",
];

pub fn init(format: &str, default_filter: &str) {
    let _ = tracing_log::LogTracer::init();
    let filter = filter_from(std::env::var("PCII_LOG").ok().as_deref(), default_filter);
    let builder = fmt().with_env_filter(filter).with_target(false);
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The filter `PCII_LOG` asks for (the default when unset or unreadable), with the framework capped.
fn filter_from(env: Option<&str>, default_filter: &str) -> EnvFilter {
    let mut filter = env
        .and_then(|e| EnvFilter::try_new(e).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    for cap in FRAMEWORK_CAPS {
        // Added last, so they replace a directive for the same target that `PCII_LOG` gave.
        filter = filter.add_directive(cap.parse::<Directive>().expect("a valid directive"));
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directives(env: Option<&str>) -> Vec<String> {
        filter_from(env, "info")
            .to_string()
            .split(',')
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn rocket_stays_at_warnings_whatever_pcii_log_says() {
        for env in [
            None,
            Some("info"),
            Some("debug"),
            Some("trace,rocket=trace,_=debug"),
        ] {
            let d = directives(env);
            assert!(d.contains(&"rocket=warn".to_string()), "{env:?}: {d:?}");
            assert!(d.contains(&"_=warn".to_string()), "{env:?}: {d:?}");
            assert!(
                d.contains(&"rocket::server::_=off".to_string()),
                "{env:?}: {d:?}"
            );
            assert!(
                d.contains(&"rocket::request=off".to_string()),
                "{env:?}: {d:?}"
            );
            assert!(
                !d.iter().any(|x| x == "rocket=trace" || x == "_=debug"),
                "{env:?}: {d:?}"
            );
        }
        assert!(directives(Some("debug")).contains(&"debug".to_string()));
    }
}
