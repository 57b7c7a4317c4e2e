//! Shared support for rolecall's integration tests.
//!
//! Tests fake only the boundary (see STYLE.md, habit 10):
//!
//! - [`FakeSts`]: a real HTTP server on `127.0.0.1:0` that speaks the AWS
//!   Query protocol the way `aws-sdk-sts` sends it (`AssumeRoleWithWebIdentity`
//!   and `AssumeRole`), answers from a script of [`Reply`]s and records every
//!   request. It runs on its own thread with its own current-thread runtime,
//!   so it answers even while the test's runtime has paused time or is blocked.
//! - [`TokenDir`]: a temporary directory laid out the way kubelet's
//!   AtomicWriter lays out a projected service-account token volume, with
//!   AtomicWriter-style rotation.
//! - JWT helpers ([`jwt`], [`valid_jwt`], [`expired_jwt`], ...), time helpers
//!   ([`now_unix`], [`format_utc`], [`parse_utc`]), waiting helpers
//!   ([`wait_until`], [`wait_until_real`]), [`free_port`] and a strict
//!   [`parse_ini`] for asserting on rolecall's output files.
//!
//! Use it from a test file with `mod support;`.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};

mod fake_sts;
mod in_process;
mod ini;
mod jwt;
mod probe;
mod process;
mod token_dir;
mod utc;
mod wait;

#[allow(unused_imports)]
pub use fake_sts::*;
#[allow(unused_imports)]
pub use in_process::*;
#[allow(unused_imports)]
pub use ini::*;
#[allow(unused_imports)]
pub use jwt::*;
#[allow(unused_imports)]
pub use probe::*;
#[allow(unused_imports)]
pub use process::*;
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
