//! The one way a plugin is called, whoever calls it (a queued plugin-call job on either
//! engine, a replay through the app API, the operator's dry-run): the subscription's
//! `enrich` list read from Odoo first, then the plugin on the low-priority plugin threads
//! (a plugin that burns its whole CPU allowance yields the CPU to ingest and delivery), its
//! log lines under the event's trace. Counting the call and deciding what becomes of it are
//! the caller's; holding the subscription's plugin slot too. [`Plugins`] is the handle it runs
//! on: the host, the plugin slots and the threads.

use std::sync::Arc;

use crate::delivery::{ConcurrencyLimits, Permit};
use crate::plugin::PluginHost;
use crate::plugin_threads::{PLUGIN_NICE, PluginThreads};

use crate::config::{Snapshot, Subscription};
use crate::event::Event;
use crate::store::CallFailure;
use crate::time::now_ms;
use crate::transform::{self, Outcome};

/// The plugins' handle: the host that loads and runs them, the plugin slots (overall, and per
/// subscription), and the low-priority threads calls run on.
#[derive(Debug)]
pub struct Plugins {
    host: PluginHost,
    slots: ConcurrencyLimits,
    per_subscription: usize,
    threads: PluginThreads,
}

impl Plugins {
    /// `slots` plugin calls at once, at most `per_subscription` of one subscription's, on as
    /// many threads, with `host`.
    pub fn new(host: PluginHost, slots: usize, per_subscription: usize) -> std::io::Result<Self> {
        Ok(Self {
            host,
            slots: ConcurrencyLimits::new(slots, per_subscription),
            per_subscription: per_subscription.clamp(1, slots.max(1)),
            threads: PluginThreads::new(slots, PLUGIN_NICE)?,
        })
    }

    /// How many of one subscription's calls may run at once.
    pub fn per_subscription(&self) -> usize {
        self.per_subscription
    }

    /// The host.
    pub fn host(&self) -> &PluginHost {
        &self.host
    }

    /// One of `subscription`'s plugin slots, if one is free now.
    pub(crate) fn try_slot(&self, subscription: &str) -> Option<Permit> {
        self.slots.try_acquire(subscription)
    }

    /// One of `subscription`'s plugin slots, once one is free.
    pub(crate) async fn slot(&self, subscription: &str) -> Permit {
        self.slots.acquire(subscription).await
    }

    /// Runs `f` on the low-priority plugin threads: a plugin call that is nobody's queued
    /// work (an app's dry-run of its own plugin), without enrichment.
    pub(crate) async fn run_low<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, crate::plugin_threads::Lost> {
        self.threads.run(f).await
    }
}

/// One plugin call's outcome and timing.
#[derive(Debug)]
pub(crate) struct Called {
    /// What the plugin (or its enrichment) came to.
    pub outcome: Outcome,
    /// When the call began (ms since the epoch).
    pub started_ms: u64,
    /// How long it took.
    pub latency_ms: u64,
}

/// Calls `sub`'s plugin for each of `events`, in order, one outcome each.
pub(crate) async fn call(
    plugins: &Plugins,
    snapshot: &Snapshot,
    sub: &Arc<Subscription>,
    events: Vec<Arc<Event>>,
) -> Vec<Called> {
    let count = events.len();
    let inputs = crate::transform::enrich::prepare(snapshot, sub, events).await;
    let runner = sub.clone();
    let ran = plugins
        .threads
        .run(move || {
            inputs
                .into_iter()
                .map(|input| {
                    let started_ms = now_ms();
                    let outcome = match input {
                        Ok(event) => {
                            // The plugin's own log lines carry the event's trace.
                            let _span = crate::trace::event_span(&event).entered();
                            transform::call_plugin(&runner, &event)
                        }
                        Err(instead) => instead,
                    };
                    Called {
                        outcome,
                        started_ms,
                        latency_ms: now_ms().saturating_sub(started_ms),
                    }
                })
                .collect::<Vec<_>>()
        })
        .await;
    match ran {
        Ok(called) => called,
        Err(lost) => {
            let reason = CallFailure::Task(lost.to_string());
            let now = now_ms();
            (0..count)
                .map(|_| Called {
                    outcome: Outcome::RetryLater(reason.clone()),
                    started_ms: now,
                    latency_ms: 0,
                })
                .collect()
        }
    }
}

/// Calls `sub`'s plugin for one event, holding one of the subscription's plugin slots as a
/// queued call would (a replay, a dry-run).
pub(crate) async fn call_one(
    plugins: &Plugins,
    snapshot: &Snapshot,
    sub: &Arc<Subscription>,
    event: Arc<Event>,
) -> Called {
    let _slot = plugins.slot(&sub.id).await;
    let mut called = call(plugins, snapshot, sub, vec![event]).await;
    called.pop().unwrap_or_else(|| Called {
        outcome: Outcome::RetryLater(CallFailure::Task("no plugin input".into())),
        started_ms: now_ms(),
        latency_ms: 0,
    })
}
