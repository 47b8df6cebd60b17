//! HTTP as an event hop: a tower layer that treats each request reaching a
//! server (axum, hyper) as a consumed event (HTTP's form of `handle`), and
//! [`publish_headers`], [`publish_child_headers`] and [`publish_request`]
//! that put the context on an outgoing request (reqwest, hyper), so a
//! webhook or a service-to-service call stays in its flow. The names and
//! shapes are those of the other transport modules, see the
//! [crate documentation](crate#one-api-for-every-transport); HTTP has no
//! redelivery (a client's retry is a new request).
//!
//! On the server, [`CausewayLayer`] reads the context from the request
//! headers (through [`extract`](crate::extract): bounded, cleaned,
//! counted), writes `received`, runs the inner service inside the
//! `causeway.handle` span with the [`Handling`] in the request's extensions
//! (an axum handler takes `Extension<Handling>`), then writes `handled`
//! (status below 500) or `failed` (status 500 and above, or an error of the
//! inner service) with the duration, and answers with the flow's
//! `correlation-id` header.
//!
//! The request's path is the destination and, with the method, the event
//! type (unless the sender gave one). With the `axum` feature and the layer
//! added by `Router::route_layer`, the route the request matched is used
//! instead (`GET /orders/{id}` rather than `GET /orders/1234`), so one
//! endpoint is one destination.
//!
//! It must never fail, reject or alter a request because of tracing: a
//! missing or malformed context starts a fresh flow, the request and its
//! body reach the inner service as they came (plus one extension), and the
//! response is the inner service's with one header added when absent. No
//! value from the request is ever echoed into a response header.
//!
//! ```no_run
//! use axum::{Extension, Router, routing::post};
//! use causeway_middleware::http::{CausewayLayer, publish_request};
//! use causeway_middleware::{Handling, Publish, Service};
//!
//! async fn charge(Extension(handling): Extension<Handling>) -> &'static str {
//!     tracing::info!("charging card"); // carries the flow's ids
//!     let _ = handling.context().correlation_id.as_str();
//!     "charged"
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Server: every request is a consumed event of the "payment" service.
//! let app = Router::new()
//!     .route("/charge", post(charge))
//!     .layer(CausewayLayer::new(Service::new("payment")));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! // Client: the request is a published event of the "order" service.
//! let client = reqwest::Client::new();
//! let mut request = client.post("http://127.0.0.1:3000/charge").build()?;
//! let sent = publish_request(
//!     &Service::new("order"),
//!     None, // or Some(handling.context()) while handling an event
//!     Publish::new("ChargeRequested", "/charge"),
//!     request.headers_mut(),
//! );
//! let response = client.execute(request).await?;
//! assert_eq!(
//!     response.headers()["correlation-id"].to_str()?,
//!     sent.correlation_id.as_str(),
//! );
//! # Ok(())
//! # }
//! ```

use std::fmt::{self, Display};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::http::{HeaderMap, Request, Response};
use causeway_model::{char_prefix, headers};
use opentelemetry::propagation::{Extractor, Injector};
use tower::{Layer, Service as TowerService};

use crate::carriers::{HeaderMapExtractor, HeaderMapInjector};
use crate::propagation::Carrier;
use crate::{Consume, Handling, MessageContext, Publish, Service};

/// `messaging.system` of HTTP hops.
pub const SYSTEM: &str = "http";
/// The longest request path kept as a destination, in bytes.
const MAX_PATH_LEN: usize = 256;
/// The longest method kept in an event type, in bytes.
const MAX_METHOD_LEN: usize = 32;

/// Publishes an event as the headers of an outgoing request: builds its
/// context (a child of `parent`, a context the service already holds, else
/// a new flow), writes the `published` record and returns the headers, for
/// reqwest's `RequestBuilder::headers` or `headers_mut().extend(...)` on
/// any `http` request. Inside a handler use [`publish_child_headers`].
/// `messaging.system` is `http` unless `event` names another.
pub fn publish_headers(
    service: &Service,
    parent: Option<&MessageContext>,
    event: Publish<'_>,
) -> (HeaderMap, MessageContext) {
    let mut headers = HeaderMap::new();
    let context = publish_request(service, parent, event, &mut headers);
    (headers, context)
}

/// As [`publish_headers`], for a request caused by the event being handled
/// (same correlation id and trace, causation id = the handled event).
pub fn publish_child_headers(
    handling: &Handling,
    event: Publish<'_>,
) -> (HeaderMap, MessageContext) {
    publish_headers(handling.service(), Some(handling.context()), event)
}

