//! What the broker holds of the topology, read without changing anything: each queue and
//! exchange probed with a passive declaration (`queue.declare` / `exchange.declare` with
//! `passive`), each probe on a channel of its own — a missing queue or exchange makes the
//! broker close the channel with `NOT_FOUND`, which is reported as "not declared". A passive
//! `queue.declare` answers the queue's ready messages and its consumers; AMQP cannot read a
//! queue's arguments back, so the arguments shown are those ledgersync declares it with.

use super::config::{AmqpConfig, QueueType};
use super::link::{Shared, queue_arguments};
use crate::events::EVENTS_EXCHANGE;
use crate::message::Queue;
use futures_util::{StreamExt as _, stream};
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ErrorKind, ExchangeKind};
use tokio::time::Instant;

/// Probes run at the same time (each on a channel of its own).
const PROBES_AT_ONCE: usize = 16;

/// Why the broker's state could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The broker could not be reached, or failed a probe otherwise than with `NOT_FOUND`.
    #[error(
        "could not read the bus's state at {url}: {reason}; is RabbitMQ running? \
         (`scripts/services.sh start` starts one on 127.0.0.1:5672)"
    )]
    Unavailable {
        /// The broker's address, its password redacted.
        url: String,
        /// What failed.
        reason: String,
    },
}

/// What a passive `queue.declare` answers of a queue that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Messages ready for delivery (not those delivered and not yet settled).
    pub messages: u32,
    /// Consumers subscribed (with single active consumer, one of them is active).
    pub consumers: u32,
}

/// What a name of the topology is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyRole {
    /// `<prefix>crm`: CRM changes.
    Crm,
    /// `<prefix>partition.<n>`: mail-side messages.
    Partition(usize),
    /// `<prefix>dead-letter`: the dead-letter exchange (fanout).
    DeadLetterExchange,
    /// `<prefix>dead-letters`: the dead-letter queue.
    DeadLetters,
    /// `ledgersync.events`: the public event stream (topic), declared by `serve` when it
    /// publishes the stream.
    Events,
    /// `<prefix>crm.commands`: the CRM commands ledgersync publishes for the CRM's adapter.
    CrmCommands,
}

impl TopologyRole {
    /// A short name: `crm`, `partition`, `dead-letter-exchange`, `dead-letters`, `events`,
    /// `crm-commands`.
    pub fn name(self) -> &'static str {
        match self {
            TopologyRole::Crm => "crm",
            TopologyRole::Partition(_) => "partition",
            TopologyRole::DeadLetterExchange => "dead-letter-exchange",
            TopologyRole::DeadLetters => "dead-letters",
            TopologyRole::Events => "events",
            TopologyRole::CrmCommands => "crm-commands",
        }
    }
}

/// An argument value as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgumentValue {
    /// A string.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
}

impl std::fmt::Display for ArgumentValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgumentValue::Text(s) => f.write_str(s),
            ArgumentValue::Bool(b) => write!(f, "{b}"),
            ArgumentValue::Int(i) => write!(f, "{i}"),
        }
    }
}

/// One queue: its name, what it is for, how ledgersync declares it and what the broker holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    /// The queue's name.
    pub name: String,
    /// What it is for.
    pub role: TopologyRole,
    /// Durable, as ledgersync declares it (`None`: not declared by this bus).
    pub durable: Option<bool>,
    /// The arguments ledgersync declares it with, in name order (empty for a queue this bus
    /// does not declare). The broker's own can be read with `rabbitmqctl list_queues name
    /// arguments`.
    pub arguments: Vec<(String, ArgumentValue)>,
    /// What the broker answered; `None`: not declared (`NOT_FOUND`).
    pub stats: Option<QueueStats>,
}

