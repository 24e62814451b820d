//! The Odoo client: JSON-RPC over `POST /jsonrpc`, services `common` (`version`,
//! `authenticate`) and `object` (`execute_kw`).
//!
//! It owns the credentials of one source, the user id it authenticated as, bounded answers,
//! quick retries of what may pass, and the short-lived record cache of enrichment. It goes
//! through the gateway's own hyper client stack ([`DeliveryClient`]) with an address policy
//! that lets it reach the operator's Odoo wherever it is (often on a private network): the
//! URL comes from the operator's file, never from an event or an app.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use serde_json::{Map, Value, json};
use tracing::Instrument as _;

use super::OdooError;
use super::config::Protocol;
use crate::delivery::{Cidr, ClientOptions, DeliveryClient, SsrfPolicy};

/// First pause of the quick retries; doubled each time.
const RETRY_BASE: Duration = Duration::from_millis(200);
/// Cached records kept at most: past it, the expired ones and then the oldest are dropped
/// down to half of it, so that a cache under load is scanned once per `CACHE_LIMIT / 2`
/// records read, not at every read.
const CACHE_LIMIT: usize = 10_000;

type CacheKey = (String, i64, String);

/// What the catalog asks `fields_get` for each field.
const FIELD_ATTRIBUTES: [&str; 7] = [
    "type",
    "string",
    "required",
    "readonly",
    "selection",
    "relation",
    "help",
];

/// One Odoo instance, as one user.
pub struct OdooClient {
    /// `<url>/jsonrpc`.
    endpoint: http::Uri,
    /// The URL without its trailing `/`, for JSON-2's `<url>/json/2/<model>/<method>`.
    pub(super) base: String,
    pub(super) protocol: Protocol,
    pub(super) database: String,
    pub(super) login: String,
    pub(super) api_key: String,
    pub(super) timeout: Duration,
    retries: u32,
    cache_ttl: Duration,
    pub(super) max_response_bytes: usize,
    pub(super) http: DeliveryClient,
    uid: Mutex<Option<i64>>,
    /// (model, field) → the related model, from `fields_get`.
    relations: Mutex<HashMap<(String, String), String>>,
    /// (model, id, fields) → the record as read, and when.
    cache: Mutex<HashMap<CacheKey, (Instant, Value)>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for OdooClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdooClient")
            .field("endpoint", &self.endpoint)
            .field("database", &self.database)
            .field("login", &self.login)
            .field("api_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl OdooClient {
    /// A client for `config` (already checked: the URL parses).
    pub fn new(config: &super::OdooConfig) -> Result<Self, String> {
        let base = config.url.trim_end_matches('/');
        let endpoint: http::Uri = format!("{base}/jsonrpc")
            .parse()
            .map_err(|e| format!("`{}` is not a URL: {e}", config.url))?;
        if !matches!(endpoint.scheme_str(), Some("http" | "https")) || endpoint.host().is_none() {
            return Err(format!("`{}` is not an http(s) URL", config.url));
        }
        let everywhere = ["0.0.0.0/0", "::/0"].map(|c| c.parse::<Cidr>().expect("valid CIDR"));
        let options = ClientOptions {
            ssrf: SsrfPolicy::allowing(everywhere),
            native_roots: true,
            max_idle_per_host: 8,
            connect_timeout: config.timeout,
            ..ClientOptions::default()
        };
        let http = DeliveryClient::new(options).map_err(|e| e.to_string())?;
        Ok(Self {
            endpoint,
            base: base.to_owned(),
            protocol: config.protocol,
            database: config.database.clone(),
            login: config.login.clone(),
            api_key: config.api_key.clone(),
            timeout: config.timeout,
            retries: config.retries,
            cache_ttl: config.cache_ttl,
            max_response_bytes: config.max_response_bytes,
            http,
            uid: Mutex::new(None),
            relations: Mutex::default(),
            cache: Mutex::default(),
            next_id: AtomicU64::new(1),
        })
    }

    /// Where and as whom it calls, for `config check`: never the key.
    pub fn describe(&self) -> String {
        let protocol = match self.protocol {
            Protocol::JsonRpc => "JSON-RPC",
            Protocol::Json2 => "JSON-2",
        };
        format!(
            "{} database {} as {} ({protocol})",
            self.base, self.database, self.login
        )
    }

    /// `common.version`: the server's version info (no credentials needed).
    pub async fn version(&self) -> Result<Value, OdooError> {
        self.call("common", "version", json!([]), None).await
    }

    /// The user id of the configured login, authenticating once (`common.authenticate`).
    pub async fn uid(&self) -> Result<i64, OdooError> {
        if let Some(uid) = *self.uid.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(uid);
        }
        let args = json!([self.database, self.login, self.api_key, {}]);
        let answer = self.call("common", "authenticate", args, None).await?;
        // A refused login is `false`, not a fault.
        let uid = answer.as_i64().ok_or_else(|| OdooError::AccessDenied {
            database: self.database.clone(),
            login: self.login.clone(),
            message: "the login or API key was refused".into(),
        })?;
        *self.uid.lock().unwrap_or_else(|p| p.into_inner()) = Some(uid);
        Ok(uid)
    }

