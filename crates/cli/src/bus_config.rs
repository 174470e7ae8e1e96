//! The `[bus]` table of the configuration file: which bus `serve` uses, and whether it
//! publishes the journal on the public event stream (`docs/serve.md`, `docs/event-stream.md`).
//! The URL's password is never shown: errors and logs carry [`ledgersync_bus::redact_url`].

use anyhow::{Result, anyhow};
use serde::Deserialize;

/// The broker `serve` uses when `bus.url` is not given (guest/guest, the default vhost).
pub const DEFAULT_BUS_URL: &str = "amqp://127.0.0.1:5672/%2f";

/// `[bus]` as written in the file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct BusSection {
    kind: Option<String>,
    url: Option<String>,
    publish_events: Option<bool>,
    partitions: Option<usize>,
    queue_type: Option<String>,
    max_message_bytes: Option<usize>,
}

/// Which bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// In the process (the default): nothing leaves it, no event stream.
    InProcess,
    /// RabbitMQ at `url`.
    Amqp,
}

/// The effective `[bus]`.
#[derive(Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// `bus.kind`.
    pub kind: BusKind,
    /// `bus.url` (only used with [`BusKind::Amqp`]).
    pub url: String,
    /// `bus.publish_events`: publish the journal on `ledgersync.events` (default: true with
    /// `kind = "amqp"`; refused with `kind = "in-process"`, where there is no broker).
    pub publish_events: bool,
    /// `bus.partitions`: partition queues (default 64, the same on every node).
    pub partitions: usize,
    /// `bus.queue_type`: `quorum` (default) or `classic`.
    pub queue_type: ledgersync_bus::QueueType,
    /// `bus.max_message_bytes`: the largest message body taken (default 1 MiB).
    pub max_message_bytes: usize,
}

impl BusConfig {
    /// The RabbitMQ settings of this configuration (the others at their defaults).
    pub fn amqp(&self) -> ledgersync_bus::AmqpConfig {
        ledgersync_bus::AmqpConfig {
            url: self.url.clone(),
            partitions: self.partitions,
            queue_type: self.queue_type,
            limits: ledgersync_bus::WireLimits {
                max_body: self.max_message_bytes,
            },
            ..ledgersync_bus::AmqpConfig::default()
        }
    }
}

impl std::fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusConfig")
            .field("kind", &self.kind)
            .field("url", &ledgersync_bus::redact_url(&self.url))
            .field("publish_events", &self.publish_events)
            .field("partitions", &self.partitions)
            .field("queue_type", &self.queue_type)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish()
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: BusKind::InProcess,
            url: DEFAULT_BUS_URL.into(),
            publish_events: false,
            partitions: ledgersync_bus::DEFAULT_PARTITIONS,
            queue_type: ledgersync_bus::QueueType::Quorum,
            max_message_bytes: ledgersync_bus::DEFAULT_MAX_BODY,
        }
    }
}

impl BusSection {
    /// Checks the table; `file_name` names the file in errors.
    pub(crate) fn check(self, file_name: &str) -> Result<BusConfig> {
        let kind = match self.kind.as_deref() {
            None | Some("in-process") => BusKind::InProcess,
            Some("amqp") => BusKind::Amqp,
            Some(other) => {
                return Err(anyhow!(
                    "{file_name}: key `bus.kind` cannot be `{other}`; allowed values: in-process, amqp"
                ));
            }
        };
        let url = self.url.unwrap_or_else(|| DEFAULT_BUS_URL.into());
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(anyhow!(
                "{file_name}: key `bus.url` cannot be `{}`; write amqp://user:password@host:port/vhost \
                 or amqps://… (the vhost percent-encoded, %2f for /)",
                ledgersync_bus::redact_url(&url)
            ));
        }
        let publish_events = match (kind, self.publish_events) {
            (BusKind::InProcess, Some(true)) => {
                return Err(anyhow!(
                    "{file_name}: key `bus.publish_events` needs a broker: set `bus.kind = \"amqp\"` \
                     (and `bus.url`), or remove the key"
                ));
            }
            (BusKind::InProcess, _) => false,
            (BusKind::Amqp, p) => p.unwrap_or(true),
        };
        let partitions = self
            .partitions
            .unwrap_or(ledgersync_bus::DEFAULT_PARTITIONS);
        if !(1..=1024).contains(&partitions) {
            return Err(anyhow!(
                "{file_name}: key `bus.partitions` cannot be {partitions}; allowed: 1 to 1024 \
                 (default 64; every node must use the same number)"
            ));
        }
        let queue_type = match self.queue_type.as_deref() {
            None => ledgersync_bus::QueueType::Quorum,
            Some(name) => ledgersync_bus::QueueType::parse(name).ok_or_else(|| {
                anyhow!(
                    "{file_name}: key `bus.queue_type` cannot be `{name}`; allowed values: \
                     quorum, classic"
                )
            })?,
        };
        let max_message_bytes = self
            .max_message_bytes
            .unwrap_or(ledgersync_bus::DEFAULT_MAX_BODY);
        if max_message_bytes < 1024 {
            return Err(anyhow!(
                "{file_name}: key `bus.max_message_bytes` cannot be {max_message_bytes}; it must \
                 be at least 1024 (default 1048576, 1 MiB)"
            ));
        }
        Ok(BusConfig {
            kind,
            url,
            publish_events,
            partitions,
            queue_type,
            max_message_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BusConfig> {
        toml::from_str::<BusSection>(text)
            .map_err(|e| anyhow!("{e}"))?
            .check("ledgersync.toml")
    }

    #[test]
    fn defaults_in_process_and_amqp_publishes_by_default() {
        assert_eq!(parse("").unwrap(), BusConfig::default());
        let amqp = parse("kind = \"amqp\"").unwrap();
        assert_eq!(amqp.kind, BusKind::Amqp);
        assert_eq!(amqp.url, DEFAULT_BUS_URL);
        assert!(amqp.publish_events);
        assert!(
            !parse("kind = \"amqp\"\npublish_events = false")
                .unwrap()
                .publish_events
        );
    }

    #[test]
    fn bad_values_are_named_and_the_password_never_shown() {
        let e = parse("kind = \"kafka\"").unwrap_err().to_string();
        assert!(
            e.contains("bus.kind") && e.contains("in-process, amqp"),
            "{e}"
        );
        let e = parse("kind = \"amqp\"\nurl = \"http://u:secret@h/\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bus.url") && !e.contains("secret"), "{e}");
        let e = parse("publish_events = true").unwrap_err().to_string();
        assert!(e.contains("bus.publish_events"), "{e}");
        let debug = format!(
            "{:?}",
            parse("kind = \"amqp\"\nurl = \"amqp://u:secret@h/%2f\"").unwrap()
        );
        assert!(!debug.contains("secret"), "{debug}");
        assert!(
            parse("exchange = \"x\"")
                .unwrap_err()
                .to_string()
                .contains("exchange")
        );
    }
}
