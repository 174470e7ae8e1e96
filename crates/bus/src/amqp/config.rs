//! The AMQP backend's settings, in one struct with sane defaults, and the names they give the
//! topology.

use crate::memory::DEFAULT_PREFETCH;
use crate::message::{DEFAULT_PARTITIONS, Queue};
use crate::wire::WireLimits;
use std::fmt;
use std::time::Duration;

/// The default delivery limit of a quorum queue: a message returned this many times (releases,
/// consumers that went away holding it) is dead-lettered by the broker with the reason
/// `delivery_limit`. Releases wait a second each in the consumer loop, so 100 rides out about
/// a minute and a half of journal trouble; a message that crashes its consumer every time
/// stops after 100.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 100;

/// The RabbitMQ queue type of the CRM queue and the partitions. `docs/decisions/0013` says why
/// the default is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueType {
    /// Classic durable queues: one copy, on the node that declared them; no delivery limit
    /// (a message is redelivered until a consumer settles it).
    Classic,
    /// Quorum queues: replicated (Raft) on a cluster, a delivery limit
    /// ([`AmqpConfig::delivery_limit`]) after which the broker dead-letters a message.
    Quorum,
}

impl QueueType {
    /// The value of `x-queue-type`.
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }

    /// The queue type named `name` (`classic` or `quorum`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "classic" => Some(QueueType::Classic),
            "quorum" => Some(QueueType::Quorum),
            _ => None,
        }
    }
}

/// Everything the AMQP backend needs: where the broker is, the names of the topology and the
/// limits. `Debug` redacts the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpConfig {
    /// The broker: `amqp://user:password@host:port/vhost` or `amqps://…` (TLS through rustls,
    /// the platform's trust store). The vhost is percent-encoded (`%2f` is `/`). Default
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// The prefix of every queue and exchange name. Default `ledgersync.`; tests use a unique
    /// one (or a vhost of their own).
    pub prefix: String,
    /// Partitions: queues for mail-side messages. Default [`DEFAULT_PARTITIONS`] (64); every
    /// node must use the same number.
    pub partitions: usize,
    /// The type of the CRM queue and of the partitions. Default [`QueueType::Quorum`]
    /// (decision 0013). Changing it on an existing broker makes the declaration fail: the
    /// queues must be drained and deleted first (`docs/bus.md`, Topology).
    pub queue_type: QueueType,
    /// Quorum queues only: the broker dead-letters a message returned this many times.
    /// `None` sets no limit. Default `Some(`[`DEFAULT_DELIVERY_LIMIT`]`)`. Classic queues have
    /// no such limit and ignore this.
    pub delivery_limit: Option<u32>,
    /// Messages a consumer holds unsettled (`basic.qos` per consumer channel). Default
    /// [`DEFAULT_PREFETCH`] (32): 65 queues × 32 ≈ the journal's group commit of 4096 events.
    pub prefetch: u16,
    /// Size limits. Default 1 MiB a body.
    pub limits: WireLimits,
    /// The first wait before reconnecting after a connection or channel is lost; doubled
    /// after each failure up to [`AmqpConfig::reconnect_max`]. Default 100 ms.
    pub reconnect_min: Duration,
    /// The longest wait between reconnection attempts. Default 5 s.
    pub reconnect_max: Duration,
    /// How long a publish (or a dead-lettering, or a listing) waits for the broker —
    /// reconnection and confirms included — before it fails. Default 30 s.
    pub publish_timeout: Duration,
    /// After a release, the deliveries the consumer already holds behind the released message
    /// wait until it comes back; if it has not after this long (a policy outside ledgersync,
    /// such as a message TTL, removed it), they are handed out. Default 30 s.
    pub release_wait: Duration,
    /// The most dead letters [`crate::Bus::dead_letters`] lists. Default 10,000.
    pub dead_letter_listing_limit: usize,
    /// The connection name the broker shows (`rabbitmqctl list_connections client_properties`).
    /// Default `ledgersync`.
    pub connection_name: String,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefix: "ledgersync.".into(),
            partitions: DEFAULT_PARTITIONS,
            queue_type: QueueType::Quorum,
            delivery_limit: Some(DEFAULT_DELIVERY_LIMIT),
            prefetch: DEFAULT_PREFETCH,
            limits: WireLimits::default(),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(30),
            release_wait: Duration::from_secs(30),
            dead_letter_listing_limit: 10_000,
            connection_name: "ledgersync".into(),
        }
    }
}

