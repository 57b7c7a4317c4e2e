//! [`Sandbox`]: what most tests run rolecall against.

use std::time::Duration;

use super::{FakeSts, TokenDir, valid_jwt};

/// A fake STS granting sessions of one lifetime, a kubelet-style token dir
/// holding a valid JWT, and an empty output directory.
pub struct Sandbox {
    pub sts: FakeSts,
    pub token: TokenDir,
    pub out: tempfile::TempDir,
}

impl Sandbox {
    pub fn granting(lifetime: Duration) -> Sandbox {
        Sandbox {
            sts: FakeSts::granting(lifetime),
            token: TokenDir::new(&valid_jwt()),
            out: tempfile::tempdir().expect("output dir"),
        }
    }
}
