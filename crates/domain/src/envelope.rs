//! The event envelope: the stable, versioned frame around every payload in the journal.
//!
//! Layout and versioning rules are specified in `docs/event-format.md`. In short: the envelope
//! is encoded with bincode 2 (standard configuration: little-endian, variable-length integers)
//! behind a one-byte envelope format version; the payload inside it is opaque bytes whose
//! meaning is given by `(event_type, schema_version)`. A released envelope layout or payload
//! layout never changes; a change is a new version with an upcaster.

use crate::ids::{EventId, ItemKey, StreamId};
use crate::rules::RuleId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The envelope format version written as the first byte of every encoded envelope.
pub const ENVELOPE_VERSION: u8 = 1;

/// The numeric code of an event type (see `event::EventKind` for the catalogue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventType(pub u16);

/// An event as stored: the envelope fields plus the encoded payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id of the event (UUID v7 chosen by the shell).
    pub event_id: EventId,
    /// The stream the event belongs to.
    pub stream: StreamId,
    /// Position in its stream: 1 for the first event of a stream, then +1.
    pub seq: u64,
    /// Position in the whole journal: 1 for the first event, then +1, no gaps.
    pub position: u64,
    /// When the event was appended (shell clock).
    pub recorded_at: Timestamp,
    /// When the fact happened (the observation time, or the decision time).
    pub occurred_at: Timestamp,
    /// Which payload type the bytes hold.
    pub event_type: EventType,
    /// Which version of that payload type's layout the bytes hold.
    pub schema_version: u16,
    /// The events (or bus message) that caused this one.
    pub causation: Vec<EventId>,
    /// The id shared by every event of one causal flow (the first observation's id).
    pub correlation: Option<EventId>,
    /// The rule that made the decision (decisions only).
    pub rule: Option<RuleId>,
    /// The encoded payload.
    pub payload: Vec<u8>,
}

/// An event ready to be appended: everything but the positions, which the journal assigns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique id of the event.
    pub event_id: EventId,
    /// When the event is appended.
    pub recorded_at: Timestamp,
    /// When the fact happened.
    pub occurred_at: Timestamp,
    /// Payload type.
    pub event_type: EventType,
    /// Payload layout version.
    pub schema_version: u16,
    /// Causing events.
    pub causation: Vec<EventId>,
    /// Correlation id.
    pub correlation: Option<EventId>,
    /// Deciding rule.
    pub rule: Option<RuleId>,
    /// Encoded payload.
    pub payload: Vec<u8>,
    /// Index keys: the CRM rows, mail-server items and subjects the event concerns.
    pub items: Vec<ItemKey>,
}

impl NewEvent {
    /// The stored envelope once the journal has assigned `seq` and `position`.
    pub fn into_envelope(self, stream: StreamId, seq: u64, position: u64) -> Envelope {
        Envelope {
            event_id: self.event_id,
            stream,
            seq,
            position,
            recorded_at: self.recorded_at,
            occurred_at: self.occurred_at,
            event_type: self.event_type,
            schema_version: self.schema_version,
            causation: self.causation,
            correlation: self.correlation,
            rule: self.rule,
            payload: self.payload,
        }
    }
}

/// Why bytes could not be read as an envelope or a payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are empty.
    #[error("empty record: no envelope version byte")]
    Empty,
    /// The envelope version byte is one this build does not know.
    #[error(
        "envelope format version {found} is not supported (this build reads version {supported}); \
         open the data with the ledgersync release that wrote it"
    )]
    UnsupportedEnvelope {
        /// Version found.
        found: u8,
        /// Version this build reads.
        supported: u8,
    },
    /// The payload type is unknown to this build.
    #[error("unknown event type code {0}; the journal was written by a newer ledgersync")]
    UnknownEventType(u16),
    /// The payload version is unknown for its type.
    #[error("event type {event_type} has no schema version {version} in this build")]
    UnknownSchemaVersion {
        /// Event type name.
        event_type: &'static str,
        /// Version found.
        version: u16,
    },
    /// bincode could not decode the bytes.
    #[error("malformed bytes: {0}")]
    Malformed(String),
}

/// bincode configuration used everywhere: standard (little-endian, varint integers).
pub(crate) fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

impl Envelope {
    /// Encodes the envelope: one version byte, then the bincode body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.payload.len() + self.stream.0.len());
        out.push(ENVELOPE_VERSION);
        bincode::serde::encode_into_std_write(self, &mut out, config())
            .expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes an envelope written by [`Envelope::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != ENVELOPE_VERSION {
            return Err(DecodeError::UnsupportedEnvelope {
                found: version,
                supported: ENVELOPE_VERSION,
            });
        }
        let (env, used) = bincode::serde::decode_from_slice::<Envelope, _>(body, config())
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if used != body.len() {
            return Err(DecodeError::Malformed(format!(
                "{} trailing bytes after the envelope",
                body.len() - used
            )));
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_version_check() {
        let env = Envelope {
            event_id: EventId::from_u128(7),
            stream: StreamId("mailbox/m1".into()),
            seq: 3,
            position: 42,
            recorded_at: Timestamp(1000),
            occurred_at: Timestamp(900),
            event_type: EventType(5),
            schema_version: 1,
            causation: vec![EventId::from_u128(6)],
            correlation: Some(EventId::from_u128(1)),
            rule: Some(RuleId(22)),
            payload: vec![1, 2, 3],
        };
        let bytes = env.encode();
        assert_eq!(Envelope::decode(&bytes).unwrap(), env);
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(matches!(
            Envelope::decode(&bad),
            Err(DecodeError::UnsupportedEnvelope { found: 9, .. })
        ));
        assert!(matches!(Envelope::decode(&[]), Err(DecodeError::Empty)));
    }
}
