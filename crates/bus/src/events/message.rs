//! One journal event as a message of the public stream: its routing key, body and properties
//! (`docs/event-stream.md`, "Messages").

use crate::wire::{CONTENT_TYPE, SCHEMA_HEADER, SCHEMA_VERSION_HEADER};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use ledgersync_engine::log::{Stored, event_json};

/// The schema name of the public stream's messages (header `ledgersync-schema`).
pub const SYNC_EVENT_SCHEMA: &str = "sync-event";
/// The version of that schema (header `ledgersync-schema-version`).
pub const SYNC_EVENT_VERSION: i32 = 1;
/// Header carrying the event's global position (AMQP signed 64-bit integer).
pub const POSITION_HEADER: &str = "ledgersync-position";
/// Header carrying the event's stream (`mailbox/<id>` or `org/<id>`).
pub const STREAM_HEADER: &str = "ledgersync-stream";

/// One word of a routing key: `.` (the word separator) written `%2E`, `%` written `%25`.
pub fn routing_word(text: &str) -> String {
    text.replace('%', "%25").replace('.', "%2E")
}

/// `<org>.<mailbox>.<event_type>`; `<org>._org.<event_type>` for the organization stream.
pub fn routing_key(org: &str, stored: &Stored) -> String {
    let e = &stored.envelope;
    let who = match e.stream.as_mailbox() {
        Some(mailbox) => routing_word(mailbox.as_str()),
        None => "_org".to_string(),
    };
    let event_type = ledgersync_domain::event::type_name(e.event_type)
        .map(str::to_string)
        .unwrap_or_else(|| format!("type-{}", e.event_type.0));
    format!("{}.{who}.{event_type}", routing_word(org))
}

/// The body: the event's JSON, the same as `ledgersync events --json` prints.
pub fn body(stored: &Stored) -> Vec<u8> {
    serde_json::to_vec(&event_json(stored)).unwrap_or_default()
}

/// Persistent, `application/json`, the event id as message id, the schema headers, the
/// position and the stream.
pub fn properties(stored: &Stored) -> BasicProperties {
    let e = &stored.envelope;
    let mut headers = FieldTable::default();
    headers.insert(
        SCHEMA_HEADER.into(),
        AMQPValue::LongString(SYNC_EVENT_SCHEMA.into()),
    );
    headers.insert(
        SCHEMA_VERSION_HEADER.into(),
        AMQPValue::LongInt(SYNC_EVENT_VERSION),
    );
    headers.insert(
        POSITION_HEADER.into(),
        AMQPValue::LongLongInt(i64::try_from(e.position).unwrap_or(i64::MAX)),
    );
    headers.insert(
        STREAM_HEADER.into(),
        AMQPValue::LongString(e.stream.as_str().into()),
    );
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(e.event_id.to_string().into())
        .with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::routing_word;

    #[test]
    fn dots_and_percents_are_escaped_in_a_routing_word() {
        assert_eq!(routing_word("mbx-a"), "mbx-a");
        assert_eq!(routing_word("a.b%c"), "a%2Eb%25c");
    }
}
