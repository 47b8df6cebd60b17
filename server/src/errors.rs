//! Every error a daemon answers is JSON, `{"error":{"code","message"}}`:
//! [`error_response`] builds one, and `json_errors` rewrites the errors that
//! axum and tower write themselves (plain-text extractor rejections, empty
//! 404/405/408) into that shape. A 5xx never carries an internal message:
//! what went wrong is in our log, the body says only that it did.

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_model::{ApiError, ApiErrorBody, strip_control};

/// The longest message kept from a rejection text written by axum.
const MAX_MESSAGE_BYTES: usize = 1024;

/// A JSON error response with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        error_response(self.status, self.code, self.message)
    }
}

/// `{"error":{"code","message"}}` with `status`; 503 and 429 also say
/// `Retry-After: 1`.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ApiErrorBody {
        error: ApiError {
            code: code.to_owned(),
            message: message.into(),
        },
    };
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The stable code and a default message for a status.
pub(crate) fn code_for(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request could not be read"),
        StatusCode::UNAUTHORIZED => ("unauthorized", "a valid bearer token is required"),
        StatusCode::FORBIDDEN => ("forbidden", "not allowed"),
        StatusCode::NOT_FOUND => ("not_found", "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this endpoint does not take that method",
        ),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request was not received in time"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request target is too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "this endpoint does not take that content type",
        ),
        StatusCode::UNPROCESSABLE_ENTITY => ("unprocessable", "the request could not be processed"),
        StatusCode::TOO_MANY_REQUESTS => ("too_many_requests", "too many requests, retry later"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            ("headers_too_large", "the request headers are too large")
        }
        StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "unavailable, retry later"),
        s if s.is_server_error() => ("internal", "internal error"),
        _ => ("error", "the request failed"),
    }
}

/// Rewrites an error response that is not JSON yet into the JSON shape,
/// keeping its status and headers (`Allow`, `Retry-After`). A client error
/// keeps axum's reason (cleaned and bounded) as its message, since it says
/// what was wrong with the request; a server error keeps none of its body.
pub(crate) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let (code, default_message) = code_for(status);
    let message = if status.is_client_error() {
        match to_bytes(body, 4 * MAX_MESSAGE_BYTES).await {
            Ok(bytes) if !bytes.is_empty() => bounded(&String::from_utf8_lossy(&bytes)),
            _ => default_message.to_owned(),
        }
    } else {
        default_message.to_owned()
    };
    let fresh = error_response(status, code, message);
    let (fresh_parts, fresh_body) = fresh.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &fresh_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, fresh_body)
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Control characters out, at most [`MAX_MESSAGE_BYTES`].
fn bounded(text: &str) -> String {
    let clean = strip_control(text.trim());
    if clean.len() <= MAX_MESSAGE_BYTES {
        return clean;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &clean[..end])
}

/// The answer to a handler that panicked: 500, generic; the panic is logged.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    tracing::error!(panic = %detail, "request handler panicked");
    let (code, message) = code_for(StatusCode::INTERNAL_SERVER_ERROR);
    error_response(StatusCode::INTERNAL_SERVER_ERROR, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_plain_text_rejection_becomes_json_with_its_reason() {
        let plain = (
            StatusCode::BAD_REQUEST,
            "Failed to deserialize query string: limit: invalid digit\u{1b}[31m",
        )
            .into_response();
        let response = json_errors(plain).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "bad_request");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("invalid digit"), "{message}");
        assert!(!message.contains('\u{1b}'), "{message}");
    }

    #[tokio::test]
    async fn a_server_error_keeps_no_internal_text_and_keeps_its_headers() {
        let mut internal = (
            StatusCode::SERVICE_UNAVAILABLE,
            "/var/lib/causeway/index: no such file",
        )
            .into_response();
        internal
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        let response = json_errors(internal).await;
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(!body.to_string().contains("/var/lib"), "{body}");
    }

    #[tokio::test]
    async fn json_and_successful_responses_pass_untouched() {
        let ok = json_errors((StatusCode::OK, "fine").into_response()).await;
        assert_eq!(ok.status(), StatusCode::OK);
        let already = error_response(StatusCode::NOT_FOUND, "no_flow", "no flow x");
        let body = body_json(json_errors(already).await).await;
        assert_eq!(body["error"]["code"], "no_flow");
    }

    #[test]
    fn a_long_message_is_cut() {
        let long = "x".repeat(10 * MAX_MESSAGE_BYTES);
        assert!(bounded(&long).len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
    }
}
