//! The receiving end used by `odoo-gateway inbox` and by integration tests.
//!
//! This module owns a small HTTP server that records every request it gets, checks its
//! Standard Webhooks signature, and answers as told: a status, after a delay, failing the
//! first N, or hanging until shutdown. The knobs can be turned while it runs, so a test can
//! make a receiver flap. It is a test and development tool, never part of the data path.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::signing::{self, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SigningSecret};

/// Largest request body the inbox accepts; larger ones get 413 (and are still recorded).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Called for every request received, after it is recorded (the CLI prints from here).
pub type OnReceive = Arc<dyn Fn(&Received) + Send + Sync>;

/// How the inbox starts; every knob but the secrets can be changed later on [`Inbox`].
#[derive(Clone)]
pub struct InboxOptions {
    /// Secrets to verify signatures with; empty means "do not check".
    pub secrets: Vec<SigningSecret>,
    /// Status of a normal answer.
    pub status: StatusCode,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Answer the first N requests with 500 whatever `status` says.
    pub fail_first: u32,
    /// Replay window for `webhook-timestamp`.
    pub tolerance: Duration,
    /// Hook run on each request.
    pub on_receive: Option<OnReceive>,
}

impl Default for InboxOptions {
    fn default() -> Self {
        Self {
            secrets: Vec::new(),
            status: StatusCode::OK,
            delay: Duration::ZERO,
            fail_first: 0,
            tolerance: signing::DEFAULT_TOLERANCE,
            on_receive: None,
        }
    }
}

impl fmt::Debug for InboxOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxOptions")
            .field("secrets", &self.secrets)
            .field("status", &self.status)
            .field("delay", &self.delay)
            .field("fail_first", &self.fail_first)
            .field("tolerance", &self.tolerance)
            .field("on_receive", &self.on_receive.is_some())
            .finish()
    }
}

/// The outcome of checking a request's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// A signature matched one of the secrets, within the replay window.
    Valid,
    /// The signature is missing, stale or wrong; the text says which.
    Invalid(String),
    /// The inbox has no secret.
    Unchecked,
}

/// One request as the inbox saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// All request headers.
    pub headers: HeaderMap,
    /// The body (empty when it was over [`MAX_BODY`]).
    pub body: Bytes,
    /// Signature check result.
    pub verification: Verification,
    /// The status the inbox answered (or will answer, for a hanging request: none).
    pub answered: Option<StatusCode>,
    /// When it arrived.
    pub received_at: SystemTime,
}

impl Received {
    /// Whether the signature verified.
    pub fn verified(&self) -> bool {
        self.verification == Verification::Valid
    }

    /// A header as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `webhook-id` header.
    pub fn webhook_id(&self) -> Option<&str> {
        self.header(HEADER_ID.as_str())
    }
}

/// Fewer requests than awaited arrived in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inbox got {got} of {wanted} requests within {within:?}")]
pub struct WaitTimeout {
    /// How many arrived.
    pub got: usize,
    /// How many were awaited.
    pub wanted: usize,
    /// How long we waited.
    pub within: Duration,
}

struct State {
    secrets: Vec<SigningSecret>,
    tolerance: Duration,
    on_receive: Option<OnReceive>,
    status: AtomicU16,
    delay_ms: AtomicU64,
    fail_first: AtomicU32,
    hang: AtomicBool,
    extra_headers: Mutex<HeaderMap>,
    received: Mutex<Vec<Received>>,
    count: watch::Sender<usize>,
}

/// A running inbox. Cloning gives another handle to the same server.
#[derive(Clone)]
pub struct Inbox {
    state: Arc<State>,
    addr: SocketAddr,
    stop: CancellationToken,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox").field("addr", &self.addr).finish()
    }
}

