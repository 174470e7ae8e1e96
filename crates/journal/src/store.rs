//! The backend-specific part of a journal: a small trait that redb and sled implement. The
//! shared part (group commit, CRC framing, the [`Journal`](crate::Journal) API) is built on it.
//!
//! Every method that writes is called by one thread at a time for batches (the group-commit
//! writer); reads may come from any thread at once.

use crate::error::{ReadError, StorageError};
use ledgersync_domain::StreamId;
use std::path::Path;

/// One event of a batch, ready to be stored.
#[derive(Debug)]
pub(crate) struct BatchEvent {
    /// Global position (the key of the events table).
    pub position: u64,
    /// The framed record (`record::frame_event`).
    pub record: Vec<u8>,
    /// Item index keys (`ItemKey::to_key`).
    pub items: Vec<String>,
    /// Lowercase subjects among the items, for subject search.
    pub subjects: Vec<String>,
}

/// One accepted append of a batch: its events have contiguous seqs *and* contiguous positions,
/// so the stream index holds one entry per append, not one per event.
#[derive(Debug)]
pub(crate) struct BatchAppend {
    /// The stream.
    pub stream: StreamId,
    /// Seq of its first event.
    pub first_seq: u64,
    /// Position of its first event.
    pub first_position: u64,
    /// Number of events.
    pub count: u64,
}

/// Everything one group commit writes, in one atomic durable transaction.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Events in position order, contiguous.
    pub events: Vec<BatchEvent>,
    /// The accepted appends, in position order.
    pub appends: Vec<BatchAppend>,
    /// The new head of every stream appended to.
    pub heads: Vec<(StreamId, u64)>,
}

/// Receives `(position, record)` during a scan; an error stops the scan and is returned by it.
pub(crate) type Visit<'a> = &'a mut dyn FnMut(u64, &[u8]) -> Result<(), ReadError>;

/// A storage engine holding a journal.
pub(crate) trait Store: Send + Sync + 'static {
    /// The database file (redb) or directory (sled), for messages.
    fn path(&self) -> &Path;
    /// The durable head of a stream (0 if it has no events).
    fn head(&self, stream: &StreamId) -> Result<u64, ReadError>;
    /// The last durable position (0 if the journal is empty).
    fn last_position(&self) -> Result<u64, ReadError>;
    /// Writes the batch atomically and durably: when this returns `Ok`, all of it survives a
    /// crash; when it returns `Err` or the process dies during it, none of it is visible.
    fn commit(&self, batch: &Batch) -> Result<(), StorageError>;
    /// Shows `visit` up to `max` records with position `>= from`, ascending, straight from the
    /// engine's buffers; stops at the first error `visit` returns.
    fn records_from(&self, from: u64, max: usize, visit: Visit<'_>) -> Result<(), ReadError>;
    /// The record of each position, `None` where there is none.
    fn records_at(&self, positions: &[u64]) -> Result<Vec<Option<Vec<u8>>>, ReadError>;
    /// Shows `visit` up to `max` records of a stream with seq `>= from_seq` (`from_seq >= 1`),
    /// ascending. The caller checks that they hold that stream's seqs `from_seq, from_seq + 1, …`.
    fn stream_records(
        &self,
        stream: &StreamId,
        from_seq: u64,
        max: usize,
        visit: Visit<'_>,
    ) -> Result<(), ReadError>;
    /// Positions indexed under an item key, ascending.
    fn item_positions(&self, key: &str) -> Result<Vec<u64>, ReadError>;
    /// Up to `max` distinct subjects containing the lowercase `needle`, in subject order.
    fn subjects_containing(&self, needle: &str, max: usize) -> Result<Vec<String>, ReadError>;
    /// Every stream with its head, in stream name order.
    fn heads(&self) -> Result<Vec<(StreamId, u64)>, ReadError>;
    /// Stores (replaces) the snapshot record of a stream, durably.
    fn put_snapshot(&self, stream: &StreamId, record: &[u8]) -> Result<(), StorageError>;
    /// The snapshot record of a stream.
    fn get_snapshot(&self, stream: &StreamId) -> Result<Option<Vec<u8>>, ReadError>;
    /// The storage engine's own integrity check of its files (redb: `check_integrity`, sled:
    /// a checksum walk of every tree): `Ok` with what was checked, or `Err` with the damage.
    fn verify_storage(&self) -> Result<String, String>;
}

/// The separator between a stream name or item key and the big-endian number after it in
/// byte-string keys. UTF-8 text never contains the byte 0xFF, so `text ‖ 0xFF` is a prefix of
/// exactly the keys of that text.
pub(crate) const KEY_SEPARATOR: u8 = 0xFF;

/// `text ‖ 0xFF ‖ n as u64 BE`: the keys of one text are contiguous and ordered by `n`.
pub(crate) fn text_number_key(text: &str, n: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(text.len() + 9);
    key.extend_from_slice(text.as_bytes());
    key.push(KEY_SEPARATOR);
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// `text ‖ 0xFF`: the prefix of every [`text_number_key`] of `text`.
pub(crate) fn text_prefix(text: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(text.len() + 1);
    key.extend_from_slice(text.as_bytes());
    key.push(KEY_SEPARATOR);
    key
}

/// Reads the big-endian number at the end of a [`text_number_key`].
pub(crate) fn number_suffix(key: &[u8]) -> Option<u64> {
    let start = key.len().checked_sub(8)?;
    if start == 0 || key[start - 1] != KEY_SEPARATOR {
        return None;
    }
    Some(u64::from_be_bytes(key[start..].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_number_keys_order_by_number_and_prefixes_do_not_collide() {
        let a1 = text_number_key("mailbox/a", 1);
        let a2 = text_number_key("mailbox/a", 256);
        let ab = text_number_key("mailbox/ab", 0);
        let ab_max = text_number_key("mailbox/ab", u64::MAX);
        assert!(a1 < a2);
        // The keys of another text never fall between two keys of this one.
        let between = |k: &Vec<u8>| a1 < *k && *k < a2;
        assert!(!between(&ab) && !between(&ab_max));
        assert!(a1.starts_with(&text_prefix("mailbox/a")));
        assert!(!ab.starts_with(&text_prefix("mailbox/a")));
        assert_eq!(number_suffix(&a2), Some(256));
        assert_eq!(number_suffix(b"short"), None);
    }
}
