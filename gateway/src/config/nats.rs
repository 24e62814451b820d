//! `[storage] engine` and `[storage.nats]`: where the gateway's state lives.
//!
//! `sled` (the default) keeps everything in the instance's own database: one binary, nothing
//! else to run. `nats` keeps it in NATS JetStream, shared by every instance pointed at the
//! same servers and bucket prefix: the control plane (apps, tokens, API subscriptions and
//! plugins, OAuth1 nonces, subscription health) in key-value buckets and the object store
//! ([`crate::control::nats`]), and the work plane (events, fan-out, queued deliveries and
//! plugin calls, the delivery log and dead letters) in streams and buckets
//! ([`crate::workplane`]). Each instance's sled folder keeps only its Odoo polling cursors and
//! caches.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Which engine keeps the gateway's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The instance's own sled database.
    #[default]
    Sled,
    /// NATS JetStream, shared by several instances.
    Nats,
}

/// `[storage.nats]`
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URLs (`nats://host:4222`, `tls://host:4222` or `host:port`); the client fails
    /// over between them.
    pub urls: Vec<String>,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// A token instead of a user.
    pub token: Option<String>,
    /// A `.creds` file (JWT and NKey seed) instead of either; relative to the config file.
    pub creds_file: Option<PathBuf>,
    /// Buckets are named `<bucket_prefix>_apps`, `<bucket_prefix>_tokens`...: instances with
    /// the same prefix share one control plane.
    pub bucket_prefix: String,
    /// Copies of each bucket in a JetStream cluster (1 to 5; 3 for a 3-node cluster).
    pub replicas: usize,
    /// How long an event or job pulled by an instance stays its own without word from it
    /// (JetStream's `ack_wait`): the time a dead instance's work waits before another takes
    /// it. An instance renews it every third of it while the work waits or runs.
    #[serde(with = "crate::time::serde_duration")]
    pub lease: Duration,
}

/// The default [`NatsConfig::lease`].
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// The default bucket prefix.
pub const DEFAULT_BUCKET_PREFIX: &str = "odoo_gateway";

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            user: None,
            password: None,
            token: None,
            creds_file: None,
            bucket_prefix: DEFAULT_BUCKET_PREFIX.to_owned(),
            replicas: 1,
            lease: DEFAULT_LEASE,
        }
    }
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("urls", &self.urls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("creds_file", &self.creds_file)
            .field("bucket_prefix", &self.bucket_prefix)
            .field("replicas", &self.replicas)
            .field("lease", &self.lease)
            .finish()
    }
}

impl NatsConfig {
    /// Adds each problem of these settings for `engine` to `problems`, naming its key.
    pub fn validate(&self, engine: Engine, problems: &mut Vec<String>) {
        let mut problem = |key: &str, message: String| {
            problems.push(format!("storage.nats.{key}: {message}"));
        };
        if engine == Engine::Sled {
            if self != &Self::default() {
                problem(
                    "urls",
                    "[storage.nats] is only read with engine = \"nats\"; set it or remove the table"
                        .into(),
                );
            }
            return;
        }
        if self.urls.is_empty() {
            problem(
                "urls",
                "give at least one server, e.g. [\"nats://127.0.0.1:4222\"]".into(),
            );
        }
        for (i, url) in self.urls.iter().enumerate() {
            if let Err(why) = check_url(url) {
                problem(&format!("urls[{i}]"), format!("`{url}`: {why}"));
            }
        }
        let kinds = [
            self.user.is_some() || self.password.is_some(),
            self.token.is_some(),
            self.creds_file.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            problem(
                "token",
                "give one way to authenticate: user and password, a token, or a creds_file".into(),
            );
        }
        if self.user.is_some() != self.password.is_some() {
            problem("password", "give both user and password, or neither".into());
        }
        let valid_prefix = !self.bucket_prefix.is_empty()
            && self.bucket_prefix.len() <= 64
            && self
                .bucket_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_prefix {
            problem(
                "bucket_prefix",
                format!(
                    "`{}` must be 1 to 64 letters, digits, `_` or `-`",
                    self.bucket_prefix
                ),
            );
        }
        if !(1..=5).contains(&self.replicas) {
            problem("replicas", format!("{} is not from 1 to 5", self.replicas));
        }
        if self.lease < Duration::from_secs(1) || self.lease > Duration::from_secs(3600) {
            problem("lease", format!("{:?} is not from 1 s to 1 h", self.lease));
        }
    }
}

/// Whether `url` is something the NATS client can dial.
fn check_url(url: &str) -> Result<(), String> {
    let rest = match url.split_once("://") {
        Some(("nats" | "tls" | "ws" | "wss", rest)) => rest,
        Some((scheme, _)) => return Err(format!("unknown scheme `{scheme}` (nats or tls)")),
        None => url,
    };
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    let host_port = host_port.split('/').next().unwrap_or(host_port);
    if host_port.is_empty() {
        return Err("no host".into());
    }
    if let Some((_, port)) = host_port.rsplit_once(':')
        && !host_port.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("`{port}` is not a port"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml_text: &str) -> Vec<String> {
        #[derive(Deserialize)]
        struct Storage {
            #[serde(default)]
            engine: Engine,
            #[serde(default)]
            nats: NatsConfig,
        }
        let s: Storage = toml::from_str(toml_text).expect("parses");
        let mut problems = Vec::new();
        s.nats.validate(s.engine, &mut problems);
        problems
    }

    #[test]
    fn a_minimal_nats_table_is_valid_and_sled_needs_none() {
        assert!(problems("").is_empty());
        assert!(
            problems("engine = \"nats\"\n[nats]\nurls = [\"nats://127.0.0.1:4222\"]").is_empty()
        );
        assert!(
            problems("engine = \"nats\"\n[nats]\nurls = [\"10.0.0.1:4222\", \"tls://n2:4222\"]\nreplicas = 3\nuser = \"gw\"\npassword = \"pw\"")
                .is_empty()
        );
    }

    #[test]
    fn debug_output_redacts_the_password_and_the_token() {
        let config = NatsConfig {
            password: Some("pw-secret-1".into()),
            token: Some("tk-secret-2".into()),
            ..NatsConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("pw-secret-1") && !shown.contains("tk-secret-2"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn every_problem_is_named_by_its_key() {
        let found = problems(
            "engine = \"nats\"\n[nats]\nurls = [\"http://x\", \"n1:99999\"]\ntoken = \"t\"\nuser = \"u\"\nbucket_prefix = \"a.b\"\nreplicas = 0",
        );
        for key in [
            "storage.nats.urls[0]: `http://x`: unknown scheme",
            "storage.nats.urls[1]: `n1:99999`",
            "storage.nats.token: give one way",
            "storage.nats.password: give both",
            "storage.nats.bucket_prefix",
            "storage.nats.replicas: 0",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(key)),
                "{key} in {found:?}"
            );
        }
        assert!(problems("engine = \"nats\"")[0].starts_with("storage.nats.urls: give at least"));
        assert!(
            problems("[nats]\nurls = [\"nats://x:4222\"]")[0].contains("only read with engine")
        );
    }
}
