//! What a successful plugin call hands back, and the checks it passes first.
//!
//! This module owns [`PluginOutput`], [`Delivery`] and [`LogLine`], and turns the guest's raw
//! result into them only if every size cap and header rule holds: nothing from a guest reaches
//! the queue unchecked. It knows nothing about destinations or signing beyond the names of the
//! headers those stages own.

use std::fmt;

use super::bindings::RawDelivery as WitDelivery;
use super::bindings::{v1, v2};
use super::{PluginError, PluginLimits};

/// Headers a plugin may not set: the gateway's signature and authentication, and what HTTP
/// framing decides. The content type has its own field.
pub const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "authorization",
    "proxy-authorization",
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "expect",
    "traceparent",
    "tracestate",
];

/// Longest destination name a plugin may return.
const MAX_DESTINATION_BYTES: usize = 256;

/// Longest ordering key a plugin may return (the longest key ordering keeps).
pub const MAX_ORDERING_KEY_BYTES: usize = 256;

/// The result of one successful `handle` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginOutput {
    /// Deliveries to queue, in the plugin's order; empty means "filtered out".
    pub deliveries: Vec<Delivery>,
    /// Log lines the plugin wrote (at most `max_log_lines`, each cut to `max_log_line_bytes`).
    pub logs: Vec<LogLine>,
    /// Log lines dropped because the call went past `max_log_lines`.
    pub logs_dropped: usize,
}

/// One outgoing HTTP POST a plugin asked for, already checked against the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Destination name; empty means the subscription's default destination.
    pub destination: String,
    /// MIME type of `body`.
    pub content_type: String,
    /// The request body, sent as is.
    pub body: Vec<u8>,
    /// Extra headers: valid HTTP names and values, none of [`RESERVED_HEADERS`].
    pub headers: Vec<(String, String)>,
    /// The key an ordered subscription orders this delivery by, instead of its event's
    /// (plugins of world 0.2.0 may set it); at most [`MAX_ORDERING_KEY_BYTES`].
    pub ordering_key: Option<String>,
}

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal information.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

impl From<v1::Level> for LogLevel {
    fn from(level: v1::Level) -> Self {
        match level {
            v1::Level::Trace => Self::Trace,
            v1::Level::Debug => Self::Debug,
            v1::Level::Info => Self::Info,
            v1::Level::Warn => Self::Warn,
            v1::Level::Error => Self::Error,
        }
    }
}

impl From<v2::Level> for LogLevel {
    fn from(level: v2::Level) -> Self {
        match level {
            v2::Level::Trace => Self::Trace,
            v2::Level::Debug => Self::Debug,
            v2::Level::Info => Self::Info,
            v2::Level::Warn => Self::Warn,
            v2::Level::Error => Self::Error,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        })
    }
}

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its severity.
    pub level: LogLevel,
    /// Its text, cut to `max_log_line_bytes`.
    pub message: String,
}

/// Checks the guest's deliveries against `limits` and converts them, moving the bodies.
pub(crate) fn check_deliveries(
    raw: Vec<WitDelivery>,
    limits: &PluginLimits,
) -> Result<Vec<Delivery>, PluginError> {
    if raw.len() > limits.max_deliveries {
        return Err(PluginError::OutputTooLarge(format!(
            "{} deliveries, limit {}",
            raw.len(),
            limits.max_deliveries
        )));
    }
    let mut total = 0usize;
    let mut out = Vec::with_capacity(raw.len());
    for (index, d) in raw.into_iter().enumerate() {
        let too_large =
            |what: String| PluginError::OutputTooLarge(format!("delivery {index}: {what}"));
        let invalid =
            |what: String| PluginError::InvalidOutput(format!("delivery {index}: {what}"));
        if d.body.len() > limits.max_body_bytes {
            return Err(too_large(format!(
                "body of {} bytes, limit {}",
                d.body.len(),
                limits.max_body_bytes
            )));
        }
        if d.headers.len() > limits.max_headers {
            return Err(too_large(format!(
                "{} headers, limit {}",
                d.headers.len(),
                limits.max_headers
            )));
        }
        let header_bytes: usize = d.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        if header_bytes > limits.max_header_bytes {
            return Err(too_large(format!(
                "{header_bytes} bytes of headers, limit {}",
                limits.max_header_bytes
            )));
        }
        total = total.saturating_add(d.body.len() + header_bytes + d.content_type.len());
        if total > limits.max_total_output_bytes {
            return Err(too_large(format!(
                "output reaches {total} bytes in total, limit {}",
                limits.max_total_output_bytes
            )));
        }
        if d.destination.len() > MAX_DESTINATION_BYTES {
            return Err(invalid(format!(
                "destination name longer than {MAX_DESTINATION_BYTES} bytes"
            )));
        }
        if d.ordering_key
            .as_ref()
            .is_some_and(|k| k.len() > MAX_ORDERING_KEY_BYTES)
        {
            return Err(invalid(format!(
                "ordering key longer than {MAX_ORDERING_KEY_BYTES} bytes"
            )));
        }
        check_content_type(&d.content_type).map_err(invalid)?;
        for (name, value) in &d.headers {
            check_header(name, value).map_err(invalid)?;
        }
        out.push(Delivery {
            destination: d.destination,
            content_type: d.content_type,
            body: d.body,
            headers: d.headers,
            ordering_key: d.ordering_key,
        });
    }
    Ok(out)
}

