//! The README's quick start, run as a user would: every shell block between
//! `<!-- quickstart:start -->` and `<!-- quickstart:end -->`, in order, in
//! one bash session, verbatim. The session gets only what a test needs
//! added: `AWS_ENDPOINT_URL` (moto), fake credentials, a HOME of its own, and
//! a PATH with this build's `rolecall` (target/debug), the venv's AWS CLI and
//! the shims below in front.
//!
//! What runs for real:
//!
//! - every `aws` command, against moto (IAM, STS, EKS, ECR), with the values
//!   the README computes; moto holds what the prerequisites say exists, an
//!   EKS cluster named as the README's `CLUSTER` in its `REGION` (moto's
//!   `describe-cluster` returns `identity.oidc.issuer`);
//! - every `rolecall` command (`check --issuer ... -o trust-policy`,
//!   `inject`), this build's binary;
//! - `kubectl apply -f -`: the `kubectl` shim hands the piped manifest to
//!   this test, which starts the injected pod as tests/inject_e2e.rs does
//!   (tests/support/pod.rs: namespaces, kubelet's volume layouts, the
//!   sidecar as its spec says, its token signed for the cluster's issuer and
//!   `system:serviceaccount:shop:shop`), the sidecar calling moto's STS;
//! - `kubectl -n shop exec deploy/shop -c C -- CMD`: CMD in container C of
//!   that pod (its mounts, its env; the sidecar's `/rolecall` is this build's
//!   binary, as the image's entrypoint), `/rolecall status` included;
//! - `kubectl -n shop rollout status deploy/shop`: waits until the
//!   sidecar's startup probe passes (the app container starts after it);
//! - `kubectl delete namespace shop`: stops the sidecar with SIGTERM and
//!   requires a clean exit.
//!
//! What is simulated (the shims record each call; the test asserts the
//! arguments):
//!
//! - `kubectl version`: answers with a line naming the shim; the kubeconfig
//!   `aws eks update-kubeconfig` writes (for real, from moto's cluster) is
//!   checked to name the cluster but not read by the shim;
//! - `cargo install --locked --path .`: checked to run in a checkout of
//!   rolecall; not built (a release build takes minutes: `rolecall` is
//!   target/debug/rolecall on PATH);
//! - `images/build-local.sh`: not run (it builds the static release binary
//!   and the image with buildah; `make image-test` does that): the session's
//!   working directory is a copy of the checkout whose `images/` holds the
//!   shim, which only records that the image now "exists";
//! - `buildah login` / `buildah push`: recorded; the login must get the
//!   password from moto's `ecr get-login-password` on stdin, the push must
//!   come after the build and the login, to the repository the README
//!   created in moto; the injected manifest must name that image.
//!
//! Not proven: the app container's own command (`sleep`) is not started,
//! only `kubectl exec`'s; the app's exec runs as root, not its runAsUser
//! (the AWS CLI lives under /root here: inject_e2e checks a non-root reader);
//! the user's shell shares the pod's network namespace (where moto listens);
//! what inject_e2e's header lists (the image, probe timing, limits).
//!
//! Needs root, moto and the AWS CLI: `make acceptance` runs it with
//! `ROLECALL_VENV=$PWD/.venv cargo test --test quickstart -- --ignored`.
#![cfg(feature = "inject")]

#[path = "support/pod.rs"]
mod pod;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pod::{
    Container, Guard, Identity, PodNet, Sidecar, container, lay_out_volumes, list, run,
    sidecar_argv, text,
};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use serde_yaml_ng::Value;
use support::{jwt, now_unix, venv};

const START: &str = "<!-- quickstart:start -->";
const END: &str = "<!-- quickstart:end -->";

// ------------------------------------------------------------------ the README

/// One fenced shell block of the quick start and the heading above it.
struct Block {
    heading: String,
    code: String,
}

fn quickstart_section() -> String {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let start = readme
        .find(START)
        .expect("README.md has the quickstart:start marker");
    let end = readme
        .find(END)
        .expect("README.md has the quickstart:end marker");
    assert!(start < end, "quickstart markers out of order");
    readme[start + START.len()..end].to_owned()
}

/// The section's `sh`/`bash`/`shell` blocks, in order.
fn shell_blocks(section: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_owned();
            continue;
        }
        let Some(lang) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let mut code = String::new();
        for inner in lines.by_ref() {
            if inner.trim_start().starts_with("```") {
                break;
            }
            code += inner;
            code.push('\n');
        }
        if ["sh", "bash", "shell"].contains(&lang.trim()) {
            blocks.push(Block {
                heading: heading.clone(),
                code,
            });
        }
    }
    blocks
}

