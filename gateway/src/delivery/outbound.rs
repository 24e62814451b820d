//! The delivery stage's handle: the clients that send deliveries (the operator's, and the
//! apps' under their own address policy) and the slots deliveries take, overall, per receiver
//! host and per app. A reload that changes their settings rebuilds them; deliveries in flight
//! finish with the client and slots they started with.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use super::{ClientBuildError, ConcurrencyLimits, DeliveryClient};
use crate::config::DeliveryConfig;

/// The delivery slots of one configuration.
#[derive(Debug)]
pub struct DeliveryLimits {
    /// Overall and per receiver host.
    pub hosts: ConcurrencyLimits,
    /// Per app.
    pub apps: ConcurrencyLimits,
    /// The settings they were built from.
    from: (usize, usize, usize),
}

impl DeliveryLimits {
    /// The slots `config` describes.
    pub fn new(config: &DeliveryConfig) -> Self {
        Self {
            hosts: ConcurrencyLimits::new(config.concurrency, config.per_destination_concurrency),
            apps: ConcurrencyLimits::new(config.concurrency, config.per_app_concurrency),
            from: Self::key(config),
        }
    }

    /// What a change of which means new slots.
    fn key(config: &DeliveryConfig) -> (usize, usize, usize) {
        (
            config.concurrency,
            config.per_destination_concurrency,
            config.per_app_concurrency,
        )
    }
}

/// The clients and slots of the deliveries.
#[derive(Debug)]
pub struct Outbound {
    client: ArcSwap<DeliveryClient>,
    app_client: ArcSwap<DeliveryClient>,
    limits: ArcSwap<DeliveryLimits>,
    delivered: AtomicU64,
}

impl Outbound {
    /// The clients and slots `config` describes.
    pub fn new(config: &DeliveryConfig) -> Result<Self, ClientBuildError> {
        Ok(Self {
            client: ArcSwap::from_pointee(DeliveryClient::new(config.client.clone())?),
            app_client: ArcSwap::from_pointee(DeliveryClient::new(config.client.for_apps())?),
            limits: ArcSwap::from_pointee(DeliveryLimits::new(config)),
            delivered: AtomicU64::new(0),
        })
    }

    /// The client for a delivery of an app's subscription (`for_app`), or of the operator's.
    pub fn client(&self, for_app: bool) -> Arc<DeliveryClient> {
        if for_app {
            self.app_client.load_full()
        } else {
            self.client.load_full()
        }
    }

    /// The slots in force.
    pub fn limits(&self) -> Arc<DeliveryLimits> {
        self.limits.load_full()
    }

    /// Follows the settings of `new` where they differ from `current`: new clients, new slots.
    /// Nothing changes when a client cannot be built.
    pub fn reconfigure(
        &self,
        current: &DeliveryConfig,
        new: &DeliveryConfig,
    ) -> Result<(), ClientBuildError> {
        if new.client != current.client {
            let client = DeliveryClient::new(new.client.clone())?;
            let app_client = DeliveryClient::new(new.client.for_apps())?;
            self.client.store(Arc::new(client));
            self.app_client.store(Arc::new(app_client));
        }
        if DeliveryLimits::key(new) != self.limits.load().from {
            self.limits.store(Arc::new(DeliveryLimits::new(new)));
        }
        Ok(())
    }

    /// Counts a delivery made.
    pub(crate) fn delivered_one(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    /// Deliveries made since start.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}
