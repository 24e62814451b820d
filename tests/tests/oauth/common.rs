//! What the OAuth tests share: a configuration with four apps, and small clients for the
//! token endpoint, `/v1/whoami` and the `apps` CLI.

use odoo_gateway::auth::OAuth1Credentials;
use odoo_gateway::cli::apps::AppsCommand;
use odoo_gateway_tests::nats::Engine;
use odoo_gateway_tests::{HttpClient, Reply, TestGateway};

pub(crate) const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Secrets below are hashed with `printf %s SECRET | sha256sum`.
pub(crate) const CONFIG: &str = r#"
[server]
admin_token = "admin-token-0123456789"
[storage]
path = "data"

[[apps]]
name = "crm"
scopes = ["read", "write"]
oauth2_client_id = "crm-client"
oauth2_client_secret_sha256 = "4a2f18f0c025f78c5025de1784c726e82f698d48ad2e3575cd6d22043eb60c95" # crm-secret-0123456789
oauth1_consumer_key = "crm-consumer"
oauth1_consumer_secret = "crm-consumer-secret"
oauth1_token = "crm-token"
oauth1_token_secret = "crm-token-secret"

[[apps]]
name = "reader"
scopes = ["read"]
oauth2_client_id = "reader-client"
oauth2_client_secret_sha256 = "e37c4e779555ce6c5238bbd719816a8713f38fb0750f6ee04fd92f482f721e8f" # reader-secret-0123456789
rate_limit_per_minute = 3
token_rate_limit_per_minute = 4

[[apps]]
name = "short"
scopes = ["read"]
oauth2_client_id = "short-client"
oauth2_client_secret_sha256 = "f8980c0c7baa2b05b8d13fea487364ca4bb68a66eb71b4aa66d10220a9266a96" # short-secret-0123456789
token_ttl = "2s"

[[apps]]
name = "none"
scopes = []
oauth2_client_id = "none-client"
oauth2_client_secret_sha256 = "532f2e1d0e628a3292dcd535449f09c7582b13c4d000641df641190bab0a1dcb" # none-secret-0123456789
"#;

pub(crate) const CRM: (&str, &str) = ("crm-client", "crm-secret-0123456789");
pub(crate) const READER: (&str, &str) = ("reader-client", "reader-secret-0123456789");

pub(crate) async fn start() -> (TestGateway, HttpClient, tempfile::TempDir) {
    start_on(&Engine::Sled).await
}

/// [`CONFIG`] with the control plane on `engine`.
pub(crate) fn config_on(engine: &Engine<'_>) -> String {
    CONFIG.replace("[storage]\npath = \"data\"\n", &engine.storage_toml("data"))
}

/// [`start`] with the control plane on `engine`.
pub(crate) async fn start_on(engine: &Engine<'_>) -> (TestGateway, HttpClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(&config_on(engine), dir.path())
        .await
        .expect("start");
    (gw, HttpClient::new(), dir)
}

/// Standard base64, for HTTP Basic.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            let sextet = (n >> (18 - 6 * i)) & 63;
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[sextet as usize])
            } else {
                '='
            });
        }
    }
    out
}

pub(crate) fn basic((id, secret): (&str, &str)) -> String {
    format!("Basic {}", base64(format!("{id}:{secret}").as_bytes()))
}

pub(crate) async fn token_request(
    c: &HttpClient,
    gw: &TestGateway,
    auth: Option<(&str, &str)>,
    form: &str,
) -> Reply {
    let mut headers = vec![FORM];
    let value = auth.map(basic);
    if let Some(v) = &value {
        headers.push(("authorization", v.as_str()));
    }
    c.send(
        "POST",
        &gw.url("/oauth2/token"),
        &headers,
        form.as_bytes().to_vec(),
    )
    .await
    .expect("token endpoint")
}

pub(crate) async fn token(
    c: &HttpClient,
    gw: &TestGateway,
    client: (&str, &str),
    scope: Option<&str>,
) -> String {
    let form = match scope {
        Some(s) => format!(
            "grant_type=client_credentials&scope={}",
            s.replace(' ', "+")
        ),
        None => "grant_type=client_credentials".to_owned(),
    };
    let reply = token_request(c, gw, Some(client), &form).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

pub(crate) async fn whoami(c: &HttpClient, gw: &TestGateway, authorization: &str) -> Reply {
    c.send(
        "GET",
        &gw.url("/v1/whoami"),
        &[("authorization", authorization)],
        Vec::new(),
    )
    .await
    .expect("whoami")
}

pub(crate) async fn form_post(
    c: &HttpClient,
    gw: &TestGateway,
    path: &str,
    client: (&str, &str),
    form: &str,
) -> Reply {
    let auth = basic(client);
    c.send(
        "POST",
        &gw.url(path),
        &[FORM, ("authorization", &auth)],
        form.as_bytes().to_vec(),
    )
    .await
    .expect(path)
}

pub(crate) fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

pub(crate) fn assert_api_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.json()["error"]["code"], code, "{:?}", reply.body);
}

/// An RFC 6749 §5.2 error: exactly `error` and `error_description`, never cached.
pub(crate) fn assert_oauth_error(reply: &Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
    assert_eq!(header(reply, "cache-control"), "no-store");
}

pub(crate) fn crm_oauth1() -> OAuth1Credentials {
    OAuth1Credentials {
        consumer_key: "crm-consumer".into(),
        consumer_secret: "crm-consumer-secret".into(),
        token: Some("crm-token".into()),
        token_secret: "crm-token-secret".into(),
    }
}

pub(crate) fn printed(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("`{label}` not in:\n{output}"))
}

pub(crate) async fn cli(gw: &TestGateway, token: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut out = Vec::new();
    AppsCommand::new(&gw.url(""), token, args)?
        .run(&mut out)
        .await?;
    Ok(String::from_utf8(out)?)
}

pub(crate) fn reply_text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}
