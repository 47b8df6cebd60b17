//! One flow through a real nats-server on 127.0.0.1:4222 (started with
//! `-js`): `order` publishes OrderPlaced on core NATS, `payment` handles it
//! and publishes PaymentSucceeded to a JetStream stream (twice, as a retry
//! after a lost ack would: the server drops the duplicate), and `shipping`
//! pulls it from the stream. causeway's records go to stdout as JSON lines.
//!
//! ```text
//! cargo run -p causeway-middleware --example nats --features nats
//! ```

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use causeway_middleware::nats;
use causeway_middleware::{JsonLinesSink, Publish, RecordLayer, Service};
use causeway_model::{CorrelationId, EventId};
use futures_util::StreamExt;
use tokio::time::timeout;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;

type Error = Box<dyn std::error::Error + Send + Sync>;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // Records only: the NATS client's own debug logs stay out of stdout.
    let records = RecordLayer::new("example", JsonLinesSink::new(std::io::stdout())).with_filter(
        Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("async_nats", LevelFilter::WARN),
    );
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(records))?;

    let client = async_nats::connect("127.0.0.1:4222").await?;
    let js = jetstream::new(client.clone());
    let run = EventId::generate().as_str().replace('-', "");
    let orders = format!("causeway.example.{run}.orders");
    let payments = format!("causeway.example.{run}.payments");
    let stream_name = format!("CAUSEWAY_EXAMPLE_{run}");
    let mut stream = js
        .create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![payments.clone()],
            ..Default::default()
        })
        .await?;

    let result = run_flow(&client, &js, &mut stream, &orders, &payments).await;
    js.delete_stream(&stream_name).await?;
    result
}

async fn run_flow(
    client: &async_nats::Client,
    js: &jetstream::Context,
    stream: &mut stream::Stream,
    orders: &str,
    payments: &str,
) -> Result<(), Error> {
    let order = Service::new("order");
    let payment = Service::new("payment");
    let shipping = Service::new("shipping");

    // Core NATS: the payment service's queue group, then the first event.
    let mut payment_sub = client
        .queue_subscribe(orders.to_owned(), "payment".into())
        .await?;
    client.flush().await?;
    let (headers, _placed) = nats::publish_headers(
        &order,
        None,
        Publish::new("OrderPlaced", orders).correlation_id(CorrelationId::new("order-1234")?),
    );
    client
        .publish_with_headers(orders.to_owned(), headers, "{\"order\":1234}".into())
        .await?;

    let message = timeout(WAIT, payment_sub.next())
        .await?
        .ok_or("subscription closed")?;
    nats::handle(&payment, &message, "payment", |handling| async move {
        tracing::info!(amount = 125, "charging card");
        // The child event goes to JetStream with Nats-Msg-Id = its event id.
        let (headers, _child) = nats::publish_child_jetstream_headers(
            &handling,
            Publish::new("PaymentSucceeded", payments),
        );
        let first = js
            .publish_with_headers(payments.to_owned(), headers.clone(), "{}".into())
            .await?
            .await?;
        // A retry after a lost ack sends the same event again.
        let retry = js
            .publish_with_headers(payments.to_owned(), headers, "{}".into())
            .await?
            .await?;
        tracing::info!(
            sequence = first.sequence,
            retry_duplicate = retry.duplicate,
            "payment event stored once"
        );
        Ok::<_, Error>(())
    })
    .await?;

    // JetStream: shipping pulls from the stream and acks after handling.
    let shipping_consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("shipping".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let mut messages = shipping_consumer.messages().await?;
    let message = timeout(WAIT, messages.next())
        .await?
        .ok_or("consumer closed")??;
    nats::handle_jetstream(&shipping, &message, "shipping", |_| async {
        tracing::info!("booking courier");
        Ok::<_, Error>(())
    })
    .await?;
    message.ack().await?;
    Ok(())
}
