//! An injected pod started for real, without a kubelet or a container
//! runtime (the tests run as root and make namespaces): the machinery of
//! tests/inject_e2e.rs (its header says what "for real" means and what is not
//! proven), shared with tests/quickstart.rs, whose `kubectl` shim starts a pod
//! from the manifest the README's quick start pipes into `kubectl apply`.
//!
//! - [`PodNet`]: the pod's network namespace, held by a `sleep`;
//! - [`lay_out_volumes`]: each volume as kubelet lays it out, the projected
//!   token signed for an [`Identity`];
//! - [`Container`]: one container's mount namespace and root, its volumes
//!   bind-mounted at their `mountPath`s and the image's files (the sidecar's
//!   `/rolecall`) at theirs;
//! - [`Sidecar`]: the injected rolecall container started as its spec says.
//!
//! Included with `#[path = "support/pod.rs"] mod pod;` beside `mod support;`
//! (it uses `crate::support`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;

use crate::support::{http_get_blocking, jwt, now_unix, venv};

/// The PATH every container process starts with.
/// moto's port inside the pod's network namespace (nothing else is there).
pub const MOTO_PORT: u16 = 5000;
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ------------------------------------------------------------------ plumbing

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Paths and names spliced into the namespace scripts: only characters a
/// shell leaves alone.
pub fn plain(s: &str) -> &str {
    assert!(
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)),
        "not a plain path: {s:?}"
    );
    s
}

pub fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

pub fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

