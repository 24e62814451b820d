//! A small client for the running gateway's `/admin/` API, shared by the CLI commands that
//! talk to it (sled allows one process, so they never open the database themselves).

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Where the running gateway is, and its admin token: the options of every command that
/// talks to it.
#[derive(Debug, Clone, Args)]
pub(crate) struct Gateway {
    /// The running gateway.
    #[arg(
        long,
        env = "ODOO_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Its `server.admin_token`.
    #[arg(
        long,
        env = "ODOO_GATEWAY_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    admin_token: Option<String>,
}

/// Parses the command `name` with `args`, as its command line would give them, aimed at the
/// gateway at `url` with `admin_token` (for tests and embedding).
pub(crate) fn command_for<T: Args + clap::FromArgMatches>(
    name: &'static str,
    url: &str,
    admin_token: &str,
    args: &[&str],
) -> anyhow::Result<T> {
    let command = T::augment_args(clap::Command::new(name)).no_binary_name(true);
    let mut all = vec!["--url", url, "--admin-token", admin_token];
    all.extend_from_slice(args);
    let matches = command.try_get_matches_from(all)?;
    Ok(T::from_arg_matches(&matches)?)
}

impl Gateway {
    /// A client for it; an error naming the option when the token is missing.
    pub(crate) fn client(&self) -> anyhow::Result<AdminClient> {
        let token = self.admin_token.clone().context(
            "give --admin-token (or ODOO_GATEWAY_ADMIN_TOKEN): the gateway's server.admin_token",
        )?;
        Ok(AdminClient {
            base: self.url.trim_end_matches('/').to_owned(),
            token,
        })
    }
}

/// The running gateway's admin API, with its token.
pub(crate) struct AdminClient {
    pub(crate) base: String,
    pub(crate) token: String,
}

impl AdminClient {
    /// `method path` with `body`; the JSON answer, or an error saying what went wrong.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
        let url = format!("{}{path}", self.base);
        let mut request = http::Request::builder().method(method).uri(&url).header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", self.token),
        );
        let bytes = match body {
            Some(json) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .with_context(|| format!("`{url}` is not a valid URL"))?;
        let response =
            tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
                .await
                .with_context(|| format!("{url} did not answer in 30 s"))?
                .with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("cannot read the answer")?
            .to_bytes();
        let value: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let code = value["error"]["code"].as_str().unwrap_or("");
        let message = value["error"]["message"].as_str().unwrap_or("");
        match (status.as_u16(), code) {
            (404, _) if path == "/admin/apps" || path == "/admin/status" => {
                bail!("the gateway's admin API is off: set server.admin_token in its configuration")
            }
            (401, _) => bail!("the gateway refused the admin token"),
            // A 404 of its own kind says what is missing.
            (404, "not_found" | "") => bail!("not found: {path}"),
            (404, _) => bail!("{message}"),
            _ => bail!("the gateway answered {status}: {code}: {message}"),
        }
    }
}
