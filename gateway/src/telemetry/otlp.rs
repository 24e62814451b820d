//! OTLP export of the stage spans ([`crate::trace`]): the `tracing` layer that turns them
//! into OpenTelemetry spans, and the pipeline that sends them to the operator's collector
//! over OTLP/HTTP (protobuf) or OTLP/gRPC.
//!
//! The layer ([`layer`]) is part of the process's subscriber from the start (the CLI's log
//! set-up installs it); it takes only spans of [`crate::trace::TARGET`], which are made only
//! while a pipeline runs, so a gateway without `[telemetry.otlp]` makes and exports nothing.
//! [`Pipeline::start`] builds the exporter from the configuration and plugs it in; a
//! finished span is offered to a bounded queue and dropped (counted in
//! `odoo_gateway_otlp_spans_dropped_total`) when the queue is full, so export never waits on,
//! blocks or slows the data path. One task batches the queue and exports; a batch the
//! collector refuses or that times out is dropped and counted, never retried forever.
//!
//! One pipeline per process: the last one started is the one that exports.

mod http_client;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use opentelemetry::trace::{Link, SpanKind, TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SamplingDecision, SamplingResult, ShouldSample, SpanData,
    SpanExporter as _, SpanProcessor,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::mpsc;

use super::settings::{OtlpConfig, OtlpProtocol};

/// Spans sent in one export, at most.
const BATCH: usize = 512;
/// How long a batch waits for more spans once its first one is there.
const LINGER: Duration = Duration::from_secs(1);

/// Why an exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The OTLP exporter refused the settings.
    #[error("telemetry.otlp: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A header is not a valid gRPC metadata entry.
    #[error("telemetry.otlp.headers: {0}")]
    Header(String),
}

/// Counters of the export, registered with the gateway's metrics.
#[derive(Debug, Clone, Default)]
pub struct ExportCounters {
    /// Spans the collector took.
    pub exported: Counter,
    /// Spans lost, by reason (`queue_full`, `export_failed`).
    pub dropped: Family<super::Reason, Counter>,
}

impl ExportCounters {
    fn drop_spans(&self, reason: &str, n: usize) {
        self.dropped
            .get_or_create(&super::Reason {
                reason: reason.to_owned(),
            })
            .inc_by(n as u64);
    }
}

/// The running pipeline: a bounded queue and the task that empties it.
#[derive(Debug)]
struct Queue {
    spans: mpsc::Sender<SpanData>,
    counters: ExportCounters,
}

/// The pipeline spans go to now, if any.
static CURRENT: ArcSwapOption<Queue> = ArcSwapOption::const_empty();

/// A running export pipeline; [`Pipeline::stop`] sends what is queued and ends it.
#[derive(Debug)]
pub struct Pipeline {
    task: tokio::task::JoinHandle<()>,
}

impl Pipeline {
    /// Builds the exporter `config` describes and starts exporting (on the current runtime).
    pub fn start(config: &OtlpConfig, counters: ExportCounters) -> Result<Self, OtlpError> {
        if PROVIDER.get().is_none() {
            tracing::warn!(
                "[telemetry.otlp] is set, but this process's log subscriber has no OTLP layer: no span will be made"
            );
        }
        let mut exporter = exporter(config)?;
        exporter.set_resource(
            &opentelemetry_sdk::Resource::builder_empty()
                .with_service_name(config.service_name.clone())
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        let (spans, queued) = mpsc::channel(config.max_queue);
        let timeout = config.timeout;
        let task = tokio::spawn(export_loop(queued, exporter, counters.clone(), timeout));
        CURRENT.store(Some(Arc::new(Queue { spans, counters })));
        crate::trace::set_exporting(Some(config.sampling_ratio));
        tracing::info!(endpoint = %config.url(), protocol = ?config.protocol, "exporting spans over OTLP");
        Ok(Self { task })
    }

    /// Stops making spans, sends those queued (for at most `grace`) and ends the export.
    pub async fn stop(self, grace: Duration) {
        crate::trace::set_exporting(None);
        // Dropping the queue's last sender ends the loop once it has sent what is left.
        CURRENT.store(None);
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("spans still waiting for export at shutdown were dropped");
        }
    }
}

