//! A delivery and its settlement: the consumer owns what it received and says, once, what
//! became of it — ack, release or dead-letter (`docs/bus.md`, "Settlement").

use crate::message::{BusMessage, Queue};
use crate::wire::{WireError, WireLimits, WireMessage, decode};
use futures_util::future::BoxFuture;
use ledgersync_domain::Timestamp;
use std::fmt;

/// Why a settlement did not happen as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettleError {
    /// The consumer that received the delivery is gone (its channel closed, it was dropped, or
    /// a release returned this delivery with the consumer's others): the bus delivers the
    /// message again. Nothing to do but be ready to recognise it by its message id.
    #[error(
        "delivery of message {message_id} on {queue} can no longer be settled: its consumer is \
         gone ({reason}); the bus delivers it again"
    )]
    Stale {
        /// The queue.
        queue: Queue,
        /// The message id (as on the wire).
        message_id: String,
        /// What happened to the consumer.
        reason: String,
    },
    /// The dead-letter copy was not confirmed by the broker, so the original was not acked: it
    /// stays on its queue and is delivered again (dead-letter it then).
    #[error(
        "message {message_id} on {queue} was not dead-lettered: the dead-letter exchange did not \
         confirm its copy ({reason}); the original stays on its queue and is delivered again"
    )]
    DeadLetterNotConfirmed {
        /// The queue.
        queue: Queue,
        /// The message id (as on the wire).
        message_id: String,
        /// The broker's answer.
        reason: String,
    },
}

/// Why a message is dead-lettered: the text, and where in the message the fault is when known.
/// Travels with the message to the dead-letter queue (AMQP: as headers, `docs/bus.md`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeadLetterReason {
    /// What is wrong and what to do, in words.
    pub reason: String,
    /// The field at fault (`data.record.version`), if known.
    pub field: Option<String>,
    /// The line at fault in the body (1-based), if known.
    pub line: Option<u64>,
    /// The column at fault in the body (1-based), if known.
    pub column: Option<u64>,
}

impl DeadLetterReason {
    /// A reason in words, with no position.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            ..Self::default()
        }
    }
}

impl From<&WireError> for DeadLetterReason {
    fn from(e: &WireError) -> Self {
        let position = e.position();
        Self {
            reason: e.to_string(),
            field: e.field().map(str::to_string),
            line: position.map(|(l, _)| l as u64),
            column: position.map(|(_, c)| c as u64),
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// A message in the dead-letter store, as [`crate::Bus::dead_letters`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message as it was received.
    pub wire: WireMessage,
    /// The message decoded, when it decodes.
    pub message: Option<BusMessage>,
    /// Why it was dead-lettered.
    pub reason: DeadLetterReason,
    /// The queue it was taken from, when known (a message the broker dead-lettered itself
    /// names its queue in the broker's own headers).
    pub queue: Option<Queue>,
    /// When, on the dead-lettering node's clock, when known.
    pub at: Option<Timestamp>,
}

/// How a backend carries out the settlement of one delivery. Implemented by each backend; a
/// backend outside this crate builds its [`Delivery`] with [`Delivery::new`].
pub trait Settle: Send + Sync + 'static {
    /// Done: the message's effects are durable; the bus forgets it.
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), SettleError>>;

    /// A transient failure: the message (`wire`, as received) goes back to its queue and is
    /// delivered again, marked redelivered, before every message its consumer has not handed
    /// out yet. Only this message: the consumer's other unsettled deliveries stay as they are.
    fn release(self: Box<Self>, wire: WireMessage) -> BoxFuture<'static, Result<(), SettleError>>;

    /// Bad input: the message (`wire`, as received) goes to the dead-letter store with
    /// `reason`, and leaves its queue.
    fn dead_letter(
        self: Box<Self>,
        wire: WireMessage,
        reason: DeadLetterReason,
    ) -> BoxFuture<'static, Result<(), SettleError>>;
}

/// A message handed to a consumer. It owns its settlement: call exactly one of
/// [`ack`](Self::ack), [`release`](Self::release) or [`dead_letter`](Self::dead_letter). A
/// delivery dropped unsettled stays unacknowledged until its consumer goes away, and is then
/// delivered again.
pub struct Delivery {
    queue: Queue,
    redelivered: bool,
    wire: WireMessage,
    message: Result<BusMessage, WireError>,
    settle: Box<dyn Settle>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", &self.queue)
            .field("redelivered", &self.redelivered)
            .field("message_id", &self.wire.message_id)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// A delivery from `queue` of `wire`, decoded under `limits`, settled by `settle`.
    pub fn new(
        queue: Queue,
        redelivered: bool,
        wire: WireMessage,
        limits: &WireLimits,
        settle: Box<dyn Settle>,
    ) -> Self {
        let message = decode(&wire, limits);
        Self {
            queue,
            redelivered,
            wire,
            message,
            settle,
        }
    }

    /// The queue it came from.
    pub fn queue(&self) -> Queue {
        self.queue
    }

    /// True when the bus delivered this message before (to this or another consumer) and it
    /// was not acked. A flag, not a count: brokers do not promise one.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// The message as received.
    pub fn wire(&self) -> &WireMessage {
        &self.wire
    }

    /// The message id as received (the event id it is to be recorded under).
    pub fn message_id(&self) -> Option<&str> {
        self.wire.message_id.as_deref()
    }

    /// The message, or why it cannot be decoded (then dead-letter it: retrying cannot help).
    pub fn message(&self) -> Result<&BusMessage, &WireError> {
        self.message.as_ref()
    }

    /// Acknowledges the message: call only once the events it caused are durable.
    pub async fn ack(self) -> Result<(), SettleError> {
        self.settle.ack().await
    }

    /// Gives the message back for a transient failure: it is delivered again before the
    /// later messages of its queue (see [`Settle::release`]).
    pub async fn release(self) -> Result<(), SettleError> {
        self.settle.release(self.wire).await
    }

    /// Moves the message to the dead-letter store with `reason`.
    pub async fn dead_letter(self, reason: DeadLetterReason) -> Result<(), SettleError> {
        self.settle.dead_letter(self.wire, reason).await
    }
}
