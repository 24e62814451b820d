//! The delivery client against the real inbox over sockets on 127.0.0.1: statuses,
//! `Retry-After`, timeouts, redirects, the SSRF guard, bounded body reads and signatures.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway::delivery::{ClientOptions, DeliveryClient, DeliveryError, SsrfPolicy};
use odoo_gateway::signing::{self, SigningSecret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "delivery_client/tls.rs"]
mod tls;

const TIMEOUT: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(5);

fn loopback_client() -> DeliveryClient {
    DeliveryClient::new(ClientOptions {
        ssrf: SsrfPolicy::allowing(["127.0.0.0/8".parse().unwrap()]),
        ..ClientOptions::default()
    })
    .unwrap()
}

fn strict_client() -> DeliveryClient {
    DeliveryClient::new(ClientOptions::default()).unwrap()
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

fn json_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h
}

fn fixture() -> Bytes {
    Bytes::from_static(odoo_gateway_fixtures::NATIVE_ORDER.as_bytes())
}

#[tokio::test]
async fn signed_delivery_is_received_and_verifies() {
    let old = SigningSecret::generate();
    let new = SigningSecret::generate();
    // The receiver knows only the new secret; we sign with both (rotation).
    let inbox = Inbox::start_local(InboxOptions {
        secrets: vec![new.clone()],
        ..InboxOptions::default()
    })
    .await
    .unwrap();
    let body = fixture();
    let mut headers = json_headers();
    headers.extend(signing::webhook_headers(&[old, new], "msg_ok_1", now(), &body).unwrap());

    let client = loopback_client();
    let url = inbox.url("/hooks/orders?tenant=a");
    let r = client
        .post(&url, headers, body.clone(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.is_success());
    assert_eq!(r.retry_after, None);
    assert_eq!(&r.body_excerpt[..], b"200 OK\n");
    assert!(!r.body_truncated);

    let got = inbox.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got.len(), 1);
    let d = &got[0];
    assert_eq!(d.method, http::Method::POST);
    assert_eq!(d.path, "/hooks/orders?tenant=a");
    assert_eq!(d.body, body);
    assert_eq!(d.webhook_id(), Some("msg_ok_1"));
    assert_eq!(d.header("content-type"), Some("application/json"));
    assert!(d.header("user-agent").unwrap().starts_with("odoo-gateway/"));
    assert!(d.verified(), "{:?}", d.verification);
    inbox.shutdown().await;
}

#[tokio::test]
async fn caller_cannot_set_framing_or_host_headers() {
    let inbox = Inbox::start_local(InboxOptions::default()).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("1"));
    headers.insert(header::HOST, HeaderValue::from_static("internal.example"));
    headers.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    headers.insert("x-custom", HeaderValue::from_static("kept"));
    let body = Bytes::from_static(b"0123456789");
    let r = loopback_client()
        .post(&inbox.url("/"), headers, body.clone(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let got = inbox.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got[0].body, body);
    assert_eq!(got[0].header("content-length"), Some("10"));
    assert_eq!(
        got[0].header("host"),
        Some(inbox.addr().to_string().as_str())
    );
    assert_eq!(got[0].header("transfer-encoding"), None);
    assert_eq!(got[0].header("x-custom"), Some("kept"));
    inbox.shutdown().await;
}

#[tokio::test]
async fn tampered_body_fails_verification_at_the_inbox() {
    let secret = SigningSecret::generate();
    let inbox = Inbox::start_local(InboxOptions {
        secrets: vec![secret.clone()],
        ..InboxOptions::default()
    })
    .await
    .unwrap();
    let mut headers = HeaderMap::new();
    headers.extend(signing::webhook_headers(&[secret], "msg_t", now(), b"original").unwrap());
    let client = loopback_client();
    let url = inbox.url("/");
    client
        .post(&url, headers, Bytes::from_static(b"tampered"), TIMEOUT)
        .await
        .unwrap();
    let got = inbox.wait_for(1, WAIT).await.unwrap();
    assert!(!got[0].verified());
    inbox.shutdown().await;
}

#[tokio::test]
async fn non_2xx_fail_first_and_retry_after() {
    let inbox = Inbox::start_local(InboxOptions {
        fail_first: 1,
        ..InboxOptions::default()
    })
    .await
    .unwrap();
    let client = loopback_client();
    let url = inbox.url("/x");
    let post = || client.post(&url, HeaderMap::new(), Bytes::from_static(b"{}"), TIMEOUT);

    let first = post().await.unwrap();
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!first.is_success());
    assert_eq!(post().await.unwrap().status, StatusCode::OK);

    inbox.set_status(StatusCode::TOO_MANY_REQUESTS);
    inbox.set_response_header(header::RETRY_AFTER, HeaderValue::from_static("7"));
    let limited = post().await.unwrap();
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.retry_after, Some(Duration::from_secs(7)));

    let later = SystemTime::now() + Duration::from_secs(120);
    let date = HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap();
    inbox.set_status(StatusCode::SERVICE_UNAVAILABLE);
    inbox.set_response_header(header::RETRY_AFTER, date);
    let unavailable = post().await.unwrap();
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    let wait = unavailable.retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );

    assert_eq!(inbox.received().len(), 4);
    inbox.shutdown().await;
}

#[tokio::test]
async fn hanging_receiver_times_out_quickly() {
    let inbox = Inbox::start_local(InboxOptions::default()).await.unwrap();
    inbox.set_hang(true);
    let client = loopback_client();
    let started = Instant::now();
    let err = client
        .post(
            &inbox.url("/slow"),
            HeaderMap::new(),
            Bytes::new(),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "timeout", "{err}");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(2));
    // The request did reach the receiver: a timeout is not proof of non-delivery.
    assert_eq!(inbox.wait_for(1, WAIT).await.unwrap().len(), 1);
    inbox.shutdown().await;
}

