//! Whether the control socket listens (`rolecall_control_socket_up`).

use super::Shared;

impl Shared {
    /// Records whether the control socket listens.
    pub fn record_control_socket(&self, up: bool) {
        self.metrics.control_socket_up.set(i64::from(up));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_follows_the_socket() {
        let shared = Shared::new();
        let text = shared.metrics().encode();
        assert!(text.contains("rolecall_control_socket_up 0"), "{text}");
        shared.record_control_socket(true);
        let text = shared.metrics().encode();
        assert!(text.contains("rolecall_control_socket_up 1"), "{text}");
        shared.record_control_socket(false);
        assert!(
            shared
                .metrics()
                .encode()
                .contains("rolecall_control_socket_up 0")
        );
    }
}
