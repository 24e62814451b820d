//! Odoo webhook gateway.
//!
//! The modules follow the path an event travels:
//! [`ingest`] accepts it and hands it to the [`workplane`], which makes it durable (in the
//! [`store`] on sled, in JetStream on NATS) and answers; [`fanout`] plans its jobs against the
//! [`subscriptions`]; the work plane's job runner runs each due job, a [`plugin`] call (through
//! [`transform`]) or a delivery through [`delivery`], which signs it ([`signing`]) and POSTs
//! it. [`odoo`] is the gateway as a client of Odoo's external API: related records read into a
//! payload before a plugin sees it (in the plugin-call work), and a polling source that turns
//! changes into events for Odoo versions without webhooks (a stage of its own).
//! Around them: [`config`] (the file and its validated snapshot) and [`reload`], [`control`]
//! (apps, tokens, API subscriptions), [`auth`] and the app [`api`], [`server`] (HTTP, tower
//! stack, shutdown), [`admin`] (and its web [`console`]), [`telemetry`] and [`trace`],
//! [`state`] (the handles the stages share) and the [`cli`].

pub mod admin;
pub mod api;
pub mod apps;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod connector;
pub mod console;
pub mod control;
pub mod delivery;
pub mod event;
pub mod fanout;
pub mod guards;
pub mod health;
pub mod http_error;
pub mod inbound;
pub mod ingest;
pub mod odoo;
pub mod plugin;
pub mod plugin_threads;
pub mod portal;
pub mod reload;
pub mod reloader;
pub mod samples;
pub mod server;
pub mod signing;
pub mod state;
pub mod store;
pub mod subscriptions;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod trace;
pub mod transform;
pub mod workplane;
pub mod xmljson;

#[cfg(test)]
mod layers;

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::plugin::PluginHost;
use crate::reload::ConfigSource;
use crate::state::State;
use crate::store::Store;

/// Builds everything the configuration describes and runs the gateway on `listener` until
/// `shutdown`, reloading the configuration when it changes.
///
/// While it starts (opening the store, compiling plugins, rebuilding the schedule), the
/// port already answers: `503 starting` (with `Retry-After`) to everything but `/healthz`,
/// so a request arriving then gets an answer at once instead of waiting on a silent socket.
///
/// sled stops taking writes for good after an I/O error (a full disk included): then the
/// gateway stops its stages, closes the database and starts again in this process, on the
/// same socket, as after a restart (the schedule rebuilt from what is on disk; an attempt
/// whose outcome was not stored is made again). It never needs an operator for that.
pub async fn run(
    source: ConfigSource,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut reopening = false;
    loop {
        match run_once(source.clone(), &listener, &shutdown, reopening).await? {
            Ended::Stopped => return Ok(()),
            Ended::Reopen => {
                tracing::warn!("the database is closed and opened again in this process");
                reopening = true;
            }
        }
    }
}

/// How one run of the gateway ended.
enum Ended {
    /// Shut down.
    Stopped,
    /// The database stopped taking writes: run again.
    Reopen,
}