/// The value the README gives `NAME=` (the user's cluster and region).
fn readme_value(blocks: &[Block], name: &str) -> String {
    let prefix = format!("{name}=");
    blocks
        .iter()
        .flat_map(|b| b.code.lines())
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("the quick start sets no {name}"))
        .to_owned()
}

#[test]
fn the_quick_start_is_shell_that_parses_and_ends_with_a_clean_up() {
    let blocks = shell_blocks(&quickstart_section());
    assert!(blocks.len() >= 6, "{} shell blocks", blocks.len());
    for block in &blocks {
        let out = Command::new("bash")
            .args(["-n", "-c", &block.code])
            .output()
            .expect("bash -n");
        assert!(
            out.status.success(),
            "{}: {}",
            block.heading,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let last = blocks.last().expect("a block");
    assert!(last.heading.contains("Clean up"), "{}", last.heading);
    for name in ["CLUSTER", "REGION"] {
        assert!(
            !readme_value(&blocks, name).contains('$'),
            "{name}: a literal"
        );
    }
}

// ------------------------------------------------------------------ AWS (moto)

/// The session's environment for AWS: moto and fake credentials.
fn aws_env(moto: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", moto),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The venv's AWS CLI against moto, in the pod's network, output as JSON.
fn aws(net: &PodNet, moto: &str, args: &[&str]) -> Result<Json, String> {
    let mut cmd = net.command(&venv().join("bin/aws"));
    cmd.args(args)
        .args(["--output", "json"])
        .env_clear()
        .env("PATH", pod::PATH)
        .env("HOME", "/tmp")
        .envs(aws_env(moto))
        // The test's own calls (IAM and STS are global; EKS and ECR calls
        // say their region).
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .stdin(Stdio::null());
    let ran = run(cmd);
    if !ran.ok {
        return Err(ran.stderr);
    }
    if ran.stdout.trim().is_empty() {
        return Ok(Json::Null);
    }
    serde_json::from_str(&ran.stdout).map_err(|e| format!("{e}: {}", ran.stdout))
}

// ------------------------------------------------------------------ the shims

/// One program for every shim (`kubectl`, `buildah`, `cargo`, the checkout's
/// `images/build-local.sh`): it sends its name, argv, working directory and
/// (when the command reads it) stdin to the test over a Unix socket and
/// prints the answer.
const SHIM: &str = r#"import json, os, socket, sys
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
reads = ("-f" in args and args[args.index("-f") + 1 :][:1] == ["-"]) or "--password-stdin" in args
stdin = sys.stdin.read() if reads else ""
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ.get("ROLECALL_QUICKSTART_SOCKET", "@SOCKET@"))
s.sendall(json.dumps({"name": name, "args": args, "cwd": os.getcwd(), "stdin": stdin}).encode())
s.shutdown(socket.SHUT_WR)
data = b""
while chunk := s.recv(65536):
    data += chunk
reply = json.loads(data)
sys.stdout.write(reply["stdout"])
sys.stderr.write(reply["stderr"])
sys.exit(reply["code"])
"#;

fn write_shim(path: &Path, socket: &Path) {
    let python = venv().join("bin/python");
    let body = SHIM.replace("@SOCKET@", socket.to_str().expect("utf-8"));
    fs::write(path, format!("#!{}\n{body}", python.display())).expect("write shim");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod shim");
}

/// The session's working directory: the checkout's top level, linked,
/// except `images/`, whose `build-local.sh` is the shim.
fn checkout(scratch: &Path, socket: &Path) -> PathBuf {
    let dir = scratch.join("checkout");
    fs::create_dir_all(dir.join("images")).expect("checkout dir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in fs::read_dir(repo).expect("read the repository") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name != "images" && name != ".git" {
            symlink(entry.path(), dir.join(&name)).expect("link into the checkout");
        }
    }
    write_shim(&dir.join("images/build-local.sh"), socket);
    dir
}

/// A shim's request and the answer it prints.
struct Call {
    name: String,
    args: Vec<String>,
    cwd: String,
    stdin: String,
}

struct Reply {
    stdout: String,
    stderr: String,
    code: i32,
}

impl Reply {
    fn ok(stdout: impl Into<String>) -> Reply {
        Reply {
            stdout: stdout.into(),
            stderr: String::new(),
            code: 0,
        }
    }

    fn fail(stderr: impl Into<String>) -> Reply {
        Reply {
            stdout: String::new(),
            stderr: stderr.into() + "\n",
            code: 1,
        }
    }
}

/// The pod `kubectl apply` started.
struct RunningPod {
    pod: Value,
    volumes: BTreeMap<String, PathBuf>,
    sidecar: Sidecar,
}

/// What the shims act on: the "cluster" (namespaces, service accounts, the
/// one pod) and the image's life (built, logged in, pushed).
struct Harness<'a> {
    net: &'a PodNet,
    moto: String,
    issuer: String,
    scratch: PathBuf,
    calls: Vec<Vec<String>>,
    namespaces: BTreeSet<String>,
    service_accounts: BTreeSet<(String, String)>,
    pod: Option<RunningPod>,
    /// The sidecar image of every pod applied.
    applied_images: Vec<String>,
    image_built: bool,
    logged_in: BTreeSet<String>,
    pushed: Vec<String>,
}

