//! Where the configuration comes from (a file, or text in memory) and how a snapshot is built
//! from it with the app API's subscriptions; the record of reloads. Reloading itself (watching
//! the file, swapping snapshots in) is [`crate::reload`]'s.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::config::{ConfigError, ConfigFile, Snapshot};

/// A configuration file as read and parsed: the file, its folder and its name.
pub type Parsed = (ConfigFile, PathBuf, String);

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file on disk (watched).
    File(PathBuf),
    /// Text held in memory (the embedded example, tests); relative paths resolve against `base`.
    Text {
        /// The TOML text.
        text: String,
        /// Folder for relative paths.
        base: PathBuf,
        /// Name used in messages.
        origin: String,
    },
}

impl ConfigSource {
    /// The configuration text, for locating errors.
    pub fn text(&self) -> Option<String> {
        match self {
            Self::File(path) => std::fs::read_to_string(path).ok(),
            Self::Text { text, .. } => Some(text.clone()),
        }
    }

    /// Reads, parses and validates the configuration into a snapshot (plugins loaded with
    /// `host`, unchanged ones reused from `previous`), with API subscriptions from `control`.
    /// Errors name the file, the line and the key.
    pub fn build(
        &self,
        control: &crate::control::ControlPlane,
        host: &crate::plugin::PluginHost,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, ConfigError> {
        self.build_parsed(self.read()?, control, host, previous)
    }

    /// [`Self::build`] over a configuration already read and parsed by [`Self::read`].
    pub fn build_parsed(
        &self,
        (file, base, origin): Parsed,
        control: &crate::control::ControlPlane,
        host: &crate::plugin::PluginHost,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, ConfigError> {
        let located = |e: ConfigError| match self.text() {
            Some(text) => e.with_lines(&text),
            None => e,
        };
        let build = |file: ConfigFile| Snapshot::build(file, &base, &origin, host, previous);
        let mut extended = file.clone();
        crate::control::extend_config(control, &mut extended)?;
        let api_ids: Vec<String> = extended.subscriptions[file.subscriptions.len()..]
            .iter()
            .map(|s| s.id.clone())
            .collect();
        let full = match build(extended.clone()) {
            Ok(snapshot) => return Ok(snapshot),
            Err(e) if api_ids.is_empty() => return Err(located(e)),
            Err(e) => e,
        };
        // Something fails. If the file alone does, that is the error to report; otherwise a
        // stored API subscription no longer validates (its plugin refuses its configuration, a
        // plugin file went missing...): it must never stop the gateway, so it is quarantined
        // (left out, logged, shown in /admin/status) and the rest runs.
        build(file.clone()).map_err(located)?;
        let with = |ids: &[&String]| {
            let mut one = file.clone();
            one.subscriptions.extend(
                extended.subscriptions[file.subscriptions.len()..]
                    .iter()
                    .filter(|s| ids.contains(&&s.id))
                    .cloned(),
            );
            one.destinations.extend(
                extended
                    .destinations
                    .iter()
                    .filter(|d| ids.contains(&&d.name))
                    .cloned(),
            );
            one
        };
        let mut quarantined = Vec::new();
        for id in &api_ids {
            if let Err(e) = build(with(&[id])) {
                tracing::error!(subscription = %id, error = %e, "an API subscription no longer validates; it is quarantined");
                quarantined.push((id.clone(), e.to_string()));
            }
        }
        if quarantined.is_empty() {
            return Err(located(full));
        }
        let good: Vec<&String> = api_ids
            .iter()
            .filter(|id| !quarantined.iter().any(|(q, _)| q == *id))
            .collect();
        let mut snapshot = build(with(&good)).map_err(located)?;
        snapshot.quarantined = quarantined;
        Ok(snapshot)
    }

    /// Reads and parses the configuration: the file, its folder and its name.
    pub fn read(&self) -> Result<Parsed, ConfigError> {
        match self {
            Self::File(path) => {
                let (file, base) = crate::config::load(path)?;
                Ok((file, base, path.display().to_string()))
            }
            Self::Text { text, base, origin } => Ok((
                crate::config::parse(text, origin)?,
                base.clone(),
                origin.clone(),
            )),
        }
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Text { .. } => None,
        }
    }
}

/// What `GET /admin/reload` shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// Snapshots swapped in since start (0: the start-up one).
    pub generation: u64,
    /// Successful reloads.
    pub reloads_ok: u64,
    /// Failed reloads (the running configuration was kept).
    pub reloads_failed: u64,
    /// When the last attempt ended (ms since the epoch).
    pub last_attempt_ms: Option<u64>,
    /// What triggered it.
    pub last_cause: Option<String>,
    /// Why the last attempt failed; cleared by a success.
    pub last_error: Option<String>,
    /// Settings the file changes that the gateway reads only at start-up, as of the last
    /// successful reload (`[plugins]`, `storage.path`...): they take effect at the next
    /// restart. Empty when the file agrees with what runs.
    pub restart_needed: Vec<&'static str>,
}

