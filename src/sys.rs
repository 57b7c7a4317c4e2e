//! The only `unsafe` code in the library: thin wrappers over the libc calls
//! that the standard library does not offer, and over the YAML parser's
//! event stream ([`yaml`]).
//!
//! The crate is `#![deny(unsafe_code)]` and this module alone allows it.
//! `forbid` would be stronger but cannot be lifted for one module, so
//! `deny` is the strictest gate that still lets these calls live here; a
//! new `allow` anywhere else stands out in review. Each call carries a
//! `SAFETY` comment. (Opening files with `O_NOFOLLOW` / `O_NONBLOCK` needs
//! only libc's constants with `OpenOptionsExt::custom_flags`, which is safe,
//! and is done where the files are opened: [`crate::fsread`] and
//! [`crate::output::atomic`].)
#![allow(unsafe_code)]

pub mod limits;
pub mod yaml;

/// This process's effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes no argument, always succeeds and touches no
    // memory of this process.
    unsafe { libc::geteuid() }
}

/// Gives the heap's free pages back to the system: glibc keeps the pages of
/// a start-up peak (1,000 profiles assumed at once, their first renders)
/// mapped, fragmented among the sessions that stay, and returns them only
/// when asked. Measured at 1,000 profiles: about 1.5 MB less steady RSS
/// (docs/BENCHMARKS.md, issue 21). A no-op on other C libraries.
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim(3) takes a size, touches no memory of ours and
    // only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Creates a FIFO at `path` with `mode`: the hostile file of many tests.
#[cfg(test)]
pub fn mkfifo(path: &std::path::Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call;
    // mkfifo(2) only reads it.
    if unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_uid_owns_what_this_process_creates() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().uid(), effective_uid());
    }

    #[test]
    fn mkfifo_makes_a_fifo_and_reports_a_failure() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        mkfifo(&p, 0o600).unwrap();
        assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_fifo());
        let e = mkfifo(&p, 0o600).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    }
}
