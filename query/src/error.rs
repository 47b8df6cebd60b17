//! Query errors, two kinds: [`QueryError`] is why the daemon could not
//! start or serve; [`RequestError`] is why one request failed, with a stable
//! code per variant and a JSON body. Internals are logged, never sent: no
//! server path, no index message reaches a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use causeway_index::IndexError;
use causeway_server::error_response;

/// Why the query daemon could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Contracts(#[from] crate::topology::ContractsError),
    /// The `[query.alerts]` section failed its checks.
    #[error("{0}")]
    Alerts(String),
}

/// Why one request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the index is not there yet: start the collector, or wait for its first commit")]
    IndexNotReady,
    #[error("too many reads in progress, retry shortly")]
    Busy,
    /// The detail is for our log only.
    #[error("internal error")]
    Internal(String),
}

impl From<IndexError> for RequestError {
    fn from(error: IndexError) -> Self {
        match error {
            IndexError::Query(message) => RequestError::BadRequest(message),
            IndexError::Missing { .. } => {
                tracing::debug!(%error, "query before the index exists");
                RequestError::IndexNotReady
            }
            other => RequestError::Internal(other.to_string()),
        }
    }
}

impl RequestError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            RequestError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            RequestError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            RequestError::IndexNotReady => (StatusCode::SERVICE_UNAVAILABLE, "index_not_ready"),
            RequestError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            RequestError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let RequestError::Internal(detail) = &self {
            tracing::error!(error = %detail, "query failed");
        }
        error_response(status, code, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn index_errors_map_to_statuses_without_their_internals() {
        let missing = RequestError::from(IndexError::Missing {
            path: PathBuf::from("/srv/secret/data/index"),
        });
        assert_eq!(
            missing.status_and_code(),
            (StatusCode::SERVICE_UNAVAILABLE, "index_not_ready")
        );
        assert!(!missing.to_string().contains("/srv"), "{missing}");
        let internal = RequestError::from(IndexError::Internal("flows aggregation: x".into()));
        assert_eq!(
            internal.status_and_code(),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert_eq!(internal.to_string(), "internal error");
        let bad = RequestError::from(IndexError::Query("unexpected `(`".into()));
        assert_eq!(
            bad.status_and_code(),
            (StatusCode::BAD_REQUEST, "bad_request")
        );
    }
}
