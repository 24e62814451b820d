//! The outbound HTTP client: one pooled hyper client over rustls, behind the SSRF guard.
//!
//! This module owns sending one POST and describing what came back. It never follows
//! redirects (a 3xx is an answer like any non-2xx), never reads more than
//! [`BODY_EXCERPT_LIMIT`] bytes of a response, and bounds the whole exchange by the caller's
//! timeout. It does not retry: the queue decides that, with [`super::backoff`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use super::backoff::serde_duration;
use super::connector::GuardedConnector;
use super::error::{ClientBuildError, DeliveryError};
use super::ssrf::SsrfPolicy;

/// At most this much of a response body is read (and kept for the attempt log).
pub const BODY_EXCERPT_LIMIT: usize = 1024;

const USER_AGENT: &str = concat!("odoo-gateway/", env!("CARGO_PKG_VERSION"));

/// How the client connects. Config shape (all optional):
/// `{ custom_ca = "ca.pem", native_roots = false, ssrf = { allow = [] },
///    pool_idle_timeout = "90s", max_idle_per_host = 32, connect_timeout = "5s" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientOptions {
    /// Extra trusted CA certificates (PEM), for receivers with a private CA.
    pub custom_ca: Option<PathBuf>,
    /// Also trust the operating system's roots (the Mozilla set is always trusted).
    pub native_roots: bool,
    /// Which addresses the operator's destinations may reach.
    pub ssrf: SsrfPolicy,
    /// Which addresses apps' destinations may reach (those made through the API). Separate
    /// from `ssrf`: an app never gets the operator's allowances. Default: no private,
    /// loopback or metadata address at all.
    pub app_ssrf: SsrfPolicy,
    /// Idle pooled connections are closed after this long.
    #[serde(with = "serde_duration")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    pub max_idle_per_host: usize,
    /// Bound on TCP connect, per address tried.
    #[serde(with = "serde_duration")]
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            custom_ca: None,
            native_roots: false,
            ssrf: SsrfPolicy::default(),
            app_ssrf: SsrfPolicy::default(),
            pool_idle_timeout: Duration::from_secs(90),
            max_idle_per_host: 32,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl ClientOptions {
    /// The same options with the apps' address policy in place of the operator's: what the
    /// client for app-owned destinations is built from.
    pub fn for_apps(&self) -> Self {
        Self {
            ssrf: self.app_ssrf.clone(),
            ..self.clone()
        }
    }
}

/// What a receiver answered.
#[derive(Debug, Clone)]
pub struct DeliveryResponse {
    /// Response status; a 3xx is not followed.
    pub status: StatusCode,
    /// The `Retry-After` header, as a delay from now (seconds or HTTP-date form).
    pub retry_after: Option<Duration>,
    /// The first [`BODY_EXCERPT_LIMIT`] bytes of the body (fewer if it ended or stalled).
    pub body_excerpt: Bytes,
    /// Whether the body went on past the excerpt (or could not be read to its end in time).
    pub body_truncated: bool,
    /// HTTP version used (HTTP/2 when the receiver offered it over TLS).
    pub version: http::Version,
    /// From the start of the call to the response head.
    pub latency: Duration,
}

impl DeliveryResponse {
    /// Whether the receiver accepted the delivery (2xx).
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The excerpt as text (invalid UTF-8 replaced), for the attempt log.
    pub fn excerpt_text(&self) -> String {
        String::from_utf8_lossy(&self.body_excerpt).into_owned()
    }
}

/// Sends deliveries. Cloning is cheap and shares the connection pool.
#[derive(Clone, Debug)]
pub struct DeliveryClient {
    inner: Client<HttpsConnector<GuardedConnector>, Full<Bytes>>,
}

impl DeliveryClient {
    /// Builds the TLS configuration and the pool.
    pub fn new(options: ClientOptions) -> Result<Self, ClientBuildError> {
        let tls = tls_config(&options)?;
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(GuardedConnector::new(options.ssrf, options.connect_timeout));
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(options.pool_idle_timeout)
            .pool_max_idle_per_host(options.max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self { inner })
    }

