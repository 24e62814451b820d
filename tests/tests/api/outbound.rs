//! Outbound authentication: OAuth2 tokens cached and refreshed, OAuth1 signatures, static
//! headers, and token requests held to the SSRF policy.

use odoo_gateway_tests::TestGateway;
use serde_json::json;

use super::common::*;

use super::receiver;

#[tokio::test]
async fn outbound_oauth2_token_is_cached_and_refreshed_after_a_401() {
    let receiver = receiver::Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(""), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let auth = json!({"type": "oauth2", "token_url": receiver.url("/token"), "client_id": receiver::CLIENT_ID,
                      "client_secret": receiver::CLIENT_SECRET, "scopes": ["hooks"]});
    let body = json!({"id": "tokens", "events": ["sale.order.confirmed"], "destination": {"url": receiver.url("/hook-oauth2"), "auth": auth}});
    let created = acme.call("POST", "/v1/subscriptions", Some(body)).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert!(
        !String::from_utf8_lossy(&created.body).contains(receiver::CLIENT_SECRET),
        "the client secret is not echoed"
    );

    for n in 0..3 {
        post_order(&gateway, &format!("oauth2-{n}")).await;
    }
    eventually(WAIT, "three deliveries", || async {
        (receiver.hits("/hook-oauth2").len() >= 3).then_some(())
    })
    .await;
    let hits = receiver.hits("/hook-oauth2");
    assert!(
        hits.iter()
            .all(|h| h.status == 200 && h.authorization.as_deref() == Some("Bearer tok-1")),
        "{hits:?}"
    );
    assert_eq!(
        receiver
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one token for several deliveries"
    );

    // The receiver stops taking the token: one 401, one refresh, and the same attempt succeeds.
    receiver.revoke_all();
    post_order(&gateway, "oauth2-after-revoke").await;
    eventually(WAIT, "the retried delivery", || async {
        (receiver.hits("/hook-oauth2").len() >= 5).then_some(())
    })
    .await;
    let hits = receiver.hits("/hook-oauth2");
    assert_eq!((hits[3].status, hits[4].status), (401, 200), "{hits:?}");
    assert_eq!(hits[4].authorization.as_deref(), Some("Bearer tok-2"));
    assert_eq!(
        receiver
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    // The receiver counts a request before it answers, and the attempt is stored after that
    // answer: read the log until all four deliveries show as delivered.
    let log = eventually(WAIT, "four delivered deliveries in the log", || async {
        let log = acme
            .call("GET", "/v1/subscriptions/tokens/deliveries", None)
            .await
            .json();
        let deliveries = log["deliveries"].as_array()?;
        (deliveries.len() == 4 && deliveries.iter().all(|d| d["status"] == "delivered"))
            .then_some(log)
    })
    .await;
    for delivery in log["deliveries"].as_array().expect("deliveries") {
        assert_eq!(
            delivery["attempts"].as_array().map(Vec::len),
            Some(1),
            "the refresh is inside one attempt: {delivery}"
        );
    }
    gateway.stop().await.expect("stop");
}

#[tokio::test]
async fn outbound_oauth1_and_static_header_from_the_configuration_file() {
    let receiver = receiver::Receiver::start().await;
    let destinations = format!(
        r#"
[[destinations]]
name = "shop"
url = "{oauth1}"
auth = {{ type = "oauth1", consumer_key = "{ck}", consumer_secret = "{cs}", token = "{tk}", token_secret = "{ts}" }}
[[destinations]]
name = "keyed"
url = "{keyed}"
auth = {{ type = "static_header", name = "x-api-key", value = "{key}" }}
[[subscriptions]]
id = "shop"
events = ["sale.order.*"]
destinations = ["shop"]
[[subscriptions]]
id = "keyed"
events = ["sale.order.*"]
destinations = ["keyed"]
"#,
        oauth1 = receiver.url("/hook-oauth1?shop=main&lang=fr"),
        keyed = receiver.url("/hook-static"),
        ck = receiver::CONSUMER_KEY,
        cs = receiver::CONSUMER_SECRET,
        tk = receiver::TOKEN,
        ts = receiver::TOKEN_SECRET,
        key = receiver::API_KEY,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = TestGateway::start(&config(&destinations), dir.path())
        .await
        .expect("gateway");
    post_order(&gateway, "oauth1").await;
    eventually(WAIT, "both deliveries", || async {
        (!receiver.hits("/hook-oauth1").is_empty() && !receiver.hits("/hook-static").is_empty())
            .then_some(())
    })
    .await;
    let signed = &receiver.hits("/hook-oauth1")[0];
    assert_eq!(
        signed.status, 200,
        "the OAuth1 signature verifies: {signed:?}"
    );
    assert!(signed.authorization.as_deref().is_some_and(
        |a| a.starts_with("OAuth ") && a.contains("oauth_signature_method=\"HMAC-SHA1\"")
    ));
    assert_eq!(
        receiver.hits("/hook-static")[0].status,
        200,
        "the static header is sent"
    );

    // A bad auth block is refused with its key named, at start-up as on reload.
    let bad = config(&destinations.replace("HMAC-SHA1", "x").replace(
        "token_secret = ",
        "signature_method = \"PLAINTEXT\", token_secret = ",
    ));
    let err = TestGateway::start(&bad, tempfile::tempdir().expect("tempdir").path())
        .await
        .expect_err("refused");
    assert!(
        format!("{err:#}").contains("destinations[0].auth.signature_method"),
        "{err:#}"
    );
    gateway.stop().await.expect("stop");
}

/// Token requests go through the delivery client and its SSRF guard: with loopback not
/// allowed, the token endpoint is never contacted and the attempt says why.
#[tokio::test]
async fn token_requests_obey_the_ssrf_policy() {
    let receiver = receiver::Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let guarded = config("").replace("allow = [\"127.0.0.0/8\"]", "allow = []");
    let gateway = TestGateway::start(&guarded, dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gateway, ACME, "read write").await;
    let auth = json!({"type": "oauth2", "token_url": receiver.url("/token"), "client_id": receiver::CLIENT_ID,
                      "client_secret": receiver::CLIENT_SECRET});
    let body = json!({"id": "guarded", "events": ["sale.order.*"], "destination": {"url": receiver.url("/hook-oauth2"), "auth": auth}});
    assert_eq!(
        acme.call("POST", "/v1/subscriptions", Some(body))
            .await
            .status,
        201
    );
    assert_eq!(
        acme.call("POST", "/v1/subscriptions/guarded/test", None)
            .await
            .status,
        202
    );
    let letters = eventually(WAIT, "a dead letter", || async {
        let letters =
            acme.call("GET", "/v1/dead-letters", None).await.json()["dead_letters"].clone();
        letters
            .as_array()
            .is_some_and(|l| !l.is_empty())
            .then_some(letters)
    })
    .await;
    let reason = letters[0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("auth_token_failed") && reason.contains("127.0.0.1"),
        "{reason}"
    );
    assert_eq!(
        receiver
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert!(receiver.hits("/").is_empty());
    gateway.stop().await.expect("stop");
}
