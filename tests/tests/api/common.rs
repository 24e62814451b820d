//! What every API test shares: the configuration with two apps, an API client holding an
//! app's token, and small helpers.

use std::time::Duration;

use base64::Engine as _;
use odoo_gateway::cli::inbox::{Inbox, InboxOptions};
use odoo_gateway_tests::nats::Engine;
use odoo_gateway_tests::{HttpClient, Reply, TestGateway, fixture};
use serde_json::{Value, json};
use sha2::Digest as _;

pub(crate) const SOURCE_TOKEN: &str = "test-token-0123456789";
pub(crate) const WAIT: Duration = Duration::from_secs(20);
/// (app, client id, client secret)
pub(crate) const ACME: (&str, &str, &str) = ("acme", "acme-client", "acme-secret-0123456789");
pub(crate) const OTHER: (&str, &str, &str) = ("other", "other-client", "other-secret-0123456789");

pub(crate) fn app_toml((name, id, secret): (&str, &str, &str)) -> String {
    let hash = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    format!(
        "[[apps]]\nname = \"{name}\"\nscopes = [\"read\", \"write\"]\noauth2_client_id = \"{id}\"\n\
         oauth2_client_secret_sha256 = \"{hash}\"\nrate_limit_per_minute = 100000\ntoken_rate_limit_per_minute = 1000\nevents = [\"*\"]\n"
    )
}

pub(crate) fn config(extra: &str) -> String {
    config_on(&Engine::Sled, extra)
}

/// [`config`] with the control plane on `engine`.
pub(crate) fn config_on(engine: &Engine<'_>, extra: &str) -> String {
    format!(
        r#"
[server]
admin_token = "admin-token-0123456789"
{storage}
[delivery]
retries = 0
[delivery.backoff]
schedule = ["50ms"]
jitter = 0.0
[delivery.client.ssrf]
allow = ["127.0.0.0/8"]
# The apps' receivers run on loopback too; apps get only what this list gives them.
[delivery.client.app_ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{SOURCE_TOKEN}"]
{acme}
{other}
{extra}
"#,
        acme = app_toml(ACME),
        other = app_toml(OTHER),
        storage = engine.storage_toml("data"),
    )
}

pub(crate) struct Api {
    pub(crate) client: HttpClient,
    base: String,
    pub(crate) token: String,
}

impl Api {
    /// A client of `app` holding a token with `scope` (space-separated).
    pub(crate) async fn new(
        gateway: &TestGateway,
        (_, id, secret): (&str, &str, &str),
        scope: &str,
    ) -> Self {
        let client = HttpClient::new();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        let form = format!(
            "grant_type=client_credentials&scope={}",
            scope.replace(' ', "+")
        );
        let reply = client
            .send(
                "POST",
                &gateway.url("/oauth2/token"),
                &[
                    ("authorization", &format!("Basic {basic}")),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                form.into_bytes(),
            )
            .await
            .expect("token request");
        assert_eq!(reply.status, 200, "token: {:?}", reply.body);
        let token = reply.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();
        Self {
            client,
            base: gateway.url(""),
            token,
        }
    }

    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {}", self.token);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        self.client
            .send(method, &format!("{}{path}", self.base), &headers, bytes)
            .await
            .expect("api call")
    }

    pub(crate) async fn upload(&self, bytes: Vec<u8>, content_type: &str, query: &str) -> Reply {
        let auth = format!("Bearer {}", self.token);
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", content_type),
        ];
        self.client
            .send(
                "POST",
                &format!("{}/v1/plugins{query}", self.base),
                &headers,
                bytes,
            )
            .await
            .expect("upload")
    }
}

pub(crate) fn code(reply: &Reply) -> String {
    reply.json()["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

pub(crate) fn message(reply: &Reply) -> String {
    reply.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

pub(crate) async fn post_order(gateway: &TestGateway, id: &str) {
    let mut order: Value =
        serde_json::from_slice(&fixture("native/sale.order.confirmed.json")).expect("fixture");
    order["x_test_id"] = json!(id);
    let url = gateway.url(&format!("/v1/odoo/odoo/{SOURCE_TOKEN}?event=confirmed"));
    let reply = HttpClient::new()
        .post_json(&url, order.to_string().as_bytes())
        .await
        .expect("ingest");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
}

pub(crate) async fn inbox() -> Inbox {
    Inbox::start_local(InboxOptions::default())
        .await
        .expect("inbox")
}

pub(crate) use odoo_gateway_tests::harness::eventually;
pub(crate) use odoo_gateway_tests::on_both_engines;