/// One exchange: its name, what it is for, its kind as declared and whether the broker has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeStatus {
    /// The exchange's name.
    pub name: String,
    /// What it is for.
    pub role: TopologyRole,
    /// Its kind as ledgersync declares it (`fanout`, `topic`), `None` when not known (a
    /// passive declaration does not tell the kind).
    pub kind: Option<&'static str>,
    /// Whether the broker has it.
    pub declared: bool,
}

/// The partitions at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionSummary {
    /// The configured number of partitions.
    pub partitions: usize,
    /// Partitions the broker has.
    pub declared: usize,
    /// Declared partitions with at least one consumer.
    pub with_consumer: usize,
    /// Declared partitions with no consumer.
    pub without_consumer: Vec<usize>,
    /// Partitions the broker does not have.
    pub not_declared: Vec<usize>,
    /// Messages ready on all the partitions.
    pub messages_waiting: u64,
}

/// What the broker holds of this bus's topology ([`crate::AmqpBus::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusStatus {
    /// The broker, its password redacted.
    pub url: String,
    /// The prefix of the names.
    pub prefix: String,
    /// The configured number of partitions.
    pub partitions: usize,
    /// The configured queue type of the CRM queue and the partitions.
    pub queue_type: QueueType,
    /// The exchanges: the dead-letter exchange, the event stream's, and the CRM commands' when
    /// that name is an exchange.
    pub exchanges: Vec<ExchangeStatus>,
    /// The queues: the CRM queue, every partition in order, the dead-letter queue, and the
    /// CRM commands' queue (unless that name is an exchange).
    pub queues: Vec<QueueStatus>,
}

impl BusStatus {
    /// The queue of `role`.
    pub fn queue(&self, role: TopologyRole) -> Option<&QueueStatus> {
        self.queues.iter().find(|q| q.role == role)
    }

    /// The exchange of `role`.
    pub fn exchange(&self, role: TopologyRole) -> Option<&ExchangeStatus> {
        self.exchanges.iter().find(|e| e.role == role)
    }

    /// The partitions: declared, with and without a consumer, messages waiting.
    pub fn partition_summary(&self) -> PartitionSummary {
        let mut summary = PartitionSummary {
            partitions: self.partitions,
            ..PartitionSummary::default()
        };
        for q in &self.queues {
            let TopologyRole::Partition(p) = q.role else {
                continue;
            };
            match q.stats {
                None => summary.not_declared.push(p),
                Some(stats) => {
                    summary.declared += 1;
                    summary.messages_waiting += u64::from(stats.messages);
                    if stats.consumers > 0 {
                        summary.with_consumer += 1;
                    } else {
                        summary.without_consumer.push(p);
                    }
                }
            }
        }
        summary
    }
}

/// The arguments of a field table, typed and in name order.
fn arguments_of(table: &FieldTable) -> Vec<(String, ArgumentValue)> {
    table
        .inner()
        .iter()
        .map(|(k, v)| {
            let value = match v {
                AMQPValue::Boolean(b) => ArgumentValue::Bool(*b),
                AMQPValue::ShortShortInt(i) => ArgumentValue::Int(i64::from(*i)),
                AMQPValue::ShortInt(i) => ArgumentValue::Int(i64::from(*i)),
                AMQPValue::LongInt(i) => ArgumentValue::Int(i64::from(*i)),
                AMQPValue::LongLongInt(i) => ArgumentValue::Int(*i),
                AMQPValue::LongString(s) => ArgumentValue::Text(s.to_string()),
                AMQPValue::ShortString(s) => ArgumentValue::Text(s.as_str().to_string()),
                other => ArgumentValue::Text(format!("{other:?}")),
            };
            (k.as_str().to_string(), value)
        })
        .collect()
}

/// Whether a failed probe means "not declared".
fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404)
}

