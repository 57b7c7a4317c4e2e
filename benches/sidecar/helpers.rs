//! Small helpers: roles, tokens, statistics, polling, HTTP and INI reads.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::ACCOUNT;
use crate::support::{self, FakeSts, TEST_AUDIENCE, TEST_ISSUER, TEST_SUBJECT};

pub(crate) fn role(i: usize) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/p{i}")
}

pub(crate) fn roles(n: usize) -> Vec<String> {
    (1..=n).map(role).collect()
}

/// A token whose content differs for every `n` (its `exp` does).
pub(crate) fn token_n(n: u64) -> String {
    support::jwt(
        TEST_ISSUER,
        TEST_SUBJECT,
        TEST_AUDIENCE,
        support::now_unix() + 24 * 3600 + n,
    )
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    assert!(!v.is_empty(), "median of nothing");
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn kib(kb: u64) -> String {
    format!("{kb} kB")
}

pub(crate) fn mib(kb: f64) -> String {
    format!("{:.2} MiB", kb / 1024.0)
}

/// Polls `f` every `every` until it returns `Some`, at most `limit`.
pub(crate) fn poll<T>(
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// `[section] -> aws_access_key_id` of a credentials file.
pub(crate) fn keys_in(path: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let mut section = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_owned());
        } else if let Some(value) = line.strip_prefix("aws_access_key_id")
            && let Some(s) = &section
        {
            out.insert(s.clone(), value.trim_start_matches([' ', '=']).to_owned());
        }
    }
    out
}

/// `GET path` on the health listener: the body of a 200 answer.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    match support::http_get_blocking(addr.port(), path)? {
        (200, body) => Some(body),
        _ => None,
    }
}

/// Sum of every sample of `name` (any labels) whose labels contain `filter`.
pub(crate) fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let base = series.split('{').next()?;
            (base == name && series.contains(filter)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// One raw AssumeRoleWithWebIdentity POST to `sts` over a new connection;
/// the time from connect to the last byte of the answer.
pub(crate) fn raw_sts_round_trip(sts: &FakeSts, token: &str) -> Duration {
    let body = format!(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A{ACCOUNT}%3Arole%2Frtt\
         &RoleSessionName=rtt&WebIdentityToken={token}"
    );
    let t0 = Instant::now();
    let mut s = TcpStream::connect(sts.addr()).expect("connect to the fake STS");
    s.set_nodelay(true).ok();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        sts.addr(),
        body.len()
    )
    .expect("write to the fake STS");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read from the fake STS");
    let elapsed = t0.elapsed();
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "fake STS did not answer 200"
    );
    elapsed
}