impl Harness<'_> {
    fn handle(&mut self, call: Call) -> Reply {
        let mut line = vec![call.name.clone()];
        line.extend(call.args.iter().cloned());
        self.calls.push(line);
        match call.name.as_str() {
            "kubectl" => self.kubectl(&call),
            "buildah" => self.buildah(&call),
            "cargo" => cargo(&call),
            "build-local.sh" => {
                if !call.args.is_empty() {
                    return Reply::fail(format!("build-local.sh: unexpected {:?}", call.args));
                }
                self.image_built = true;
                Reply::ok(
                    "(quickstart test) localhost/rolecall:dev: not built here (make image-test builds it)\n",
                )
            }
            other => Reply::fail(format!("quickstart shim: no {other}")),
        }
    }

    fn buildah(&mut self, call: &Call) -> Reply {
        let args: Vec<&str> = call.args.iter().map(String::as_str).collect();
        match args.as_slice() {
            ["login", "--username", "AWS", "--password-stdin", registry] => {
                if call.stdin.trim().len() < 20 {
                    return Reply::fail("buildah login: no password on stdin");
                }
                self.logged_in.insert(registry.to_string());
                Reply::ok("Login Succeeded!\n")
            }
            ["push", "localhost/rolecall:dev", dest] => {
                let Some(image) = dest.strip_prefix("docker://") else {
                    return Reply::fail(format!("buildah push: not a registry: {dest}"));
                };
                let registry = image.split('/').next().unwrap_or_default();
                if !self.image_built {
                    return Reply::fail("buildah push: localhost/rolecall:dev: image not known");
                }
                if !self.logged_in.contains(registry) {
                    return Reply::fail(format!("buildah push: not logged in to {registry}"));
                }
                // ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME:TAG: the repository
                // must exist in moto.
                let region = registry.split('.').nth(3).unwrap_or_default();
                let repo = image[registry.len() + 1..]
                    .split(':')
                    .next()
                    .unwrap_or_default();
                let found = aws(
                    self.net,
                    &self.moto,
                    &[
                        "ecr",
                        "describe-repositories",
                        "--region",
                        region,
                        "--repository-names",
                        repo,
                    ],
                );
                if let Err(e) = found {
                    return Reply::fail(format!("buildah push: {image}: {e}"));
                }
                self.pushed.push(image.to_owned());
                Reply::ok("Writing manifest to image destination\n")
            }
            _ => Reply::fail(format!("buildah (quickstart shim): unexpected {args:?}")),
        }
    }
}

/// `cargo --version` (the real one's), and `cargo install --locked --path .`
/// in a checkout of rolecall.
fn cargo(call: &Call) -> Reply {
    if call.args == ["--version"] {
        let mut real = Command::new("cargo");
        real.arg("--version");
        let ran = run(real);
        return Reply {
            stdout: ran.stdout,
            stderr: ran.stderr,
            code: i32::from(!ran.ok),
        };
    }
    if call.args != ["install", "--locked", "--path", "."] {
        return Reply::fail(format!(
            "cargo (quickstart shim): unexpected {:?}",
            call.args
        ));
    }
    let manifest = fs::read_to_string(Path::new(&call.cwd).join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("name = \"rolecall\"") {
        return Reply::fail(format!(
            "cargo install: {} is no rolecall checkout",
            call.cwd
        ));
    }
    Reply::ok("(quickstart test) not built here: rolecall is target/debug/rolecall on PATH\n")
}

/// `kubectl`'s arguments: the namespace (`-n`), the rest.
fn kubectl_args(args: &[String]) -> (Option<String>, Vec<String>) {
    let mut namespace = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            rest.push(arg.clone());
            rest.extend(it.by_ref().cloned());
            break;
        }
        if arg == "-n" || arg == "--namespace" {
            namespace = it.next().cloned();
        } else if let Some(ns) = arg.strip_prefix("--namespace=") {
            namespace = Some(ns.to_owned());
        } else {
            rest.push(arg.clone());
        }
    }
    (namespace, rest)
}

