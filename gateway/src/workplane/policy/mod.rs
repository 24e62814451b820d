//! Delivery policies, written once for both engines: ordered delivery per key ([`order`]), rate
//! limits per destination ([`rate`]) and circuit breaking per receiver host ([`circuit`]). The
//! decisions are pure (in `delivery/policy/`, below the configuration that names them);
//! [`Policies`] keeps their state: this instance's own on sled, shared with
//! the other instances through JetStream key-value buckets on NATS (`shared.rs`). The job runner
//! asks [`Policies::admit`] before an attempt and tells [`Policies::record`] its outcome; the
//! engines only decide where a job that must wait waits (no slot held either way).

pub use crate::delivery::policy::{circuit, order, rate};
mod shared;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub use crate::store::Order;
pub use circuit::{CircuitConfig, CircuitState};
pub use order::KeyTemplate;
pub use rate::Rate;

use crate::config::Destination;
use circuit::{Breaker, Check};

/// Why a delivery waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Its destination's rate limit.
    RateLimited,
    /// Its receiver host's circuit is open (or its probe is out).
    CircuitOpen,
}

impl Wait {
    /// The name the metrics and logs use.
    pub fn name(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

/// Whether a delivery may make its attempt now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Yes (`probe`: as its host's probe, whose outcome closes or opens the circuit).
    Go {
        /// It is the host's probe.
        probe: bool,
    },
    /// Not before `at_ms` (ms since the epoch), and why.
    WaitUntil {
        /// When to ask again.
        at_ms: u64,
        /// Why.
        why: Wait,
    },
}

/// One receiver host's circuit, for `/admin/status`, `/metrics`, the console and the app API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostCircuit {
    /// `scheme://host:port`.
    pub host: String,
    /// Where it stands.
    #[serde(flatten)]
    pub state: CircuitState,
}

/// A change of a host's circuit, reported to whoever counts them.
pub type OnChange = Box<dyn Fn(&str, CircuitState) + Send + Sync>;

/// The policies' state. One per gateway.
pub struct Policies {
    circuits: Mutex<HashMap<String, Breaker>>,
    /// Per destination: the rate state (sled: its `tat`; NATS: the deliveries claimed from the
    /// shared state and not used yet).
    rates: Mutex<HashMap<String, RateState>>,
    shared: Option<shared::Shared>,
    on_change: Mutex<Option<OnChange>>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

/// One destination's rate state here.
#[derive(Debug, Clone, Copy, Default)]
struct RateState {
    /// The theoretical arrival time (µs) of this instance's own limiter (sled).
    tat_us: u64,
    /// Deliveries claimed from the shared state (NATS), usable until `claimed_until_us`.
    claimed: u32,
    claimed_until_us: u64,
}

/// How long deliveries claimed from the shared rate state stay usable: the slots they stand
/// for are past after that.
const CLAIM_LIFETIME_US: u64 = 200_000;

impl Policies {
    /// Policies whose state is this instance's own.
    pub fn local() -> Self {
        Self {
            circuits: Mutex::default(),
            rates: Mutex::default(),
            shared: None,
            on_change: Mutex::default(),
        }
    }

    /// Policies whose state is shared through buckets on `js` (created when missing).
    pub(crate) async fn shared(
        js: &async_nats::jetstream::Context,
        prefix: &str,
        replicas: usize,
    ) -> Result<std::sync::Arc<Self>, crate::store::StoreError> {
        let shared = shared::Shared::open(js, prefix, replicas).await?;
        let policies = std::sync::Arc::new(Self {
            shared: Some(shared),
            ..Self::local()
        });
        shared::follow(std::sync::Arc::downgrade(&policies));
        Ok(policies)
    }

