//! The end-to-end test of injection: the rolecall container that `rolecall
//! inject` adds to a pod is started for real, from the injected pod spec
//! alone, and each app container's env and mounts reach STS as its default
//! profile.
//!
//! What "for real" means here (this machine has no kubelet and no container
//! runtime, but the test runs as root and can make namespaces):
//!
//! - the pod's network: one new network namespace (`unshare -n`, loopback
//!   up), held by a `sleep` (the pause container). moto, the sidecar and
//!   every app command run in it, so the spec's fixed ports (9911 health,
//!   9912 endpoint) are the pod's own and cannot collide with the host;
//! - each volume: a temporary directory laid out as kubelet lays it out
//!   (AtomicWriter's `..data` layout for the projected token and the
//!   downwardAPI config, group `fsGroup`; a setgid 0777 dir for an
//!   emptyDir);
//! - each container: its own mount namespace whose root is a tmpfs with the
//!   host's `/usr`, `/work`, ... bound in, a fresh `/etc` (links to the
//!   host's files), `/run` and `/tmp`, and every `volumeMounts` entry
//!   bind-mounted at its `mountPath` UNCHANGED (read-only when the spec says
//!   so), then `chroot`; the sidecar runs as the spec's `runAsUser` /
//!   `runAsGroup` with no capabilities and `no_new_privs`, and with its
//!   `readOnlyRootFilesystem` everything but its volumes is read-only;
//! - the one addition to the spec: `AWS_ENDPOINT_URL_STS` (an env variable
//!   the sidecar already reads) points the sidecar's STS calls, and the AWS
//!   CLI's own `sts get-caller-identity`, at moto.
//!
//! Not proven here: the image (the sidecar is the test's binary), the
//! probes' timing, `resources`, the emptyDirs' `medium: Memory` /
//! `sizeLimit`, seccomp, and the app commands run as root (the Python tools
//! live under /root); a non-root reader with the pod's fsGroup is checked
//! with `cat` and the credential_process helper instead.
//!
//! Needs moto and the AWS CLI (`make venv`, or `ROLECALL_VENV`) and root:
//! `make acceptance` runs it with
//! `ROLECALL_VENV=$PWD/.venv cargo test --test inject_e2e -- --ignored`.
#![cfg(feature = "inject")]

mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;
use support::{http_get_blocking, jwt, now_unix, venv};

