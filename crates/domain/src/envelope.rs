//! The event envelope: the stable, versioned frame around every payload in the journal.
//!
//! Layout and versioning rules are specified in `docs/event-format.md`. In short: the envelope
//! has a fixed little-endian layout (see [`Envelope::encode`]) behind a one-byte envelope
//! format version; the payload inside it is bincode 2 bytes whose meaning is given by
//! `(event_type, schema_version)`. A released envelope layout or payload
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

/// bincode configuration of payloads and snapshots: standard (little-endian, varint integers).
pub(crate) fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

impl Envelope {
    /// Encodes the envelope in its fixed layout (all integers little-endian):
    ///
    /// ```text
    /// u8   envelope version (1)
    /// [16] event id
    /// u64  seq            u64 position
    /// i64  recorded_at    i64 occurred_at      (ms since the epoch)
    /// u16  event type     u16 schema version
    /// u8   rule (0 = none)
    /// u8   has correlation, then [16] correlation id if 1
    /// u16  causation count, then [16] per id
    /// u32  stream length, then the stream name (UTF-8)
    /// u32  payload length, then the payload bytes
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + 16 * self.causation.len() + self.stream.0.len() + self.payload.len(),
        );
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&self.event_id.0);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&self.recorded_at.0.to_le_bytes());
        out.extend_from_slice(&self.occurred_at.0.to_le_bytes());
        out.extend_from_slice(&self.event_type.0.to_le_bytes());
        out.extend_from_slice(&self.schema_version.to_le_bytes());
        out.push(self.rule.map_or(0, |r| r.0));
        match self.correlation {
            Some(c) => {
                out.push(1);
                out.extend_from_slice(&c.0);
            }
            None => out.push(0),
        }
        let causes = u16::try_from(self.causation.len()).expect("at most 65535 causes per event");
        out.extend_from_slice(&causes.to_le_bytes());
        for c in &self.causation {
            out.extend_from_slice(&c.0);
        }
        let stream = self.stream.0.as_bytes();
        out.extend_from_slice(&(stream.len() as u32).to_le_bytes());
        out.extend_from_slice(stream);
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.payload);
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
        let mut r = Reader { buf: body };
        let event_id = EventId(r.array()?);
        let seq = u64::from_le_bytes(r.array()?);
        let position = u64::from_le_bytes(r.array()?);
        let recorded_at = Timestamp(i64::from_le_bytes(r.array()?));
        let occurred_at = Timestamp(i64::from_le_bytes(r.array()?));
        let event_type = EventType(u16::from_le_bytes(r.array()?));
        let schema_version = u16::from_le_bytes(r.array()?);
        let rule = match r.array::<1>()?[0] {
            0 => None,
            n => Some(RuleId(n)),
        };
        let correlation = match r.array::<1>()?[0] {
            0 => None,
            1 => Some(EventId(r.array()?)),
            n => {
                return Err(DecodeError::Malformed(format!(
                    "correlation flag {n} is not 0 or 1"
                )));
            }
        };
        let causes = u16::from_le_bytes(r.array()?) as usize;
        let mut causation = Vec::with_capacity(causes);
        for _ in 0..causes {
            causation.push(EventId(r.array()?));
        }
        let len = u32::from_le_bytes(r.array()?) as usize;
        let stream = std::str::from_utf8(r.take(len)?)
            .map_err(|_| DecodeError::Malformed("stream name is not UTF-8".into()))?
            .to_owned();
        let len = u32::from_le_bytes(r.array()?) as usize;
        let payload = r.take(len)?.to_vec();
        if !r.buf.is_empty() {
            return Err(DecodeError::Malformed(format!(
                "{} trailing bytes after the envelope",
                r.buf.len()
            )));
        }
        Ok(Envelope {
            event_id,
            stream: StreamId(stream),
            seq,
            position,
            recorded_at,
            occurred_at,
            event_type,
            schema_version,
            causation,
            correlation,
            rule,
            payload,
        })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Malformed(format!(
                "truncated envelope: {n} more bytes expected, {} left",
                self.buf.len()
            )));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self
            .take(N)?
            .try_into()
            .expect("take returns exactly N bytes"))
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
