//! An app's record: its name, scopes, grants (event patterns, sources), limits and credentials
//! (OAuth2 client secrets kept only as SHA-256, since checking is all the gateway does with
//! them; OAuth1 secrets in clear, since HMAC needs them), whether it comes from the
//! configuration file (`[[apps]]`, [`AppConfig`], validated into [`ConfigApps`]) or was
//! registered through `/admin/apps`. Pure: `auth` finds apps for requests, the control plane
//! stores them. No secret is ever logged, and every `Debug` here redacts them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::signing::oauth1::OAuth1Credentials;

/// Every scope an app can hold.
pub const SCOPES: [&str; 2] = ["read", "write"];

/// A registered app.
#[derive(Clone, Serialize, Deserialize)]
pub struct App {
    /// Unique name.
    pub name: String,
    /// Granted scopes, in [`SCOPES`] order.
    pub scopes: Vec<String>,
    /// OAuth2 client credentials.
    pub oauth2: Option<OAuth2Client>,
    /// OAuth1 consumer and token credentials.
    pub oauth1: Option<OAuth1Credentials>,
    /// API requests per minute.
    pub rate_limit_per_minute: u32,
    /// Token endpoint requests per minute with this app's client id.
    pub token_rate_limit_per_minute: u32,
    /// Lifetime of its access tokens.
    #[serde(with = "crate::time::serde_duration")]
    pub token_ttl: Duration,
    /// The event patterns it may subscribe to (the operator's grant); none by default.
    #[serde(default)]
    pub events: Vec<String>,
    /// The sources whose events it may receive; every source when `None`.
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// Whether it comes from the configuration file (else from the store).
    #[serde(skip)]
    pub from_config: bool,
}

impl App {
    /// The event patterns granted to this app (unparseable ones, refused when the app was
    /// defined, are left out).
    pub fn grants(&self) -> Vec<crate::subscriptions::EventPattern> {
        self.events
            .iter()
            .filter_map(|p| crate::subscriptions::EventPattern::parse(p).ok())
            .collect()
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("oauth2", &self.oauth2)
            .field("oauth1", &self.oauth1)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("token_ttl", &self.token_ttl)
            .field("events", &self.events)
            .field("from_config", &self.from_config)
            .finish_non_exhaustive()
    }
}

/// OAuth2 client credentials: the id, and the hex SHA-256 of the secret.
#[derive(Clone, Serialize, Deserialize)]
pub struct OAuth2Client {
    /// `client_id`.
    pub client_id: String,
    secret_sha256: String,
}

impl std::fmt::Debug for OAuth2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Client")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl OAuth2Client {
    /// Whether `secret` is the client's secret (constant time).
    pub fn secret_matches(&self, secret: &str) -> bool {
        let given = hex::encode(Sha256::digest(secret.as_bytes()));
        given.as_bytes().ct_eq(self.secret_sha256.as_bytes()).into()
    }
}

/// The secrets of a newly registered app: shown once, then only their hashes (OAuth2) or the
/// store (OAuth1) have them.
#[derive(Clone, Serialize)]
pub struct IssuedCredentials {
    /// The app.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// OAuth2 `client_id`.
    pub oauth2_client_id: String,
    /// OAuth2 client secret (only its hash is kept).
    pub oauth2_client_secret: String,
    /// OAuth1 consumer key.
    pub oauth1_consumer_key: String,
    /// OAuth1 consumer secret.
    pub oauth1_consumer_secret: String,
    /// OAuth1 token.
    pub oauth1_token: String,
    /// OAuth1 token secret.
    pub oauth1_token_secret: String,
}

impl std::fmt::Debug for IssuedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCredentials")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn random_id(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// Whether `name` can name an app (it appears in URLs and logs).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks and orders a scope list: each in [`SCOPES`], none twice.
pub fn normalize_scopes(scopes: &[String]) -> Result<Vec<String>, String> {
    for s in scopes {
        if !SCOPES.contains(&s.as_str()) {
            return Err(format!(
                "unknown scope `{s}` (known: {})",
                SCOPES.join(", ")
            ));
        }
    }
    Ok(SCOPES
        .iter()
        .filter(|k| scopes.iter().any(|s| s == *k))
        .map(|s| (*s).to_owned())
        .collect())
}

