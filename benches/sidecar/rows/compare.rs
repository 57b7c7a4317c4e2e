//! Row `compare`: rolecall side by side with an AWS CLI loop and a boto3
//! refresher (benches/sidecar/boto3_refresher.py).

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::child::*;
use crate::env::*;
use crate::helpers::*;
use crate::procfs::*;
use crate::report::*;
use crate::support::{self, FakeSts, TokenDir};
use crate::{ACCOUNT, REGION, SIGKILL, SIGUSR1};

pub(crate) fn tool_env(cmd: &mut Command, env: &Env, home: &Path) {
    let path = format!(
        "{}:{}",
        env.venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("LANG", "C.UTF-8");
}

pub(crate) struct Side {
    pub(crate) steady_kb: f64,
    pub(crate) peak_kb: f64,
    /// CPU of one refresh round of 10 profiles, ms.
    pub(crate) round_ms: f64,
    /// CPU from process start to the first round done, ms.
    pub(crate) cold_ms: f64,
    pub(crate) wall_ms: f64,
    pub(crate) note: String,
}

/// (a) A shell loop around the AWS CLI: one round of 10 profiles.
pub(crate) fn cli_loop(env: &Env, sts: &FakeSts, token: &TokenDir) -> Side {
    const N: usize = 10;
    let home = tempfile::tempdir().expect("home");
    let done = home.path().join("round-done");
    let profiles: Vec<String> = (1..=N).map(|i| format!("p{i}")).collect();
    let script = format!(
        r#"for p in {profiles}; do
  aws sts assume-role-with-web-identity --role-arn "arn:aws:iam::{ACCOUNT}:role/$p" \
    --role-session-name bench --web-identity-token "$(cat {token})" \
    --endpoint-url {endpoint} --region {REGION} --output json > {out}/$p.json
done
: > {done}
sleep 60 & wait"#,
        profiles = profiles.join(" "),
        token = token.path().display(),
        endpoint = sts.endpoint(),
        out = home.path().display(),
        done = done.display(),
    );
    let calls0 = sts.calls();
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script]);
    tool_env(&mut cmd, env, home.path());
    let errors = home.path().join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).expect("stderr file"))
        .process_group(0);
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("start bash");
    let pid = child.id();
    let mut peak_tree = 0u64;
    let mut peak_single = 0u64;
    let deadline = t0 + Duration::from_secs(180);
    while !done.exists() {
        let tree = process_tree(pid);
        let rss: Vec<u64> = tree.iter().map(|&p| statm_rss_kb(p)).collect();
        peak_tree = peak_tree.max(rss.iter().sum());
        peak_single = peak_single.max(rss.iter().copied().max().unwrap_or(0));
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            send_signal_quiet(-(pid as i32), SIGKILL);
            let _ = child.wait();
            let err = std::fs::read_to_string(&errors).unwrap_or_default();
            panic!("the AWS CLI loop did not finish within 180 s:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = t0.elapsed();
    let cpu = proc_cpu_with_children_ms(pid);
    // Between rounds: bash waiting on sleep.
    std::thread::sleep(Duration::from_secs(2));
    let steady: u64 = process_tree(pid).iter().map(|&p| statm_rss_kb(p)).sum();
    send_signal_quiet(-(pid as i32), SIGKILL);
    let _ = child.wait();
    let calls = sts.calls() - calls0;
    let err = std::fs::read_to_string(&errors).unwrap_or_default();
    assert_eq!(
        calls, N,
        "the AWS CLI loop made {calls} STS calls, want {N}:\n{err}"
    );
    for p in &profiles {
        let text =
            std::fs::read_to_string(home.path().join(format!("{p}.json"))).unwrap_or_default();
        assert!(
            text.contains("AccessKeyId"),
            "aws wrote no credentials for {p}"
        );
    }
    Side {
        steady_kb: steady as f64,
        peak_kb: peak_tree as f64,
        round_ms: cpu as f64,
        cold_ms: cpu as f64,
        wall_ms: ms(wall),
        note: format!(
            "peak of one process {peak_single} kB; every round starts 10 Python interpreters"
        ),
    }
}

/// (b) A small boto3 refresher: one client, one round, then sleeping.
pub(crate) fn boto3_refresher(env: &Env, sts: &FakeSts, token: &TokenDir) -> Side {
    const N: usize = 10;
    let home = tempfile::tempdir().expect("home");
    let script = manifest_dir().join("benches/sidecar/boto3_refresher.py");
    let out = home.path().join("credentials");
    let calls0 = sts.calls();
    let mut cmd = Command::new(env.venv.join("bin/python"));
    cmd.arg(&script)
        .arg(sts.endpoint())
        .arg(REGION)
        .arg(token.path())
        .arg(&out)
        .args(roles(N));
    tool_env(&mut cmd, env, home.path());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("start the boto3 refresher");
    let pid = child.id();
    let mut stdin: ChildStdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let read = |child: &mut Child, what: &str| -> serde_json::Value {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => serde_json::from_str(&line).expect("refresher JSON"),
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("the boto3 refresher did not finish {what} within 120 s:\n{err}");
            }
        }
    };
    let first = read(&mut child, "its first round");
    let first_wall = t0.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let steady = proc_mem(pid);
    writeln!(stdin, "refresh").expect("write to the refresher");
    let second = read(&mut child, "a second round");
    let m = proc_mem(pid);
    drop(stdin);
    let _ = poll(Duration::from_secs(5), Duration::from_millis(10), || {
        child.try_wait().ok().flatten()
    });
    let _ = child.kill();
    let _ = child.wait();
    let calls = sts.calls() - calls0;
    assert_eq!(
        calls,
        2 * N,
        "the boto3 refresher made {calls} STS calls, want {}",
        2 * N
    );
    assert_eq!(
        keys_in(&out).len(),
        N,
        "the boto3 refresher's credentials file"
    );
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0) * 1000.0;
    Side {
        steady_kb: steady.rss as f64,
        peak_kb: m.hwm as f64,
        round_ms: f(&second, "round_cpu"),
        cold_ms: f(&first, "cpu"),
        wall_ms: f(&second, "wall"),
        note: format!(
            "first round (with interpreter start and imports) {:.0} ms wall",
            ms(first_wall)
        ),
    }
}