async fn run_once(
    source: ConfigSource,
    listener: &TcpListener,
    shutdown: &CancellationToken,
    reopening: bool,
) -> anyhow::Result<Ended> {
    let plain_http = source.read()?.0.server.tls.is_none();
    let cancelled = shutdown.clone();
    let starting = tokio::task::spawn_blocking(move || start(source, &cancelled, reopening));
    let (state, tls) = tokio::select! {
        started = starting => started.context("start-up panicked")??,
        () = server::answer_starting(listener), if plain_http => unreachable!("answers until dropped"),
        () = shutdown.cancelled() => return Ok(Ended::Stopped),
    };
    state
        .metrics
        .configured(&state.snapshot.load().plugin_labels());
    // Spans leave the process only when `[telemetry.otlp]` says where to (read at start).
    let otlp = match &state.snapshot.load().telemetry.otlp {
        Some(config) => Some(telemetry::otlp::Pipeline::start(
            config,
            state.metrics.otlp.clone(),
        )?),
        None => None,
    };
    tracing::info!(addr = %listener.local_addr()?, config = %state.snapshot.load().origin, "gateway listening");

    let stages = CancellationToken::new();
    let restarted = |state: &Arc<State>| {
        let state = state.clone();
        move || {
            state
                .stage_restarts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    };
    // The work plane's own stages: fan-out and dispatch on sled, JetStream's pull loops on
    // NATS.
    let handles = state.work_handles();
    let work_stages: Vec<_> = state
        .work
        .stages()
        .into_iter()
        .map(|(name, stage)| {
            let run = move |handles, stop| stage(handles, stop);
            supervise(name, handles.clone(), &stages, restarted(&state), run)
        })
        .collect();
    let polling = Arc::new(connector::Handles {
        snapshot: state.snapshot.clone(),
        work: state.work.clone(),
        store: state.store.clone(),
        control: state.control.clone(),
    });
    let poller = supervise(
        "odoo-poll",
        polling,
        &stages,
        restarted(&state),
        connector::poll::run,
    );
    let catalog = supervise(
        "event-catalog",
        (state.catalog.clone(), state.control.clone()),
        &stages,
        restarted(&state),
        |(catalog, control), stop| catalog::seen::run(catalog, control, stop),
    );
    let watcher = tokio::spawn(reload::watch(state.clone(), stages.clone()));
    let sighup = tokio::spawn(reload::on_sighup(state.clone(), stages.clone()));
    let shared = tokio::spawn(reload::follow_control_plane(state.clone(), stages.clone()));
    let charts = {
        let (state, stop) = (state.clone(), stages.clone());
        tokio::spawn(async move {
            let interval = state.snapshot.load().telemetry.chart_interval;
            telemetry::history::sample(
                &state.metrics.history,
                interval,
                || state.work.queued(),
                stop,
            )
            .await;
        })
    };
    let policy_state = state.clone();
    let metrics_state = state.clone();
    let maintenance = tokio::spawn(state.store.clone().run_maintenance(
        move || {
            let storage = &policy_state.snapshot.load().storage;
            store::Policy {
                retention: storage.retention(),
                interval: storage.maintenance_interval,
                room: storage.room(),
            }
        },
        move |report| metrics_state.metrics.maintained(report),
        stages.clone(),
    ));
    // Serving ends on shutdown, or when the database must be reopened.
    let serving = shutdown.child_token();
    let reopen = tokio::spawn(watch_store(state.store.clone(), serving.clone()));
    state
        .stages_running
        .store(true, std::sync::atomic::Ordering::Release);
    let served = server::serve(state.clone(), listener, tls, serving.clone()).await;
    state
        .stages_running
        .store(false, std::sync::atomic::Ordering::Release);
    serving.cancel();
    let reopening = reopen.await.unwrap_or(false) && !shutdown.is_cancelled();

    // Accepting has stopped and requests have drained: stop taking new work, give deliveries
    // in flight the grace period, then flush. Jobs still running stay queued on disk and run
    // again at the next start.
    stages.cancel();
    // Every task holding the state ends before this returns, so the database is closed (and
    // its lock released) when `run` returns: a restart in the same folder can open it at once.
    for stage in work_stages {
        let _ = stage.await;
    }
    let _ = tokio::join!(
        poller,
        catalog,
        maintenance,
        watcher,
        sighup,
        shared,
        charts
    );
    state.in_flight.close();
    let mut grace = state.snapshot.load().server.shutdown_grace;
    if reopening {
        // Their outcomes cannot be stored: they are sent again after the reopen anyway.
        grace = grace.min(REOPEN_GRACE);
    }
    if tokio::time::timeout(grace, state.in_flight.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "deliveries still in flight after the grace period; they are retried after restart"
        );
    }
    state.control.flush().await;
    if let Err(e) = state.store.close() {
        // Everything acknowledged was flushed before it was acknowledged; what this flush
        // would have added is deliveries' outcomes, and those deliveries are made again.
        tracing::warn!(
            error = %e,
            "the database could not be flushed at the end; nothing acknowledged is lost, \
             deliveries whose outcome was not stored are sent again"
        );
    }
    if let Some(otlp) = otlp {
        otlp.stop(grace).await;
    }
    served?;
    if reopening {
        return Ok(Ended::Reopen);
    }
    tracing::info!("gateway stopped");
    Ok(Ended::Stopped)
}

