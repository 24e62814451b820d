//! What the portal suites share: a configuration with apps, an app's API client, and a
//! portal session as a browser would hold it.

use base64::Engine as _;
use odoo_gateway_tests::nats::Engine;
use odoo_gateway_tests::{HttpClient, Reply, TestGateway};
use serde_json::{Value, json};
use sha2::Digest as _;

pub(crate) const ADMIN: &str = "admin-token-0123456789";
pub(crate) const SOURCE_TOKEN: &str = "portal-token-0123456789";
/// (app, client id, client secret)
pub(crate) const ACME: (&str, &str, &str) = ("acme", "acme-client", "acme-secret-0123456789");
pub(crate) const OTHER: (&str, &str, &str) = ("other", "other-client", "other-secret-0123456789");
/// ACME's OAuth1 credentials.
pub(crate) fn acme_oauth1() -> odoo_gateway::auth::OAuth1Credentials {
    odoo_gateway::auth::OAuth1Credentials {
        consumer_key: "acme-consumer".into(),
        consumer_secret: "acme-consumer-secret".into(),
        token: Some("acme-token".into()),
        token_secret: "acme-token-secret".into(),
    }
}

/// An `[[apps]]` table for `app`, with `more` lines (`events = [...]`).
pub(crate) fn app_toml((name, id, secret): (&str, &str, &str), more: &str) -> String {
    let hash = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    format!(
        "[[apps]]\nname = \"{name}\"\nscopes = [\"read\", \"write\"]\noauth2_client_id = \"{id}\"\n\
         oauth2_client_secret_sha256 = \"{hash}\"\nrate_limit_per_minute = 100000\n\
         token_rate_limit_per_minute = 1000\n{more}\n"
    )
}

/// A gateway configuration on `engine`: an admin token, loopback receivers allowed to apps,
/// source `odoo` (with `source_more` lines), then `extra`.
pub(crate) fn config(engine: &Engine<'_>, source_more: &str, extra: &str) -> String {
    format!(
        r#"
[server]
admin_token = "{ADMIN}"
{storage}
[delivery]
retries = 0
[delivery.backoff]
schedule = ["50ms"]
jitter = 0.0
[delivery.client.app_ssrf]
allow = ["127.0.0.0/8"]
[[sources]]
name = "odoo"
tokens = ["{SOURCE_TOKEN}"]
{source_more}
{extra}
"#,
        storage = engine.storage_toml("data"),
    )
}

/// An app's API client holding an OAuth2 token.
pub(crate) struct Api {
    client: HttpClient,
    base: String,
    token: String,
}

impl Api {
    /// A client of `app` with a token of `scope` (space-separated).
    pub(crate) async fn new(
        gw: &TestGateway,
        (_, id, secret): (&str, &str, &str),
        scope: &str,
    ) -> Self {
        let client = HttpClient::new();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        let reply = client
            .send(
                "POST",
                &gw.url("/oauth2/token"),
                &[
                    ("authorization", &format!("Basic {basic}")),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                format!(
                    "grant_type=client_credentials&scope={}",
                    scope.replace(' ', "+")
                )
                .into_bytes(),
            )
            .await
            .expect("token request");
        assert_eq!(reply.status, 200, "token: {:?}", reply.body);
        Self {
            client,
            base: gw.url(""),
            token: reply.json()["access_token"]
                .as_str()
                .expect("token")
                .to_owned(),
        }
    }

    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {}", self.token);
        self.client
            .send(
                method,
                &format!("{}{path}", self.base),
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            )
            .await
            .expect("api call")
    }

    /// Uploads a plugin component.
    pub(crate) async fn upload(&self, bytes: Vec<u8>, query: &str) -> Reply {
        let auth = format!("Bearer {}", self.token);
        self.client
            .send(
                "POST",
                &format!("{}/v1/plugins{query}", self.base),
                &[
                    ("authorization", &auth),
                    ("content-type", "application/wasm"),
                ],
                bytes,
            )
            .await
            .expect("upload")
    }

    /// A portal link of this app (`body`: scopes, lifetimes); its secret.
    pub(crate) async fn link(&self, body: Value) -> String {
        let minted = self.call("POST", "/v1/portal-sessions", Some(body)).await;
        assert_eq!(minted.status, 201, "{:?}", minted.body);
        link_of(&minted.json()["url"])
    }
}

/// The secret in a portal URL (`.../portal#link=<secret>`).
pub(crate) fn link_of(url: &Value) -> String {
    url.as_str()
        .and_then(|u| u.split_once("/portal#link="))
        .map(|(_, link)| link.to_owned())
        .unwrap_or_else(|| panic!("not a portal URL: {url}"))
}

/// A portal session as the page holds it: the cookie and the CSRF token.
pub(crate) struct Portal {
    client: HttpClient,
    base: String,
    pub(crate) cookie: String,
    pub(crate) csrf: String,
    pub(crate) exchanged: Value,
}

/// `POST /portal/session` with `link`: the reply.
pub(crate) async fn exchange(gw: &TestGateway, link: &str) -> Reply {
    HttpClient::new()
        .send(
            "POST",
            &gw.url("/portal/session"),
            &[("content-type", "application/json")],
            json!({ "link": link }).to_string().into_bytes(),
        )
        .await
        .expect("exchange")
}

impl Portal {
    /// Exchanges `link`, which must work.
    pub(crate) async fn open(gw: &TestGateway, link: &str) -> Self {
        let reply = exchange(gw, link).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        let set = reply.headers["set-cookie"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        let cookie = set.split(';').next().expect("name=value").to_owned();
        let exchanged = reply.json();
        Self {
            client: HttpClient::new(),
            base: gw.url(""),
            cookie,
            csrf: exchanged["csrf"].as_str().expect("csrf").to_owned(),
            exchanged,
        }
    }

    /// `method /portal/api/v1<path>` with the cookie and the CSRF token.
    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.raw(method, &format!("/portal/api/v1{path}"), true, body)
            .await
    }

    /// `method path` with the cookie, and the CSRF token when `csrf`.
    pub(crate) async fn raw(
        &self,
        method: &str,
        path: &str,
        csrf: bool,
        body: Option<Value>,
    ) -> Reply {
        let mut headers = vec![
            ("cookie", self.cookie.as_str()),
            ("content-type", "application/json"),
        ];
        if csrf {
            headers.push(("x-portal-csrf", self.csrf.as_str()));
        }
        self.client
            .send(
                method,
                &format!("{}{path}", self.base),
                &headers,
                body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            )
            .await
            .expect("portal call")
    }
}

/// The error code of a reply.
pub(crate) fn code(reply: &Reply) -> String {
    serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Posts Odoo's webhook body of a confirmed order (with `extra` fields) to source `odoo`.
pub(crate) async fn post_order(gw: &TestGateway, extra: Value) -> String {
    let mut order: Value = serde_json::from_slice(&odoo_gateway_tests::fixture(
        "native/sale.order.confirmed.json",
    ))
    .expect("fixture");
    if let (Some(order), Some(extra)) = (order.as_object_mut(), extra.as_object()) {
        order.extend(extra.clone());
    }
    let reply = HttpClient::new()
        .post_json(
            &gw.url(&format!("/v1/odoo/odoo/{SOURCE_TOKEN}?event=confirmed")),
            order.to_string().as_bytes(),
        )
        .await
        .expect("ingest");
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    reply.json()["id"].as_str().expect("id").to_owned()
}

pub(crate) use odoo_gateway_tests::harness::{WAIT, eventually};
pub(crate) use odoo_gateway_tests::on_both_engines;