impl Harness<'_> {
    fn kubectl(&mut self, call: &Call) -> Reply {
        let (namespace, rest) = kubectl_args(&call.args);
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        match rest.as_slice() {
            ["version", ..] => Reply::ok(
                "Client Version: (rolecall quickstart test shim)\nServer Version: (rolecall quickstart test shim)\n",
            ),
            ["apply", "-f", "-"] => self.apply(&call.stdin),
            ["rollout", "status", target, flags @ ..] => {
                self.rollout_status(namespace.as_deref(), target, flags)
            }
            ["exec", target, "-c", name, "--", argv @ ..] if !argv.is_empty() => {
                self.exec(namespace.as_deref(), target, name, argv)
            }
            ["delete", "namespace" | "ns", name] => self.delete_namespace(name),
            _ => Reply::fail(format!("kubectl (quickstart shim): unsupported {rest:?}")),
        }
    }

    fn apply(&mut self, stdin: &str) -> Reply {
        let mut out = String::new();
        for doc in serde_yaml_ng::Deserializer::from_str(stdin) {
            let Ok(object) = Value::deserialize(doc) else {
                return Reply::fail("error: the manifest is not YAML");
            };
            if object.is_null() {
                continue;
            }
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let ns = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned();
            match kind.as_str() {
                "Namespace" => {
                    self.namespaces.insert(name.clone());
                    out += &format!("namespace/{name} created\n");
                }
                "ServiceAccount" | "Deployment" if !self.namespaces.contains(&ns) => {
                    return Reply::fail(format!(
                        "Error from server (NotFound): namespaces \"{ns}\" not found"
                    ));
                }
                "ServiceAccount" => {
                    self.service_accounts.insert((ns, name.clone()));
                    out += &format!("serviceaccount/{name} created\n");
                }
                "Deployment" => {
                    if let Err(e) = self.start_pod(&object, &ns) {
                        return Reply::fail(e);
                    }
                    out += &format!("deployment.apps/{name} created\n");
                }
                other => return Reply::fail(format!("kubectl (quickstart shim): no {other}")),
            }
        }
        Reply::ok(out)
    }

    /// The Deployment's pod, started: its volumes laid out, its token signed
    /// for its service account, the injected sidecar running.
    fn start_pod(&mut self, deployment: &Value, ns: &str) -> Result<(), String> {
        if self.pod.is_some() {
            return Err("kubectl (quickstart shim): one pod only".into());
        }
        let template = &deployment["spec"]["template"];
        let mut pod = serde_yaml_ng::Mapping::new();
        pod.insert("metadata".into(), template["metadata"].clone());
        pod.insert("spec".into(), template["spec"].clone());
        let pod = Value::Mapping(pod);
        let sa = pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default");
        if !self
            .service_accounts
            .contains(&(ns.to_owned(), sa.to_owned()))
        {
            return Err(format!("pods: serviceaccount \"{sa}\" not found in {ns}"));
        }
        let sidecars = list(&pod["spec"]["initContainers"]);
        let sidecar = sidecars
            .iter()
            .find(|c| c["name"].as_str() == Some("rolecall"))
            .ok_or("the pod has no rolecall init container (not injected?)")?;
        if sidecar["restartPolicy"].as_str() != Some("Always") {
            return Err("rolecall is not a native sidecar".into());
        }
        self.applied_images.push(text(&sidecar["image"]).to_owned());
        let subject = format!("system:serviceaccount:{ns}:{sa}");
        let identity = Identity {
            issuer: &self.issuer,
            subject: &subject,
        };
        fs::create_dir_all(self.scratch.join("volumes")).expect("the pod's dir");
        let volumes = lay_out_volumes(&pod, &self.scratch.join("volumes"), &identity);
        let rolecall = Container {
            spec: sidecar,
            volumes: &volumes,
            root: self.scratch.join("roots/rolecall"),
            files: image_files(),
        };
        let sidecar = Sidecar::start(
            &rolecall,
            self.net,
            &[("AWS_ENDPOINT_URL_STS", &self.moto)],
            &sidecar_argv(sidecar, Path::new("/rolecall")),
            self.scratch.join("rolecall.log"),
        );
        self.pod = Some(RunningPod {
            pod,
            volumes,
            sidecar,
        });
        Ok(())
    }

    fn rollout_status(&mut self, ns: Option<&str>, target: &str, flags: &[&str]) -> Reply {
        if ns != Some("shop") || !["deploy/shop", "deployment/shop"].contains(&target) {
            return Reply::fail(format!("rollout status: no {target} in {ns:?}"));
        }
        if !flags.iter().all(|f| f.starts_with("--timeout=")) {
            return Reply::fail(format!("rollout status: flags {flags:?}"));
        }
        let net = self.net;
        let Some(running) = self.pod.as_mut() else {
            return Reply::fail(
                "Error from server (NotFound): deployments.apps \"shop\" not found",
            );
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match running.sidecar.probe_passes(net) {
                Ok(true) => {
                    return Reply::ok("deployment \"shop\" successfully rolled out\n");
                }
                Err(e) => return Reply::fail(e),
                Ok(false) if Instant::now() >= deadline => {
                    return Reply::fail(format!(
                        "error: timed out waiting for the condition\n{}",
                        running.sidecar.log()
                    ));
                }
                Ok(false) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn exec(&mut self, ns: Option<&str>, target: &str, name: &str, argv: &[&str]) -> Reply {
        if ns != Some("shop") || !["deploy/shop", "deployment/shop"].contains(&target) {
            return Reply::fail(format!("exec: no {target} in {ns:?}"));
        }
        let Some(running) = self.pod.as_ref() else {
            return Reply::fail(
                "Error from server (NotFound): deployments.apps \"shop\" not found",
            );
        };
        let spec = &running.pod["spec"];
        let is_sidecar = name == "rolecall";
        let spec = if is_sidecar {
            container(&spec["initContainers"], name)
        } else {
            container(&spec["containers"], name)
        };
        let c = Container {
            spec,
            volumes: &running.volumes,
            root: self.scratch.join(format!("roots/exec-{name}")),
            files: if is_sidecar {
                image_files()
            } else {
                Vec::new()
            },
        };
        // The app image's `aws` is the venv's (under /root: run as root).
        let path = format!("{}:{}", venv().join("bin").display(), pod::PATH);
        let mut env = vec![
            ("AWS_ENDPOINT_URL_STS", self.moto.as_str()),
            ("HOME", "/tmp"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        let user = if is_sidecar {
            Some(pod::run_as(spec))
        } else {
            env.push(("PATH", &path));
            None
        };
        let argv: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
        let ran = run(c.command(self.net, user, &env, &argv));
        Reply {
            stdout: ran.stdout,
            stderr: ran.stderr,
            code: i32::from(!ran.ok),
        }
    }

    fn delete_namespace(&mut self, name: &str) -> Reply {
        if !self.namespaces.remove(name) {
            return Reply::fail(format!(
                "Error from server (NotFound): namespaces \"{name}\" not found"
            ));
        }
        self.service_accounts.retain(|(ns, _)| ns != name);
        if let Some(mut running) = self.pod.take() {
            let status = running.sidecar.stop();
            if !status.success() {
                return Reply::fail(format!(
                    "the sidecar exited {status} on SIGTERM:\n{}",
                    running.sidecar.log()
                ));
            }
        }
        Reply::ok(format!("namespace \"{name}\" deleted\n"))
    }
}

/// The sidecar image's one file: its entrypoint, this build's binary.
fn image_files() -> Vec<(PathBuf, String)> {
    vec![(
        PathBuf::from(env!("CARGO_BIN_EXE_rolecall")),
        "/rolecall".to_owned(),
    )]
}

/// Answers the shims' calls on `listener` until a `quit` call.
fn serve(listener: &UnixListener, harness: &mut Harness) {
    for stream in listener.incoming() {
        let mut stream = stream.expect("accept a shim");
        let mut request = String::new();
        stream
            .read_to_string(&mut request)
            .expect("read a shim's call");
        let request: Json = serde_json::from_str(&request).expect("a shim's call is JSON");
        let strings = |v: &Json| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let call = Call {
            name: request["name"].as_str().unwrap_or_default().to_owned(),
            args: strings(&request["args"]),
            cwd: request["cwd"].as_str().unwrap_or_default().to_owned(),
            stdin: request["stdin"].as_str().unwrap_or_default().to_owned(),
        };
        if call.name == "quit" {
            return;
        }
        let reply = harness.handle(call);
        let reply = json!({"stdout": reply.stdout, "stderr": reply.stderr, "code": reply.code});
        let _ = stream.write_all(reply.to_string().as_bytes());
    }
}

/// Ends [`serve`] when dropped, also when the session panics (the scope
/// would otherwise wait for the server forever).
struct QuitOnDrop<'a>(&'a Path);

impl Drop for QuitOnDrop<'_> {
    fn drop(&mut self) {
        if let Ok(mut stream) = std::os::unix::net::UnixStream::connect(self.0) {
            let _ = stream.write_all(br#"{"name": "quit", "args": [], "cwd": "", "stdin": ""}"#);
        }
    }
}

// ------------------------------------------------------------------ the session

/// One bash session fed the blocks one at a time; its output (stdout and
/// stderr) comes back line by line.
struct Session {
    child: Guard,
    stdin: std::process::ChildStdin,
    lines: mpsc::Receiver<String>,
    transcript: String,
}

trait WaitBriefly {
    fn wait_timeout_free(&mut self) -> Option<std::process::ExitStatus>;
}

impl WaitBriefly for std::process::Child {
    /// Its exit status when it has exited or exits within 5 s (the output
    /// ended: it is exiting).
    fn wait_timeout_free(&mut self) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => return None,
            }
        }
    }
}

