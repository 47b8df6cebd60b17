//! Query errors and their HTTP mapping: one enum, a stable code per
//! variant, a JSON body, internals logged but never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_index::IndexError;
use causeway_model::{ApiError, ApiErrorBody};

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the index is not there yet: {0}")]
    IndexNotReady(String),
    #[error("internal error")]
    Internal(String),
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
}

impl From<IndexError> for QueryError {
    fn from(error: IndexError) -> Self {
        match error {
            IndexError::Query(message) => QueryError::BadRequest(message),
            IndexError::Missing { .. } => QueryError::IndexNotReady(error.to_string()),
            other => QueryError::Internal(other.to_string()),
        }
    }
}

impl QueryError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            QueryError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            QueryError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            QueryError::IndexNotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "index_not_ready"),
            QueryError::Internal(_) | QueryError::Serve(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let QueryError::Internal(detail) = &self {
            tracing::error!(error = %detail, "query failed");
        }
        let body = ApiErrorBody {
            error: ApiError {
                code: code.to_owned(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
