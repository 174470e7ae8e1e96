//! The AMQP backend: RabbitMQ through lapin 4 (`docs/bus.md` has the topology, the mapping of
//! each operation and what is and is not guaranteed).
//!
//! | contract | AMQP |
//! |---|---|
//! | publish, confirmed | `basic.publish` (persistent, mandatory) on the default exchange to the queue's name, on a channel in confirm mode; a batch is sent whole, then its confirms are awaited together |
//! | queues | durable `<prefix>crm` and `<prefix>partition.<n>`, `x-single-active-consumer`, `x-dead-letter-exchange`, `x-queue-type` classic or quorum (+ `x-delivery-limit` on quorum) |
//! | consume | a channel per consumer, `basic.qos(prefetch)`, `basic.consume` |
//! | ack / release / dead-letter | `basic.ack` / close the consumer's channel / publish a copy with reason headers to the dead-letter exchange, confirmed, then `basic.ack` ([`consumer`]) |
//! | dead letters listed | `basic.get` every message of `<prefix>dead-letters` without acking, then close the channel (they go back, in order) |
//! | reconnect | on a closed connection or channel: again, with backoff, topology declared again |
//! | status ([`AmqpBus::status`]) | a passive `queue.declare` / `exchange.declare` of every name, each on a channel of its own (`NOT_FOUND`: not declared); nothing declared or changed, on a bus from [`AmqpBus::connect_passive`] not even at connection |

mod config;
mod consumer;
mod headers;
mod link;
mod publish;
mod status;

pub use config::{AmqpConfig, DEFAULT_DELIVERY_LIMIT, QueueType, redact_url};
pub use consumer::AmqpConsumer;
pub use headers::{
    DEAD_LETTER_COLUMN, DEAD_LETTER_FIELD, DEAD_LETTER_LINE, DEAD_LETTER_QUEUE, DEAD_LETTER_REASON,
    DEAD_LETTERED_AT,
};
pub use link::ConnectError;
pub use status::{
    ArgumentValue, BusStatus, ExchangeStatus, PartitionSummary, QueueStats, QueueStatus,
    StatusError, TopologyRole,
};

use crate::contract::{Bus, Confirmation, ConsumeError, ListError, PublishError};
use crate::delivery::DeadLetter;
use crate::message::{BusMessage, Queue};
use crate::wire::{WireLimits, WireMessage, encode};
use headers::{dead_letter_of, properties};
use lapin::options::BasicGetOptions;
use lapin::types::FieldTable;
use ledgersync_engine::Clock;
use link::Shared;
use publish::{Outgoing, publish};
use std::future::Future;
use std::sync::Arc;
use tokio::time::Instant;

