//! The connection to the broker: opened with the topology declared, shared by publishers and
//! consumers, and opened again — with backoff, the topology declared again — whenever it or
//! its publishing channel is found closed.

use super::config::{AmqpConfig, QueueType, redact_url};
use crate::message::Queue;
use lapin::options::{
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use ledgersync_engine::Clock;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

/// Why [`crate::AmqpBus::connect`] could not start. Messages carry the URL with its password
/// redacted, never the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL does not parse.
    #[error(
        "the bus URL `{url}` is not an AMQP URL ({reason}): write amqp://user:password@host:port/vhost \
         or amqps://… (the vhost percent-encoded, %2f for /)"
    )]
    BadUrl {
        /// The URL, its password redacted.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The configuration cannot work.
    #[error("the bus configuration is not valid: {0}")]
    Config(String),
    /// Nothing answered at the URL, or the connection broke while it was set up.
    #[error(
        "could not connect to the broker at {url}: {reason}; is RabbitMQ running? \
         (`scripts/services.sh start` starts one on 127.0.0.1:5672)"
    )]
    Unreachable {
        /// The URL, its password redacted.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The broker refused the login, the vhost or a permission.
    #[error(
        "the broker at {url} refused the connection: {reason}; check the user, password, vhost \
         and its permissions (rabbitmqctl set_permissions -p VHOST USER '.*' '.*' '.*')"
    )]
    Refused {
        /// The URL, its password redacted.
        url: String,
        /// The broker's answer.
        reason: String,
    },
    /// A queue or exchange exists with other arguments (another queue type, delivery limit
    /// or prefix reuse): RabbitMQ refuses to declare it differently.
    #[error(
        "the broker at {url} holds `{name}` with other arguments than this configuration \
         declares ({reason}): drain and delete it (rabbitmqctl delete_queue {name}), or use \
         another prefix or vhost"
    )]
    Topology {
        /// The URL, its password redacted.
        url: String,
        /// The queue or exchange.
        name: String,
        /// The broker's answer.
        reason: String,
    },
}

/// An open connection and its publishing channel (confirms on).
#[derive(Clone)]
pub(super) struct Link {
    pub(super) connection: Arc<Connection>,
    pub(super) publisher: Channel,
}

impl Link {
    fn is_open(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

/// What every part of an [`crate::AmqpBus`] shares.
pub(super) struct Shared {
    pub(super) config: AmqpConfig,
    uri: AMQPUri,
    /// The URL with its password redacted.
    pub(super) url: String,
    pub(super) clock: Arc<dyn Clock>,
    /// Whether this bus declares the topology (at every connection, and a queue found missing
    /// before publishing to it or consuming from it). False for a bus opened with
    /// [`crate::AmqpBus::connect_passive`], which changes nothing on the broker.
    pub(super) declares: bool,
    link: Mutex<Option<Link>>,
    closed: AtomicBool,
    /// Woken when the bus closes.
    pub(super) closing: Notify,
}

/// A failure while opening a link: a step, and the broker's or the socket's words.
pub(super) struct LinkError {
    /// The queue or exchange being declared, if the failure came from a declaration.
    pub(super) name: Option<String>,
    pub(super) reason: String,
}

impl Shared {
    pub(super) fn new(
        config: AmqpConfig,
        clock: Arc<dyn Clock>,
        declares: bool,
    ) -> Result<Self, ConnectError> {
        let url = redact_url(&config.url);
        let uri: AMQPUri = config
            .url
            .parse()
            .map_err(|e: String| ConnectError::BadUrl {
                url: url.clone(),
                reason: scrub_text(&e, &config.url, &url),
            })?;
        if config.partitions == 0 {
            return Err(ConnectError::Config(
                "partitions is 0: a bus needs at least one partition".into(),
            ));
        }
        if config.prefetch == 0 {
            return Err(ConnectError::Config(
                "prefetch is 0, which RabbitMQ reads as no limit: give a number of messages".into(),
            ));
        }
        Ok(Self {
            config,
            uri,
            url,
            clock,
            declares,
            link: Mutex::new(None),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
        })
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(super) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.notify_waiters();
        if let Some(link) = self.link.lock().await.take() {
            let _ = link
                .connection
                .close(200, "ledgersync: bus closed".into())
                .await;
        }
    }

    /// A broker error's text, never with the password.
    pub(super) fn scrub(&self, error: impl std::fmt::Display) -> String {
        scrub_text(&error.to_string(), &self.config.url, &self.url)
    }

    /// The open link, opened now if there is none or it closed. Tries once.
    pub(super) async fn try_link(&self) -> Result<Link, LinkError> {
        let mut guard = self.link.lock().await;
        if let Some(link) = guard.as_ref().filter(|l| l.is_open()) {
            return Ok(link.clone());
        }
        if self.is_closed() {
            return Err(LinkError {
                name: None,
                reason: "the bus is closed".into(),
            });
        }
        let link = self.open().await?;
        *guard = Some(link.clone());
        Ok(link)
    }

    /// The open link, retried with backoff until `deadline` (`None`: until the bus closes).
    /// `Err` carries the last failure.
    pub(super) async fn link(&self, deadline: Option<Instant>) -> Result<Link, String> {
        let mut delay = self.config.reconnect_min;
        loop {
            match self.try_link().await {
                Ok(link) => return Ok(link),
                Err(e) if self.is_closed() => return Err(e.reason),
                Err(e) => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now + delay > d) {
                        return Err(e.reason);
                    }
                    tracing::warn!(url = %self.url, error = %e.reason, retry_in = ?delay, "the broker is not reachable; retrying");
                    if !self.sleep(delay).await {
                        return Err("the bus is closed".into());
                    }
                    delay = (delay * 2).min(self.config.reconnect_max);
                }
            }
        }
    }

