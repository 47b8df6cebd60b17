//! causeway over Kafka in one process: the `order` service publishes
//! `OrderPlaced`, `payment` consumes it in its consumer group and publishes
//! `PaymentSucceeded`, `shipping` consumes that. The lifecycle records of
//! the whole flow are printed as JSON lines on stdout.
//!
//! By default it runs against librdkafka's in-process mock cluster
//! (`rdkafka::mocking::MockCluster`: the Kafka protocol over localhost
//! sockets, no broker to install). To use a real broker, set
//! `KAFKA_BOOTSTRAP_SERVERS`; the example then creates its two topics
//! (named with a fresh id per run) and deletes them at the end.
//!
//! ```text
//! cargo run -p causeway-middleware --example kafka --features kafka
//! KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 \
//!     cargo run -p causeway-middleware --example kafka --features kafka
//! ```

use std::error::Error;
use std::time::Duration;

use causeway_middleware::{JsonLinesSink, Publish, RecordLayer, Service, kafka};
use causeway_model::{CorrelationId, EventId};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let subscriber = tracing_subscriber::registry().with(RecordLayer::new(
        "kafka-example",
        JsonLinesSink::new(std::io::stdout()),
    ));
    tracing::subscriber::set_global_default(subscriber)?;

    let run = EventId::generate();
    let orders = format!("causeway-example-orders-{}", run.as_str());
    let payments = format!("causeway-example-payments-{}", run.as_str());
    let topics = [orders.as_str(), payments.as_str()];

    // The mock cluster lives as long as this binding: until main returns.
    let (_mock, admin, bootstrap) = match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(servers) => {
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .create()?;
            let new_topics: Vec<NewTopic<'_>> = topics
                .iter()
                .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
                .collect();
            for result in admin
                .create_topics(&new_topics, &AdminOptions::new())
                .await?
            {
                result.map_err(|(topic, code)| format!("creating {topic}: {code}"))?;
            }
            (None, Some(admin), servers)
        }
        Err(_) => {
            let mock = MockCluster::new(1)?;
            for topic in topics {
                mock.create_topic(topic, 1, 1)?;
            }
            let servers = mock.bootstrap_servers();
            (Some(mock), None, servers)
        }
    };

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let payment_consumer = consumer(&bootstrap, "payment", &orders)?;
    let shipping_consumer = consumer(&bootstrap, "shipping", &payments)?;

    let (headers, _placed) = kafka::publish_headers(
        &Service::new("order"),
        None,
        Publish::new("OrderPlaced", &orders).correlation_id(CorrelationId::new("order-1234")?),
    );
    produce(&producer, &orders, r#"{"order":1234,"total":125}"#, headers).await?;

    let message = next(&payment_consumer).await?;
    let payload = message.payload().unwrap_or_default().to_vec();
    let (producer_ref, payments_ref) = (&producer, payments.as_str());
    kafka::handle(
        &Service::new("payment"),
        &message,
        "payment",
        |handling| async move {
            tracing::info!(bytes = payload.len(), "charging card");
            let (headers, _charged) = kafka::publish_child_headers(
                &handling,
                Publish::new("PaymentSucceeded", payments_ref),
            );
            produce(producer_ref, payments_ref, r#"{"order":1234}"#, headers).await
        },
    )
    .await?;
    drop(message);

    let message = next(&shipping_consumer).await?;
    kafka::handle(
        &Service::new("shipping"),
        &message,
        "shipping",
        |_handling| async {
            tracing::info!("booking courier");
            Ok::<_, rdkafka::error::KafkaError>(())
        },
    )
    .await?;
    drop(message);

    // Close the clients before deleting their topics: a client still
    // holding a deleted topic crashed librdkafka 2.12 (NULL topic name in
    // its metadata cache) against tansu 0.6.
    drop((payment_consumer, shipping_consumer, producer));
    if let Some(admin) = admin {
        admin.delete_topics(&topics, &AdminOptions::new()).await?;
    }
    Ok(())
}

fn consumer(
    bootstrap: &str,
    group: &str,
    topic: &str,
) -> Result<StreamConsumer, rdkafka::error::KafkaError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

async fn produce(
    producer: &FutureProducer,
    topic: &str,
    payload: &str,
    headers: OwnedHeaders,
) -> Result<(), rdkafka::error::KafkaError> {
    producer
        .send(
            FutureRecord::to(topic)
                .key("order-1234")
                .payload(payload)
                .headers(headers),
            WAIT,
        )
        .await
        .map(|_| ())
        .map_err(|(error, _)| error)
}

async fn next(consumer: &StreamConsumer) -> Result<BorrowedMessage<'_>, Box<dyn Error>> {
    Ok(tokio::time::timeout(WAIT, consumer.recv()).await??)
}
