//! Collector errors: start-up failures and the HTTP error responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use causeway_server::error_response;

/// Why the collector could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("opening the index: {0}")]
    Index(#[from] causeway_index::IndexError),
    #[error("starting the indexer thread: {0}")]
    Thread(std::io::Error),
    #[error("opening the write-ahead log: {0}")]
    Wal(std::io::Error),
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
}

/// An ingest request that was not accepted. Internals never reach the body.
#[derive(Debug)]
pub(crate) enum IngestError {
    BadBatch(String),
    TooLarge(String),
    /// The detail is for our log only.
    Internal(String),
    Overloaded,
    ShuttingDown,
    IndexFailed,
}

impl IngestError {
    /// The error code of the answer, also the metrics' rejection reason.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            IngestError::BadBatch(_) => "bad_batch",
            IngestError::TooLarge(_) => "batch_too_large",
            IngestError::Internal(_) => "internal",
            IngestError::Overloaded => "overloaded",
            IngestError::ShuttingDown => "shutting_down",
            IngestError::IndexFailed => "index_failed",
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            IngestError::BadBatch(m) => (StatusCode::BAD_REQUEST, "bad_batch", m),
            IngestError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large", m),
            IngestError::Internal(detail) => {
                tracing::error!(error = %detail, "ingest failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_owned(),
                )
            }
            IngestError::Overloaded => (
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                "the indexer queue is full, retry later".to_owned(),
            ),
            IngestError::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the collector is shutting down".to_owned(),
            ),
            IngestError::IndexFailed => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "index_failed",
                "the batch could not be made durable, retry it".to_owned(),
            ),
        };
        error_response(status, code, message)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header;

    use super::*;

    #[test]
    fn overload_answers_429_with_retry_after() {
        let response = IngestError::Overloaded.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = IngestError::BadBatch("x".into()).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
