//! OAuth2 access tokens on sled: opaque random strings (32 random bytes, base64url), stored
//! under the SHA-256 of the token, never the token itself, so a copy of the database gives
//! no usable token.
//!
//! Trees: `oauth2_tokens` (hash → record) and `oauth2_token_expiry` (big-endian expiry second
//! followed by the hash → nothing), the order in which expired tokens are pruned: lazily, when
//! one is looked up after its expiry, and a bounded batch each time a token is issued.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::StoreError;

/// Expired tokens removed at most per issue.
const PRUNE_BATCH: usize = 64;

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    /// The app's name.
    pub(crate) app: String,
    /// The client id it was issued to (a re-registered app gets new ids: old tokens die).
    pub(crate) client_id: String,
    /// Granted scopes.
    pub(crate) scopes: Vec<String>,
    /// Issued at (seconds since the epoch).
    pub(crate) iat: u64,
    /// Expires at (seconds since the epoch).
    pub(crate) exp: u64,
}

/// The token trees.
#[derive(Debug, Clone)]
pub(crate) struct TokenStore {
    tokens: sled::Tree,
    expiry: sled::Tree,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn expiry_key(exp: u64, hash: &[u8; 32]) -> Vec<u8> {
    [&exp.to_be_bytes()[..], &hash[..]].concat()
}

impl TokenStore {
    /// Opens the trees.
    pub(crate) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            tokens: db.open_tree("oauth2_tokens")?,
            expiry: db.open_tree("oauth2_token_expiry")?,
        })
    }

    /// Issues a token for `record`; returns the token (the only time it exists in clear).
    pub(crate) fn issue(&self, record: &TokenRecord) -> Result<String, StoreError> {
        self.prune(record.iat, PRUNE_BATCH)?;
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let h = hash(&token);
        // The expiry entry first: a crash between the two leaves a harmless index entry.
        self.expiry.insert(expiry_key(record.exp, &h), &[])?;
        self.tokens
            .insert(h, serde_json::to_vec(record).unwrap_or_default())?;
        Ok(token)
    }

    /// The live record of `token`; an expired one is removed and reported as unknown.
    pub(crate) fn lookup(&self, token: &str, now: u64) -> Result<Option<TokenRecord>, StoreError> {
        let h = hash(token);
        let Some(bytes) = self.tokens.get(h)? else {
            return Ok(None);
        };
        let record: TokenRecord =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                tree: "oauth2_tokens",
                message: e.to_string(),
            })?;
        if record.exp <= now {
            self.tokens.remove(h)?;
            self.expiry.remove(expiry_key(record.exp, &h))?;
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// Revokes `token` if it was issued to `client_id`; true when something was revoked.
    pub(crate) fn revoke(
        &self,
        token: &str,
        client_id: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        match self.lookup(token, now)? {
            Some(record) if record.client_id == client_id => {
                let h = hash(token);
                self.tokens.remove(h)?;
                self.expiry.remove(expiry_key(record.exp, &h))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Revokes every token issued to `app`; returns how many.
    pub(crate) fn revoke_app(&self, app: &str) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in self.tokens.iter() {
            let (h, bytes) = entry?;
            let Ok(record) = serde_json::from_slice::<TokenRecord>(&bytes) else {
                continue;
            };
            if record.app == app {
                self.tokens.remove(&h)?;
                self.expiry
                    .remove([&record.exp.to_be_bytes()[..], &h].concat())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes up to `max` tokens expired at `now`; returns how many.
    pub(crate) fn prune(&self, now: u64, max: usize) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in self
            .expiry
            .range(..(now + 1).to_be_bytes().to_vec())
            .take(max)
        {
            let (key, _) = entry?;
            if let Some(h) = key.get(8..) {
                self.tokens.remove(h)?;
            }
            self.expiry.remove(key)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Tokens stored (expired ones not yet pruned included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(exp: u64) -> TokenRecord {
        TokenRecord {
            app: "a".into(),
            client_id: "cid".into(),
            scopes: vec!["read".into()],
            iat: 100,
            exp,
        }
    }

    #[test]
    fn tokens_are_stored_by_hash_expire_and_are_revoked_by_their_owner_only() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = TokenStore::open(&db).unwrap();
        let token = store.issue(&record(200)).unwrap();
        assert!(URL_SAFE_NO_PAD.decode(&token).unwrap().len() >= 32);
        for entry in db.open_tree("oauth2_tokens").unwrap().iter() {
            let (key, value) = entry.unwrap();
            assert!(
                !key.windows(token.len()).any(|w| w == token.as_bytes())
                    && !value.windows(8).any(|w| w == &token.as_bytes()[..8])
            );
        }
        assert_eq!(store.lookup(&token, 150).unwrap(), Some(record(200)));
        assert_eq!(store.lookup("nope", 150).unwrap(), None);
        assert!(!store.revoke(&token, "other-client", 150).unwrap());
        assert!(store.lookup(&token, 150).unwrap().is_some());
        assert!(store.revoke(&token, "cid", 150).unwrap());
        assert_eq!(store.lookup(&token, 150).unwrap(), None);

        let expiring = store.issue(&record(200)).unwrap();
        assert_eq!(
            store.lookup(&expiring, 200).unwrap(),
            None,
            "expired at exp"
        );
        assert_eq!(store.len(), 0, "removed lazily");
    }

    #[test]
    fn issuing_prunes_expired_tokens() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = TokenStore::open(&db).unwrap();
        for _ in 0..3 {
            store.issue(&record(150)).unwrap();
        }
        let mut later = record(1000);
        later.iat = 500;
        store.issue(&later).unwrap();
        assert_eq!(store.len(), 1);
    }
}
