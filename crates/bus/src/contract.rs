//! The contract every backend keeps: [`Bus`] and [`Consumer`], and their errors. What it
//! guarantees and what it does not is in the crate documentation and `docs/bus.md`.

use crate::delivery::{DeadLetter, Delivery};
use crate::message::{BusMessage, Queue};
use crate::wire::{WireLimits, WireMessage};
use std::future::Future;
use std::time::Duration;

/// The bus took a message: it is stored on its queue (AMQP: the publisher confirm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    /// The queue it is on.
    pub queue: Queue,
}

/// Why messages were not (all) taken. Whatever the variant, the publisher keeps the messages
/// and may publish them again: a message published twice is delivered twice, and the
/// consumer recognises the second by its message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The bus is closed.
    #[error("the bus is closed; nothing was published: publish again once the bus runs")]
    Closed,
    /// A message is over the size limit; nothing of the batch was published.
    #[error(
        "message {message_id} is {size} bytes, over the bus's limit of {limit} bytes; nothing \
         of the batch was published: split the message, or raise the limit on every node"
    )]
    TooLarge {
        /// The message id.
        message_id: String,
        /// Its body's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A queue the bus does not have (a partition beyond its count).
    #[error("the bus has no queue {queue} (it has {partitions} partitions); nothing was published")]
    UnknownQueue {
        /// The queue asked for.
        queue: Queue,
        /// The bus's partition count.
        partitions: usize,
    },
    /// The broker could not be reached in time; some messages of the batch may be taken.
    #[error(
        "the broker at {url} could not be reached within {waited:?}: {reason}; some messages of \
         the batch may not be taken: publish them again once it answers (is RabbitMQ running? \
         `scripts/services.sh start` starts one on this machine)"
    )]
    Unavailable {
        /// The broker's address, its password redacted.
        url: String,
        /// How long the publish waited.
        waited: Duration,
        /// The last failure.
        reason: String,
    },
    /// The broker answered but did not take a message (a negative confirm, or the message was
    /// returned because no queue took it).
    #[error(
        "the broker did not take message {message_id} for {queue}: {reason}; publish it again \
         (if its queue was deleted, the next connection declares it again)"
    )]
    NotConfirmed {
        /// The queue.
        queue: Queue,
        /// The message id.
        message_id: String,
        /// The broker's answer.
        reason: String,
    },
}

/// Why a consumer could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// The bus is closed.
    #[error("the bus is closed: no consumer can start")]
    Closed,
    /// A queue the bus does not have.
    #[error("the bus has no queue {queue} (it has {partitions} partitions)")]
    UnknownQueue {
        /// The queue asked for.
        queue: Queue,
        /// The bus's partition count.
        partitions: usize,
    },
}

/// Why the dead-letter store could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The broker could not be reached or refused the listing.
    #[error(
        "could not list the dead letters at {url}: {reason}; is RabbitMQ running? \
         (`scripts/services.sh start` starts one on this machine)"
    )]
    Unavailable {
        /// The broker's address, its password redacted.
        url: String,
        /// What failed.
        reason: String,
    },
}

/// The message side of ledgersync. Implemented by [`crate::InProcessBus`] and
/// [`crate::AmqpBus`]; `tests/conformance.rs` holds both to the same behaviour.
pub trait Bus: Send + Sync + 'static {
    /// What [`Bus::consume`] hands out.
    type Consumer: Consumer;

    /// The number of partitions (fixed for the life of the bus, the same on every node).
    fn partitions(&self) -> usize;

    /// The size limits the bus applies when publishing and receiving.
    fn limits(&self) -> WireLimits;

    /// Publishes `messages` in order, each to its queue ([`BusMessage::queue`]), and answers
    /// once the bus took every one of them (the confirms are awaited together). Messages of
    /// one queue published in one call, or in calls one after the other, are delivered in that
    /// order.
    fn publish_all(
        &self,
        messages: &[BusMessage],
    ) -> impl Future<Output = Result<Vec<Confirmation>, PublishError>> + Send;

    /// Publishes one message: [`Bus::publish_all`] of one.
    fn publish(
        &self,
        message: BusMessage,
    ) -> impl Future<Output = Result<Confirmation, PublishError>> + Send {
        async move {
            let mut confirmed = self.publish_all(std::slice::from_ref(&message)).await?;
            Ok(confirmed
                .pop()
                .expect("publish_all confirms each message it publishes"))
        }
    }

    /// Publishes messages already in wire form to `queue`, as they are (only the size limit is
    /// checked): for relays of bytes written elsewhere, and for tests of what consumers do
    /// with messages ledgersync would never write.
    fn publish_wire(
        &self,
        queue: Queue,
        messages: Vec<WireMessage>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// A consumer of `queue`. One consumer per queue is active at a time, across every node
    /// (AMQP: single active consumer); another one waits until the active one goes away.
    fn consume(
        &self,
        queue: Queue,
    ) -> impl Future<Output = Result<Self::Consumer, ConsumeError>> + Send;

    /// The dead-letter store, oldest first (the broker's own dead letters included).
    fn dead_letters(&self) -> impl Future<Output = Result<Vec<DeadLetter>, ListError>> + Send;

    /// Closes the bus for this handle and its clones: publishing fails with
    /// [`PublishError::Closed`], consumers get `None`, and what was delivered and not settled
    /// is delivered again to the next consumer (in process: stays in the queues).
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// The receiving end of one queue. Dropping it gives back, in order, every delivery it handed
/// out and that is not settled: they are delivered again, marked redelivered.
pub trait Consumer: Send + 'static {
    /// The queue.
    fn queue(&self) -> Queue;

    /// The next delivery, in queue order (waiting for one, and through broker restarts);
    /// `None` once the bus is closed. Deliveries come without waiting for the earlier ones to
    /// be settled, up to the backend's prefetch. Cancel-safe: a call dropped before it returns
    /// (a timeout, a `select!`) loses no message.
    fn next(&mut self) -> impl Future<Output = Option<Delivery>> + Send;
}
