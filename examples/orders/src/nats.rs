//! The saga over NATS JetStream: a stream per domain (`<ns>_orders`
//! holding `<ns>.orders.>`, and so on), a durable pull consumer per
//! consumer group and topic with explicit acks and
//! `max_deliver` = [`MAX_DELIVERIES`]; a retryable failure is nak-ed, and
//! once JetStream gives up on a message it says so on its
//! `MAX_DELIVERIES` advisory, from which the dead-letter consumer fetches
//! the message (headers included) by its stream sequence.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use causeway_middleware::nats::{HeaderExtractor, publish_jetstream_headers, redelivery};
use causeway_middleware::{MessageContext, Publish, Service};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::delivery::{
    CONCURRENCY, Consumer, DEAD_LETTERS, Inbox, MAX_DELIVERIES, Settle, TransportError, deliver,
    record_dead_letter,
};

const SYSTEM: &str = "nats";
/// The domains, one stream each: a topic's first part.
const DOMAINS: [&str; 6] = [
    "orders",
    "inventory",
    "payments",
    "shipping",
    "commands",
    "replies",
];

fn broker(error: impl std::fmt::Display) -> TransportError {
    TransportError::Broker(format!("nats: {error}"))
}

/// A JetStream connection and the namespace of its streams and subjects.
#[derive(Clone)]
pub(crate) struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
    namespace: String,
}

impl Nats {
    /// Connects and creates the streams (kept a day, so a forgotten run
    /// does not fill the server).
    pub(crate) async fn connect(url: &str, namespace: &str) -> Result<Self, TransportError> {
        let client = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(url))
            .await
            .map_err(|_| broker(format!("no answer from {url} in 10 s")))?
            .map_err(broker)?;
        let js = jetstream::new(client.clone());
        let nats = Self {
            client,
            js,
            namespace: namespace.replace('.', "-"),
        };
        for domain in DOMAINS {
            nats.js
                .get_or_create_stream(stream::Config {
                    name: nats.stream_name(domain),
                    subjects: vec![format!("{}.{domain}.>", nats.namespace)],
                    max_age: Duration::from_secs(86_400),
                    ..Default::default()
                })
                .await
                .map_err(broker)?;
        }
        Ok(nats)
    }

    pub(crate) fn order_address(&self) -> String {
        format!("NATS subject {}", self.subject(crate::topics::ORDER_PLACED))
    }

    fn stream_name(&self, domain: &str) -> String {
        format!("{}_{domain}", self.namespace)
    }

    fn subject(&self, topic: &str) -> String {
        format!("{}.{topic}", self.namespace)
    }

    /// Publishes and waits for JetStream's acknowledgement; `Nats-Msg-Id`
    /// is the event id, so a publish retried after a lost ack is stored
    /// once.
    pub(crate) async fn publish(
        &self,
        service: &Service,
        parent: Option<&MessageContext>,
        event: Publish<'_>,
        payload: &Value,
    ) -> Result<MessageContext, TransportError> {
        let subject = self.subject(event.destination);
        let (headers, context) = publish_jetstream_headers(service, parent, event);
        let body = serde_json::to_vec(payload).map_err(broker)?;
        self.js
            .publish_with_headers(subject, headers, body.into())
            .await
            .map_err(broker)?
            .await
            .map_err(broker)?;
        Ok(context)
    }

    pub(crate) async fn consume(
        &self,
        consumer: Consumer,
    ) -> Result<JoinHandle<()>, TransportError> {
        let topic = consumer.topic;
        let domain = topic.split('.').next().unwrap_or(topic);
        let stream = self
            .js
            .get_stream(self.stream_name(domain))
            .await
            .map_err(broker)?;
        let durable = format!("{}-{}", consumer.group, topic.replace('.', "-"));
        let pull: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &durable,
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: self.subject(topic),
                    ack_policy: consumer::AckPolicy::Explicit,
                    max_deliver: i64::from(MAX_DELIVERIES),
                    ..Default::default()
                },
            )
            .await
            .map_err(broker)?;
        let mut messages = pull.messages().await.map_err(broker)?;
        let consumer = std::sync::Arc::new(consumer);
        Ok(tokio::spawn(async move {
            let inbox = std::sync::Arc::new(Inbox::default());
            let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
            while let Some(Ok(message)) = messages.next().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let payload = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
                let empty = async_nats::HeaderMap::new();
                let headers = message.headers.as_ref().unwrap_or(&empty);
                let settle = deliver(
                    &consumer,
                    &inbox,
                    &HeaderExtractor(headers),
                    payload,
                    SYSTEM,
                    redelivery(&message),
                );
                tokio::spawn(async move {
                    let _slot = slot;
                    let ack = match settle.await {
                        Settle::Again => AckKind::Nak(None),
                        Settle::Ack => AckKind::Ack,
                    };
                    if let Err(error) = message.ack_with(ack).await {
                        tracing::warn!(%error, "acknowledging a JetStream message failed");
                    }
                });
            }
        }))
    }

    /// Listens to JetStream's max-deliveries advisories for this
    /// namespace's streams and records each message given up on.
    pub(crate) async fn consume_dead_letters(&self) -> Result<JoinHandle<()>, TransportError> {
        let mut advisories = self
            .client
            .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>")
            .await
            .map_err(broker)?;
        let nats = self.clone();
        Ok(tokio::spawn(async move {
            let service = Service::new(DEAD_LETTERS);
            while let Some(advisory) = advisories.next().await {
                let Ok(advisory) = serde_json::from_slice::<Value>(&advisory.payload) else {
                    continue;
                };
                let (Some(stream), Some(sequence)) =
                    (advisory["stream"].as_str(), advisory["stream_seq"].as_u64())
                else {
                    continue;
                };
                if !stream.starts_with(&format!("{}_", nats.namespace)) {
                    continue;
                }
                let consumer = advisory["consumer"].as_str().unwrap_or("?");
                let message = match nats.js.get_stream(stream).await {
                    Ok(stream) => stream.get_raw_message(sequence).await,
                    Err(error) => {
                        tracing::warn!(%error, stream, "reading a dead letter's stream failed");
                        continue;
                    }
                };
                let Ok(message) = message else {
                    tracing::warn!(stream, sequence, "a dead letter is gone from its stream");
                    continue;
                };
                let topic = message
                    .subject
                    .as_str()
                    .strip_prefix(&format!("{}.", nats.namespace))
                    .unwrap_or(message.subject.as_str())
                    .to_owned();
                let reason = format!(
                    "{topic}: consumer {consumer} reached max_deliver ({MAX_DELIVERIES}); \
                     JetStream gave up"
                );
                record_dead_letter(
                    &service,
                    &HeaderExtractor(&message.headers),
                    &topic,
                    Some(reason),
                )
                .await;
            }
        }))
    }
}
