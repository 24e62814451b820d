//! Third-party app authentication over real sockets: the OAuth2 token endpoint (client
//! credentials, RFC 6749 errors), bearer use on `GET /v1/whoami`, expiry, introspection and
//! revocation; OAuth1-signed requests with replay and clock-skew refusals; scopes; rate
//! limits; and apps registered through the admin API and `odoo-gateway apps`.

use std::time::Duration;

use odoo_gateway::auth::{
    OAuth1Credentials, SignatureMethod, authorization_header, authorization_header_now,
};
use odoo_gateway::cli::apps::AppsCommand;
use odoo_gateway_tests::{HttpClient, Reply, TestGateway};

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Secrets below are hashed with `printf %s SECRET | sha256sum`.
const CONFIG: &str = r#"
[server]
admin_token = "admin"
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

const CRM: (&str, &str) = ("crm-client", "crm-secret-0123456789");
const READER: (&str, &str) = ("reader-client", "reader-secret-0123456789");

async fn start() -> (TestGateway, HttpClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start(CONFIG, dir.path()).await.expect("start");
    (gw, HttpClient::new(), dir)
}

/// Standard base64, for HTTP Basic.
fn base64(bytes: &[u8]) -> String {
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

fn basic((id, secret): (&str, &str)) -> String {
    format!("Basic {}", base64(format!("{id}:{secret}").as_bytes()))
}

async fn token_request(
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

async fn token(
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

async fn whoami(c: &HttpClient, gw: &TestGateway, authorization: &str) -> Reply {
    c.send(
        "GET",
        &gw.url("/v1/whoami"),
        &[("authorization", authorization)],
        Vec::new(),
    )
    .await
    .expect("whoami")
}

async fn form_post(
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

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn assert_api_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.json()["error"]["code"], code, "{:?}", reply.body);
}

/// An RFC 6749 §5.2 error: exactly `error` and `error_description`, never cached.
fn assert_oauth_error(reply: &Reply, status: u16, error: &str) {
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

#[tokio::test]
async fn token_lifecycle_issue_use_introspect_revoke_expire() {
    let (gw, c, _dir) = start().await;

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
    // A wrong secret: 401 with a challenge by Basic, 400 by body.
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
    assert_oauth_error(&wrong, 400, "invalid_client");
    assert_eq!(header(&wrong, "www-authenticate"), "");
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

fn crm_oauth1() -> OAuth1Credentials {
    OAuth1Credentials {
        consumer_key: "crm-consumer".into(),
        consumer_secret: "crm-consumer-secret".into(),
        token: Some("crm-token".into()),
        token_secret: "crm-token-secret".into(),
    }
}

#[tokio::test]
async fn oauth1_signatures_verify_and_replays_and_skew_are_refused() {
    let (gw, c, _dir) = start().await;
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

fn printed(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("`{label}` not in:\n{output}"))
}

async fn cli(gw: &TestGateway, token: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut out = Vec::new();
    AppsCommand::new(&gw.url(""), token, args)?
        .run(&mut out)
        .await?;
    Ok(String::from_utf8(out)?)
}

#[tokio::test]
async fn apps_are_managed_through_the_cli_while_the_gateway_runs() {
    let (gw, c, _dir) = start().await;
    let added = cli(&gw, "admin", &["add", "erp", "--scopes", "read,write"])
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

    let listed = cli(&gw, "admin", &["list"]).await.expect("apps list");
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
    let taken = cli(&gw, "admin", &["add", "crm"])
        .await
        .expect_err("crm is in the file");
    assert!(taken.to_string().contains("conflict"), "{taken}");
    assert!(cli(&gw, "admin", &["remove", "crm"]).await.is_err());
    assert!(
        cli(&gw, "admin", &["add", "erp"]).await.is_err(),
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
        cli(&gw, "admin", &["remove", "erp"])
            .await
            .expect("apps remove")
            .contains("Removed")
    );
    assert_api_error(&whoami(&c, &gw, &bearer).await, 401, "invalid_token");
    assert!(cli(&gw, "admin", &["remove", "erp"]).await.is_err());
    gw.stop().await.expect("stop");
}
