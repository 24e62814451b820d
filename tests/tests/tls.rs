//! The gateway serves HTTPS with rustls when `[server.tls]` names a certificate and a key.

use std::time::Duration;

use bytes::Bytes;
use odoo_gateway::delivery::{Cidr, ClientOptions, DeliveryClient, SsrfPolicy};
use odoo_gateway_tests::{TestGateway, fixture};

/// A folder holding a fresh self-signed certificate for `localhost` and its key.
fn certified_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("write cert");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem())
        .expect("write key");
    dir
}

/// Our own delivery client, trusting the folder's certificate as a private CA.
fn trusting_client(dir: &std::path::Path) -> DeliveryClient {
    DeliveryClient::new(ClientOptions {
        custom_ca: Some(dir.join("cert.pem")),
        ssrf: SsrfPolicy::allowing(["127.0.0.0/8".parse::<Cidr>().expect("cidr")]),
        ..ClientOptions::default()
    })
    .expect("client")
}

#[tokio::test]
async fn ingest_over_https() {
    let dir = certified_dir();
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
    let client = trusting_client(dir.path());
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

#[tokio::test]
async fn oauth1_over_https_verifies_against_the_https_url_without_public_url() {
    let dir = certified_dir();
    let config = r#"
[server.tls]
cert = "cert.pem"
key = "key.pem"
[storage]
path = "data"
[[apps]]
name = "crm"
scopes = ["read"]
oauth1_consumer_key = "crm-consumer"
oauth1_consumer_secret = "crm-consumer-secret"
oauth1_token = "crm-token"
oauth1_token_secret = "crm-token-secret"
"#;
    let gw = TestGateway::start_tls(config, dir.path())
        .await
        .expect("start");
    let client = trusting_client(dir.path());
    let url = format!("https://localhost:{}/v1/whoami", gw.addr.port());
    // The client signs the URL it uses: https.
    let credentials = odoo_gateway::auth::oauth1::OAuth1Credentials {
        consumer_key: "crm-consumer".into(),
        consumer_secret: "crm-consumer-secret".into(),
        token: Some("crm-token".into()),
        token_secret: "crm-token-secret".into(),
    };
    let authorization = odoo_gateway::auth::oauth1::authorization_header_now(
        "POST",
        &url,
        &[],
        &credentials,
        odoo_gateway::auth::oauth1::SignatureMethod::HmacSha1,
    )
    .expect("sign");
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", authorization.parse().expect("header"));
    let reply = client
        .post(
            &url.parse().expect("url"),
            headers,
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await
        .expect("https request");
    assert_eq!(reply.status, 200, "{:?}", reply.excerpt_text());
    gw.stop().await.expect("stop");
}
