//! One process, two real HTTP hops on localhost: a `checkout` client posts
//! a charge request to a `payment` axum server behind `CausewayLayer`; the
//! payment handler calls a webhook on a `notifier` server as a child event.
//! Every causeway record is printed to stdout as a JSON line: one flow, one
//! correlation id, causation linking each hop to the one before.
//!
//! Run: `cargo run -p causeway-middleware --example http --features http`

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use causeway_middleware::http::{CausewayLayer, publish_child_headers, publish_request};
use causeway_middleware::{Handling, JsonLinesSink, Publish, RecordLayer, Service};
use causeway_model::CorrelationId;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve(app: Router) -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("server stopped: {error}");
        }
    });
    Ok(addr)
}

/// The payment handler: logs in its flow, then calls the notifier's webhook
/// as an event caused by the charge request.
async fn charge(
    Extension(handling): Extension<Handling>,
    Extension(webhook): Extension<String>,
) -> Result<&'static str, (StatusCode, String)> {
    tracing::info!(amount_cents = 12_500, "charging card");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(bad_gateway)?;
    let (headers, _succeeded) = publish_child_headers(
        &handling,
        Publish::new("PaymentSucceeded", "/hooks/payment-succeeded"),
    );
    client
        .post(&webhook)
        .headers(headers)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(bad_gateway)?;
    Ok("charged")
}

fn bad_gateway(error: reqwest::Error) -> (StatusCode, String) {
    (StatusCode::BAD_GATEWAY, error.to_string())
}

async fn notified() -> &'static str {
    tracing::info!("sending receipt");
    "sent"
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Only causeway's records and this program's logs: hyper's and
    // reqwest's own events would be log records too.
    let records = RecordLayer::new("http-example", JsonLinesSink::new(std::io::stdout()))
        .with_filter(filter_fn(|meta| {
            meta.target().starts_with("causeway") || meta.target() == module_path!()
        }));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(records))?;

    let notifier = serve(
        Router::new()
            .route("/hooks/payment-succeeded", post(notified))
            .layer(CausewayLayer::new(Service::new("notifier"))),
    )
    .await?;
    let payment = serve(
        Router::new()
            .route("/charge", post(charge))
            .layer(Extension(format!(
                "http://{notifier}/hooks/payment-succeeded"
            )))
            .layer(CausewayLayer::new(Service::new("payment"))),
    )
    .await?;

    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut request = client
        .post(format!("http://{payment}/charge"))
        .json(&serde_json::json!({ "order": 1234, "amount_cents": 12_500 }))
        .build()?;
    let sent = publish_request(
        &Service::new("checkout"),
        None,
        Publish::new("ChargeRequested", "/charge")
            .correlation_id(CorrelationId::new("order-1234")?),
        request.headers_mut(),
    );
    let response = client.execute(request).await?;
    eprintln!(
        "POST /charge -> {} (correlation-id {:?}, sent {})",
        response.status(),
        response.headers().get("correlation-id"),
        sent.correlation_id,
    );
    Ok(())
}
