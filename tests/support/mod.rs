//! Shared support for rolecall's integration tests (and `benches/sidecar`).
//!
//! Tests fake only the boundary (see STYLE.md, habit 10). One module a
//! concern, all re-exported here (`use support::*`):
//!
//! - `fake_sts`: [`FakeSts`], a real HTTP server on `127.0.0.1:0` that speaks
//!   the AWS Query protocol the way `aws-sdk-sts` sends it
//!   (`AssumeRoleWithWebIdentity` and `AssumeRole`), answers from a script of
//!   [`Reply`]s and records every request. It runs on its own thread with its
//!   own current-thread runtime (or, [`FakeSts::start_local`], on the test's
//!   runtime), so it answers even while the test's runtime has paused time or
//!   is blocked. [`FakeSts::set_clock`] stamps expirations and the
//!   `Date` header from an injected `rolecall::clock::Clock`, so paused-time
//!   tests reach expiry.
//! - `fake_agent` (not glob-exported: its `Reply` would clash with
//!   `fake_sts`'s; `FakeAgent` and `AgentReply` are): [`FakeAgent`], an EKS
//!   Pod Identity agent on loopback (or on given addresses) answering
//!   `GET /v1/credentials` from a script of replies, with the real agent's
//!   token and `Host` checks, text error bodies, rate limit and per-token
//!   cache.
//! - `config_dir`: [`ConfigDir`], a configuration file as a ConfigMap volume
//!   (`..data` swaps) or a plain file edited, renamed over or recreated.
//! - `token_dir`: [`TokenDir`], a temporary directory laid out the way
//!   kubelet's AtomicWriter lays out a projected service-account token
//!   volume, with AtomicWriter-style rotation.
//! - `jwt`: [`jwt`], [`valid_jwt`], [`expired_jwt`], [`decode_jwt_claims`], ...
//! - `utc`: [`format_utc`], [`parse_utc`] (no chrono).
//! - `ini`: a strict [`parse_ini`] for asserting on rolecall's output files.
//! - `sandbox`: [`Sandbox`], a fake STS, a token and an output dir.
//! - `wait`: [`wait_until`], [`wait_until_real`], [`free_port`].
//! - `process`: the command builder [`rolecall_command`] ([`base_args`],
//!   in file mode, [`TEST_MODE`]: the default mode copies the binary) and
//!   one-shot runs ([`run_for`], [`Run`]).
//! - `child`: `rolecall run` as a child process ([`rolecall_run`],
//!   [`ChildSidecar`], [`wait_exit`], [`signal_pid`]).
//! - `in_process`: [`Running`], the sidecar on a task of the test's runtime,
//!   and what it is started with ([`test_flags`], [`endpoint_flags`],
//!   [`test_options`]).
//! - `probe`: [`http_get`] (async) and [`http_get_blocking`].
//! - `moto`: [`Moto`], moto's STS server from the venv.
//! - `report`: reliability tables in `target/reliability/` ([`Table`],
//!   [`ReportGuard`]).
//! - `cases`: tables of cases run by one test ([`run_cases`],
//!   [`run_cases_async`]).
//! - `squid`: [`Squid`], Debian's squid on loopback with basic auth and its
//!   own hosts file, whose access log shows each CONNECT.
//! - `tls`: [`TestCa`] (a CA made with `openssl` for the test) and
//!   [`TlsFront`], TLS on loopback in front of the fake STS or moto.
//! - `logs`: [`Logs`], the log lines of a sidecar on the test's thread.
//! - `outputs`: rolecall's temporary files ([`temporaries`]) and the fault
//!   tally of readers racing its writer ([`ReadFaults`]).
//!
//! Use it from a test file with `mod support;`.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};

mod cases;
mod child;
mod config_dir;
pub mod fake_agent;
mod fake_sts;
mod in_process;
mod ini;
mod jwt;
mod logs;
mod moto;
mod outputs;
mod probe;
mod process;
mod report;
mod sandbox;
mod squid;
mod tls;
mod token_dir;
mod utc;
mod wait;

#[allow(unused_imports)]
pub use cases::*;
#[allow(unused_imports)]
pub use child::*;
#[allow(unused_imports)]
pub use config_dir::*;
#[allow(unused_imports)]
pub use fake_agent::{FakeAgent, Reply as AgentReply};
#[allow(unused_imports)]
pub use fake_sts::*;
#[allow(unused_imports)]
pub use in_process::*;
#[allow(unused_imports)]
pub use ini::*;
#[allow(unused_imports)]
pub use jwt::*;
#[allow(unused_imports)]
pub use logs::*;
#[allow(unused_imports)]
pub use moto::*;
#[allow(unused_imports)]
pub use outputs::*;
#[allow(unused_imports)]
pub use probe::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use report::*;
#[allow(unused_imports)]
pub use sandbox::*;
#[allow(unused_imports)]
pub use squid::*;
#[allow(unused_imports)]
pub use tls::*;
#[allow(unused_imports)]
pub use token_dir::*;
#[allow(unused_imports)]
pub use utc::*;
#[allow(unused_imports)]
pub use wait::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Locks a mutex, ignoring poisoning: a panicking test thread must not turn
/// every later assertion into a confusing `PoisonError`.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
