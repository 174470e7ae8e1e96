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
