//! Text shown to the operator: user values shortened and escaped before
//! they reach an error message or a log line. A leaf: it imports nothing.

/// Shortens and escapes a user value for an error message.
pub(crate) fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
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
