//! The policies' state shared by every instance on NATS: each receiver host's circuit in the
//! bucket `<prefix>_circuits` (an instance that opens or closes one writes it, every instance
//! follows the bucket's watch; a probe is claimed with a revision-checked write, so one instance
//! sends it), and each rate-limited destination's state (its `tat`, in microseconds) in
//! `<prefix>_rates`, claimed a tenth of a second's worth at a time with revision-checked writes.
//! A bucket that cannot be reached lets deliveries go: a policy never stops delivery for lack of
//! its own state.

use std::sync::Weak;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::{CircuitState, Policies, Rate};
use crate::store::StoreError;

/// How many times a revision-checked write is tried against other instances' writes.
const CAS_TRIES: usize = 8;

/// A host's circuit as the bucket keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    host: String,
    #[serde(flatten)]
    state: CircuitState,
}

/// The two buckets.
#[derive(Debug)]
pub(super) struct Shared {
    circuits: kv::Store,
    rates: kv::Store,
}

fn key(name: &str) -> String {
    crate::workplane::nats::token(name)
}

impl Shared {
    pub(super) async fn open(
        js: &jetstream::Context,
        prefix: &str,
        replicas: usize,
    ) -> Result<Self, StoreError> {
        let open = |name: &str| {
            crate::control::nats::open_bucket_with(
                js,
                format!("{prefix}_{name}"),
                Duration::ZERO,
                replicas,
                1,
            )
        };
        Ok(Self {
            circuits: open("circuits").await?,
            rates: open("rates").await?,
        })
    }

    /// Claims `host`'s probe for this instance (writing `half_open`); false when another
    /// instance's probe is out.
    pub(super) async fn claim_probe(
        &self,
        host: &str,
        half_open: CircuitState,
        patience_ms: u64,
    ) -> bool {
        let key = key(host);
        let now_ms = crate::time::now_ms();
        let value = || {
            Bytes::from(
                serde_json::to_vec(&Stored {
                    host: host.to_owned(),
                    state: half_open,
                })
                .unwrap_or_default(),
            )
        };
        let entry = match self.circuits.entry(&key).await {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(error = %e, host, "cannot read a circuit; the probe goes");
                return true;
            }
        };
        let current = entry
            .as_ref()
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| serde_json::from_slice::<Stored>(&e.value).ok());
        if let Some(Stored {
            state: CircuitState::HalfOpen { since_ms },
            ..
        }) = current
            && since_ms + patience_ms > now_ms
        {
            return false;
        }
        let written = match &entry {
            Some(e) => self
                .circuits
                .update(&key, value(), e.revision)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            None => self
                .circuits
                .create(&key, value())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        };
        written.is_ok()
    }

    /// Writes `host`'s circuit as this instance decided it.
    pub(super) async fn publish_circuit(&self, host: &str, state: CircuitState) {
        let value = serde_json::to_vec(&Stored {
            host: host.to_owned(),
            state,
        })
        .unwrap_or_default();
        if let Err(e) = self.circuits.put(key(host), Bytes::from(value)).await {
            tracing::warn!(error = %e, host, "cannot share a circuit's change");
        }
    }

    /// Claims deliveries to `destination` at `now_us`: how many (a tenth of a second's worth,
    /// or one), or when the first may go.
    pub(super) async fn claim_rate(
        &self,
        destination: &str,
        rate: &Rate,
        now_us: u64,
    ) -> Result<u32, u64> {
        for _ in 0..CAS_TRIES {
            let (tat, revision) = match self.tat(destination).await {
                Ok(read) => read,
                Err(()) => return Ok(1),
            };
            let (claimed, new_tat) = match rate.take(tat, now_us, rate.batch()) {
                Ok(new_tat) => (rate.batch(), new_tat),
                Err(_) => match rate.take(tat, now_us, 1) {
                    Ok(new_tat) => (1, new_tat),
                    Err(at_us) => return Err(at_us),
                },
            };
            if self.write_tat(destination, new_tat, revision).await {
                return Ok(claimed);
            }
        }
        // Others keep winning: this one waits a moment.
        Err(now_us + rate.interval_us())
    }

    /// Pushes `destination`'s state back after a `Retry-After: wait`.
    pub(super) async fn slow_rate(
        &self,
        destination: &str,
        rate: &Rate,
        now_us: u64,
        wait: Duration,
    ) {
        for _ in 0..CAS_TRIES {
            let Ok((tat, revision)) = self.tat(destination).await else {
                return;
            };
            let slowed = rate.slowed(tat, now_us, wait);
            if slowed == tat || self.write_tat(destination, slowed, revision).await {
                return;
            }
        }
    }

    async fn tat(&self, destination: &str) -> Result<(u64, Option<u64>), ()> {
        match self.rates.entry(key(destination)).await {
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => Ok((
                std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                Some(entry.revision),
            )),
            Ok(Some(entry)) => Ok((0, Some(entry.revision))),
            Ok(None) => Ok((0, None)),
            Err(e) => {
                tracing::warn!(error = %e, destination, "cannot read a rate limit's state; the delivery goes");
                Err(())
            }
        }
    }

    async fn write_tat(&self, destination: &str, tat: u64, revision: Option<u64>) -> bool {
        let value = Bytes::from(tat.to_string());
        match revision {
            Some(revision) => self
                .rates
                .update(key(destination), value, revision)
                .await
                .is_ok(),
            None => self.rates.create(key(destination), value).await.is_ok(),
        }
    }
}

/// Follows the circuits bucket for as long as `policies` lives: another instance's change is
/// taken here.
pub(super) fn follow(policies: Weak<Policies>) {
    tokio::spawn(async move {
        loop {
            let watch = {
                let Some(p) = policies.upgrade() else { return };
                let Some(shared) = &p.shared else { return };
                shared.circuits.watch_all().await
            };
            match watch {
                Ok(mut watch) => {
                    while let Some(entry) = watch.next().await {
                        let Some(p) = policies.upgrade() else { return };
                        let Ok(entry) = entry else { break };
                        if let Ok(stored) = serde_json::from_slice::<Stored>(&entry.value) {
                            p.remote(&stored.host, stored.state);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot watch the circuits; trying again"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
