//! What can go wrong talking to Odoo, with a stable code and whether trying again may help.
//!
//! This module owns reading Odoo's JSON-RPC faults (`{"error": {"code": 200, "data":
//! {"name": "odoo.exceptions.AccessError", "message": ...}}}`) into typed errors. Messages
//! name the URL, database, login, model or field, never the API key.

use std::time::Duration;

use crate::delivery::DeliveryError;

/// Why a call to Odoo's external API failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OdooError {
    /// No answer: DNS, connect, TLS or a broken connection.
    #[error("Odoo at {url} is unreachable: {reason}")]
    Unreachable {
        /// The JSON-RPC endpoint.
        url: String,
        /// The cause.
        reason: String,
    },
    /// No answer within the configured timeout.
    #[error("Odoo at {url} did not answer within {after:?}")]
    Timeout {
        /// The JSON-RPC endpoint.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// An HTTP status other than 200 (a proxy in front of Odoo, a wrong URL, Odoo restarting).
    #[error("Odoo at {url} answered HTTP {status}")]
    Http {
        /// The JSON-RPC endpoint.
        url: String,
        /// The status.
        status: u16,
    },
    /// A 200 that is not a JSON-RPC answer of the expected shape.
    #[error("Odoo at {url} sent an unexpected answer: {reason}")]
    BadResponse {
        /// The JSON-RPC endpoint.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The login or API key was refused, or the user may not read what was asked.
    #[error("Odoo refused access for `{login}` on database `{database}`: {message}")]
    AccessDenied {
        /// The configured database.
        database: String,
        /// The configured login.
        login: String,
        /// Odoo's message.
        message: String,
    },
    /// The model is not installed (or misspelt).
    #[error("Odoo has no model `{model}`")]
    MissingModel {
        /// The model asked for.
        model: String,
    },
    /// A field of the request does not exist on the model.
    #[error("Odoo: {message} (model `{model}`)")]
    MissingField {
        /// The model asked for.
        model: String,
        /// Odoo's message, which names the field.
        message: String,
    },
    /// Any other fault raised by Odoo.
    #[error("Odoo fault {name}: {message}")]
    Fault {
        /// The exception's qualified name.
        name: String,
        /// Its message.
        message: String,
    },
}

impl OdooError {
    /// Stable machine-readable code, for the attempt log and dead letters.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "odoo_unreachable",
            Self::Timeout { .. } => "odoo_timeout",
            Self::Http { .. } => "odoo_http_status",
            Self::BadResponse { .. } => "odoo_bad_response",
            Self::AccessDenied { .. } => "odoo_access_denied",
            Self::MissingModel { .. } => "odoo_missing_model",
            Self::MissingField { .. } => "odoo_missing_field",
            Self::Fault { .. } => "odoo_fault",
        }
    }

    /// Whether the same call may succeed later without a change of configuration or of
    /// Odoo's access rights: the network, timeouts, 5xx and 429, and the database's own
    /// transient faults (a serialisation failure between concurrent transactions).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } => true,
            Self::Http { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Fault { name, message } => {
                let transient = ["OperationalError", "SerializationFailure", "Concurrency"];
                transient
                    .iter()
                    .any(|t| name.contains(t) || message.contains(t))
            }
            Self::BadResponse { .. }
            | Self::AccessDenied { .. }
            | Self::MissingModel { .. }
            | Self::MissingField { .. } => false,
        }
    }

    /// The client's failure to get an answer, for `url`.
    pub(super) fn from_delivery(url: &str, e: DeliveryError) -> Self {
        match e {
            DeliveryError::Timeout { after } => Self::Timeout {
                url: url.to_owned(),
                after,
            },
            other => Self::Unreachable {
                url: url.to_owned(),
                reason: other.to_string(),
            },
        }
    }

    /// Reads the `error` member of a JSON-RPC answer to a call on `model` (if any).
    pub(super) fn from_fault(
        fault: &serde_json::Value,
        model: Option<&str>,
        database: &str,
        login: &str,
    ) -> Self {
        let data = &fault["data"];
        let name = data["name"]
            .as_str()
            .or_else(|| fault["message"].as_str())
            .unwrap_or("unknown")
            .to_owned();
        let message = data["message"]
            .as_str()
            .or_else(|| fault["message"].as_str())
            .unwrap_or("")
            .to_owned();
        let model = model.unwrap_or("").to_owned();
        if name.ends_with("AccessDenied") || name.ends_with("AccessError") {
            return Self::AccessDenied {
                database: database.to_owned(),
                login: login.to_owned(),
                message,
            };
        }
        // An unknown model is a KeyError naming it (17+) or "Object x doesn't exist" (older).
        let unknown_model = (name.ends_with("KeyError") && message.contains(&model))
            || message.contains("doesn't exist");
        if !model.is_empty() && unknown_model {
            return Self::MissingModel { model };
        }
        if message.contains("Invalid field") || message.contains("Unknown field") {
            return Self::MissingField { model, message };
        }
        Self::Fault { name, message }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fault(name: &str, message: &str) -> OdooError {
        let f = json!({"code": 200, "message": "Odoo Server Error",
            "data": {"name": name, "message": message, "debug": "Traceback ..."}});
        OdooError::from_fault(&f, Some("sale.order"), "prod", "gw")
    }

    #[test]
    fn faults_become_typed_errors() {
        assert!(matches!(
            fault("odoo.exceptions.AccessError", "You are not allowed"),
            OdooError::AccessDenied { .. }
        ));
        assert!(matches!(
            fault("odoo.exceptions.AccessDenied", "Access Denied"),
            OdooError::AccessDenied { .. }
        ));
        assert!(matches!(
            fault("builtins.KeyError", "'sale.order'"),
            OdooError::MissingModel { .. }
        ));
        assert!(matches!(
            fault(
                "builtins.ValueError",
                "Invalid field 'nope' on model 'sale.order'"
            ),
            OdooError::MissingField { .. }
        ));
        let other = fault("odoo.exceptions.UserError", "Nope");
        assert_eq!(other.code(), "odoo_fault");
        assert!(!other.is_retryable());
        assert!(
            fault(
                "psycopg2.errors.SerializationFailure",
                "could not serialize"
            )
            .is_retryable()
        );
    }

    #[test]
    fn only_what_may_pass_is_retried() {
        let url = "http://odoo/jsonrpc".to_owned();
        assert!(
            OdooError::Http {
                url: url.clone(),
                status: 502
            }
            .is_retryable()
        );
        assert!(
            !OdooError::Http {
                url: url.clone(),
                status: 404
            }
            .is_retryable()
        );
        assert!(
            OdooError::Timeout {
                url,
                after: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(!OdooError::MissingModel { model: "x".into() }.is_retryable());
    }
}
