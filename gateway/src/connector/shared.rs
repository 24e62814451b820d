//! Polling on several gateways (`[storage] engine = "nats"`): what the instances share in
//! JetStream key-value buckets (`<prefix>_<name>`).
//!
//! | bucket | key → value | how writes stay consistent |
//! |---|---|---|
//! | `odoo_cursors` | `<hex source>.<hex model>` → cursor and start floor | written only by the lease holder |
//! | `odoo_leases` | the same key → the holding instance | `create`, then updates checked against the revision held; `max_age` [`LEASE`] |
//! | `odoo_changes` | hex SHA-256 of (source, change key) → nothing | written after the change's event is accepted; `max_age` `[storage] retention` |
//!
//! One instance polls a model at a time: the one whose lease is in `odoo_leases`. It renews
//! the lease every [`RENEW`] (between pages, and while it waits for the next poll); a
//! renewal refused (another revision: the lease expired and was taken) stops it polling that
//! model. An instance that dies stops renewing, and after [`LEASE`] JetStream drops the entry,
//! so another instance's `create` succeeds and it takes the model over from the shared
//! cursor. Two instances may overlap for the moment a lease changes hands (one that paused
//! longer than the lease and has not yet found out): `odoo_changes` makes that harmless, and
//! also keeps a change read again later (the open second, the overlap) from being accepted
//! twice, which JetStream's duplicate window alone would do only within `[storage]
//! dedup_window`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cursor::Cursor;
use crate::config::Snapshot;
use crate::control::ControlPlane;
use crate::control::nats::{open_bucket_with, shared};
use crate::store::StoreError;

/// How long a lease lasts without renewal: how soon a dead instance's models are taken over.
pub const LEASE: Duration = Duration::from_secs(6);

/// How often a held lease is renewed (well within [`LEASE`]).
pub const RENEW: Duration = Duration::from_secs(2);

/// A model's entry in `odoo_cursors`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stored {
    /// How far it was read (`None` before its first poll).
    pub cursor: Option<Cursor>,
    /// Its start floor.
    pub start: Option<Cursor>,
}

/// The shared buckets of polling.
pub struct Shared {
    cursors: kv::Store,
    leases: kv::Store,
    changes: kv::Store,
    /// This instance, as its leases name it.
    instance: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

fn key(source: &str, model: &str) -> String {
    format!("{}.{}", hex::encode(source), hex::encode(model))
}

fn nats(what: &str, e: impl std::fmt::Display) -> StoreError {
    shared(&format!("odoo polling: {what}"), e)
}

impl Shared {
    /// The buckets (created when missing) on the NATS engine; `None` on sled.
    pub async fn open(
        control: &ControlPlane,
        snapshot: &Snapshot,
    ) -> Result<Option<Arc<Self>>, StoreError> {
        let Some((js, instance)) = control.shared_jetstream() else {
            return Ok(None);
        };
        let config = &snapshot.storage.nats;
        let open = |name: &str, max_age: Duration| {
            let bucket = format!("{}_{name}", config.bucket_prefix);
            open_bucket_with(js, bucket, max_age, config.replicas, 1)
        };
        Ok(Some(Arc::new(Self {
            cursors: open("odoo_cursors", Duration::ZERO).await?,
            leases: open("odoo_leases", LEASE).await?,
            changes: open("odoo_changes", snapshot.storage.retention).await?,
            instance: instance.to_owned(),
        })))
    }

    /// The entry of `source`'s `model`.
    pub async fn stored(&self, source: &str, model: &str) -> Result<Stored, StoreError> {
        let raw = self
            .cursors
            .get(key(source, model))
            .await
            .map_err(|e| nats("read a cursor", e))?;
        Ok(raw
            .and_then(|r| serde_json::from_slice(&r).ok())
            .unwrap_or_default())
    }

    /// Writes the entry of `source`'s `model`.
    pub async fn store(&self, source: &str, model: &str, s: &Stored) -> Result<(), StoreError> {
        let raw = bytes::Bytes::from(serde_json::to_vec(s).unwrap_or_default());
        self.cursors
            .put(key(source, model), raw)
            .await
            .map_err(|e| nats("write a cursor", e))?;
        Ok(())
    }

