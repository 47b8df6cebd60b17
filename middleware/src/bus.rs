//! An in-process event bus: topics, consumer groups, bounded queues.
//!
//! Every consumer group subscribed to a topic gets each message once (fan
//! out across groups); a group has one subscription. Publishing waits when
//! a group's queue is full (back-pressure, never a silent drop). It is a
//! real transport for examples and tests, not a broker: nothing persists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// A message on the bus: headers (the carrier) and a JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub struct BusMessage {
    pub headers: HashMap<String, String>,
    pub payload: serde_json::Value,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("consumer group {group:?} already subscribed to {topic:?}")]
    GroupTaken { topic: String, group: String },
}

type Groups = HashMap<String, mpsc::Sender<BusMessage>>;

/// The bus; clones share the same topics.
#[derive(Debug, Clone)]
pub struct Bus {
    topics: Arc<Mutex<HashMap<String, Groups>>>,
    capacity: usize,
}

/// A consumer group's stream of messages from one topic.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<BusMessage>,
}

impl Subscription {
    /// The next message; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<BusMessage> {
        self.rx.recv().await
    }
}

impl Default for Bus {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl Bus {
    /// A bus whose group queues hold `capacity` messages each.
    pub fn new(capacity: usize) -> Self {
        Self {
            topics: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    /// Subscribes `group` to `topic`.
    pub fn subscribe(&self, topic: &str, group: &str) -> Result<Subscription, BusError> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let groups = topics.entry(topic.to_owned()).or_default();
        if groups.get(group).is_some_and(|tx| !tx.is_closed()) {
            return Err(BusError::GroupTaken {
                topic: topic.to_owned(),
                group: group.to_owned(),
            });
        }
        let (tx, rx) = mpsc::channel(self.capacity);
        groups.insert(group.to_owned(), tx);
        Ok(Subscription { rx })
    }

    /// Delivers `message` to every group subscribed to `topic`; returns how
    /// many groups received it.
    pub async fn publish(&self, topic: &str, message: BusMessage) -> usize {
        let senders: Vec<mpsc::Sender<BusMessage>> = {
            let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
            topics
                .get(topic)
                .map(|groups| groups.values().cloned().collect())
                .unwrap_or_default()
        };
        let mut delivered = 0;
        for tx in senders {
            if tx.send(message.clone()).await.is_ok() {
                delivered += 1;
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_group_gets_each_message_once() {
        let bus = Bus::new(8);
        let mut a = bus.subscribe("orders", "payment").unwrap();
        let mut b = bus.subscribe("orders", "audit").unwrap();
        assert!(bus.subscribe("orders", "payment").is_err());
        let message = BusMessage {
            headers: HashMap::from([("k".into(), "v".into())]),
            payload: serde_json::json!({"n": 1}),
        };
        assert_eq!(bus.publish("orders", message.clone()).await, 2);
        assert_eq!(bus.publish("nobody-listens", message.clone()).await, 0);
        assert_eq!(a.recv().await, Some(message.clone()));
        assert_eq!(b.recv().await, Some(message));
    }
}