/// As [`publish_headers`], written straight into a request's own
/// `headers` (no second map to merge): hyper's, and reqwest's (whose
/// `header::HeaderMap` is the same type).
///
/// ```no_run
/// use causeway_middleware::http::publish_request;
/// use causeway_middleware::{Handling, Publish};
///
/// // Inside a handler: the webhook is caused by the event being handled.
/// async fn notify(handling: &Handling, client: &reqwest::Client) -> reqwest::Result<()> {
///     let mut request = client
///         .post("http://127.0.0.1:8080/hooks/order-paid")
///         .json(&serde_json::json!({ "order": 1234 }))
///         .build()?;
///     publish_request(
///         handling.service(),
///         Some(handling.context()),
///         Publish::new("OrderPaid", "/hooks/order-paid"),
///         request.headers_mut(),
///     );
///     client.execute(request).await?.error_for_status()?;
///     Ok(())
/// }
/// ```
pub fn publish_request(
    service: &Service,
    parent: Option<&MessageContext>,
    event: Publish<'_>,
    headers: &mut HeaderMap,
) -> MessageContext {
    service.publish(
        parent,
        event.system_or(SYSTEM),
        &mut HeaderMapInjector(headers),
    )
}

/// A tower layer that makes each request a consumed event of `service`.
/// See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct CausewayLayer {
    service: Service,
}

impl CausewayLayer {
    /// `service` names the server: it is the records' service and the
    /// requests' consumer group.
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

impl<S> Layer<S> for CausewayLayer {
    type Service = CausewayService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CausewayService {
            inner,
            service: self.service.clone(),
        }
    }
}

/// The service made by [`CausewayLayer`].
#[derive(Debug, Clone)]
pub struct CausewayService<S> {
    inner: S,
    service: Service,
}

/// Why a request counts as failed. Its name is the `error_type` of the
/// `failed` record (the record takes the error's type name), so it is
/// named for the common case: an answer with a 5xx status, whose response
/// is kept to be sent as is.
enum HttpStatus<B, E> {
    /// The inner service answered 500 or more.
    Status(Response<B>),
    /// The inner service failed without an answer.
    Service(E),
}

impl<B, E: Display> Display for HttpStatus<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpStatus::Status(response) => Display::fmt(&response.status(), f),
            HttpStatus::Service(error) => Display::fmt(error, f),
        }
    }
}

/// The request's headers, with `METHOD path` as the event type when the
/// sender did not name one.
struct RequestCarrier<'a> {
    headers: HeaderMapExtractor<'a>,
    event_type: &'a str,
}

impl Extractor for RequestCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.headers.get(key) {
            Some(value) => Some(value),
            None if key == headers::EVENT_TYPE => Some(self.event_type),
            None => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys = self.headers.keys();
        if !keys.contains(&headers::EVENT_TYPE) {
            keys.push(headers::EVENT_TYPE);
        }
        keys
    }
}

impl Carrier for RequestCarrier<'_> {
    fn for_each_header<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) {
        self.headers.for_each_header(f);
    }

    /// `METHOD path` as `event-type`, when the sender gave none.
    fn for_each_fallback<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) {
        f(headers::EVENT_TYPE, self.event_type);
    }
}

/// What names the request's destination: the route it matched (axum's
/// `MatchedPath`, there when the layer is a route layer, with the `axum`
/// feature), else its path.
fn route_of(parts: &::http::request::Parts) -> &str {
    #[cfg(feature = "axum")]
    if let Some(route) = parts.extensions.get::<axum::extract::MatchedPath>() {
        return route.as_str();
    }
    parts.uri.path()
}

