//! The TCP connector that enforces the [`SsrfPolicy`] at connect time.
//!
//! Every address is checked right before the socket is opened: IP literals in the URL here,
//! resolved names in [`GuardedResolver`], which hands the connector only allowed addresses.
//! Nothing resolves the name a second time, so a DNS answer cannot change between the check
//! and the connect (rebinding). TLS sits above this connector and never sees a refused host.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ssrf::SsrfPolicy;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// A connection refused by the SSRF policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing to connect to `{host}`: {addr} is {reason}")]
pub struct SsrfBlocked {
    /// The host as written in the destination URL.
    pub host: String,
    /// The (first) address that was refused.
    pub addr: IpAddr,
    /// Which denied range it is in.
    pub reason: &'static str,
}

/// Name resolution failures, kept apart from SSRF refusals.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error(transparent)]
    Blocked(#[from] SsrfBlocked),
    #[error("could not resolve `{host}`: {source}")]
    Lookup {
        host: String,
        source: std::io::Error,
    },
    #[error("`{0}` resolved to no address")]
    NoAddress(String),
}

/// Resolves with the system resolver and drops every address the policy refuses.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    policy: Arc<SsrfPolicy>,
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = BoxFuture<Self::Response, ResolveError>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // Port 0: the connector sets the URL's port on each address afterwards.
            let resolved = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| ResolveError::Lookup {
                    host: host.clone(),
                    source,
                })?;
            let mut allowed = Vec::new();
            let mut refused = None;
            for addr in resolved {
                match policy.check(addr.ip()) {
                    Ok(()) => allowed.push(addr),
                    Err(reason) => {
                        tracing::warn!(host = %host, addr = %addr.ip(), reason, "ssrf guard dropped a resolved address");
                        refused.get_or_insert((addr.ip(), reason));
                    }
                }
            }
            if allowed.is_empty() {
                return Err(match refused {
                    Some((addr, reason)) => SsrfBlocked { host, addr, reason }.into(),
                    None => ResolveError::NoAddress(host),
                });
            }
            Ok(allowed.into_iter())
        })
    }
}

/// `HttpConnector` behind the SSRF policy: the `http` half of the HTTPS connector.
#[derive(Debug, Clone)]
pub(crate) struct GuardedConnector {
    inner: HttpConnector<GuardedResolver>,
    policy: Arc<SsrfPolicy>,
}

impl GuardedConnector {
    pub(crate) fn new(policy: SsrfPolicy, connect_timeout: Duration) -> Self {
        let policy = Arc::new(policy);
        let mut inner = HttpConnector::new_with_resolver(GuardedResolver {
            policy: policy.clone(),
        });
        // The TLS layer above handles `https`; this one only opens TCP.
        inner.enforce_http(false);
        inner.set_nodelay(true);
        inner.set_connect_timeout(Some(connect_timeout));
        Self { inner, policy }
    }
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response, BoxError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        // `HttpConnector` connects to IP literals without asking the resolver: check them here.
        let host = dst.host().unwrap_or_default();
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(addr) = bare.parse::<IpAddr>()
            && let Err(reason) = self.policy.check(addr)
        {
            let err = SsrfBlocked {
                host: bare.to_owned(),
                addr,
                reason,
            };
            return Box::pin(std::future::ready(Err(err.into())));
        }
        let connecting = self.inner.call(dst);
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}
