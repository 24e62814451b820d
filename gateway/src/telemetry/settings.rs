//! `[telemetry]`: how the gateway shows itself to an operator's stack beyond `/metrics`: the
//! width of the console's chart samples, and `[telemetry.otlp]`, the OTLP export of every
//! event's stage spans (off unless the table is there).
//!
//! Plain serde data with its defaults and its checks; what runs is
//! [`crate::telemetry::otlp`] and [`crate::telemetry::history`]. Both are read at start-up:
//! a reload that changes them says so and changes nothing until the next start.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// `[telemetry]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Width of one sample of the console's charts; the last 60 are kept (an hour at the
    /// default minute).
    #[serde(with = "crate::time::serde_duration")]
    pub chart_interval: Duration,
    /// `[telemetry.otlp]`: export spans over OTLP (none: nothing is exported, no span made).
    pub otlp: Option<OtlpConfig>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            chart_interval: Duration::from_secs(60),
            otlp: None,
        }
    }
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (a collector's port 4318, `/v1/traces`).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/gRPC (a collector's port 4317).
    #[serde(rename = "grpc")]
    Grpc,
}

/// `[telemetry.otlp]`
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// The collector: `http://collector:4318` (`/v1/traces` is added when the URL has no
    /// path) for `http/protobuf`, `http://collector:4317` for `grpc`; `https` for TLS.
    pub endpoint: String,
    /// `http/protobuf` or `grpc`.
    pub protocol: OtlpProtocol,
    /// Headers sent with every export (an API key, a tenant); redacted in `Debug`.
    pub headers: BTreeMap<String, String>,
    /// The `service.name` of the spans' resource.
    pub service_name: String,
    /// Share of the traces the gateway starts that are exported (0 to 1): the decision is
    /// made on the trace id, so every stage of one event agrees; a trace continued from an
    /// incoming `traceparent` follows its sampled flag instead.
    pub sampling_ratio: f64,
    /// Longest time one export may take.
    #[serde(with = "crate::time::serde_duration")]
    pub timeout: Duration,
    /// Finished spans waiting for export; beyond it new ones are dropped (and counted in
    /// `odoo_gateway_otlp_spans_dropped_total`), never waited for.
    pub max_queue: usize,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            protocol: OtlpProtocol::HttpProtobuf,
            headers: BTreeMap::new(),
            service_name: "odoo-gateway".to_owned(),
            sampling_ratio: 1.0,
            timeout: Duration::from_secs(10),
            max_queue: 2048,
        }
    }
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self
                    .headers
                    .keys()
                    .map(|k| (k, "[redacted]"))
                    .collect::<Vec<_>>(),
            )
            .field("service_name", &self.service_name)
            .field("sampling_ratio", &self.sampling_ratio)
            .field("timeout", &self.timeout)
            .field("max_queue", &self.max_queue)
            .finish()
    }
}

/// Largest `max_queue`: a queue of spans is memory.
const MAX_QUEUE: usize = 1 << 20;

impl OtlpConfig {
    /// The URL spans are sent to: the endpoint, with `/v1/traces` added for OTLP/HTTP when
    /// it names no path.
    pub fn url(&self) -> String {
        let bare = self
            .endpoint
            .parse::<http::Uri>()
            .is_ok_and(|u| matches!(u.path(), "" | "/"));
        match self.protocol {
            OtlpProtocol::HttpProtobuf if bare => {
                format!("{}/v1/traces", self.endpoint.trim_end_matches('/'))
            }
            _ => self.endpoint.clone(),
        }
    }
}

impl TelemetryConfig {
    /// Adds what is wrong, each naming its key.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.chart_interval < Duration::from_secs(1)
            || self.chart_interval > Duration::from_secs(3600)
        {
            problems.push("telemetry.chart_interval: give 1s to 1h".to_owned());
        }
        let Some(otlp) = &self.otlp else {
            return;
        };
        match otlp.endpoint.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => problems.push(format!(
                "telemetry.otlp.endpoint: `{}` is not an http(s) URL",
                otlp.endpoint
            )),
        }
        if !(0.0..=1.0).contains(&otlp.sampling_ratio) {
            problems.push("telemetry.otlp.sampling_ratio: give a number from 0 to 1".to_owned());
        }
        if otlp.service_name.trim().is_empty() {
            problems.push("telemetry.otlp.service_name: give a name".to_owned());
        }
        if otlp.timeout.is_zero() {
            problems.push("telemetry.otlp.timeout: give more than 0s".to_owned());
        }
        if otlp.max_queue == 0 || otlp.max_queue > MAX_QUEUE {
            problems.push(format!(
                "telemetry.otlp.max_queue: give 1 to {MAX_QUEUE} spans"
            ));
        }
        for (name, value) in &otlp.headers {
            // gRPC metadata keys are lower case; HTTP header names are case-insensitive.
            let name_ok = http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && !name.bytes().any(|b| b.is_ascii_uppercase());
            if !name_ok {
                problems.push(format!(
                    "telemetry.otlp.headers: `{name}` is not a lower-case header name"
                ));
            }
            if http::HeaderValue::from_str(value).is_err() {
                problems.push(format!(
                    "telemetry.otlp.headers: the value of `{name}` is not a valid header value"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> TelemetryConfig {
        toml::from_str(text).expect("parses")
    }

    fn problems(config: &TelemetryConfig) -> Vec<String> {
        let mut problems = Vec::new();
        config.validate(&mut problems);
        problems
    }

    #[test]
    fn otlp_is_off_by_default_and_a_bare_http_endpoint_gets_the_traces_path() {
        assert_eq!(parsed(""), TelemetryConfig::default());
        let on = parsed("[otlp]\nendpoint = \"http://127.0.0.1:4318\"");
        let otlp = on.otlp.as_ref().expect("on");
        assert_eq!(otlp.url(), "http://127.0.0.1:4318/v1/traces");
        assert!(problems(&on).is_empty(), "{:?}", problems(&on));
        let grpc = parsed("[otlp]\nendpoint = \"http://127.0.0.1:4317\"\nprotocol = \"grpc\"");
        assert_eq!(grpc.otlp.expect("on").url(), "http://127.0.0.1:4317");
        let path = parsed("[otlp]\nendpoint = \"https://c.example/otlp/v1/traces\"");
        assert_eq!(
            path.otlp.expect("on").url(),
            "https://c.example/otlp/v1/traces"
        );
    }

    #[test]
    fn every_bad_value_is_named_and_headers_stay_out_of_debug() {
        let bad = parsed(
            "chart_interval = \"0s\"\n[otlp]\nendpoint = \"collector:4318\"\nsampling_ratio = 1.5\n\
             service_name = \" \"\nmax_queue = 0\ntimeout = \"0s\"\n\
             headers = { Authorization = \"x\", ok = \"bad\\nvalue\" }",
        );
        let found = problems(&bad);
        for key in [
            "chart_interval",
            "endpoint",
            "sampling_ratio",
            "service_name",
            "max_queue",
            "timeout",
            "`Authorization`",
            "value of `ok`",
        ] {
            assert!(found.iter().any(|p| p.contains(key)), "{key}: {found:?}");
        }
        let secret =
            parsed("[otlp]\nendpoint = \"http://c:4318\"\nheaders = { x-api-key = \"s3cret\" }");
        let shown = format!("{:?}", secret.otlp.expect("on"));
        assert!(
            shown.contains("x-api-key") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(toml::from_str::<TelemetryConfig>("[otlp]\nendpont = \"x\"").is_err());
        assert!(toml::from_str::<TelemetryConfig>("[otlp]\nprotocol = \"http/json\"").is_err());
    }
}
