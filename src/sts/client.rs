//! The HTTPS client every STS call shares, and the SDK's STS clients built
//! on it, one per region and endpoint.

use aws_sdk_sts::config::{BehaviorVersion, Region, SharedAsyncSleep};
use aws_smithy_async::rt::sleep::TokioSleep;
use aws_smithy_http_client::tls;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use super::guard::ResponseGuard;
use super::{CONNECT_TIMEOUT, Sts, dns};
use crate::aws::FALLBACK_REGION;
use crate::config::Profile;
use crate::tls::CaBundle;

/// The HTTPS client every STS call shares: rustls with the platform's roots
/// (read by rustls-native-certs), plus `bundle`'s certificates; through
/// `proxy` (the SDK client's own CONNECT support) when given. Host names
/// are looked up by [`dns::ThreadResolver`], never on tokio's blocking pool.
pub(super) fn https_client(
    bundle: Option<&CaBundle>,
    proxy: Option<aws_smithy_http_client::proxy::ProxyConfig>,
) -> aws_sdk_sts::config::SharedHttpClient {
    let provider = || tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring);
    let trust = match bundle {
        None => tls::TrustStore::default(),
        Some(bundle) => tls::TrustStore::default().with_pem_certificate(bundle.pem()),
    };
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context with a trust store always builds");
    let Some(proxy) = proxy else {
        return aws_smithy_http_client::Builder::new()
            .tls_provider(provider())
            .tls_context(context)
            .build_with_resolver(dns::ThreadResolver);
    };
    // The high-level builder has no proxy setting: the connector builder
    // does, with the same settings the high-level one passes on.
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut b = aws_smithy_http_client::Connector::builder();
        b.set_connector_settings(settings.cloned());
        // (The time source the high-level builder also copies only feeds
        // request telemetry; the connector's own setter is private.)
        if let Some(c) = components {
            b.set_sleep_impl(c.sleep_impl());
        }
        b.proxy_config(proxy.clone())
            .tls_provider(provider())
            .tls_context(context.clone())
            .build_with_resolver(dns::ThreadResolver)
    })
}

impl Sts {
    pub(super) fn client(&self, profile: &Profile) -> aws_sdk_sts::Client {
        let key = (
            profile.region.clone(),
            profile.sts_endpoint.clone(),
            profile.use_fips,
            profile.use_dualstack,
        );
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(key)
            .or_insert_with(|| {
                let region = profile.region.as_deref().unwrap_or(FALLBACK_REGION);
                let mut conf = aws_sdk_sts::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new(region.to_owned()))
                    .use_fips(profile.use_fips)
                    .use_dual_stack(profile.use_dualstack)
                    .http_client(self.http.clone())
                    .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(CONNECT_TIMEOUT.min(self.attempt_timeout))
                            .operation_attempt_timeout(self.attempt_timeout)
                            .build(),
                    );
                if let Some(url) = &profile.sts_endpoint {
                    conf = conf.endpoint_url(url);
                }
                conf = conf.interceptor(ResponseGuard {
                    clock: self.clock.clone(),
                    wall: self.wall,
                });
                aws_sdk_sts::Client::from_conf(conf.build())
            })
            .clone()
    }
}
