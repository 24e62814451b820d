//! What the operator and the apps do with the connector: `odoo cursor show|reset` on a
//! running gateway, and an app's subscription that enriches within what the operator allows.

use base64::Engine as _;
use odoo_gateway::cli::odoo::OdooCommand;
use odoo_gateway_tests::fake_odoo::{self, FakeOdoo};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::*;

async fn cli(gateway: &TestGateway, args: &[&str]) -> String {
    let mut out = Vec::new();
    OdooCommand::new(&gateway.url(""), ADMIN, args)
        .expect("arguments")
        .run(&mut out)
        .await
        .expect("the command");
    String::from_utf8(out).expect("text")
}

#[tokio::test]
async fn a_cursor_is_shown_and_reset_to_an_earlier_time() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let poll = POLL.replace("start = \"beginning\"", "start = \"now\"");
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, &poll, ORDERS);
    let gateway = start(&config, dir.path()).await;
    // `now`: the fixture's order (2024-05-14 09:12:40) is before the start.
    wait_polls(&odoo, odoo.calls("sale.order.search_read") + 2).await;
    let shown = cli(&gateway, &["cursor", "show", "odoo", "sale.order"]).await;
    assert!(
        shown.contains("read up to 2024-05-14 09:12:40 (id 12"),
        "{shown}"
    );
    assert!(inbox.received().is_empty());

    let moved = cli(
        &gateway,
        &[
            "cursor",
            "reset",
            "odoo",
            "sale.order",
            "--to",
            "2024-05-14 00:00:00",
        ],
    )
    .await;
    assert!(moved.contains("reads from 2024-05-14 00:00:00"), "{moved}");
    let received = inbox.wait_for(1, WAIT).await.expect("the order read again");
    assert_eq!(body(&received[0])["record_id"], 12);
    let json: Value = serde_json::from_str(
        &cli(
            &gateway,
            &["--json", "cursor", "show", "odoo", "sale.order"],
        )
        .await,
    )
    .expect("JSON");
    assert_eq!(json["cursor"]["write_date"], "2024-05-14 09:12:40");

    // Forgotten: the next poll is a first one again (`now`), and delivers nothing new.
    let forgot = cli(&gateway, &["cursor", "reset", "odoo", "sale.order"]).await;
    assert!(forgot.contains("Forgot"), "{forgot}");
    // A model the source does not poll, a time that is not one: refused.
    let mut out = Vec::new();
    let err = OdooCommand::new(
        &gateway.url(""),
        ADMIN,
        &["cursor", "show", "odoo", "res.partner"],
    )
    .expect("arguments")
    .run(&mut out)
    .await
    .expect_err("not polled");
    assert!(format!("{err:#}").contains("does not poll"), "{err:#}");
    let err = OdooCommand::new(
        &gateway.url(""),
        ADMIN,
        &["cursor", "reset", "odoo", "sale.order", "--to", "yesterday"],
    )
    .expect("arguments")
    .run(&mut out)
    .await
    .expect_err("not a time");
    assert!(format!("{err:#}").contains("yesterday"), "{err:#}");
    gateway.stop().await.expect("stops");
}

const APP: (&str, &str) = ("acme-client", "acme-secret-0123456789");

fn app_toml() -> String {
    let hash = hex::encode(sha2::Sha256::digest(APP.1.as_bytes()));
    format!(
        "[[apps]]\nname = \"acme\"\nscopes = [\"read\", \"write\"]\noauth2_client_id = \"{}\"\n\
         oauth2_client_secret_sha256 = \"{hash}\"\nevents = [\"sale.order.*\"]\n",
        APP.0
    )
}

async fn app_token(gateway: &TestGateway) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", APP.0, APP.1));
    let reply = HttpClient::new()
        .send(
            "POST",
            &gateway.url("/oauth2/token"),
            &[
                ("authorization", &format!("Basic {basic}")),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            b"grant_type=client_credentials&scope=read+write".to_vec(),
        )
        .await
        .expect("token request");
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json()["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

#[tokio::test]
async fn an_app_subscription_enriches_within_what_the_operator_allows() {
    let odoo = FakeOdoo::start().await.expect("fake odoo");
    let inbox = inbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let allowance = r#"
[sources.odoo.app_enrich]
"sale.order" = [{ field = "partner_id", model = "res.partner", fields = ["name", "zip"] }]
[delivery.client.app_ssrf]
allow = ["127.0.0.0/8"]
"#;
    let config = config(&odoo, &inbox, fake_odoo::API_KEY, allowance, &app_toml());
    let gateway = start(&config, dir.path()).await;
    let token = app_token(&gateway).await;
    let subscribe = |enrich: Value| {
        let body = json!({"events": ["sale.order.*"], "destination": {"url": inbox.url("/inbox").to_string(),
            "secret": SECRET}, "enrich": enrich});
        let token = token.clone();
        let url = gateway.url("/v1/subscriptions");
        async move {
            HttpClient::new()
                .send(
                    "POST",
                    &url,
                    &[
                        ("authorization", &format!("Bearer {token}")),
                        ("content-type", "application/json"),
                    ],
                    body.to_string().into_bytes(),
                )
                .await
                .expect("subscribe")
        }
    };
    // More than allowed: a field, a model, another field.
    for refused in [
        json!([{"field": "partner_id", "fields": ["name", "email"]}]),
        json!([{"field": "partner_id", "model": "res.users", "fields": ["name"]}]),
        json!([{"field": "user_id"}]),
    ] {
        let reply = subscribe(refused.clone()).await;
        assert_eq!(reply.status, 403, "{refused}: {:?}", reply.body);
        assert_eq!(
            reply.json()["error"]["code"],
            "enrich_not_allowed",
            "{:?}",
            reply.body
        );
    }
    let reply = subscribe(json!([{"field": "partner_id", "fields": ["zip"]}])).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(
        reply.json()["enrich"],
        json!([{"field": "partner_id", "model": null, "fields": ["zip"]}])
    );
    post_confirmed_order(&gateway).await;
    let received = inbox.wait_for(1, WAIT).await.expect("the delivery");
    let payload = &body(&received[0])["payload"];
    assert_eq!(
        payload["partner_id"],
        json!({"id": 9, "zip": "94523"}),
        "{payload}"
    );
    assert_eq!(odoo.calls("res.partner.read"), 1);
    gateway.stop().await.expect("stops");
}