impl Session {
    fn start(net: &PodNet, cwd: &Path, env: &[(String, String)]) -> Session {
        let mut cmd = net.command(Path::new("bash"));
        cmd.args(["--noprofile", "--norc"])
            .current_dir(cwd)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start bash");
        let mut stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        writeln!(stdin, "exec 2>&1; set -e -o pipefail").expect("bash");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Session {
            child: Guard(child),
            stdin,
            lines,
            transcript: String::new(),
        }
    }

    /// Runs `block` (written to `file`) as `source FILE </dev/null`; its
    /// output, or a panic with the transcript when bash exits (a command
    /// failed: `set -e`).
    fn run(&mut self, n: usize, block: &Block, file: &Path) -> String {
        fs::write(file, &block.code).expect("write the block");
        let done = format!("@@quickstart block {n} done");
        writeln!(
            self.stdin,
            "source {} </dev/null\necho '{done}'",
            file.display()
        )
        .expect("feed bash");
        self.transcript += &format!("$ # {} (block {n})\n{}", block.heading, block.code);
        let mut output = String::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(300)) {
                Ok(line) if line == done => break,
                Ok(line) => {
                    output += &line;
                    output.push('\n');
                }
                Err(e) => {
                    self.transcript += &output;
                    panic!(
                        "block {n} ({}): {} ({e}):\n{}",
                        block.heading,
                        match self.child.0.wait_timeout_free() {
                            Some(status) =>
                                format!("bash exited {status} (a command failed: set -e)"),
                            None => "no end marker".to_owned(),
                        },
                        self.transcript
                    );
                }
            }
        }
        self.transcript += &output;
        output
    }
}

