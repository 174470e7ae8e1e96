//! The bus of ledgersync: how CRM changes and mail-side observations reach the live side. One
//! contract, shaped on what AMQP 0-9-1 (RabbitMQ) offers, with two backends: [`InProcessBus`]
//! (the embedded default) and [`AmqpBus`] (RabbitMQ through lapin). `docs/bus.md` is the
//! reference; `tests/conformance.rs` holds both backends to it.
//!
//! # What the contract guarantees
//!
//! - **Publish with confirm.** [`Bus::publish_all`] answers once the bus has stored every
//!   message (AMQP: publisher confirms, awaited together). An error means some may not be
//!   stored: the publisher keeps them and publishes them again.
//! - **Queues.** A CRM queue ([`Queue::Crm`]) for every CRM change, and a fixed number of
//!   partitions for mail-side messages: a mailbox's messages go to [`partition_of`] its id.
//! - **Order per queue, for one consumer.** One consumer per queue is active at a time (AMQP:
//!   single active consumer), and it receives the queue's messages in the order they were
//!   published. Messages of different queues have no order between them.
//! - **At least once.** A message leaves its queue only when acked or dead-lettered. A message
//!   may be delivered more than once — after a release, after its consumer went away unacked,
//!   after a broker restart, or because it was published twice — so every message carries the
//!   event id it is to be recorded under as its message id, and the consumer recognises a
//!   message it already recorded.
//! - **The delivery owns its settlement.** [`Delivery::ack`] once the message's events are
//!   durable; [`Delivery::release`] for a transient failure (the message goes back and is
//!   delivered again, marked redelivered, before every message its consumer has not handed
//!   out yet); [`Delivery::dead_letter`] with a [`DeadLetterReason`] for bad input (kept in
//!   the dead-letter store, [`Bus::dead_letters`]).
//! - **Redelivery when a consumer goes away.** Deliveries a consumer did not settle are
//!   delivered again, in order, once it goes away (dropped; AMQP: its channel or connection
//!   closed).
//! - **`redelivered` is a flag**, never a count: RabbitMQ promises no count (a quorum queue
//!   counts deliveries only to enforce its delivery limit).
//!
//! Not guaranteed: exactly-once delivery, order across queues, order among consumers of one
//! queue that settle out of order, that a dead-lettered message is listed only once (a
//! dead-letter copy whose original ack was lost is listed twice), and — in process — anything
//! after the process ends.
//!
//! # Wire format
//!
//! JSON bodies with a schema header and its version ([`wire`]), the same on both backends, so
//! a message that decodes in one decodes in the other; [`Delivery::message`] gives the typed
//! [`WireError`] of a message that does not.
//!
//! # The public event stream
//!
//! [`events::EventPublisher`] publishes the journal on the topic exchange `ledgersync.events`
//! (`docs/event-stream.md`): the journal is the outbox.
#![warn(missing_docs)]

mod amqp;
mod contract;
mod delivery;
pub mod events;
mod memory;
mod message;
#[cfg(feature = "test-broker")]
pub mod test_broker;
pub mod wire;

pub use amqp::{
    AmqpBus, AmqpConfig, AmqpConsumer, ArgumentValue, BusStatus, ConnectError, DEAD_LETTER_COLUMN,
    DEAD_LETTER_FIELD, DEAD_LETTER_LINE, DEAD_LETTER_QUEUE, DEAD_LETTER_REASON, DEAD_LETTERED_AT,
    DEFAULT_DELIVERY_LIMIT, ExchangeStatus, PartitionSummary, QueueStats, QueueStatus, QueueType,
    StatusError, TopologyRole, redact_url,
};
pub use contract::{Bus, Confirmation, ConsumeError, Consumer, ListError, PublishError};
pub use delivery::{DeadLetter, DeadLetterReason, Delivery, Settle, SettleError};
pub use memory::{DEFAULT_PREFETCH, InProcessBus, InProcessConfig, InProcessConsumer};
pub use message::{BusMessage, DEFAULT_PARTITIONS, Queue, partition_of};
pub use wire::{CRM_COMMAND_SCHEMA, DEFAULT_MAX_BODY, WireError, WireLimits, WireMessage};
