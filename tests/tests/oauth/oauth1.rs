//! OAuth1-signed requests: both HMAC methods, replayed nonces, skewed timestamps, wrong
//! secrets, form bodies and `server.public_url`.

use odoo_gateway::auth::{SignatureMethod, authorization_header, authorization_header_now};
use odoo_gateway_tests::TestGateway;
use odoo_gateway_tests::nats::{Engine, NatsServer};

use super::common::*;

#[tokio::test]
async fn oauth1_signatures_verify_and_replays_and_skew_are_refused() {
    oauth1_signatures_verify_and_replays_and_skew_are_refused_on(&Engine::Sled).await;
}

#[tokio::test]
async fn oauth1_signatures_verify_and_replays_and_skew_are_refused_on_nats() {
    let server = NatsServer::start().expect("nats-server");
    oauth1_signatures_verify_and_replays_and_skew_are_refused_on(&server.engine("t")).await;
}

async fn oauth1_signatures_verify_and_replays_and_skew_are_refused_on(engine: &Engine<'_>) {
    let (gw, c, _dir) = start_on(engine).await;
    let url = gw.url("/v1/whoami?lang=fr&q=a+b");
    let send = |auth: String| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            c.send("GET", &url, &[("authorization", &auth)], Vec::new())
                .await
                .expect("whoami")
        }
    };

    for method in [SignatureMethod::HmacSha1, SignatureMethod::HmacSha256] {
        let auth = authorization_header_now("GET", &url, &[], &crm_oauth1(), method).expect("sign");
        let reply = send(auth.clone()).await;
        assert_eq!(reply.status, 200, "{method:?}: {:?}", reply.body);
        assert_eq!(reply.json()["app"], "crm");
        // The very same request again: its nonce was used.
        let replayed = send(auth).await;
        assert_api_error(&replayed, 401, "nonce_reused");
        assert_eq!(
            header(&replayed, "www-authenticate"),
            "OAuth realm=\"odoo-gateway\""
        );
    }

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let skewed = authorization_header(
        "GET",
        &url,
        &[],
        &crm_oauth1(),
        SignatureMethod::HmacSha1,
        now - 1000,
        "skewed",
    )
    .expect("sign");
    assert_api_error(&send(skewed).await, 401, "timestamp_out_of_window");
    let future = authorization_header(
        "GET",
        &url,
        &[],
        &crm_oauth1(),
        SignatureMethod::HmacSha1,
        now + 1000,
        "future",
    )
    .expect("sign");
    assert_api_error(&send(future).await, 401, "timestamp_out_of_window");

    let mut wrong_secret = crm_oauth1();
    wrong_secret.token_secret = "not-it".into();
    let auth = authorization_header_now("GET", &url, &[], &wrong_secret, SignatureMethod::HmacSha1)
        .expect("sign");
    assert_api_error(&send(auth).await, 401, "invalid_signature");
    // Signed for another URL (the query differs).
    let auth = authorization_header_now(
        "GET",
        &gw.url("/v1/whoami?lang=de"),
        &[],
        &crm_oauth1(),
        SignatureMethod::HmacSha1,
    )
    .expect("sign");
    assert_api_error(&send(auth).await, 401, "invalid_signature");

    let mut stranger = crm_oauth1();
    stranger.consumer_key = "nobody".into();
    let auth = authorization_header_now("GET", &url, &[], &stranger, SignatureMethod::HmacSha1)
        .expect("sign");
    assert_api_error(&send(auth).await, 401, "invalid_token");
    let plaintext =
        authorization_header_now("GET", &url, &[], &crm_oauth1(), SignatureMethod::Plaintext)
            .expect("sign");
    assert_api_error(&send(plaintext).await, 400, "invalid_request");
    assert_api_error(
        &send("OAuth oauth_consumer_key=\"crm-consumer\"".into()).await,
        400,
        "invalid_request",
    );
    gw.stop().await.expect("stop");
}

#[tokio::test]
async fn oauth1_signs_form_bodies_and_the_public_url() {
    let (gw, c, _dir) = start().await;
    let url = gw.url("/v1/whoami?b5=%3D%253D&a3=a");
    let form = "c2&a3=2+q";
    let form_params = vec![
        ("c2".to_owned(), String::new()),
        ("a3".to_owned(), "2 q".to_owned()),
    ];
    let post = |auth: String, content_type: &'static str, body: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            c.send(
                "POST",
                &url,
                &[("authorization", &auth), ("content-type", content_type)],
                body.as_bytes().to_vec(),
            )
            .await
            .expect("whoami")
        }
    };
    let sign = || {
        authorization_header_now(
            "POST",
            &url,
            &form_params,
            &crm_oauth1(),
            SignatureMethod::HmacSha1,
        )
        .expect("sign")
    };
    // A form body's parameters are signed...
    let reply = post(sign(), FORM.1, form).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    // ...so changing them breaks the signature...
    assert_api_error(
        &post(sign(), FORM.1, "c2&a3=3+q").await,
        401,
        "invalid_signature",
    );
    // ...and a body that is not a form is not part of the signature at all.
    assert_api_error(
        &post(sign(), "text/plain", form).await,
        401,
        "invalid_signature",
    );
    gw.stop().await.expect("stop");

    // Behind a proxy, `server.public_url` is what clients sign.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = CONFIG.replace(
        "[server]\n",
        "[server]\npublic_url = \"https://Gateway.Example.com:443/ignored\"\n",
    );
    let gw = TestGateway::start(&config, dir.path())
        .await
        .expect("start");
    let signed_for = "https://gateway.example.com/v1/whoami?x=1";
    let auth = authorization_header_now(
        "GET",
        signed_for,
        &[],
        &crm_oauth1(),
        SignatureMethod::HmacSha256,
    )
    .expect("sign");
    let reply = c
        .send(
            "GET",
            &gw.url("/v1/whoami?x=1"),
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await
        .expect("whoami");
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let auth = authorization_header_now(
        "GET",
        &gw.url("/v1/whoami?x=1"),
        &[],
        &crm_oauth1(),
        SignatureMethod::HmacSha256,
    )
    .expect("sign");
    let reply = c
        .send(
            "GET",
            &gw.url("/v1/whoami?x=1"),
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await
        .expect("whoami");
    assert_api_error(&reply, 401, "invalid_signature");
    gw.stop().await.expect("stop");
}