// ------------------------------------------------------------------ the test

#[test]
#[ignore = "needs root, moto and the AWS CLI: run by make acceptance"]
fn the_readme_quick_start_reaches_a_pod_using_two_roles() {
    pod::preflight("quickstart");
    let blocks = shell_blocks(&quickstart_section());
    let (cluster, region) = (
        readme_value(&blocks, "CLUSTER"),
        readme_value(&blocks, "REGION"),
    );
    let scratch = tempfile::Builder::new()
        .prefix("rolecall-quickstart-")
        .tempdir()
        .expect("scratch dir");
    let scratch = scratch.path();

    // AWS: moto in the network namespace the shell and the pod share.
    let net = PodNet::new();
    let (_moto, moto) = net.start_moto(scratch);
    let issuer = seed_cluster(&net, &moto, &cluster, &region);

    // The shims, the checkout and the session's environment.
    let socket = scratch.join("harness.sock");
    let bin = scratch.join("bin");
    fs::create_dir_all(&bin).expect("bin dir");
    for name in ["kubectl", "buildah", "cargo"] {
        write_shim(&bin.join(name), &socket);
    }
    let cwd = checkout(scratch, &socket);
    let home = scratch.join("home");
    fs::create_dir_all(&home).expect("home");
    let rolecall_dir = Path::new(env!("CARGO_BIN_EXE_rolecall"))
        .parent()
        .expect("target dir");
    let path = format!(
        "{}:{}:{}:{}",
        bin.display(),
        rolecall_dir.display(),
        venv().join("bin").display(),
        pod::PATH
    );
    let mut env = aws_env(&moto);
    env.push(("PATH".into(), path));
    env.push(("HOME".into(), home.display().to_string()));

    let listener = UnixListener::bind(&socket).expect("bind the harness socket");
    let mut harness = Harness {
        net: &net,
        moto: moto.clone(),
        issuer: issuer.clone(),
        scratch: scratch.join("pod"),
        calls: Vec::new(),
        namespaces: BTreeSet::new(),
        service_accounts: BTreeSet::new(),
        pod: None,
        applied_images: Vec::new(),
        image_built: false,
        logged_in: BTreeSet::new(),
        pushed: Vec::new(),
    };
    let started = Instant::now();
    std::thread::scope(|s| {
        let server = s.spawn(|| serve(&listener, &mut harness));
        let quit = QuitOnDrop(&socket);
        let outputs = run_session(&net, &cwd, &env, &blocks, scratch, &moto, &issuer);
        drop(quit);
        server.join().expect("the harness");
        check_outputs(&outputs, &blocks);
    });
    check_calls(&harness, &region);
    eprintln!(
        "quick start: {} blocks in {:?}",
        blocks.len(),
        started.elapsed()
    );
}

