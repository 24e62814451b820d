//! `odoo-gateway apps add|list|remove|portal-link|portal-revoke`: managing the stored
//! third-party apps, and links to any app's portal.
//!
//! sled allows one process, so this talks to the running gateway's admin API
//! (`/admin/apps`, see [`crate::auth`]) instead of opening the database. Apps written in the
//! configuration file are listed too, but are changed by editing the file.

use std::io::Write;

use clap::{Args, Subcommand};

use super::admin_client::Gateway;

/// Register, list or remove third-party apps (through the running gateway's admin API).
#[derive(Debug, Args)]
pub struct AppsCommand {
    #[command(flatten)]
    gateway: Gateway,
    #[command(subcommand)]
    action: AppsAction,
}

#[derive(Debug, Subcommand)]
enum AppsAction {
    /// Register an app with fresh OAuth2 and OAuth1 credentials, printed once.
    Add {
        /// Its name (letters, digits, `-`, `_`).
        name: String,
        /// Comma-separated scopes: `read`, `write`.
        #[arg(long, value_delimiter = ',', default_value = "read")]
        scopes: Vec<String>,
        /// API requests per minute (default 600).
        #[arg(long)]
        rate_limit_per_minute: Option<u32>,
        /// Token endpoint requests per minute (default 60).
        #[arg(long)]
        token_rate_limit_per_minute: Option<u32>,
        /// Lifetime of its access tokens, e.g. `1h`, `15m` (default 1h).
        #[arg(long)]
        token_ttl: Option<String>,
        /// Comma-separated event patterns it may subscribe to, e.g. `sale.order.*,*.unlink`
        /// (default: none).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Comma-separated sources whose events it may receive (default: every source).
        #[arg(long, value_delimiter = ',')]
        sources: Option<Vec<String>>,
    },
    /// List every app (from the configuration file and from the store), without secrets.
    List,
    /// Remove a stored app; its tokens and signatures stop working at once.
    Remove {
        /// Its name.
        name: String,
    },
    /// A link to an app's portal, for its staff (works once, for `--link-ttl`).
    PortalLink {
        /// The app's name.
        name: String,
        /// Comma-separated scopes of the session (default: the app's).
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// How long the link works, e.g. `10m` (default 10m, at most 1h).
        #[arg(long)]
        link_ttl: Option<String>,
        /// How long the session it opens lasts, e.g. `1h` (default 1h, at most 24h).
        #[arg(long)]
        session_ttl: Option<String>,
    },
    /// End every portal link and session of an app.
    PortalRevoke {
        /// The app's name.
        name: String,
    },
}

impl AppsCommand {
    /// A command for `url` with `admin_token`, for tests and embedding.
    pub fn new(url: &str, admin_token: &str, args: &[&str]) -> anyhow::Result<Self> {
        super::admin_client::command_for("apps", url, admin_token, args)
    }

