//! The registered apps and their credentials, from two places: the configuration file
//! (`[[apps]]`, validated into the snapshot's [`ConfigApps`]) and the control plane (the sled
//! tree `apps`, or the shared NATS bucket; managed through `/admin/apps`, which
//! `odoo-gateway apps` calls). The records themselves are [`crate::apps`]; this module finds
//! them for a request.
//!
//! **A name in the file shadows the same name in the store**: the file is what the operator
//! reviews, so it wins.

use std::sync::Arc;

pub use crate::apps::{
    App, ConfigApps, IssuedCredentials, OAuth2Client, SCOPES, generate, normalize_scopes,
    valid_name,
};
use crate::state::State;
use crate::store::StoreError;

/// Finds an app: the configuration file first, then the store (skipping names the file
/// shadows).
pub(crate) fn find(state: &State, key: Lookup<'_>) -> Result<Option<Arc<App>>, StoreError> {
    let snapshot = state.snapshot.load();
    if let Some(app) = snapshot.apps.iter().find(|a| key.matches(a)) {
        return Ok(Some(app.clone()));
    }
    let stored = state.control.app(key)?;
    Ok(stored
        .filter(|a| snapshot.apps.get(&a.name).is_none())
        .map(Arc::new))
}

pub(crate) use crate::apps::Lookup;

#[cfg(test)]
mod tests;
