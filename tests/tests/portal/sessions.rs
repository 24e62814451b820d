//! Portal links and sessions over real sockets, on both engines: minted with OAuth2 or OAuth1
//! credentials or by the operator, exchanged once, a cookie the page cannot read, CSRF, the
//! app's scopes and rate limit, another app's records out of reach, `/admin/` out of reach,
//! expiry, logout, revocation by the app and the operator, and the app's removal.

use std::time::Duration;

use odoo_gateway::auth::{SignatureMethod, authorization_header_now};
use odoo_gateway::cli::apps::AppsCommand;
use odoo_gateway_tests::nats::Engine;
use odoo_gateway_tests::{HttpClient, TestGateway};
use serde_json::json;

use super::common::*;

fn apps() -> String {
    format!(
        "{}{}{}",
        app_toml(
            ACME,
            "events = [\"*\"]\noauth1_consumer_key = \"acme-consumer\"\noauth1_consumer_secret = \"acme-consumer-secret\"\noauth1_token = \"acme-token\"\noauth1_token_secret = \"acme-token-secret\"",
        ),
        app_toml(OTHER, "events = [\"*\"]"),
        app_toml(
            ("tiny", "tiny-client", "tiny-secret-0123456789"),
            "events = [\"*\"]",
        )
        .replace(
            "rate_limit_per_minute = 100000",
            "rate_limit_per_minute = 4"
        ),
    )
}

