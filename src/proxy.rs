//! An HTTPS proxy for STS calls: `proxy` (`--proxy`, `HTTPS_PROXY`,
//! `https_proxy`) and `no_proxy` (`--no-proxy`, `NO_PROXY`, `no_proxy`),
//! handed to the SDK HTTP client's own proxy support (a CONNECT tunnel for
//! `https://` endpoints; hyper-util's matcher reads the bypass list: hosts,
//! domain suffixes, CIDRs and `*`).
//!
//! Credentials in the proxy URL (`http://user:pass@proxy:3128`) become
//! basic authentication. They are kept as a [`Secret`]: the URL is only
//! ever shown with the password masked ([`Proxy::shown`]), in `Debug`, in
//! errors and in `check`. Loopback (`localhost`, `127.0.0.0/8`, `::1`) is
//! never proxied, whatever the bypass list says.

use aws_smithy_http_client::proxy::ProxyConfig;

use crate::session::Secret;

/// What is always added to the bypass list.
pub const LOOPBACK: &str = "localhost,127.0.0.0/8,::1";

/// A checked proxy URL, its credentials apart.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `scheme://host[:port]`, without credentials.
    base: String,
    user: Option<String>,
    password: Option<Secret>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl Proxy {
    /// Parses `url` (`http://` or `https://`, a host, an optional port and
    /// credentials). The error never holds the password.
    pub fn parse(url: &str) -> Result<Proxy, String> {
        let masked = mask(url);
        let bad = |why: &str| format!("\"{masked}\" is not a proxy URL: {why}");
        if url.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad("it has a space or control character"));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("give it as http://HOST:PORT"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(bad("it must not have a path"));
        }
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if host.is_empty() || host.starts_with(':') {
            return Err(bad("it has no host"));
        }
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                let user = decode(user).ok_or_else(|| bad("bad %-escape in the user name"))?;
                let pass = decode(pass).ok_or_else(|| bad("bad %-escape in the password"))?;
                (Some(user), (!pass.is_empty()).then(|| Secret::new(pass)))
            }
        };
        let base = format!("{scheme}://{host}");
        ProxyConfig::all(base.as_str()).map_err(|e| bad(&e.to_string()))?;
        Ok(Proxy {
            base,
            user,
            password,
        })
    }

    /// The URL with the password masked, for logs, errors and `check`.
    pub fn shown(&self) -> String {
        match (&self.user, &self.password) {
            (Some(u), Some(_)) => self.base.replacen("://", &format!("://{u}:***@"), 1),
            (Some(u), None) => self.base.replacen("://", &format!("://{u}@"), 1),
            _ => self.base.clone(),
        }
    }

    /// The SDK's proxy configuration: every STS call through this proxy,
    /// except `no_proxy`'s hosts and loopback.
    pub fn config(&self, no_proxy: Option<&str>) -> ProxyConfig {
        let mut c = ProxyConfig::all(self.base.as_str()).expect("checked when parsed");
        if let Some(user) = &self.user {
            let pass = self.password.as_ref().map(Secret::expose).unwrap_or("");
            c = c.with_basic_auth(user, pass);
        }
        let bypass = match no_proxy.map(str::trim).filter(|s| !s.is_empty()) {
            Some(list) => format!("{list},{LOOPBACK}"),
            None => LOOPBACK.to_owned(),
        };
        c.no_proxy(bypass)
    }
}

/// `url` with whatever follows `user:` in its credentials masked.
pub fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}@{host}{}", &rest[end..])
        }
        None => url.to_owned(),
    }
}

/// Percent-decodes `s` (credentials in a URL); `None` for a bad escape.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Checks a bypass list: comma-separated hosts, `.suffix`es, CIDRs or `*`.
pub fn check_no_proxy(list: &str) -> Result<String, String> {
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let ok = entry == "*"
            || entry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:/[]*".contains(c));
        if !ok {
            return Err(format!(
                "\"{}\" is not a host, domain suffix, CIDR or * (a no_proxy entry)",
                crate::config::printable(entry)
            ));
        }
    }
    Ok(list.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_split_off_and_never_shown() {
        let p = Proxy::parse("http://alice:p%40ss:w0rd@proxy.corp:3128/").unwrap();
        assert_eq!(p.shown(), "http://alice:***@proxy.corp:3128");
        assert_eq!(format!("{p:?}"), "http://alice:***@proxy.corp:3128");
        assert_eq!(p.password.as_ref().map(Secret::expose), Some("p@ss:w0rd"));
        assert_eq!(p.user.as_deref(), Some("alice"));
        let p = Proxy::parse("HTTPS://proxy.corp").unwrap();
        assert_eq!(p.shown(), "https://proxy.corp");
    }

    #[test]
    fn bad_urls_are_refused_without_the_password() {
        for bad in [
            "proxy.corp:3128",
            "socks5://proxy:1080",
            "http://",
            "http://u:secret@",
            "http://proxy:3128/path",
            "http://pro xy:3128",
            "http://u:sec%zzret@proxy",
        ] {
            let e = Proxy::parse(bad).unwrap_err();
            assert!(!e.contains("secret") && !e.contains("sec%zz"), "{bad}: {e}");
        }
        assert_eq!(mask("http://u:secret@h:1/x"), "http://u:***@h:1/x");
        assert_eq!(mask("http://u@h"), "http://u@h");
    }

    #[test]
    fn bypass_lists_take_hosts_suffixes_cidrs_and_star() {
        for ok in ["*", "sts.amazonaws.com,.internal", "10.0.0.0/8, [::1]", ""] {
            assert!(check_no_proxy(ok).is_ok(), "{ok}");
        }
        assert!(check_no_proxy("a b").is_err());
        assert!(check_no_proxy("host;rm").is_err());
    }
}
