//! An HTTPS proxy for STS calls: `proxy` (`--proxy`, `HTTPS_PROXY`,
//! `https_proxy`) and `no_proxy` (`--no-proxy`, `NO_PROXY`, `no_proxy`),
//! handed to the SDK HTTP client's own proxy support (a CONNECT tunnel for
//! `https://` endpoints; hyper-util's matcher reads the bypass list: hosts,
//! domain suffixes, CIDRs and `*`).
//!
//! The URL is parsed once, by `http`'s URI parser (RFC 3986, the one the
//! client itself uses). Credentials in it (`http://user:pass@proxy:3128`,
//! `%`-escaped as RFC 3986 asks: `@` is `%40`, `/` is `%2F`) become basic
//! authentication: they are decoded once and kept apart, the password as a
//! [`Secret`]. The client's proxy builder pastes user and password back into
//! a URL that it parses again, so they are handed to it `%`-escaped
//! ([`Proxy::config`]): whatever they hold, the client decodes exactly the
//! user and password given and the host stays the one named.
//!
//! The credentials are never shown: the URL appears with the whole userinfo
//! masked (`http://***@proxy:3128`, [`Proxy::shown`]) in `Debug`, in errors
//! and in `check`, and a URL that is refused is shown with everything up to
//! its last `@` masked, however malformed it is ([`mask`]). Loopback
//! (`localhost`, `127.0.0.0/8`, `::1`) is never proxied, whatever the bypass
//! list says.

use aws_smithy_http_client::proxy::ProxyConfig;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::session::Secret;

/// What is always added to the bypass list.
pub const LOOPBACK: &str = "localhost,127.0.0.0/8,::1";

/// What the client's URL parser must not see raw in a user name or a
/// password: everything but RFC 3986's unreserved characters.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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
    /// `%`-escaped credentials). The error never holds the credentials.
    pub fn parse(url: &str) -> Result<Proxy, String> {
        let bad = |why: &str| {
            format!(
                "\"{}\" is not a proxy URL: {why}",
                crate::text::printable(&mask(url))
            )
        };
        if url.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad("it has a space or control character"));
        }
        let Some((scheme, _)) = url.split_once("://") else {
            return Err(bad("give it as http://HOST:PORT"));
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad("the scheme must be http or https"));
        }
        // `http` drops a fragment silently; a `#` is never part of a proxy
        // URL (in a password it is written %23).
        if url.contains('#') {
            return Err(bad(
                "it must not have a fragment (#; in a password write it %23)",
            ));
        }
        let uri: http::Uri = url.parse().map_err(|_| {
            bad("it is not a valid URL (in a user name or password, write @ as %40, / as %2F, ? as %3F, % as %25)")
        })?;
        let authority = uri.authority().ok_or_else(|| bad("it has no host"))?;
        if uri.query().is_some() || !matches!(uri.path(), "" | "/") {
            return Err(bad(
                "it must not have a path or query (in a password write / as %2F, ? as %3F)",
            ));
        }
        let (userinfo, host) = match authority.as_str().rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority.as_str()),
        };
        if userinfo.is_some_and(|u| u.contains('@')) {
            return Err(bad("write an @ in the user name or password as %40"));
        }
        if host.is_empty() || host.starts_with(':') {
            return Err(bad("it has no host"));
        }
        // After an IPv6 address's `]`, if any.
        let port = host.rsplit_once(']').map_or(host, |(_, rest)| rest);
        if let Some((_, port)) = port.rsplit_once(':')
            && !port.is_empty()
            && port.parse::<u16>().is_err()
        {
            return Err(bad("the port must be a number"));
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

    /// The URL with its credentials masked, for logs, errors and `check`.
    pub fn shown(&self) -> String {
        if self.user.is_some() {
            self.base.replacen("://", "://***@", 1)
        } else {
            self.base.clone()
        }
    }

    /// The SDK's proxy configuration: every STS call through this proxy,
    /// except `no_proxy`'s hosts and loopback. The client builds the
    /// proxy's URL as `scheme://USER:PASSWORD@host` and parses it again (then
    /// `%`-decodes the two): they are given `%`-escaped, so that an `@`, `/`,
    /// `:` or `%` in them stays theirs.
    pub fn config(&self, no_proxy: Option<&str>) -> ProxyConfig {
        let mut c = ProxyConfig::all(self.base.as_str()).expect("checked when parsed");
        if let Some(user) = &self.user {
            let pass = self.password.as_ref().map(Secret::expose).unwrap_or("");
            c = c.with_basic_auth(
                utf8_percent_encode(user, USERINFO).to_string(),
                utf8_percent_encode(pass, USERINFO).to_string(),
            );
        }
        let bypass = match no_proxy.map(str::trim).filter(|s| !s.is_empty()) {
            Some(list) => format!("{list},{LOOPBACK}"),
            None => LOOPBACK.to_owned(),
        };
        c.no_proxy(bypass)
    }
}

