//! Reading the journal as typed events.

use crate::error::EngineError;
use ledgersync_domain::{Envelope, Event, EventMeta};
use ledgersync_journal::Journal;

/// A stored event with its decoded payload.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The envelope (payload bytes included).
    pub envelope: Envelope,
    /// The decoded payload.
    pub event: Event,
}

impl Stored {
    /// Decodes an envelope's payload.
    pub fn decode(envelope: Envelope) -> Result<Self, EngineError> {
        let event = Event::decode(
            envelope.event_type,
            envelope.schema_version,
            &envelope.payload,
        )
        .map_err(|source| EngineError::Decode {
            position: envelope.position,
            stream: envelope.stream.clone(),
            source,
        })?;
        Ok(Self { envelope, event })
    }

    /// The meta passed to `evolve`.
    pub fn meta(&self) -> EventMeta {
        EventMeta {
            id: self.envelope.event_id,
            at: self.envelope.recorded_at,
        }
    }
}

/// The public JSON of a stored event: what `ledgersync events --json` prints, one object per
/// line, and the body of every message of the public event stream (`docs/event-stream.md`).
/// Its fields: `position`, `stream`, `seq`, `event_id`, `recorded_at`, `occurred_at`,
/// `event_type`, `schema_version`, `causation`, `correlation`, `rule`, `payload`.
pub fn event_json(s: &Stored) -> serde_json::Value {
    let e = &s.envelope;
    serde_json::json!({
        "position": e.position,
        "stream": e.stream.as_str(),
        "seq": e.seq,
        "event_id": e.event_id.to_string(),
        "recorded_at": e.recorded_at.0,
        "occurred_at": e.occurred_at.0,
        "event_type": ledgersync_domain::event::type_name(e.event_type),
        "schema_version": e.schema_version,
        "causation": e.causation.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "correlation": e.correlation.map(|c| c.to_string()),
        "rule": e.rule.map(|r| r.to_string()),
        "payload": serde_json::to_value(&s.event).unwrap_or(serde_json::Value::Null),
    })
}

/// Page size for full scans.
pub const PAGE: usize = 4096;

/// Calls `f` for every event from position `from`, in order; `progress(done, total)` is called
/// after every page.
pub fn scan(
    journal: &dyn Journal,
    from: u64,
    mut progress: impl FnMut(u64, u64),
    mut f: impl FnMut(Stored) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    let last = journal.last_position()?;
    let mut next = from.max(1);
    while next <= last {
        let page = journal.read_all(next, PAGE)?;
        if page.is_empty() {
            break;
        }
        for env in page {
            next = env.position + 1;
            f(Stored::decode(env)?)?;
        }
        progress(next - 1, last);
    }
    Ok(())
}
