//! The public sync-event stream: every event of the journal published as JSON on the topic
//! exchange `ledgersync.events`, at least once, in journal order (`docs/event-stream.md`).
//!
//! **The journal is the outbox.** The [`EventPublisher`] follows the journal by global
//! position from its confirmed [`Checkpoint`]: it reads a page of events after the checkpoint,
//! publishes them in order on a channel in confirm mode, waits for every publisher confirm,
//! and only then stores the page's last position as the new checkpoint. So an event appended
//! just before a crash is published after the restart (the checkpoint is behind it); an event
//! published but not yet checkpointed is published again (duplicates possible, gaps never).
//!
//! States of the publisher task: *connecting* (backoff from `reconnect_min`, doubled up to
//! `reconnect_max`) → *publishing* (pages until the journal is caught up) → *idle* (polls
//! the journal every `poll`) → *publishing* …; a broken connection, a refused publish or a
//! missing confirm sends it back to *connecting* with its checkpoint unchanged. It stops when
//! its [`EventPublisherHandle`] is stopped or dropped, or on an error it cannot get past (an
//! unreadable journal, an undecodable event, a checkpoint it cannot write), which
//! [`EventPublisherHandle::stop`] returns.

mod checkpoint;
mod message;

pub use checkpoint::{CHECKPOINT_FILE, Checkpoint};
pub use message::{
    POSITION_HEADER, STREAM_HEADER, SYNC_EVENT_SCHEMA, SYNC_EVENT_VERSION, body, properties,
    routing_key, routing_word,
};

use crate::amqp::redact_url;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use ledgersync_engine::log::Stored;
use ledgersync_journal::Journal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The exchange of the public stream.
pub const EVENTS_EXCHANGE: &str = "ledgersync.events";

/// What [`EventPublisher`] needs.
#[derive(Clone)]
pub struct EventPublisherConfig {
    /// The broker, `amqp://user:password@host:port/vhost`.
    pub url: String,
    /// The topic exchange (default [`EVENTS_EXCHANGE`]).
    pub exchange: String,
    /// The organization id: the first word of every routing key.
    pub org: String,
    /// Where the confirmed checkpoint is kept.
    pub checkpoint: PathBuf,
    /// Events per confirmed batch (default 512).
    pub batch: usize,
    /// How often an idle publisher looks for new events (default 100 ms).
    pub poll: Duration,
    /// Backoff after a failed connection: first delay (default 100 ms) …
    pub reconnect_min: Duration,
    /// … doubled up to this (default 5 s).
    pub reconnect_max: Duration,
    /// How long to wait for the confirms of a batch (default 30 s).
    pub confirm_timeout: Duration,
}

impl std::fmt::Debug for EventPublisherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPublisherConfig")
            .field("url", &redact_url(&self.url))
            .field("exchange", &self.exchange)
            .field("org", &self.org)
            .field("checkpoint", &self.checkpoint)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl EventPublisherConfig {
    /// The defaults for `url`, organization `org` and the checkpoint file `checkpoint`.
    pub fn new(url: impl Into<String>, org: impl Into<String>, checkpoint: PathBuf) -> Self {
        Self {
            url: url.into(),
            exchange: EVENTS_EXCHANGE.into(),
            org: org.into(),
            checkpoint,
            batch: 512,
            poll: Duration::from_millis(100),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            confirm_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the event publisher stopped or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventStreamError {
    /// The URL does not parse.
    #[error(
        "the event stream's broker URL `{url}` is not an AMQP URL ({reason}): write \
         amqp://user:password@host:port/vhost (the vhost percent-encoded, %2f for /)"
    )]
    BadUrl {
        /// The URL, its password redacted.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint file could not be read or written.
    #[error(
        "could not {step} the event stream checkpoint {}: {source}; check that the data \
         directory is writable and has space",
        path.display()
    )]
    Checkpoint {
        /// What was being done.
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The checkpoint file holds something else than `position <N>`.
    #[error(
        "the event stream checkpoint {} holds `{found}`, not `position <N>`: write the last \
         position known to be published (or `position 0` to publish the whole journal again)",
        path.display()
    )]
    BadCheckpoint {
        /// The file.
        path: PathBuf,
        /// Its first characters.
        found: String,
    },
    /// The journal could not be read, or an event in it could not be decoded.
    #[error(
        "the event publisher could not read the journal after position {after}: {reason}; \
         run `ledgersync journal check`"
    )]
    Journal {
        /// The confirmed checkpoint.
        after: u64,
        /// What failed.
        reason: String,
    },
    /// The publisher task ended abnormally.
    #[error("the event publisher task failed: {0}")]
    Task(String),
}

/// Publishes the journal on the public stream; see the module documentation.
pub struct EventPublisher {
    journal: Arc<dyn Journal>,
    config: EventPublisherConfig,
    uri: lapin::uri::AMQPUri,
    checkpoint: Checkpoint,
    /// The checkpoint as read by [`EventPublisher::new`]: publishing starts after it.
    start: u64,
}

/// The running publisher: its confirmed checkpoint, and a way to stop it. Dropping it stops
/// the task too (abruptly: what was not confirmed yet is published again by the next run).
pub struct EventPublisherHandle {
    confirmed: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), EventStreamError>>>,
}

impl EventPublisherHandle {
    /// The last position the broker confirmed (as stored in the checkpoint).
    pub fn confirmed(&self) -> u64 {
        self.confirmed.load(Ordering::Acquire)
    }

