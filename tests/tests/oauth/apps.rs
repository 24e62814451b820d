//! Apps registered through `odoo-gateway apps` (the admin API) while the gateway runs, and
//! the file winning over the store.

use odoo_gateway::auth::{OAuth1Credentials, SignatureMethod, authorization_header_now};
use odoo_gateway_tests::nats::{Engine, NatsServer};
use odoo_gateway_tests::{HttpClient, TestGateway};

use super::common::*;

#[tokio::test]
async fn apps_are_managed_through_the_cli_while_the_gateway_runs() {
    apps_are_managed_through_the_cli_while_the_gateway_runs_on(&Engine::Sled).await;
}

#[tokio::test]
async fn apps_are_managed_through_the_cli_while_the_gateway_runs_on_nats() {
    let server = NatsServer::start().expect("nats-server");
    apps_are_managed_through_the_cli_while_the_gateway_runs_on(&server.engine("t")).await;
}

async fn apps_are_managed_through_the_cli_while_the_gateway_runs_on(engine: &Engine<'_>) {
    let (gw, c, _dir) = start_on(engine).await;
    let added = cli(
        &gw,
        "admin-token-0123456789",
        &["add", "erp", "--scopes", "read,write"],
    )
    .await
    .expect("apps add");
    assert!(added.contains("shown this once"), "{added}");
    let (client_id, secret) = (
        printed(&added, "client_id"),
        printed(&added, "client_secret"),
    );
    let bearer = format!(
        "Bearer {}",
        token(&c, &gw, (&client_id, &secret), None).await
    );
    assert_eq!(
        whoami(&c, &gw, &bearer).await.json(),
        serde_json::json!({ "app": "erp", "scopes": ["read", "write"] })
    );
    let oauth1 = OAuth1Credentials {
        consumer_key: printed(&added, "consumer_key"),
        consumer_secret: printed(&added, "consumer_secret"),
        token: Some(printed(&added, "token ")),
        token_secret: printed(&added, "token_secret"),
    };
    let url = gw.url("/v1/whoami");
    let auth = authorization_header_now("GET", &url, &[], &oauth1, SignatureMethod::HmacSha256)
        .expect("sign");
    assert_eq!(
        c.send("GET", &url, &[("authorization", &auth)], Vec::new())
            .await
            .expect("whoami")
            .json()["app"],
        "erp"
    );

    let listed = cli(&gw, "admin-token-0123456789", &["list"])
        .await
        .expect("apps list");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("erp ") && l.contains(&client_id)),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("crm ") && l.contains("config")),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "no secret is listed");

    // The file wins: its names cannot be taken or removed here.
    let taken = cli(&gw, "admin-token-0123456789", &["add", "crm"])
        .await
        .expect_err("crm is in the file");
    assert!(taken.to_string().contains("conflict"), "{taken}");
    assert!(
        cli(&gw, "admin-token-0123456789", &["remove", "crm"])
            .await
            .is_err()
    );
    assert!(
        cli(&gw, "admin-token-0123456789", &["add", "erp"])
            .await
            .is_err(),
        "the name is taken"
    );
    assert!(
        cli(&gw, "wrong", &["list"])
            .await
            .expect_err("bad token")
            .to_string()
            .contains("admin token")
    );

    assert!(
        cli(&gw, "admin-token-0123456789", &["remove", "erp"])
            .await
            .expect("apps remove")
            .contains("Removed")
    );
    assert_api_error(&whoami(&c, &gw, &bearer).await, 401, "invalid_token");
    assert!(
        cli(&gw, "admin-token-0123456789", &["remove", "erp"])
            .await
            .is_err()
    );

    // Limits and token lifetime can be set at registration.
    let args = [
        "add",
        "tiny",
        "--token-ttl",
        "30m",
        "--rate-limit-per-minute",
        "1",
    ];
    let tiny = cli(&gw, "admin-token-0123456789", &args)
        .await
        .expect("apps add");
    let creds = (printed(&tiny, "client_id"), printed(&tiny, "client_secret"));
    let issued = token_request(
        &c,
        &gw,
        Some((&creds.0, &creds.1)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(issued.json()["expires_in"], 1800);
    let bearer = format!(
        "Bearer {}",
        issued.json()["access_token"].as_str().expect("token")
    );
    assert_eq!(whoami(&c, &gw, &bearer).await.status, 200);
    assert_api_error(&whoami(&c, &gw, &bearer).await, 429, "rate_limited");
    let refused = cli(
        &gw,
        "admin-token-0123456789",
        &["add", "zero", "--rate-limit-per-minute", "0"],
    )
    .await;
    assert!(
        refused
            .expect_err("zero")
            .to_string()
            .contains("invalid_app")
    );
    gw.stop().await.expect("stop");
}

#[tokio::test]
async fn an_app_in_the_file_shadows_a_stored_one_of_the_same_name() {
    an_app_in_the_file_shadows_a_stored_one_of_the_same_name_on(&Engine::Sled).await;
}

#[tokio::test]
async fn an_app_in_the_file_shadows_a_stored_one_of_the_same_name_on_nats() {
    let server = NatsServer::start().expect("nats-server");
    an_app_in_the_file_shadows_a_stored_one_of_the_same_name_on(&server.engine("t")).await;
}

async fn an_app_in_the_file_shadows_a_stored_one_of_the_same_name_on(engine: &Engine<'_>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, config_on(engine)).expect("write config");
    let gw = TestGateway::start_with(odoo_gateway::reload::ConfigSource::File(file.clone()))
        .await
        .expect("start");
    let c = HttpClient::new();
    let added = cli(&gw, "admin-token-0123456789", &["add", "billing"])
        .await
        .expect("apps add");
    let stored = (
        printed(&added, "client_id"),
        printed(&added, "client_secret"),
    );
    let bearer = format!(
        "Bearer {}",
        token(&c, &gw, (&stored.0, &stored.1), None).await
    );
    assert_eq!(whoami(&c, &gw, &bearer).await.json()["app"], "billing");

    // The operator now writes `billing` into the file, with other credentials: the file wins.
    let with_billing = format!(
        "{}\n[[apps]]\nname = \"billing\"\nscopes = [\"read\"]\noauth2_client_id = \"billing-file\"\noauth2_client_secret_sha256 = \"{}\"\n",
        config_on(engine),
        "4a2f18f0c025f78c5025de1784c726e82f698d48ad2e3575cd6d22043eb60c95"
    );
    std::fs::write(&file, with_billing).expect("rewrite config");
    let reload = c
        .send(
            "POST",
            &gw.url("/admin/reload"),
            &[("authorization", "Bearer admin-token-0123456789")],
            Vec::new(),
        )
        .await
        .expect("reload");
    assert_eq!(reload.status, 200, "{:?}", reply_text(&reload));

    assert_api_error(&whoami(&c, &gw, &bearer).await, 401, "invalid_token");
    assert_oauth_error(
        &token_request(
            &c,
            &gw,
            Some((&stored.0, &stored.1)),
            "grant_type=client_credentials",
        )
        .await,
        401,
        "invalid_client",
    );
    let from_file = token(&c, &gw, ("billing-file", "crm-secret-0123456789"), None).await;
    assert_eq!(
        whoami(&c, &gw, &format!("Bearer {from_file}")).await.json()["scopes"],
        serde_json::json!(["read"])
    );
    let listed = cli(&gw, "admin-token-0123456789", &["list"])
        .await
        .expect("apps list");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("billing ") && l.contains("shadowed")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("billing ") && l.contains("config")),
        "{listed}"
    );
    gw.stop().await.expect("stop");
}
