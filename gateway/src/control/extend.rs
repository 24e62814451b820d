//! The app API's stored subscriptions as configuration: what a reload adds to the file's own.

use crate::config::file::{DestinationConfig, SubscriptionConfig};
use crate::config::{ConfigError, ConfigFile};

use super::ControlPlane;

/// Adds the subscriptions (and their destinations) that apps created through the API to
/// `file`, so that they join the same snapshot as the file's own. Called at start-up and on
/// every reload. A stored subscription whose id the file already uses is skipped (and logged):
/// the file wins.
pub fn extend_config(control: &ControlPlane, file: &mut ConfigFile) -> Result<(), ConfigError> {
    let stored = control
        .all_subscriptions()
        .map_err(|e| ConfigError::Invalid {
            file: "api_subscriptions".into(),
            problems: vec![format!("cannot read the API's subscriptions: {e}")],
        })?;
    type Grant = (Vec<String>, Option<Vec<String>>);
    let grants_of = |app: &str| -> Grant {
        if let Some(config) = file.apps.iter().find(|a| a.name == app) {
            return (config.events.clone(), config.sources.clone());
        }
        control
            .app(crate::apps::Lookup::Name(app))
            .ok()
            .flatten()
            .map(|a| (a.events, a.sources))
            // An app that is gone grants nothing.
            .unwrap_or((Vec::new(), Some(Vec::new())))
    };
    let mut grants_by_app: std::collections::HashMap<String, Grant> = Default::default();
    for (app, _) in &stored {
        if !grants_by_app.contains_key(app) {
            grants_by_app.insert(app.clone(), grants_of(app));
        }
    }
    for (app, sub) in stored {
        let id = super::records::qualified_id(&app, &sub.id);
        let taken = file.subscriptions.iter().any(|s| s.id == id)
            || file.destinations.iter().any(|d| d.name == id);
        if taken {
            tracing::warn!(subscription = %id, "the configuration file uses this id; the API's subscription is ignored");
            continue;
        }
        // After a rotation the previous secret signs too, until it is due to stop.
        let mut secrets = vec![sub.destination.secret];
        secrets.extend(
            sub.destination
                .previous_secret
                .filter(|p| p.until_ms > crate::time::now_ms())
                .map(|p| p.secret),
        );
        file.destinations.push(DestinationConfig {
            name: id.clone(),
            url: sub.destination.url,
            secrets,
            auth: sub.destination.auth,
            rate_limit: sub.destination.rate_limit,
        });
        let plugin = sub
            .plugin
            .map(|hash| super::records::plugin_file(&file.storage.path, &hash));
        file.subscriptions.push(SubscriptionConfig {
            id: id.clone(),
            events: sub.events,
            destinations: vec![id],
            plugin,
            config: sub
                .config
                .into_iter()
                .map(|(k, v)| (k, toml::Value::String(v)))
                .collect(),
            // An app's plugin runs under the operator's defaults.
            plugin_limits: None,
            format: sub.format,
            timeout: sub.timeout_ms.map(std::time::Duration::from_millis),
            retries: sub.retries,
            enabled: sub.enabled,
            filter: sub.filter,
            enrich: sub.enrich,
            ordering: sub.ordering,
            grants: Some(
                grants_by_app
                    .get(&app)
                    .map(|g| g.0.clone())
                    .unwrap_or_default(),
            ),
            granted_sources: grants_by_app
                .get(&app)
                .map_or(Some(Vec::new()), |g| g.1.clone()),
        });
    }
    Ok(())
}