    /// Stops the publisher after the batch under way and returns how it ended.
    pub async fn stop(mut self) -> Result<(), EventStreamError> {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| EventStreamError::Task(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for EventPublisherHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl EventPublisher {
    /// A publisher of `journal`; checks the URL and reads the checkpoint.
    pub fn new(
        journal: Arc<dyn Journal>,
        config: EventPublisherConfig,
    ) -> Result<Self, EventStreamError> {
        let uri = config
            .url
            .parse()
            .map_err(|reason: String| EventStreamError::BadUrl {
                url: redact_url(&config.url),
                reason: reason.replace(&config.url, &redact_url(&config.url)),
            })?;
        let checkpoint = Checkpoint::at(&config.checkpoint);
        let start = checkpoint.load()?;
        Ok(Self {
            journal,
            config,
            uri,
            checkpoint,
            start,
        })
    }

    /// The confirmed checkpoint it resumes after (0: the whole journal).
    pub fn resumes_after(&self) -> u64 {
        self.start
    }

    /// Starts the publisher task on the current tokio runtime.
    pub fn spawn(self) -> Result<EventPublisherHandle, EventStreamError> {
        let confirmed = Arc::new(AtomicU64::new(self.start));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run(confirmed.clone(), stopped));
        Ok(EventPublisherHandle {
            confirmed,
            stop,
            task: Some(task),
        })
    }

    async fn run(
        self,
        confirmed: Arc<AtomicU64>,
        mut stopped: watch::Receiver<bool>,
    ) -> Result<(), EventStreamError> {
        let url = redact_url(&self.config.url);
        let mut delay = self.config.reconnect_min;
        while !*stopped.borrow() {
            let (connection, channel) = match self.connect().await {
                Ok(link) => {
                    tracing::info!(url = %url, exchange = %self.config.exchange, from = confirmed.load(Ordering::Acquire) + 1, "publishing the event stream");
                    delay = self.config.reconnect_min;
                    link
                }
                Err(reason) => {
                    tracing::warn!(url = %url, error = %reason, retry_in = ?delay, "the event stream's broker is not reachable; retrying");
                    if sleep_or_stop(delay, &mut stopped).await {
                        break;
                    }
                    delay = (delay * 2).min(self.config.reconnect_max);
                    continue;
                }
            };
            let outcome = self
                .publish_until_broken(&channel, &confirmed, &mut stopped)
                .await;
            let _ = connection
                .close(200, "ledgersync: event publisher".into())
                .await;
            match outcome {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, confirmed = confirmed.load(Ordering::Acquire), "the event stream stopped");
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn connect(&self) -> Result<(Connection, Channel), String> {
        let scrub = |e: lapin::Error| {
            e.to_string()
                .replace(&self.config.url, &redact_url(&self.config.url))
        };
        let properties =
            ConnectionProperties::default().with_connection_name("ledgersync-events".into());
        let connection = Connection::connect_uri(self.uri.clone(), properties)
            .await
            .map_err(scrub)?;
        let channel = connection.create_channel().await.map_err(scrub)?;
        channel
            .exchange_declare(
                self.config.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(scrub)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(scrub)?;
        Ok((connection, channel))
    }

    /// Publishes pages until stopped (`Ok(true)`) or the link breaks (`Ok(false)`).
    async fn publish_until_broken(
        &self,
        channel: &Channel,
        confirmed: &AtomicU64,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<bool, EventStreamError> {
        loop {
            if *stopped.borrow() {
                return Ok(true);
            }
            let after = confirmed.load(Ordering::Acquire);
            let page = self.read_page(after).await?;
            let Some(last) = page.last().map(|s| s.envelope.position) else {
                if sleep_or_stop(self.config.poll, stopped).await {
                    return Ok(true);
                }
                continue;
            };
            if let Err(reason) = self.publish_page(channel, &page).await {
                tracing::warn!(after, error = %reason, "the event stream batch was not confirmed; publishing it again after reconnecting");
                return Ok(false);
            }
            // Written in the task, not on the blocking pool: a publisher stopped or dropped
            // leaves no checkpoint write behind it (one small fsync per batch).
            self.checkpoint.store(last)?;
            confirmed.store(last, Ordering::Release);
            tracing::debug!(
                position = last,
                events = page.len(),
                "event stream confirmed"
            );
        }
    }

    async fn read_page(&self, after: u64) -> Result<Vec<Stored>, EventStreamError> {
        let journal = self.journal.clone();
        let batch = self.config.batch.max(1);
        let read = tokio::task::spawn_blocking(move || -> Result<Vec<Stored>, String> {
            journal
                .read_all(after + 1, batch)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|env| Stored::decode(env).map_err(|e| e.to_string()))
                .collect()
        })
        .await
        .map_err(|e| EventStreamError::Task(e.to_string()))?;
        read.map_err(|reason| EventStreamError::Journal { after, reason })
    }

    /// Publishes a page in order and waits for every confirm; `Err` if any is missing.
    async fn publish_page(&self, channel: &Channel, page: &[Stored]) -> Result<(), String> {
        let mut pending = Vec::with_capacity(page.len());
        for stored in page {
            let confirm = channel
                .basic_publish(
                    self.config.exchange.as_str().into(),
                    routing_key(&self.config.org, stored).as_str().into(),
                    BasicPublishOptions::default(),
                    &body(stored),
                    properties(stored),
                )
                .await
                .map_err(|e| e.to_string())?;
            pending.push(confirm);
        }
        let deadline = tokio::time::Instant::now() + self.config.confirm_timeout;
        for confirm in pending {
            match tokio::time::timeout_at(deadline, confirm).await {
                Err(_) => return Err("the broker did not confirm in time".into()),
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(Confirmation::Nack(_))) => return Err("the broker refused a message".into()),
                Ok(Ok(_)) => {}
            }
        }
        Ok(())
    }
}

/// Sleeps `delay`; true if asked to stop meanwhile.
async fn sleep_or_stop(delay: Duration, stopped: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}
