//! The HTTP server: routing, the tower stack around every request, the background stages,
//! and graceful shutdown.
//!
//! [`serve`] takes an already-bound listener, so tests bind `127.0.0.1:0` and run the real
//! server. Shutdown (the cancellation token) stops accepting, lets requests and deliveries in
//! flight finish within the grace period, releases what is left, and flushes storage.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::http_error::{ApiError, Body, json};
use crate::ingest::{self, Endpoint, IngestRequest};
use crate::state::State;

pub use crate::inbound::Connection;

/// Serves until `shutdown` is cancelled, then drains and returns; the listener stays open
/// (connections wait in its backlog until the caller serves it again or drops it).
/// With `tls`, every connection is HTTPS (the handshake runs in the connection's own task).
pub async fn serve(
    state: Arc<State>,
    listener: &TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (max_requests, grace) = {
        let s = state.snapshot.load();
        (s.server.max_concurrent_requests, s.server.shutdown_grace)
    };
    let handler_state = state.clone();
    let service = ServiceBuilder::new()
        // Bound the requests in progress across all connections: excess waits, memory stays flat.
        .concurrency_limit(max_requests)
        .service_fn(move |req: Request<Incoming>| {
            let state = handler_state.clone();
            async move {
                // Bound each request's total time, body read included: slow-loris bodies are
                // cut off with a clear 503 instead of a dropped connection. Read per request,
                // so a reload applies it.
                let timeout = state.snapshot.load().server.request_timeout;
                let answer = tokio::time::timeout(timeout, route(&state, req)).await;
                Ok::<_, Infallible>(answer.unwrap_or_else(|_| timeout_response()))
            }
        });

    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        // Every request knows its connection: the address it came from (the token endpoint's
        // failure limit) and whether it is HTTPS (the URL an OAuth1 client signed).
        let connection = Connection {
            peer,
            tls: tls.is_some(),
        };
        let service =
            tower::ServiceExt::map_request(service.clone(), move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(connection);
                req
            });
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(
                        TokioIo::new(stream),
                        TowerToHyperService::new(service),
                    );
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let conn = builder.serve_connection_with_upgrades(
                                TokioIo::new(stream),
                                TowerToHyperService::new(service),
                            );
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!("requests still open after the grace period"),
    }
    Ok(())
}

/// A client gets this long to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn timeout_response() -> Response<Body> {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        "the request took too long",
    )
    .into_response()
}

