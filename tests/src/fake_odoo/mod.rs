//! A fake Odoo for the end-to-end tests: a real hyper server on `127.0.0.1:0` that speaks the
//! external API's JSON-RPC (`POST /jsonrpc`) in the shapes of `tests/fixtures/odoo/read/`.
//!
//! `common.version`, `common.authenticate`, and `object.execute_kw` with `read`, `search`,
//! `search_read` (domains in Odoo's prefix notation with `|`, `&`, `!` and the operators `=`,
//! `!=`, `>`, `>=`, `<`, `<=`, `in`, `not in`; `order`, `limit`, `offset`) and `fields_get`.
//! Also Odoo 19's JSON-2 (`POST /json/2/<model>/<method>`, bearer key, named arguments).
//! Faults have Odoo's shape (`{"error": {"code": 200, "data": {"name", "message"}}}`). A test
//! can change records (with a clock it controls, in transactions that commit late if it
//! wants), make the server slow or down, and count the calls it got.
//!
//! Timestamps behave as in a real Odoo on PostgreSQL ([`time`]): `create_date` and
//! `write_date` are the transaction's `now()`, kept to the microsecond (one value for
//! everything one transaction writes), shown to the second, and compared at full precision
//! in domains, whose datetime values are whole seconds.

mod model;
pub mod time;

pub use time::Transaction;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The database the fake serves.
pub const DATABASE: &str = "prod";
/// The login it accepts.
pub const LOGIN: &str = "gateway@example.com";
/// The API key it accepts.
pub const API_KEY: &str = "odoo-api-key-0123456789";
/// The user id of that login.
pub const UID: i64 = 7;

#[derive(Debug, Default)]
struct Inner {
    models: BTreeMap<String, Vec<Map<String, Value>>>,
    relations: BTreeMap<(String, String), String>,
    /// Per model, the field definitions `fields_get` answers (`tests/fixtures/odoo/fields/`).
    definitions: BTreeMap<String, Map<String, Value>>,
    /// The fake's epoch, seconds since the Unix epoch: the minute it started, so that its
    /// clock reads like the gateway's (which tells settled seconds by its own clock).
    epoch: i64,
    /// Microseconds since the fake's epoch: the `now()` of the next transaction.
    clock_us: u64,
    /// Per model, the next id (a sequence: taken at insert, never given back).
    sequences: BTreeMap<String, i64>,
    /// Answer `503` to everything.
    down: bool,
    /// Pause before each answer.
    delay: Duration,
    /// `(service.method or model.method)` → calls.
    calls: BTreeMap<String, usize>,
    /// Per model, the domain of its last `search_read` over JSON-RPC.
    domains: BTreeMap<String, Value>,
    /// Requests received, answered or not.
    requests: usize,
}

/// The fake server. Cloning shares it.
#[derive(Debug, Clone)]
pub struct FakeOdoo {
    inner: Arc<Mutex<Inner>>,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
}