/// The longest wait for deliveries in flight before the database is reopened.
const REOPEN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Watches the store until `serving` ends: once its writes fail for good (see
/// [`Store::needs_reopen`]) it ends serving and returns true, so that [`run`] reopens it.
async fn watch_store(store: Store, serving: CancellationToken) -> bool {
    loop {
        if store.needs_reopen() {
            tracing::error!(
                error = %store.unavailable().unwrap_or_default(),
                "the database takes no more writes; it is reopened"
            );
            // What must still be written after the reopen (outcomes, pruning) needs room.
            store.write_failed(&store::StoreError::Unavailable("flush failed".into()));
            serving.cancel();
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            () = serving.cancelled() => return false,
        }
    }
}

/// Opens the database, waiting while it cannot be: on a disk with no room for sled to open
/// (after its reserve file is released), and, when `reopening`, while this process's previous
/// handle still holds it. Gives up only on `shutdown` or another error.
fn open_store(
    path: &std::path::Path,
    room: store::Room,
    shutdown: &CancellationToken,
    reopening: bool,
) -> anyhow::Result<Option<Store>> {
    let mut pause = std::time::Duration::from_millis(50);
    let mut said = false;
    loop {
        match Store::open_with(path, room) {
            Ok(store) => return Ok(Some(store)),
            Err(e) if e.is_out_of_space() || (reopening && e.is_locked()) => {
                if !said {
                    tracing::error!(error = %e, folder = %path.display(), "cannot open the database yet; trying again until it opens");
                    said = true;
                }
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open the database in {}", path.display()));
            }
        }
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_secs(2));
    }
}

