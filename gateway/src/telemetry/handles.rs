//! Metric handles kept per subscription, so that counting a delivery, a retry or a plugin
//! call allocates nothing once its labels have been seen: a label set is built (two or
//! three `String`s) the first time only, then its handle is found by `&str`.
//!
//! The handles also say which series exist, so a reload can remove those of the
//! subscriptions and plugins it took away ([`SubscriptionCounters::retain`],
//! [`PluginMetrics::retain`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::{PluginLabels, PluginLimit, PluginOutcome, SubscriptionOutcome};

/// Counter handles by outcome.
type ByOutcome = HashMap<Box<str>, Counter>;

/// The plugin families, to register: calls, their duration, limit hits.
pub(super) type PluginFamilies = (
    Family<PluginOutcome, Counter>,
    Family<PluginLabels, Histogram, fn() -> Histogram>,
    Family<PluginLimit, Counter>,
);

/// Counters by subscription and outcome.
#[derive(Debug, Default)]
pub struct SubscriptionCounters {
    family: Family<SubscriptionOutcome, Counter>,
    handles: RwLock<HashMap<Box<str>, ByOutcome>>,
    /// The subscriptions in force, once a configuration was seen: a count for any other is
    /// made under [`super::REMOVED`].
    live: RwLock<Option<HashSet<Box<str>>>>,
}

impl SubscriptionCounters {
    /// The family, to register.
    pub(super) fn family(&self) -> Family<SubscriptionOutcome, Counter> {
        self.family.clone()
    }

    /// Counts one `outcome` for `subscription`.
    pub fn inc(&self, subscription: &str, outcome: &str) {
        let known = read(&self.handles)
            .get(subscription)
            .and_then(|by_outcome| by_outcome.get(outcome))
            .cloned();
        let counter = known.unwrap_or_else(|| {
            let removed = read(&self.live)
                .as_ref()
                .is_some_and(|live| !live.contains(subscription));
            let subscription = if removed {
                super::REMOVED
            } else {
                subscription
            };
            let counter = self.family.get_or_create_owned(&SubscriptionOutcome {
                subscription: subscription.to_owned(),
                outcome: outcome.to_owned(),
            });
            write(&self.handles)
                .entry(subscription.into())
                .or_default()
                .insert(outcome.into(), counter.clone());
            counter
        });
        counter.inc();
    }

    /// Keeps the series of the subscriptions in `live` (and of [`super::REMOVED`]); removes
    /// every other.
    pub(super) fn retain(&self, live: &HashSet<Box<str>>) {
        *write(&self.live) = Some(live.clone());
        write(&self.handles).retain(|subscription, by_outcome| {
            let kept = live.contains(subscription) || &**subscription == super::REMOVED;
            if !kept {
                for outcome in by_outcome.keys() {
                    self.family.remove(&SubscriptionOutcome {
                        subscription: subscription.to_string(),
                        outcome: outcome.to_string(),
                    });
                }
            }
            kept
        });
    }
}

/// Plugin-call metrics: calls by outcome, their duration and limit hits, by subscription and
/// plugin.
#[derive(Debug)]
pub struct PluginMetrics {
    calls: Family<PluginOutcome, Counter>,
    seconds: Family<PluginLabels, Histogram, fn() -> Histogram>,
    limit_hits: Family<PluginLimit, Counter>,
    handles: RwLock<HashMap<Box<str>, Arc<PluginHandles>>>,
}

/// One subscription's handles, for the plugin it runs now.
#[derive(Debug)]
struct PluginHandles {
    plugin: Box<str>,
    seconds: Histogram,
    calls: RwLock<ByOutcome>,
    limit_hits: RwLock<HashMap<&'static str, Counter>>,
}

/// What a failure code says about the plugin limits: the limit it hit, if any.
fn limit_of(code: &str) -> Option<&'static str> {
    match code {
        "plugin_cpu_exceeded" => Some("cpu_time"),
        "plugin_memory_exceeded" => Some("memory"),
        "plugin_output_too_large" => Some("output"),
        _ => None,
    }
}

