//! Logging: the `RUST_LOG` filter and the subscriber on stderr.
//!
//! rolecall promises that no secret reaches a log line at any level. Two
//! things in its dependencies would break that at `trace`: hyper, h2 and
//! rustls print raw requests (which hold the token), and the AWS SDK prints
//! STS response bodies (which hold the secret keys) when
//! [`SDK_BODY_LOG_SWITCH`] is set. [`filter`] caps both, whatever
//! `RUST_LOG` says; `main` also removes the switch from the environment.

use tracing_subscriber::filter::{LevelFilter, Targets};

use crate::config::LogFormat;

/// The AWS SDK's environment switch for logging response bodies, which
/// hold STS's secret keys: `main` removes it from the environment at start,
/// and [`filter`] caps the module that honours it below `trace`.
pub const SDK_BODY_LOG_SWITCH: &str = "LOG_SENSITIVE_BODIES";
/// The SDK module that logs response bodies at `trace`.
const SDK_BODY_LOG_TARGET: &str = "aws_smithy_runtime::client::orchestrator::http";
/// Modules whose `debug` and `trace` output prints raw HTTP traffic.
const RAW_TRAFFIC_TARGETS: [&str; 4] = ["hyper", "hyper_util", "h2", "rustls"];

/// The log filter for a `RUST_LOG` value: a default level and
/// `target=level` directives (`info`, `rolecall=debug,warn`; span and field
/// filters are not supported, which keeps a regex engine out of the binary).
/// An unreadable value falls back to `info`. The HTTP and TLS internals are
/// capped at `info` whatever it says, because at `trace` they print raw
/// requests, which hold the token; the SDK's body logging is capped at
/// `debug` for the same reason.
pub fn filter(spec: &str) -> Targets {
    let spec = spec.trim();
    let parsed = if spec.is_empty() {
        Targets::new().with_default(LevelFilter::INFO)
    } else {
        spec.parse::<Targets>()
            .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO))
    };
    let capped = parsed.iter().fold(Targets::new(), |t, (target, level)| {
        t.with_target(target, level)
    });
    let mut filter = match parsed.default_level() {
        Some(level) => capped.with_default(level),
        None => capped,
    };
    for target in RAW_TRAFFIC_TARGETS {
        let level = parsed
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, l)| l)
            .or(parsed.default_level())
            .map_or(LevelFilter::INFO, |l| l.min(LevelFilter::INFO));
        filter = filter.with_target(target, level);
    }
    let body_level = parsed
        .default_level()
        .map_or(LevelFilter::INFO, |l| l.min(LevelFilter::DEBUG));
    filter.with_target(SDK_BODY_LOG_TARGET, body_level)
}

/// Sends logs to stderr in `format`, filtered by `rust_log` as [`filter`]
/// says (`info` when unset). Call once, before the runtime starts.
pub fn init(format: LogFormat, rust_log: Option<&str>) {
    use tracing_subscriber::prelude::*;
    let filter = filter(rust_log.unwrap_or("info"));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_filter(filter),
            )
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn rust_log_sets_levels_but_http_internals_stay_capped_at_info() {
        let f = super::filter("trace");
        assert!(f.would_enable("rolecall::sts", &Level::TRACE));
        assert!(f.would_enable("aws_smithy_runtime", &Level::TRACE));
        for t in ["hyper", "hyper_util::client", "h2", "rustls"] {
            assert!(!f.would_enable(t, &Level::DEBUG), "{t}");
            assert!(f.would_enable(t, &Level::INFO), "{t}");
        }
        assert!(!f.would_enable(super::SDK_BODY_LOG_TARGET, &Level::TRACE));
        assert!(f.would_enable("aws_smithy_runtime::client::orchestrator", &Level::TRACE));
        let f = super::filter("rolecall=debug,warn");
        assert!(f.would_enable("rolecall", &Level::DEBUG));
        assert!(!f.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(
            !f.would_enable("hyper", &Level::INFO),
            "a stricter level for hyper is kept"
        );
        let f = super::filter("not a == filter");
        assert_eq!(f.default_level(), Some(LevelFilter::INFO));
        assert_eq!(super::filter("").default_level(), Some(LevelFilter::INFO));
    }
}
