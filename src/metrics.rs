//! Prometheus metrics. Labels carry profile names and result classes only:
//! never a role session's keys, the token, or an STS message.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;

use crate::session::unix_seconds;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProfileLabel {
    pub profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    pub profile: String,
    /// [`RefreshResult::as_str`].
    pub result: &'static str,
}

/// The `result` label of `rolecall_refresh_total`: a success, or the class
/// of the failure (see [`crate::sts::ErrorClass`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefreshResult {
    Success,
    TransientError,
    TokenError,
    ConfigError,
    ClockError,
}

impl RefreshResult {
    /// Every value, for dropping a profile's series.
    pub const ALL: [RefreshResult; 5] = [
        RefreshResult::Success,
        RefreshResult::TransientError,
        RefreshResult::TokenError,
        RefreshResult::ConfigError,
        RefreshResult::ClockError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefreshResult::Success => "success",
            RefreshResult::TransientError => "transient_error",
            RefreshResult::TokenError => "token_error",
            RefreshResult::ConfigError => "config_error",
            RefreshResult::ClockError => "clock_error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabel {
    pub file: String,
}

/// The `result` of a configuration reload: `success` or `invalid`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    pub result: &'static str,
}

/// The watched file: `token` or `configuration`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabel {
    pub file: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// See [`Metrics::count_endpoint_rejection`].
    pub reason: &'static str,
}

/// The source identity: `web-identity` or `pod-identity`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityLabel {
    pub identity: &'static str,
}

/// The Pod Identity agent's answer: `200`, `400`, `403`, `404`, `429`,
/// `5xx`, or `error` (no answer, or another status).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

/// Where a limit was reached: see [`Metrics::count_limit_reached`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// [`crate::sys::limits::Limit::label`]: `open_files`, `local_ports` or
    /// `threads`.
    pub limit: &'static str,
    /// `listener` (the health listener or the credentials endpoint),
    /// `control_socket`, `sts` (a call to STS, its host-name lookup
    /// included), `token` (a read of the token), `output` (a file write) or
    /// `reload` (a configuration reload's thread) or `watch` (the file
    /// watcher's thread).
    pub site: &'static str,
}

