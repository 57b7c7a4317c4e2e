//! The endpoint's output sets: one token per set, each kept in its set's
//! dir; the token a request carries picks the set, and with declared sets a
//! profile outside it gets a 403 that names only the request's own set.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use super::{EndpointToken, NOT_IN_SET_LOG, TokenError, constant_time_eq, error};
use crate::config::Config;
use crate::output::Sets;
use crate::state::Shared;

/// Starts one token per output set (supplied by the set's
/// `endpoint_token_file`, or kept in its dir across restarts) and writes
/// each into its set's dir. Two sets with the same token are refused: the
/// token is what tells the sets apart.
pub fn start_tokens(sets: &Sets, config: &Config) -> Result<Vec<Arc<EndpointToken>>, TokenError> {
    let mut tokens: Vec<Arc<EndpointToken>> = Vec::new();
    for w in sets.writers() {
        let supplied = config
            .output_set(&w.set)
            .and_then(|s| s.endpoint_token_file.as_deref());
        let t = EndpointToken::start(w, supplied)?;
        if let Some(other) = tokens.iter().find(|o| {
            constant_time_eq(
                o.current().expose().as_bytes(),
                t.current().expose().as_bytes(),
            )
        }) {
            return Err(TokenError::Supplied(format!(
                "output sets {} and {} have the same endpoint token: the token picks the set, so each set needs its own; give each set a different endpoint_token_file (or remove endpoint-token from one set's dir to have a new one made)",
                other.set(),
                t.set()
            )));
        }
        tokens.push(t);
    }
    Ok(tokens)
}

/// The set whose token `presented` is: every token is compared, in constant
/// time, whatever matches. `None` when none matches (or, after a rotation
/// made two equal, more than one).
pub(super) fn token_set(tokens: &[Arc<EndpointToken>], presented: &[u8]) -> Option<String> {
    let mut found = None;
    let mut matches = 0;
    for t in tokens {
        // A rotated Secret is accepted from the first request after the swap.
        t.reload_if_changed();
        if constant_time_eq(presented, t.current().expose().as_bytes()) {
            matches += 1;
            found = Some(t.set().to_owned());
        }
    }
    if matches > 1 {
        tracing::error!(
            "two output sets' endpoint tokens are equal (a supplied token file was rotated to another set's token): requests with it are refused until they differ"
        );
        return None;
    }
    found
}

/// The 403 for a profile outside the token's output set: counted, logged
/// (rate-limited), and naming only the request's set.
pub(super) fn not_in_set(shared: &Shared, shown: &str, set: &str) -> Response<Full<Bytes>> {
    shared.count_endpoint_rejection("not_in_set");
    if let Some(suppressed) = NOT_IN_SET_LOG.admit() {
        tracing::warn!(
            profile = ?shown,
            set,
            suppressed,
            "credentials endpoint: request for a profile outside the token's output set"
        );
    }
    error(
        StatusCode::FORBIDDEN,
        "ProfileNotInSet",
        &format!(
            "profile {shown:?} is not in output set {set}, whose endpoint token this is: this container gets only its set's profiles (to give it the role, add the profile to outputs.{set}.profiles in rolecall's configuration)"
        ),
    )
}
