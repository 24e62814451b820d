//! The delivery stage's handle: the clients that send deliveries (the operator's, and the
//! apps' under their own address policy) and the slots deliveries take, overall, per receiver
//! host and per app. A reload that changes their settings rebuilds them; deliveries in flight
//! finish with the client and slots they started with.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use super::{ClientBuildError, ClientOptions, ConcurrencyLimits, DeliveryClient};

/// How many deliveries may run at once: overall, per receiver host, per app
/// (`[delivery] concurrency`, `per_destination_concurrency`, `per_app_concurrency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    /// Overall.
    pub concurrency: usize,
    /// Per receiver host.
    pub per_destination: usize,
    /// Per app.
    pub per_app: usize,
}

/// The delivery slots of one configuration.
#[derive(Debug)]
pub struct DeliveryLimits {
    /// Overall and per receiver host.
    pub hosts: ConcurrencyLimits,
    /// Per app.
    pub apps: ConcurrencyLimits,
    /// The settings they were built from.
    from: Slots,
}

impl DeliveryLimits {
    /// The slots `slots` describes.
    pub fn new(slots: Slots) -> Self {
        Self {
            hosts: ConcurrencyLimits::new(slots.concurrency, slots.per_destination),
            apps: ConcurrencyLimits::new(slots.concurrency, slots.per_app),
            from: slots,
        }
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
    /// The clients `client` describes, and the slots `slots` does.
    pub fn new(client: &ClientOptions, slots: Slots) -> Result<Self, ClientBuildError> {
        Ok(Self {
            client: ArcSwap::from_pointee(DeliveryClient::new(client.clone())?),
            app_client: ArcSwap::from_pointee(DeliveryClient::new(client.for_apps())?),
            limits: ArcSwap::from_pointee(DeliveryLimits::new(slots)),
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

    /// Follows new settings where they differ from those in force: new clients when `client`
    /// differs from `current` (the client settings in force), new slots when `slots` differ.
    /// Nothing changes when a client cannot be built.
    pub fn reconfigure(
        &self,
        current: &ClientOptions,
        client: &ClientOptions,
        slots: Slots,
    ) -> Result<(), ClientBuildError> {
        if client != current {
            let operator = DeliveryClient::new(client.clone())?;
            let apps = DeliveryClient::new(client.for_apps())?;
            self.client.store(Arc::new(operator));
            self.app_client.store(Arc::new(apps));
        }
        if slots != self.limits.load().from {
            self.limits.store(Arc::new(DeliveryLimits::new(slots)));
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
