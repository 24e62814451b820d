//! Odoo's JSON-2 API (Odoo 19 and later): `POST <url>/json/2/<model>/<method>` with named
//! arguments, the API key as a bearer token and the database in `X-Odoo-Database`. The
//! answer is the method's result itself; a failure is a non-2xx status with the exception's
//! `name` and `message`.
//!
//! The client's typed calls are written once, in `execute_kw` form; [`named`] turns their
//! positional arguments into the names JSON-2 expects.

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use super::{OdooClient, OdooError};

/// The JSON-2 body of `method(*args, **kwargs)` for the methods the gateway calls.
pub fn named(method: &str, args: &Value, kwargs: &Value) -> Value {
    let mut body = Map::new();
    let first = args.get(0).cloned().unwrap_or(Value::Null);
    let name = match method {
        "read" => Some("ids"),
        "search" | "search_read" | "search_count" => Some("domain"),
        "fields_get" => Some("allfields"),
        _ => None,
    };
    if let Some(name) = name {
        body.insert(name.to_owned(), first);
    }
    if let Some(kwargs) = kwargs.as_object() {
        body.extend(kwargs.clone());
    }
    Value::Object(body)
}

impl OdooClient {
    /// One JSON-2 call.
    pub(super) async fn json2_once(
        &self,
        model: &str,
        method: &str,
        named: &Value,
    ) -> Result<Value, OdooError> {
        let url = format!("{}/json/2/{model}/{method}", self.base);
        let request = Request::post(url.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, format!("bearer {}", self.api_key))
            .header("x-odoo-database", self.database.as_str())
            .body(Full::new(Bytes::from(named.to_string())))
            .map_err(|e| OdooError::BadResponse {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let response = self
            .http
            .exchange(request, self.timeout, self.max_response_bytes)
            .await
            .map_err(|e| OdooError::from_delivery(&url, e))?;
        let status = response.status();
        let answer: Option<Value> = serde_json::from_slice(response.body()).ok();
        if status.is_success() {
            return answer.ok_or_else(|| OdooError::BadResponse {
                url,
                reason: "not JSON".into(),
            });
        }
        let fault = answer.filter(|a| a.get("name").is_some_and(Value::is_string));
        if matches!(status.as_u16(), 401 | 403) {
            let message = fault
                .as_ref()
                .and_then(|f| f["message"].as_str())
                .unwrap_or("the API key was refused");
            return Err(OdooError::AccessDenied {
                database: self.database.clone(),
                login: self.login.clone(),
                message: message.to_owned(),
            });
        }
        match fault {
            // An exception Odoo raised: typed like a JSON-RPC fault.
            Some(fault) => Err(OdooError::from_fault(
                &json!({ "data": fault }),
                Some(model),
                &self.database,
                &self.login,
            )),
            // A proxy's or a server's own error page.
            None => Err(OdooError::Http {
                url,
                status: status.as_u16(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_arguments_get_their_json2_names() {
        assert_eq!(
            named("read", &json!([[31, 32]]), &json!({"fields": ["name"]})),
            json!({"ids": [31, 32], "fields": ["name"]})
        );
        assert_eq!(
            named(
                "search_read",
                &json!([[["id", ">", 1]]]),
                &json!({"limit": 5})
            ),
            json!({"domain": [["id", ">", 1]], "limit": 5})
        );
        assert_eq!(
            named(
                "fields_get",
                &json!([["partner_id"]]),
                &json!({"attributes": ["relation"]})
            ),
            json!({"allfields": ["partner_id"], "attributes": ["relation"]})
        );
    }
}