    /// `object.execute_kw(db, uid, key, model, method, args, kwargs)`, or with JSON-2 the
    /// same call with named arguments; in an `odoo call` span when spans are exported.
    pub async fn execute_kw(
        &self,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Value,
    ) -> Result<Value, OdooError> {
        let stage = crate::trace::odoo_call(model, method);
        let answer = self
            .execute_kw_untraced(model, method, args, kwargs)
            .instrument(stage.span().clone())
            .await;
        if let Err(e) = &answer {
            stage.set("odoo_gateway.error_code", e.code());
            stage.fail(e.to_string());
        }
        answer
    }

    async fn execute_kw_untraced(
        &self,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Value,
    ) -> Result<Value, OdooError> {
        if self.protocol == Protocol::Json2 {
            let named = super::json2::named(method, &args, &kwargs);
            return self
                .retrying(|| self.json2_once(model, method, &named))
                .await;
        }
        let uid = self.uid().await?;
        let args = json!([
            self.database,
            uid,
            self.api_key,
            model,
            method,
            args,
            kwargs
        ]);
        let answer = self.call("object", "execute_kw", args, Some(model)).await;
        if let Err(OdooError::AccessDenied { .. }) = &answer {
            // The key may have been replaced: authenticate again next time.
            *self.uid.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        answer
    }

    /// `read(ids, fields)`: the records that exist, in Odoo's read shape.
    pub async fn read(
        &self,
        model: &str,
        ids: &[i64],
        fields: &[String],
    ) -> Result<Vec<Value>, OdooError> {
        let answer = self
            .execute_kw(model, "read", json!([ids]), json!({ "fields": fields }))
            .await?;
        self.records(answer)
    }

    /// `search_read(domain, fields, order, limit)`.
    pub async fn search_read(
        &self,
        model: &str,
        domain: Value,
        fields: &[String],
        order: &str,
        limit: u32,
    ) -> Result<Vec<Value>, OdooError> {
        let kwargs = json!({ "fields": fields, "order": order, "limit": limit });
        let answer = self
            .execute_kw(model, "search_read", json!([domain]), kwargs)
            .await?;
        self.records(answer)
    }

    /// `search(domain)`: every matching id.
    pub async fn search(&self, model: &str, domain: Value) -> Result<Vec<i64>, OdooError> {
        let answer = self
            .execute_kw(model, "search", json!([domain]), json!({}))
            .await?;
        answer
            .as_array()
            .and_then(|ids| ids.iter().map(Value::as_i64).collect())
            .ok_or_else(|| self.bad("`search` did not answer a list of ids"))
    }

    /// The model `field` of `model` points to (`fields_get`), remembered for the client's life.
    pub async fn relation(&self, model: &str, field: &str) -> Result<String, OdooError> {
        let key = (model.to_owned(), field.to_owned());
        if let Some(known) = self
            .relations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(known.clone());
        }
        let answer = self
            .execute_kw(
                model,
                "fields_get",
                json!([[field]]),
                json!({"attributes": ["type", "relation"]}),
            )
            .await?;
        let relation =
            answer[field]["relation"]
                .as_str()
                .ok_or_else(|| OdooError::MissingField {
                    model: model.to_owned(),
                    message: format!("`{field}` is not a relational field"),
                })?;
        self.relations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, relation.to_owned());
        Ok(relation.to_owned())
    }

    /// `fields_get` of `model`: every field's description as Odoo gives it (`type`,
    /// `string`, `required`, `readonly`, `selection`, `relation`, `help`), for the event
    /// catalog's schemas.
    pub async fn fields_get(&self, model: &str) -> Result<Map<String, Value>, OdooError> {
        let answer = self
            .execute_kw(
                model,
                "fields_get",
                json!([[]]),
                json!({ "attributes": FIELD_ATTRIBUTES }),
            )
            .await?;
        match answer {
            Value::Object(fields) => Ok(fields),
            _ => Err(self.bad("`fields_get` did not answer an object")),
        }
    }

    /// Like [`Self::read`], but records read within `cache_ttl` are reused.
    pub async fn read_cached(
        &self,
        model: &str,
        ids: &[i64],
        fields: &[String],
    ) -> Result<HashMap<i64, Value>, OdooError> {
        let fields_key = fields.join(",");
        let key = |id: i64| (model.to_owned(), id, fields_key.clone());
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        if !self.cache_ttl.is_zero() {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            for &id in ids {
                match cache.get(&key(id)) {
                    Some((at, record)) if at.elapsed() < self.cache_ttl => {
                        found.insert(id, record.clone());
                    }
                    _ => missing.push(id),
                }
            }
        } else {
            missing = ids.to_vec();
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let records = self.read(model, &missing, fields).await?;
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for record in records {
            let Some(id) = record["id"].as_i64() else {
                return Err(self.bad("a record without an id"));
            };
            if !self.cache_ttl.is_zero() {
                cache.insert(key(id), (now, record.clone()));
            }
            found.insert(id, record);
        }
        bound(&mut cache, self.cache_ttl, CACHE_LIMIT);
        Ok(found)
    }

    /// Records in the enrichment cache, for tests of its bound.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn records(&self, answer: Value) -> Result<Vec<Value>, OdooError> {
        match answer {
            Value::Array(records) if records.iter().all(Value::is_object) => Ok(records),
            _ => Err(self.bad("expected a list of records")),
        }
    }

    fn bad(&self, reason: &str) -> OdooError {
        OdooError::BadResponse {
            url: self.endpoint.to_string(),
            reason: reason.to_owned(),
        }
    }

    /// One JSON-RPC call, retried quickly (up to `retries` times) when the failure may pass.
    async fn call(
        &self,
        service: &str,
        method: &str,
        args: Value,
        model: Option<&str>,
    ) -> Result<Value, OdooError> {
        self.retrying(|| self.call_once(service, method, &args, model))
            .await
    }

    /// Runs `once` again (up to `retries` times, with a doubling pause) while it fails in a
    /// way that may pass.
    async fn retrying<F, Fut>(&self, once: F) -> Result<Value, OdooError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Value, OdooError>>,
    {
        let mut attempt = 0;
        loop {
            match once().await {
                Err(e) if e.is_retryable() && attempt < self.retries => {
                    tracing::debug!(error = %e, attempt, "Odoo call failed; trying again");
                    tokio::time::sleep(RETRY_BASE * 2u32.pow(attempt.min(8))).await;
                    attempt += 1;
                }
                answer => return answer,
            }
        }
    }

    async fn call_once(
        &self,
        service: &str,
        method: &str,
        args: &Value,
        model: Option<&str>,
    ) -> Result<Value, OdooError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({
            "jsonrpc": "2.0",
            "method": "call",
            "params": { "service": service, "method": method, "args": args },
            "id": id,
        });
        let request = Request::post(self.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| self.bad(&e.to_string()))?;
        let url = self.endpoint.to_string();
        let response = self
            .http
            .exchange(request, self.timeout, self.max_response_bytes)
            .await
            .map_err(|e| OdooError::from_delivery(&url, e))?;
        if response.status() != http::StatusCode::OK {
            return Err(OdooError::Http {
                url,
                status: response.status().as_u16(),
            });
        }
        let mut answer: Value = serde_json::from_slice(response.body())
            .map_err(|e| self.bad(&format!("not JSON: {e}")))?;
        if let Some(fault) = answer.get("error") {
            return Err(OdooError::from_fault(
                fault,
                model,
                &self.database,
                &self.login,
            ));
        }
        match answer.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(self.bad("neither `result` nor `error`")),
        }
    }
}

