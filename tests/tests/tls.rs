//! The gateway serves HTTPS with rustls when `[server.tls]` names a certificate and a key.

use std::time::Duration;

use bytes::Bytes;
use odoo_gateway::delivery::{Cidr, ClientOptions, DeliveryClient, SsrfPolicy};
use odoo_gateway_tests::{TestGateway, fixture};

#[tokio::test]
async fn ingest_over_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("write cert");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem())
        .expect("write key");
    let config = r#"
[server.tls]
cert = "cert.pem"
key = "key.pem"
[storage]
path = "data"
[[sources]]
name = "odoo"
tokens = ["tls-token-0123456789"]
"#;
    let gw = TestGateway::start_tls(config, dir.path())
        .await
        .expect("start");
    // Our own delivery client, trusting the test certificate as a private CA.
    let client = DeliveryClient::new(ClientOptions {
        custom_ca: Some(dir.path().join("cert.pem")),
        ssrf: SsrfPolicy::allowing(["127.0.0.0/8".parse::<Cidr>().expect("cidr")]),
        ..ClientOptions::default()
    })
    .expect("client");
    let url = format!(
        "https://localhost:{}/v1/odoo/odoo/tls-token-0123456789",
        gw.addr.port()
    )
    .parse()
    .expect("url");
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().expect("header"));
    let body = Bytes::from(fixture("native/res.partner.saved.json"));
    let reply = client
        .post(&url, headers, body, Duration::from_secs(5))
        .await
        .expect("https request");
    assert_eq!(reply.status, 202, "{:?}", reply.excerpt_text());
    assert_eq!(reply.version, http::Version::HTTP_2, "ALPN picks HTTP/2");
    gw.stop().await.expect("stop");
}