fn check_content_type(content_type: &str) -> Result<(), String> {
    let valid = http::HeaderValue::from_str(content_type).is_ok()
        && content_type
            .split_once('/')
            .is_some_and(|(t, s)| !t.trim().is_empty() && !s.trim().is_empty());
    if valid {
        Ok(())
    } else {
        Err(format!("content type {content_type:?} is not a MIME type"))
    }
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    let parsed = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("header name {name:?} is not a valid HTTP token"))?;
    if RESERVED_HEADERS.contains(&parsed.as_str()) {
        return Err(format!("header {name:?} is reserved for the gateway"));
    }
    http::HeaderValue::from_str(value)
        .map_err(|_| format!("value of header {name:?} has characters HTTP does not allow"))?;
    Ok(())
}

/// Cuts `message` to at most `max` bytes at a character boundary.
pub(crate) fn truncate_line(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut cut = max;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(headers: &[(&str, &str)]) -> WitDelivery {
        WitDelivery {
            destination: "crm".into(),
            content_type: "application/json".into(),
            body: b"{}".to_vec(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ordering_key: None,
        }
    }

    #[test]
    fn good_deliveries_pass_unchanged() {
        let out = check_deliveries(
            vec![delivery(&[("X-Order", "S00042")])],
            &PluginLimits::default(),
        )
        .unwrap();
        assert_eq!(
            out[0].headers,
            [("X-Order".to_string(), "S00042".to_string())]
        );
        assert_eq!(out[0].body, b"{}");
    }

    #[test]
    fn reserved_and_malformed_headers_are_refused() {
        let limits = PluginLimits::default();
        for bad in [
            ("Webhook-Signature", "v1,x"),
            ("Authorization", "Bearer x"),
            ("Content-Type", "a/b"),
        ] {
            let err = check_deliveries(vec![delivery(&[bad])], &limits).unwrap_err();
            assert_eq!(err.code(), "plugin_invalid_output", "{bad:?}");
            assert!(err.to_string().contains("reserved"), "{err}");
        }
        for bad in [("Bad Name", "x"), ("X-Ok", "line\r\nbreak"), ("", "x")] {
            let err = check_deliveries(vec![delivery(&[bad])], &limits).unwrap_err();
            assert_eq!(err.code(), "plugin_invalid_output", "{bad:?}");
        }
        let mut no_type = delivery(&[]);
        no_type.content_type = "json".into();
        assert_eq!(
            check_deliveries(vec![no_type], &limits).unwrap_err().code(),
            "plugin_invalid_output"
        );
    }

    #[test]
    fn an_ordering_key_is_kept_up_to_its_limit_and_refused_past_it() {
        let limits = PluginLimits::default();
        let keyed = |len: usize| WitDelivery {
            ordering_key: Some("k".repeat(len)),
            ..delivery(&[])
        };
        let out = check_deliveries(vec![keyed(MAX_ORDERING_KEY_BYTES)], &limits).unwrap();
        assert_eq!(
            out[0].ordering_key.as_deref().map(str::len),
            Some(MAX_ORDERING_KEY_BYTES)
        );
        let err = check_deliveries(vec![keyed(MAX_ORDERING_KEY_BYTES + 1)], &limits).unwrap_err();
        assert_eq!(err.code(), "plugin_invalid_output");
        assert!(err.to_string().contains("ordering key"), "{err}");
    }

    #[test]
    fn every_size_cap_is_enforced() {
        let limits = PluginLimits {
            max_deliveries: 2,
            max_body_bytes: 10,
            max_headers: 1,
            max_header_bytes: 8,
            max_total_output_bytes: 60,
            ..PluginLimits::default()
        };
        let cases = [
            vec![delivery(&[]), delivery(&[]), delivery(&[])],
            vec![WitDelivery {
                body: vec![b'x'; 11],
                ..delivery(&[])
            }],
            vec![delivery(&[("A", "1"), ("B", "2")])],
            vec![delivery(&[("X-Long", "value")])],
            vec![
                WitDelivery {
                    body: vec![b'x'; 10],
                    ..delivery(&[])
                },
                WitDelivery {
                    content_type: format!("application/{}", "x".repeat(30)),
                    ..delivery(&[])
                },
            ],
        ];
        for (i, case) in cases.into_iter().enumerate() {
            let err = check_deliveries(case, &limits).unwrap_err();
            assert_eq!(err.code(), "plugin_output_too_large", "case {i}: {err}");
        }
    }

    #[test]
    fn long_lines_are_cut_on_char_boundaries() {
        assert_eq!(truncate_line("héllo".into(), 2), "h");
        assert_eq!(truncate_line("héllo".into(), 3), "hé");
        assert_eq!(truncate_line("short".into(), 10), "short");
    }
}
