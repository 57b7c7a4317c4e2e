//! Command line: parse, set up logging, call the library, map to exit codes
//! (0 success, 1 runtime failure, 64 invalid configuration or usage).

// As in the library: the one unsafe call, below, allows itself.
#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use rolecall::cli::{Cli, Command, ControlArgs};
use rolecall::clock::Clock;
use rolecall::config::{self, Config, Flags, LogFormat};

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 64;

/// The AWS SDK logs whole STS response bodies (secret keys and session
/// tokens) at trace level when LOG_SENSITIVE_BODIES=true is set, a switch
/// meant for debugging applications. rolecall promises no secret at any
/// level, so the switch is removed before anything can read it. Called
/// first thing in `main`, before any thread exists.
#[allow(unsafe_code)]
fn remove_sdk_body_log_switch() {
    // SAFETY: called before anything else runs (no runtime, no other
    // thread), so no concurrent reader of the environment exists.
    unsafe { std::env::remove_var(rolecall::logging::SDK_BODY_LOG_SWITCH) };
}

fn main() -> ExitCode {
    remove_sdk_body_log_switch();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let env = config::process_env();
    let (once, flags) = match cli.command {
        None => (false, cli.flags),
        Some(Command::Run(f)) => (false, f),
        Some(Command::Once(f)) => (true, f),
        Some(Command::Check { issuer, flags, .. }) if issuer.wanted() => {
            return ExitCode::from(rolecall::check::issuer::run(&flags, &env, &issuer));
        }
        Some(Command::Check { assume, flags, .. }) => return check(&flags, &env, assume),
        Some(Command::Status {
            output_dir,
            json,
            control_socket,
        }) => return status_command(output_dir, json, control_socket, &env),
        Some(Command::Reload { control }) => {
            return control_request(rolecall::control::protocol::Request::Reload, control, &env);
        }
        Some(Command::Refresh { profile, control }) => {
            let req = rolecall::control::protocol::Request::Refresh { profile };
            return control_request(req, control, &env);
        }
        Some(Command::CredentialProcess {
            profile,
            output_dir,
        }) => return credential_process(&profile, output_dir, &env),
        #[cfg(feature = "inject")]
        Some(Command::Inject { filenames, image }) => {
            let opts = rolecall::inject::Options { image };
            return inject(rolecall::inject::io::Action::Inject, &filenames, &opts);
        }
        #[cfg(feature = "inject")]
        Some(Command::Krm) => return krm(),
        #[cfg(feature = "inject")]
        Some(Command::Uninject { filenames }) => {
            let opts = rolecall::inject::Options::default();
            return inject(rolecall::inject::io::Action::Uninject, &filenames, &opts);
        }
        #[cfg(feature = "inject")]
        Some(Command::Webhook(flags)) => return webhook(&flags),
    };
    let config = match Config::load(&flags, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rolecall: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    rolecall::logging::init(config.log_format, env.get("RUST_LOG").map(String::as_str));
    if let Err(e) = open_file_limit(&config) {
        eprintln!("rolecall: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    sidecar(config, flags, env, once)
}

/// `rolecall run` (until SIGTERM) and `rolecall once`, on a runtime of one
/// thread.
fn sidecar(config: Config, flags: Flags, env: config::Env, once: bool) -> ExitCode {
    // One thread. Its blocking pool is never used: it panics when no
    // thread can be started (a pod at its pids limit), so a reload and a
    // host-name lookup start their own thread (`sys::limits::run_on_thread`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "rolecall: cannot start the runtime: {e}; {}",
                limit_hint(&e)
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async move {
        let opts = rolecall::Options::default();
        if once {
            return match rolecall::once(&config, &opts).await {
                Ok(r) if r.failed.is_empty() => ExitCode::SUCCESS,
                Ok(r) => {
                    tracing::error!(failed = %r.failed.join(","), "some profiles could not be assumed");
                    ExitCode::from(EXIT_FAILURE)
                }
                Err(e) => {
                    tracing::error!(error = %e, "failed");
                    ExitCode::from(EXIT_FAILURE)
                }
            };
        }
        let commands = rolecall::Commands::new();
        let stop = match rolecall::signal::install(commands.sender()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, hint = limit_hint(&e), "cannot install signal handlers");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let reload = move || Config::load(&flags, &env);
        match rolecall::run(config, reload, opts, commands, stop.cancelled_owned()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, hint = limit_hint(&e), "failed");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}

/// `rolecall status`: the output dir given, else every output set of the
/// sidecar in this container, else the default output dir.
fn status_command(
    output_dir: Option<std::path::PathBuf>,
    json: bool,
    control_socket: Option<std::path::PathBuf>,
    env: &config::Env,
) -> ExitCode {
    if let Some(dir) = output_dir {
        return status(&[dir], json);
    }
    // The sidecar in this container knows its sets' dirs (unless
    // its socket is disabled: ROLECALL_CONTROL_SOCKET="").
    let disabled =
        control_socket.is_none() && config::env_control_socket(env).is_some_and(str::is_empty);
    let dir: std::path::PathBuf = config::env_output_dir(env)
        .map(Into::into)
        .unwrap_or_else(|| config::DEFAULT_OUTPUT_DIR.into());
    if !disabled {
        match rolecall::control::client::set_dirs(&socket_path(control_socket, env)) {
            Ok(Some(dirs)) => return status(&dirs, json),
            Ok(None) => {}
            // A socket is there but gave no sets: say so, then show
            // what can be read without them.
            Err(why) => eprintln!(
                "rolecall: {why}; showing {} only (other output sets of the sidecar, if any, are left out)",
                dir.display()
            ),
        }
    }
    status(&[dir], json)
}

/// `rolecall credential-process`: the profile's session as the AWS SDKs
/// read it.
fn credential_process(
    profile: &str,
    output_dir: Option<std::path::PathBuf>,
    env: &config::Env,
) -> ExitCode {
    let dir = output_dir.unwrap_or_else(|| {
        rolecall::process::default_dir(std::env::current_exe().ok(), config::env_output_dir(env))
    });
    match rolecall::process::credentials(&dir, profile, Clock::system().now()) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rolecall: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `rolecall inject` / `uninject`: the objects on stdout (only when every
/// object is valid), the report or every problem on stderr.
#[cfg(feature = "inject")]
fn inject(
    action: rolecall::inject::io::Action,
    inputs: &[std::path::PathBuf],
    opts: &rolecall::inject::Options,
) -> ExitCode {
    ExitCode::from(rolecall::inject::io::run(action, inputs, opts).emit(true))
}

/// `rolecall webhook`: every flag problem at once (exit 64), then the
/// server until SIGTERM.
#[cfg(feature = "inject")]
fn webhook(flags: &rolecall::webhook::Flags) -> ExitCode {
    match rolecall::webhook::check(flags) {
        Ok(settings) => ExitCode::from(rolecall::webhook::run(settings)),
        Err(problems) => {
            for p in problems {
                eprintln!("rolecall: {p}");
            }
            ExitCode::from(rolecall::webhook::EXIT_USAGE)
        }
    }
}

/// `rolecall krm`: the ResourceList on stdout, every problem on stderr.
#[cfg(feature = "inject")]
fn krm() -> ExitCode {
    ExitCode::from(rolecall::krm::run_stdin().emit(true))
}

/// What to raise, when `e` failed at the open-file limit (too low to even
/// start); `-` otherwise.
fn limit_hint(e: &(dyn std::error::Error + 'static)) -> String {
    rolecall::sys::limits::limit_in_chain(e).map_or_else(|| "-".to_owned(), |l| l.hint())
}

/// Raises the soft open-file limit to the hard one (see
/// [`rolecall::sys::limits`]), and says once if it is still below what this
/// configuration may hold open. Too few to start is an error.
fn open_file_limit(config: &Config) -> Result<(), String> {
    use rolecall::sys::limits;
    let now = match limits::raise_open_files() {
        Ok((before, after)) => {
            if before != after {
                tracing::debug!(
                    from = before.soft,
                    to = after.soft,
                    "raised the soft open-file limit to the hard one"
                );
            }
            after
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit (RLIMIT_NOFILE)");
            return Ok(());
        }
    };
    if now.soft < limits::MIN_OPEN_FILES {
        return Err(format!(
            "the open-file limit (RLIMIT_NOFILE, `ulimit -n`: {} (hard {})) is below the {} descriptors rolecall needs to start; raise the container runtime's nofile ulimit (containerd/CRI-O: LimitNOFILE= in its systemd unit; Docker: --ulimit nofile=)",
            now.soft,
            now.hard,
            limits::MIN_OPEN_FILES
        ));
    }
    let listeners =
        usize::from(config.health_addr.is_some()) + usize::from(config.endpoint_addr.is_some());
    let needed = limits::open_files_needed(
        listeners,
        rolecall::LISTENER_MAX_CONNECTIONS,
        config.profiles.len(),
    );
    if now.soft < needed {
        tracing::warn!(
            limit = now.soft,
            needed,
            "the open-file limit (RLIMIT_NOFILE, `ulimit -n`) is below what this configuration may hold open; connections beyond it wait and refreshes fail until descriptors free up: raise the container runtime's nofile ulimit (containerd/CRI-O: LimitNOFILE= in its systemd unit; Docker: --ulimit nofile=)"
        );
    }
    Ok(())
}

fn check(flags: &Flags, env: &config::Env, assume: bool) -> ExitCode {
    let config = match Config::load(flags, env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rolecall: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    rolecall::logging::init(LogFormat::Text, Some("warn"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(runtime) = runtime else {
        return ExitCode::from(EXIT_FAILURE);
    };
    let sts = rolecall::sts::Sts::new(rolecall::sts::ATTEMPT_TIMEOUT).with_network(
        config.ca_bundle.as_ref(),
        config
            .proxy
            .as_ref()
            .map(|p| p.config(config.no_proxy.as_deref())),
    );
    let report = runtime.block_on(rolecall::check::check(
        &config,
        assume,
        &sts,
        Clock::system(),
    ));
    print!("{}", report.text);
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// The status of each of `dirs` (one output set each): tables one after
/// another, or JSON (one object, or a list of them with several sets). A
/// set that cannot be read is reported and makes the exit 1; the others
/// are still shown.
fn status(dirs: &[std::path::PathBuf], json: bool) -> ExitCode {
    let mut ok = true;
    let mut read = Vec::new();
    for dir in dirs {
        match rolecall::status::read(dir) {
            Ok(s) => read.push(s),
            Err(e) => {
                eprintln!("rolecall: {e}");
                ok = false;
            }
        }
    }
    if json {
        match read.as_slice() {
            [one] if dirs.len() == 1 => println!("{}", rolecall::status::to_json(one)),
            [] => {}
            many => println!(
                "[{}]",
                many.iter()
                    .map(rolecall::status::to_json)
                    .collect::<Vec<_>>()
                    .join(",\n")
            ),
        }
    } else {
        let now = Clock::system().now();
        let tables: Vec<String> = read
            .iter()
            .map(|s| rolecall::status::table(s, now))
            .collect();
        print!("{}", tables.join("\n"));
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// The control socket: the flag, else `ROLECALL_CONTROL_SOCKET`, else the
/// default.
fn socket_path(flag: Option<std::path::PathBuf>, env: &config::Env) -> std::path::PathBuf {
    flag.or_else(|| {
        config::env_control_socket(env)
            .filter(|v| !v.is_empty())
            .map(Into::into)
    })
    .unwrap_or_else(|| config::DEFAULT_CONTROL_SOCKET.into())
}

/// `rolecall reload` and `rolecall refresh`: one request to the sidecar's
/// control socket (see [`rolecall::control::client::request`]).
fn control_request(
    req: rolecall::control::protocol::Request,
    args: ControlArgs,
    env: &config::Env,
) -> ExitCode {
    let path = socket_path(args.control_socket, env);
    ExitCode::from(rolecall::control::client::request(&path, &req, args.json))
}
