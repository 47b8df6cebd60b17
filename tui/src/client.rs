//! The query API over blocking HTTP: endpoint URLs built from the base URL,
//! responses turned into model types or a [`FetchError`]. It blocks, so it
//! runs only on the worker thread, and it knows nothing of the screen.

use std::time::Duration;

use causeway_model::{ApiErrorBody, FlowDetail, FlowsPage};
use reqwest::Url;
use reqwest::blocking::Client;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

use crate::error::TuiError;

/// How many flows the list asks for.
pub(crate) const LIST_LIMIT: usize = 200;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a fetch from the query API did not produce its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FetchError {
    /// No HTTP answer: connection refused, timeout, reset.
    #[error("{0}")]
    Unreachable(String),
    /// The API answered with its JSON error body.
    #[error("{code}: {message} (HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// An error status without a readable error body.
    #[error("HTTP {status}")]
    Http { status: u16 },
    /// A success status whose body was not the expected JSON.
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl FetchError {
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, FetchError::Unreachable(_))
    }

    pub(crate) fn is_not_found(&self) -> bool {
        matches!(
            self,
            FetchError::Api { status: 404, .. } | FetchError::Http { status: 404 }
        )
    }
}

/// The query API's URLs, checked once at start-up.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    base: Url,
    /// `Bearer <token>`, marked sensitive so that `Debug` hides it.
    authorization: Option<HeaderValue>,
}

impl Endpoints {
    pub(crate) fn new(query_url: &str) -> Result<Self, TuiError> {
        let invalid = |reason: &str| TuiError::InvalidUrl {
            url: query_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(query_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.cannot_be_a_base() {
            return Err(invalid("it cannot be a base URL"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("it must not have a query or fragment"));
        }
        Ok(Self {
            base,
            authorization: None,
        })
    }

    /// Sends `token` as a bearer token with every request (a token that is
    /// not a header value is left out: the config check refuses it).
    pub(crate) fn with_token(mut self, token: Option<&str>) -> Self {
        self.authorization = token
            .and_then(|token| HeaderValue::from_str(&format!("Bearer {token}")).ok())
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        self
    }

    fn with_segments<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.base.clone();
        // `new` refused cannot-be-a-base URLs, the only case where this is `Err`.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `GET /api/v1/flows?limit=N`.
    pub(crate) fn flows(&self) -> Url {
        let mut url = self.with_segments(["api", "v1", "flows"]);
        url.query_pairs_mut()
            .append_pair("limit", &LIST_LIMIT.to_string());
        url
    }

    /// `GET /api/v1/flows/{correlation_id}`, the id percent-encoded as one
    /// path segment whatever it contains.
    pub(crate) fn flow(&self, correlation_id: &str) -> Url {
        self.with_segments(["api", "v1", "flows", correlation_id])
    }
}

/// A blocking client of the query API.
#[derive(Debug)]
pub(crate) struct QueryClient {
    http: Client,
    endpoints: Endpoints,
}

impl QueryClient {
    /// Builds the HTTP client. reqwest's blocking client must not be built
    /// inside an async runtime, so this is called on the worker thread.
    pub(crate) fn new(endpoints: Endpoints) -> Result<Self, reqwest::Error> {
        let mut headers = HeaderMap::new();
        if let Some(value) = &endpoints.authorization {
            headers.insert(AUTHORIZATION, value.clone());
        }
        let http = Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("causeway-tui/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, endpoints })
    }

    pub(crate) fn flows(&self) -> Result<FlowsPage, FetchError> {
        let body = self.get(self.endpoints.flows())?;
        serde_json::from_slice(&body).map_err(|e| FetchError::Decode(e.to_string()))
    }

    pub(crate) fn flow(&self, correlation_id: &str) -> Result<FlowDetail, FetchError> {
        let body = self.get(self.endpoints.flow(correlation_id))?;
        serde_json::from_slice(&body).map_err(|e| FetchError::Decode(e.to_string()))
    }

    /// The body of a successful response.
    fn get(&self, url: Url) -> Result<Vec<u8>, FetchError> {
        let response = self.http.get(url).send().map_err(transport_error)?;
        let status = response.status();
        let body = response.bytes().map_err(transport_error)?;
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            Err(error_from_body(status.as_u16(), &body))
        }
    }
}

/// An error status turned into a [`FetchError`], reading the API's
/// `{"error":{"code":..,"message":..}}` body when there is one.
pub(crate) fn error_from_body(status: u16, body: &[u8]) -> FetchError {
    match serde_json::from_slice::<ApiErrorBody>(body) {
        Ok(ApiErrorBody { error }) => FetchError::Api {
            status,
            code: error.code,
            message: error.message,
        },
        Err(_) => FetchError::Http { status },
    }
}

/// The innermost cause is the useful part ("Connection refused (os error
/// 111)"); reqwest's own message only repeats the URL.
fn transport_error(error: reqwest::Error) -> FetchError {
    if error.is_timeout() {
        return FetchError::Unreachable(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()));
    }
    let mut cause: &dyn std::error::Error = &error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    FetchError::Unreachable(cause.to_string())
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn endpoints_keep_a_base_path_and_encode_the_id() {
        let endpoints = Endpoints::new("http://127.0.0.1:8686/causeway/").unwrap();
        assert_eq!(
            endpoints.flows().as_str(),
            "http://127.0.0.1:8686/causeway/api/v1/flows?limit=200"
        );
        assert_eq!(
            endpoints.flow("order/12?x#y").as_str(),
            "http://127.0.0.1:8686/causeway/api/v1/flows/order%2F12%3Fx%23y"
        );
        let bare = Endpoints::new("http://127.0.0.1:8686").unwrap();
        assert_eq!(
            bare.flow("abc").as_str(),
            "http://127.0.0.1:8686/api/v1/flows/abc"
        );
    }

    #[test]
    fn unusable_urls_are_refused() {
        for url in [
            "127.0.0.1:8686",
            "ftp://host/",
            "mailto:x@y",
            "http://h/?a=b",
        ] {
            assert!(
                matches!(Endpoints::new(url), Err(TuiError::InvalidUrl { .. })),
                "{url} was accepted"
            );
        }
    }

    #[test]
    fn api_error_bodies_are_read() {
        let body = br#"{"error":{"code":"not_found","message":"no flow order-9"}}"#;
        let error = error_from_body(404, body);
        assert_eq!(
            error,
            FetchError::Api {
                status: 404,
                code: "not_found".into(),
                message: "no flow order-9".into(),
            }
        );
        assert!(error.is_not_found());
        assert_eq!(
            error_from_body(502, b"<html>"),
            FetchError::Http { status: 502 }
        );
    }

    #[test]
    fn a_closed_port_is_reported_unreachable() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let endpoints = Endpoints::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let client = QueryClient::new(endpoints).unwrap();
        let error = client.flows().unwrap_err();
        assert!(error.is_unreachable(), "{error:?}");
        assert!(!error.to_string().contains("http://"), "{error}");
    }
}