    /// Calls `f` on every change of a host's circuit (this instance's and, on NATS, the
    /// others').
    pub fn on_change(&self, f: OnChange) {
        *self.on_change.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    fn changed(&self, host: &str, change: circuit::Change) {
        let (from, to) = (change.from.name(), change.to.name());
        match change.to {
            CircuitState::Open { .. } => {
                tracing::warn!(
                    host,
                    from,
                    to,
                    "receiver host's circuit opened: its deliveries wait"
                )
            }
            _ => tracing::info!(host, from, to, "receiver host's circuit changed"),
        }
        if let Some(f) = &*self.on_change.lock().unwrap_or_else(|p| p.into_inner()) {
            f(host, change.to);
        }
    }

    fn breakers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Breaker>> {
        self.circuits.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rates(&self) -> std::sync::MutexGuard<'_, HashMap<String, RateState>> {
        self.rates.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a delivery to `dest` may make its attempt at `now_ms`, asking this instance's
    /// state only (sled; the caller holds its slots and gives them back if it must wait).
    pub fn admit_here(&self, dest: &Destination, config: &CircuitConfig, now_ms: u64) -> Admission {
        let host = dest.authority();
        let (check, change) = breaker(&mut self.breakers(), &host).check(now_ms, config);
        if let Some(change) = change {
            self.changed(&host, change);
        }
        let probe = match check {
            Check::WaitUntil(at_ms) => {
                return Admission::WaitUntil {
                    at_ms,
                    why: Wait::CircuitOpen,
                };
            }
            Check::Probe => true,
            Check::Go => false,
        };
        if let Some(rate) = dest.rate_limit {
            let now_us = now_ms * 1_000;
            let mut rates = self.rates();
            let state = rates.entry(dest.name.clone()).or_default();
            match rate.take(state.tat_us, now_us, 1) {
                Ok(tat) => state.tat_us = tat,
                Err(at_us) => {
                    drop(rates);
                    if probe {
                        // The probe did not go: the next asker may take it.
                        self.breakers()
                            .entry(host)
                            .or_default()
                            .take(CircuitState::Open { until_ms: now_ms });
                    }
                    return Admission::WaitUntil {
                        at_ms: at_us.div_ceil(1_000),
                        why: Wait::RateLimited,
                    };
                }
            }
        }
        Admission::Go { probe }
    }

    /// Whether a delivery to `dest` may make its attempt at `now_ms`, on either engine: on
    /// NATS the circuit's probe is claimed for the cluster and deliveries are claimed from the
    /// shared rate state, a tenth of a second's worth at a time.
    pub async fn admit(
        &self,
        dest: &Destination,
        config: &CircuitConfig,
        now_ms: u64,
    ) -> Admission {
        let Some(shared) = &self.shared else {
            return self.admit_here(dest, config, now_ms);
        };
        let host = dest.authority();
        let (check, change) = breaker(&mut self.breakers(), &host).check(now_ms, config);
        let probe = match check {
            Check::WaitUntil(at_ms) => {
                return Admission::WaitUntil {
                    at_ms,
                    why: Wait::CircuitOpen,
                };
            }
            Check::Probe => {
                let change = change.expect("a probe changes the state");
                let patience = config.cool_down.as_millis() as u64;
                if !shared.claim_probe(&host, change.to, patience).await {
                    // Another instance's probe is out: its outcome decides.
                    return Admission::WaitUntil {
                        at_ms: now_ms + 1_000,
                        why: Wait::CircuitOpen,
                    };
                }
                self.changed(&host, change);
                true
            }
            Check::Go => false,
        };
        if let Some(rate) = dest.rate_limit {
            let now_us = now_ms * 1_000;
            {
                let mut rates = self.rates();
                let state = rates.entry(dest.name.clone()).or_default();
                if state.claimed > 0 && now_us < state.claimed_until_us {
                    state.claimed -= 1;
                    return Admission::Go { probe };
                }
            }
            match shared.claim_rate(&dest.name, &rate, now_us).await {
                Ok(claimed) => {
                    let mut rates = self.rates();
                    let state = rates.entry(dest.name.clone()).or_default();
                    state.claimed = claimed - 1;
                    state.claimed_until_us = now_us + CLAIM_LIFETIME_US;
                }
                Err(at_us) => {
                    return Admission::WaitUntil {
                        at_ms: at_us.div_ceil(1_000),
                        why: Wait::RateLimited,
                    };
                }
            }
        }
        Admission::Go { probe }
    }

    /// Takes the outcome of an attempt to `dest` (`status`: the receiver's answer, `None` for
    /// none; `probe`: it was the host's probe; `retry_after`: a `429`'s `Retry-After`).
    pub async fn record(
        &self,
        dest: &Destination,
        status: Option<u16>,
        probe: bool,
        retry_after: Option<Duration>,
        config: &CircuitConfig,
        now_ms: u64,
    ) {
        let host = dest.authority();
        let failed = circuit::host_failed(status);
        let change = breaker(&mut self.breakers(), &host).record(failed, probe, now_ms, config);
        if let Some(change) = change {
            self.changed(&host, change);
            if let Some(shared) = &self.shared {
                shared.publish_circuit(&host, change.to).await;
            }
        }
        if let (Some(rate), Some(wait), Some(429)) = (dest.rate_limit, retry_after, status) {
            let now_us = now_ms * 1_000;
            match &self.shared {
                Some(shared) => {
                    self.rates().remove(&dest.name);
                    shared.slow_rate(&dest.name, &rate, now_us, wait).await;
                }
                None => {
                    let mut rates = self.rates();
                    let state = rates.entry(dest.name.clone()).or_default();
                    state.tat_us = rate.slowed(state.tat_us, now_us, wait);
                }
            }
        }
    }

    /// Takes a host's circuit as another instance decided it (NATS).
    fn remote(&self, host: &str, state: CircuitState) {
        let mut breakers = self.breakers();
        let breaker = breakers.entry(host.to_owned()).or_default();
        let from = breaker.state();
        if from != state {
            breaker.take(state);
            drop(breakers);
            self.changed(host, circuit::Change { from, to: state });
        }
    }

    /// Every host whose circuit is not closed.
    pub fn circuits(&self) -> Vec<HostCircuit> {
        let mut out: Vec<HostCircuit> = self
            .breakers()
            .iter()
            .filter(|(_, b)| b.state() != CircuitState::Closed)
            .map(|(host, b)| HostCircuit {
                host: host.clone(),
                state: b.state(),
            })
            .collect();
        out.sort_by(|a, b| a.host.cmp(&b.host));
        out
    }

    /// The circuit of receiver host `host`.
    pub fn circuit(&self, host: &str) -> CircuitState {
        self.breakers()
            .get(host)
            .map_or(CircuitState::Closed, Breaker::state)
    }
}

/// `host`'s breaker, made on first use (the key copied only then).
fn breaker<'a>(breakers: &'a mut HashMap<String, Breaker>, host: &str) -> &'a mut Breaker {
    if !breakers.contains_key(host) {
        breakers.insert(host.to_owned(), Breaker::default());
    }
    breakers.get_mut(host).expect("just inserted")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(rate: Option<&str>) -> Destination {
        Destination {
            name: "d".into(),
            url: "http://receiver.test/hook".parse().expect("url"),
            secrets: Vec::new(),
            auth: crate::config::file::DestinationAuth::None {},
            rate_limit: rate.map(|r| r.parse().expect("rate")),
        }
    }