impl<S, ReqBody, ResBody> TowerService<Request<ReqBody>> for CausewayService<S>
where
    S: TowerService<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Display + Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The inner service that was polled ready is the one to call; a
        // fresh clone stays behind for the next request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);

        let (mut parts, body) = request.into_parts();
        let path = char_prefix(route_of(&parts), MAX_PATH_LEN).to_owned();
        let event_type = format!(
            "{} {path}",
            char_prefix(parts.method.as_str(), MAX_METHOD_LEN)
        );
        // `Service::handle` reads the context before its future starts, so
        // the headers are only borrowed for that call; the handler gets them
        // back without a copy (the other `Arc` is gone by then; should it
        // not be, they are cloned, never lost).
        let taken = Arc::new(std::mem::take(&mut parts.headers));
        let handed_back = Arc::clone(&taken);
        let consume = Consume::new(&path, self.service.name()).system(SYSTEM);
        let handled = {
            let carrier = RequestCarrier {
                headers: HeaderMapExtractor(&taken),
                event_type: &event_type,
            };
            self.service.handle(&carrier, consume, move |handling| {
                parts.headers =
                    Arc::try_unwrap(handed_back).unwrap_or_else(|shared| (*shared).clone());
                let correlation_id = handling.context().correlation_id.to_string();
                parts.extensions.insert(handling);
                let request = Request::from_parts(parts, body);
                async move {
                    match inner.call(request).await {
                        Ok(mut response) => {
                            if !response.headers().contains_key(headers::CORRELATION_ID) {
                                // A validated id: the carrier skips it were it
                                // ever unfit for a header.
                                HeaderMapInjector(response.headers_mut())
                                    .set(headers::CORRELATION_ID, correlation_id);
                            }
                            if response.status().is_server_error() {
                                Err(HttpStatus::Status(response))
                            } else {
                                Ok(response)
                            }
                        }
                        Err(error) => Err(HttpStatus::Service(error)),
                    }
                }
            })
        };
        drop(taken); // the handler now holds the only handle on the headers
        Box::pin(async move {
            match handled.await {
                Ok(response) | Err(HttpStatus::Status(response)) => Ok(response),
                Err(HttpStatus::Service(error)) => Err(error),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one request through the layer onto `inner`, on a fresh runtime.
    fn through_layer<E: Display + Send + 'static>(
        request: Request<String>,
        inner: impl FnOnce(Request<String>) -> Result<Response<String>, E> + Clone + Send + 'static,
    ) -> Result<Response<String>, E> {
        use tower::ServiceExt;
        let service =
            CausewayLayer::new(Service::new("orders")).layer(tower::service_fn(move |request| {
                let inner = inner.clone();
                async move { inner(request) }
            }));
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(service.oneshot(request))
    }

    #[test]
    fn the_inner_service_gets_the_request_as_it_came_plus_the_handling() {
        let request = Request::post("/orders?id=7")
            .header("x-custom", "kept")
            .header("traceparent", "00-nonsense")
            .header("correlation-id", "order-7")
            .body("payload".to_owned())
            .unwrap();
        let sent_headers = request.headers().clone();
        let response = through_layer(request, move |request: Request<String>| {
            assert_eq!(request.headers(), &sent_headers);
            assert_eq!(request.uri(), "/orders?id=7");
            assert_eq!(request.body(), "payload");
            let handling = request.extensions().get::<Handling>().unwrap();
            assert_eq!(handling.context().correlation_id.as_str(), "order-7");
            Ok::<_, std::io::Error>(Response::new("done".to_owned()))
        })
        .unwrap();
        assert_eq!(response.body(), "done");
        assert_eq!(response.headers()[headers::CORRELATION_ID], "order-7");
    }

    #[test]
    fn a_correlation_id_set_by_the_handler_is_left_alone() {
        let response = through_layer(Request::new(String::new()), |_| {
            let mut response = Response::new(String::new());
            response
                .headers_mut()
                .insert(headers::CORRELATION_ID, "mine".parse().unwrap());
            Ok::<_, std::io::Error>(response)
        })
        .unwrap();
        assert_eq!(response.headers()[headers::CORRELATION_ID], "mine");
    }

    #[test]
    fn an_error_of_the_inner_service_is_returned_as_is() {
        let error = through_layer(Request::new(String::new()), |_| {
            Err(std::io::Error::other("connection reset"))
        })
        .unwrap_err();
        assert_eq!(error.to_string(), "connection reset");
    }

    #[test]
    fn published_headers_carry_the_flow_and_a_child_its_cause() {
        let (headers, sent) = publish_headers(
            &Service::new("web"),
            None,
            Publish::new("CheckoutRequested", "/checkout"),
        );
        let got = crate::extract(&HeaderMapExtractor(&headers));
        assert_eq!((got.trace_id, got.span_id), (sent.trace_id, sent.span_id));
        let request = Request::post("/charge")
            .header(headers::TRACEPARENT, &headers[headers::TRACEPARENT])
            .header(headers::CORRELATION_ID, &headers[headers::CORRELATION_ID])
            .header(headers::EVENT_ID, &headers[headers::EVENT_ID])
            .body(String::new())
            .unwrap();
        let response = through_layer(request, move |request: Request<String>| {
            let handling = request.extensions().get::<Handling>().unwrap();
            let (child_headers, child) =
                publish_child_headers(handling, Publish::new("ChargeRequested", "/pay"));
            assert!(child_headers.contains_key(headers::CAUSATION_ID));
            Ok::<_, std::io::Error>(Response::new(format!(
                "{} {}",
                child.correlation_id,
                child.causation_id.unwrap()
            )))
        })
        .unwrap();
        assert_eq!(
            response.body(),
            &format!("{} {}", sent.correlation_id, sent.event_id)
        );
    }

    #[test]
    fn paths_are_bounded_on_a_character_boundary() {
        assert_eq!(char_prefix("/orders", MAX_PATH_LEN), "/orders");
        let long = format!("/{}", "é".repeat(MAX_PATH_LEN));
        let cut = char_prefix(&long, MAX_PATH_LEN);
        assert!(cut.len() <= MAX_PATH_LEN && cut.len() >= MAX_PATH_LEN - 1);
        assert!(long.starts_with(cut));
    }

    #[test]
    fn the_sender_s_event_type_wins_over_method_and_path() {
        let mut map = HeaderMap::new();
        let carrier = RequestCarrier {
            headers: HeaderMapExtractor(&map),
            event_type: "POST /charge",
        };
        assert_eq!(carrier.get(headers::EVENT_TYPE), Some("POST /charge"));
        assert!(carrier.keys().contains(&headers::EVENT_TYPE));
        map.insert(headers::EVENT_TYPE, "ChargeRequested".parse().unwrap());
        let carrier = RequestCarrier {
            headers: HeaderMapExtractor(&map),
            event_type: "POST /charge",
        };
        assert_eq!(carrier.get(headers::EVENT_TYPE), Some("ChargeRequested"));
        assert_eq!(carrier.keys().len(), 1);
    }
}