impl Shared {
    /// A channel of its own for one probe, the connection opened (passively or not, as this
    /// bus does) within the publish timeout.
    async fn probe_channel(&self) -> Result<Channel, StatusError> {
        let unavailable = |reason: String| StatusError::Unavailable {
            url: self.url.clone(),
            reason,
        };
        let deadline = Instant::now() + self.config.publish_timeout;
        let link = tokio::time::timeout_at(deadline, self.link(Some(deadline)))
            .await
            .map_err(|_| unavailable("no connection within the publish timeout".into()))?
            .map_err(unavailable)?;
        link.connection
            .create_channel()
            .await
            .map_err(|e| unavailable(self.scrub(e)))
    }

    /// A passive `queue.declare` of `name`: its stats, or `None` when it does not exist.
    pub(super) async fn queue_stats(&self, name: &str) -> Result<Option<QueueStats>, StatusError> {
        let channel = self.probe_channel().await?;
        let answer = channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        finish(&channel).await;
        match answer {
            Ok(queue) => Ok(Some(QueueStats {
                messages: queue.message_count(),
                consumers: queue.consumer_count(),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(StatusError::Unavailable {
                url: self.url.clone(),
                reason: format!("probing the queue {name}: {}", self.scrub(e)),
            }),
        }
    }

    /// A passive `exchange.declare` of `name`: whether it exists.
    pub(super) async fn exchange_exists(&self, name: &str) -> Result<bool, StatusError> {
        let channel = self.probe_channel().await?;
        let answer = channel
            .exchange_declare(
                name.into(),
                // Ignored by the broker on a passive declaration.
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        finish(&channel).await;
        match answer {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(StatusError::Unavailable {
                url: self.url.clone(),
                reason: format!("probing the exchange {name}: {}", self.scrub(e)),
            }),
        }
    }

    /// The whole topology, probed (at most [`PROBES_AT_ONCE`] probes at a time).
    pub(super) async fn status(&self) -> Result<BusStatus, StatusError> {
        let config: &AmqpConfig = &self.config;
        let bus_queue = |queue: Queue| QueueStatus {
            name: config.queue_name(queue),
            role: match queue {
                Queue::Crm => TopologyRole::Crm,
                Queue::Partition(p) => TopologyRole::Partition(p),
                Queue::CrmCommands => TopologyRole::CrmCommands,
            },
            durable: Some(true),
            arguments: arguments_of(&queue_arguments(config)),
            stats: None,
        };
        let mut queues: Vec<QueueStatus> = Queue::all(config.partitions)
            .chain([Queue::CrmCommands])
            .map(bus_queue)
            .collect();
        queues.push(QueueStatus {
            name: config.dead_letter_queue(),
            role: TopologyRole::DeadLetters,
            durable: Some(true),
            arguments: vec![("x-queue-type".into(), ArgumentValue::Text("classic".into()))],
            stats: None,
        });
        let probed: Vec<Result<Option<QueueStats>, StatusError>> =
            stream::iter(queues.iter().map(|q| self.queue_stats(&q.name)))
                .buffered(PROBES_AT_ONCE)
                .collect()
                .await;
        for (queue, stats) in queues.iter_mut().zip(probed) {
            queue.stats = stats?;
        }
        let mut exchanges = vec![
            ExchangeStatus {
                name: config.dead_letter_exchange(),
                role: TopologyRole::DeadLetterExchange,
                kind: Some("fanout"),
                declared: false,
            },
            ExchangeStatus {
                name: EVENTS_EXCHANGE.into(),
                role: TopologyRole::Events,
                kind: Some("topic"),
                declared: false,
            },
        ];
        for exchange in &mut exchanges {
            exchange.declared = self.exchange_exists(&exchange.name).await?;
        }
        Ok(BusStatus {
            url: self.url.clone(),
            prefix: config.prefix.clone(),
            partitions: config.partitions,
            queue_type: config.queue_type,
            exchanges,
            queues,
        })
    }
}

/// Closes a probe's channel (already closed by the broker after `NOT_FOUND`).
async fn finish(channel: &Channel) {
    if channel.status().connected() {
        let _ = channel.close(200, "ledgersync: probed".into()).await;
    }
}