/// The bus on RabbitMQ. Cheap to clone: clones share one connection (and its publishing
/// channel); each consumer has a channel of its own.
#[derive(Clone)]
pub struct AmqpBus {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AmqpBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBus")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl AmqpBus {
    /// Connects to the broker of `config` and declares the topology (idempotently: a second
    /// node, or a restart, declares the same). Tries once and says why it failed; after this,
    /// lost connections are opened again with backoff. Dead letters are timed with `clock`.
    pub async fn connect(config: AmqpConfig, clock: Arc<dyn Clock>) -> Result<Self, ConnectError> {
        let shared = Shared::new(config, clock, true)?;
        shared.first_link().await?;
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Connects to the broker of `config` without declaring anything, then or ever: for
    /// looking at the broker ([`AmqpBus::status`], [`Bus::dead_letters`]) without changing it.
    /// Reconnections declare nothing either; publishing to a queue the broker does not have
    /// fails (`PublishError::NotConfirmed`) and a consumer of one retries until it appears.
    /// Fails as [`AmqpBus::connect`] does when the broker cannot be reached or refuses the
    /// login.
    pub async fn connect_passive(
        config: AmqpConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConnectError> {
        let shared = Shared::new(config, clock, false)?;
        shared.first_link().await?;
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Whether this bus declares the topology (`false` when opened with
    /// [`AmqpBus::connect_passive`]).
    pub fn declares(&self) -> bool {
        self.shared.declares
    }

    /// The ready messages and consumers of the queue `name`, from a passive `queue.declare`
    /// on a channel of its own; `None` when the broker has no such queue (it answered
    /// `NOT_FOUND`). Changes nothing on the broker.
    pub async fn queue_stats(&self, name: &str) -> Result<Option<QueueStats>, StatusError> {
        self.shared.queue_stats(name).await
    }

    /// Whether the broker has the exchange `name` (a passive `exchange.declare` on a channel
    /// of its own). Changes nothing on the broker.
    pub async fn exchange_exists(&self, name: &str) -> Result<bool, StatusError> {
        self.shared.exchange_exists(name).await
    }

    /// What the broker holds of this configuration's topology: every queue (the CRM queue,
    /// each partition, the dead-letter queue, `<prefix>crm.commands`) with its ready messages
    /// and consumers or "not declared", and the exchanges (the dead-letter exchange,
    /// `ledgersync.events`). Each probe is a passive declaration on a channel of its own:
    /// nothing is created or changed, whether this bus declares its topology or not.
    pub async fn status(&self) -> Result<BusStatus, StatusError> {
        self.shared.status().await
    }

    /// The configuration.
    pub fn config(&self) -> &AmqpConfig {
        &self.shared.config
    }

    /// The broker's URL with its password redacted.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Closes the bus: the connection is closed (the broker returns every unacked delivery),
    /// publishing fails with [`PublishError::Closed`] and consumers get `None`.
    pub async fn close(&self) {
        self.shared.close().await;
    }

    fn check_queue(&self, queue: Queue) -> Result<(), PublishError> {
        match queue {
            Queue::Partition(p) if p >= self.partitions() => Err(PublishError::UnknownQueue {
                queue,
                partitions: self.partitions(),
            }),
            _ => Ok(()),
        }
    }

    async fn publish_wires(&self, wires: Vec<(Queue, WireMessage)>) -> Result<(), PublishError> {
        if self.shared.is_closed() {
            return Err(PublishError::Closed);
        }
        let limit = self.shared.config.limits.max_body;
        let mut batch = Vec::with_capacity(wires.len());
        for (queue, wire) in wires {
            self.check_queue(queue)?;
            let message_id = wire.message_id.clone().unwrap_or_default();
            if wire.body.len() > limit {
                return Err(PublishError::TooLarge {
                    message_id,
                    size: wire.body.len(),
                    limit,
                });
            }
            batch.push(Outgoing {
                exchange: String::new(),
                routing_key: self.shared.config.queue_name(queue),
                queue,
                message_id,
                properties: properties(&wire, FieldTable::default()),
                body: wire.body,
            });
        }
        publish(&self.shared, &batch).await
    }

    async fn list(&self) -> Result<Vec<DeadLetter>, ListError> {
        let shared = &self.shared;
        let unavailable = |reason: String| ListError::Unavailable {
            url: shared.url.clone(),
            reason,
        };
        let deadline = Instant::now() + shared.config.publish_timeout;
        let link = tokio::time::timeout_at(deadline, shared.link(Some(deadline)))
            .await
            .map_err(|_| unavailable("no connection within the publish timeout".into()))?
            .map_err(unavailable)?;
        let channel = link
            .connection
            .create_channel()
            .await
            .map_err(|e| unavailable(shared.scrub(e)))?;
        let queue = shared.config.dead_letter_queue();
        let mut out = Vec::new();
        let read = async {
            while out.len() < shared.config.dead_letter_listing_limit {
                let got = channel
                    .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                    .await
                    .map_err(|e| unavailable(shared.scrub(e)))?;
                let Some(message) = got else { break };
                let d = message.delivery;
                out.push(dead_letter_of(
                    d.data,
                    &d.properties,
                    &shared.config,
                    &shared.config.limits,
                ));
            }
            Ok(())
        };
        let result = read.await;
        // Unacked, every message read goes back to the queue, in order, when the channel
        // closes.
        let _ = channel
            .close(200, "ledgersync: dead letters listed".into())
            .await;
        result.map(|()| out)
    }
}

impl Bus for AmqpBus {
    type Consumer = AmqpConsumer;

    fn partitions(&self) -> usize {
        self.shared.config.partitions
    }

    fn limits(&self) -> WireLimits {
        self.shared.config.limits
    }

    fn publish_all(
        &self,
        messages: &[BusMessage],
    ) -> impl Future<Output = Result<Vec<Confirmation>, PublishError>> + Send {
        let partitions = self.partitions();
        let wires: Vec<(Queue, WireMessage)> = messages
            .iter()
            .map(|m| (m.queue(partitions), encode(m)))
            .collect();
        let queues: Vec<Confirmation> = wires
            .iter()
            .map(|(queue, _)| Confirmation { queue: *queue })
            .collect();
        async move {
            self.publish_wires(wires).await?;
            Ok(queues)
        }
    }

    fn publish_wire(
        &self,
        queue: Queue,
        messages: Vec<WireMessage>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send {
        self.publish_wires(messages.into_iter().map(|m| (queue, m)).collect())
    }

    fn consume(
        &self,
        queue: Queue,
    ) -> impl Future<Output = Result<AmqpConsumer, ConsumeError>> + Send {
        let result = if self.shared.is_closed() {
            Err(ConsumeError::Closed)
        } else if let Queue::Partition(p) = queue
            && p >= self.partitions()
        {
            Err(ConsumeError::UnknownQueue {
                queue,
                partitions: self.partitions(),
            })
        } else {
            Ok(AmqpConsumer::new(self.shared.clone(), queue))
        };
        std::future::ready(result)
    }

    fn dead_letters(&self) -> impl Future<Output = Result<Vec<DeadLetter>, ListError>> + Send {
        self.list()
    }

    fn close(&self) -> impl Future<Output = ()> + Send {
        self.shared.close()
    }
}
