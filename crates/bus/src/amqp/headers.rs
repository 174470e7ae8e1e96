//! The wire format on AMQP: a [`WireMessage`] as body and properties, and the headers a
//! dead-letter copy carries (`docs/bus.md`, "Dead letters").

use super::config::AmqpConfig;
use crate::delivery::{DeadLetter, DeadLetterReason};
use crate::wire::{SCHEMA_HEADER, SCHEMA_VERSION_HEADER, WireLimits, WireMessage, decode};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use ledgersync_domain::Timestamp;

/// Header of a dead-letter copy: why, in words.
pub const DEAD_LETTER_REASON: &str = "ledgersync-dead-letter-reason";
/// Header of a dead-letter copy: the field at fault, when known.
pub const DEAD_LETTER_FIELD: &str = "ledgersync-dead-letter-field";
/// Header of a dead-letter copy: the line at fault in the body, when known.
pub const DEAD_LETTER_LINE: &str = "ledgersync-dead-letter-line";
/// Header of a dead-letter copy: the column at fault in the body, when known.
pub const DEAD_LETTER_COLUMN: &str = "ledgersync-dead-letter-column";
/// Header of a dead-letter copy: the queue the message was taken from.
pub const DEAD_LETTER_QUEUE: &str = "ledgersync-dead-letter-queue";
/// Header of a dead-letter copy: when, in milliseconds since the Unix epoch.
pub const DEAD_LETTERED_AT: &str = "ledgersync-dead-lettered-at";

/// Delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// The properties of `wire` as published: content type, message id, persistent, the schema
/// headers (the version as an integer when it is one).
pub(super) fn properties(wire: &WireMessage, mut headers: FieldTable) -> BasicProperties {
    if let Some(schema) = &wire.schema {
        headers.insert(
            SCHEMA_HEADER.into(),
            AMQPValue::LongString(schema.as_str().into()),
        );
    }
    if let Some(version) = &wire.schema_version {
        let value = match version.parse::<i32>() {
            Ok(v) => AMQPValue::LongInt(v),
            Err(_) => AMQPValue::LongString(version.as_str().into()),
        };
        headers.insert(SCHEMA_VERSION_HEADER.into(), value);
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers);
    if let Some(t) = &wire.content_type {
        props = props.with_content_type(t.as_str().into());
    }
    if let Some(id) = &wire.message_id {
        props = props.with_message_id(id.as_str().into());
    }
    props
}

/// A header's value as text: strings as they are, integers in decimal, anything else as the
/// broker's type and value (so an error can name what it found).
fn text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        AMQPValue::ShortShortInt(v) => v.to_string(),
        AMQPValue::ShortShortUInt(v) => v.to_string(),
        AMQPValue::ShortInt(v) => v.to_string(),
        AMQPValue::ShortUInt(v) => v.to_string(),
        AMQPValue::LongInt(v) => v.to_string(),
        AMQPValue::LongUInt(v) => v.to_string(),
        AMQPValue::LongLongInt(v) => v.to_string(),
        AMQPValue::Timestamp(v) => v.to_string(),
        other => format!("{other:?}"),
    }
}

fn header(props: &BasicProperties, name: &str) -> Option<String> {
    props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(name))
        .map(text)
}

/// The wire message of a received body and its properties.
pub(super) fn wire_of(body: Vec<u8>, props: &BasicProperties) -> WireMessage {
    WireMessage {
        body,
        content_type: props.content_type().as_ref().map(|s| s.as_str().into()),
        message_id: props.message_id().as_ref().map(|s| s.as_str().into()),
        schema: header(props, SCHEMA_HEADER),
        schema_version: header(props, SCHEMA_VERSION_HEADER),
    }
}

/// The extra headers of a dead-letter copy.
pub(super) fn dead_letter_headers(
    reason: &DeadLetterReason,
    queue_name: &str,
    at: Timestamp,
) -> FieldTable {
    let mut h = FieldTable::default();
    h.insert(
        DEAD_LETTER_REASON.into(),
        AMQPValue::LongString(LongString::from(reason.reason.as_str())),
    );
    if let Some(field) = &reason.field {
        h.insert(
            DEAD_LETTER_FIELD.into(),
            AMQPValue::LongString(field.as_str().into()),
        );
    }
    let int = |v: u64| AMQPValue::LongLongInt(i64::try_from(v).unwrap_or(i64::MAX));
    if let Some(line) = reason.line {
        h.insert(DEAD_LETTER_LINE.into(), int(line));
    }
    if let Some(column) = reason.column {
        h.insert(DEAD_LETTER_COLUMN.into(), int(column));
    }
    h.insert(
        DEAD_LETTER_QUEUE.into(),
        AMQPValue::LongString(queue_name.into()),
    );
    h.insert(DEAD_LETTERED_AT.into(), AMQPValue::LongLongInt(at.0));
    h
}

/// A message of the dead-letter queue as a [`DeadLetter`]: ledgersync's own copies by their
/// headers; messages the broker dead-lettered (a quorum queue's delivery limit) by its
/// `x-first-death-reason` and `x-first-death-queue`.
pub(super) fn dead_letter_of(
    body: Vec<u8>,
    props: &BasicProperties,
    config: &AmqpConfig,
    limits: &WireLimits,
) -> DeadLetter {
    let wire = wire_of(body, props);
    let message = decode(&wire, limits).ok();
    let number = |name: &str| header(props, name).and_then(|v| v.parse::<u64>().ok());
    let (reason, queue) = match header(props, DEAD_LETTER_REASON) {
        Some(reason) => (
            DeadLetterReason {
                reason,
                field: header(props, DEAD_LETTER_FIELD),
                line: number(DEAD_LETTER_LINE),
                column: number(DEAD_LETTER_COLUMN),
            },
            header(props, DEAD_LETTER_QUEUE),
        ),
        None => {
            let why = header(props, "x-first-death-reason").unwrap_or_else(|| "unknown".into());
            let queue = header(props, "x-first-death-queue");
            let text = match why.as_str() {
                "delivery_limit" => format!(
                    "dead-lettered by the broker: delivered more than the delivery limit of {} \
                     without being settled (its consumer released it or went away every time)",
                    queue.as_deref().unwrap_or("its queue")
                ),
                other => format!("dead-lettered by the broker ({other})"),
            };
            (DeadLetterReason::new(text), queue)
        }
    };
    DeadLetter {
        wire,
        message,
        reason,
        queue: queue.as_deref().and_then(|q| config.queue_of(q)),
        at: header(props, DEAD_LETTERED_AT)
            .and_then(|v| v.parse::<i64>().ok())
            .map(Timestamp),
    }
}
