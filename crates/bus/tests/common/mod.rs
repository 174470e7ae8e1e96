//! What the bus tests share: messages to publish, and the backends behind one factory — the
//! in-process bus, and RabbitMQ on 127.0.0.1:5672 (guest/guest) in a vhost of each test's own,
//! created and deleted with `rabbitmqctl`. A missing broker fails the test and says how to
//! start one; nothing is skipped.
#![allow(dead_code)]

use ledgersync_bus::{
    AmqpBus, AmqpConfig, Bus, BusMessage, InProcessBus, InProcessConfig, QueueType, WireLimits,
};
use ledgersync_domain::event::{IntentSucceeded, SettingChanged};
use ledgersync_domain::{Event, EventId, MailboxId, Timestamp};
use ledgersync_engine::ManualClock;
use std::sync::Arc;
use std::time::Duration;

#[path = "../../src/test_broker.rs"]
mod test_broker;
#[allow(unused_imports)]
pub use test_broker::{Vhost, rabbitmqctl, require_broker};

/// The clock's time: dead letters are stamped with it.
pub const NOW: Timestamp = Timestamp(1_800_000_000_000);

/// The size limit the tests run under (small, so an oversized message is cheap).
pub const MAX_BODY: usize = 4096;

/// A mail-side outcome for `mailbox`, told apart by `n`.
pub fn outcome(mailbox: &str, n: u128) -> BusMessage {
    BusMessage::observation(
        MailboxId::new(mailbox),
        Event::IntentSucceeded(IntentSucceeded {
            intent: EventId::from_u128(n),
            remote: None,
            etag: Some(format!("\"{n}\"")),
            crm: None,
        }),
    )
}

/// A CRM change, told apart by `n`.
pub fn change(n: u32) -> BusMessage {
    BusMessage::crm(Event::SettingChanged(SettingChanged {
        key: "schedule_quiet_step_seconds".into(),
        value: n.to_string(),
    }))
}

/// The `n` of a message made by [`outcome`] or [`change`].
pub fn n_of(message: &BusMessage) -> u128 {
    match message {
        BusMessage::MailObservation { .. } | BusMessage::MailObservations { .. } => {
            match &message.incomings()[0].event {
                Event::IntentSucceeded(p) => p.intent.as_u128(),
                other => panic!("unexpected {other:?}"),
            }
        }
        BusMessage::CrmChange { line, .. } => {
            let line: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            line["value"]
                .as_str()
                .expect("a setting")
                .parse()
                .expect("a number")
        }
    }
}

/// How a test's bus is set up.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub partitions: usize,
    pub prefetch: u16,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            partitions: 4,
            prefetch: 8,
        }
    }
}

/// A backend under test: a new, empty bus, and more handles (connections) to it.
pub trait Backend: Sized {
    /// Its bus.
    type Bus: Bus + Clone;
    /// A new, empty bus.
    fn start(options: Options) -> impl std::future::Future<Output = Self>;
    /// The first handle.
    fn bus(&self) -> &Self::Bus;
    /// Another connection to the same bus, publishing and decoding under `max_body`.
    fn open(&self, max_body: usize) -> impl std::future::Future<Output = Self::Bus>;
}

/// The in-process backend.
pub struct Memory {
    bus: InProcessBus,
}

impl Backend for Memory {
    type Bus = InProcessBus;

    async fn start(options: Options) -> Self {
        let config = InProcessConfig {
            partitions: options.partitions,
            prefetch: options.prefetch,
            limits: WireLimits { max_body: MAX_BODY },
        };
        Self {
            bus: InProcessBus::with_config(config, Arc::new(ManualClock::new(NOW))),
        }
    }

    fn bus(&self) -> &InProcessBus {
        &self.bus
    }

    async fn open(&self, max_body: usize) -> InProcessBus {
        self.bus.with_limits(WireLimits { max_body })
    }
}

/// Which queue type an AMQP run declares.
pub trait Kind {
    const QUEUE_TYPE: QueueType;
}
/// Classic queues.
pub struct Classic;
impl Kind for Classic {
    const QUEUE_TYPE: QueueType = QueueType::Classic;
}
/// Quorum queues.
pub struct Quorum;
impl Kind for Quorum {
    const QUEUE_TYPE: QueueType = QueueType::Quorum;
}

/// RabbitMQ, in a vhost of the test's own.
pub struct Amqp<K> {
    pub vhost: Vhost,
    pub config: AmqpConfig,
    bus: AmqpBus,
    _kind: std::marker::PhantomData<K>,
}

/// The configuration of a test bus in `vhost`.
pub fn amqp_config(vhost: &Vhost, options: Options, queue_type: QueueType) -> AmqpConfig {
    AmqpConfig {
        url: vhost.url(),
        partitions: options.partitions,
        prefetch: options.prefetch,
        queue_type,
        limits: WireLimits { max_body: MAX_BODY },
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        publish_timeout: Duration::from_secs(20),
        connection_name: format!("ledgersync-test {}", vhost.name),
        ..AmqpConfig::default()
    }
}

/// Connects, failing the test loudly when it cannot.
pub async fn connect(config: AmqpConfig) -> AmqpBus {
    AmqpBus::connect(config, Arc::new(ManualClock::new(NOW)))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

impl<K: Kind> Backend for Amqp<K> {
    type Bus = AmqpBus;

    async fn start(options: Options) -> Self {
        let vhost = Vhost::new();
        let config = amqp_config(&vhost, options, K::QUEUE_TYPE);
        let bus = connect(config.clone()).await;
        Self {
            vhost,
            config,
            bus,
            _kind: std::marker::PhantomData,
        }
    }

    fn bus(&self) -> &AmqpBus {
        &self.bus
    }

    async fn open(&self, max_body: usize) -> AmqpBus {
        connect(AmqpConfig {
            limits: WireLimits { max_body },
            ..self.config.clone()
        })
        .await
    }
}

/// `f` within `secs` seconds, or the test fails saying what it waited for.
pub async fn within<F: std::future::Future>(secs: u64, what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("waited {secs} s for {what}"))
}