/// A new app with fresh random credentials, and those credentials in clear (to show once).
pub fn generate(name: &str, scopes: Vec<String>) -> (App, IssuedCredentials) {
    let issued = IssuedCredentials {
        name: name.to_owned(),
        scopes: scopes.clone(),
        oauth2_client_id: random_id("cid_"),
        oauth2_client_secret: random_secret(),
        oauth1_consumer_key: random_id("ck_"),
        oauth1_consumer_secret: random_secret(),
        oauth1_token: random_id("tk_"),
        oauth1_token_secret: random_secret(),
    };
    let app = App {
        name: name.to_owned(),
        scopes,
        oauth2: Some(OAuth2Client {
            client_id: issued.oauth2_client_id.clone(),
            secret_sha256: hex::encode(Sha256::digest(issued.oauth2_client_secret.as_bytes())),
        }),
        oauth1: Some(OAuth1Credentials {
            consumer_key: issued.oauth1_consumer_key.clone(),
            consumer_secret: issued.oauth1_consumer_secret.clone(),
            token: Some(issued.oauth1_token.clone()),
            token_secret: issued.oauth1_token_secret.clone(),
        }),
        rate_limit_per_minute: DEFAULT_APP_RATE_LIMIT_PER_MINUTE,
        token_rate_limit_per_minute: DEFAULT_TOKEN_RATE_LIMIT_PER_MINUTE,
        token_ttl: DEFAULT_TOKEN_TTL,
        from_config: false,
        events: Vec::new(),
        sources: None,
    };
    (app, issued)
}

/// The apps of the configuration file, validated. Part of the snapshot.
#[derive(Debug, Default)]
pub struct ConfigApps {
    by_name: HashMap<String, Arc<App>>,
}

impl ConfigApps {
    /// Validates `[[apps]]`, adding each problem (naming its key) to `problems`.
    pub fn build(configs: &[AppConfig], problems: &mut Vec<String>) -> Self {
        let mut by_name = HashMap::new();
        let (mut client_ids, mut consumer_keys) = (Vec::new(), Vec::new());
        for (i, c) in configs.iter().enumerate() {
            let mut problem =
                |key: &str, message: String| problems.push(format!("apps[{i}].{key}: {message}"));
            if !valid_name(&c.name) {
                problem(
                    "name",
                    format!("`{}` must be 1 to 64 letters, digits, `-` or `_`", c.name),
                );
            }
            let scopes = normalize_scopes(&c.scopes).unwrap_or_else(|e| {
                problem("scopes", e);
                Vec::new()
            });
            let oauth2 = match (&c.oauth2_client_id, &c.oauth2_client_secret_sha256) {
                (Some(id), Some(hash)) => {
                    let hash = hash.to_ascii_lowercase();
                    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                        problem(
                            "oauth2_client_secret_sha256",
                            "give the 64 hex digits of the secret's SHA-256".into(),
                        );
                    }
                    if id.is_empty() || client_ids.contains(id) {
                        problem(
                            "oauth2_client_id",
                            format!("`{id}` is empty or used by another app"),
                        );
                    }
                    client_ids.push(id.clone());
                    Some(OAuth2Client {
                        client_id: id.clone(),
                        secret_sha256: hash,
                    })
                }
                (None, None) => None,
                _ => {
                    problem(
                        "oauth2_client_id",
                        "give both oauth2_client_id and oauth2_client_secret_sha256".into(),
                    );
                    None
                }
            };
            let oauth1 = match (
                &c.oauth1_consumer_key,
                &c.oauth1_consumer_secret,
                &c.oauth1_token,
                &c.oauth1_token_secret,
            ) {
                (Some(key), Some(secret), Some(token), Some(token_secret)) => {
                    if key.is_empty() || consumer_keys.contains(key) {
                        problem(
                            "oauth1_consumer_key",
                            format!("`{key}` is empty or used by another app"),
                        );
                    }
                    consumer_keys.push(key.clone());
                    Some(OAuth1Credentials {
                        consumer_key: key.clone(),
                        consumer_secret: secret.clone(),
                        token: Some(token.clone()),
                        token_secret: token_secret.clone(),
                    })
                }
                (None, None, None, None) => None,
                _ => {
                    problem(
                        "oauth1_consumer_key",
                        "give all four oauth1_* keys, or none".into(),
                    );
                    None
                }
            };
            if oauth2.is_none()
                && oauth1.is_none()
                && c.oauth2_client_id.is_none()
                && c.oauth1_consumer_key.is_none()
            {
                problem(
                    "name",
                    "give OAuth2 client credentials, OAuth1 credentials, or both".into(),
                );
            }
            if c.rate_limit_per_minute == 0 || c.token_rate_limit_per_minute == 0 {
                problem(
                    "rate_limit_per_minute",
                    "rate limits must be at least 1 per minute".into(),
                );
            }
            if c.token_ttl.is_zero() {
                problem("token_ttl", "must be longer than zero".into());
            }
            for (n, pattern) in c.events.iter().enumerate() {
                if let Err(why) = crate::subscriptions::EventPattern::parse(pattern) {
                    problem(&format!("events[{n}]"), why);
                }
            }
            let app = App {
                name: c.name.clone(),
                scopes,
                oauth2,
                oauth1,
                rate_limit_per_minute: c.rate_limit_per_minute,
                token_rate_limit_per_minute: c.token_rate_limit_per_minute,
                token_ttl: c.token_ttl,
                from_config: true,
                events: c.events.clone(),
                sources: c.sources.clone(),
            };
            if by_name.insert(c.name.clone(), Arc::new(app)).is_some() {
                problems.push(format!("apps[{i}].name: `{}` is used twice", c.name));
            }
        }
        Self { by_name }
    }

    /// The app named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<App>> {
        self.by_name.get(name)
    }

    /// Every app, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.by_name.values()
    }
}