/// Every metric rolecall exports: one registry, shared by the clones each
/// component holds (as linkerd gives every component a clonable metrics
/// value). Components change it through the intent methods below; the
/// series themselves stay private.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Families>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    // ---- the profile table (`state::Shared`) --------------------------

    /// Counts a refresh attempt of `profile` that ended with `result`.
    pub fn count_refresh(&self, profile: &str, result: RefreshResult) {
        self.0
            .refresh
            .get_or_create(&RefreshLabels {
                profile: profile.to_owned(),
                result: result.as_str(),
            })
            .inc();
    }

    /// Sets the expiry of the session published for `profile`.
    pub fn set_credentials_expiry(&self, profile: &str, expiry: SystemTime) {
        self.0
            .credentials_expiry
            .get_or_create(&ProfileLabel {
                profile: profile.to_owned(),
            })
            .set(unix_seconds(expiry) as i64);
    }

    /// Drops every series of a profile that is no longer configured.
    pub fn forget_profile(&self, profile: &str) {
        self.0.credentials_expiry.remove(&ProfileLabel {
            profile: profile.to_owned(),
        });
        for result in RefreshResult::ALL {
            self.0.refresh.remove(&RefreshLabels {
                profile: profile.to_owned(),
                result: result.as_str(),
            });
        }
    }

    // ---- the refreshers' STS calls ------------------------------------

    /// Records the duration of one STS call.
    pub fn record_sts_call(&self, took: Duration) {
        self.0.sts_latency.observe(took.as_secs_f64());
    }

    /// Counts an STS call answered with a throttling code.
    pub fn count_throttled(&self) {
        self.0.sts_throttled.inc();
    }

    /// Records the duration of one call to the Pod Identity agent.
    pub fn record_agent_call(&self, took: Duration) {
        self.0.agent_latency.observe(took.as_secs_f64());
    }

    /// Counts one answer of the Pod Identity agent by its `status` label
    /// (see [`StatusLabel`]).
    pub fn count_agent_response(&self, status: &'static str) {
        self.0
            .agent_responses
            .get_or_create(&StatusLabel { status })
            .inc();
    }

    /// Records the source identity the sidecar runs with (one series, 1).
    pub fn record_identity(&self, identity: &'static str) {
        self.0.identity.clear();
        self.0
            .identity
            .get_or_create(&IdentityLabel { identity })
            .set(1);
    }

    /// Records STS's clock minus the local clock, in seconds.
    pub fn record_clock_skew(&self, skew_s: i64) {
        self.0.sts_clock_skew.set(skew_s);
    }

    // ---- the watchers --------------------------------------------------

    /// Counts one re-read of the token by the watcher.
    pub fn count_token_check(&self) {
        self.0.token_checks.inc();
    }

    /// Records the `exp` of the token last read.
    pub fn record_token_expiry(&self, exp: u64) {
        self.0.token_expiry.set(exp as i64);
    }

    /// Records whether the watched `file` (`token`, `configuration`) is
    /// only polled (no inotify).
    pub fn record_watch_polling(&self, file: &'static str, polling: bool) {
        self.0
            .watch_polling
            .get_or_create(&WatchLabel { file })
            .set(i64::from(polling));
    }

    // ---- the supervisor's reloads and the control socket ---------------

    /// Records the configuration the sidecar started with (the time of the
    /// last successful load).
    pub fn record_config_loaded(&self, now: SystemTime) {
        self.0
            .config_last_reload_success
            .set(unix_seconds(now) as i64);
    }

    /// Counts a configuration reload at `now`; a success also sets the time
    /// of the last successful one.
    pub fn count_config_reload(&self, success: bool, now: SystemTime) {
        let result = if success { "success" } else { "invalid" };
        self.0
            .config_reloads
            .get_or_create(&ReloadLabel { result })
            .inc();
        if success {
            self.record_config_loaded(now);
        }
    }

    /// Records whether the control socket listens.
    pub fn record_control_socket(&self, up: bool) {
        self.0.control_socket_up.set(i64::from(up));
    }

    // ---- the writers and the endpoint ----------------------------------

    /// Counts a failed write of the output `file`.
    pub fn count_write_error(&self, file: &'static str) {
        self.0
            .write_errors
            .get_or_create(&FileLabel { file: file.into() })
            .inc();
    }

    /// Counts a request the credentials endpoint refused: `reason` is
    /// `missing_token` (no `Authorization` header), `wrong_token`, or
    /// `not_in_set` (a profile outside the token's output set).
    pub fn count_endpoint_rejection(&self, reason: &'static str) {
        self.0
            .endpoint_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    // ---- every component that meets a limit of the process or node ----

    /// Counts an operation at `site` that failed because `limit` was
    /// reached (each site counts where it reads the error: once per
    /// operation).
    pub fn count_limit_reached(&self, limit: crate::sys::limits::Limit, site: &'static str) {
        self.0
            .limit_reached
            .get_or_create(&LimitLabels {
                limit: limit.label(),
                site,
            })
            .inc();
    }

    // ---- the health server ---------------------------------------------

    /// The Prometheus text exposition, with `rolecall_ready` as `ready`
    /// (computed by the caller when scraped: [`crate::state::Shared::not_ready`]).
    pub fn encode(&self, ready: bool) -> String {
        self.0.ready.set(i64::from(ready));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The value of `series` (its name and labels as the exposition writes
    /// them, e.g. `rolecall_token_checks_total`), if exported: for tests
    /// and benchmarks, which read the metrics as a scrape would.
    pub fn value(&self, series: &str) -> Option<f64> {
        let ready = self.0.ready.get() == 1;
        self.encode(ready).lines().find_map(|line| {
            let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
            rest.split(' ').next()?.parse().ok()
        })
    }
}

mod families;

use families::Families;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::limits::Limit;

    #[test]
    fn limits_reached_are_counted_by_limit_and_site() {
        let m = Metrics::new();
        let component = m.clone();
        component.count_limit_reached(Limit::LocalPorts, "sts");
        m.count_limit_reached(Limit::NodeOpenFiles, "output");
        let text = m.encode(false);
        assert!(
            text.contains("rolecall_limit_reached_total{limit=\"local_ports\",site=\"sts\"} "),
            "{text}"
        );
        assert!(
            text.contains("rolecall_limit_reached_total{limit=\"open_files\",site=\"output\"} "),
            "{text}"
        );
        // Another registry (another sidecar's, in tests) has its own.
        assert!(
            !Metrics::new()
                .encode(false)
                .contains("limit=\"local_ports\",site=\"sts\"")
        );
    }

    #[test]
    fn each_component_s_counters_reach_the_exposition() {
        let m = Metrics::new();
        let component = m.clone();
        component.count_token_check();
        component.record_token_expiry(1_900_000_000);
        component.count_endpoint_rejection("wrong_token");
        component.record_sts_call(Duration::from_millis(20));
        component.record_clock_skew(-3);
        component.count_write_error("credentials");
        component.record_control_socket(true);
        assert_eq!(m.value("rolecall_token_checks_total"), Some(1.0));
        assert_eq!(
            m.value("rolecall_token_expiry_timestamp_seconds"),
            Some(1.9e9)
        );
        assert_eq!(m.value("rolecall_sts_clock_skew_seconds"), Some(-3.0));
        assert_eq!(m.value("rolecall_control_socket_up"), Some(1.0));
        let text = m.encode(true);
        assert!(
            text.contains(r#"rolecall_endpoint_rejected_requests_total{reason="wrong_token"} 1"#)
        );
        assert!(text.contains("rolecall_sts_request_duration_seconds_count 1"));
        assert!(text.contains(r#"rolecall_write_errors_total{file="credentials"} 1"#));
        assert!(text.contains("rolecall_ready 1"));
        assert!(m.encode(false).contains("rolecall_ready 0"));
    }

    #[test]
    fn reloads_are_counted_by_result_from_the_start() {
        let m = Metrics::new();
        let invalid = r#"rolecall_config_reloads_total{result="invalid"}"#;
        let success = r#"rolecall_config_reloads_total{result="success"}"#;
        assert_eq!((m.value(invalid), m.value(success)), (Some(0.0), Some(0.0)));
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        m.count_config_reload(false, at);
        assert_eq!(
            m.value("rolecall_config_last_reload_success_timestamp_seconds"),
            Some(0.0)
        );
        m.count_config_reload(true, at);
        assert_eq!((m.value(invalid), m.value(success)), (Some(1.0), Some(1.0)));
        assert_eq!(
            m.value("rolecall_config_last_reload_success_timestamp_seconds"),
            Some(1.8e9)
        );
    }

    #[test]
    fn the_control_socket_gauge_follows_the_socket() {
        let m = Metrics::new();
        assert_eq!(m.value("rolecall_control_socket_up"), Some(0.0));
        m.record_control_socket(true);
        assert_eq!(m.value("rolecall_control_socket_up"), Some(1.0));
        m.record_control_socket(false);
        assert_eq!(m.value("rolecall_control_socket_up"), Some(0.0));
    }
}