async fn sessions(engine: &Engine<'_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(engine, "", &apps()), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gw, ACME, "read write").await;
    let other = Api::new(&gw, OTHER, "read write").await;

    // The app mints a link with its OAuth2 token: a URL whose secret is in the fragment.
    let minted = acme
        .call("POST", "/v1/portal-sessions", Some(json!({})))
        .await;
    assert_eq!(minted.status, 201, "{:?}", minted.body);
    assert_eq!(minted.headers["cache-control"], "no-store");
    let body = minted.json();
    let url = body["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!("http://{}/portal#link=", gw.addr)),
        "{url}"
    );
    assert_eq!(body["scopes"], json!(["read", "write"]));
    let link = link_of(&body["url"]);

    // Exchanged once, for a cookie no script reads, scoped to the portal.
    let opened = exchange(&gw, &link).await;
    assert_eq!(opened.status, 201, "{:?}", opened.body);
    let set_cookie = opened.headers["set-cookie"].to_str().expect("ASCII");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/portal",
        "Max-Age=3600",
    ] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let again = exchange(&gw, &link).await;
    assert_eq!((again.status, code(&again)), (401, "invalid_link".into()));
    let cookie = set_cookie.split(';').next().expect("cookie").to_owned();
    let csrf = opened.json()["csrf"].as_str().expect("csrf").to_owned();
    let portal = Portal::open(&gw, &acme.link(json!({})).await).await;
    assert_eq!(portal.exchanged["app"], "acme");
    assert_eq!(portal.exchanged["minted_by"], "app");

    // A link exchanged from a form, or from another site, opens nothing.
    let form = HttpClient::new()
        .send(
            "POST",
            &gw.url("/portal/session"),
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("link={}", acme.link(json!({})).await).into_bytes(),
        )
        .await
        .expect("form");
    assert_eq!(form.status, 415);
    let cross = HttpClient::new()
        .send(
            "POST",
            &gw.url("/portal/session"),
            &[
                ("content-type", "application/json"),
                ("sec-fetch-site", "cross-site"),
            ],
            json!({ "link": acme.link(json!({})).await })
                .to_string()
                .into_bytes(),
        )
        .await
        .expect("cross-site");
    assert_eq!((cross.status, code(&cross)), (403, "cross_site".into()));

    // Minted with OAuth1 credentials too.
    let minting_url = gw.url("/v1/portal-sessions");
    let signed = authorization_header_now(
        "POST",
        &minting_url,
        &[],
        &acme_oauth1(),
        SignatureMethod::HmacSha256,
    )
    .expect("sign");
    let by_oauth1 = HttpClient::new()
        .send(
            "POST",
            &minting_url,
            &[
                ("authorization", &signed),
                ("content-type", "application/json"),
            ],
            b"{\"scopes\": [\"read\"]}".to_vec(),
        )
        .await
        .expect("oauth1");
    assert_eq!(by_oauth1.status, 201, "{:?}", by_oauth1.body);
    let reader = Portal::open(&gw, &link_of(&by_oauth1.json()["url"])).await;
    assert_eq!(reader.exchanged["scopes"], json!(["read"]));

    // The session works the app API, as the app.
    let created = portal
        .call(
            "POST",
            "/subscriptions",
            Some(json!({"id": "mine", "events": ["sale.order.*"], "destination": {"url": "http://127.0.0.1:9/mine"}})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.json()["subscription"], "app.acme.mine");
    assert_eq!(created.headers["cache-control"], "no-store");
    let seen_by_api = acme.call("GET", "/v1/subscriptions/mine", None).await;
    assert_eq!(seen_by_api.status, 200);
    let session = portal.raw("GET", "/portal/session", false, None).await;
    assert_eq!(session.status, 200);
    assert_eq!(session.json()["csrf"], portal.csrf.as_str());

    // Without the CSRF token, or without the cookie, nothing.
    let no_csrf = portal
        .raw("GET", "/portal/api/v1/subscriptions", false, None)
        .await;
    assert_eq!(
        (no_csrf.status, code(&no_csrf)),
        (403, "csrf_failed".into())
    );
    let no_cookie = HttpClient::new()
        .send(
            "GET",
            &gw.url("/portal/api/v1/subscriptions"),
            &[("x-portal-csrf", &portal.csrf)],
            Vec::new(),
        )
        .await
        .expect("no cookie");
    assert_eq!(
        (no_cookie.status, code(&no_cookie)),
        (401, "no_session".into())
    );
    let wrong_csrf = HttpClient::new()
        .send(
            "GET",
            &gw.url("/portal/api/v1/subscriptions"),
            &[("cookie", &cookie), ("x-portal-csrf", &portal.csrf)],
            Vec::new(),
        )
        .await
        .expect("another session's token");
    assert_eq!(wrong_csrf.status, 403, "a token of another session");
    let first = HttpClient::new()
        .send(
            "GET",
            &gw.url("/portal/api/v1/subscriptions"),
            &[("cookie", &cookie), ("x-portal-csrf", &csrf)],
            Vec::new(),
        )
        .await
        .expect("the first session");
    assert_eq!(first.status, 200);

    // Another app's records are not there, as through its API.
    let theirs = other
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"id": "theirs", "events": ["*"], "destination": {"url": "http://127.0.0.1:9/x"}})),
        )
        .await;
    assert_eq!(theirs.status, 201);
    for (method, path) in [
        ("GET", "/subscriptions/theirs"),
        ("PATCH", "/subscriptions/theirs"),
        ("DELETE", "/subscriptions/theirs"),
        ("GET", "/subscriptions/theirs/deliveries"),
        ("POST", "/subscriptions/theirs/test"),
        ("POST", "/subscriptions/theirs/rotate-secret"),
        ("POST", "/deliveries/evt_1.app.other.theirs.0/replay"),
        ("POST", "/dead-letters/evt_1.app.other.theirs.0/replay"),
    ] {
        let reply = portal.call(method, path, Some(json!({}))).await;
        assert_eq!(reply.status, 404, "{method} {path}: {:?}", reply.body);
    }
    let listed = portal.call("GET", "/subscriptions", None).await.json();
    let ids: Vec<&str> = listed["subscriptions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["mine"]);

    // Nothing but the app API: not /admin/, not minting sessions.
    let admin = portal.raw("GET", "/admin/status", true, None).await;
    assert_eq!(admin.status, 401, "a portal cookie is no admin token");
    for path in [
        "/portal/api/admin/status",
        "/portal/api/v1/portal-sessions",
        "/portal/api/v1/whoami",
    ] {
        let reply = portal.raw("POST", path, true, Some(json!({}))).await;
        assert_eq!(reply.status, 404, "{path}: {:?}", reply.body);
    }

    // A read-only session reads and writes nothing.
    let read_only = reader.call("GET", "/subscriptions", None).await;
    assert_eq!(read_only.status, 200);
    let write = reader
        .call(
            "PATCH",
            "/subscriptions/mine",
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (write.status, code(&write)),
        (403, "insufficient_scope".into())
    );
    // A link cannot hold more than its minter.
    let read_token = Api::new(&gw, ACME, "read").await;
    let more = read_token
        .call(
            "POST",
            "/v1/portal-sessions",
            Some(json!({"scopes": ["read", "write"]})),
        )
        .await;
    assert_eq!(
        (more.status, code(&more)),
        (403, "insufficient_scope".into())
    );
    let bad = acme
        .call(
            "POST",
            "/v1/portal-sessions",
            Some(json!({"session_ttl_secs": 172_800})),
        )
        .await;
    assert_eq!(
        (bad.status, code(&bad)),
        (422, "invalid_portal_session".into())
    );

    // The app's rate limit holds in the portal as in the API.
    let tiny = Api::new(
        &gw,
        ("tiny", "tiny-client", "tiny-secret-0123456789"),
        "read",
    )
    .await;
    let tiny_portal = Portal::open(&gw, &tiny.link(json!({})).await).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(tiny_portal.call("GET", "/subscriptions", None).await.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");

    // Expired links and sessions are refused.
    let short_link = acme.link(json!({"link_ttl_secs": 1})).await;
    let short_session = acme.link(json!({"session_ttl_secs": 1})).await;
    let short = Portal::open(&gw, &short_session).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = exchange(&gw, &short_link).await;
    assert_eq!((late.status, code(&late)), (401, "link_expired".into()));
    let ended = short.call("GET", "/subscriptions", None).await;
    assert_eq!(
        (ended.status, code(&ended)),
        (401, "session_expired".into())
    );

    // Logging out ends the session, and removes the cookie.
    let out = portal.raw("DELETE", "/portal/session", true, None).await;
    assert_eq!(out.status, 200, "{:?}", out.body);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .expect("ASCII")
            .contains("Max-Age=0")
    );
    let after = portal.call("GET", "/subscriptions", None).await;
    assert_eq!(
        (after.status, code(&after)),
        (401, "invalid_session".into())
    );

    // The operator mints a link for the app (here through the CLI), and revokes them all.
    let mut printed = Vec::new();
    AppsCommand::new(
        &gw.url(""),
        ADMIN,
        &["portal-link", "acme", "--scopes", "read"],
    )
    .expect("args")
    .run(&mut printed)
    .await
    .expect("portal-link");
    let printed = String::from_utf8(printed).expect("UTF-8");
    let url = printed
        .lines()
        .find(|l| l.contains("/portal#link="))
        .unwrap_or_else(|| panic!("{printed}"));
    let operators = Portal::open(&gw, &link_of(&json!(url))).await;
    assert_eq!(operators.exchanged["minted_by"], "operator");
    assert_eq!(
        operators.call("GET", "/subscriptions", None).await.status,
        200
    );
    let mut revoked = Vec::new();
    AppsCommand::new(&gw.url(""), ADMIN, &["portal-revoke", "acme"])
        .expect("args")
        .run(&mut revoked)
        .await
        .expect("portal-revoke");
    let gone = operators.call("GET", "/subscriptions", None).await;
    assert_eq!((gone.status, code(&gone)), (401, "invalid_session".into()));
    let first_again = reader.call("GET", "/subscriptions", None).await;
    assert_eq!(first_again.status, 401, "every session of the app ended");

    // The app revokes its own sessions through its API.
    let mine = Portal::open(&gw, &acme.link(json!({})).await).await;
    let revoke = acme.call("DELETE", "/v1/portal-sessions", None).await;
    assert_eq!(revoke.status, 200, "{:?}", revoke.body);
    assert_eq!(mine.call("GET", "/subscriptions", None).await.status, 401);

    // A stored app removed takes its sessions with it, and one registered again under its
    // name cannot use them.
    let added = gw
        .admin(
            ADMIN,
            "POST",
            "/admin/apps",
            Some(json!({"name": "shop", "scopes": ["read"]})),
        )
        .await;
    let shop = Api::new(
        &gw,
        (
            "shop",
            added["oauth2_client_id"].as_str().expect("id"),
            added["oauth2_client_secret"].as_str().expect("secret"),
        ),
        "read",
    )
    .await;
    let shop_portal = Portal::open(&gw, &shop.link(json!({})).await).await;
    let unused = shop.link(json!({})).await;
    gw.admin(ADMIN, "DELETE", "/admin/apps/shop", None).await;
    gw.admin(
        ADMIN,
        "POST",
        "/admin/apps",
        Some(json!({"name": "shop", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(
        shop_portal.call("GET", "/subscriptions", None).await.status,
        401
    );
    assert_eq!(exchange(&gw, &unused).await.status, 401);
    gw.stop().await.expect("stop");
}

on_both_engines!(
    portal_sessions_are_bound_to_one_app_on_sled,
    portal_sessions_are_bound_to_one_app_on_nats,
    sessions
);

/// A link is good once, even when two exchanges race for it.
async fn racing(engine: &Engine<'_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(engine, "", &apps()), dir.path())
        .await
        .expect("gateway");
    let acme = Api::new(&gw, ACME, "read").await;
    for _ in 0..5 {
        let link = acme.link(json!({})).await;
        let (a, b) = tokio::join!(exchange(&gw, &link), exchange(&gw, &link));
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 401]);
    }
    gw.stop().await.expect("stop");
}

on_both_engines!(
    a_link_opens_one_session_on_sled,
    a_link_opens_one_session_on_nats,
    racing
);

/// The shell: no data, a strict policy, its own files only.
#[tokio::test]
async fn the_portal_shell_is_static_and_strict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config(&Engine::Sled, "", &apps()), dir.path())
        .await
        .expect("gateway");
    let client = HttpClient::new();
    let shell = client.get(&gw.url("/portal")).await.expect("shell");
    assert_eq!(shell.status, 200);
    assert_eq!(shell.headers["content-type"], "text/html; charset=utf-8");
    let policy = shell.headers["content-security-policy"]
        .to_str()
        .expect("ASCII");
    assert!(
        policy.contains("default-src 'none'") && !policy.contains("unsafe"),
        "{policy}"
    );
    assert_eq!(shell.headers["referrer-policy"], "no-referrer");
    let script = client.get(&gw.url("/portal/app.js")).await.expect("script");
    assert_eq!(
        script.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        client
            .get(&gw.url("/portal/nope.js"))
            .await
            .expect("404")
            .status,
        404
    );
    let anonymous = client
        .get(&gw.url("/portal/session"))
        .await
        .expect("session");
    assert_eq!(
        (anonymous.status, code(&anonymous)),
        (401, "no_session".into())
    );
    let unknown = exchange(&gw, "not-a-link").await;
    assert_eq!(
        (unknown.status, code(&unknown)),
        (401, "invalid_link".into())
    );
    gw.stop().await.expect("stop");
}