impl FakeOdoo {
    /// Starts on `127.0.0.1:0` with the records of `tests/fixtures/odoo/read/`, each file
    /// holding the records of the model it is named after.
    pub async fn start() -> std::io::Result<Self> {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut inner = Inner {
            epoch: i64::try_from(unix - unix % 60).unwrap_or(0),
            clock_us: time::CLOCK_START_US,
            ..Inner::default()
        };
        for (name, body) in crate::fixtures("read") {
            let model = name.trim_end_matches(".json").to_owned();
            let mut records: Vec<Map<String, Value>> =
                serde_json::from_slice(&body).expect("fixture records");
            records.iter_mut().for_each(time::store_fixture);
            inner.models.insert(model, records);
        }
        for (name, body) in crate::fixtures("fields") {
            let model = name.trim_end_matches(".json").to_owned();
            let fields: Map<String, Value> =
                serde_json::from_slice(&body).expect("fixture field definitions");
            inner.definitions.insert(model, fields);
        }
        for (model, field, relation) in [
            ("sale.order", "partner_id", "res.partner"),
            ("sale.order", "order_line", "sale.order.line"),
            ("sale.order.line", "product_id", "product.product"),
            ("sale.order.line", "order_id", "sale.order"),
        ] {
            inner
                .relations
                .insert((model.into(), field.into()), relation.into());
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let fake = Self {
            inner: Arc::new(Mutex::new(inner)),
            addr,
            stop: CancellationToken::new(),
        };
        tokio::spawn(fake.clone().serve(listener));
        Ok(fake)
    }

    /// Its base URL, as `[sources.odoo] url` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving (open connections end too).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers `503` (as a proxy in front of a stopped Odoo does) while `down`.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Waits this long before each answer.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Calls received of `key`: `model.method` for `execute_kw`, else `service.method`.
    pub fn calls(&self, key: &str) -> usize {
        self.lock().calls.get(key).copied().unwrap_or(0)
    }

    /// Requests received so far, answered or not (a slow answer may never be sent).
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    /// The fake's epoch plus `seconds`, as the external API shows a datetime.
    pub fn datetime(&self, seconds: u64) -> String {
        time::shown_at(self.lock().epoch, seconds)
    }

    /// The domain of the last `search_read` of `model` (JSON-RPC), if any.
    pub fn last_domain(&self, model: &str) -> Option<Value> {
        self.lock().domains.get(model).cloned()
    }

    /// Moves the fake's epoch `seconds` back: what it writes from now on is dated that much
    /// earlier (a record written long before the gateway polls it).
    pub fn backdate(&self, seconds: u64) {
        self.lock().epoch -= i64::try_from(seconds).unwrap_or(0);
    }

    /// Moves the clock on by `seconds`.
    pub fn tick(&self, seconds: u64) {
        self.lock().clock_us += seconds * 1_000_000;
    }

    /// Sets the clock to `seconds` after the fake's epoch, a quarter of a second into that
    /// second (so that no timestamp falls on a whole second, as in a real database).
    pub fn set_clock(&self, seconds: u64) {
        self.lock().clock_us = seconds * 1_000_000 + time::CLOCK_START_US;
    }

    /// Every record of `model` as stored (timestamps with microseconds; empty when there is
    /// no such model).
    pub fn records(&self, model: &str) -> Vec<Map<String, Value>> {
        self.lock().models.get(model).cloned().unwrap_or_default()
    }

    /// Begins a transaction: its changes all carry the clock's time now, and nobody sees
    /// them before [`Transaction::commit`].
    pub fn begin(&self) -> Transaction {
        let mut inner = self.lock();
        let at = time::stored(inner.epoch, inner.clock_us);
        // Two transactions never get the same `now()`.
        inner.clock_us += 1;
        Transaction::new(self.clone(), at)
    }

    /// Creates a record of `model` now, in a transaction of its own
    /// (`create_date == write_date`); its id.
    pub fn create(&self, model: &str, fields: Value) -> i64 {
        let mut tx = self.begin();
        let id = tx.create(model, fields);
        tx.commit();
        id
    }

    /// Changes a record of `model` now, in a transaction of its own.
    pub fn write(&self, model: &str, id: i64, fields: Value) {
        let mut tx = self.begin();
        tx.write(model, id, fields);
        tx.commit();
    }

    /// The next id of `model`'s sequence.
    fn next_id(&self, model: &str) -> i64 {
        let mut inner = self.lock();
        let highest = inner
            .models
            .get(model)
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_i64())
            .max()
            .unwrap_or(0);
        let next = inner
            .sequences
            .entry(model.to_owned())
            .or_insert(highest + 1);
        let id = *next;
        *next += 1;
        id
    }

    /// Adds (or replaces) the definition of `field` on `model`, as a module adding a field
    /// would: `fields_get` shows it from now on.
    pub fn define_field(&self, model: &str, field: &str, description: Value) {
        self.lock()
            .definitions
            .entry(model.to_owned())
            .or_default()
            .insert(field.to_owned(), description);
    }

    /// Deletes a record of `model`.
    pub fn unlink(&self, model: &str, id: i64) {
        if let Some(records) = self.lock().models.get_mut(model) {
            records.retain(|r| r["id"] != id);
        }
    }

    async fn serve(self, listener: TcpListener) {
        loop {
            let stream = tokio::select! {
                () = self.stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let fake = self.clone();
            tokio::spawn(async move {
                let service = service_fn(|req| fake.clone().handle(req));
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = conn => {}
                    () = fake.stop.cancelled() => {}
                }
            });
        }
    }