impl Inbox {
    /// Serves on an already-bound listener (bind `127.0.0.1:0` in tests).
    pub fn start(listener: TcpListener, options: InboxOptions) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            secrets: options.secrets,
            tolerance: options.tolerance,
            on_receive: options.on_receive,
            status: AtomicU16::new(options.status.as_u16()),
            delay_ms: AtomicU64::new(millis(options.delay)),
            fail_first: AtomicU32::new(options.fail_first),
            hang: AtomicBool::new(false),
            extra_headers: Mutex::new(HeaderMap::new()),
            received: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, state.clone(), stop.clone()));
        Ok(Self {
            state,
            addr,
            stop,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// Binds `127.0.0.1:0` and serves there.
    pub async fn start_local(options: InboxOptions) -> std::io::Result<Self> {
        Self::start(TcpListener::bind("127.0.0.1:0").await?, options)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`, ready for [`crate::delivery::DeliveryClient::post`].
    pub fn url(&self, path: &str) -> http::Uri {
        format!("http://{}{path}", self.addr)
            .parse()
            .expect("socket address and path form a URI")
    }

    /// Everything received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// Waits until at least `n` requests arrived, then returns them all.
    pub async fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Received>, WaitTimeout> {
        let mut count = self.state.count.subscribe();
        let reached = tokio::time::timeout(timeout, count.wait_for(|c| *c >= n))
            .await
            .is_ok_and(|r| r.is_ok());
        if reached {
            return Ok(self.received());
        }
        Err(WaitTimeout {
            got: *self.state.count.borrow(),
            wanted: n,
            within: timeout,
        })
    }

    /// Status of normal answers from now on.
    pub fn set_status(&self, status: StatusCode) {
        self.state.status.store(status.as_u16(), Ordering::SeqCst);
    }

    /// Delay before each answer from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.state.delay_ms.store(millis(delay), Ordering::SeqCst);
    }

    /// Answer the next `n` requests with 500.
    pub fn set_fail_first(&self, n: u32) {
        self.state.fail_first.store(n, Ordering::SeqCst);
    }

    /// Never answer new requests (until `set_hang(false)` for later ones, or shutdown).
    pub fn set_hang(&self, hang: bool) {
        self.state.hang.store(hang, Ordering::SeqCst);
    }

    /// Adds a header to every answer (e.g. `Retry-After`, or `Location` with a 3xx).
    pub fn set_response_header(&self, name: HeaderName, value: HeaderValue) {
        lock(&self.state.extra_headers).insert(name, value);
    }

    /// Removes every added answer header.
    pub fn clear_response_headers(&self) {
        lock(&self.state.extra_headers).clear();
    }

    /// Stops accepting, drops open connections (hanging requests end) and waits for the
    /// accept loop to finish.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "inbox accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(|req| handle(req, state.clone()));
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let (body, too_large) = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(_) => (Bytes::new(), true),
    };
    let verification = verify(&state, &parts.headers, &body);
    let hang = state.hang.load(Ordering::SeqCst);
    let status = if too_large {
        StatusCode::PAYLOAD_TOO_LARGE
    } else if take_one(&state.fail_first) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
    };
    let received = Received {
        method: parts.method,
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.to_string()),
        headers: parts.headers,
        body,
        verification,
        answered: (!hang).then_some(status),
        received_at: SystemTime::now(),
    };
    if let Some(hook) = &state.on_receive {
        hook(&received);
    }
    {
        let mut all = lock(&state.received);
        all.push(received);
        state.count.send_replace(all.len());
    }
    if hang {
        // Never answer: the connection task drops this future when the inbox shuts down, so
        // the client sees the connection close rather than a late answer.
        std::future::pending::<()>().await;
    }
    let delay = Duration::from_millis(state.delay_ms.load(Ordering::SeqCst));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Full::new(Bytes::from(format!("{status}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    for (name, value) in lock(&state.extra_headers).iter() {
        response.headers_mut().insert(name, value.clone());
    }
    Ok(response)
}

/// Decrements `counter` if it is above zero; true when it did.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn verify(state: &State, headers: &HeaderMap, body: &[u8]) -> Verification {
    if state.secrets.is_empty() {
        return Verification::Unchecked;
    }
    let get = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sig)) = (
        get(&HEADER_ID),
        get(&HEADER_TIMESTAMP),
        get(&HEADER_SIGNATURE),
    ) else {
        return Verification::Invalid("missing webhook-id/-timestamp/-signature header".into());
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    match signing::verify(&state.secrets, id, ts, sig, body, now, state.tolerance) {
        Ok(()) => Verification::Valid,
        Err(e) => Verification::Invalid(format!("{}: {e}", e.code())),
    }
}