impl PluginMetrics {
    pub(super) fn new(buckets: fn() -> Histogram) -> Self {
        Self {
            calls: Family::default(),
            seconds: Family::new_with_constructor(buckets),
            limit_hits: Family::default(),
            handles: RwLock::default(),
        }
    }

    pub(super) fn families(&self) -> PluginFamilies {
        (
            self.calls.clone(),
            self.seconds.clone(),
            self.limit_hits.clone(),
        )
    }

    fn handles(&self, subscription: &str, plugin: &str) -> Arc<PluginHandles> {
        if let Some(h) = read(&self.handles)
            .get(subscription)
            .filter(|h| &*h.plugin == plugin)
        {
            return h.clone();
        }
        let labels = PluginLabels {
            subscription: subscription.to_owned(),
            plugin: plugin.to_owned(),
        };
        let handles = Arc::new(PluginHandles {
            plugin: plugin.into(),
            seconds: self.seconds.get_or_create_owned(&labels),
            calls: RwLock::default(),
            limit_hits: RwLock::default(),
        });
        // A call that started before the reload that changed the subscription's plugin (the
        // reload removed the old plugin's series) replaces the handles.
        if let Some(old) = write(&self.handles).insert(subscription.into(), handles.clone()) {
            self.remove(subscription, &old);
        }
        handles
    }

    /// Removes the series of `handles`, `subscription`'s handles of one plugin.
    fn remove(&self, subscription: &str, handles: &PluginHandles) {
        let (subscription, plugin) = (subscription.to_owned(), handles.plugin.to_string());
        self.seconds.remove(&PluginLabels {
            subscription: subscription.clone(),
            plugin: plugin.clone(),
        });
        for outcome in read(&handles.calls).keys() {
            self.calls.remove(&PluginOutcome {
                subscription: subscription.clone(),
                plugin: plugin.clone(),
                outcome: outcome.to_string(),
            });
        }
        for limit in read(&handles.limit_hits).keys() {
            self.limit_hits.remove(&PluginLimit {
                subscription: subscription.clone(),
                plugin: plugin.clone(),
                limit: (*limit).to_owned(),
            });
        }
    }

    /// Keeps the series of each subscription whose plugin `running` says it still runs
    /// (`Some(short hash)`, `"none"` without one); removes those of removed subscriptions
    /// and of plugins they no longer run.
    pub(super) fn retain(&self, running: impl Fn(&str) -> Option<String>) {
        write(&self.handles).retain(|subscription, handles| {
            let kept = running(subscription).is_some_and(|plugin| *plugin == *handles.plugin);
            if !kept {
                self.remove(subscription, handles);
            }
            kept
        });
    }