    async fn handle(
        self,
        req: http::Request<Incoming>,
    ) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
        let (delay, down) = {
            let mut inner = self.lock();
            inner.requests += 1;
            (inner.delay, inner.down)
        };
        tokio::time::sleep(delay).await;
        let reply = |status: u16, body: String| {
            Ok(http::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("response"))
        };
        if down {
            return reply(503, "<html>503 Service Unavailable</html>".into());
        }
        let path = req.uri().path().to_owned();
        if req.method() == http::Method::POST
            && let Some(call) = path.strip_prefix("/json/2/")
        {
            let (status, body) = self.json2(call, req).await;
            return reply(status, body.to_string());
        }
        if req.method() != http::Method::POST || path != "/jsonrpc" {
            return reply(404, "<html>404 Not Found</html>".into());
        }
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        let Ok(request) = body.map(|b| serde_json::from_slice::<Value>(&b).unwrap_or_default())
        else {
            return reply(400, String::new());
        };
        let id = request["id"].clone();
        let params = &request["params"];
        let answer = self.dispatch(
            params["service"].as_str().unwrap_or(""),
            params["method"].as_str().unwrap_or(""),
            params["args"].as_array().cloned().unwrap_or_default(),
        );
        let body = match answer {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err((name, message)) => json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": 200, "message": "Odoo Server Error",
                "data": {"name": name, "message": message, "debug": "Traceback (most recent call last): ...",
                    "arguments": [message], "context": {}}}}),
        };
        reply(200, body.to_string())
    }

    /// `POST /json/2/<model>/<method>` (Odoo 19's JSON-2): named arguments, the key as a
    /// bearer token; the result itself, or the exception with a 4xx/5xx status.
    async fn json2(&self, call: &str, req: http::Request<Incoming>) -> (u16, Value) {
        let error = |status, name: &str, message: &str| {
            (
                status,
                json!({"name": name, "message": message, "arguments": [message], "context": {}, "debug": ""}),
            )
        };
        let authorization = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let key_ok = authorization
            .split_once(' ')
            .is_some_and(|(scheme, key)| scheme.eq_ignore_ascii_case("bearer") && key == API_KEY);
        let database = req
            .headers()
            .get("x-odoo-database")
            .and_then(|v| v.to_str().ok());
        if !key_ok {
            return error(401, "werkzeug.exceptions.Unauthorized", "Invalid apikey");
        }
        if database.is_some_and(|d| d != DATABASE) {
            return error(404, "werkzeug.exceptions.NotFound", "Database not found");
        }
        let Some((model, method)) = call.rsplit_once('/') else {
            return error(404, "werkzeug.exceptions.NotFound", "Not Found");
        };
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        let named: Value = body
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| json!({}));
        let first = match method {
            "read" => named["ids"].clone(),
            "search" | "search_read" => named["domain"].clone(),
            "fields_get" => named["allfields"].clone(),
            _ => Value::Null,
        };
        let mut inner = self.lock();
        *inner.calls.entry(format!("{model}.{method}")).or_default() += 1;
        let answer = model::execute(
            &inner.models,
            &inner.relations,
            &inner.definitions,
            model,
            method,
            &json!([first]),
            &named,
        );
        match answer {
            Ok(result) => (200, result),
            Err((name, message)) if name.ends_with("AccessError") => error(403, &name, &message),
            Err((name, message)) => error(500, &name, &message),
        }
    }

    fn dispatch(&self, service: &str, method: &str, args: Vec<Value>) -> Result<Value, Fault> {
        let mut inner = self.lock();
        match (service, method) {
            ("common", "version") => {
                *inner.calls.entry("common.version".into()).or_default() += 1;
                Ok(
                    json!({"server_version": "17.0", "server_version_info": [17, 0, 0, "final", 0, ""],
                    "server_serie": "17.0", "protocol_version": 1}),
                )
            }
            ("common", "authenticate") => {
                *inner.calls.entry("common.authenticate".into()).or_default() += 1;
                let ok = args.first() == Some(&json!(DATABASE))
                    && args.get(1) == Some(&json!(LOGIN))
                    && args.get(2) == Some(&json!(API_KEY));
                Ok(if ok { json!(UID) } else { json!(false) })
            }
            ("object", "execute_kw") => {
                let [db, uid, key, model, method, rest @ ..] = args.as_slice() else {
                    return Err(fault(
                        "builtins.TypeError",
                        "execute_kw() missing arguments",
                    ));
                };
                if *db != json!(DATABASE) || *uid != json!(UID) || *key != json!(API_KEY) {
                    return Err(fault("odoo.exceptions.AccessDenied", "Access Denied"));
                }
                let (model, method) = (model.as_str().unwrap_or(""), method.as_str().unwrap_or(""));
                *inner.calls.entry(format!("{model}.{method}")).or_default() += 1;
                let positional = rest.first().cloned().unwrap_or(json!([]));
                let kwargs = rest.get(1).cloned().unwrap_or(json!({}));
                if method == "search_read" {
                    inner
                        .domains
                        .insert(model.to_owned(), positional[0].clone());
                }
                model::execute(
                    &inner.models,
                    &inner.relations,
                    &inner.definitions,
                    model,
                    method,
                    &positional,
                    &kwargs,
                )
            }
            _ => Err(fault("builtins.KeyError", &format!("'{service}.{method}'"))),
        }
    }
}

/// An Odoo fault: the exception's name and message.
pub type Fault = (String, String);

/// A fault named `name` saying `message`.
pub fn fault(name: &str, message: &str) -> Fault {
    (name.to_owned(), message.to_owned())
}