async fn route(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match segments.as_slice() {
        ["v1", "odoo", source, token] => {
            counted(state, source, req, Endpoint::Native, Some(token)).await
        }
        ["v1", "events", source, token] => {
            counted(state, source, req, Endpoint::Envelope, Some(token)).await
        }
        ["v1", "events", source] => counted(state, source, req, Endpoint::Envelope, None).await,
        ["metrics"] if req.method() == Method::GET => crate::admin::metrics(state, &req),
        ["v1", "whoami"] => crate::auth::whoami(state, req).await,
        ["oauth2", rest @ ..] => crate::auth::oauth2::route(state, req, rest).await,
        // Liveness: the process answers. Readiness: it can take events now.
        ["healthz"] => Ok(json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))),
        ["readyz"] => Ok(readiness(state)),
        // The API's description, as shipped with this build (checked against the router).
        ["openapi.json"] if req.method() == Method::GET => Ok(openapi()),
        ["admin", ..] => crate::admin::route(state, req, &segments[1..]).await,
        // The console's static shell: no data in it, so no token needed to fetch it.
        ["console", ..] if crate::admin::holds_metrics_token(state, &req) => {
            Err(crate::admin::metrics_token_refused())
        }
        ["console"] => crate::console::serve(req.method(), None),
        ["console", asset] => crate::console::serve(req.method(), Some(asset)),
        // The app portal: its shell, its session, and the app API for a session's app.
        ["portal", rest @ ..] => crate::portal::route(state, req, rest).await,
        [
            "v1",
            "subscriptions" | "plugins" | "deliveries" | "dead-letters" | "event-types"
            | "portal-sessions",
            ..,
        ] => crate::api::route(state, req, &segments[1..]).await,
        _ => Err(ApiError::not_found()),
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// Runs an ingest request and counts it: latency, and the outcome by source (a source that is
/// not configured is counted as `unknown`, so strangers cannot grow the label set); an
/// accepted event's acknowledgement time goes to the console's charts, and the request is
/// the event's ingest span when spans are exported.
async fn counted(
    state: &Arc<State>,
    source: &str,
    req: Request<Incoming>,
    endpoint: Endpoint,
    token: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let started = std::time::Instant::now();
    let span = crate::trace::ingest(req.headers());
    let result = ingest_route(state, req, endpoint, source, token).await;
    let metrics = &state.metrics;
    let seconds = started.elapsed().as_secs_f64();
    metrics.ingest_seconds.observe(seconds);
    let source = if state.snapshot.load().sources.contains_key(source) {
        source.to_owned()
    } else {
        "unknown".to_owned()
    };
    let ingested = result
        .as_ref()
        .ok()
        .and_then(|r| r.extensions().get::<ingest::Ingested>());
    let outcome = match (&result, ingested) {
        (Ok(_), Some(i)) if i.duplicate => "duplicate".to_owned(),
        (Ok(_), _) => "accepted".to_owned(),
        (Err(e), _) => e.code.to_string(),
    };
    if result.is_ok() {
        metrics.history.acknowledged(seconds);
    }
    span.end(
        &source,
        crate::trace::IngestAnswer {
            status: match &result {
                Ok(r) => r.status().as_u16(),
                Err(e) => e.status.as_u16(),
            },
            event: ingested
                .and_then(|i| i.event.as_ref())
                .map(|(id, _)| id.as_str()),
            event_type: ingested
                .and_then(|i| i.event.as_ref())
                .map(|(_, event_type)| event_type.as_str()),
            duplicate: ingested.is_some_and(|i| i.duplicate),
            outcome: &outcome,
        },
    );
    metrics
        .events
        .get_or_create(&crate::telemetry::SourceOutcome { source, outcome })
        .inc();
    result
}

/// The OpenAPI document of the app API, embedded at build time.
pub const OPENAPI: &str = include_str!("../../openapi.json");

fn openapi() -> Response<Body> {
    let mut response = Response::new(Body::from(OPENAPI));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

async fn ingest_route(
    state: &Arc<State>,
    req: Request<Incoming>,
    endpoint: Endpoint,
    source: &str,
    path_token: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let (parts, body) = req.into_parts();
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let token = path_token.or(bearer);
    let url_action = parts.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("event="))
            .map(|v| v.to_owned())
    });
    let limit = state.snapshot.load().server.max_body_bytes;
    ingest::authorise(&state.snapshot.load(), source, token)?;
    let body = crate::inbound::read_body(body, &parts.headers, limit).await?;
    let request = IngestRequest {
        endpoint,
        source,
        url_action,
        headers: &parts.headers,
    };
    let intake = ingest::Intake {
        snapshot: &state.snapshot,
        work: &state.work,
        seen: &state.catalog.seen,
        metrics: &state.metrics,
    };
    ingest::accept(intake, request, body).await
}

/// `/readyz`: 200 when the gateway can take events now (store writable, within its budget and
/// with room on disk, configuration loaded, stages running), else 503 with the reasons.
fn readiness(state: &State) -> Response<Body> {
    let reasons = state.not_ready();
    if reasons.is_empty() {
        json(
            StatusCode::OK,
            &serde_json::json!({ "status": "ready", "generation": state.reloader.status().generation }),
        )
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "not_ready", "reasons": reasons }),
        )
    }
}

/// Answers every connection on `listener` while the gateway starts: `/healthz` 200 (alive),
/// anything else `503 starting` with `Retry-After: 1`, each with `Connection: close` so the
/// client's next request reaches the real server. Runs until dropped.
pub async fn answer_starting(listener: &TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let mut response = if req.uri().path() == "/healthz" {
                    json(StatusCode::OK, &serde_json::json!({ "status": "starting" }))
                } else {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "starting",
                        "the gateway is starting; retry in a moment",
                    )
                    .with_header(header::RETRY_AFTER, "1")
                    .into_response()
                };
                response
                    .headers_mut()
                    .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                Ok::<_, Infallible>(response)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