impl fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("partitions", &self.partitions)
            .field("queue_type", &self.queue_type)
            .field("delivery_limit", &self.delivery_limit)
            .field("prefetch", &self.prefetch)
            .field("limits", &self.limits)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("publish_timeout", &self.publish_timeout)
            .field("release_wait", &self.release_wait)
            .field("dead_letter_listing_limit", &self.dead_letter_listing_limit)
            .field("connection_name", &self.connection_name)
            .finish()
    }
}

impl AmqpConfig {
    /// The name of a queue: `<prefix>crm`, `<prefix>partition.<n>`, `<prefix>crm.commands`.
    pub fn queue_name(&self, queue: Queue) -> String {
        format!("{}{queue}", self.prefix)
    }

    /// The queue a name belongs to, if it is one of this configuration's.
    pub fn queue_of(&self, name: &str) -> Option<Queue> {
        let rest = name.strip_prefix(&self.prefix)?;
        if rest == "crm" {
            return Some(Queue::Crm);
        }
        if rest == "crm.commands" {
            return Some(Queue::CrmCommands);
        }
        let p = rest.strip_prefix("partition.")?.parse::<usize>().ok()?;
        (p < self.partitions).then_some(Queue::Partition(p))
    }

    /// The dead-letter exchange: `<prefix>dead-letter` (fanout).
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}dead-letter", self.prefix)
    }

    /// The dead-letter queue: `<prefix>dead-letters`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}dead-letters", self.prefix)
    }
}

/// `url` with its password replaced by `***` (`amqp://guest:***@host:5672/%2f`): the only form
/// of a broker address that ledgersync logs or puts in an error.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let start = scheme_end + 3;
    let rest = &url[start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_string();
    };
    format!(
        "{}{}:***{}",
        &url[..start],
        &userinfo[..colon],
        &url[start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_survives_redaction() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("amqps://svc:p%40ss:w@rd@broker.example:5671/prod?heartbeat=10"),
            "amqps://svc:***@broker.example:5671/prod?heartbeat=10"
        );
        assert_eq!(redact_url("amqp://127.0.0.1:5672"), "amqp://127.0.0.1:5672");
        assert_eq!(redact_url("amqp://user@host/v"), "amqp://user@host/v");
        assert_eq!(redact_url("not a url"), "not a url");
        let config = AmqpConfig {
            url: "amqp://app:s3cret-Pa55@mq.example/%2f".into(),
            ..AmqpConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("app:***@mq.example"), "{shown}");
    }

    #[test]
    fn names_map_back_to_their_queues() {
        let config = AmqpConfig {
            prefix: "t1.".into(),
            partitions: 4,
            ..AmqpConfig::default()
        };
        assert_eq!(config.queue_name(Queue::Crm), "t1.crm");
        assert_eq!(config.queue_name(Queue::Partition(3)), "t1.partition.3");
        assert_eq!(config.queue_of("t1.crm"), Some(Queue::Crm));
        assert_eq!(config.queue_of("t1.partition.3"), Some(Queue::Partition(3)));
        assert_eq!(config.queue_of("t1.partition.4"), None);
        assert_eq!(config.queue_of("t2.crm"), None);
        assert_eq!(config.dead_letter_exchange(), "t1.dead-letter");
        assert_eq!(config.dead_letter_queue(), "t1.dead-letters");
    }
}
