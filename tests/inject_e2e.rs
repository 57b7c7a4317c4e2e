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

#[path = "support/pod.rs"]
mod pod;
mod support;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pod::{
    Container, Identity, PodNet, Ran, Sidecar, container, lay_out_volumes, list, run, sh,
    sidecar_argv, text,
};
use serde_yaml_ng::Value;
use support::venv;

const ACCOUNT: &str = "111122223333";

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
    pod::preflight("inject_e2e");
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
    let identity = Identity {
        issuer: "https://oidc.eks.us-east-1.amazonaws.com/id/E2E",
        subject: "system:serviceaccount:e2e:default",
    };
    let volumes = lay_out_volumes(&pod, &scratch.join("volumes"), &identity);

    let net = PodNet::new();
    let (_moto, sts) = net.start_moto(scratch);

    // The sidecar, as the spec says: its mounts, its args, its user; the
    // image's entrypoint /rolecall is this build's binary.
    let rolecall = Container {
        spec: sidecar,
        volumes: &volumes,
        root: scratch.join("roots/rolecall"),
        files: image_files(),
    };
    let mut running = Sidecar::start(
        &rolecall,
        &net,
        &[("AWS_ENDPOINT_URL_STS", &sts)],
        &sidecar_argv(sidecar, Path::new("/rolecall")),
        scratch.join("rolecall.log"),
    );
    running.wait_ready(&net, Duration::from_secs(60));

    check_read_only_root(&rolecall, &net);
    check_app(&pod, &volumes, &net, scratch, &sts);
    check_worker(&pod, &volumes, &net, scratch, &sts);

    // Graceful shutdown, as kubelet stops a native sidecar.
    let status = running.stop();
    assert!(status.success(), "exit {status}:\n{}", running.log());
}

/// The sidecar image's one file: its entrypoint, this build's binary.
fn image_files() -> Vec<(PathBuf, String)> {
    vec![(
        PathBuf::from(env!("CARGO_BIN_EXE_rolecall")),
        "/rolecall".to_owned(),
    )]
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
        files: Vec::new(),
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
        files: Vec::new(),
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
