//! A receiver for the outbound-authentication tests: an OAuth2 token endpoint that counts its
//! requests, a hook that takes only tokens it issued (and can revoke them all), a hook that
//! verifies OAuth1 signatures with the gateway's own RFC 5849 code, and one that wants a static
//! header.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use odoo_gateway::auth::oauth1;

pub(crate) const CLIENT_ID: &str = "out-client";
pub(crate) const CLIENT_SECRET: &str = "out-secret-0123";
pub(crate) const CONSUMER_KEY: &str = "ck-shop";
pub(crate) const CONSUMER_SECRET: &str = "cs-shop-secret";
pub(crate) const TOKEN: &str = "tk-shop";
pub(crate) const TOKEN_SECRET: &str = "ts-shop-secret";
pub(crate) const API_KEY: &str = "key-123456";

/// One request to a hook.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) path: String,
    pub(crate) authorization: Option<String>,
    pub(crate) status: u16,
}

#[derive(Debug, Default)]
pub(crate) struct Receiver {
    pub(crate) token_requests: AtomicU32,
    accepted: Mutex<HashSet<String>>,
    hits: Mutex<Vec<Hit>>,
    addr: Mutex<Option<SocketAddr>>,
}

impl Receiver {
    pub(crate) async fn start() -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let this = Arc::new(Self::default());
        *this.addr.lock().unwrap() = Some(listener.local_addr().expect("addr"));
        let server = this.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, std::convert::Infallible>(server.handle(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        this
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.addr.lock().unwrap().expect("started")
        )
    }

    pub(crate) fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path.starts_with(path))
            .cloned()
            .collect()
    }

    /// Every issued token stops working (the next delivery gets a 401).
    pub(crate) fn revoke_all(&self) {
        self.accepted.lock().unwrap().clear();
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let authorization = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let api_key = req
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let (status, body) = match path.split('?').next().unwrap_or("") {
            "/token" => self.token(authorization.as_deref(), &body),
            "/hook-oauth2" => {
                let ok = authorization
                    .as_deref()
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .is_some_and(|t| self.accepted.lock().unwrap().contains(t));
                (
                    if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::UNAUTHORIZED
                    },
                    String::new(),
                )
            }
            "/hook-oauth1" => {
                let ok = self.oauth1_valid(&path, authorization.as_deref());
                (
                    if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::UNAUTHORIZED
                    },
                    String::new(),
                )
            }
            "/hook-static" => {
                let ok = api_key.as_deref() == Some(API_KEY);
                (
                    if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::UNAUTHORIZED
                    },
                    String::new(),
                )
            }
            _ => (StatusCode::NOT_FOUND, String::new()),
        };
        if path != "/token" {
            self.hits.lock().unwrap().push(Hit {
                path,
                authorization,
                status: status.as_u16(),
            });
        }
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        response
    }

    /// Client credentials with HTTP Basic; tokens `tok-1`, `tok-2`, ...
    fn token(&self, authorization: Option<&str>, body: &[u8]) -> (StatusCode, String) {
        let expected = base64::engine::general_purpose::STANDARD
            .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
        let form = String::from_utf8_lossy(body);
        if authorization != Some(format!("Basic {expected}").as_str())
            || !form.contains("grant_type=client_credentials")
        {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid_client"}"#.into(),
            );
        }
        let n = self.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("tok-{n}");
        self.accepted.lock().unwrap().insert(token.clone());
        let answer = serde_json::json!({ "access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": "hooks" });
        (StatusCode::OK, answer.to_string())
    }

    /// Recomputes the signature over the URL as received (query included) and the oauth_*
    /// parameters, with the shared secrets.
    fn oauth1_valid(&self, path_and_query: &str, authorization: Option<&str>) -> bool {
        let Some(params) = authorization.and_then(|a| oauth1::parse_authorization(a).ok()) else {
            return false;
        };
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let (Some(signature), Some(key), Some(token)) = (
            get("oauth_signature"),
            get("oauth_consumer_key"),
            get("oauth_token"),
        ) else {
            return false;
        };
        let signed: Vec<_> = params
            .iter()
            .filter(|(k, _)| k != "oauth_signature" && k != "realm")
            .cloned()
            .collect();
        let url = self.url(path_and_query);
        let expected = oauth1::sign_request(
            "POST",
            &url,
            &signed,
            CONSUMER_SECRET,
            TOKEN_SECRET,
            oauth1::SignatureMethod::HmacSha1,
        );
        key == CONSUMER_KEY && token == TOKEN && expected.is_ok_and(|e| e == signature)
    }
}