/// rolecall doing the same job: 10 profiles, one SIGUSR1 round.
pub(crate) fn rolecall_side(env: &Env, sts: &FakeSts, token: &TokenDir) -> Side {
    let mut sc = Sidecar::start(env, &sts.endpoint(), 10, token);
    let mut meter = CpuMeter::new(sc.pid);
    sc.wait_written(10, Duration::from_millis(1), Duration::from_secs(30));
    let cold = meter.sample().0 as f64 / 1e6;
    std::thread::sleep(Duration::from_secs(2));
    let steady = sc.mem();
    let before = sc.keys();
    let (ns0, _) = meter.sample();
    let t0 = Instant::now();
    sc.signal(SIGUSR1);
    let t1 = sc.wait_all_changed(&before, Duration::from_millis(1), Duration::from_secs(10));
    // Let the round finish (status.json, metrics) before reading the CPU.
    std::thread::sleep(Duration::from_millis(500));
    let (ns1, _) = meter.sample();
    let m = sc.mem();
    Side {
        steady_kb: steady.rss as f64,
        peak_kb: m.hwm as f64,
        round_ms: (ns1 - ns0) as f64 / 1e6,
        cold_ms: cold,
        wall_ms: ms(t1 - t0),
        note: "SIGUSR1: refresh every profile now".into(),
    }
}

pub(crate) fn row_compare(env: &Env, r: &mut Report) {
    let sts = FakeSts::start();
    let token = TokenDir::new(&support::valid_jwt());
    eprintln!("   compare: rolecall");
    let rc = rolecall_side(env, &sts, &token);
    eprintln!("   compare: AWS CLI loop");
    let cli = cli_loop(env, &sts, &token);
    eprintln!("   compare: boto3 refresher");
    let boto = boto3_refresher(env, &sts, &token);
    let ratio = |x: f64, base: f64| {
        if base > 0.0 {
            format!("{:.1}×", x / base)
        } else {
            "∞".into()
        }
    };
    let mut d = String::from(
        "### The same job without rolecall (10 profiles, same fake STS, same run)\n\n\
         | | rolecall | AWS CLI loop (bash + aws) | boto3 refresher (one client) |\n\
         |---|---:|---:|---:|\n",
    );
    // One line of the table: each side's figure, the others with their
    // ratio to rolecall's.
    type Line = (&'static str, fn(&Side) -> f64, fn(f64) -> String);
    let ms = |v: f64| format!("{v:.1} ms");
    let lines: [Line; 4] = [
        ("resident between rounds", |s| s.steady_kb, mib),
        ("peak resident (process tree)", |s| s.peak_kb, mib),
        ("CPU for one refresh round", |s| s.round_ms, ms),
        ("CPU from start to the first round done", |s| s.cold_ms, ms),
    ];
    for (label, of, show) in lines {
        let (r, c, b) = (of(&rc), of(&cli), of(&boto));
        let _ = writeln!(
            d,
            "| {label} | {} | {} ({}) | {} ({}) |",
            show(r),
            show(c),
            ratio(c, r),
            show(b),
            ratio(b, r)
        );
    }
    let _ = writeln!(
        d,
        "| wall time of one round | {:.1} ms | {:.0} ms | {:.1} ms |",
        rc.wall_ms, cli.wall_ms, boto.wall_ms
    );
    let _ = writeln!(
        d,
        "\nrolecall: {}. AWS CLI loop: {}; between rounds only bash and `sleep` stay. \
         boto3: {}. CPU: rolecall from /proc/PID/task/*/schedstat, the CLI loop from bash's \
         utime+stime+cutime+cstime (10 ms ticks), boto3 from its own getrusage.",
        rc.note, cli.note, boto.note
    );
    r.details.push(d);
    r.line(
        "compare",
        "AWS CLI loop vs rolecall, one round of 10 profiles",
        format!(
            "the CLI loop uses {} the peak memory and {} the CPU per round ({} vs {}; {:.0} ms \
             vs {:.1} ms); between rounds bash + sleep hold {} ({})",
            ratio(cli.peak_kb, rc.peak_kb),
            ratio(cli.round_ms, rc.round_ms),
            mib(cli.peak_kb),
            mib(rc.peak_kb),
            cli.round_ms,
            rc.round_ms,
            mib(cli.steady_kb),
            ratio(cli.steady_kb, rc.steady_kb),
        ),
        "rolecall leads",
        Some(cli.peak_kb > rc.peak_kb && cli.round_ms > rc.round_ms),
    );
    r.line(
        "compare",
        "boto3 refresher vs rolecall, 10 profiles",
        format!(
            "the boto3 refresher uses {} the memory and {} the CPU per round ({} vs {}; {:.1} ms vs {:.1} ms)",
            ratio(boto.steady_kb, rc.steady_kb),
            ratio(boto.round_ms, rc.round_ms),
            mib(boto.steady_kb),
            mib(rc.steady_kb),
            boto.round_ms,
            rc.round_ms
        ),
        "rolecall leads",
        Some(boto.steady_kb > rc.steady_kb && boto.round_ms > rc.round_ms),
    );
}