#[tokio::test]
async fn inbox_shutdown_ends_hanging_requests_and_wait_for_times_out() {
    let inbox = Inbox::start_local(InboxOptions::default()).await.unwrap();
    let err = inbox
        .wait_for(1, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!((err.got, err.wanted), (0, 1));

    inbox.set_hang(true);
    let client = loopback_client();
    let url = inbox.url("/");
    let pending = tokio::spawn(async move {
        client
            .post(
                &url,
                HeaderMap::new(),
                Bytes::new(),
                Duration::from_secs(10),
            )
            .await
    });
    inbox.wait_for(1, WAIT).await.unwrap();
    let started = Instant::now();
    inbox.shutdown().await;
    let err = pending.await.unwrap().unwrap_err();
    assert_eq!(err.code(), "request_failed", "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn slow_but_in_time_receiver_answers() {
    let inbox = Inbox::start_local(InboxOptions {
        delay: Duration::from_millis(100),
        status: StatusCode::ACCEPTED,
        ..InboxOptions::default()
    })
    .await
    .unwrap();
    let r = loopback_client()
        .post(
            &inbox.url("/"),
            HeaderMap::new(),
            Bytes::new(),
            Duration::from_secs(3),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.latency >= Duration::from_millis(100));
    inbox.shutdown().await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let inbox = Inbox::start_local(InboxOptions {
        status: StatusCode::FOUND,
        ..InboxOptions::default()
    })
    .await
    .unwrap();
    let elsewhere = inbox.url("/elsewhere").to_string();
    inbox.set_response_header(header::LOCATION, HeaderValue::from_str(&elsewhere).unwrap());
    let r = loopback_client()
        .post(
            &inbox.url("/start"),
            HeaderMap::new(),
            Bytes::new(),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(!r.is_success());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = inbox.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/start");
    inbox.shutdown().await;
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let inbox = Inbox::start_local(InboxOptions::default()).await.unwrap();
    let client = strict_client();
    let err = client
        .post(&inbox.url("/"), HeaderMap::new(), Bytes::new(), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "ssrf_blocked");
    assert!(!err.is_retryable());
    let DeliveryError::Ssrf(blocked) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(blocked.host, "127.0.0.1");
    assert_eq!(blocked.addr.to_string(), "127.0.0.1");
    assert!(err.to_string().contains("127.0.0.1") && err.to_string().contains("loopback"));

    // A name that resolves to loopback is refused at connect time too.
    let by_name: Uri = format!("http://localhost:{}/", inbox.addr().port())
        .parse()
        .unwrap();
    let err = client
        .post(&by_name, HeaderMap::new(), Bytes::new(), TIMEOUT)
        .await
        .unwrap_err();
    let DeliveryError::Ssrf(blocked) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(blocked.host, "localhost");
    assert!(blocked.addr.is_loopback());

    // IPv4-mapped IPv6 spelling of loopback.
    let mapped: Uri = format!("http://[::ffff:127.0.0.1]:{}/", inbox.addr().port())
        .parse()
        .unwrap();
    let err = client
        .post(&mapped, HeaderMap::new(), Bytes::new(), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "ssrf_blocked", "{err}");

    assert!(inbox.received().is_empty());

    // With loopback allowed, the name reaches the inbox (only its allowed address is used).
    let r = loopback_client()
        .post(&by_name, HeaderMap::new(), Bytes::new(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    inbox.shutdown().await;
}

#[tokio::test]
async fn metadata_address_is_refused_even_with_loopback_allowed() {
    let client = loopback_client();
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "https://[fd00::1]/",
        "http://10.1.2.3:8080/",
    ] {
        let url: Uri = url.parse().unwrap();
        let err = client
            .post(&url, HeaderMap::new(), Bytes::new(), TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "ssrf_blocked", "{url}: {err}");
    }
    let url: Uri = "http://169.254.169.254/".parse().unwrap();
    let err = client
        .post(&url, HeaderMap::new(), Bytes::new(), TIMEOUT)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("169.254.169.254"), "{err}");
    assert!(err.to_string().contains("metadata"), "{err}");
}

#[tokio::test]
async fn refused_connection_and_bad_urls_have_codes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = loopback_client();
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    let err = client
        .post(&url, HeaderMap::new(), Bytes::new(), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "connect_failed", "{err}");

    let url: Uri = "ftp://127.0.0.1/".parse().unwrap();
    let err = client
        .post(&url, HeaderMap::new(), Bytes::new(), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_url");

    let url: Uri = "http://no-such-host.invalid/".parse().unwrap();
    let err = client
        .post(&url, HeaderMap::new(), Bytes::new(), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "dns_failed", "{err}");
}

/// A raw server that answers with an endless chunked body (bounded here to a few MiB).
async fn endless_body_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        // Read the request head; the client sends a tiny request.
        let _ = stream.read(&mut buf).await;
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = format!("{:x}\r\n{}\r\n", 4096, "a".repeat(4096));
        for _ in 0..1024 {
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                return; // the client dropped the body, as it should
            }
        }
    });
    addr
}

#[tokio::test]
async fn body_is_read_only_up_to_the_excerpt_limit() {
    let addr = endless_body_server().await;
    let url: Uri = format!("http://{addr}/").parse().unwrap();
    let r = loopback_client()
        .post(&url, HeaderMap::new(), Bytes::new(), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body_excerpt.len(),
        odoo_gateway::delivery::BODY_EXCERPT_LIMIT
    );
    assert!(r.body_truncated);
    assert!(r.body_excerpt.iter().all(|b| *b == b'a'));
}
