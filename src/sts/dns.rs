//! Host-name lookups for STS connections (and a proxy's), each on a thread
//! of its own started with [`crate::sys::limits::run_on_thread`].
//!
//! The HTTP client's default resolver (hyper-util's `GaiResolver`) calls
//! `getaddrinfo` on tokio's blocking pool, which panics when the system
//! refuses a thread: at the pod's pids limit the next refresh that opens a
//! connection to a host name would abort the sidecar. Here a refused thread
//! fails that lookup, so the STS attempt fails as a transient
//! `ThreadLimitReached` (counted, logged with the hint, retried with
//! backoff) and the published credentials stay. An IP address in the
//! endpoint needs no lookup (the connector parses it first).
//!
//! A lookup that outlives the attempt's timeout finishes on its thread and
//! its answer is dropped; the system resolver's own timeouts bound it.

use std::net::{IpAddr, ToSocketAddrs};

use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};

use crate::sys::limits::run_on_thread;

/// `getaddrinfo` on a thread of its own, per lookup.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ThreadResolver;

impl ResolveDns for ThreadResolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        let host = name.to_owned();
        let lookup = run_on_thread("rolecall-dns", "a host-name lookup", move || {
            (host.as_str(), 0)
                .to_socket_addrs()
                .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<IpAddr>>())
        });
        DnsFuture::new(async move {
            match lookup.await {
                Ok(Ok(ips)) => Ok(ips),
                Ok(Err(e)) => Err(ResolveDnsError::new(e)),
                Err(e) => Err(ResolveDnsError::new(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_resolves_on_its_own_thread_and_a_bad_one_fails() {
        let ips = ThreadResolver.resolve_dns("localhost").await.unwrap();
        assert!(ips.iter().any(IpAddr::is_loopback), "{ips:?}");
        let e = ThreadResolver
            .resolve_dns("no-such-host.invalid")
            .await
            .unwrap_err();
        assert!(
            std::error::Error::source(&e).is_some(),
            "the resolver's error is kept: {e:?}"
        );
    }
}