    /// Whether the change `change_key` of `source` was accepted already.
    pub async fn seen(&self, source: &str, change_key: &str) -> Result<bool, StoreError> {
        let found = self
            .changes
            .get(change_id(source, change_key))
            .await
            .map_err(|e| nats("look a change up", e))?;
        Ok(found.is_some())
    }

    /// Notes that the change `change_key` of `source` was accepted.
    pub async fn mark(&self, source: &str, change_key: &str) -> Result<(), StoreError> {
        self.changes
            .put(change_id(source, change_key), bytes::Bytes::new())
            .await
            .map_err(|e| nats("note a change", e))?;
        Ok(())
    }

    /// The instance that holds the lease of `source`'s `model`, if one does, and whether it
    /// is this one.
    pub async fn holder(
        &self,
        source: &str,
        model: &str,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let entry = self
            .leases
            .entry(key(source, model))
            .await
            .map_err(|e| nats("read a lease", e))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| {
                let holder = String::from_utf8_lossy(&e.value).into_owned();
                let here = holder == self.instance;
                (holder, here)
            }))
    }

    /// The lease of `source`'s `model`, not held yet.
    pub fn lease(self: &Arc<Self>, source: &str, model: &str) -> Lease {
        Lease {
            shared: self.clone(),
            key: key(source, model),
            revision: None,
            renewed: None,
        }
    }
}

fn change_id(source: &str, change_key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(source.as_bytes())
        .chain_update([0])
        .chain_update(change_key.as_bytes())
        .finalize();
    hex::encode(digest)
}

/// One model's lease, as this instance sees it.
#[derive(Debug)]
pub struct Lease {
    shared: Arc<Shared>,
    key: String,
    /// The revision written by this instance, while it holds the lease.
    revision: Option<u64>,
    /// When it was last written.
    renewed: Option<Instant>,
}

impl Lease {
    /// Takes or renews the lease; whether this instance holds it now.
    pub async fn hold(&mut self) -> Result<bool, StoreError> {
        let me = bytes::Bytes::from(self.shared.instance.clone());
        let leases = &self.shared.leases;
        if let Some(revision) = self.revision {
            match leases.update(&self.key, me.clone(), revision).await {
                Ok(next) => return Ok(self.held(next)),
                // Taken meanwhile, or a failed write: see below what the bucket says.
                Err(e) => tracing::debug!(key = self.key, error = %e, "lease renewal refused"),
            }
            self.revision = None;
        }
        match leases.create(&self.key, me.clone()).await {
            Ok(revision) => Ok(self.held(revision)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                // Ours after all (a renewal whose answer was lost)? Then keep it.
                let entry = leases
                    .entry(&self.key)
                    .await
                    .map_err(|e| nats("read a lease", e))?;
                match entry {
                    Some(e) if e.value == me && e.operation == kv::Operation::Put => {
                        Ok(self.held(e.revision))
                    }
                    _ => Ok(false),
                }
            }
            Err(e) => Err(nats("take a lease", e)),
        }
    }

    fn held(&mut self, revision: u64) -> bool {
        self.revision = Some(revision);
        self.renewed = Some(Instant::now());
        true
    }

    /// Renews the lease if [`RENEW`] has passed; whether it is still held.
    pub async fn keep(&mut self) -> Result<bool, StoreError> {
        match self.renewed {
            Some(at) if self.revision.is_some() && at.elapsed() < RENEW => Ok(true),
            _ => self.hold().await,
        }
    }

    /// Gives the lease up (at shutdown): another instance takes the model over at once.
    pub async fn release(&mut self) {
        if let Some(revision) = self.revision.take() {
            let leases = &self.shared.leases;
            if let Err(e) = leases
                .delete_expect_revision(&self.key, Some(revision))
                .await
            {
                tracing::debug!(key = self.key, error = %e, "lease not released; it expires");
            }
        }
    }
}
