//! Stage 3, the load: the files the merged options name besides the
//! configuration file itself (the CA bundle, the supplied endpoint
//! tokens), each read here once, before anything is judged. The checks
//! (validate.rs, outputs.rs) stay free of I/O: they report what was read
//! at the place of the option that names the file, in the same list and
//! with the same message as any other problem (exit 64).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::values::Sourced;
use crate::tls::CaBundle;

/// What the load read.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    /// The CA bundle, if one is named (`Err`: why it cannot be used).
    pub ca_bundle: Option<Result<CaBundle, String>>,
    /// Each supplied endpoint token file: `Err` says why it cannot be used
    /// (never the token).
    tokens: BTreeMap<PathBuf, Result<(), String>>,
}

impl Loaded {
    /// Reads the CA bundle if one is named, and the endpoint token files
    /// (the global one and the sets') if the endpoint is enabled (only
    /// then are they used).
    pub fn read<'a>(
        ca_bundle: &Option<Sourced>,
        endpoint: &Option<Sourced>,
        tokens: impl Iterator<Item = &'a Option<Sourced>>,
    ) -> Loaded {
        let named = |s: &Option<Sourced>| {
            let s = s.as_ref().filter(|s| !s.value.is_empty());
            s.map(|s| PathBuf::from(&s.value))
        };
        let endpoint = endpoint.as_ref();
        let tokens = tokens
            .filter_map(named)
            .filter(|_| endpoint.is_some_and(|s| !s.value.trim().is_empty()))
            .map(|path| {
                let read = crate::supplied::read_supplied_token(&path).map(drop);
                (path, read)
            })
            .collect();
        Loaded {
            ca_bundle: named(ca_bundle).map(|p| CaBundle::load(&p)),
            tokens,
        }
    }

    /// Whether the token file at `path` is usable (`read` read every one
    /// a check asks about).
    pub fn token(&self, path: &Path) -> Result<(), String> {
        self.tokens.get(path).cloned().unwrap_or(Ok(()))
    }
}
