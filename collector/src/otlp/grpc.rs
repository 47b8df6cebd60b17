//! OTLP/gRPC: the `TraceService` and `LogsService` of opentelemetry-proto's
//! generated servers, gzip accepted, on the collector's gRPC listener.
//!
//! A guard in front of them reads the request within the body limit,
//! inflates a gzip message up to the same limit (so the limit is on the
//! inflated size too, and a zip bomb stops there), counts the spans or log
//! records on the encoded bytes and refuses past the record limit before
//! anything is decoded, then hands the services the plain message, and
//! its bytes in the request's extensions so that its items are hashed on
//! them instead of encoded again.
//!
//! Answers: `RESOURCE_EXHAUSTED` past a limit (not retried by exporters),
//! and when the ingest queue is full with a `RetryInfo` of 1 s (retried
//! after it, as the OTLP specification asks), `INVALID_ARGUMENT` for a
//! message that is not a request, `UNAVAILABLE` when the write-ahead log
//! failed or the collector is stopping (retried), `INTERNAL` without
//! detail for anything else.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::IngestError;
use crate::otlp::decode::{self, DecodeError};
use crate::otlp::ingest::{Accepted, Otlp};

const TRACE_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
/// A gRPC message's prefix: a compressed flag and a 4-byte length.
const FRAME_HEADER: usize = 5;

/// Both services behind the guard, as one router for `causeway_server::serve`.
pub(crate) fn router(otlp: Otlp) -> Router {
    // The guard already inflated and bounded the message; this is a backstop.
    let limit = otlp.max_body_bytes.saturating_add(FRAME_HEADER);
    let traces = TraceServiceServer::new(Receiver(otlp.clone()))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    let logs = LogsServiceServer::new(Receiver(otlp.clone()))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    tonic::service::Routes::new(traces)
        .add_service(logs)
        .into_axum_router()
        .layer(from_fn_with_state(otlp, guard))
}

#[derive(Debug, Clone)]
struct Receiver(Otlp);

/// The protobuf bytes of an export, as [`guard`] read them: its items are
/// hashed on them rather than encoded again.
#[derive(Debug, Clone)]
struct Encoded(Bytes);

impl Encoded {
    fn take<T>(request: &mut tonic::Request<T>) -> Option<Bytes> {
        request.extensions_mut().remove::<Encoded>().map(|e| e.0)
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        mut request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        let encoded = Encoded::take(&mut request);
        let Accepted { rejected, message } = self
            .0
            .traces(request.into_inner(), encoded)
            .await
            .map_err(status)?;
        let partial_success =
            (rejected > 0 || !message.is_empty()).then_some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: message,
            });
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success,
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        mut request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, Status> {
        let encoded = Encoded::take(&mut request);
        let Accepted { rejected, message } = self
            .0
            .logs(request.into_inner(), encoded)
            .await
            .map_err(status)?;
        let partial_success =
            (rejected > 0 || !message.is_empty()).then_some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: message,
            });
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success,
        }))
    }
}

fn status(error: IngestError) -> Status {
    match error {
        IngestError::BadBatch(m) => Status::invalid_argument(m),
        IngestError::TooLarge(m) => Status::resource_exhausted(m),
        IngestError::Internal(detail) => {
            tracing::error!(error = %detail, "OTLP ingest failed");
            Status::internal("internal error")
        }
        // The OTLP specification: RESOURCE_EXHAUSTED is retried only when
        // the server says when, with RetryInfo.
        IngestError::Overloaded => Status::with_error_details(
            Code::ResourceExhausted,
            "the ingest queue is full, retry later",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
        ),
        IngestError::ShuttingDown => Status::unavailable("the collector is shutting down"),
        IngestError::IndexFailed => {
            Status::unavailable("the export could not be made durable, retry it")
        }
    }
}

/// Bounds an export before the generated service decodes it (see the
/// module docs); other paths pass as they are.
async fn guard(State(otlp): State<Otlp>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path != TRACE_EXPORT && path != LOGS_EXPORT {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let limit = otlp.max_body_bytes;
    let bytes = match to_bytes(body, limit.saturating_add(FRAME_HEADER)).await {
        Ok(bytes) => bytes,
        Err(error) => {
            let too_large = error
                .into_inner()
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return if too_large {
                refuse(
                    Code::ResourceExhausted,
                    format!("the request is larger than {limit} bytes"),
                )
            } else {
                refuse(
                    Code::InvalidArgument,
                    "the request could not be read".to_owned(),
                )
            };
        }
    };
    let Some(header) = bytes.get(..FRAME_HEADER) else {
        // No message at all: the service answers that itself.
        parts.headers.remove(header::CONTENT_LENGTH);
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    };
    let compressed = header[0] == 1;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if bytes.len() - FRAME_HEADER != len {
        return refuse(
            Code::InvalidArgument,
            "a unary export is exactly one gRPC message".to_owned(),
        );
    }
    let message = bytes.slice(FRAME_HEADER..);
    let gzip = parts
        .headers
        .get("grpc-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let (message, inflated) = if compressed && gzip {
        match tokio::task::spawn_blocking(move || decode::gunzip(&message, limit)).await {
            Ok(Ok(inflated)) => (Bytes::from(inflated), true),
            Ok(Err(DecodeError::TooLarge(m))) => return refuse(Code::ResourceExhausted, m),
            Ok(Err(DecodeError::Bad(m))) => return refuse(Code::InvalidArgument, m),
            Err(_) => return refuse(Code::Internal, "internal error".to_owned()),
        }
    } else if compressed {
        // An encoding we do not take: the service says so.
        (message, false)
    } else {
        (message, false)
    };
    if !compressed || inflated {
        match decode::count_protobuf(&message) {
            Ok(count) if count > otlp.max_records => {
                return refuse(
                    Code::ResourceExhausted,
                    format!(
                        "the request holds {count} spans or log records, the limit is {}",
                        otlp.max_records
                    ),
                );
            }
            Ok(_) => {}
            Err(DecodeError::Bad(m) | DecodeError::TooLarge(m)) => {
                return refuse(Code::InvalidArgument, m);
            }
        }
        parts.extensions.insert(Encoded(message.clone()));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = if inflated {
        parts.headers.remove("grpc-encoding");
        let Ok(len) = u32::try_from(message.len()) else {
            return refuse(
                Code::ResourceExhausted,
                "the message is too large".to_owned(),
            );
        };
        let mut framed = Vec::with_capacity(FRAME_HEADER + message.len());
        framed.push(0);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&message);
        Body::from(framed)
    } else {
        Body::from(bytes)
    };
    next.run(Request::from_parts(parts, body)).await
}

fn refuse(code: Code, message: String) -> Response {
    Status::new(code, message).into_http::<Body>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_is_resource_exhausted_with_a_retry_delay() {
        let full = status(IngestError::Overloaded);
        assert_eq!(full.code(), Code::ResourceExhausted);
        let retry = full
            .get_details_retry_info()
            .expect("RetryInfo in the details");
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
        // A limit passed is not worth retrying: no delay is offered.
        let too_large = status(IngestError::TooLarge("too many spans".into()));
        assert_eq!(too_large.code(), Code::ResourceExhausted);
        assert!(too_large.get_details_retry_info().is_none());
    }
}
