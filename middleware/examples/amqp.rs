//! One process, two services, a real RabbitMQ broker: `order` publishes
//! `OrderPlaced` through RabbitMQ, `payment` consumes it and publishes
//! `PaymentCharged` while handling it. causeway's records are printed to
//! stdout as JSON lines: every one carries the same correlation and trace
//! ids.
//!
//! Needs RabbitMQ on 127.0.0.1:5672 (guest/guest), or set `AMQP_ADDR`:
//!
//! ```text
//! cargo run -p causeway-middleware --example amqp --features amqp
//! ```

use std::time::Duration;

use causeway_middleware::amqp;
use causeway_middleware::{JsonLinesSink, Publish, RecordLayer, Service};
use causeway_model::{CorrelationId, EventId};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // Handlers' own logs are kept; lapin's chatter is not.
    let records = RecordLayer::new("amqp-example", JsonLinesSink::new(std::io::stdout()))
        .with_filter(
            Targets::new()
                .with_default(Level::INFO)
                .with_target("lapin", Level::WARN)
                .with_target("amq_protocol", Level::WARN),
        );
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(records))?;

    let addr =
        std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".to_owned());
    let connection = Connection::connect(&addr, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let suffix = EventId::generate();
    let orders = format!("causeway-example-orders-{suffix}");
    let payments = format!("causeway-example-payments-{suffix}");
    for queue in [&orders, &payments] {
        let options = QueueDeclareOptions {
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.as_str().into(), options, FieldTable::default())
            .await?;
    }

    // The order service starts the flow under the order's own id.
    let order = Service::new("order");
    let (properties, _placed) = amqp::publish_headers(
        &order,
        None,
        Publish::new("OrderPlaced", &orders).correlation_id(CorrelationId::new("order-1234")?),
    );
    let properties = properties.with_content_type("application/json".into());
    channel
        .basic_publish(
            "".into(),
            orders.as_str().into(),
            BasicPublishOptions::default(),
            br#"{"order":1234,"amount":125}"#,
            properties,
        )
        .await?
        .await?;

    // The payment service consumes it and publishes the next event.
    let payment = Service::new("payment");
    let mut deliveries = channel
        .basic_consume(
            orders.as_str().into(),
            "payment".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
        .await?
        .ok_or("the consumer was cancelled")??;
    let publisher = channel.clone();
    let next_queue = payments.clone();
    let outcome = amqp::handle(&payment, &delivery, "payment", |handling| {
        let payload = delivery.data.clone();
        async move {
            tracing::info!(bytes = payload.len(), "charging card");
            let (properties, _charged) =
                amqp::publish_child_headers(&handling, Publish::new("PaymentCharged", &next_queue));
            let properties = properties.with_content_type("application/json".into());
            publisher
                .basic_publish(
                    "".into(),
                    next_queue.as_str().into(),
                    BasicPublishOptions::default(),
                    br#"{"order":1234,"charged":125}"#,
                    properties,
                )
                .await?
                .await?;
            Ok::<_, lapin::Error>(())
        }
    })
    .await;
    match outcome {
        Ok(()) => delivery.ack(BasicAckOptions::default()).await?,
        Err(_) => delivery.nack(BasicNackOptions::default()).await?,
    };

    for queue in [&orders, &payments] {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    connection.close(200, "done".into()).await?;
    Ok(())
}