pub fn list(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

// ------------------------------------------------------------------ the pod's network

/// The pod's network namespace, held by a `sleep` (the pause container).
pub struct PodNet {
    holder: Guard,
}

impl PodNet {
    pub fn new() -> PodNet {
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

    pub fn ns(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.0.id())
    }

    /// `f` on a thread that joined the pod's network namespace.
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
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
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// moto's server in the pod's network on [`MOTO_PORT`], its output in
    /// `scratch/moto.log`, once it listens: the guard and its URL.
    pub fn start_moto(&self, scratch: &Path) -> (Guard, String) {
        let log = fs::File::create(scratch.join("moto.log")).expect("moto log");
        let moto = Guard(
            self.command(&venv().join("bin/moto_server"))
                .args(["-H", "127.0.0.1", "-p", &MOTO_PORT.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start moto_server (make venv, or set ROLECALL_VENV)"),
        );
        self.within(|| {
            wait_for("moto listens", Duration::from_secs(30), || {
                std::net::TcpStream::connect(("127.0.0.1", MOTO_PORT)).is_ok()
            })
        });
        (moto, format!("http://127.0.0.1:{MOTO_PORT}"))
    }
}

// ------------------------------------------------------------------ kubelet's volumes

/// kubelet's AtomicWriter: `DIR/..TS/<files>`, `..data -> ..TS`, and
/// `DIR/<file> -> ..data/<file>`; the files owned by root, group `fs_group`.
pub fn atomic_writer(dir: &Path, files: &[(&str, &str, u32)], fs_group: u32) {
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

/// Who the pod's projected service-account token says the pod is.
pub struct Identity<'a> {
    /// The cluster's OIDC issuer (`iss`).
    pub issuer: &'a str,
    /// `system:serviceaccount:NAMESPACE:NAME` (`sub`).
    pub subject: &'a str,
}

/// Each of the pod's volumes as a directory under `root`; the projected
/// token is signed for `identity`.
pub fn lay_out_volumes(pod: &Value, root: &Path, identity: &Identity) -> BTreeMap<String, PathBuf> {
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
                identity.issuer,
                identity.subject,
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
pub struct Container<'a> {
    pub spec: &'a Value,
    pub volumes: &'a BTreeMap<String, PathBuf>,
    /// The (empty) directory the container's root is mounted on.
    pub root: PathBuf,
    /// The image's files: (a host file, its path in the container), bound
    /// in read-only (the sidecar's `/rolecall`).
    pub files: Vec<(PathBuf, String)>,
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
pub fn kept_dirs() -> Vec<String> {
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
        for (i, (source, target)) in self.files.iter().enumerate() {
            let source = plain(source.to_str().expect("utf-8 path"));
            let target = plain(target);
            assert!(
                target.starts_with('/') && target[1..].chars().all(|c| c != '/'),
                "an image file at the root only: {target}"
            );
            outer += &format!(
                "touch \"$R{target}\"; mount --bind {source} \"$R{target}\"\n\
                 mount -o remount,bind,ro \"$R{target}\" # image file {i}\n"
            );
        }
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
    pub fn command(
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

pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(mut cmd: Command) -> Ran {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The container named `name` in the list `list_of`.
pub fn container<'a>(list_of: &'a Value, name: &str) -> &'a Value {
    list(list_of)
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The health port and path of the startup probe (a named port resolved).
pub fn startup_probe(sidecar: &Value) -> (u16, String) {
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

/// The sidecar's argv from the spec: the image's entrypoint unless
/// `command` is set, then `args`.
pub fn sidecar_argv(sidecar: &Value, entrypoint: &Path) -> Vec<OsString> {
    assert!(
        sidecar.get("command").is_none(),
        "the injected container sets no command"
    );
    let mut argv = vec![entrypoint.as_os_str().to_owned()];
    argv.extend(
        list(&sidecar["args"])
            .iter()
            .map(|a| OsString::from(text(a))),
    );
    argv
}

/// The spec's `runAsUser` and `runAsGroup`.
pub fn run_as(spec: &Value) -> (u64, u64) {
    let security = &spec["securityContext"];
    (
        security["runAsUser"].as_u64().expect("runAsUser"),
        security["runAsGroup"].as_u64().expect("runAsGroup"),
    )
}

/// Root and util-linux's and iproute2's tools, or a message naming them.
pub fn preflight(test: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{test} makes namespaces and mounts: run it as root"
    );
    for tool in ["unshare", "nsenter", "setpriv", "chroot", "mount", "ip"] {
        let found = PATH.split(':').any(|d| Path::new(d).join(tool).is_file());
        assert!(found, "{test} needs `{tool}` (util-linux, iproute2)");
    }
}

/// `script` run by `/bin/sh -c` in `c`.
pub fn sh(c: &Container, net: &PodNet, user: Option<(u64, u64)>, script: &str) -> Ran {
    run(c.command(
        net,
        user,
        &[],
        &["/bin/sh".into(), "-c".into(), script.into()],
    ))
}

/// The injected rolecall container, running as its spec says (its mounts,
/// its args, its user), its output in a log file.
pub struct Sidecar {
    pub child: Guard,
    pub log: PathBuf,
    /// The startup probe's port and path.
    pub probe: (u16, String),
}

impl Sidecar {
    /// Starts `c` (the sidecar's spec) with `argv` and `extra_env`.
    pub fn start(
        c: &Container,
        net: &PodNet,
        extra_env: &[(&str, &str)],
        argv: &[OsString],
        log: PathBuf,
    ) -> Sidecar {
        let file = fs::File::create(&log).expect("sidecar log");
        let child = c
            .command(net, Some(run_as(c.spec)), extra_env, argv)
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start the sidecar");
        Sidecar {
            child: Guard(child),
            log,
            probe: startup_probe(c.spec),
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the startup probe passes now; `Err` when the sidecar exited.
    pub fn probe_passes(&mut self, net: &PodNet) -> Result<bool, String> {
        if let Ok(Some(status)) = self.child.0.try_wait() {
            return Err(format!("the sidecar exited ({status}):\n{}", self.log()));
        }
        let (port, path) = &self.probe;
        Ok(net.within(|| http_get_blocking(*port, path).is_some_and(|(code, _)| code == 200)))
    }

    /// Waits (at most `timeout`) until the startup probe passes; panics
    /// with the log when the sidecar exits first.
    pub fn wait_ready(&mut self, net: &PodNet, timeout: Duration) {
        wait_for("the startup probe passes", timeout, || {
            self.probe_passes(net).unwrap_or_else(|e| panic!("{e}"))
        });
    }

    /// SIGTERM, as kubelet stops a native sidecar; its exit status, waited
    /// for at most 30 s.
    pub fn stop(&mut self) -> ExitStatus {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.0.id() as i32, libc::SIGTERM) };
        wait_for(
            "the sidecar stops on SIGTERM",
            Duration::from_secs(30),
            || matches!(self.child.0.try_wait(), Ok(Some(_))),
        );
        self.child.0.wait().expect("wait")
    }
}