/// `url`, however malformed, with everything between its scheme (or its
/// start) and its last `@` masked: the credentials, and whatever a
/// password with a raw `/`, `?`, `#` or `@` spilled into. Without an `@`, a
/// port that is not a number is masked too (`http://user:pass`, the host
/// forgotten).
pub fn mask(url: &str) -> String {
    let start = match url.split_once("://") {
        Some((scheme, _))
            if scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            scheme.len() + 3
        }
        _ => 0,
    };
    let rest = &url[start..];
    if let Some(at) = rest.rfind('@') {
        return format!("{}***{}", &url[..start], &rest[at..]);
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rsplit_once(':') {
        Some((host, port))
            if !host.ends_with(']')
                && !port.is_empty()
                && !port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{}{host}:***{}", &url[..start], &rest[end..])
        }
        _ => url.to_owned(),
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
                crate::text::printable(entry)
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
        assert_eq!(p.shown(), "http://***@proxy.corp:3128");
        assert_eq!(format!("{p:?}"), "http://***@proxy.corp:3128");
        assert_eq!(p.password.as_ref().map(Secret::expose), Some("p@ss:w0rd"));
        assert_eq!(p.user.as_deref(), Some("alice"));
        let p = Proxy::parse("HTTPS://proxy.corp").unwrap();
        assert_eq!(p.shown(), "https://proxy.corp");
        let p = Proxy::parse("http://bob@proxy.corp:3128").unwrap();
        assert_eq!(p.shown(), "http://***@proxy.corp:3128");
        let p = Proxy::parse("http://u:p@[::1]:3128").unwrap();
        assert_eq!(p.shown(), "http://***@[::1]:3128");
        assert!(Proxy::parse("http://[::1]").is_ok());
    }

    /// The malformed forms of a URL holding the password `S3cr/et`-like
    /// text: refused, and no part of the password in the error.
    pub(crate) const MALFORMED: &[&str] = &[
        "proxy.corp:3128",
        "socks5://u:s3cretPW@proxy:1080",
        "http://",
        "http://u:s3cretPW@",
        "http://proxy:3128/path",
        "http://pro xy:3128",
        "http://u:s3cretPW%zz@proxy",
        "u:s3cretPW@proxy.corp:3128",
        "u:s3cret/PW@proxy.corp:3128",
        "//u:s3cretPW@proxy.corp:3128",
        "http://u:s3cret/PW@proxy.corp:3128",
        "http://u:s3cret?PW@proxy.corp:3128",
        "http://u:s3cret#PW@proxy.corp:3128",
        "http://u:s3cret@PW@proxy.corp:3128",
        "http://u:s3cret/PW@proxy.corp:3128/x",
        "http://u:s3cret PW@proxy.corp:3128",
        "http://u:s3cret\nPW@proxy.corp:3128",
        "http://u:s3cretPW@proxy.corp:3128/#",
        "http://u:s3cretPW@proxy.corp:3128?x=1",
        "ftp://u:s3cret/PW@proxy.corp:21",
        "http://u:s3cretPW@proxy.corp:port",
        "http:/u:s3cretPW@proxy.corp:3128",
        "http://u:s3cretPW",
        "u:a://s3cretPW@proxy.corp:3128",
    ];

    #[test]
    fn malformed_urls_are_refused_without_any_of_the_credentials() {
        for bad in MALFORMED {
            let e = Proxy::parse(bad).unwrap_err();
            for part in ["s3cret", "PW", "%zz"] {
                assert!(!e.contains(part), "{bad:?}: {e}");
            }
        }
        assert_eq!(mask("http://u:secret@h:1/x"), "http://***@h:1/x");
        assert_eq!(mask("http://u:se/cr@et@h:1"), "http://***@h:1");
        assert_eq!(mask("u:se#cret@h"), "***@h");
        assert_eq!(mask("http://h:1"), "http://h:1");
        assert_eq!(mask("http://u:secret"), "http://u:***");
        assert_eq!(mask("u:a://b@h"), "***@h");
        assert_eq!(mask("http://[::1]:3128/"), "http://[::1]:3128/");
    }

    #[test]
    fn the_client_is_given_credentials_it_decodes_exactly() {
        // The client's own URL handling (build_proxy_url, then hyper-util's
        // parse of it) is private: what it parses is `scheme://` + the two
        // escaped values + `@` + the rest, which http::Uri then splits at
        // the first `@` and `%`-decodes. Replayed here on the escaped form.
        for (url, user, pass) in [
            (
                "http://adv-user:Hunt3r%40pwfrag.example%2Frest@proxy.corp:3128",
                "adv-user",
                "Hunt3r@pwfrag.example/rest",
            ),
            (
                "http://alice:p%40ss:w0rd@proxy.corp:3128",
                "alice",
                "p@ss:w0rd",
            ),
            (
                "http://a%3Ab%40c:%25%2F%3F%23%20x@proxy.corp:3128",
                "a:b@c",
                "%/?# x",
            ),
        ] {
            let p = Proxy::parse(url).unwrap();
            let u = utf8_percent_encode(p.user.as_deref().unwrap(), USERINFO).to_string();
            let pw =
                utf8_percent_encode(p.password.as_ref().unwrap().expose(), USERINFO).to_string();
            let rebuilt: http::Uri = format!("http://{u}:{pw}@proxy.corp:3128/").parse().unwrap();
            let authority = rebuilt.authority().unwrap();
            assert_eq!(authority.host(), "proxy.corp", "{url}");
            let (userinfo, _) = authority.as_str().split_once('@').unwrap();
            let (du, dp) = userinfo.split_once(':').unwrap();
            assert_eq!(decode(du).as_deref(), Some(user), "{url}");
            assert_eq!(decode(dp).as_deref(), Some(pass), "{url}");
        }
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