    /// Runs the command, writing what it has to say to `out`.
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<()> {
        let admin = self.gateway.client()?;
        match self.action {
            AppsAction::Add {
                name,
                scopes,
                rate_limit_per_minute,
                token_rate_limit_per_minute,
                token_ttl,
                events,
                sources,
            } => {
                let mut body = serde_json::json!({
                    "name": name, "scopes": scopes, "events": events, "sources": sources,
                });
                let options = [
                    (
                        "rate_limit_per_minute",
                        rate_limit_per_minute.map(serde_json::Value::from),
                    ),
                    (
                        "token_rate_limit_per_minute",
                        token_rate_limit_per_minute.map(serde_json::Value::from),
                    ),
                    ("token_ttl", token_ttl.map(serde_json::Value::from)),
                ];
                for (key, value) in options {
                    if let Some(value) = value {
                        body[key] = value;
                    }
                }
                let created = admin.call("POST", "/admin/apps", Some(body)).await?;
                let field = |k: &str| created[k].as_str().unwrap_or("").to_owned();
                let scopes: Vec<&str> = created["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str())
                    .collect();
                writeln!(
                    out,
                    "Registered app `{}` with scopes: {}.",
                    field("name"),
                    scopes.join(", ")
                )?;
                writeln!(
                    out,
                    "The secrets below are shown this once: store them now.\n"
                )?;
                writeln!(
                    out,
                    "OAuth2 client credentials (POST /oauth2/token, grant_type=client_credentials)"
                )?;
                writeln!(out, "  client_id        {}", field("oauth2_client_id"))?;
                writeln!(out, "  client_secret    {}", field("oauth2_client_secret"))?;
                writeln!(out, "OAuth1 credentials (HMAC-SHA1 or HMAC-SHA256)")?;
                writeln!(out, "  consumer_key     {}", field("oauth1_consumer_key"))?;
                writeln!(
                    out,
                    "  consumer_secret  {}",
                    field("oauth1_consumer_secret")
                )?;
                writeln!(out, "  token            {}", field("oauth1_token"))?;
                writeln!(out, "  token_secret     {}", field("oauth1_token_secret"))?;
            }
            AppsAction::List => {
                let listed = admin.call("GET", "/admin/apps", None).await?;
                let apps = listed["apps"].as_array().cloned().unwrap_or_default();
                let heading = format!(
                    "{:<24} {:<8} {:<12} {:<30} ",
                    "NAME", "SOURCE", "SCOPES", "OAUTH2 CLIENT ID"
                );
                writeln!(out, "{heading}OAUTH1 CONSUMER KEY")?;
                for app in apps {
                    let text = |k: &str| app[k].as_str().unwrap_or("-").to_owned();
                    let scopes: Vec<&str> = app["scopes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str())
                        .collect();
                    let source = if app["shadowed"].as_bool() == Some(true) {
                        "shadowed".to_owned()
                    } else {
                        text("source")
                    };
                    writeln!(
                        out,
                        "{:<24} {:<8} {:<12} {:<30} {}",
                        text("name"),
                        source,
                        scopes.join(","),
                        text("oauth2_client_id"),
                        text("oauth1_consumer_key")
                    )?;
                }
            }
            AppsAction::PortalLink {
                name,
                scopes,
                link_ttl,
                session_ttl,
            } => {
                let mut body = serde_json::json!({});
                if let Some(scopes) = scopes {
                    body["scopes"] = serde_json::json!(scopes);
                }
                for (key, value) in [
                    ("link_ttl_secs", link_ttl),
                    ("session_ttl_secs", session_ttl),
                ] {
                    if let Some(value) = value {
                        let ttl = crate::delivery::parse_duration(&value)
                            .map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
                        body[key] = serde_json::json!(ttl.as_secs());
                    }
                }
                let path = format!("/admin/apps/{name}/portal-link");
                let minted = admin.call("POST", &path, Some(body)).await?;
                let scopes: Vec<&str> = minted["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str())
                    .collect();
                writeln!(
                    out,
                    "Portal link for `{name}` (scopes: {}; it works once, until {} ms since the epoch; its session lasts {} s):",
                    scopes.join(", "),
                    minted["expires_ms"],
                    minted["session_ttl_secs"]
                )?;
                writeln!(out, "{}", minted["url"].as_str().unwrap_or(""))?;
            }
            AppsAction::PortalRevoke { name } => {
                let path = format!("/admin/apps/{name}/portal-sessions");
                let revoked = admin.call("DELETE", &path, None).await?;
                writeln!(
                    out,
                    "Ended {} portal links and sessions of `{name}`.",
                    revoked["revoked"]
                )?;
            }
            AppsAction::Remove { name } => {
                admin
                    .call("DELETE", &format!("/admin/apps/{name}"), None)
                    .await?;
                writeln!(out, "Removed app `{name}`.")?;
            }
        }
        Ok(())
    }
}
