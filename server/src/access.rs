//! Who may use a listener: bearer tokens, checked on every request but
//! `GET /healthz` (liveness probes carry no secret).
//!
//! A request without `Authorization: Bearer <token>` naming one of the
//! configured tokens is answered 401 with `WWW-Authenticate: Bearer` and
//! the JSON error body, or, for a gRPC request, gRPC status
//! `UNAUTHENTICATED`. Tokens are kept only as SHA-256 digests and compared
//! digest to digest in constant time, each of them, so neither the length
//! nor the first differing byte of a guess shows in the answer's timing.
//! Neither the answer nor our log ever holds the token a client sent.
//!
//! It knows nothing of which daemon it guards; the daemons' configs say
//! which tokens count.

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::errors::error_response;

/// The one path that stays open with tokens configured.
const OPEN_PATH: &str = "/healthz";
/// gRPC's status code for a request without valid credentials.
const GRPC_UNAUTHENTICATED: &str = "16";

/// A bearer token as the config holds it. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl From<&str> for Token {
    fn from(token: &str) -> Self {
        Self(token.to_owned())
    }
}

/// A token that cannot be used: the error names the setting, never the
/// token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{setting}` holds a token that is empty or has a character other than visible ASCII \
     (letters, digits, punctuation; no spaces): it could never be sent in an Authorization header"
)]
pub struct TokenError {
    /// The setting that holds it.
    pub setting: String,
}

/// Every token in `tokens` must be something a client can send.
pub fn check_tokens(tokens: &[Token], setting: &str) -> Result<(), TokenError> {
    let usable =
        |token: &Token| !token.0.is_empty() && token.0.bytes().all(|b| b.is_ascii_graphic());
    if tokens.iter().all(usable) {
        Ok(())
    } else {
        Err(TokenError {
            setting: setting.to_owned(),
        })
    }
}

/// The tokens a listener accepts; none means it is open.
#[derive(Clone, Default)]
pub struct Access {
    digests: Arc<[[u8; 32]]>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("tokens", &self.digests.len())
            .finish()
    }
}

impl Access {
    /// Accepts any of `tokens` (several, so that one can be rotated out
    /// while clients move to the next). Empty ones are ignored.
    pub fn new<'a>(tokens: impl IntoIterator<Item = &'a Token>) -> Self {
        let digests: Vec<[u8; 32]> = tokens
            .into_iter()
            .filter(|token| !token.0.is_empty())
            .map(|token| digest(&token.0))
            .collect();
        Self {
            digests: digests.into(),
        }
    }

    /// Whether no token is required.
    pub fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether `presented` is one of the tokens. Every digest is compared,
    /// in constant time, whichever matches.
    fn allows(&self, presented: &str) -> bool {
        let presented = digest(presented);
        let mut found = subtle::Choice::from(0);
        for digest in self.digests.iter() {
            found |= digest.ct_eq(&presented);
        }
        found.into()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Requires one of `access`'s tokens on every request to `router` but
/// `/healthz`; an open `access` leaves the router as it is. Call it on the
/// whole router (after [`crate::harden`]), so nothing runs for a request
/// that is refused.
pub fn authorize(router: Router, access: &Access) -> Router {
    if access.is_open() {
        return router;
    }
    let access = access.clone();
    router.layer(from_fn(move |request: Request, next: Next| {
        let access = access.clone();
        async move { check(&access, request, next).await }
    }))
}

async fn check(access: &Access, request: Request, next: Next) -> Response {
    if request.uri().path() == OPEN_PATH {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| bearer(value.as_bytes()));
    let refusal = match presented {
        None => "a bearer token is required: send `Authorization: Bearer <token>`",
        Some(None) => "the Authorization header is not `Bearer <token>`",
        Some(Some(token)) if access.allows(token) => return next.run(request).await,
        Some(Some(_)) => "the bearer token is not valid",
    };
    if is_grpc(&request) {
        return grpc_unauthenticated(refusal);
    }
    let mut response = error_response(StatusCode::UNAUTHORIZED, "unauthorized", refusal);
    let challenge = if presented.is_some() {
        "Bearer error=\"invalid_token\""
    } else {
        "Bearer"
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// The token of a `Bearer <token>` value (the scheme in any case).
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// A trailers-only gRPC answer: HTTP 200 with the status in the headers,
/// as the gRPC protocol writes a call refused before any message.
fn grpc_unauthenticated(message: &'static str) -> Response {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-status",
        HeaderValue::from_static(GRPC_UNAUTHENTICATED),
    );
    // Our messages are printable ASCII without `%`: nothing to percent-encode.
    headers.insert("grpc-message", HeaderValue::from_static(message));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_token_is_allowed() {
        let tokens = [Token::from("first-token"), Token::from("second-token")];
        let access = Access::new(&tokens);
        assert!(!access.is_open());
        assert!(access.allows("first-token"));
        assert!(access.allows("second-token"));
        assert!(!access.allows("first-toke"));
        assert!(!access.allows("first-token2"));
        assert!(!access.allows(""));
        assert!(Access::new(&[Token::from("")]).is_open());
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        assert_eq!(bearer(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer(b"bearer  abc "), Some("abc"));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearerabc"), None);
    }

    #[test]
    fn neither_debug_nor_the_token_error_show_a_token() {
        let tokens = [Token::from("hunter2hunter2"), Token::from("has space")];
        assert!(!format!("{tokens:?}").contains("hunter2"));
        assert!(!format!("{:?}", Access::new(&tokens)).contains("hunter2"));
        let error = check_tokens(&tokens, "query.tokens")
            .unwrap_err()
            .to_string();
        assert!(error.contains("query.tokens"), "{error}");
        assert!(!error.contains("has space"), "{error}");
        assert!(check_tokens(&tokens[..1], "query.tokens").is_ok());
        assert!(check_tokens(&[Token::from("")], "query.tokens").is_err());
    }
}
