//! Stage 3, the globals: each process-wide option of the table checked
//! once, in table order, into [`Globals`] (with its default when no source
//! sets it). The options that profiles inherit are passed on unchecked:
//! profiles.rs checks them where a profile inherits them.

use std::path::PathBuf;

use super::checks::{parse_addr, parse_bool, word};
use super::files::Loaded;
use super::values::{Problems, Sourced, src};
use super::{Config, LogFormat};
use super::{
    DEFAULT_CONTROL_SOCKET, DEFAULT_FILE_MODE, DEFAULT_HEALTH_ADDR, DEFAULT_OUTPUT_DIR,
    DEFAULT_TOKEN_FILE, MAX_SOCKET_PATH_BYTES,
};
use crate::text::{printable, quoted};

/// The checked process-wide options.
#[derive(Debug, Default)]
pub(super) struct Globals {
    /// Every process-wide field set; no profiles yet.
    pub config: Config,
    /// Whether an endpoint address is set (even a bad one): what needs the
    /// endpoint says so only when it is not.
    pub endpoint_set: bool,
    /// Where `file_mode` was set (`allow_world_readable` judges it).
    pub file_mode_at: Option<Sourced>,
    /// The files the options name, as the load read them.
    pub files: Loaded,
    /// The identity's options so far (pod.rs).
    pub pod: super::pod::Raw,
}

/// Runs a check over a sourced value (trimmed), if one is set, recording a
/// problem on failure.
pub(super) fn validate<'a, T>(
    s: impl Into<Option<&'a Sourced>>,
    problems: &mut Problems,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let s = s.into()?;
    f(s.value.trim()).map_err(|msg| problems.at(s, msg)).ok()
}

/// A path: recorded as given, with a problem when it is empty or holds a
/// control character.
pub(super) fn check_path(s: &Sourced, problems: &mut Problems) -> PathBuf {
    if s.value.is_empty() || s.value.chars().any(char::is_control) {
        problems.at(s, "must be a non-empty path without control characters");
    }
    PathBuf::from(&s.value)
}

/// The web identity's token; pod.rs judges it again under pod-identity.
pub(super) fn token_file(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    g.pod.token_file_at = s.cloned();
    g.config.token_file = s.map_or_else(|| DEFAULT_TOKEN_FILE.into(), |s| check_path(s, p));
}

pub(super) fn output_dir(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    g.config.output_dir = s.map_or_else(|| DEFAULT_OUTPUT_DIR.into(), |s| check_path(s, p));
}

/// Defaults to the output dir (made absolute).
pub(super) fn app_output_dir(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    g.config.app_output_dir = match s {
        Some(s) => {
            let dir = check_path(s, p);
            if !dir.is_absolute() || s.value.chars().any(char::is_whitespace) {
                p.at(s, "must be an absolute path without spaces (it is written into credential_process lines)");
            }
            dir
        }
        None => std::path::absolute(&g.config.output_dir)
            .unwrap_or_else(|_| g.config.output_dir.clone()),
    };
}

pub(super) fn file_mode(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    g.file_mode_at = s.cloned();
    let octal = |v: &str| {
        let mode = u32::from_str_radix(v.trim_start_matches("0o"), 8).ok();
        let mode = mode.filter(|m| *m <= 0o777);
        mode.ok_or_else(|| quoted(v, "", "is not an octal file mode such as 0640"))
    };
    g.config.file_mode = validate(s, p, octal).unwrap_or(DEFAULT_FILE_MODE);
}

/// Also judges the file mode (above in the table) now that both are known.
pub(super) fn allow_world_readable(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    g.config.allow_world_readable = validate(s, p, parse_bool).unwrap_or(false);
    let mode = g.config.file_mode;
    let at = (g.file_mode_at.clone()).unwrap_or_else(|| src(String::new(), "--file-mode"));
    if mode & 0o022 != 0 {
        p.at(
            &at,
            format!(
                "mode {mode:04o} makes the credentials writable by {}: anyone could replace the keys the application uses; use 0640 (readable by the group, e.g. a shared fsGroup) or 0600",
                if mode & 0o002 != 0 { "every user" } else { "the group" }
            ),
        );
    } else if mode & 0o004 != 0 && !g.config.allow_world_readable {
        p.at(
            &at,
            format!(
                "mode {mode:04o} makes the credentials readable by every user: use 0640 with a shared fsGroup for the application container, or pass --allow-world-readable (ROLECALL_ALLOW_WORLD_READABLE=true, `allow_world_readable: true`) if every user of the pod may hold them"
            ),
        );
    }
}