const ACCOUNT: &str = "111122223333";
/// moto's port inside the pod's network namespace (nothing else is there).
const MOTO_PORT: u16 = 5000;
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The workload: `app` gets two plain profiles and a chained one (process
/// mode, the default), `worker` one profile in endpoint mode.
const WORKLOAD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: e2e
  namespace: e2e
  labels:
    rolecall.dev/inject: "true"
  annotations:
    rolecall.dev/region: us-east-1
    rolecall.dev/role.reader: arn:aws:iam::111122223333:role/reader
    rolecall.dev/role.writer: arn:aws:iam::111122223333:role/writer
    rolecall.dev/role.logs: arn:aws:iam::111122223333:role/logs
    rolecall.dev/config: |
      profiles:
        audit:
          role_arn: arn:aws:iam::111122223333:role/audit
          source_profile: reader
    rolecall.dev/profiles.app: reader, writer, audit
    rolecall.dev/profiles.worker: logs
    rolecall.dev/mode.worker: endpoint
spec:
  containers:
    - name: app
      image: registry.example/app:1.0
    - name: worker
      image: registry.example/worker:1.0
"#;

// ------------------------------------------------------------------ plumbing

/// A child process killed (SIGKILL) and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Paths and names spliced into the namespace scripts: only characters a
/// shell leaves alone.
fn plain(s: &str) -> &str {
    assert!(
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)),
        "not a plain path: {s:?}"
    );
    s
}

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn list(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

// ------------------------------------------------------------------ the pod's network

/// The pod's network namespace, held by a `sleep` (the pause container).
struct PodNet {
    holder: Guard,
}

impl PodNet {
    fn new() -> PodNet {
        let mut child = Command::new("unshare")
            .args([
                "-n",
                "sh",
                "-c",
                "ip link set lo up && echo up && exec sleep 3600",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare -n (the test needs root)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the holder's line");
        assert_eq!(line.trim(), "up", "the pod's network namespace");
        PodNet {
            holder: Guard(child),
        }
    }

    fn ns(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.0.id())
    }

    /// `f` on a thread that joined the pod's network namespace.
    fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = fs::File::open(self.ns()).expect("open the pod's netns");
        std::thread::scope(|s| {
            s.spawn(|| {
                use std::os::fd::AsRawFd;
                // SAFETY: setns on this thread only, with an fd we own.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("the thread in the pod's netns")
        })
    }

    /// `cmd` (a program and its arguments) as a process in the pod's network.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns()))
            .arg("--")
            .arg(program);
        cmd
    }
}

// ------------------------------------------------------------------ kubelet's volumes

/// kubelet's AtomicWriter: `DIR/..TS/<files>`, `..data -> ..TS`, and
/// `DIR/<file> -> ..data/<file>`; the files owned by root, group `fs_group`.
fn atomic_writer(dir: &Path, files: &[(&str, &str, u32)], fs_group: u32) {
    let ts = "..2026_12_07_20_00_00.000000001";
    fs::create_dir_all(dir.join(ts)).expect("data dir");
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(dir.join(ts), fs::Permissions::from_mode(0o755)).expect("chmod");
    for (name, content, mode) in files {
        let file = dir.join(ts).join(name);
        fs::write(&file, content).expect("volume file");
        chown(&file, Some(0), Some(fs_group)).expect("chown");
        fs::set_permissions(&file, fs::Permissions::from_mode(*mode)).expect("chmod");
    }
    symlink(ts, dir.join("..data")).expect("..data");
    for (name, _, _) in files {
        symlink(format!("..data/{name}"), dir.join(name)).expect("file link");
    }
}

/// Each of the pod's volumes as a directory under `root`.
fn lay_out_volumes(pod: &Value, root: &Path) -> BTreeMap<String, PathBuf> {
    let annotations = get(pod, &["metadata", "annotations"]);
    let fs_group = get(pod, &["spec", "securityContext", "fsGroup"])
        .as_u64()
        .expect("the injected fsGroup") as u32;
    let mut dirs = BTreeMap::new();
    for volume in list(get(pod, &["spec", "volumes"])) {
        let name = text(&volume["name"]).to_owned();
        let dir = root.join(plain(&name));
        if let Some(projected) = volume.get("projected") {
            let sources = list(&projected["sources"]);
            assert_eq!(sources.len(), 1, "{name}: one projected source");
            let sa = &sources[0]["serviceAccountToken"];
            let token = jwt(
                "https://oidc.eks.us-east-1.amazonaws.com/id/E2E",
                "system:serviceaccount:e2e:default",
                text(&sa["audience"]),
                now_unix() + sa["expirationSeconds"].as_u64().expect("expirationSeconds"),
            );
            atomic_writer(&dir, &[(text(&sa["path"]), &token, 0o640)], fs_group);
        } else if let Some(downward) = volume.get("downwardAPI") {
            let files: Vec<(String, String)> = list(&downward["items"])
                .iter()
                .map(|item| {
                    let field = text(&item["fieldRef"]["fieldPath"]);
                    let key = field
                        .strip_prefix("metadata.annotations['")
                        .and_then(|k| k.strip_suffix("']"))
                        .unwrap_or_else(|| panic!("{name}: unsupported fieldPath {field}"));
                    (
                        text(&item["path"]).to_owned(),
                        text(&annotations[key]).to_owned(),
                    )
                })
                .collect();
            let files: Vec<(&str, &str, u32)> = files
                .iter()
                .map(|(p, c)| (p.as_str(), c.as_str(), 0o644))
                .collect();
            atomic_writer(&dir, &files, fs_group);
        } else if volume.get("emptyDir").is_some() {
            fs::create_dir(&dir).expect("emptyDir");
            chown(&dir, Some(0), Some(fs_group)).expect("chown");
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o2777)).expect("chmod");
        } else {
            panic!("{name}: a volume kind this test does not lay out: {volume:?}");
        }
        dirs.insert(name, dir);
    }
    dirs
}

// ------------------------------------------------------------------ containers