fn exporter(config: &OtlpConfig) -> Result<opentelemetry_otlp::SpanExporter, OtlpError> {
    let url = config.url();
    let exporter = match config.protocol {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(config.timeout)
            .with_headers(config.headers.clone().into_iter().collect())
            .with_http_client(http_client::OtlpHttpClient::new(config.timeout))
            .build()?,
        OtlpProtocol::Grpc => {
            let mut headers = http::HeaderMap::new();
            for (name, value) in &config.headers {
                let name = http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| OtlpError::Header(format!("{name}: {e}")))?;
                let value = http::HeaderValue::from_str(value)
                    .map_err(|e| OtlpError::Header(format!("{name}: {e}")))?;
                headers.insert(name, value);
            }
            let metadata =
                opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers);
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(url.clone())
                .with_timeout(config.timeout)
                .with_metadata(metadata);
            if url.starts_with("https:") {
                builder = builder.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_enabled_roots(),
                );
            }
            builder.build()?
        }
    };
    Ok(exporter)
}

/// Empties the queue in batches of up to [`BATCH`] spans, each sent within `timeout`.
async fn export_loop(
    mut queued: mpsc::Receiver<SpanData>,
    exporter: opentelemetry_otlp::SpanExporter,
    counters: ExportCounters,
    timeout: Duration,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while queued.recv_many(&mut batch, BATCH).await > 0 {
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH {
            let room = BATCH - batch.len();
            tokio::select! {
                more = queued.recv_many(&mut batch, room) => if more == 0 { break },
                () = &mut linger => break,
            }
        }
        let spans = std::mem::take(&mut batch);
        let n = spans.len();
        // The exporter has its own timeout and retries; this bounds them together.
        match tokio::time::timeout(timeout * 2, exporter.export(spans)).await {
            Ok(Ok(())) => {
                counters.exported.inc_by(n as u64);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, spans = n, "OTLP export failed; the spans are dropped");
                counters.drop_spans("export_failed", n);
            }
            Err(_) => {
                tracing::warn!(spans = n, "OTLP export timed out; the spans are dropped");
                counters.drop_spans("export_failed", n);
            }
        }
    }
}

/// Hands each finished span to the running pipeline's queue, never waiting.
#[derive(Debug)]
struct Bridge;

impl SpanProcessor for Bridge {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let current = CURRENT.load();
        let Some(queue) = current.as_ref() else {
            return;
        };
        if queue.spans.try_send(span).is_err() {
            queue.counters.drop_spans("queue_full", 1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Random ids, except for a span whose ids the stage set ([`crate::trace`]).
#[derive(Debug)]
struct StageIds(RandomIdGenerator);

impl IdGenerator for StageIds {
    fn new_trace_id(&self) -> TraceId {
        match crate::trace::next_ids().and_then(|ids| ids.trace) {
            Some(id) => TraceId::from_bytes(id),
            None => self.0.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        match crate::trace::next_ids() {
            Some(ids) => opentelemetry::trace::SpanId::from_bytes(ids.span),
            None => self.0.new_span_id(),
        }
    }
}

/// A child follows its parent's decision; a root is sampled by the ratio on its trace id
/// (as every later stage of the trace decides); a span marked discarded is dropped.
#[derive(Debug, Clone)]
struct StageSampler;

impl ShouldSample for StageSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context
            .filter(|cx| cx.has_active_span())
            .map(|cx| cx.span().span_context().clone())
            .filter(|sc| sc.is_valid());
        let discarded = attributes
            .iter()
            .any(|kv| kv.key.as_str() == crate::trace::DISCARD);
        let sampled = !discarded
            && match &parent {
                Some(parent) => parent.is_sampled(),
                None => crate::trace::sampled(trace_id),
            };
        SamplingResult {
            decision: if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state: parent.map(|p| p.trace_state().clone()).unwrap_or_default(),
        }
    }
}

static PROVIDER: OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> = OnceLock::new();

/// The `tracing` layer of the stage spans, for the process's subscriber: it takes spans of
/// [`crate::trace::TARGET`] only, and hands them to whichever pipeline runs.
pub fn layer<S>() -> impl tracing_subscriber::Layer<S> + Send + Sync
where
    S: tracing::Subscriber
        + for<'span> tracing_subscriber::registry::LookupSpan<'span>
        + Send
        + Sync,
{
    use tracing_subscriber::Layer as _;
    let provider = PROVIDER.get_or_init(|| {
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(Bridge)
            .with_id_generator(StageIds(RandomIdGenerator::default()))
            .with_sampler(StageSampler)
            .build()
    });
    // Every level of the stage target (a stage's parent may be finer than INFO). This raises
    // the subscriber's level hint to TRACE; `cli::init_logs` puts the `log` crate's maximum
    // back to the log filter's, so dependencies' `log` records do not pay for it.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target(crate::trace::TARGET, tracing::Level::TRACE);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("odoo-gateway"))
        .with_location(false)
        .with_threads(false)
        .with_filter(filter)
}