/// Empty disables the listener.
pub(super) fn health_addr(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    g.config.health_addr = match s {
        None => Some(DEFAULT_HEALTH_ADDR.parse().expect("valid default")),
        Some(s) if s.value.trim().is_empty() => None,
        Some(s) => validate(s, p, parse_addr),
    };
}

/// Off unless set (empty is off); loopback only.
pub(super) fn endpoint_addr(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    let s = s.filter(|s| !s.value.trim().is_empty());
    g.endpoint_set = s.is_some();
    let loopback = |v: &str| {
        let a = parse_addr(v)?;
        let why = format!(
            "{a} is not a loopback address: the credentials endpoint must only be reachable inside the pod (use 127.0.0.1:PORT)"
        );
        a.ip().is_loopback().then_some(a).ok_or(why)
    };
    g.config.endpoint_addr = validate(s, p, loopback);
}

/// Checked as the load read it, so that a bad token file exits 64 at
/// start (and a SIGHUP while it is bad is refused); the endpoint reads it
/// again when it changes. The token never appears in a message.
pub(super) fn endpoint_token_file(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    g.config.endpoint_token_file = s.map(|s| {
        let path = check_path(s, p);
        if !g.endpoint_set {
            p.at(
                s,
                "the token is only used by the credentials endpoint: set endpoint_addr (--endpoint-addr 127.0.0.1:PORT) too, or remove this option",
            );
        } else if let Err(e) = g.files.token(&path) {
            p.at(s, e);
        }
        path
    });
}

/// As the load read it, which the HTTP client will parse (`crate::tls`).
pub(super) fn ca_bundle(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    g.config.ca_bundle = s.and_then(|s| {
        check_path(s, p);
        g.files.ca_bundle.take()?.map_err(|e| p.at(s, e)).ok()
    });
}

/// Checked now; the password never reaches a message (`crate::proxy`
/// words its own messages, never quoting the value).
pub(super) fn proxy(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    let s = s.filter(|s| !s.value.trim().is_empty());
    g.config.proxy = validate(s, p, crate::proxy::Proxy::parse);
}

pub(super) fn no_proxy(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    g.config.no_proxy = validate(s, p, crate::proxy::check_no_proxy);
}

/// Empty disables the socket. Absolute, short enough for `sun_path`, and
/// never inside the output dir: the application containers mount that one,
/// and they must not reach the socket.
pub(super) fn control_socket(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    // The default is checked too: an output dir of /run would hold it.
    let default = src(DEFAULT_CONTROL_SOCKET, "control_socket (default)");
    let s = s.unwrap_or(&default);
    let check = |v: &str| check_control_socket(v, &g.config.output_dir);
    let set = !s.value.trim().is_empty();
    g.config.control_socket = set.then(|| validate(s, p, check)).flatten();
}

/// The checks of [`control_socket`]'s value against the output dir `out`.
pub(super) fn check_control_socket(v: &str, out: &std::path::Path) -> Result<PathBuf, String> {
    use std::path::Component;
    let path = PathBuf::from(v);
    if v.chars().any(char::is_control) {
        return Err("must be a path without control characters".into());
    }
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "\"{}\" must be an absolute path without \"..\", such as {DEFAULT_CONTROL_SOCKET}",
            printable(v)
        ));
    }
    if v.len() > MAX_SOCKET_PATH_BYTES {
        return Err(format!(
            "the path is {} bytes long; a Unix socket path holds at most {MAX_SOCKET_PATH_BYTES}: use a shorter one, such as {DEFAULT_CONTROL_SOCKET}",
            v.len()
        ));
    }
    if path.parent().is_none_or(|d| d == std::path::Path::new("/")) {
        return Err(format!(
            "\"{}\" must be in a directory of its own (an emptyDir only this container mounts), such as {DEFAULT_CONTROL_SOCKET}",
            printable(v)
        ));
    }
    if out.as_os_str().is_empty() {
        // A problem of its own already.
        return Ok(path);
    }
    let out = std::path::absolute(out).unwrap_or_else(|_| out.to_owned());
    let normal = |p: &std::path::Path| -> PathBuf { p.components().collect() };
    if normal(&path).starts_with(normal(&out)) {
        return Err(format!(
            "\"{}\" is inside the output dir {}, which the application containers mount: they must never reach the control socket; use a directory only this container mounts, such as {DEFAULT_CONTROL_SOCKET}",
            printable(v),
            out.display()
        ));
    }
    Ok(path)
}

pub(super) fn log_format(s: Option<&Sourced>, g: &mut Globals, p: &mut Problems) {
    let words = [("text", LogFormat::Text), ("json", LogFormat::Json)];
    let check = |v: &str| word(v, &words, "is not a log format: use text or json");
    g.config.log_format = validate(s, p, check).unwrap_or_default();
}

#[cfg(test)]
pub(super) mod tests;