/// The EKS cluster the prerequisites say exists; its OIDC issuer.
fn seed_cluster(net: &PodNet, moto: &str, cluster: &str, region: &str) -> String {
    aws(
        net,
        moto,
        &[
            "eks",
            "create-cluster",
            "--region",
            region,
            "--name",
            cluster,
            "--role-arn",
            "arn:aws:iam::123456789012:role/eks-cluster",
            "--resources-vpc-config",
            "subnetIds=subnet-0a1b2c3d",
        ],
    )
    .expect("create the EKS cluster in moto");
    let described = aws(
        net,
        moto,
        &[
            "eks",
            "describe-cluster",
            "--region",
            region,
            "--name",
            cluster,
        ],
    )
    .expect("describe the cluster");
    let issuer = described["cluster"]["identity"]["oidc"]["issuer"]
        .as_str()
        .expect("moto's describe-cluster returns identity.oidc.issuer")
        .to_owned();
    assert!(issuer.starts_with("https://"), "{issuer}");
    issuer
}

/// Runs every block; before the last (the clean-up), checks what AWS holds.
fn run_session(
    net: &PodNet,
    cwd: &Path,
    env: &[(String, String)],
    blocks: &[Block],
    scratch: &Path,
    moto: &str,
    issuer: &str,
) -> Vec<String> {
    let mut session = Session::start(net, cwd, env);
    let mut outputs = Vec::new();
    let (last, before) = blocks.split_last().expect("blocks");
    for (n, block) in before.iter().enumerate() {
        outputs.push(session.run(n, block, &scratch.join(format!("block-{n}.sh"))));
    }
    check_aws(net, moto, issuer, &cwd.join("trust-policy.json"));
    check_kubeconfig(env);
    outputs.push(session.run(before.len(), last, &scratch.join("block-last.sh")));
    check_cleaned_up(net, moto, cwd);
    drop(session.stdin);
    let status = session.child.0.wait().expect("wait for bash");
    assert!(
        status.success(),
        "bash exited {status}:\n{}",
        session.transcript
    );
    // Shown with --nocapture: the session as a user would see it.
    eprintln!("{}", session.transcript);
    outputs
}

/// The roles exist with the trust policy rolecall printed, which trusts the
/// OIDC provider the README created for the cluster's issuer and the
/// service account shop/shop; a web-identity token for it assumes both.
fn check_aws(net: &PodNet, moto: &str, issuer: &str, trust_file: &Path) {
    let printed: Json = serde_json::from_str(
        &fs::read_to_string(trust_file).expect("the README wrote trust-policy.json"),
    )
    .expect("trust-policy.json is JSON");
    let providers = aws(net, moto, &["iam", "list-open-id-connect-providers"]).expect("providers");
    let host = issuer.trim_start_matches("https://");
    let provider = providers["OpenIDConnectProviderList"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["Arn"].as_str())
        .find(|arn| arn.ends_with(&format!("oidc-provider/{host}")))
        .unwrap_or_else(|| panic!("no OIDC provider for {host}: {providers}"))
        .to_owned();
    let statement = &printed["Statement"][0];
    assert_eq!(
        statement["Action"], "sts:AssumeRoleWithWebIdentity",
        "{printed}"
    );
    assert_eq!(
        statement["Principal"]["Federated"],
        provider.as_str(),
        "{printed}"
    );
    let condition = &statement["Condition"]["StringEquals"];
    assert_eq!(
        condition[format!("{host}:sub")],
        "system:serviceaccount:shop:shop",
        "{printed}"
    );
    assert_eq!(
        condition[format!("{host}:aud")],
        "sts.amazonaws.com",
        "{printed}"
    );
    let token = jwt(
        issuer,
        "system:serviceaccount:shop:shop",
        "sts.amazonaws.com",
        now_unix() + 3600,
    );
    for role in ["shop-reader", "shop-writer"] {
        let got = aws(net, moto, &["iam", "get-role", "--role-name", role])
            .unwrap_or_else(|e| panic!("role {role}: {e}"));
        let document = &got["Role"]["AssumeRolePolicyDocument"];
        let document: Json = match document.as_str() {
            Some(text) => serde_json::from_str(text).expect("the trust policy is JSON"),
            None => document.clone(),
        };
        assert_eq!(
            document, printed,
            "{role}: the trust policy rolecall printed"
        );
        let arn = got["Role"]["Arn"].as_str().expect("the role's ARN");
        let assumed = aws(
            net,
            moto,
            &[
                "sts",
                "assume-role-with-web-identity",
                "--role-arn",
                arn,
                "--role-session-name",
                "quickstart-test",
                "--web-identity-token",
                &token,
            ],
        )
        .unwrap_or_else(|e| panic!("{role}: AssumeRoleWithWebIdentity: {e}"));
        let user = assumed["AssumedRoleUser"]["Arn"]
            .as_str()
            .unwrap_or_default();
        assert!(
            user.contains(&format!(":assumed-role/{role}/")),
            "{assumed}"
        );
    }
}

