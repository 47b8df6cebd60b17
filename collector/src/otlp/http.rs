//! OTLP/HTTP: `POST /v1/traces` and `POST /v1/logs`, protobuf
//! (`application/x-protobuf`) or JSON (`application/json`) bodies, plain or
//! `Content-Encoding: gzip`.
//!
//! As the specification asks, a success is the export response in the
//! request's encoding (with `partial_success` when some spans or log
//! records were rejected), and an error is a `google.rpc.Status` in the
//! request's encoding (protobuf when the content type is not one of the
//! two): 400 for a body that is not a request, 413 past the body limit
//! (compressed or inflated) or the record limit, 415 for another content
//! type or encoding, 429 with `Retry-After` when the ingest queue is full,
//! 503 with `Retry-After` when shutting down or the write-ahead log failed
//! (an SDK retries both), 500 without detail for
//! anything else. No server internals reach the body.

use std::future::Future;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde::Serialize;

use crate::error::IngestError;
use crate::otlp::decode::{self, DecodeError, Encoding};
use crate::otlp::ingest::{Accepted, Otlp};

/// `google.rpc.Status`, the body of every OTLP/HTTP error (its `details`
/// are left out, as the specification allows).
#[derive(Clone, PartialEq, Message, Serialize)]
struct RpcStatus {
    /// A gRPC status code.
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// gRPC codes used in the statuses.
const INVALID_ARGUMENT: i32 = 3;
const RESOURCE_EXHAUSTED: i32 = 8;
const INTERNAL: i32 = 13;
const UNAVAILABLE: i32 = 14;

/// `POST /v1/traces`.
pub(crate) async fn traces(
    State(otlp): State<Otlp>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    export(
        otlp,
        headers,
        body,
        "spans",
        |otlp, request: ExportTraceServiceRequest, encoded| async move {
            otlp.traces(request, encoded).await
        },
        |rejected, error_message| ExportTraceServiceResponse {
            partial_success: partial(rejected, &error_message).then_some(
                ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message,
                },
            ),
        },
    )
    .await
}

/// `POST /v1/logs`.
pub(crate) async fn logs(
    State(otlp): State<Otlp>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    export(
        otlp,
        headers,
        body,
        "log records",
        |otlp, request: ExportLogsServiceRequest, encoded| async move {
            otlp.logs(request, encoded).await
        },
        |rejected, error_message| ExportLogsServiceResponse {
            partial_success: partial(rejected, &error_message).then_some(
                ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message,
                },
            ),
        },
    )
    .await
}

/// Whether an answer carries a partial success: something was rejected or
/// there is something to say.
fn partial(rejected: i64, message: &str) -> bool {
    rejected > 0 || !message.is_empty()
}

/// What both routes do: read the body, decode the export (`what` it holds)
/// on the blocking pool, hand it to `ingest` with the body if that is
/// protobuf (its items are hashed on it), and answer with `reply` of the
/// rejected count and message, in the request's encoding.
async fn export<Req, Resp, Fut>(
    otlp: Otlp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    what: &'static str,
    ingest: impl FnOnce(Otlp, Req, Option<Bytes>) -> Fut,
    reply: impl FnOnce(i64, String) -> Resp,
) -> Response
where
    Req: Message + Default + serde::de::DeserializeOwned + Send + 'static,
    Resp: Message + Serialize,
    Fut: Future<Output = Result<Accepted, IngestError>>,
{
    let (encoding, body) = match read(&otlp, &headers, body).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let max_records = otlp.max_records;
    let decoded = tokio::task::spawn_blocking(move || {
        let request = decode::decode::<Req>(&body, encoding, max_records, what)?;
        let encoded = (encoding == Encoding::Protobuf).then_some(body);
        Ok((request, encoded))
    })
    .await;
    let (request, encoded) = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(error)) => return decode_error(encoding, error),
        Err(error) => return ingest_error(encoding, IngestError::Internal(error.to_string())),
    };
    match ingest(otlp, request, encoded).await {
        Ok(Accepted { rejected, message }) => {
            answer(encoding, StatusCode::OK, &reply(rejected, message))
        }
        Err(error) => ingest_error(encoding, error),
    }
}