    #[tokio::test]
    async fn an_open_circuit_holds_deliveries_until_its_probe_closes_it() {
        let policies = Policies::local();
        let changes = std::sync::Arc::new(Mutex::new(Vec::new()));
        let seen = changes.clone();
        policies.on_change(Box::new(move |host, state| {
            seen.lock()
                .expect("lock")
                .push((host.to_owned(), state.name()));
        }));
        let config = CircuitConfig {
            failures: 2,
            cool_down: Duration::from_secs(1),
            ..CircuitConfig::default()
        };
        let d = destination(None);
        for t in [10, 20] {
            assert_eq!(
                policies.admit(&d, &config, t).await,
                Admission::Go { probe: false }
            );
            policies
                .record(&d, Some(503), false, None, &config, t)
                .await;
        }
        assert_eq!(
            policies.admit(&d, &config, 30).await,
            Admission::WaitUntil {
                at_ms: 1_020,
                why: Wait::CircuitOpen
            }
        );
        assert_eq!(policies.circuits()[0].state.name(), "open");
        assert_eq!(
            policies.admit(&d, &config, 1_020).await,
            Admission::Go { probe: true }
        );
        policies
            .record(&d, Some(200), true, None, &config, 1_030)
            .await;
        assert_eq!(
            policies.admit(&d, &config, 1_040).await,
            Admission::Go { probe: false }
        );
        assert!(policies.circuits().is_empty());
        let names: Vec<&str> = changes.lock().expect("lock").iter().map(|c| c.1).collect();
        assert_eq!(names, ["open", "half_open", "closed"]);
    }

    #[tokio::test]
    async fn a_rate_limit_paces_deliveries_and_a_429_slows_it() {
        let policies = Policies::local();
        let config = CircuitConfig::default();
        let d = destination(Some("2/s"));
        let now = 1_000_000;
        assert!(matches!(
            policies.admit(&d, &config, now).await,
            Admission::Go { .. }
        ));
        assert!(matches!(
            policies.admit(&d, &config, now).await,
            Admission::Go { .. }
        ));
        assert_eq!(
            policies.admit(&d, &config, now).await,
            Admission::WaitUntil {
                at_ms: now + 500,
                why: Wait::RateLimited
            }
        );
        policies
            .record(
                &d,
                Some(429),
                false,
                Some(Duration::from_secs(10)),
                &config,
                now,
            )
            .await;
        assert_eq!(
            policies.admit(&d, &config, now + 600).await,
            Admission::WaitUntil {
                at_ms: now + 10_000,
                why: Wait::RateLimited
            }
        );
    }
}
