//! The Pod Identity agent's fixed addresses (design24 §1 F1, F3), for
//! real: in a network namespace of its own, `169.254.170.23` and
//! `fd00:ec2::23` are on `lo` and the fake agent listens on both at port
//! 80 with the agent's `Host` check on. rolecall with the default
//! `pod_identity_endpoint` (what EKS injects) gets its session, so does
//! the IPv6 URL; the agent reached as `127.0.0.1` refuses with 403 and
//! rolecall says `AgentHostRefused`.
//!
//! The test re-executes its own binary under `unshare -n` (root only);
//! it skips, saying why, when it is not root or `unshare` fails.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use support::fake_agent::FakeAgent;
use support::*;

const CHILD_ENV: &str = "ROLECALL_NETNS_CHILD";
const READER: &str = "arn:aws:iam::111122223333:role/reader";

/// Why this machine cannot run the child, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: unshare -n needs CAP_SYS_ADMIN".into());
    }
    match Command::new("unshare").args(["-n", "true"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "unshare -n true failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("unshare: {e}")),
    }
}

#[test]
fn the_agent_is_reached_at_its_own_addresses_only() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    if let Some(why) = cannot_run() {
        println!("SKIPPED pod_identity_netns: {why}");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new("unshare")
        .arg("-n")
        .arg("--")
        .arg(exe)
        .args(["--exact", "netns_child", "--include-ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the child failed:\n{text}");
    // A child that ran nothing (the filter matched no test) is a failure.
    assert!(text.contains("netns child: done"), "{text}");
}

/// Runs `ip ARGS`, panicking with its stderr.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rolecall once` under pod-identity against `agent_url` (the default
/// when `None`), publishing `reader`.
fn once(sts: &FakeSts, token: &TokenDir, out: &std::path::Path, agent_url: Option<&str>) -> Run {
    let mut c = rolecall_piped();
    c.arg("once").args([
        "--identity",
        "pod-identity",
        "--pod-identity-token-file",
        &token.path().display().to_string(),
        "--output-dir",
        &out.display().to_string(),
        "--region",
        "eu-west-1",
        "--sts-endpoint",
        &sts.endpoint(),
        "--credentials",
        TEST_MODE,
        "--profile",
        &format!("reader={READER}"),
    ]);
    if let Some(url) = agent_url {
        c.args(["--pod-identity-endpoint", url]);
    }
    run_for(&mut c, Duration::from_secs(30))
}

#[test]
#[ignore = "run inside unshare -n by the_agent_is_reached_at_its_own_addresses_only"]
fn netns_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    ip(&["link", "set", "lo", "up"]);
    ip(&["addr", "add", "169.254.170.23/32", "dev", "lo"]);
    ip(&["-6", "addr", "add", "fd00:ec2::23/128", "dev", "lo"]);
    let addrs: Vec<SocketAddr> = ["169.254.170.23:80", "[fd00:ec2::23]:80", "127.0.0.1:80"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let sts = FakeSts::start();
    let token = TokenDir::new(&jwt(
        TEST_ISSUER,
        "system:serviceaccount:shop:cart",
        rolecall::agent::AUDIENCE,
        now_unix() + 24 * 3600,
    ));

    // The default endpoint, exactly as EKS injects it.
    let agent = FakeAgent::start_on(&addrs);
    agent.require_agent_host();
    agent.accept_token_file(&token.path());
    assert_eq!(
        FakeAgent::url_for(addrs[0]),
        rolecall::agent::DEFAULT_ENDPOINT
    );
    let out = tempfile::tempdir().unwrap();
    let r = once(&sts, &token, out.path(), None);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert_eq!(agent.hosts_seen(), ["169.254.170.23"]);
    assert_eq!(agent.statuses(), [200]);
    let credentials = parse_ini(&std::fs::read_to_string(out.path().join("credentials")).unwrap());
    assert!(credentials.contains_key("reader"), "{credentials:?}");
    drop(agent);

    // The IPv6 address.
    let agent = FakeAgent::start_on(&addrs);
    agent.require_agent_host();
    agent.accept_token_file(&token.path());
    let out = tempfile::tempdir().unwrap();
    let url = FakeAgent::url_for(addrs[1]);
    assert_eq!(url, "http://[fd00:ec2::23]/v1/credentials");
    let r = once(&sts, &token, out.path(), Some(&url));
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert_eq!(agent.hosts_seen(), ["[fd00:ec2::23]"]);
    drop(agent);

    // The same agent through 127.0.0.1: the Host check refuses, and
    // rolecall says what to do.
    let agent = FakeAgent::start_on(&addrs);
    agent.require_agent_host();
    agent.accept_token_file(&token.path());
    let out = tempfile::tempdir().unwrap();
    let r = once(
        &sts,
        &token,
        out.path(),
        Some("http://127.0.0.1/v1/credentials"),
    );
    assert_ne!(r.code, Some(0), "{}", r.describe());
    assert_eq!(agent.statuses(), [403]);
    assert_eq!(agent.hosts_seen(), ["127.0.0.1"]);
    assert!(r.stderr.contains("AgentHostRefused"), "{}", r.describe());
    assert!(r.stderr.contains("169.254.170.23"), "{}", r.describe());
    assert_eq!(sts.calls(), 2, "nothing chained from a refused agent");
    println!("netns child: done");
}
