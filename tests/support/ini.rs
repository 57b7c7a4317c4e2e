//! A strict INI parser for asserting on rolecall's `credentials` and
//! `config` files.

use std::collections::BTreeMap;

/// Parses an INI file strictly: `[section]` headers, `key = value` lines,
/// blank lines and `#`/`;` comment lines. Panics (with the line) on a key
/// outside a section, a duplicate section or key, or any other line.
pub fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    try_parse_ini(text).unwrap_or_else(|e| panic!("INI {e}"))
}

/// [`try_parse_ini`] for a file as rolecall writes it, for readers that race
/// the writer and count what they find: also refuses a missing final newline
/// and empty values (rolecall writes neither), the marks of a torn file.
pub fn try_parse_written_ini(
    text: &str,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    let sections = try_parse_ini(text)?;
    match sections
        .iter()
        .find(|(_, keys)| keys.values().any(String::is_empty))
    {
        Some((name, _)) => Err(format!("empty value in [{name}]")),
        None => Ok(sections),
    }
}

/// [`parse_ini`] that reports instead of panicking.
pub fn try_parse_ini(text: &str) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| format!("line {lineno}: unterminated section: {raw:?}"))?
                .trim();
            if name.is_empty() || name.contains(['[', ']']) {
                return Err(format!("line {lineno}: bad section name: {raw:?}"));
            }
            if out.insert(name.to_owned(), BTreeMap::new()).is_some() {
                return Err(format!("line {lineno}: duplicate section [{name}]"));
            }
            current = Some(name.to_owned());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {lineno}: expected `key = value`: {raw:?}"))?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("line {lineno}: bad key: {raw:?}"));
        }
        let section = current
            .as_ref()
            .ok_or_else(|| format!("line {lineno}: key outside any section: {raw:?}"))?;
        let keys = out.get_mut(section).expect("section exists");
        if keys.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(format!(
                "line {lineno}: duplicate key {key:?} in [{section}]"
            ));
        }
    }
    Ok(out)
}
