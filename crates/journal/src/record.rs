//! The byte layout of stored values: an event record and a snapshot record, each framed by a
//! CRC32 so that a damaged value is detected on every read.
//!
//! ```text
//! event record    = crc32(envelope) as u32 LE ‖ envelope         (envelope = Envelope::encode)
//! snapshot record = crc32(seq ‖ state) as u32 LE ‖ seq as u64 LE ‖ state
//! ```

use crate::error::ReadError;
use ledgersync_domain::{Envelope, StreamId};
use std::path::Path;

/// Bytes of the CRC prefix.
pub(crate) const CRC_LEN: usize = 4;

/// Frames encoded envelope bytes as an event record.
pub(crate) fn frame_event(envelope: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CRC_LEN + envelope.len());
    out.extend_from_slice(&crc32fast::hash(envelope).to_le_bytes());
    out.extend_from_slice(envelope);
    out
}

/// Checks the CRC of a framed value and returns the framed bytes, or what is wrong.
fn unframe(value: &[u8]) -> Result<&[u8], String> {
    if value.len() < CRC_LEN {
        return Err(format!(
            "the value is {} bytes long, shorter than its 4-byte checksum",
            value.len()
        ));
    }
    let (crc, body) = value.split_at(CRC_LEN);
    let stored = u32::from_le_bytes(crc.try_into().expect("split at 4"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(format!(
            "CRC32 mismatch: stored {stored:08x}, computed {computed:08x} over {} bytes",
            body.len()
        ));
    }
    Ok(body)
}

/// Verifies and decodes the event record stored under `position`.
pub(crate) fn decode_event(
    position: u64,
    value: &[u8],
    path: &Path,
) -> Result<Envelope, ReadError> {
    let body = unframe(value).map_err(|detail| ReadError::Corrupt {
        position,
        path: path.to_owned(),
        detail,
    })?;
    let envelope = Envelope::decode(body).map_err(|source| ReadError::Decode {
        position,
        path: path.to_owned(),
        source,
    })?;
    if envelope.position != position {
        return Err(ReadError::Corrupt {
            position,
            path: path.to_owned(),
            detail: format!(
                "the record stored under position {position} holds the event of position {}",
                envelope.position
            ),
        });
    }
    Ok(envelope)
}

/// Frames a snapshot.
pub(crate) fn frame_snapshot(seq: u64, state: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + state.len());
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(state);
    let mut out = Vec::with_capacity(CRC_LEN + body.len());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Verifies and splits a snapshot record into `(seq, state)`.
pub(crate) fn decode_snapshot(
    stream: &StreamId,
    value: &[u8],
    path: &Path,
) -> Result<(u64, Vec<u8>), ReadError> {
    let corrupt = |detail: String| ReadError::CorruptSnapshot {
        stream: stream.clone(),
        path: path.to_owned(),
        detail,
    };
    let body = unframe(value).map_err(corrupt)?;
    if body.len() < 8 {
        return Err(corrupt(format!(
            "the snapshot body is {} bytes long, shorter than its 8-byte seq",
            body.len()
        )));
    }
    let (seq, state) = body.split_at(8);
    Ok((
        u64::from_le_bytes(seq.try_into().expect("split at 8")),
        state.to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgersync_domain::{EventId, EventType, Timestamp};

    fn envelope(position: u64) -> Envelope {
        Envelope {
            event_id: EventId::from_u128(position as u128),
            stream: StreamId("mailbox/m".into()),
            seq: 1,
            position,
            recorded_at: Timestamp(1),
            occurred_at: Timestamp(1),
            event_type: EventType(1),
            schema_version: 1,
            causation: vec![],
            correlation: None,
            rule: None,
            payload: vec![7; 20],
        }
    }

    #[test]
    fn event_record_round_trip_and_every_flipped_byte_is_caught() {
        let env = envelope(5);
        let record = frame_event(&env.encode());
        let p = Path::new("/d/journal.redb");
        assert_eq!(decode_event(5, &record, p).unwrap(), env);
        for i in 0..record.len() {
            let mut bad = record.clone();
            bad[i] ^= 0x10;
            let err = decode_event(5, &bad, p).unwrap_err();
            assert!(
                matches!(err, ReadError::Corrupt { position: 5, .. }),
                "byte {i}: {err}"
            );
        }
        assert!(matches!(
            decode_event(5, &record[..3], p),
            Err(ReadError::Corrupt { .. })
        ));
        let err = decode_event(6, &record, p).unwrap_err();
        assert!(err.to_string().contains("position 5"), "{err}");
    }

    #[test]
    fn snapshot_record_round_trip_and_damage() {
        let s = StreamId("mailbox/m".into());
        let p = Path::new("/d/journal.redb");
        let rec = frame_snapshot(9, b"state");
        assert_eq!(
            decode_snapshot(&s, &rec, p).unwrap(),
            (9, b"state".to_vec())
        );
        let mut bad = rec.clone();
        bad[6] ^= 1;
        assert!(matches!(
            decode_snapshot(&s, &bad, p),
            Err(ReadError::CorruptSnapshot { .. })
        ));
    }
}