/// `aws eks update-kubeconfig` wrote the cluster into the session's
/// kubeconfig (the shim's `kubectl` does not read it).
fn check_kubeconfig(env: &[(String, String)]) {
    let home = env
        .iter()
        .find(|(k, _)| k == "HOME")
        .map(|(_, v)| PathBuf::from(v))
        .expect("HOME");
    let config = fs::read_to_string(home.join(".kube/config")).unwrap_or_default();
    assert!(
        config.contains("current-context: arn:aws:eks:"),
        "~/.kube/config:\n{config}"
    );
}

/// After the clean-up: no roles, no repository, no trust-policy.json.
fn check_cleaned_up(net: &PodNet, moto: &str, cwd: &Path) {
    for role in ["shop-reader", "shop-writer"] {
        let got = aws(net, moto, &["iam", "get-role", "--role-name", role]);
        assert!(got.is_err(), "{role} still exists after the clean-up");
    }
    assert!(
        !cwd.join("trust-policy.json").exists(),
        "trust-policy.json left"
    );
}

/// The outputs the README promises: the trust policy, rolecall's status
/// with both profiles, the two sessions' ARNs.
fn check_outputs(outputs: &[String], blocks: &[Block]) {
    let all = outputs.join("");
    let account = outputs
        .iter()
        .zip(blocks)
        .find(|(_, b)| b.code.contains("ACCOUNT_ID=$(aws sts get-caller-identity "))
        .and_then(|(out, _)| {
            out.lines()
                .find(|l| l.len() == 12 && l.chars().all(|c| c.is_ascii_digit()))
        })
        .unwrap_or_else(|| panic!("the account id was not echoed:\n{all}"))
        .to_owned();
    for role in ["shop-reader", "shop-writer"] {
        let want = format!("arn:aws:sts::{account}:assumed-role/{role}/");
        assert!(
            all.lines().any(|l| l.starts_with(&want)),
            "the app's session as {role} ({want}...) not shown:\n{all}"
        );
    }
    let status = outputs
        .iter()
        .zip(blocks)
        .find(|(_, b)| b.code.contains("/rolecall status"))
        .map(|(out, _)| out.as_str())
        .expect("a block runs rolecall status");
    for profile in ["reader", "writer"] {
        assert!(
            status.contains(profile),
            "rolecall status shows {profile}:\n{status}"
        );
    }
    assert!(
        all.contains("\"sts:AssumeRoleWithWebIdentity\""),
        "the trust policy:\n{all}"
    );
    assert!(all.contains("successfully rolled out"), "{all}");
}

/// What the simulated commands were called with.
fn check_calls(harness: &Harness, region: &str) {
    let calls: Vec<String> = harness.calls.iter().map(|c| c.join(" ")).collect();
    let called = |prefix: &str| calls.iter().any(|c| c.starts_with(prefix));
    for prefix in [
        "kubectl version",
        "cargo --version",
        "cargo install --locked --path .",
        "build-local.sh",
        "buildah login --username AWS --password-stdin ",
        "buildah push localhost/rolecall:dev docker://",
        "kubectl apply -f -",
        "kubectl -n shop rollout status deploy/shop",
        "kubectl -n shop exec deploy/shop -c rolecall -- /rolecall status",
        "kubectl delete namespace shop",
    ] {
        assert!(called(prefix), "not called: {prefix}...\n{calls:#?}");
    }
    let [pushed] = harness.pushed.as_slice() else {
        panic!("one image pushed: {:?}", harness.pushed);
    };
    let want = format!(".dkr.ecr.{region}.amazonaws.com/rolecall:dev");
    assert!(pushed.ends_with(&want), "pushed {pushed}, want …{want}");
    assert_eq!(
        harness.applied_images,
        std::slice::from_ref(pushed),
        "the applied pod's rolecall image is the pushed one"
    );
    assert!(harness.pod.is_none(), "the pod outlived its namespace");
}
