//! The OAuth2 authorization server: token lifecycle, client authentication, RFC 6749 error
//! shapes, scopes and rate limits.

use odoo_gateway_tests::nats::{Engine, NatsServer};
use std::time::Duration;

use super::common::*;

#[tokio::test]
async fn token_lifecycle_issue_use_introspect_revoke_expire() {
    token_lifecycle_issue_use_introspect_revoke_expire_on(&Engine::Sled).await;
}

#[tokio::test]
async fn token_lifecycle_issue_use_introspect_revoke_expire_on_nats() {
    let server = NatsServer::start().expect("nats-server");
    token_lifecycle_issue_use_introspect_revoke_expire_on(&server.engine("t")).await;
}

async fn token_lifecycle_issue_use_introspect_revoke_expire_on(engine: &Engine<'_>) {
    let (gw, c, _dir) = start_on(engine).await;

    let reply = token_request(&c, &gw, Some(CRM), "grant_type=client_credentials").await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(header(&reply, "cache-control"), "no-store");
    let body = reply.json();
    assert_eq!(
        (
            body["token_type"].as_str(),
            body["expires_in"].as_u64(),
            body["scope"].as_str()
        ),
        (Some("Bearer"), Some(3600), Some("read write"))
    );
    let crm = body["access_token"].as_str().expect("token").to_owned();
    assert!(crm.len() >= 43, "at least 32 random bytes: {crm}");

    let me = whoami(&c, &gw, &format!("Bearer {crm}")).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(
        me.json(),
        serde_json::json!({ "app": "crm", "scopes": ["read", "write"] })
    );

    // Introspection: the owner sees it active; another client sees nothing.
    let seen = form_post(&c, &gw, "/oauth2/introspect", CRM, &format!("token={crm}"))
        .await
        .json();
    assert_eq!(
        (
            seen["active"].as_bool(),
            seen["client_id"].as_str(),
            seen["scope"].as_str()
        ),
        (Some(true), Some("crm-client"), Some("read write"))
    );
    assert_eq!(seen["token_type"], "Bearer");
    assert_eq!(
        seen["exp"].as_u64().unwrap() - seen["iat"].as_u64().unwrap(),
        3600
    );
    let other = form_post(
        &c,
        &gw,
        "/oauth2/introspect",
        READER,
        &format!("token={crm}"),
    )
    .await
    .json();
    assert_eq!(other, serde_json::json!({ "active": false }));
    let unknown = form_post(&c, &gw, "/oauth2/introspect", CRM, "token=nope")
        .await
        .json();
    assert_eq!(unknown, serde_json::json!({ "active": false }));

    // Revocation: only the owner's counts; unknown tokens are answered 200 too.
    assert_eq!(
        form_post(&c, &gw, "/oauth2/revoke", READER, &format!("token={crm}"))
            .await
            .status,
        200
    );
    assert_eq!(
        whoami(&c, &gw, &format!("Bearer {crm}")).await.status,
        200,
        "another client cannot revoke it"
    );
    assert_eq!(
        form_post(&c, &gw, "/oauth2/revoke", CRM, "token=never-issued")
            .await
            .status,
        200
    );
    assert_eq!(
        form_post(&c, &gw, "/oauth2/revoke", CRM, &format!("token={crm}"))
            .await
            .status,
        200
    );
    let revoked = whoami(&c, &gw, &format!("Bearer {crm}")).await;
    assert_api_error(&revoked, 401, "invalid_token");
    assert!(
        header(&revoked, "www-authenticate")
            .starts_with("Bearer realm=\"odoo-gateway\", error=\"invalid_token\"")
    );
    let seen = form_post(&c, &gw, "/oauth2/introspect", CRM, &format!("token={crm}"))
        .await
        .json();
    assert_eq!(seen, serde_json::json!({ "active": false }));

    // Expiry: `short` tokens live 2 s.
    let short = token(&c, &gw, ("short-client", "short-secret-0123456789"), None).await;
    assert_eq!(
        whoami(&c, &gw, &format!("Bearer {short}")).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_api_error(
        &whoami(&c, &gw, &format!("Bearer {short}")).await,
        401,
        "invalid_token",
    );
    let seen = form_post(
        &c,
        &gw,
        "/oauth2/introspect",
        ("short-client", "short-secret-0123456789"),
        &format!("token={short}"),
    )
    .await;
    assert_eq!(seen.json(), serde_json::json!({ "active": false }));

    // Malformed bearer credentials: 400 invalid_request (RFC 6750 §3.1).
    let malformed = whoami(&c, &gw, "Bearer ").await;
    assert_api_error(&malformed, 400, "invalid_request");
    assert!(header(&malformed, "www-authenticate").contains("error=\"invalid_request\""));
    assert_api_error(
        &whoami(&c, &gw, "Bearer two words").await,
        400,
        "invalid_request",
    );

    // No credentials at all: a bare challenge (RFC 6750 §3.1).
    let bare = c.get(&gw.url("/v1/whoami")).await.expect("whoami");
    assert_api_error(&bare, 401, "unauthorized");
    assert_eq!(
        header(&bare, "www-authenticate"),
        "Bearer realm=\"odoo-gateway\""
    );
    gw.stop().await.expect("stop");
}

#[tokio::test]
async fn client_authentication_scopes_and_rfc6749_errors() {
    let (gw, c, _dir) = start().await;
    let grant = "grant_type=client_credentials";

    // Body authentication works as well as Basic.
    let by_body = c
        .send(
            "POST",
            &gw.url("/oauth2/token"),
            &[FORM],
            format!("{grant}&client_id=crm-client&client_secret=crm-secret-0123456789")
                .into_bytes(),
        )
        .await
        .expect("token");
    assert_eq!(by_body.status, 200, "{:?}", by_body.body);

    // Both at once.
    let both = token_request(
        &c,
        &gw,
        Some(CRM),
        &format!("{grant}&client_id=crm-client&client_secret=crm-secret-0123456789"),
    )
    .await;
    assert_oauth_error(&both, 400, "invalid_request");
    // A wrong secret: 401 with a challenge, by Basic and by the form alike.
    let wrong = token_request(&c, &gw, Some(("crm-client", "wrong")), grant).await;
    assert_oauth_error(&wrong, 401, "invalid_client");
    assert_eq!(
        header(&wrong, "www-authenticate"),
        "Basic realm=\"odoo-gateway\""
    );
    let wrong = c
        .send(
            "POST",
            &gw.url("/oauth2/token"),
            &[FORM],
            format!("{grant}&client_id=crm-client&client_secret=wrong").into_bytes(),
        )
        .await
        .expect("token");
    assert_oauth_error(&wrong, 401, "invalid_client");
    assert_eq!(
        header(&wrong, "www-authenticate"),
        "Basic realm=\"odoo-gateway\""
    );
    assert_oauth_error(
        &token_request(&c, &gw, Some(("nobody", "x")), grant).await,
        401,
        "invalid_client",
    );
    assert_oauth_error(
        &token_request(&c, &gw, None, grant).await,
        401,
        "invalid_client",
    );

    // Grants, scopes and request shape.
    assert_oauth_error(
        &token_request(&c, &gw, Some(CRM), "scope=read").await,
        400,
        "invalid_request",
    );
    assert_oauth_error(
        &token_request(&c, &gw, Some(CRM), "grant_type=password").await,
        400,
        "unsupported_grant_type",
    );
    assert_oauth_error(
        &token_request(&c, &gw, Some(CRM), &format!("{grant}&scope=admin")).await,
        400,
        "invalid_scope",
    );
    // Scopes are separated by spaces only: a tab is not a separator.
    assert_oauth_error(
        &token_request(&c, &gw, Some(CRM), &format!("{grant}&scope=%09")).await,
        400,
        "invalid_scope",
    );
    assert_oauth_error(
        &token_request(&c, &gw, Some(READER), &format!("{grant}&scope=read+write")).await,
        400,
        "invalid_scope",
    );
    assert_oauth_error(
        &token_request(
            &c,
            &gw,
            Some(("none-client", "none-secret-0123456789")),
            grant,
        )
        .await,
        400,
        "unauthorized_client",
    );
    assert_oauth_error(
        &token_request(&c, &gw, Some(CRM), &format!("{grant}&{grant}")).await,
        400,
        "invalid_request",
    );
    let json = c
        .send(
            "POST",
            &gw.url("/oauth2/token"),
            &[
                ("content-type", "application/json"),
                ("authorization", &basic(CRM)),
            ],
            b"{}".to_vec(),
        )
        .await
        .expect("token");
    assert_oauth_error(&json, 400, "invalid_request");
    assert_api_error(
        &c.get(&gw.url("/oauth2/token")).await.expect("get"),
        405,
        "method_not_allowed",
    );
    assert_oauth_error(
        &form_post(&c, &gw, "/oauth2/introspect", CRM, "").await,
        400,
        "invalid_request",
    );
    // Introspection and revocation refuse a failed or missing client authentication with 401
    // and a `Basic` challenge (RFC 7662 §2.1, RFC 7009 §2.2.1), by Basic or by the form.
    for endpoint in ["/oauth2/introspect", "/oauth2/revoke"] {
        let by_basic = form_post(&c, &gw, endpoint, ("crm-client", "wrong"), "token=x").await;
        let by_form = c
            .send(
                "POST",
                &gw.url(endpoint),
                &[FORM],
                b"token=x&client_id=crm-client&client_secret=wrong".to_vec(),
            )
            .await
            .expect("post");
        let missing = c
            .send("POST", &gw.url(endpoint), &[FORM], b"token=x".to_vec())
            .await
            .expect("post");
        for reply in [by_basic, by_form, missing] {
            assert_oauth_error(&reply, 401, "invalid_client");
            assert_eq!(
                header(&reply, "www-authenticate"),
                "Basic realm=\"odoo-gateway\"",
                "{endpoint}"
            );
        }
    }

    // A narrower scope is granted as asked; a route needing another answers 403.
    let reply = token_request(&c, &gw, Some(CRM), &format!("{grant}&scope=write")).await;
    assert_eq!(reply.json()["scope"], "write");
    let write_only = reply.json()["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let forbidden = whoami(&c, &gw, &format!("Bearer {write_only}")).await;
    assert_api_error(&forbidden, 403, "insufficient_scope");
    assert_eq!(
        header(&forbidden, "www-authenticate"),
        "Bearer realm=\"odoo-gateway\", error=\"insufficient_scope\", scope=\"read\""
    );
    let read = token(&c, &gw, CRM, Some("read")).await;
    assert_eq!(
        whoami(&c, &gw, &format!("Bearer {read}")).await.json()["scopes"],
        serde_json::json!(["read"])
    );
    gw.stop().await.expect("stop");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let (gw, c, _dir) = start().await;
    // `reader`: 3 API requests and 4 token requests per minute.
    let bearer = format!("Bearer {}", token(&c, &gw, READER, None).await);
    for _ in 0..3 {
        assert_eq!(whoami(&c, &gw, &bearer).await.status, 200);
    }
    let limited = whoami(&c, &gw, &bearer).await;
    assert_api_error(&limited, 429, "rate_limited");
    let retry: u64 = header(&limited, "retry-after")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(
        whoami(
            &c,
            &gw,
            &format!("Bearer {}", token(&c, &gw, CRM, None).await)
        )
        .await
        .status,
        200,
        "limits are per app"
    );

    for _ in 0..3 {
        assert_eq!(
            token_request(&c, &gw, Some(READER), "grant_type=client_credentials")
                .await
                .status,
            200
        );
    }
    let limited = token_request(&c, &gw, Some(READER), "grant_type=client_credentials").await;
    assert_api_error(&limited, 429, "rate_limited");
    assert!(
        header(&limited, "retry-after")
            .parse::<u64>()
            .is_ok_and(|s| s >= 1)
    );
    gw.stop().await.expect("stop");
}

#[tokio::test]
async fn failing_on_an_apps_behalf_does_not_lock_it_out() {
    let (gw, c, _dir) = start().await;
    let wrong = (READER.0, "not-the-secret-0123456789");
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let reply = token_request(&c, &gw, Some(wrong), "grant_type=client_credentials").await;
        statuses.push(reply.status);
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(
        statuses[10..],
        [429; 2],
        "failures are slowed down: {statuses:?}"
    );
    // The real client, with its secret, still gets its token (the failures were counted
    // against the failing address and id, not against the app).
    let ok = token_request(&c, &gw, Some(READER), "grant_type=client_credentials").await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    gw.stop().await.expect("stop");
}
