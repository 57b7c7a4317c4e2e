//! The first problems of the configuration the last reload refused, which
//! `status.json` shows until a reload succeeds. A refused reload keeps the
//! running configuration, so readiness does not change. (The reloads'
//! metrics are the supervisor's: [`crate::metrics::Metrics`].)

use super::Shared;

/// How many problems of a refused configuration `status.json` keeps (the
/// log line has them all).
pub const REJECTED_PROBLEMS: usize = 5;

impl Shared {
    /// Records the outcome of a reload for `status.json`: the `problems`
    /// of a refused configuration (the first [`REJECTED_PROBLEMS`] are
    /// kept), or none once a reload succeeds. Wakes the writer when that
    /// changes what it shows.
    pub fn set_rejected_config(&self, mut problems: Vec<String>) {
        problems.truncate(REJECTED_PROBLEMS);
        let changed = {
            let mut state = self.lock();
            let changed = state.rejected_config != problems;
            state.rejected_config = problems;
            changed
        };
        if changed {
            self.request_write();
        }
    }

    /// The first problems of the configuration the last reload refused;
    /// empty when it succeeded (or none was refused).
    pub fn rejected_config(&self) -> Vec<String> {
        self.lock().rejected_config.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_reload_is_kept_until_a_success() {
        let shared = Shared::new();
        let problems: Vec<String> = (0..8).map(|i| format!("problem {i}")).collect();
        shared.set_rejected_config(problems);
        assert_eq!(shared.rejected_config().len(), REJECTED_PROBLEMS);
        assert_eq!(shared.rejected_config()[0], "problem 0");
        shared.set_rejected_config(Vec::new());
        assert!(shared.rejected_config().is_empty());
    }
}
