//! Odoo webhook gateway.
//!
//! The modules follow the path an event travels:
//! [`ingest`] accepts it and makes it durable in the [`store`],
//! [`fanout`] matches it against [`subscriptions`] and runs each one's [`plugin`],
//! [`dispatch`] takes the queued jobs and hands them to [`delivery`], which signs them
//! ([`signing`]) and POSTs them.
//! Around them: [`config`] (the file and its validated snapshot), [`server`] (HTTP, tower
//! stack, shutdown), [`admin`], [`state`] (what the stages share) and the [`cli`].

pub mod admin;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod dispatch;
pub mod event;
pub mod fanout;
pub mod http_error;
pub mod ingest;
pub mod plugin;
pub mod reload;
pub mod server;
pub mod signing;
pub mod state;
pub mod store;
pub mod subscriptions;
pub mod tls;
pub mod xmljson;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::delivery::{ConcurrencyLimits, DeliveryClient};
use crate::plugin::PluginHost;
use crate::reload::ConfigSource;
use crate::state::State;
use crate::store::Store;

/// Builds everything the configuration describes and runs the gateway on `listener` until
/// `shutdown`, reloading the configuration when it changes.
pub async fn run(
    source: ConfigSource,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (file, base, origin) = source.read()?;
    let file_tls = file.server.tls.clone();
    let (base, origin) = (base.as_path(), origin.as_str());
    let host = PluginHost::new(
        file.plugins.limits.clone(),
        Some(file.plugin_cache_dir(base)),
    )
    .context("cannot start the plugin host")?;
    let storage = file.storage_dir(base);
    let store = Store::open(&storage)
        .with_context(|| format!("cannot open the database in {}", storage.display()))?;
    let snapshot = source.build(&store, &host, None)?;
    let recovered = store
        .recover_leases(state::now_ms())
        .context("cannot recover leases")?;
    if recovered > 0 {
        tracing::info!(
            recovered,
            "deliveries in flight at the last stop are due again"
        );
    }
    let d = &snapshot.delivery;
    let client =
        DeliveryClient::new(d.client.clone()).context("cannot build the delivery client")?;
    let state = Arc::new(State {
        store,
        client,
        limits: ConcurrencyLimits::new(d.concurrency, d.per_destination_concurrency),
        plugin_slots: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
        ),
        fanout_wake: Default::default(),
        dispatch_wake: Default::default(),
        in_flight: Default::default(),
        health: Default::default(),
        delivered: Default::default(),
        reloader: reload::Reloader::new(source),
        auth: Default::default(),
        host,
        snapshot: arc_swap::ArcSwap::from_pointee(snapshot),
    });
    tracing::info!(addr = %listener.local_addr()?, config = origin, "gateway listening");

    let stages = CancellationToken::new();
    let fanout = tokio::spawn(fanout::run(state.clone(), stages.clone()));
    let dispatch = tokio::spawn(dispatch::run(state.clone(), stages.clone()));
    tokio::spawn(reload::watch(state.clone(), stages.clone()));
    tokio::spawn(reload::on_sighup(state.clone(), stages.clone()));
    let tls = file_tls
        .as_ref()
        .map(|t| tls::acceptor(t, base))
        .transpose()?;
    let served = server::serve(state.clone(), listener, tls, shutdown).await;

    // Accepting has stopped and requests have drained: stop taking new work, give deliveries
    // in flight the grace period, then flush. Unfinished leases expire and are retried.
    stages.cancel();
    let _ = tokio::join!(fanout, dispatch);
    state.in_flight.close();
    let grace = state.snapshot.load().server.shutdown_grace;
    if tokio::time::timeout(grace, state.in_flight.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "deliveries still in flight after the grace period; they are retried after restart"
        );
    }
    state.store.flush().context("cannot flush the database")?;
    tracing::info!("gateway stopped");
    served
}
