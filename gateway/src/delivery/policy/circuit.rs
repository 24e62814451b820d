//! Circuit breaking per receiver host: after `failures` failed attempts in a row, or a failure
//! ratio of `failure_ratio` over `window` (with at least `min_requests` attempts in it), the
//! host is *open*: its jobs wait, making no attempt, for `cool_down`; then one probe
//! *half-opens* it; the probe's success closes it, its failure opens it again. A failure is an
//! attempt the host did not answer (connection, timeout) or answered 5xx or 429: an answer such
//! as 404 or 400 says the host is up. Pure: [`Breaker`] is one host's state machine; callers
//! keep one per host and, on NATS, share its transitions.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[delivery.circuit]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitConfig {
    /// Whether hosts are circuit-broken at all.
    pub enabled: bool,
    /// Failed attempts in a row that open a host.
    pub failures: u32,
    /// The share of failed attempts over `window` that opens a host.
    pub failure_ratio: f64,
    /// The window of `failure_ratio`.
    #[serde(with = "crate::time::serde_duration")]
    pub window: Duration,
    /// Attempts `window` must hold before `failure_ratio` counts.
    pub min_requests: u32,
    /// How long an open host waits before its probe.
    #[serde(with = "crate::time::serde_duration")]
    pub cool_down: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failures: 10,
            failure_ratio: 0.5,
            window: Duration::from_secs(60),
            min_requests: 20,
            cool_down: Duration::from_secs(30),
        }
    }
}

impl CircuitConfig {
    /// What is wrong with these settings, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.failures == 0 {
            return Err("delivery.circuit.failures: at least 1".into());
        }
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            return Err("delivery.circuit.failure_ratio: above 0, at most 1".into());
        }
        if self.window.is_zero() || self.cool_down.is_zero() {
            return Err("delivery.circuit: window and cool_down must be above 0".into());
        }
        Ok(())
    }
}

/// Where a host stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CircuitState {
    /// Attempts go.
    Closed,
    /// Attempts wait until `until_ms`.
    Open {
        /// When the probe may go (ms since the epoch).
        until_ms: u64,
    },
    /// One probe is out since `since_ms`; the others wait for its outcome.
    HalfOpen {
        /// When the probe went.
        since_ms: u64,
    },
}

impl CircuitState {
    /// Its name, as the APIs and metrics show it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen { .. } => "half_open",
        }
    }
}

/// What a job of a host may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Make its attempt.
    Go,
    /// Make its attempt as the host's probe: its outcome closes or opens the host.
    Probe,
    /// Wait until then (ms since the epoch), making no attempt.
    WaitUntil(u64),
}

/// A change of a host's state, to log, count and (on NATS) share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The state before.
    pub from: CircuitState,
    /// The state now.
    pub to: CircuitState,
}

/// One host's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: CircuitState,
    in_a_row: u32,
    /// Outcomes within the window, by the tenth of a second they came in: a busy host's
    /// window is hundreds of thousands of outcomes, kept as at most `window` × 10 counts.
    recent: VecDeque<Tick>,
    /// The outcomes in `recent`, and how many of them failed.
    in_window: u64,
    failed_in_window: u64,
}

/// The outcomes of one tenth of a second.
#[derive(Debug, Clone, Copy)]
struct Tick {
    /// Its start (ms since the epoch, a multiple of [`TICK_MS`]).
    at_ms: u64,
    outcomes: u64,
    failed: u64,
}

/// The window's granularity: an outcome leaves it at most this much early.
const TICK_MS: u64 = 100;

impl Default for Breaker {
    fn default() -> Self {
        Self {
            state: CircuitState::Closed,
            in_a_row: 0,
            recent: VecDeque::new(),
            in_window: 0,
            failed_in_window: 0,
        }
    }
}

/// How long a probe may be out before another may go (its instance may have died with it).
fn probe_patience(config: &CircuitConfig) -> u64 {
    config.cool_down.as_millis() as u64
}

impl Breaker {
    /// The state.
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// Whether a job of the host may make its attempt at `now_ms`. Taking the probe changes
    /// the state (to half-open): the caller makes the attempt and records its outcome.
    pub fn check(&mut self, now_ms: u64, config: &CircuitConfig) -> (Check, Option<Change>) {
        if !config.enabled {
            return (Check::Go, None);
        }
        match self.state {
            CircuitState::Closed => (Check::Go, None),
            CircuitState::Open { until_ms } if now_ms < until_ms => {
                (Check::WaitUntil(until_ms), None)
            }
            CircuitState::HalfOpen { since_ms } if now_ms < since_ms + probe_patience(config) => {
                (Check::WaitUntil(since_ms + probe_patience(config)), None)
            }
            from => {
                self.state = CircuitState::HalfOpen { since_ms: now_ms };
                (
                    Check::Probe,
                    Some(Change {
                        from,
                        to: self.state,
                    }),
                )
            }
        }
    }

