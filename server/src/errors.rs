//! Every error a daemon answers is JSON, `{"error":{"code","message"}}`:
//! [`error_response`] builds one, and `json_errors` rewrites the errors that
//! axum and tower write themselves (plain-text extractor rejections, empty
//! 404/405/408) into that shape. A 5xx never carries an internal message:
//! what went wrong is in our log, the body says only that it did.

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use causeway_model::{ApiError, ApiErrorBody, char_prefix, strip_control};

/// The longest message kept from a rejection text written by axum.
const MAX_MESSAGE_BYTES: usize = 1024;

/// `{"error":{"code","message"}}` with `status`; 503 and 429 also say
/// `Retry-After: 1`.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let mut response = (status, Json(error_body(code, message))).into_response();
    if asks_for_retry(status) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// [`error_response`] with the status's own code.
pub(crate) fn status_response(status: StatusCode, message: impl Into<String>) -> Response {
    error_response(status, code_for(status).0, message)
}

/// The same answer as raw HTTP/1.1 bytes that close the connection, for
/// the places that write to the socket themselves (a refused connection,
/// hyper's own parse errors), with the status's default message.
pub(crate) fn raw_status_response(status: StatusCode, detail: &str) -> Vec<u8> {
    let (code, message) = code_for(status);
    let message = if detail.is_empty() {
        message.to_owned()
    } else {
        format!("{message}: {detail}")
    };
    let body = serde_json::to_string(&error_body(code, message)).unwrap_or_default();
    let retry = if asks_for_retry(status) {
        "retry-after: 1\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\n{retry}connection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        body.len()
    )
    .into_bytes()
}

fn error_body(code: &str, message: impl Into<String>) -> ApiErrorBody {
    ApiErrorBody {
        error: ApiError {
            code: code.to_owned(),
            message: message.into(),
        },
    }
}

fn asks_for_retry(status: StatusCode) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS
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
    if !(status.is_client_error() || status.is_server_error()) || is_shaped(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let (_, default_message) = code_for(status);
    let message = if status.is_client_error() {
        match to_bytes(body, 4 * MAX_MESSAGE_BYTES).await {
            Ok(bytes) if !bytes.is_empty() => bounded(&String::from_utf8_lossy(&bytes)),
            _ => default_message.to_owned(),
        }
    } else {
        default_message.to_owned()
    };
    let fresh = status_response(status, message);
    let (fresh_parts, fresh_body) = fresh.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &fresh_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, fresh_body)
}

/// Whether the handler already wrote the error in a shape a client reads:
/// JSON, or protobuf (the `google.rpc.Status` the OTLP specification asks
/// OTLP/HTTP errors to be).
fn is_shaped(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/json") || v.starts_with("application/x-protobuf")
        })
}

/// Control characters out, at most [`MAX_MESSAGE_BYTES`].
fn bounded(text: &str) -> String {
    let clean = strip_control(text.trim());
    if clean.len() <= MAX_MESSAGE_BYTES {
        return clean;
    }
    format!("{}…", char_prefix(&clean, MAX_MESSAGE_BYTES))
}

/// The answer to a handler that panicked: 500, generic; the panic is logged.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    tracing::error!(panic = %detail, "request handler panicked");
    let status = StatusCode::INTERNAL_SERVER_ERROR;
    status_response(status, code_for(status).1)
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
        let status = (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            vec![0x08, 0x03],
        )
            .into_response();
        let response = json_errors(status).await;
        let bytes = to_bytes(response.into_body(), 1 << 10).await.unwrap();
        assert_eq!(bytes.as_ref(), [0x08, 0x03]);
    }

    #[test]
    fn a_long_message_is_cut() {
        let long = "x".repeat(10 * MAX_MESSAGE_BYTES);
        assert!(bounded(&long).len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
    }
}