    /// Sleeps `delay`; false if the bus closed meanwhile.
    pub(super) async fn sleep(&self, delay: Duration) -> bool {
        let closing = self.closing.notified();
        tokio::pin!(closing);
        closing.as_mut().enable();
        if self.is_closed() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => !self.is_closed(),
            () = closing => false,
        }
    }

    /// Forgets the link if it is the one given (it was found broken), so the next user opens
    /// a new one.
    pub(super) async fn forget(&self, broken: &Link) {
        let mut guard = self.link.lock().await;
        if guard
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(&l.connection, &broken.connection))
        {
            *guard = None;
        }
    }

    async fn open(&self) -> Result<Link, LinkError> {
        let err = |e: lapin::Error| LinkError {
            name: None,
            reason: self.scrub(e),
        };
        let properties = ConnectionProperties::default()
            .with_connection_name(self.config.connection_name.clone().into());
        let connection = Connection::connect_uri(self.uri.clone(), properties)
            .await
            .map_err(err)?;
        let channel = connection.create_channel().await.map_err(err)?;
        if self.declares {
            declare_topology(&channel, &self.config)
                .await
                .map_err(|(name, e)| LinkError {
                    name: Some(name),
                    reason: self.scrub(e),
                })?;
        }
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(err)?;
        if self.declares {
            tracing::info!(url = %self.url, prefix = %self.config.prefix, queue_type = self.config.queue_type.name(), "connected to the broker; topology declared");
        } else {
            tracing::debug!(url = %self.url, prefix = %self.config.prefix, "connected to the broker; nothing declared (passive)");
        }
        Ok(Link {
            connection: Arc::new(connection),
            publisher: channel,
        })
    }

    /// The first connection of a bus: one attempt, its failure classified for the user.
    pub(super) async fn first_link(&self) -> Result<Link, ConnectError> {
        self.try_link().await.map_err(|e| {
            let url = self.url.clone();
            let reason = e.reason;
            if let Some(name) = e.name.filter(|_| reason.contains("PRECONDITION_FAILED")) {
                ConnectError::Topology { url, name, reason }
            } else if [
                "ACCESS_REFUSED",
                "NOT_ALLOWED",
                "access to vhost",
                "authentication",
            ]
            .iter()
            .any(|s| reason.contains(s))
            {
                ConnectError::Refused { url, reason }
            } else {
                ConnectError::Unreachable { url, reason }
            }
        })
    }
}

/// `text` with the raw URL replaced by its redacted form and `:<password>@` by `:***@`.
fn scrub_text(text: &str, raw_url: &str, redacted: &str) -> String {
    let mut out = text.replace(raw_url, redacted);
    if let Ok(uri) = raw_url.parse::<AMQPUri>() {
        let password = &uri.authority.userinfo.password;
        if !password.is_empty() {
            out = out.replace(&format!(":{password}@"), ":***@");
        }
    }
    out
}

/// The arguments of the CRM queue and of every partition.
pub(super) fn queue_arguments(config: &AmqpConfig) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(config.queue_type.name().into()),
    );
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(config.dead_letter_exchange())),
    );
    if let (QueueType::Quorum, Some(limit)) = (config.queue_type, config.delivery_limit) {
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(i32::try_from(limit).unwrap_or(i32::MAX)),
        );
    }
    args
}

/// Declares one queue of the bus (idempotent: the same arguments every time).
pub(super) async fn declare_queue(
    channel: &Channel,
    config: &AmqpConfig,
    queue: Queue,
) -> Result<(), (String, lapin::Error)> {
    let name = config.queue_name(queue);
    channel
        .queue_declare(
            name.clone().into(),
            QueueDeclareOptions::durable(),
            queue_arguments(config),
        )
        .await
        .map(|_| ())
        .map_err(|e| (name, e))
}

/// Declares the whole topology: the dead-letter exchange and queue, the CRM queue and every
/// partition. Idempotent: a second declaration with the same configuration changes nothing.
pub(super) async fn declare_topology(
    channel: &Channel,
    config: &AmqpConfig,
) -> Result<(), (String, lapin::Error)> {
    let dlx = config.dead_letter_exchange();
    let dlq = config.dead_letter_queue();
    channel
        .exchange_declare(
            dlx.clone().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| (dlx.clone(), e))?;
    // Classic on purpose: listing the dead letters reads and returns them, which a quorum
    // queue would count as delivery attempts.
    let mut dlq_args = FieldTable::default();
    dlq_args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    channel
        .queue_declare(dlq.clone().into(), QueueDeclareOptions::durable(), dlq_args)
        .await
        .map_err(|e| (dlq.clone(), e))?;
    channel
        .queue_bind(
            dlq.clone().into(),
            dlx.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| (dlq, e))?;
    for queue in Queue::all(config.partitions).chain([Queue::CrmCommands]) {
        declare_queue(channel, config, queue).await?;
    }
    Ok(())
}
