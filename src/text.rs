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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_and_shortens() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable(&"x".repeat(100)), format!("{}…", "x".repeat(80)));
    }
}