/// How one container of the pod is started.
struct Container<'a> {
    spec: &'a Value,
    volumes: &'a BTreeMap<String, PathBuf>,
    /// The (empty) directory the container's root is mounted on.
    root: PathBuf,
}

/// Builds the container's root (see the module doc) in `$R`: the host's
/// top-level links, and the directories named in `$KEEP` (the system's, the
/// repository's, the venv's: nothing else of the host), always read-only
/// (no container writes to the host); `$RO` is 1 for a read-only root.
const OUTER: &str = r#"mount -t tmpfs -o mode=755 pod-root "$R"
for p in /*; do
  n=${p#/}
  if [ -L "$p" ]; then ln -s "$(readlink "$p")" "$R/$n"
  elif [ -d "$p" ] && case " $KEEP " in *" $n "*) true ;; *) false ;; esac; then
    mkdir "$R/$n"; mount --rbind "$p" "$R/$n"
    mount -o remount,bind,ro "$R/$n"
  fi
done
for n in proc sys dev; do mkdir "$R/$n"; mount --rbind "/$n" "$R/$n"; done
mkdir "$R/run" "$R/etc" "$R/tmp" "$R/.host-etc" "$R/.pod-volumes"
mount -t tmpfs -o mode=755 pod-run "$R/run"
mount -t tmpfs -o mode=1777 pod-tmp "$R/tmp"
mount -t tmpfs -o mode=755 pod-etc "$R/etc"
mount --rbind /etc "$R/.host-etc"
mount -o remount,bind,ro "$R/.host-etc"
for p in /etc/* /etc/.[!.]*; do
  [ -e "$p" ] || [ -L "$p" ] || continue
  ln -s "/.host-etc/${p#/etc/}" "$R/etc/${p#/etc/}"
done
"#;

/// The host's top-level directories a container sees: the system's, and
/// those holding the repository, the test binary and the venv.
fn kept_dirs() -> Vec<String> {
    let mut keep: Vec<String> = ["usr", "var", "opt"].map(String::from).to_vec();
    for path in [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        PathBuf::from(env!("CARGO_BIN_EXE_rolecall")),
        venv(),
        fs::canonicalize(venv().join("bin/python")).unwrap_or_default(),
    ] {
        let top = path
            .components()
            .nth(1)
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        if let Some(top) = top.filter(|t| !keep.contains(t)) {
            keep.push(plain(&top).to_owned());
        }
    }
    keep
}

impl Container<'_> {
    /// The shell script that mounts the volumes and execs `"$@"` as `user`.
    fn script(&self, user: Option<(u64, u64)>) -> String {
        let root = plain(self.root.to_str().expect("utf-8 root"));
        let read_only = self.spec["securityContext"]["readOnlyRootFilesystem"].as_bool();
        let ro = u8::from(read_only == Some(true));
        let keep = kept_dirs().join(" ");
        let mut outer = format!("set -eu\nR={root}\nRO={ro}\nKEEP='{keep}'\n{OUTER}");
        let mut inner = String::from("set -eu\n");
        for (i, mount) in list(&self.spec["volumeMounts"]).iter().enumerate() {
            let source = &self.volumes[text(&mount["name"])];
            let target = plain(text(&mount["mountPath"]));
            outer += &format!(
                "mkdir \"$R/.pod-volumes/{i}\"; mount --bind {} \"$R/.pod-volumes/{i}\"\n",
                plain(source.to_str().expect("utf-8 path"))
            );
            inner += &format!(
                "mkdir -p {target}; mount --bind /.pod-volumes/{i} {target}; umount /.pod-volumes/{i}\n"
            );
            if mount["readOnly"].as_bool() == Some(true) {
                inner += &format!("mount -o remount,bind,ro {target}\n");
            }
        }
        // readOnlyRootFilesystem: nothing writable but the volumes.
        if ro == 1 {
            inner += "for d in /etc /run /tmp /; do mount -o remount,ro $d; done\n";
        }
        inner += "cd /\n";
        inner += &match user {
            Some((uid, gid)) => format!(
                "exec setpriv --reuid={uid} --regid={gid} --clear-groups --no-new-privs \
                 --inh-caps=-all --bounding-set=-all -- \"$@\"\n"
            ),
            None => "exec \"$@\"\n".to_owned(),
        };
        outer += &format!(
            "exec chroot \"$R\" /bin/sh -c '{}' sh \"$@\"\n",
            inner.replace('\'', "'\\''")
        );
        outer
    }

    /// `argv` in the container, in the pod's network, with the spec's env
    /// (`value` entries) plus `extra_env`.
    fn command(
        &self,
        net: &PodNet,
        user: Option<(u64, u64)>,
        extra_env: &[(&str, &str)],
        argv: &[OsString],
    ) -> Command {
        fs::create_dir_all(&self.root).expect("container root dir");
        let mut cmd = net.command(Path::new("unshare"));
        cmd.args(["-m", "--propagation", "private", "--", "sh", "-c"])
            .arg(self.script(user))
            .arg("sh")
            .args(argv)
            .env_clear()
            .env("PATH", PATH);
        for var in list(&self.spec["env"]) {
            let value = var["value"]
                .as_str()
                .unwrap_or_else(|| panic!("env {var:?}: only `value` is supported"));
            cmd.env(text(&var["name"]), value);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        cmd
    }
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(mut cmd: Command) -> Ran {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ------------------------------------------------------------------ the test

fn inject(workload: &str, scratch: &Path) -> Value {
    let input = scratch.join("workload.yaml");
    fs::write(&input, workload).expect("write the workload");
    let out = Command::new(env!("CARGO_BIN_EXE_rolecall"))
        .args(["inject", "-f"])
        .arg(&input)
        .output()
        .expect("run rolecall inject");
    assert!(
        out.status.success(),
        "rolecall inject: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml_ng::from_slice(&out.stdout).expect("the injected pod parses")
}

fn container<'a>(list_of: &'a Value, name: &str) -> &'a Value {
    list(list_of)
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The health port and path of the startup probe (a named port resolved).
fn startup_probe(sidecar: &Value) -> (u16, String) {
    let get = &sidecar["startupProbe"]["httpGet"];
    let port = match &get["port"] {
        Value::Number(n) => n.as_u64().expect("port"),
        Value::String(name) => list(&sidecar["ports"])
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_u64())
            .expect("the named port"),
        other => panic!("probe port {other:?}"),
    };
    (port as u16, text(&get["path"]).to_owned())
}

/// The sidecar's argv from the spec: the image's entrypoint (this build's
/// binary) unless `command` is set, then `args`.
fn sidecar_argv(sidecar: &Value) -> Vec<OsString> {
    assert!(
        sidecar.get("command").is_none(),
        "the injected container sets no command"
    );
    let mut argv = vec![OsString::from(env!("CARGO_BIN_EXE_rolecall"))];
    argv.extend(
        list(&sidecar["args"])
            .iter()
            .map(|a| OsString::from(text(a))),
    );
    argv
}

fn assert_assumed(profile: &str, ran: &Ran) {
    assert!(ran.ok, "profile {profile}: {}", ran.stderr);
    let want = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{profile}/");
    assert!(
        ran.stdout.trim().starts_with(&want),
        "profile {profile}: expected an ARN starting with {want}, got {:?}",
        ran.stdout
    );
}

#[test]
#[ignore = "needs root, moto and the AWS CLI: run by make acceptance"]
fn the_injected_sidecar_starts_and_each_container_assumes_its_default_profile() {
    preflight();
    let scratch = tempfile::Builder::new()
        .prefix("rolecall-e2e-")
        .tempdir()
        .expect("scratch dir");
    let scratch = scratch.path();
    let pod = inject(WORKLOAD, scratch);
    let spec = &pod["spec"];
    let sidecar = &list(&spec["initContainers"])[0];
    assert_eq!(text(&sidecar["name"]), "rolecall");
    assert_eq!(text(&sidecar["restartPolicy"]), "Always");
    let volumes = lay_out_volumes(&pod, &scratch.join("volumes"));

    let net = PodNet::new();
    let venv = venv();
    let moto_log = fs::File::create(scratch.join("moto.log")).expect("moto log");
    let _moto = Guard(
        net.command(&venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &MOTO_PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(moto_log.try_clone().expect("log"))
            .stderr(moto_log)
            .spawn()
            .expect("start moto_server (make venv, or set ROLECALL_VENV)"),
    );
    net.within(|| {
        wait_for("moto listens", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", MOTO_PORT)).is_ok()
        })
    });
    let sts = format!("http://127.0.0.1:{MOTO_PORT}");

    // The sidecar, as the spec says: its mounts, its args, its user.
    let security = &sidecar["securityContext"];
    let user = (
        security["runAsUser"].as_u64().expect("runAsUser"),
        security["runAsGroup"].as_u64().expect("runAsGroup"),
    );
    let rolecall = Container {
        spec: sidecar,
        volumes: &volumes,
        root: scratch.join("roots/rolecall"),
    };
    let log_path = scratch.join("rolecall.log");
    let log = fs::File::create(&log_path).expect("sidecar log");
    let mut running = Guard(
        rolecall
            .command(
                &net,
                Some(user),
                &[("AWS_ENDPOINT_URL_STS", &sts)],
                &sidecar_argv(sidecar),
            )
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the sidecar"),
    );
    let (port, path) = startup_probe(sidecar);
    let sidecar_log = || fs::read_to_string(&log_path).unwrap_or_default();
    net.within(|| {
        wait_for("the startup probe passes", Duration::from_secs(60), || {
            if let Ok(Some(status)) = running.0.try_wait() {
                panic!("the sidecar exited ({status}):\n{}", sidecar_log());
            }
            http_get_blocking(port, &path).is_some_and(|(code, _)| code == 200)
        })
    });

    check_read_only_root(&rolecall, &net);
    check_app(&pod, &volumes, &net, scratch, &sts);
    check_worker(&pod, &volumes, &net, scratch, &sts);

    // Graceful shutdown, as kubelet stops a native sidecar.
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(running.0.id() as i32, libc::SIGTERM) };
    wait_for(
        "the sidecar stops on SIGTERM",
        Duration::from_secs(30),
        || matches!(running.0.try_wait(), Ok(Some(_))),
    );
    let status = running.0.wait().expect("wait");
    assert!(status.success(), "exit {status}:\n{}", sidecar_log());
}

/// Root and util-linux's and iproute2's tools, or a message naming them.
fn preflight() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "inject_e2e makes namespaces and mounts: run it as root"
    );
    for tool in ["unshare", "nsenter", "setpriv", "chroot", "mount", "ip"] {
        let found = PATH.split(':').any(|d| Path::new(d).join(tool).is_file());
        assert!(found, "inject_e2e needs `{tool}` (util-linux, iproute2)");
    }
}

/// In a container made like the sidecar's, every mount but its volumes
/// (and /proc, /sys, /dev) is read-only, and no volume is reachable twice.
fn check_read_only_root(sidecar: &Container, net: &PodNet) {
    let ran = sh(sidecar, net, None, "cat /proc/self/mountinfo");
    assert!(ran.ok, "{}", ran.stderr);
    let volumes: Vec<&str> = list(&sidecar.spec["volumeMounts"])
        .iter()
        .filter(|m| m["readOnly"].as_bool() != Some(true))
        .map(|m| text(&m["mountPath"]))
        .collect();
    let writable: Vec<&str> = ran
        .stdout
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let (point, opts) = (fields[4], fields[5]);
            let kernel = ["/proc", "/sys", "/dev"]
                .iter()
                .any(|k| point == *k || point.starts_with(&format!("{k}/")));
            let ours = volumes.contains(&point);
            (opts.split(',').any(|o| o == "rw") && !kernel && !ours).then_some(point)
        })
        .collect();
    assert!(
        writable.is_empty(),
        "writable in the sidecar's root: {writable:?}"
    );
    assert!(!ran.stdout.contains("/.pod-volumes/"), "{}", ran.stdout);
}

/// The AWS CLI in `c`: `sts get-caller-identity` with `args`.
fn caller_arn(c: &Container, net: &PodNet, sts: &str, args: &[&str]) -> Ran {
    let mut argv = vec![venv().join("bin/aws").into_os_string()];
    argv.extend(
        [
            "sts",
            "get-caller-identity",
            "--query",
            "Arn",
            "--output",
            "text",
        ]
        .iter()
        .chain(args)
        .map(OsString::from),
    );
    let env = vec![
        ("AWS_ENDPOINT_URL_STS", sts),
        ("HOME", "/tmp"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    run(c.command(net, None, &env, &argv))
}

fn sh(c: &Container, net: &PodNet, user: Option<(u64, u64)>, script: &str) -> Ran {
    run(c.command(
        net,
        user,
        &[],
        &["/bin/sh".into(), "-c".into(), script.into()],
    ))
}

/// `app` (process mode): its default profile, the two others by name, and a
/// reader that is not root but has the pod's fsGroup.
fn check_app(
    pod: &Value,
    volumes: &BTreeMap<String, PathBuf>,
    net: &PodNet,
    scratch: &Path,
    sts: &str,
) {
    let spec = container(&pod["spec"]["containers"], "app");
    let app = Container {
        spec,
        volumes,
        root: scratch.join("roots/app"),
    };
    assert_assumed("reader", &caller_arn(&app, net, sts, &[]));
    assert_assumed(
        "writer",
        &caller_arn(&app, net, sts, &["--profile", "writer"]),
    );
    assert_assumed(
        "audit",
        &caller_arn(&app, net, sts, &["--profile", "audit"]),
    );
    // The mount is read-only, as the spec says.
    let write = sh(&app, net, None, "touch /aws/x");
    assert!(
        !write.ok && write.stderr.contains("Read-only"),
        "{}",
        write.stderr
    );

    // A reader with uid 1000 and the pod's fsGroup as its only extra group
    // reads the files and runs the credential_process line of its default
    // profile; without the group it cannot.
    let fs_group = pod["spec"]["securityContext"]["fsGroup"]
        .as_u64()
        .expect("fsGroup");
    let line = "sed -n '/^\\[profile reader\\]/,/^\\[/s/^credential_process *= *//p' /aws/config";
    let as_member = format!(
        "exec setpriv --reuid=1000 --regid=1000 --groups={fs_group} -- sh -c \"cat /aws/config >/dev/null && $({line})\""
    );
    let helper = sh(&app, net, None, &as_member);
    assert!(
        helper.ok,
        "credential_process as uid 1000 + fsGroup: {}",
        helper.stderr
    );
    let creds: serde_json::Value =
        serde_json::from_str(&helper.stdout).expect("credential_process JSON");
    assert_eq!(creds["Version"], 1, "credential_process JSON version");
    assert!(creds["AccessKeyId"].as_str().is_some_and(|k| !k.is_empty()));
    let stranger = sh(
        &app,
        net,
        None,
        "exec setpriv --reuid=1000 --regid=1000 --clear-groups -- cat /aws/config",
    );
    assert!(
        !stranger.ok,
        "uid 1000 without the fsGroup read /aws/config"
    );
}

