//! The registry and its series, in the order the exposition lists them.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{
    FileLabel, IdentityLabel, LimitLabels, ProfileLabel, ReasonLabel, RefreshLabels, ReloadLabel,
    StatusLabel, WatchLabel,
};

pub(super) struct Families {
    pub(super) registry: Registry,
    pub(super) credentials_expiry: Family<ProfileLabel, Gauge>,
    pub(super) refresh: Family<RefreshLabels, Counter>,
    pub(super) token_expiry: Gauge,
    pub(super) sts_latency: Histogram,
    pub(super) write_errors: Family<FileLabel, Counter>,
    pub(super) ready: Gauge,
    pub(super) sts_clock_skew: Gauge,
    pub(super) endpoint_rejected: Family<ReasonLabel, Counter>,
    /// Wake-ups of the token watcher (each re-reads the token): a handful
    /// per rotation, one per poll; a fast-growing value means a loop.
    pub(super) token_checks: Counter,
    /// Reloads (`SIGHUP` or a change of the watched file), by result.
    pub(super) config_reloads: Family<ReloadLabel, Counter>,
    pub(super) config_last_reload_success: Gauge,
    /// 1 while the control socket (`rolecall reload`, `rolecall refresh`)
    /// listens.
    pub(super) control_socket_up: Gauge,
    /// 1 while a watched file is only polled: no inotify watcher could be
    /// started (the node's inotify limits, or no thread for it).
    pub(super) watch_polling: Family<WatchLabel, Gauge>,
    /// STS calls answered with a throttling code ([`crate::pacer`]).
    pub(super) sts_throttled: Counter,
    /// Operations that failed at a limit of the process or the node, by
    /// limit and site.
    pub(super) limit_reached: Family<LimitLabels, Counter>,
    /// The source identity (`identity: web-identity | pod-identity`).
    pub(super) identity: Family<IdentityLabel, Gauge>,
    /// Calls to the Pod Identity agent, by answer.
    pub(super) agent_responses: Family<StatusLabel, Counter>,
    pub(super) agent_latency: Histogram,
}

impl Default for Families {
    fn default() -> Self {
        Families::new()
    }
}

impl Families {
    fn new() -> Families {
        let families = Families {
            registry: Registry::default(),
            credentials_expiry: Family::default(),
            refresh: Family::default(),
            token_expiry: Gauge::default(),
            sts_latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            write_errors: Family::default(),
            ready: Gauge::default(),
            sts_clock_skew: Gauge::default(),
            endpoint_rejected: Family::default(),
            token_checks: Counter::default(),
            config_reloads: Family::default(),
            config_last_reload_success: Gauge::default(),
            control_socket_up: Gauge::default(),
            watch_polling: Family::default(),
            sts_throttled: Counter::default(),
            limit_reached: Family::default(),
            identity: Family::default(),
            agent_responses: Family::default(),
            agent_latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
        };
        let mut registry = Registry::default();
        families.register_refreshes(&mut registry);
        families.register_process(&mut registry);
        Families {
            registry,
            ..families
        }
    }

    /// The profiles' and their STS calls' series, registered first (the
    /// exposition keeps the order of registration).
    fn register_refreshes(&self, registry: &mut Registry) {
        registry.register(
            "rolecall_credentials_expiry_timestamp_seconds",
            "Unix time at which the published credentials of a profile expire",
            self.credentials_expiry.clone(),
        );
        registry.register(
            "rolecall_refresh",
            "STS refresh attempts per profile and result",
            self.refresh.clone(),
        );
        registry.register(
            "rolecall_token_expiry_timestamp_seconds",
            "Unix time at which the projected service-account token last read expires",
            self.token_expiry.clone(),
        );
        registry.register(
            "rolecall_sts_request_duration_seconds",
            "Duration of STS calls, successful or not",
            self.sts_latency.clone(),
        );
        registry.register(
            "rolecall_write_errors",
            "Failed writes of an output file (the previous file is kept whole)",
            self.write_errors.clone(),
        );
        registry.register(
            "rolecall_ready",
            "1 when every profile holds unexpired credentials and the outputs are written",
            self.ready.clone(),
        );
        registry.register(
            "rolecall_sts_clock_skew_seconds",
            "STS's clock minus the local clock, from the Date header of the last STS answer",
            self.sts_clock_skew.clone(),
        );
        registry.register(
            "rolecall_identity_info",
            "The source identity every profile's session comes from (identity: web-identity, or pod-identity: the EKS Pod Identity agent); always 1",
            self.identity.clone(),
        );
        registry.register(
            "rolecall_agent_responses",
            "Calls to the EKS Pod Identity agent by answer: status 200, 400, 403, 404, 429, 5xx, or error (no answer within the timeout, a refused or reset connection, another status)",
            self.agent_responses.clone(),
        );
        registry.register(
            "rolecall_agent_request_duration_seconds",
            "Duration of calls to the EKS Pod Identity agent, successful or not",
            self.agent_latency.clone(),
        );
        registry.register(
            "rolecall_endpoint_rejected_requests",
            "Requests the credentials endpoint refused for their Authorization header (or for a profile outside the token's output set), by reason",
            self.endpoint_rejected.clone(),
        );
    }

    /// The watchers', the reloads' and the control socket's series, and
    /// the limits reached, after [`Families::register_refreshes`].
    fn register_process(&self, registry: &mut Registry) {
        registry.register(
            "rolecall_token_checks",
            "times the token watcher re-read the token after a file event or poll",
            self.token_checks.clone(),
        );
        registry.register(
            "rolecall_config_reloads",
            "Configuration reloads (SIGHUP or a change of the configuration file) by result: success, or invalid (the running configuration was kept)",
            self.config_reloads.clone(),
        );
        // Both series exist from the start, so that an alert on `invalid`
        // sees its first increase.
        for result in ["success", "invalid"] {
            let _ = self.config_reloads.get_or_create(&ReloadLabel { result });
        }
        registry.register(
            "rolecall_config_last_reload_success_timestamp_seconds",
            "Unix time at which the running configuration was loaded: the start, or the last successful reload",
            self.config_last_reload_success.clone(),
        );
        registry.register(
            "rolecall_control_socket_up",
            "1 while the control socket of rolecall reload and rolecall refresh listens; 0 when it is disabled or could not be set up",
            self.control_socket_up.clone(),
        );
        registry.register(
            "rolecall_watch_polling",
            "1 while the file is only polled (every 60 s) because no inotify watcher could be started: the node's fs.inotify.max_user_instances or max_user_watches is exhausted, or the watcher's thread could not start (the pod's pids limit)",
            self.watch_polling.clone(),
        );
        registry.register(
            "rolecall_sts_throttled",
            "STS calls answered with Throttling: the account's STS rate limit was hit (under identity: pod-identity, also the Pod Identity agent's 429s). Each one makes this sidecar pause its calls and make them one at a time",
            self.sts_throttled.clone(),
        );
        registry.register(
            "rolecall_limit_reached",
            "Operations that failed because a limit was reached, by limit (open_files: the process's RLIMIT_NOFILE or the node's fs.file-max; local_ports: net.ipv4.ip_local_port_range; threads: the pod's pids limit or RLIMIT_NPROC) and site (listener, control_socket, sts, token, output, reload, watch)",
            self.limit_reached.clone(),
        );
    }
}