/// How an app is looked up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup<'a> {
    /// By name.
    Name(&'a str),
    /// By OAuth2 `client_id`.
    ClientId(&'a str),
    /// By OAuth1 `oauth_consumer_key`.
    ConsumerKey(&'a str),
}

impl Lookup<'_> {
    /// Whether `app` is the one looked for.
    pub(crate) fn matches(self, app: &App) -> bool {
        match self {
            Lookup::Name(n) => app.name == n,
            Lookup::ClientId(id) => app.oauth2.as_ref().is_some_and(|c| c.client_id == id),
            Lookup::ConsumerKey(k) => app.oauth1.as_ref().is_some_and(|c| c.consumer_key == k),
        }
    }

    /// The key of the credential index it is found by (`None`: by name).
    pub(crate) fn index_key(self) -> Option<Vec<u8>> {
        match self {
            Lookup::Name(_) => None,
            Lookup::ClientId(id) => Some([b"c\0", id.as_bytes()].concat()),
            Lookup::ConsumerKey(k) => Some([b"k\0", k.as_bytes()].concat()),
        }
    }
}

/// API requests per minute an app may make, unless it says otherwise.
pub const DEFAULT_APP_RATE_LIMIT_PER_MINUTE: u32 = 600;
/// Token requests per minute per client id, unless the app says otherwise (stricter: each
/// one checks a secret).
pub const DEFAULT_TOKEN_RATE_LIMIT_PER_MINUTE: u32 = 60;
/// Lifetime of an OAuth2 access token, unless the app says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// `[[apps]]`: a third-party app and its credentials. Give OAuth2 client credentials, OAuth1
/// credentials (all four keys), or both.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Unique name.
    pub name: String,
    /// What it may do: `read`, `write`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// OAuth2 client id.
    #[serde(default)]
    pub oauth2_client_id: Option<String>,
    /// Hex SHA-256 of the OAuth2 client secret (the secret itself is never kept).
    #[serde(default)]
    pub oauth2_client_secret_sha256: Option<String>,
    /// OAuth1 consumer key.
    #[serde(default)]
    pub oauth1_consumer_key: Option<String>,
    /// OAuth1 consumer secret (kept in clear: HMAC needs it).
    #[serde(default)]
    pub oauth1_consumer_secret: Option<String>,
    /// OAuth1 token issued by the operator.
    #[serde(default)]
    pub oauth1_token: Option<String>,
    /// OAuth1 token secret.
    #[serde(default)]
    pub oauth1_token_secret: Option<String>,
    /// API requests per minute (token bucket; bursts up to this many).
    #[serde(default = "default_app_rate_limit")]
    pub rate_limit_per_minute: u32,
    /// Requests per minute to the token endpoint with this app's client id.
    #[serde(default = "default_token_rate_limit")]
    pub token_rate_limit_per_minute: u32,
    /// Lifetime of the access tokens it is issued.
    #[serde(default = "default_token_ttl", with = "crate::time::serde_duration")]
    pub token_ttl: Duration,
    /// Event patterns the app may subscribe to (`sale.order.*`, `*.unlink`, `*`); none when
    /// left out: an app receives only what the operator grants it.
    #[serde(default)]
    pub events: Vec<String>,
    /// Sources (Odoo instances) whose events the app may receive; every source when left out.
    #[serde(default)]
    pub sources: Option<Vec<String>>,
}

fn default_app_rate_limit() -> u32 {
    DEFAULT_APP_RATE_LIMIT_PER_MINUTE
}

fn default_token_rate_limit() -> u32 {
    DEFAULT_TOKEN_RATE_LIMIT_PER_MINUTE
}

fn default_token_ttl() -> Duration {
    DEFAULT_TOKEN_TTL
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "[redacted]");
        f.debug_struct("AppConfig")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("oauth2_client_id", &self.oauth2_client_id)
            .field(
                "oauth2_client_secret_sha256",
                &redacted(&self.oauth2_client_secret_sha256),
            )
            .field("oauth1_consumer_key", &self.oauth1_consumer_key)
            .field(
                "oauth1_consumer_secret",
                &redacted(&self.oauth1_consumer_secret),
            )
            .field("oauth1_token", &self.oauth1_token)
            .field("oauth1_token_secret", &redacted(&self.oauth1_token_secret))
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field(
                "token_rate_limit_per_minute",
                &self.token_rate_limit_per_minute,
            )
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}
