//! The sidecar in-process: [`Running`] (`rolecall::run` on a task of the
//! current runtime) and the flags it is usually started with.

use std::path::Path;
use std::time::Duration;

use super::{FakeSts, TokenDir};

/// The flags of an in-process sidecar against `sts` and `token`, writing to
/// `out`, publishing `profiles` (`NAME=ROLE_ARN`) in file mode
/// ([`TEST_MODE`](super::TEST_MODE): the default, process, installs the
/// built binary as the helper), region `eu-west-1`, no health listener and
/// no control socket (parallel tests would share its default path); tests
/// override the rest with struct update syntax.
pub fn test_flags(
    sts: &FakeSts,
    token: &TokenDir,
    out: &Path,
    profiles: &[&str],
) -> rolecall::config::Flags {
    rolecall::config::Flags {
        profiles: profiles.iter().map(|p| p.to_string()).collect(),
        token_file: Some(token.path().display().to_string()),
        output_dir: Some(out.display().to_string()),
        region: Some("eu-west-1".into()),
        sts_endpoint: Some(sts.endpoint()),
        credentials: Some(super::TEST_MODE.into()),
        health_addr: Some(String::new()),
        control_socket: Some(String::new()),
        ..rolecall::config::Flags::default()
    }
}

/// `rolecall::run` on a task of the current runtime, with the handles that
/// drive it: commands (what SIGHUP, SIGUSR1, the configuration watcher and
/// the control socket send) and shutdown.
pub struct Running {
    pub controls: tokio::sync::mpsc::Sender<rolecall::Command>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), rolecall::RunError>>,
}

impl Running {
    /// Starts the sidecar; a reload re-applies the same configuration.
    pub fn start(config: rolecall::config::Config, opts: rolecall::Options) -> Running {
        let reload_config = config.clone();
        Self::start_with_reload(config, move || Ok(reload_config.clone()), opts)
    }

    /// Starts the sidecar; `reload` is what a SIGHUP reads.
    pub fn start_with_reload(
        config: rolecall::config::Config,
        reload: impl Fn() -> Result<rolecall::config::Config, rolecall::config::ConfigError>
        + Send
        + 'static,
        opts: rolecall::Options,
    ) -> Running {
        let commands = rolecall::Commands::new();
        let controls = commands.sender();
        let stop = tokio_util::sync::CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            rolecall::run(config, reload, opts, commands, s.cancelled_owned()).await
        });
        Running {
            controls,
            stop,
            task,
        }
    }

    /// Stops it as SIGTERM would; returns how long that took.
    pub async fn stop(self) -> Duration {
        let started = std::time::Instant::now();
        self.stop.cancel();
        self.task
            .await
            .expect("the sidecar task")
            .expect("the sidecar stops cleanly");
        started.elapsed()
    }
}

/// The options of an in-process sidecar under test: STS attempts time out
/// after 2 s; the most jitter (refreshes at 45 % of the lifetime, failed
/// attempts back off at the ceiling: 1 s, 2 s, ..., not 10 ms) and no
/// spread of a first refresh (the steady schedule from the start); the built
/// binary is the process-mode helper.
pub fn test_options() -> rolecall::Options {
    rolecall::Options {
        attempt_timeout: Duration::from_secs(2),
        jitter: || 1.0,
        spread: || 0.0,
        helper_binary: Some(env!("CARGO_BIN_EXE_rolecall").into()),
        ..rolecall::Options::default()
    }
}

/// [`test_flags`] publishing `reader` and `writer` (account 111122223333)
/// with the credentials endpoint on 127.0.0.1:`port`.
pub fn endpoint_flags(
    sts: &FakeSts,
    token: &TokenDir,
    out: &Path,
    port: u16,
) -> rolecall::config::Flags {
    rolecall::config::Flags {
        endpoint_addr: Some(format!("127.0.0.1:{port}")),
        ..test_flags(
            sts,
            token,
            out,
            &[
                "reader=arn:aws:iam::111122223333:role/reader",
                "writer=arn:aws:iam::111122223333:role/writer",
            ],
        )
    }
}
