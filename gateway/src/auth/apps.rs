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
#[cfg(test)]
use crate::config::file::AppConfig;
use crate::state::State;
use crate::store::StoreError;

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
    fn matches(self, app: &App) -> bool {
        match self {
            Lookup::Name(n) => app.name == n,
            Lookup::ClientId(id) => app.oauth2.as_ref().is_some_and(|c| c.client_id == id),
            Lookup::ConsumerKey(k) => app.oauth1.as_ref().is_some_and(|c| c.consumer_key == k),
        }
    }

    fn index_key(self) -> Option<Vec<u8>> {
        match self {
            Lookup::Name(_) => None,
            Lookup::ClientId(id) => Some([b"c\0", id.as_bytes()].concat()),
            Lookup::ConsumerKey(k) => Some([b"k\0", k.as_bytes()].concat()),
        }
    }
}

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

mod store;

pub(crate) use store::AppStore;

#[cfg(test)]
mod tests;
