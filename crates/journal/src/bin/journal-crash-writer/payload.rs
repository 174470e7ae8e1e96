//! The self-checking events of the crash writer, shared with the crash suite
//! (`tests/crash.rs` includes this file).
//!
//! An append of the crash writer is a "batch" of `len` events; event `index` of batch
//! `batch_id` has the event id `batch_id << 32 | index`, is indexed under the item
//! `remote:crash-batch-<batch_id>`, and carries the payload
//!
//! ```text
//! batch_id u64 LE ‖ index u32 LE ‖ len u32 LE ‖ filler
//! ```
//!
//! where the filler's length and bytes are a pure function of `(batch_id, index)`. A reader can
//! therefore check every event's content without knowing what was written, and tell a complete
//! batch from a partial one.

use ledgersync_domain::{EventId, EventType, ItemKey, NewEvent, RemoteId, Timestamp};

/// SplitMix64: a tiny deterministic mixer (also the crash writer's random source).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const HEADER: usize = 16;

fn filler(batch_id: u64, index: u32) -> Vec<u8> {
    let seed = mix(batch_id ^ (u64::from(index) << 48) ^ 0x5eed);
    let len = 16 + (seed % 113) as usize;
    (0..len as u64)
        .flat_map(|j| mix(seed.wrapping_add(j)).to_le_bytes().into_iter().take(1))
        .collect()
}

/// The payload of event `index` of a batch.
pub fn payload(batch_id: u64, index: u32, len: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 128);
    out.extend_from_slice(&batch_id.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&filler(batch_id, index));
    out
}

/// The event id of event `index` of a batch.
pub fn event_id(batch_id: u64, index: u32) -> EventId {
    EventId::from_u128((u128::from(batch_id) << 32) | u128::from(index))
}

/// The item every event of a batch is indexed under.
pub fn batch_item(batch_id: u64) -> ItemKey {
    ItemKey::Remote(RemoteId(format!("crash-batch-{batch_id}")))
}

/// The events of one batch.
pub fn batch(batch_id: u64, len: u32) -> Vec<NewEvent> {
    (0..len)
        .map(|index| NewEvent {
            event_id: event_id(batch_id, index),
            recorded_at: Timestamp(0),
            occurred_at: Timestamp(0),
            event_type: EventType(900),
            schema_version: 1,
            causation: vec![],
            correlation: None,
            rule: None,
            payload: payload(batch_id, index, len),
            items: vec![batch_item(batch_id)],
        })
        .collect()
}

/// CRC32 over the payloads of a batch, in order: the checksum printed in an ack line.
pub fn checksum<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in payloads {
        h.update(p);
    }
    h.finalize()
}

/// Checks a stored payload against its own header; returns `(batch_id, index, len)`.
pub fn check(payload_bytes: &[u8]) -> Result<(u64, u32, u32), String> {
    if payload_bytes.len() < HEADER {
        return Err(format!(
            "payload of {} bytes has no header",
            payload_bytes.len()
        ));
    }
    let batch_id = u64::from_le_bytes(payload_bytes[0..8].try_into().expect("8 bytes"));
    let index = u32::from_le_bytes(payload_bytes[8..12].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(payload_bytes[12..16].try_into().expect("4 bytes"));
    if index >= len {
        return Err(format!("batch {batch_id}: index {index} >= len {len}"));
    }
    if payload_bytes != payload(batch_id, index, len).as_slice() {
        return Err(format!(
            "batch {batch_id} event {index}: content differs from what was written"
        ));
    }
    Ok((batch_id, index, len))
}

/// One acknowledged append as printed by the crash writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Stream appended to.
    pub stream: String,
    /// First seq.
    pub first_seq: u64,
    /// Last seq.
    pub last_seq: u64,
    /// First position.
    pub first_position: u64,
    /// Last position.
    pub last_position: u64,
    /// Batch id.
    pub batch_id: u64,
    /// Events in the batch.
    pub len: u32,
    /// [`checksum`] of the payloads.
    pub crc: u32,
}

impl Ack {
    /// The ack line (without the newline).
    pub fn line(&self) -> String {
        format!(
            "ACK {} {} {} {} {} {} {} {:08x}",
            self.stream,
            self.first_seq,
            self.last_seq,
            self.first_position,
            self.last_position,
            self.batch_id,
            self.len,
            self.crc
        )
    }

    /// Parses an ack line; `None` for other lines.
    pub fn parse(line: &str) -> Option<Ack> {
        let mut f = line.strip_prefix("ACK ")?.split(' ');
        let ack = Ack {
            stream: f.next()?.to_owned(),
            first_seq: f.next()?.parse().ok()?,
            last_seq: f.next()?.parse().ok()?,
            first_position: f.next()?.parse().ok()?,
            last_position: f.next()?.parse().ok()?,
            batch_id: f.next()?.parse().ok()?,
            len: f.next()?.parse().ok()?,
            crc: u32::from_str_radix(f.next()?, 16).ok()?,
        };
        f.next().is_none().then_some(ack)
    }
}