/// `worker` (endpoint mode): its one profile through the endpoint; its /aws
/// holds only its own set (nothing of the app's profiles).
fn check_worker(
    pod: &Value,
    volumes: &BTreeMap<String, PathBuf>,
    net: &PodNet,
    scratch: &Path,
    sts: &str,
) {
    let spec = container(&pod["spec"]["containers"], "worker");
    let worker = Container {
        spec,
        volumes,
        root: scratch.join("roots/worker"),
    };
    assert_assumed("logs", &caller_arn(&worker, net, sts, &[]));
    // File names only: the endpoint token is a secret.
    let files = sh(
        &worker,
        net,
        None,
        "ls -A /aws; grep -l -r -E 'reader|writer|audit' /aws/ || true",
    );
    assert!(files.ok, "{}", files.stderr);
    assert!(
        files.stdout.lines().any(|l| l == "endpoint-token"),
        "the worker's /aws holds its endpoint token:\n{}",
        files.stdout
    );
    for other in ["reader", "writer", "audit"] {
        assert!(
            !files.stdout.contains(other),
            "the worker's /aws shows the app's profile {other}:\n{}",
            files.stdout
        );
    }
    let refused = caller_arn(&worker, net, sts, &["--profile", "reader"]);
    assert!(
        !refused.ok,
        "the worker assumed the app's profile: {}",
        refused.stdout
    );
}