    /// Records an attempt's outcome at `now_ms` (`probe`: it was the host's probe).
    pub fn record(
        &mut self,
        failed: bool,
        probe: bool,
        now_ms: u64,
        config: &CircuitConfig,
    ) -> Option<Change> {
        if !config.enabled {
            return None;
        }
        let from = self.state;
        if probe || matches!(from, CircuitState::HalfOpen { .. }) {
            // The probe decides; an attempt that went before the host opened says nothing new.
            if !probe {
                return None;
            }
            self.forget();
            self.state = if failed {
                CircuitState::Open {
                    until_ms: now_ms + config.cool_down.as_millis() as u64,
                }
            } else {
                CircuitState::Closed
            };
            return Some(Change {
                from,
                to: self.state,
            });
        }
        if matches!(from, CircuitState::Open { .. }) {
            return None;
        }
        let window = config.window.as_millis() as u64;
        // A tick leaves once all of it is older than the window.
        while let Some(tick) = self.recent.front() {
            if tick.at_ms + TICK_MS + window > now_ms {
                break;
            }
            self.in_window -= tick.outcomes;
            self.failed_in_window -= tick.failed;
            self.recent.pop_front();
        }
        let at_ms = now_ms - now_ms % TICK_MS;
        match self.recent.back_mut() {
            Some(tick) if tick.at_ms >= at_ms => {
                tick.outcomes += 1;
                tick.failed += u64::from(failed);
            }
            _ => self.recent.push_back(Tick {
                at_ms,
                outcomes: 1,
                failed: u64::from(failed),
            }),
        }
        self.in_window += 1;
        self.failed_in_window += u64::from(failed);
        self.in_a_row = if failed { self.in_a_row + 1 } else { 0 };
        let ratio_trips = self.in_window >= u64::from(config.min_requests)
            && self.failed_in_window as f64 >= config.failure_ratio * self.in_window as f64;
        if failed && (self.in_a_row >= config.failures || ratio_trips) {
            self.state = CircuitState::Open {
                until_ms: now_ms + config.cool_down.as_millis() as u64,
            };
            self.forget();
            return Some(Change {
                from,
                to: self.state,
            });
        }
        None
    }

    /// Takes a state another instance decided (NATS): the counts start again.
    pub fn take(&mut self, state: CircuitState) {
        if state != self.state {
            self.state = state;
            self.forget();
        }
    }

    /// The counts start again.
    fn forget(&mut self) {
        self.recent.clear();
        self.in_window = 0;
        self.failed_in_window = 0;
        self.in_a_row = 0;
    }
}

/// Whether an attempt that got `status` (`None`: no answer) counts as the host failing.
pub fn host_failed(status: Option<u16>) -> bool {
    match status {
        None => true,
        Some(s) => s >= 500 || s == 429,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CircuitConfig {
        CircuitConfig {
            failures: 3,
            min_requests: 10,
            cool_down: Duration::from_secs(5),
            ..CircuitConfig::default()
        }
    }

    #[test]
    fn failures_in_a_row_open_the_host_and_a_probe_closes_it() {
        let c = config();
        let mut b = Breaker::default();
        assert_eq!(b.record(true, false, 1_000, &c), None);
        assert_eq!(b.record(true, false, 1_001, &c), None);
        let opened = b.record(true, false, 1_002, &c).expect("opened");
        assert_eq!(opened.to, CircuitState::Open { until_ms: 6_002 });
        assert_eq!(b.check(3_000, &c).0, Check::WaitUntil(6_002));
        let (check, change) = b.check(6_002, &c);
        assert_eq!(check, Check::Probe);
        assert_eq!(change.expect("half-open").to.name(), "half_open");
        // While the probe is out, the others wait for it.
        assert!(matches!(b.check(6_100, &c).0, Check::WaitUntil(_)));
        let closed = b.record(false, true, 6_200, &c).expect("closed");
        assert_eq!(closed.to, CircuitState::Closed);
        assert_eq!(b.check(6_201, &c).0, Check::Go);
    }

    #[test]
    fn a_failed_probe_opens_again_and_a_lost_probe_lets_another_go() {
        let c = config();
        let mut b = Breaker::default();
        for t in 0..3 {
            b.record(true, false, t, &c);
        }
        assert_eq!(b.check(5_002, &c).0, Check::Probe);
        let reopened = b.record(true, true, 5_100, &c).expect("reopened");
        assert_eq!(reopened.to, CircuitState::Open { until_ms: 10_100 });
        assert_eq!(b.check(10_100, &c).0, Check::Probe);
        // That probe's instance died: after the patience another probe goes.
        assert!(matches!(b.check(12_000, &c).0, Check::WaitUntil(15_100)));
        assert_eq!(b.check(15_100, &c).0, Check::Probe);
    }

    #[test]
    fn a_failure_ratio_over_the_window_opens_the_host() {
        let c = config();
        let mut b = Breaker::default();
        let mut opened = None;
        // Every other attempt fails: never three in a row, half of them over the window.
        for t in 0..20u64 {
            if let Some(change) = b.record(t % 2 == 0, false, t * 10, &c) {
                opened = Some((t, change));
                break;
            }
        }
        let (t, change) = opened.expect("opened by the ratio");
        assert!(t >= 9, "not before min_requests: {t}");
        assert!(matches!(change.to, CircuitState::Open { .. }));
        // Successes alone never open it; old failures leave the window.
        let mut b = Breaker::default();
        for t in 0..100u64 {
            assert_eq!(b.record(t % 5 == 0, false, t * 1_000, &c), None);
        }
    }

    #[test]
    fn what_counts_as_the_host_failing() {
        assert!(host_failed(None));
        assert!(host_failed(Some(503)));
        assert!(host_failed(Some(429)));
        assert!(!host_failed(Some(404)));
        assert!(!host_failed(Some(200)));
        let off = CircuitConfig {
            enabled: false,
            ..config()
        };
        let mut b = Breaker::default();
        for t in 0..10 {
            assert_eq!(b.record(true, false, t, &off), None);
        }
        assert_eq!(b.check(10, &off).0, Check::Go);
    }
}
