//! An operator-supplied secret file: the credentials endpoint's token
//! (a mounted Secret), read with a cap and checked, never shown. Below
//! both the configuration, which refuses a bad one at load (exit 64), and
//! the endpoint, which re-reads it when it changes.

use std::path::Path;

use crate::fsread::{self, Follow};
use crate::session::Secret;

/// The shortest token accepted (from a supplied file or a previous run).
pub const MIN_TOKEN_LEN: usize = 32;
/// The most rolecall reads of a token file.
pub const MAX_TOKEN_BYTES: u64 = 4096;

/// Checks a token file's bytes: one trailing newline is stripped; the rest
/// must be at least [`MIN_TOKEN_LEN`] visible ASCII characters (`!` to `~`:
/// no space, no newline, no control character). The error lists every
/// problem and never the token.
pub fn check_token(bytes: &[u8]) -> Result<String, String> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut problems = Vec::new();
    if body.contains(&b'\n') {
        problems.push("it has a newline inside (only one trailing newline is allowed)".to_owned());
    }
    if body
        .iter()
        .any(|b| *b != b'\n' && !(0x21..=0x7e).contains(b))
    {
        problems.push(
            "it has a character that is not visible ASCII (a space, control character or non-ASCII byte)"
                .to_owned(),
        );
    }
    if body.len() < MIN_TOKEN_LEN {
        problems.push(format!(
            "it is {} characters long; at least {MIN_TOKEN_LEN} are needed",
            body.len()
        ));
    }
    if problems.is_empty() {
        Ok(String::from_utf8(body.to_vec()).expect("checked ASCII"))
    } else {
        Err(format!("the token is not usable: {}", problems.join("; ")))
    }
}

/// Reads and checks a supplied token file (a Secret mount is kubelet's
/// `..data` symlink layout, so the link is followed; the target must be a
/// regular file, at most [`MAX_TOKEN_BYTES`]).
pub fn read_supplied_token(path: &Path) -> Result<Secret, String> {
    fsread::read(path, MAX_TOKEN_BYTES, Follow::Yes)
        .map_err(|e| unreadable(path, &e))
        .and_then(|bytes| check_supplied(path, &bytes))
}

/// The message for a supplied token file that cannot be read.
pub fn unreadable(path: &Path, e: &fsread::ReadError) -> String {
    format!(
        "cannot read the endpoint token file {}: it {e}",
        path.display()
    )
}

/// Checks bytes read from the supplied token file at `path`.
pub fn check_supplied(path: &Path, bytes: &[u8]) -> Result<Secret, String> {
    check_token(bytes)
        .map(Secret::new)
        .map_err(|e| format!("endpoint token file {}: {e}", path.display()))
}
