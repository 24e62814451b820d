//! TLS to a receiver with a private CA: the custom CA is trusted, HTTP/2 is negotiated by
//! ALPN, and a receiver whose certificate is not trusted fails with `tls_failed`.
//!
//! The certificates below were made once with `openssl` for this test only (P-256, valid
//! 2020-2120, leaf for `localhost` and 127.0.0.1). The key protects nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use odoo_gateway::delivery::{ClientOptions, DeliveryClient, SsrfPolicy};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const TEST_CA: &str = "\
-----BEGIN CERTIFICATE-----
MIIBcjCCARigAwIBAgICEAAwCgYIKoZIzj0EAwIwHzEdMBsGA1UEAwwUb2Rvby1n
YXRld2F5IHRlc3QgQ0EwIBcNMjAwMTAxMDAwMDAwWhgPMjEyMDAxMDEwMDAwMDBa
MB8xHTAbBgNVBAMMFG9kb28tZ2F0ZXdheSB0ZXN0IENBMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAE/AEO50hF6oFjcuRW4rnOyjWv3fyhi4NZ/4cIivv6hKaHfhsL
pqI7o0HSjIBX41KyyAry19UzfAKiMgMYBK0VHaNCMEAwDwYDVR0TAQH/BAUwAwEB
/zAOBgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFP6CO7zkXyeBrHSeNzopKPHLhhQg
MAoGCCqGSM49BAMCA0gAMEUCIA9vaed7aDz0meI/iUkvdayOWGW3suEkllrsEMrX
6ybRAiEAtwKxIAIe8Af9sJUv6yrGWrKj14vQxSNGzG9DOz7A5jk=
-----END CERTIFICATE-----
";

const TEST_LEAF: &str = "\
-----BEGIN CERTIFICATE-----
MIIBtzCCAV6gAwIBAgICEAEwCgYIKoZIzj0EAwIwHzEdMBsGA1UEAwwUb2Rvby1n
YXRld2F5IHRlc3QgQ0EwIBcNMjAwMTAxMDAwMDAwWhgPMjEyMDAxMDEwMDAwMDBa
MBQxEjAQBgNVBAMMCWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IA
BH5866PN8rKR6Z7/Kn7RXC5KhJWrYXVVxvrHvJyz4Tt59BmLrPpcUO0+5vrC226i
SFcmRPP133Tv8de1jruGA96jgZIwgY8wDAYDVR0TAQH/BAIwADAOBgNVHQ8BAf8E
BAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwEwGgYDVR0RBBMwEYIJbG9jYWxob3N0
hwR/AAABMB8GA1UdIwQYMBaAFP6CO7zkXyeBrHSeNzopKPHLhhQgMB0GA1UdDgQW
BBSSprf04vF0PQ546fQgzD5XI86ZPDAKBggqhkjOPQQDAgNHADBEAiAhV6arBPwX
crPsMl7HC3M3bdUnPlO3Q5BZNoOiYG8KWwIgci3jZXaa2CGf/BrN+rhAW0FfsTsn
KlKX+Acvyuo7nw0=
-----END CERTIFICATE-----
";

const TEST_LEAF_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgihXcQfGtLUrdlDoS
i5rNpgN6011LiH1TS3RHhmqlJA2hRANCAAR+fOujzfKykeme/yp+0VwuSoSVq2F1
Vcb6x7ycs+E7efQZi6z6XFDtPub6wttuokhXJkTz9d907/HXtY67hgPe
-----END PRIVATE KEY-----
";

/// An HTTPS receiver offering h2 and http/1.1; it answers with the HTTP version it saw.
async fn tls_receiver() -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(TEST_LEAF.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(TEST_LEAF_KEY.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Bounded: each test makes only a handful of connections.
        for _ in 0..16 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return; // the client refused our certificate
                };
                let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let body = format!("{:?}", req.version());
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

fn client_trusting_test_ca(dir: &tempfile::TempDir) -> DeliveryClient {
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TEST_CA).unwrap();
    DeliveryClient::new(ClientOptions {
        custom_ca: Some(ca),
        ssrf: SsrfPolicy::allowing(["127.0.0.0/8".parse().unwrap()]),
        ..ClientOptions::default()
    })
    .unwrap()
}

#[tokio::test]
async fn custom_ca_is_trusted_and_http2_negotiated() {
    let addr = tls_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let client = client_trusting_test_ca(&dir);
    for host in ["localhost", "127.0.0.1"] {
        let url: Uri = format!("https://{host}:{}/hook", addr.port())
            .parse()
            .unwrap();
        let r = client
            .post(
                &url,
                HeaderMap::new(),
                Bytes::from_static(b"{}"),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{host}");
        assert_eq!(r.version, http::Version::HTTP_2, "{host}");
        assert_eq!(&r.body_excerpt[..], b"HTTP/2.0");
    }
}

#[tokio::test]
async fn untrusted_certificate_fails_with_tls_code() {
    let addr = tls_receiver().await;
    let client = DeliveryClient::new(ClientOptions {
        ssrf: SsrfPolicy::allowing(["127.0.0.0/8".parse().unwrap()]),
        ..ClientOptions::default()
    })
    .unwrap();
    let url: Uri = format!("https://localhost:{}/", addr.port())
        .parse()
        .unwrap();
    let err = client
        .post(&url, HeaderMap::new(), Bytes::new(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "tls_failed", "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn custom_ca_file_without_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let err = DeliveryClient::new(ClientOptions {
        custom_ca: Some(ca),
        ..ClientOptions::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");
}
