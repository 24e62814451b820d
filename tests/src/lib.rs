//! Shared helpers for the end-to-end tests and the load generator: paths to fixtures and
//! built plugins, a gateway started in-process on a real socket, a NATS server with JetStream
//! ([`nats`]), a gateway in a process of its own to kill ([`process`]), and a tiny HTTP client.

pub mod fake_odoo;
pub mod harness;
pub mod load;
pub mod nats;
pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

/// A receiver on a loopback port that checks every delivery's Standard Webhooks signature
/// against `secret` and answers `status`.
pub async fn verifying_inbox(secret: &str, status: u16) -> odoo_gateway::cli::inbox::Inbox {
    odoo_gateway::cli::inbox::Inbox::start_local(odoo_gateway::cli::inbox::InboxOptions {
        secrets: vec![secret.parse().expect("a webhook secret")],
        status: http::StatusCode::from_u16(status).expect("an HTTP status"),
        ..Default::default()
    })
    .await
    .expect("the inbox starts")
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of the Odoo corpus in `tests/fixtures/odoo`, e.g. `native/sale.order.confirmed.json`.
pub fn fixture(name: &str) -> Vec<u8> {
    odoo_gateway_fixtures::read(&format!("odoo/{name}"))
}

/// Every file in a folder of the Odoo corpus, by name.
pub fn fixtures(folder: &str) -> Vec<(String, Vec<u8>)> {
    odoo_gateway_fixtures::read_dir(&format!("odoo/{folder}"))
}

/// A built plugin component; fails loudly when the plugins were not built.
pub fn plugin(name: &str) -> PathBuf {
    let path = workspace()
        .join("target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the plugins first with `cargo run -p xtask -- build-plugins` (./dev test does)",
        path.display()
    );
    path
}

/// With `TEST_LOG` set (an `EnvFilter` directive such as `odoo_gateway=debug`), the in-process
/// gateways log to the test's captured output, shown when a test fails.
fn test_log() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A gateway running in this process on a real socket.
#[derive(Debug)]
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestGateway {
    /// Starts a gateway on `config` (TOML text); relative paths resolve against `base`.
    pub async fn start(config: &str, base: &Path) -> anyhow::Result<Self> {
        let source = odoo_gateway::reload::ConfigSource::Text {
            text: config.to_owned(),
            base: base.to_path_buf(),
            origin: "test.toml".to_owned(),
        };
        Self::start_with(source).await
    }

    /// Starts a gateway that serves HTTPS (`[server.tls]` in `config`); it is ready once it
    /// accepts connections.
    pub async fn start_tls(config: &str, base: &Path) -> anyhow::Result<Self> {
        test_log();
        let source = odoo_gateway::reload::ConfigSource::Text {
            text: config.to_owned(),
            base: base.to_path_buf(),
            origin: "test.toml".to_owned(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move { odoo_gateway::run(source, listener, token).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        anyhow::ensure!(!task.is_finished(), "the gateway stopped at start-up");
        Ok(Self {
            addr,
            shutdown,
            task,
        })
    }

    /// Starts a gateway on a configuration source (a file, for reload tests).
    pub async fn start_with(source: odoo_gateway::reload::ConfigSource) -> anyhow::Result<Self> {
        // Ready, not just alive: while it starts the port answers `503 starting`.
        Self::start_until(source, |ready| ready.status == 200).await
    }

    /// Starts a gateway and returns once its real server answers, ready or not: one that
    /// starts with ingest paused (a full disk) answers `/readyz` with `503 not_ready`.
    pub async fn start_serving(source: odoo_gateway::reload::ConfigSource) -> anyhow::Result<Self> {
        Self::start_until(source, |ready| {
            ready.status == 200
                || serde_json::from_slice::<serde_json::Value>(&ready.body)
                    .is_ok_and(|body| body["status"] == "not_ready")
        })
        .await
    }

    async fn start_until(
        source: odoo_gateway::reload::ConfigSource,
        up: impl Fn(&Reply) -> bool,
    ) -> anyhow::Result<Self> {
        test_log();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move { odoo_gateway::run(source, listener, token).await });
        let client = HttpClient::new();
        // Up to a minute: on a JetStream cluster creating the streams and buckets takes a
        // while, and compiling a JavaScript or Python plugin takes seconds on a busy machine.
        for _ in 0..2400 {
            if task.is_finished() {
                return match task.await {
                    Ok(Err(e)) => Err(e),
                    other => Err(anyhow::anyhow!(
                        "the gateway stopped at start-up: {other:?}"
                    )),
                };
            }
            let ready = client.get(&format!("http://{addr}/readyz")).await;
            if ready.is_ok_and(|r| up(&r)) {
                return Ok(Self {
                    addr,
                    shutdown,
                    task,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        anyhow::bail!("the gateway did not become ready (/readyz)")
    }

    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// An `/admin/` call with the admin token `token`; panics unless it succeeds.
    pub async fn admin(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let auth = format!("Bearer {token}");
        let reply = HttpClient::new()
            .send(
                method,
                &self.url(path),
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ],
                body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            )
            .await
            .expect("admin call");
        assert!(
            reply.status < 300,
            "{path}: {} {:?}",
            reply.status,
            reply.body
        );
        reply.json()
    }

    /// Waits (up to `within`) until the dead-letter store holds at least one letter; returns
    /// them all.
    pub async fn wait_dead_letters(&self, token: &str, within: Duration) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let letters =
                self.admin(token, "GET", "/admin/dead-letters", None).await["dead_letters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
            if !letters.is_empty() || tokio::time::Instant::now() > deadline {
                return letters;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Shuts down gracefully and returns the server's result.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("the gateway task panicked")?
    }
}

/// A response as the tests see it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A keep-alive HTTP/1.1 client.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A new client.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            inner: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .build(connector),
        }
    }

    /// Sends a request.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Reply> {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .inner
            .request(req.body(Full::new(Bytes::from(body)))?)
            .await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// POSTs JSON.
    pub async fn post_json(&self, url: &str, body: &[u8]) -> anyhow::Result<Reply> {
        self.send(
            "POST",
            url,
            &[("content-type", "application/json")],
            body.to_vec(),
        )
        .await
    }

    /// GETs.
    pub async fn get(&self, url: &str) -> anyhow::Result<Reply> {
        self.send("GET", url, &[], Vec::new()).await
    }
}
