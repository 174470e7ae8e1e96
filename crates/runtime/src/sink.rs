//! Where a driver's observations go: straight to the mailbox actor, or through the bus.
//!
//! - [`Sink::Direct`] (the embedded default): the registry's mailbox actor, one observation
//!   at a time, answered with its decisions.
//! - [`Sink::Bus`] (`[bus] kind = "amqp"`): each observation is published to its mailbox's
//!   partition (publisher confirms awaited, [`OBSERVATION_CHUNK`] to a publish) and the
//!   driver waits for the answer of the partition's consumer ([`crate::consumer`]), which
//!   hands the delivery to the same mailbox actor and, once its events are durable, answers
//!   the waiting driver through [`Replies`] before it acks. A driver therefore runs on the
//!   node whose consumer of its partition is active; when no answer comes within
//!   [`BusSink::timeout`] (the partition is consumed by another node, or not at all) the
//!   driver's cycle fails, its cursor stays, and the next cycle lists the same changes again,
//!   which decide nothing twice (the mailbox's state already holds what was recorded).

use ledgersync_bus::{Bus, BusMessage, PublishError, Queue, WireMessage};
use ledgersync_domain::EventId;
use ledgersync_engine::engine::Appended;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

pub use ledgersync_engine::mailbox::OBSERVATION_CHUNK;

/// A publish in flight.
pub type Publishing = Pin<Box<dyn Future<Output = Result<(), PublishError>> + Send>>;

/// Publishes messages with confirms: any [`Bus`] behind an `Arc`.
pub trait Publish: Send + Sync {
    /// Publishes `messages` and waits for every confirm.
    fn publish(&self, messages: Vec<BusMessage>) -> Publishing;

    /// Publishes CRM commands (their wire form) to the CRM command queue and waits for every
    /// confirm.
    fn publish_commands(&self, commands: Vec<WireMessage>) -> Publishing;
}

impl<B: Bus> Publish for Arc<B> {
    fn publish(&self, messages: Vec<BusMessage>) -> Publishing {
        let bus = self.clone();
        Box::pin(async move { bus.publish_all(&messages).await.map(|_| ()) })
    }

    fn publish_commands(&self, commands: Vec<WireMessage>) -> Publishing {
        let bus = self.clone();
        Box::pin(async move { bus.publish_wire(Queue::CrmCommands, commands).await })
    }
}

/// What the consumer answers a waiting driver.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Recorded (or recorded before, then with no decision): the decisions it caused.
    Decided(Vec<Appended>),
    /// Dead-lettered: why.
    Refused(String),
}

/// The drivers waiting for their observations, by event id; shared by the drivers and the
/// partition consumers of one service.
#[derive(Debug, Clone, Default)]
pub struct Replies(Arc<Mutex<HashMap<EventId, oneshot::Sender<Reply>>>>);

impl Replies {
    /// Registers a wait for the observation `id`.
    pub fn wait_for(&self, id: EventId) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        rx
    }

    /// Answers the driver waiting for `id`, if one is (a message another node published, or
    /// one delivered again, has none).
    pub fn answer(&self, id: EventId, reply: Reply) {
        if let Some(tx) = self.lock().remove(&id) {
            let _ = tx.send(reply);
        }
    }

    /// Stops waiting for `id`.
    pub fn forget(&self, id: &EventId) {
        self.lock().remove(id);
    }

    /// How many waits are open.
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EventId, oneshot::Sender<Reply>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The bus side of a [`Sink`].
#[derive(Clone)]
pub struct BusSink {
    /// Publishes to the partitions.
    pub publish: Arc<dyn Publish>,
    /// Where the consumers answer.
    pub replies: Replies,
    /// How long a driver waits for the answer to an observation it published. Default 60 s.
    pub timeout: Duration,
}

impl std::fmt::Debug for BusSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusSink")
            .field("waiting", &self.replies.open())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The default [`BusSink::timeout`].
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a driver's observations go (module doc).
#[derive(Debug, Clone, Default)]
pub enum Sink {
    /// To the mailbox actor through the registry.
    #[default]
    Direct,
    /// Published on the bus and answered by the partition's consumer.
    Bus(BusSink),
}