    /// Counts one call of `plugin` for `subscription`: its outcome (`ok`, `retry`, or the
    /// failure's code), its duration, and the limit it hit (`code` is the failure's code,
    /// also for a call retried after a CPU-time overrun).
    pub fn call(
        &self,
        subscription: &str,
        plugin: &str,
        outcome: &str,
        code: Option<&str>,
        seconds: f64,
    ) {
        let h = self.handles(subscription, plugin);
        h.seconds.observe(seconds);
        let known = read(&h.calls).get(outcome).cloned();
        let counter = known.unwrap_or_else(|| {
            let counter = self.calls.get_or_create_owned(&PluginOutcome {
                subscription: subscription.to_owned(),
                plugin: plugin.to_owned(),
                outcome: outcome.to_owned(),
            });
            write(&h.calls).insert(outcome.into(), counter.clone());
            counter
        });
        counter.inc();
        let Some(limit) = code.and_then(limit_of) else {
            return;
        };
        let known = read(&h.limit_hits).get(limit).cloned();
        let counter = known.unwrap_or_else(|| {
            let counter = self.limit_hits.get_or_create_owned(&PluginLimit {
                subscription: subscription.to_owned(),
                plugin: plugin.to_owned(),
                limit: limit.to_owned(),
            });
            write(&h.limit_hits).insert(limit, counter.clone());
            counter
        });
        counter.inc();
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_handle_counts_into_the_family() {
        let counters = SubscriptionCounters::default();
        counters.inc("sub", "delivered");
        counters.inc("sub", "delivered");
        counters.inc("sub", "failed");
        let family = counters.family();
        let get = |outcome: &str| {
            family
                .get_or_create(&SubscriptionOutcome {
                    subscription: "sub".into(),
                    outcome: outcome.into(),
                })
                .get()
        };
        assert_eq!((get("delivered"), get("failed")), (2, 1));
    }

    #[test]
    fn plugin_calls_count_limit_hits_and_follow_a_new_plugin() {
        let plugins = PluginMetrics::new(|| Histogram::new([0.1, 1.0]));
        plugins.call("sub", "aaaa", "ok", None, 0.01);
        plugins.call("sub", "aaaa", "retry", Some("plugin_cpu_exceeded"), 0.2);
        let (calls, seconds, hits) = plugins.families();
        let labels = |plugin: &str, outcome: &str| PluginOutcome {
            subscription: "sub".into(),
            plugin: plugin.into(),
            outcome: outcome.into(),
        };
        let limit = |plugin: &str| PluginLimit {
            subscription: "sub".into(),
            plugin: plugin.into(),
            limit: "cpu_time".into(),
        };
        let count =
            |plugin: &str, outcome: &str| calls.get(&labels(plugin, outcome)).map(|c| c.get());
        assert_eq!(count("aaaa", "ok"), Some(1));
        assert_eq!(count("aaaa", "retry"), Some(1));
        assert_eq!(hits.get(&limit("aaaa")).map(|c| c.get()), Some(1));
        // The subscription runs another plugin now: it counts under the new hash, and the
        // old plugin's series go.
        plugins.call(
            "sub",
            "bbbb",
            "plugin_trapped",
            Some("plugin_trapped"),
            0.01,
        );
        assert_eq!(count("bbbb", "plugin_trapped"), Some(1));
        assert_eq!(count("aaaa", "ok"), None);
        assert!(hits.get(&limit("aaaa")).is_none());
        let old = PluginLabels {
            subscription: "sub".into(),
            plugin: "aaaa".into(),
        };
        assert!(seconds.get(&old).is_none());
    }

    #[test]
    fn a_reload_removes_the_series_of_what_it_took_away() {
        let counters = SubscriptionCounters::default();
        counters.inc("kept", "delivered");
        counters.inc("gone", "delivered");
        counters.inc("gone", "failed");
        let family = counters.family();
        let has = |subscription: &str, outcome: &str| {
            family
                .get(&SubscriptionOutcome {
                    subscription: subscription.into(),
                    outcome: outcome.into(),
                })
                .is_some()
        };
        counters.retain(&HashSet::from(["kept".into()]));
        assert!(has("kept", "delivered"));
        assert!(!has("gone", "delivered") && !has("gone", "failed"));
        // Counted after the reload (a queued job of the removed subscription dead-lettered):
        // one shared series, not the removed subscription's own again.
        counters.inc("gone", "subscription_removed");
        assert!(!has("gone", "subscription_removed"));
        assert!(has(crate::telemetry::REMOVED, "subscription_removed"));

        let plugins = PluginMetrics::new(|| Histogram::new([0.1, 1.0]));
        plugins.call("kept", "aaaa", "ok", None, 0.01);
        plugins.call("swapped", "bbbb", "ok", None, 0.01);
        plugins.call("gone", "cccc", "ok", None, 0.01);
        plugins.retain(|subscription| match subscription {
            "kept" => Some("aaaa".to_owned()),
            "swapped" => Some("dddd".to_owned()),
            _ => None,
        });
        let (calls, seconds, _) = plugins.families();
        let present = |subscription: &str, plugin: &str| {
            let call = PluginOutcome {
                subscription: subscription.into(),
                plugin: plugin.into(),
                outcome: "ok".into(),
            };
            let time = PluginLabels {
                subscription: subscription.into(),
                plugin: plugin.into(),
            };
            (calls.get(&call).is_some(), seconds.get(&time).is_some())
        };
        assert_eq!(present("kept", "aaaa"), (true, true));
        assert_eq!(present("swapped", "bbbb"), (false, false));
        assert_eq!(present("gone", "cccc"), (false, false));
    }
}
