//! [`Squid`]: a real HTTP proxy (Debian's squid) on a free loopback port,
//! with basic authentication and its own hosts file, so that names such as
//! STS's FIPS host lead to servers on loopback without touching the
//! machine's `/etc/hosts` or DNS. Its access log shows every `CONNECT` line
//! (the host and port rolecall asked for). Killed on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct Squid {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    password: String,
}

/// The user and password squid asks for.
pub const PROXY_USER: &str = "rolecall";
pub const PROXY_PASSWORD: &str = "pr0xy-s3cret-Pa55";

impl Squid {
    /// Starts squid mapping `names` to 127.0.0.1 and requiring basic
    /// authentication ([`PROXY_USER`], [`PROXY_PASSWORD`]); waits (at most
    /// 30 s) until it listens.
    pub fn start(names: &[&str]) -> Squid {
        Squid::start_with_password(names, PROXY_PASSWORD)
    }

    /// [`Squid::start`], asking for `password` (any characters) instead.
    pub fn start_with_password(names: &[&str], password: &str) -> Squid {
        let dir = tempfile::Builder::new()
            .prefix("rolecall-squid-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // Squid started as root runs as its own user: let it write here.
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        std::fs::write(d.join("hosts"), format!("127.0.0.1 {}\n", names.join(" "))).unwrap();
        let hash = Command::new("openssl")
            .args(["passwd", "-apr1", password])
            .output()
            .expect("openssl passwd");
        let hash = String::from_utf8(hash.stdout).unwrap();
        std::fs::write(d.join("passwd"), format!("{PROXY_USER}:{}", hash.trim())).unwrap();
        let port = free_port();
        let p = |f: &str| d.join(f).display().to_string();
        std::fs::write(
            d.join("squid.conf"),
            format!(
                "http_port 127.0.0.1:{port}\n\
                 pid_filename {pid}\ncache_log {cache}\naccess_log stdio:{access}\n\
                 cache deny all\ncache_mem 0 MB\ncoredump_dir {dir}\n\
                 hosts_file {hosts}\ndns_nameservers 127.0.0.1\n\
                 auth_param basic program /usr/lib/squid/basic_ncsa_auth {passwd}\n\
                 auth_param basic realm rolecall-test\n\
                 acl authed proxy_auth REQUIRED\nhttp_access allow authed\nhttp_access deny all\n\
                 connect_timeout 5 seconds\nshutdown_lifetime 0 seconds\n",
                pid = p("squid.pid"),
                cache = p("cache.log"),
                access = p("access.log"),
                dir = d.display(),
                hosts = p("hosts"),
                passwd = p("passwd"),
            ),
        )
        .unwrap();
        let child = Command::new("squid")
            .args(["-N", "-f"])
            .arg(d.join("squid.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("stderr.log")).unwrap())
            .spawn()
            .expect("start squid (make test installs Debian's squid)");
        let mut squid = Squid {
            child,
            port,
            dir,
            password: password.to_owned(),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let exited = squid.child.try_wait().ok().flatten();
            if exited.is_none()
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            {
                return squid;
            }
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "squid did not listen on {addr} (exited: {exited:?}):\n{}\n{}",
                squid.read("stderr.log"),
                squid.read("cache.log")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default()
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT`, the password as given (for
    /// one without characters a URL reserves).
    pub fn url(&self) -> String {
        format!(
            "http://{PROXY_USER}:{}@127.0.0.1:{}",
            self.password, self.port
        )
    }

    /// [`Squid::url`] with every character of the password but letters and
    /// digits `%`-escaped, as RFC 3986 asks of a URL's userinfo.
    pub fn url_escaped(&self) -> String {
        let escaped: String = self
            .password
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("http://{PROXY_USER}:{escaped}@127.0.0.1:{}", self.port)
    }

    /// The proxy without credentials (squid answers 407).
    pub fn url_without_auth(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `(status, host:port)` of every CONNECT in the access log so far, e.g.
    /// `("TCP_TUNNEL/200", "sts.proxied.test:4431")`.
    pub fn connects(&self) -> Vec<(String, String)> {
        self.read("access.log")
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(5) == Some(&"CONNECT")).then(|| (f[3].to_owned(), f[6].to_owned()))
            })
            .collect()
    }

    /// [`connects`](Self::connects) once the access log holds at least `n`
    /// of them, or what it holds after 10 s: squid logs a tunnel when it
    /// closes, which can come after the client has exited.
    pub fn connects_at_least(&self, n: usize) -> Vec<(String, String)> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let connects = self.connects();
            if connects.len() >= n || std::time::Instant::now() >= deadline {
                return connects;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