/// Everything the gateway needs before it can serve: the store, the plugins, the snapshot,
/// the schedule rebuilt from the queued jobs. Blocking (plugin compilation, disk).
fn start(
    source: ConfigSource,
    shutdown: &CancellationToken,
    reopening: bool,
) -> anyhow::Result<(Arc<State>, Option<tokio_rustls::TlsAcceptor>)> {
    let parsed = source.read()?;
    let (file, base, _origin) = parsed.clone();
    let (plugin_slots, plugin_slots_per_subscription) = file.plugins.slots();
    // Every plugin slot needs a pooled instance, with room to spare for configuration checks
    // during reloads and for replays made through the API.
    let mut limits = file.plugins.limits.clone();
    limits.max_instances = limits
        .max_instances
        .max(u32::try_from(plugin_slots + 8).unwrap_or(u32::MAX));
    let host = PluginHost::new(limits, Some(file.plugin_cache_dir(&base)))
        .context("cannot start the plugin host")?;
    let storage = file.storage_dir(&base);
    let Some(store) = open_store(&storage, file.storage.room(), shutdown, reopening)? else {
        anyhow::bail!("shut down before the database could be opened");
    };
    // The control plane before the snapshot: API subscriptions and apps join it, and with
    // NATS the plugins uploaded on other instances are fetched first.
    let (control, generation, fetched) = tokio::runtime::Handle::current()
        .block_on(async {
            let control = control::ControlPlane::open(&file.storage, &store).await?;
            // Read before the fetch and the build: the snapshot holds at least the shared
            // changes counted so far.
            let generation = control.change_generation();
            let fetched = control.fetch_plugin_files(&storage).await;
            if let Err(e) = &fetched {
                tracing::warn!(error = %e, "cannot fetch every shared plugin; the subscriptions using those wait until a later build finds them");
            }
            Ok::<_, store::StoreError>((control, generation, fetched.is_ok()))
        })
        .context("cannot open the control plane")?;
    let work = tokio::runtime::Handle::current()
        .block_on(workplane::WorkPlane::open(
            &file.storage,
            &control,
            &store,
            plugin_slots_per_subscription,
        ))
        .context("cannot open the work plane")?;
    let snapshot = source.build_parsed(parsed.clone(), &control, &host, None)?;
    // A build without a plugin another instance uploaded may lack its subscription: it does
    // not count as holding the shared changes (fan-out waits for one that does).
    if fetched {
        control.snapshot_built(generation);
    }
    work.configured(&snapshot);
    store.set_commit_delay(snapshot.storage.commit_delay);
    let health =
        crate::health::Health::load(&control, &store).context("cannot read subscription health")?;
    let auth = auth::AuthState::open(&store, control.is_shared())
        .context("cannot read the OAuth1 nonces")?;
    let policies = tokio::runtime::Handle::current()
        .block_on(work.policies())
        .context("cannot open the delivery policies' state")?;
    let metrics = telemetry::Metrics::new();
    let changes = metrics.circuit_changes.clone();
    policies.on_change(Box::new(move |_, to| {
        changes
            .get_or_create(&telemetry::Outcome {
                outcome: to.name().into(),
            })
            .inc();
    }));
    let outbound =
        crate::delivery::Outbound::new(&snapshot.delivery.client, snapshot.delivery.slots())
            .context("cannot build the delivery clients")?;
    let tls = file
        .server
        .tls
        .as_ref()
        .map(|t| tls::acceptor(t, &base))
        .transpose()?;
    let state = Arc::new(State {
        store,
        control,
        work,
        outbound: Arc::new(outbound),
        in_flight: Default::default(),
        health: Arc::new(health),
        stage_restarts: Default::default(),
        stages_running: Default::default(),
        reloader: reload::Reloader::new(source, parsed, &snapshot),
        auth,
        catalog: Default::default(),
        metrics: Arc::new(metrics),
        policies,
        plugins: Arc::new(
            workplane::runner::calls::Plugins::new(
                host,
                plugin_slots,
                plugin_slots_per_subscription,
            )
            .context("cannot start the plugin threads")?,
        ),
        snapshot: Arc::new(arc_swap::ArcSwap::from_pointee(snapshot)),
    });
    reload::prune_plugin_cache(&state);
    Ok((state, tls))
}

/// Runs a stage as a task and restarts it if it panics (after logging the panic and calling
/// `on_restart`), so that a bug in one event's handling can never leave a gateway that answers
/// `202` and delivers nothing. A stage that returns (on shutdown) is not restarted.
fn supervise<S, F, Fut>(
    name: &'static str,
    context: S,
    stages: &CancellationToken,
    on_restart: impl Fn() + Send + 'static,
    stage: F,
) -> tokio::task::JoinHandle<()>
where
    S: Clone + Send + 'static,
    F: Fn(S, CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let stages = stages.clone();
    tokio::spawn(async move {
        let mut restarts = 0u32;
        loop {
            let run = tokio::spawn(stage(context.clone(), stages.clone()));
            match run.await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    restarts += 1;
                    tracing::error!(stage = name, restarts, "stage panicked; restarting it");
                    on_restart();
                    // A panic on the same input again must not spin the CPU.
                    let pause = std::time::Duration::from_millis(20 * u64::from(restarts.min(50)));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stages.cancelled() => return,
                    }
                }
                Err(_) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_panicking_stage_is_restarted_and_a_returning_one_is_not() {
        let runs = Arc::new(AtomicU32::new(0));
        let restarts = Arc::new(AtomicU32::new(0));
        let counted = restarts.clone();
        let stages = CancellationToken::new();
        let handle = supervise(
            "test",
            runs.clone(),
            &stages,
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
            },
            |runs: Arc<AtomicU32>, _stages| async move {
                // Panics on its first two runs, then returns as on shutdown.
                if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("a bug in one event's handling");
                }
            },
        );
        handle.await.expect("the supervisor itself does not panic");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(restarts.load(Ordering::SeqCst), 2);
    }
}