/// Keeps `cache` within `limit`: once past it, drops the entries older than `ttl`, then the
/// oldest, down to `limit / 2`.
fn bound<K: Clone + Eq + std::hash::Hash, V>(
    cache: &mut HashMap<K, (Instant, V)>,
    ttl: Duration,
    limit: usize,
) {
    if cache.len() <= limit {
        return;
    }
    cache.retain(|_, (at, _)| at.elapsed() < ttl);
    let keep = limit / 2;
    if cache.len() <= keep {
        return;
    }
    let mut ages: Vec<(Instant, K)> = cache.iter().map(|(k, (at, _))| (*at, k.clone())).collect();
    let drop = ages.len() - keep;
    ages.select_nth_unstable_by_key(drop - 1, |(at, _)| *at);
    for (_, key) in &ages[..drop] {
        cache.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_cut_to_half_its_bound_keeping_the_newest() {
        let start = Instant::now();
        let mut cache: HashMap<i64, (Instant, ())> = (0..11)
            .map(|i| (i, (start + Duration::from_millis(i as u64), ())))
            .collect();
        bound(&mut cache, Duration::from_secs(60), 12);
        assert_eq!(cache.len(), 11, "within the bound: untouched");
        cache.insert(11, (start + Duration::from_millis(11), ()));
        cache.insert(12, (start + Duration::from_millis(12), ()));
        bound(&mut cache, Duration::from_secs(60), 12);
        let mut kept: Vec<i64> = cache.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![7, 8, 9, 10, 11, 12]);
        // Expired entries go first, whatever their number.
        let Some(old) = start.checked_sub(Duration::from_secs(120)) else {
            return; // a machine up for less than two minutes has no such instant
        };
        let mut cache: HashMap<i64, (Instant, ())> = (0..20).map(|i| (i, (old, ()))).collect();
        cache.insert(99, (Instant::now(), ()));
        bound(&mut cache, Duration::from_secs(60), 12);
        assert_eq!(cache.keys().copied().collect::<Vec<_>>(), vec![99]);
    }
}
