//! The test's OTLP receiver: what a collector decodes, with the official protobuf
//! definitions, over OTLP/HTTP (`POST /v1/traces`) and OTLP/gRPC (the generated
//! `TraceService`, served by hyper over HTTP/2). It keeps every span with its resource's
//! `service.name`, and can hang instead of answering.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

/// What a collector received: every span with its resource's `service.name`, and how many
/// export requests came.
#[derive(Debug, Default)]
pub(crate) struct Received {
    spans: Vec<(String, Span)>,
    requests: usize,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Collector {
    received: Arc<Mutex<Received>>,
    /// Never answer (a collector that hangs).
    hang: bool,
}

impl Collector {
    /// A collector that takes every export request and never answers.
    pub(crate) fn hanging() -> Self {
        Self {
            hang: true,
            ..Self::default()
        }
    }

    fn take(&self, request: ExportTraceServiceRequest) {
        let mut received = self.received.lock().expect("lock");
        received.requests += 1;
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.spans.push((service.clone(), span));
                }
            }
        }
    }

    pub(crate) fn spans(&self) -> Vec<(String, Span)> {
        self.received.lock().expect("lock").spans.clone()
    }

    pub(crate) fn requests(&self) -> usize {
        self.received.lock().expect("lock").requests
    }

    /// OTLP/HTTP: `POST /v1/traces`, a protobuf `ExportTraceServiceRequest`.
    pub(crate) async fn serve_http(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let collector = self.clone();
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let collector = collector.clone();
                    async move {
                        assert_eq!(req.uri().path(), "/v1/traces");
                        assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                        assert_eq!(req.headers()["x-tenant"], "acme");
                        let body = req.into_body().collect().await.expect("body").to_bytes();
                        let request =
                            ExportTraceServiceRequest::decode(body).expect("an OTLP request");
                        collector.take(request);
                        if collector.hang {
                            std::future::pending::<()>().await;
                        }
                        let answer = ExportTraceServiceResponse::default().encode_to_vec();
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::from(answer)))
                                .expect("response"),
                        )
                    }
                });
                tokio::spawn(
                    auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned(),
                );
            }
        });
        format!("http://{addr}")
    }

    /// OTLP/gRPC: the generated `TraceService`, served over HTTP/2.
    pub(crate) async fn serve_grpc(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let service = TraceServiceServer::new(self);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = TowerToHyperService::new(service.clone());
                tokio::spawn(
                    auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned(),
                );
            }
        });
        format!("http://{addr}")
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        assert_eq!(
            request
                .metadata()
                .get("x-tenant")
                .and_then(|v| v.to_str().ok()),
            Some("acme")
        );
        self.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// An attribute of `span`, as text (integers and booleans written out).
pub(crate) fn attr(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}