    /// POSTs `body` to `url`; the whole exchange (connect, send, response head and excerpt)
    /// takes at most `timeout`. Any status is `Ok`: the caller decides what a non-2xx means.
    pub async fn post(
        &self,
        url: &Uri,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<DeliveryResponse, DeliveryError> {
        check_url(url)?;
        let mut request = Request::post(url.clone())
            .body(Full::new(body))
            .map_err(|e| DeliveryError::InvalidRequest(e.to_string()))?;
        *request.headers_mut() = headers;
        strip_connection_headers(request.headers_mut());
        request
            .headers_mut()
            .entry(header::USER_AGENT)
            .or_insert(HeaderValue::from_static(USER_AGENT));

        let start = Instant::now();
        let deadline = tokio::time::Instant::from_std(start + timeout);
        let response = tokio::time::timeout_at(deadline, self.inner.request(request))
            .await
            .map_err(|_| DeliveryError::Timeout { after: timeout })?
            .map_err(DeliveryError::from_client)?;
        let latency = start.elapsed();

        let status = response.status();
        let version = response.version();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // The head is in: a slow or broken body only shortens the excerpt, it does not turn
        // an answer the receiver already gave into a failure.
        let (body_excerpt, body_truncated) =
            match tokio::time::timeout_at(deadline, read_excerpt(response.into_body())).await {
                Ok(excerpt) => excerpt,
                Err(_) => (Bytes::new(), true),
            };
        Ok(DeliveryResponse {
            status,
            retry_after,
            body_excerpt,
            body_truncated,
            version,
            latency,
        })
    }
}

impl DeliveryClient {
    /// Sends any request through the same pool and SSRF guard (the OAuth2 token fetch), and
    /// reads at most `max_body` bytes of the answer (more is an error); the whole exchange
    /// takes at most `timeout`. Redirects are not followed.
    pub async fn exchange(
        &self,
        mut request: Request<Full<Bytes>>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<http::Response<Bytes>, DeliveryError> {
        check_url(request.uri())?;
        strip_connection_headers(request.headers_mut());
        request
            .headers_mut()
            .entry(header::USER_AGENT)
            .or_insert(HeaderValue::from_static(USER_AGENT));
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(DeliveryError::from_client)?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|e| {
                    DeliveryError::Request(format!(
                        "reading the answer (at most {max_body} bytes): {e}"
                    ))
                })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| DeliveryError::Timeout { after: timeout })?
    }
}

/// Framing and routing headers are the client's business, not the caller's: a plugin that set
/// a wrong `content-length` or a `host` must not be able to garble the request or smuggle one.
fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn check_url(url: &Uri) -> Result<(), DeliveryError> {
    let invalid = |why: &str| DeliveryError::InvalidUrl(format!("{url}: {why}"));
    match url.scheme_str() {
        Some("http" | "https") => {}
        Some(_) => return Err(invalid("scheme must be http or https")),
        None => return Err(invalid("missing scheme")),
    }
    match url.host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err(invalid("missing host")),
    }
}

fn tls_config(options: &ClientOptions) -> Result<rustls::ClientConfig, ClientBuildError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if options.native_roots {
        // Unreadable system certificates are skipped: the Mozilla roots still apply.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
    }
    if let Some(path) = &options.custom_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect())
            .map_err(|e| ClientBuildError::CustomCa {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(ClientBuildError::CustomCa {
                path: path.clone(),
                reason: "no certificate in file".into(),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ClientBuildError::CustomCa {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientBuildError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Reads at most [`BODY_EXCERPT_LIMIT`] bytes, then drops the body (and with it the rest).
async fn read_excerpt(mut body: Incoming) -> (Bytes, bool) {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return (buf.freeze(), true);
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let room = BODY_EXCERPT_LIMIT - buf.len();
        if data.len() > room {
            buf.extend_from_slice(&data[..room]);
            return (buf.freeze(), true);
        }
        buf.extend_from_slice(&data);
        if buf.len() == BODY_EXCERPT_LIMIT {
            return (buf.freeze(), !hyper::body::Body::is_end_stream(&body));
        }
    }
    (buf.freeze(), false)
}

/// `Retry-After` as a delay from `now`: delta-seconds or an HTTP-date (a past date is zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long values saturate; the backoff caps them anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn urls_are_checked_before_sending() {
        for bad in ["ftp://example.com/x", "/relative/path"] {
            let url: Uri = bad.parse().unwrap();
            let err = check_url(&url).unwrap_err();
            assert_eq!(err.code(), "invalid_url", "{bad}");
        }
        assert!(check_url(&"https://example.com/hook".parse().unwrap()).is_ok());
    }

    #[test]
    fn a_missing_custom_ca_is_a_build_error() {
        let options = ClientOptions {
            custom_ca: Some("/nonexistent/ca.pem".into()),
            ..ClientOptions::default()
        };
        let err = DeliveryClient::new(options).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn options_config_shape() {
        let o: ClientOptions = serde_json::from_str(
            r#"{"ssrf": {"allow": ["127.0.0.0/8"]}, "connect_timeout": "2s"}"#,
        )
        .unwrap();
        assert_eq!(o.connect_timeout, Duration::from_secs(2));
        assert_eq!(o.ssrf.allow.len(), 1);
        assert_eq!(o.max_idle_per_host, 32);
    }
}
