//! The endpoint's output sets: one token per set, each kept in its set's
//! dir; the token a request carries picks the set, and with declared sets a
//! profile outside it gets a 403 that names only the request's own set.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use super::{EndpointToken, NOT_IN_SET_LOG, TokenError, constant_time_eq, error};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::output::Sets;
use crate::ratelimit::{LOG_INTERVAL, LogLimit};

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

/// Equal tokens (after a rotation) are logged at most once per interval.
static EQUAL_TOKENS_LOG: LogLimit = LogLimit::new(LOG_INTERVAL);

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
        // Every request with that token gets here: one line per interval.
        if let Some(suppressed) = EQUAL_TOKENS_LOG.admit() {
            tracing::error!(
                suppressed,
                "two output sets' endpoint tokens are equal (a supplied token file was rotated to another set's token): requests with it are refused until they differ"
            );
        }
        return None;
    }
    found
}

/// The 403 for a profile outside the token's output set: counted, logged
/// (rate-limited), and naming only the request's set.
pub(super) fn not_in_set(metrics: &Metrics, shown: &str, set: &str) -> Response<Full<Bytes>> {
    metrics.count_endpoint_rejection("not_in_set");
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Env, Flags};
    use crate::schedule;

    fn config(root: &Path, supplied: Option<(&Path, &Path)>) -> Config {
        let token = |p: Option<&Path>| {
            p.map(|p| format!(", endpoint_token_file: {}", p.display()))
                .unwrap_or_default()
        };
        let yaml = format!(
            "region: eu-west-1\nendpoint_addr: 127.0.0.1:9912\nprofiles:\n  a: arn:aws:iam::111122223333:role/a\n  b: arn:aws:iam::111122223333:role/b\noutputs:\n  one: {{ dir: {}, profiles: [a]{} }}\n  two: {{ dir: {}, profiles: [b]{} }}\n",
            root.join("one").display(),
            token(supplied.map(|s| s.0)),
            root.join("two").display(),
            token(supplied.map(|s| s.1)),
        );
        Config::load_text(
            &Flags::default(),
            &Env::new(),
            Path::new("c.yaml"),
            yaml.as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn each_set_gets_its_own_token_and_a_token_picks_its_set() {
        let root = tempfile::tempdir().unwrap();
        let c = config(root.path(), None);
        let sets = Sets::new(
            &c,
            schedule::random_jitter,
            crate::clock::Clock::system(),
            &crate::metrics::Metrics::new(),
        );
        sets.prepare().unwrap();
        let tokens = start_tokens(&sets, &c).unwrap();
        let read = |set: &str| {
            std::fs::read_to_string(root.path().join(set).join("endpoint-token")).unwrap()
        };
        let (one, two) = (read("one"), read("two"));
        assert_ne!(one, two);
        assert_eq!(token_set(&tokens, one.as_bytes()).as_deref(), Some("one"));
        assert_eq!(token_set(&tokens, two.as_bytes()).as_deref(), Some("two"));
        assert_eq!(token_set(&tokens, b"not-a-token"), None);
        assert_eq!(token_set(&tokens, &one.as_bytes()[1..]), None);
    }

    #[test]
    fn two_sets_supplied_the_same_token_are_refused_without_showing_it() {
        let root = tempfile::tempdir().unwrap();
        let same = "s".repeat(40);
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::write(&a, &same).unwrap();
        std::fs::write(&b, &same).unwrap();
        let c = config(root.path(), Some((&a, &b)));
        let sets = Sets::new(
            &c,
            schedule::random_jitter,
            crate::clock::Clock::system(),
            &crate::metrics::Metrics::new(),
        );
        sets.prepare().unwrap();
        let e = start_tokens(&sets, &c).unwrap_err().to_string();
        assert!(
            e.contains("output sets one and two have the same endpoint token"),
            "{e}"
        );
        assert!(!e.contains(&same), "{e}");
    }
}
