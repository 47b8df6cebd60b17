//! The webhook hop: once a parcel is booked, shipping notifies the
//! customer-notification service over HTTP (a real axum server on
//! loopback), and the context crosses the HTTP boundary: shipping publishes
//! `ShipmentNotified` as the request's headers, the server's
//! [`CausewayLayer`] reads them and records the request as a consumed
//! event of the `notifier` service, in the same flow and trace.

use std::time::Duration;

use axum::routing::post;
use axum::{Extension, Json, Router};
use causeway_middleware::http::{CausewayLayer, publish_child_headers};
use causeway_middleware::{Handling, Publish, Service};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{SagaError, TransportError};

/// The path shipping posts to: the event's destination.
pub const PATH: &str = "/hooks/order-shipped";
/// The service that takes the webhook, and its consumer group.
pub const NOTIFIER: &str = "notifier";

/// The notification service, listening on a free loopback port.
pub(crate) async fn serve() -> Result<(String, JoinHandle<()>), TransportError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| TransportError::Broker(format!("webhook listener: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| TransportError::Broker(format!("webhook listener: {e}")))?;
    let app = Router::new()
        .route(PATH, post(notify))
        .route_layer(CausewayLayer::new(Service::new(NOTIFIER)));
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "the webhook server stopped");
        }
    });
    Ok((format!("http://{address}{PATH}"), task))
}

/// The webhook's handler: the customer is told (in this example, a log
/// line in the flow).
async fn notify(
    Extension(_handling): Extension<Handling>,
    Json(body): Json<Value>,
) -> &'static str {
    tracing::info!(
        order_id = body["order_id"].as_u64(),
        "customer notified of the shipment"
    );
    "notified"
}

/// The client side: shipping, inside its handler, posts the notification
/// with the context as headers.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    client: reqwest::Client,
    url: String,
}

impl Notifier {
    pub(crate) fn new(url: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self { client, url }
    }

    pub(crate) async fn notify(
        &self,
        handling: &Handling,
        payload: &Value,
    ) -> Result<(), SagaError> {
        let (headers, _) = publish_child_headers(handling, Publish::new("ShipmentNotified", PATH));
        self.client
            .post(&self.url)
            .headers(headers)
            .json(payload)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| SagaError::Transport(format!("webhook: {e}")))?;
        Ok(())
    }
}