/// The body's encoding and its bytes, inflated if gzip; an error answer
/// otherwise.
async fn read(
    otlp: &Otlp,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Encoding, Bytes), Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoding) = Encoding::from_content_type(content_type) else {
        return Err(status(
            Encoding::Protobuf,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            INVALID_ARGUMENT,
            "OTLP/HTTP takes application/x-protobuf or application/json".to_owned(),
        ));
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                RESOURCE_EXHAUSTED
            } else {
                INVALID_ARGUMENT
            };
            let message = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "the request body is larger than {} bytes",
                    otlp.max_body_bytes
                )
            } else {
                "the request body could not be read".to_owned()
            };
            return Err(status(encoding, rejection.status(), code, message));
        }
    };
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    match content_encoding {
        None | Some("") => Ok((encoding, body)),
        Some(e) if e.eq_ignore_ascii_case("identity") => Ok((encoding, body)),
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            let limit = otlp.max_body_bytes;
            match tokio::task::spawn_blocking(move || decode::gunzip(&body, limit)).await {
                Ok(Ok(inflated)) => Ok((encoding, Bytes::from(inflated))),
                Ok(Err(error)) => Err(decode_error(encoding, error)),
                Err(error) => Err(ingest_error(
                    encoding,
                    IngestError::Internal(error.to_string()),
                )),
            }
        }
        Some(_) => Err(status(
            encoding,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            INVALID_ARGUMENT,
            "the content encoding must be gzip or none".to_owned(),
        )),
    }
}

fn decode_error(encoding: Encoding, error: DecodeError) -> Response {
    match error {
        DecodeError::TooLarge(message) => status(
            encoding,
            StatusCode::PAYLOAD_TOO_LARGE,
            RESOURCE_EXHAUSTED,
            message,
        ),
        DecodeError::Bad(message) => {
            status(encoding, StatusCode::BAD_REQUEST, INVALID_ARGUMENT, message)
        }
    }
}

fn ingest_error(encoding: Encoding, error: IngestError) -> Response {
    let (http, code, message) = match error {
        IngestError::BadBatch(m) => (StatusCode::BAD_REQUEST, INVALID_ARGUMENT, m),
        IngestError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, RESOURCE_EXHAUSTED, m),
        IngestError::Internal(detail) => {
            tracing::error!(error = %detail, "OTLP ingest failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                INTERNAL,
                "internal error".to_owned(),
            )
        }
        IngestError::Overloaded => (
            StatusCode::TOO_MANY_REQUESTS,
            RESOURCE_EXHAUSTED,
            "the indexer queue is full, retry later".to_owned(),
        ),
        IngestError::ShuttingDown => (
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            "the collector is shutting down".to_owned(),
        ),
        // Retryable, unlike a 500, which an OTLP exporter drops.
        IngestError::IndexFailed => (
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            "the export could not be made durable, retry it".to_owned(),
        ),
    };
    status(encoding, http, code, message)
}

/// A `google.rpc.Status` answer; 429 and 503 also say `Retry-After: 1`.
fn status(encoding: Encoding, http: StatusCode, code: i32, message: String) -> Response {
    let mut response = answer(encoding, http, &RpcStatus { code, message });
    if http == StatusCode::SERVICE_UNAVAILABLE || http == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn answer<T: Message + Serialize>(encoding: Encoding, http: StatusCode, body: &T) -> Response {
    let bytes = match encoding {
        Encoding::Protobuf => body.encode_to_vec(),
        Encoding::Json => {
            // Serializing these message types cannot fail (string keys
            // only). An unset message field is left out, as protobuf's
            // JSON mapping writes it, not written as `null`.
            let mut value = serde_json::to_value(body).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.retain(|_, v| !v.is_null());
            }
            serde_json::to_vec(&value).unwrap_or_default()
        }
    };
    (
        http,
        [(header::CONTENT_TYPE, encoding.content_type())],
        bytes,
    )
        .into_response()
}