/// The settings read once at start-up, as they were when the gateway started.
#[derive(Debug, Clone)]
pub(crate) struct StartOnly {
    listen: std::net::SocketAddr,
    max_concurrent_requests: usize,
    tls: Option<crate::config::file::TlsConfig>,
    storage_path: std::path::PathBuf,
    engine: crate::config::nats::Engine,
    nats: crate::config::nats::NatsConfig,
    /// On NATS, the streams' and buckets' ages (retention, dead letters, duplicates) are set
    /// when they are opened.
    ages: [std::time::Duration; 3],
    telemetry: crate::config::telemetry::TelemetryConfig,
    plugins: crate::config::file::PluginsConfig,
}

impl StartOnly {
    /// Those of `snapshot`.
    pub(crate) fn of(snapshot: &crate::config::Snapshot) -> Self {
        Self {
            listen: snapshot.server.listen,
            max_concurrent_requests: snapshot.server.max_concurrent_requests,
            tls: snapshot.server.tls.clone(),
            storage_path: snapshot.storage.path.clone(),
            engine: snapshot.storage.engine,
            nats: snapshot.storage.nats.clone(),
            ages: [
                snapshot.storage.retention,
                snapshot.storage.dead_letter_retention,
                snapshot.storage.dedup_window,
            ],
            telemetry: snapshot.telemetry.clone(),
            plugins: snapshot.plugins.clone(),
        }
    }

    /// The names of those `snapshot` sets otherwise.
    pub(crate) fn changed_by(&self, snapshot: &crate::config::Snapshot) -> Vec<&'static str> {
        let new = Self::of(snapshot);
        [
            ("server.listen", self.listen != new.listen),
            (
                "server.max_concurrent_requests",
                self.max_concurrent_requests != new.max_concurrent_requests,
            ),
            ("[server.tls]", self.tls != new.tls),
            ("storage.path", self.storage_path != new.storage_path),
            ("storage.engine", self.engine != new.engine),
            ("[storage.nats]", self.nats != new.nats),
            (
                "storage.retention, dead_letter_retention and dedup_window (on NATS)",
                self.engine == crate::config::nats::Engine::Nats && self.ages != new.ages,
            ),
            ("[telemetry]", self.telemetry != new.telemetry),
            ("[plugins]", self.plugins != new.plugins),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }
}

/// Serialises reloads and remembers how they went.
#[derive(Debug)]
pub struct Reloader {
    pub(crate) source: ConfigSource,
    /// Held by the reload in progress.
    pub(crate) lock: tokio::sync::Mutex<()>,
    pub(crate) status: Mutex<ReloadStatus>,
    /// The file the snapshot in force was built from: a change that is not the file's (an
    /// app's subscription, another instance's) is built over it while the file is broken.
    pub(crate) good: Mutex<Option<Parsed>>,
    /// What the gateway started with of the settings a reload cannot change.
    pub(crate) started: StartOnly,
}

impl Reloader {
    /// A reloader for `source`, whose snapshot in force, `snapshot`, was built from `good`.
    pub fn new(source: ConfigSource, good: Parsed, snapshot: &crate::config::Snapshot) -> Self {
        Self {
            source,
            lock: tokio::sync::Mutex::new(()),
            status: Mutex::new(ReloadStatus::default()),
            good: Mutex::new(Some(good)),
            started: StartOnly::of(snapshot),
        }
    }

    /// The current status.
    pub fn status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::StartOnly;
    use crate::config::{Snapshot, build_for_test};

    const REST: &str = r#"
[[sources]]
name = "odoo"
tokens = ["0123456789abcdef"]
"#;

    fn build(tables: &str) -> Snapshot {
        build_for_test(&format!("{tables}\n{REST}")).expect("valid")
    }

    #[test]
    fn a_reload_names_the_start_up_settings_it_changes_and_only_those() {
        let sled = build("[storage]\nretention = \"1h\"\n[plugins]\nconcurrency = 2");
        let started = StartOnly::of(&sled);
        assert!(started.changed_by(&sled).is_empty());
        // The same settings written another way are no change.
        let same =
            build("[storage]\npath = \"./data\"\nretention = \"60m\"\n[plugins]\nconcurrency = 2");
        assert!(started.changed_by(&same).is_empty());
        // On sled, retention applies at run time; the plugin slots do not.
        let changed = build(
            "[server]\nlisten = \"127.0.0.1:9999\"\n[storage]\nretention = \"2h\"\n[plugins]\nconcurrency = 3",
        );
        assert_eq!(started.changed_by(&changed), ["server.listen", "[plugins]"]);

        let nats = |retention: &str| {
            build(&format!(
                "[storage]\nengine = \"nats\"\nretention = \"{retention}\"\n[storage.nats]\nurls = [\"nats://127.0.0.1:4222\"]"
            ))
        };
        let started = StartOnly::of(&nats("1h"));
        assert!(started.changed_by(&nats("1h")).is_empty());
        // On NATS the streams were opened with it.
        assert_eq!(
            started.changed_by(&nats("2h")),
            ["storage.retention, dead_letter_retention and dedup_window (on NATS)"]
        );
        assert_eq!(
            started.changed_by(&sled),
            ["storage.engine", "[storage.nats]", "[plugins]"]
        );
    }
}
