//! The outcome of configuration reloads: the metrics and the rejected
//! file's first problems, which `status.json` shows until a reload succeeds.
//! A refused reload keeps the running configuration, so readiness does not
//! change.

use std::time::SystemTime;

use super::Shared;
use crate::session::unix_seconds;

/// How many problems of a refused configuration `status.json` keeps (the
/// log line has them all).
pub const REJECTED_PROBLEMS: usize = 5;

impl Shared {
    /// Records the configuration the sidecar started with (the time of the
    /// last successful load).
    pub fn record_config_loaded(&self, now: SystemTime) {
        self.metrics
            .config_last_reload_success
            .set(unix_seconds(now) as i64);
    }

    /// Records a successful reload (`SIGHUP` or a change of the file):
    /// counts it, and clears the problems of a file refused earlier.
    pub fn record_config_reloaded(&self, now: SystemTime) {
        self.metrics.count_config_reload(true, unix_seconds(now));
        let had = !std::mem::take(&mut self.lock().rejected_config).is_empty();
        if had {
            self.request_write();
        }
    }

    /// Records a refused reload with its `problems` (the first
    /// [`REJECTED_PROBLEMS`] are kept for `status.json`).
    pub fn record_config_rejected(&self, mut problems: Vec<String>) {
        self.metrics.count_config_reload(false, 0);
        problems.truncate(REJECTED_PROBLEMS);
        self.lock().rejected_config = problems;
        self.request_write();
    }

    /// The first problems of the configuration the last reload refused;
    /// empty when it succeeded (or none was refused).
    pub fn rejected_config(&self) -> Vec<String> {
        self.lock().rejected_config.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn a_refused_reload_is_counted_and_kept_until_a_success() {
        let shared = Shared::new();
        let problems: Vec<String> = (0..8).map(|i| format!("problem {i}")).collect();
        shared.record_config_rejected(problems);
        assert_eq!(shared.rejected_config().len(), REJECTED_PROBLEMS);
        assert_eq!(shared.rejected_config()[0], "problem 0");
        let text = shared.metrics().encode();
        assert!(
            text.contains(r#"rolecall_config_reloads_total{result="invalid"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"rolecall_config_reloads_total{result="success"} 0"#),
            "{text}"
        );

        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        shared.record_config_reloaded(at);
        assert!(shared.rejected_config().is_empty());
        let text = shared.metrics().encode();
        assert!(
            text.contains(r#"rolecall_config_reloads_total{result="success"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("rolecall_config_last_reload_success_timestamp_seconds 1800000000"),
            "{text}"
        );
    }
}
