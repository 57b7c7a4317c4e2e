//! Text shown to the operator: user values shortened and escaped before
//! they reach an error message or a log line, and the messages that quote
//! them. A leaf: it imports nothing.

/// Shortens and escapes a user value for an error message.
pub(crate) fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// The message `before"v" after`, `v` made printable.
pub(crate) fn quoted(v: &str, before: &str, after: &str) -> String {
    format!("{before}\"{}\" {after}", printable(v))
}

/// `v` itself when `ok`, else the message `before"v" after`.
pub(crate) fn judged(ok: bool, v: &str, before: &str, after: &str) -> Result<String, String> {
    if ok {
        Ok(v.to_owned())
    } else {
        Err(quoted(v, before, after))
    }
}

/// Whether `v` is a Kubernetes DNS-1123 name of at most `max` bytes:
/// lowercase letters, digits and `-` (and `.` in a subdomain, `dots`),
/// starting and ending with a letter or digit. A label (a container's or
/// a namespace's name) is `(63, false)`, a subdomain (a ConfigMap's or a
/// service account's) `(253, true)`.
pub(crate) fn is_dns1123(v: &str, max: usize, dots: bool) -> bool {
    let inner = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !v.is_empty()
        && v.len() <= max
        && v.chars()
            .all(|c| inner(c) || c == '-' || (dots && c == '.'))
        && v.starts_with(inner)
        && v.ends_with(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_and_shortens() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable(&"x".repeat(100)), format!("{}…", "x".repeat(80)));
    }

    #[test]
    fn dns1123_labels_and_subdomains() {
        assert!(is_dns1123("shop-api2", 63, false));
        assert!(!is_dns1123("a.b", 63, false), "a dot only in a subdomain");
        assert!(is_dns1123("a.b", 253, true));
        for bad in ["", "-a", "a-", "A", "a_b", ".a"] {
            assert!(!is_dns1123(bad, 253, true), "{bad:?}");
        }
        assert!(is_dns1123(&"a".repeat(63), 63, false));
        assert!(!is_dns1123(&"a".repeat(64), 63, false));
    }
}
