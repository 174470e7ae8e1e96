//! The redb 4 backend: one file `journal.redb` in the data directory.
//!
//! | table          | key                            | value                          |
//! |----------------|--------------------------------|--------------------------------|
//! | `events`       | position `u64`                 | event record (CRC ‖ envelope)  |
//! | `stream_index` | (stream, first seq of append)  | (first position, count)        |
//! | `items`        | item key `&str`                | positions (multimap, ascending)|
//! | `item_tail`    | position `u64`                 | item keys not yet in `items`   |
//! | `subjects`     | subject `&str`                 | `()` (no longer written)       |
//! | `snapshots`    | stream `&str`                  | snapshot record                |
//! | `meta`         | name `&str`                    | `u64` (`format` = 2)           |
//!
//! **No heads table.** A stream's head is the last seq of its last `stream_index` entry (one
//! reverse range read); the group-commit writer caches heads, so a commit writes no head.
//! Format 1 kept them in a `stream_heads` table, which opening such a journal drops.
//!
//! **Deferred item index.** A commit does not insert its item keys into `items`, where each
//! key would dirty a leaf of its own: it appends one `item_tail` row per event with item keys,
//! at the end of that table like the events. Once the tail spans [`FOLD_SPAN`] positions, the
//! commit that reaches it also folds the whole tail into `items` (sorted, so neighbouring keys
//! share their leaf) and empties the tail, in the same transaction. A lookup reads `items`,
//! then scans the tail; every folded position is below every tail position, so the result stays
//! ascending.
//!
//! **Subjects from the item index.** Every subject is also an item key (`subject:<text>`), so a
//! subject search reads the `subject:` range of `items` and the tail. The `subjects` table,
//! which gave every commit one random insert per subject (a leaf of its own in a large
//! journal), is kept for older files and no longer written: everything it holds is in `items`.
//!
//! Every commit uses `Durability::Immediate` and, by default, quick repair, so that reopening
//! after a crash does not walk the whole file.

use crate::data_dir::{FORMAT_VERSION, OLDEST_READABLE_FORMAT};
use crate::error::{OpenError, ReadError, StorageError};
use crate::options::{Backend, JournalOptions};
use crate::store::{Batch, Store, Visit};
use ledgersync_domain::StreamId;
use redb::{
    Database, Durability, MultimapTableDefinition, ReadOnlyDatabase, ReadTransaction,
    ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

/// Name of the database file inside the data directory.
pub(crate) const REDB_FILE: &str = "journal.redb";

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Format 1 only: dropped when such a journal is opened.
const STREAM_HEADS: TableDefinition<&str, u64> = TableDefinition::new("stream_heads");
const STREAM_INDEX: TableDefinition<(&str, u64), (u64, u64)> = TableDefinition::new("stream_index");
const ITEMS: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("items");
const ITEM_TAIL: TableDefinition<u64, &[u8]> = TableDefinition::new("item_tail");
const SUBJECTS: TableDefinition<&str, ()> = TableDefinition::new("subjects");
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The item keys of subjects (`ItemKey::Subject`), and the first key after them.
const SUBJECT_KEY: &str = "subject:";
const SUBJECT_KEY_END: &str = "subject;";

/// The tail of the item index is folded into `items` by the commit that makes it span this many
/// positions. A lookup scans at most this many tail rows; a fold sorts and inserts as many keys.
const FOLD_SPAN: u64 = 4096;

/// A journal stored in redb.
pub(crate) struct RedbStore {
    /// Replaced after a failed write (see [`RedbStore::begin_write`]).
    db: RwLock<Db>,
    dir: PathBuf,
    path: PathBuf,
    quick_repair: bool,
    cache_bytes: usize,
    /// Set by a failed write: redb refuses every later transaction of that `Database`
    /// (`PreviousIo`), so the next write reopens the file first.
    reopen: AtomicBool,
}

/// The open database: writable, read-only, or closed between a failed write and its reopening.
enum Db {
    Rw(Database),
    Ro(ReadOnlyDatabase),
    Closed,
}

fn boxed(e: impl Into<redb::Error>) -> StorageError {
    Arc::new(e.into())
}

/// What a redb error met while opening `path` means: damage (a corrupt page, a page past the
/// end of the file) or another storage failure.
fn open_error(path: &Path, e: redb::Error) -> OpenError {
    match e {
        redb::Error::Corrupted(detail) => OpenError::Corrupt {
            backend: Backend::Redb,
            path: path.to_owned(),
            detail,
        },
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => OpenError::Corrupt {
            backend: Backend::Redb,
            path: path.to_owned(),
            detail: format!("a page points past the end of the file ({e})"),
        },
        other => OpenError::Storage {
            backend: Backend::Redb,
            path: path.to_owned(),
            source: Arc::new(other),
        },
    }
}

impl RedbStore {
    /// Opens (or creates) `journal.redb` in `dir`.
    pub(crate) fn open(dir: &Path, opts: &JournalOptions) -> Result<Self, OpenError> {
        let path = dir.join(REDB_FILE);
        let storage = |e: redb::Error| open_error(&path, e);
        let db = Database::builder()
            .set_cache_size(opts.cache_bytes)
            .create(&path)
            .map_err(|e| storage(e.into()))?;
        let store = Self {
            db: RwLock::new(Db::Rw(db)),
            dir: dir.to_owned(),
            path: path.clone(),
            quick_repair: opts.quick_repair,
            cache_bytes: opts.cache_bytes,
            reopen: AtomicBool::new(false),
        };
        // Create every table so that reads never meet a missing one, and check the format.
        let tx = store.begin_write().map_err(storage)?;
        let found = (|| -> Result<u64, redb::Error> {
            tx.open_table(EVENTS)?;
            tx.delete_table(STREAM_HEADS)?;
            tx.open_table(STREAM_INDEX)?;
            tx.open_multimap_table(ITEMS)?;
            tx.open_table(ITEM_TAIL)?;
            tx.open_table(SUBJECTS)?;
            tx.open_table(SNAPSHOTS)?;
            let mut meta = tx.open_table(META)?;
            let found = meta.get("format")?.map(|v| v.value());
            match found {
                // Format 1 is format 2 with an empty item tail: mark it 2, so that a release
                // that does not know the tail refuses it instead of missing index entries.
                Some(v) if v == u64::from(OLDEST_READABLE_FORMAT) => {
                    meta.insert("format", u64::from(FORMAT_VERSION))?;
                    Ok(u64::from(FORMAT_VERSION))
                }
                Some(v) => Ok(v),
                None => {
                    meta.insert("format", u64::from(FORMAT_VERSION))?;
                    Ok(u64::from(FORMAT_VERSION))
                }
            }
        })()
        .map_err(storage)?;
        tx.commit().map_err(|e| storage(e.into()))?;
        if found != u64::from(FORMAT_VERSION) {
            return Err(OpenError::VersionMismatch {
                dir: dir.to_owned(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                expected: FORMAT_VERSION,
            });
        }
        Ok(store)
    }

    /// Opens `journal.redb` in `dir` read-only: no lock, no write, no table created. The
    /// file must have been closed cleanly (redb refuses a file that needs repair read-only).
    pub(crate) fn open_read_only(dir: &Path, opts: &JournalOptions) -> Result<Self, OpenError> {
        let path = dir.join(REDB_FILE);
        let storage = |e: redb::Error| open_error(&path, e);
        let db = Database::builder()
            .set_cache_size(opts.cache_bytes)
            .open_read_only(&path)
            .map_err(|e| storage(e.into()))?;
        let store = Self {
            db: RwLock::new(Db::Ro(db)),
            dir: dir.to_owned(),
            path: path.clone(),
            quick_repair: opts.quick_repair,
            cache_bytes: opts.cache_bytes,
            reopen: AtomicBool::new(false),
        };
        let found = (|| -> Result<Option<u64>, redb::Error> {
            let tx = store.begin_read()?;
            let meta = match tx.open_table(META) {
                Ok(meta) => meta,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(meta.get("format")?.map(|v| v.value()))
        })()
        .map_err(storage)?;
        match found {
            Some(v) if v == u64::from(FORMAT_VERSION) => Ok(store),
            found => Err(OpenError::VersionMismatch {
                dir: dir.to_owned(),
                found: found.map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX)),
                expected: FORMAT_VERSION,
            }),
        }
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, Db> {
        self.db.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin_read(&self) -> Result<ReadTransaction, redb::Error> {
        match &*self.db() {
            Db::Rw(db) => Ok(db.begin_read()?),
            Db::Ro(db) => Ok(db.begin_read()?),
            Db::Closed => Err(redb::Error::Io(std::io::Error::other(
                "the database is closed after a failed write and could not be reopened yet; \
                 the next append retries",
            ))),
        }
    }

    /// Reopens the file after a failed write. redb poisons a `Database` after an I/O error
    /// (every later transaction is `PreviousIo`), so a full disk would otherwise refuse every
    /// write until a restart. The old handle is dropped first (redb allows one per file).
    fn reopen(&self) -> Result<(), redb::Error> {
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if matches!(*db, Db::Ro(_)) {
            return Ok(());
        }
        *db = Db::Closed;
        let fresh = Database::builder()
            .set_cache_size(self.cache_bytes)
            .create(&self.path)?;
        *db = Db::Rw(fresh);
        self.reopen.store(false, Ordering::SeqCst);
        tracing::info!(path = %self.path.display(), "journal storage reopened after a failed write");
        Ok(())
    }

    fn begin_write(&self) -> Result<WriteTransaction, redb::Error> {
        if self.reopen.load(Ordering::SeqCst) {
            self.reopen()?;
        }
        let mut tx = match &*self.db() {
            Db::Rw(db) => db.begin_write()?,
            Db::Ro(_) => {
                return Err(redb::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ReadOnlyFilesystem,
                    "the journal is open read-only",
                )));
            }
            Db::Closed => {
                return Err(redb::Error::Io(std::io::Error::other(
                    "the database is closed after a failed write",
                )));
            }
        };
        tx.set_durability(Durability::Immediate)?;
        tx.set_quick_repair(self.quick_repair);
        Ok(tx)
    }

    /// Notes a failed write: the next one reopens the database first.
    fn failed<E: Into<redb::Error>>(&self, e: E) -> StorageError {
        let e = e.into();
        if !matches!(e, redb::Error::Corrupted(_)) {
            self.reopen.store(true, Ordering::SeqCst);
        }
        boxed(e)
    }

    fn read_err(&self, e: impl Into<redb::Error>) -> ReadError {
        match e.into() {
            redb::Error::Corrupted(detail) => ReadError::CorruptIndex {
                path: self.path.clone(),
                detail: format!("redb reports: {detail}"),
            },
            // A damaged page pointer makes redb read past the end of the file.
            redb::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                ReadError::Damaged {
                    path: self.path.clone(),
                    detail: format!("a page points past the end of the file ({e})"),
                }
            }
            other => ReadError::Storage {
                dir: self.dir.clone(),
                source: Arc::new(other),
            },
        }
    }

    fn read(&self) -> Result<ReadTransaction, ReadError> {
        self.begin_read().map_err(|e| self.read_err(e))
    }
}

impl Store for RedbStore {
    fn path(&self) -> &Path {
        &self.path
    }

    fn head(&self, stream: &StreamId) -> Result<u64, ReadError> {
        let run = || -> Result<u64, redb::Error> {
            let tx = self.begin_read()?;
            let index = tx.open_table(STREAM_INDEX)?;
            last_seq(&index, stream.as_str())
        };
        run().map_err(|e| self.read_err(e))
    }

    fn last_position(&self) -> Result<u64, ReadError> {
        let run = || -> Result<u64, redb::Error> {
            let tx = self.begin_read()?;
            let events = tx.open_table(EVENTS)?;
            Ok(events.last()?.map_or(0, |(k, _)| k.value()))
        };
        run().map_err(|e| self.read_err(e))
    }

    fn commit(&self, batch: &Batch) -> Result<(), StorageError> {
        let tx = self.begin_write().map_err(|e| self.failed(e))?;
        let write = || -> Result<(), redb::Error> {
            let mut events = tx.open_table(EVENTS)?;
            let mut index = tx.open_table(STREAM_INDEX)?;
            let mut tail = tx.open_table(ITEM_TAIL)?;
            let mut keys = Vec::new();
            for a in &batch.appends {
                index.insert(
                    (a.stream.as_str(), a.first_seq),
                    (a.first_position, a.count),
                )?;
            }
            for e in &batch.events {
                events.insert(e.position, e.record.as_slice())?;
                if !e.items.is_empty() {
                    encode_keys(&e.items, &mut keys);
                    tail.insert(e.position, keys.as_slice())?;
                }
            }
            let last = batch.events.last().map_or(0, |e| e.position);
            let first_unfolded = tail.first()?.map(|(k, _)| k.value());
            if first_unfolded.is_some_and(|first| last.saturating_sub(first) + 1 >= FOLD_SPAN) {
                let mut pairs = Vec::new();
                each_tail_row(&tail, |position, keys| {
                    pairs.extend(keys.into_iter().map(|key| (key.to_owned(), position)));
                })?;
                drop(tail);
                pairs.sort_unstable();
                let mut items = tx.open_multimap_table(ITEMS)?;
                for (key, position) in &pairs {
                    items.insert(key.as_str(), *position)?;
                }
                // Deleting the table frees its pages at once; it is recreated empty right away,
                // so that readers always find it.
                tx.delete_table(ITEM_TAIL)?;
                tx.open_table(ITEM_TAIL)?;
            }
            Ok(())
        };
        // On error the transaction is dropped, which aborts it: nothing of the batch is written.
        write().map_err(|e| self.failed(e))?;
        tx.commit().map_err(|e| self.failed(e))
    }

    fn records_from(&self, from: u64, max: usize, visit: Visit<'_>) -> Result<(), ReadError> {
        let tx = self.read()?;
        let mut run = || -> Result<Result<(), ReadError>, redb::Error> {
            let events = tx.open_table(EVENTS)?;
            for entry in events.range(from..)?.take(max) {
                let (k, v) = entry?;
                if let Err(e) = visit(k.value(), v.value()) {
                    return Ok(Err(e));
                }
            }
            Ok(Ok(()))
        };
        run().unwrap_or_else(|e| Err(self.read_err(e)))
    }

    fn records_at(&self, positions: &[u64]) -> Result<Vec<Option<Vec<u8>>>, ReadError> {
        let tx = self.read()?;
        let run = || -> Result<Vec<Option<Vec<u8>>>, redb::Error> {
            let events = tx.open_table(EVENTS)?;
            positions
                .iter()
                .map(|p| Ok(events.get(*p)?.map(|v| v.value().to_vec())))
                .collect()
        };
        run().map_err(|e| self.read_err(e))
    }

    fn stream_records(
        &self,
        stream: &StreamId,
        from_seq: u64,
        max: usize,
        visit: Visit<'_>,
    ) -> Result<(), ReadError> {
        let tx = self.read()?;
        let mut run = || -> Result<Result<(), ReadError>, redb::Error> {
            let index = tx.open_table(STREAM_INDEX)?;
            let events = tx.open_table(EVENTS)?;
            let s = stream.as_str();
            // Start at the append that holds `from_seq`: the last one starting at or before it.
            let start = match index.range((s, 0)..=(s, from_seq))?.next_back() {
                Some(entry) => entry?.0.value().1,
                None => from_seq,
            };
            let mut seen = 0usize;
            for entry in index.range((s, start)..=(s, u64::MAX))? {
                if seen >= max {
                    break;
                }
                let (key, value) = entry?;
                let first_seq = key.value().1;
                let (first_position, count) = value.value();
                let skip = from_seq.saturating_sub(first_seq);
                if skip >= count {
                    continue;
                }
                let take = (count - skip).min((max - seen) as u64);
                let (from, to) = (first_position + skip, first_position + skip + take - 1);
                let mut found = 0;
                for record in events.range(from..=to)? {
                    let (k, v) = record?;
                    if let Err(e) = visit(k.value(), v.value()) {
                        return Ok(Err(e));
                    }
                    found += 1;
                }
                if found != take {
                    return Ok(Err(ReadError::CorruptIndex {
                        path: self.path.clone(),
                        detail: format!(
                            "the stream index maps the append of {stream} at seq {first_seq} to \
                             positions from {first_position}, some of which hold no event"
                        ),
                    }));
                }
                seen += take as usize;
            }
            Ok(Ok(()))
        };
        run().unwrap_or_else(|e| Err(self.read_err(e)))
    }

    fn item_positions(&self, key: &str) -> Result<Vec<u64>, ReadError> {
        let tx = self.read()?;
        let run = || -> Result<Vec<u64>, redb::Error> {
            let items = tx.open_multimap_table(ITEMS)?;
            let mut positions = items
                .get(key)?
                .map(|v| Ok(v?.value()))
                .collect::<Result<Vec<u64>, redb::Error>>()?;
            let tail = tx.open_table(ITEM_TAIL)?;
            each_tail_row(&tail, |position, keys| {
                if keys.contains(&key) {
                    positions.push(position);
                }
            })?;
            Ok(positions)
        };
        run().map_err(|e| self.read_err(e))
    }

    fn subjects_containing(&self, needle: &str, max: usize) -> Result<Vec<String>, ReadError> {
        let tx = self.read()?;
        let run = || -> Result<Vec<String>, redb::Error> {
            let mut found = std::collections::BTreeSet::new();
            let items = tx.open_multimap_table(ITEMS)?;
            let (from, to) = (SUBJECT_KEY, SUBJECT_KEY_END);
            for entry in items.range(from..to)? {
                let (key, _) = entry?;
                if let Some(subject) = key.value().strip_prefix(SUBJECT_KEY)
                    && subject.contains(needle)
                {
                    found.insert(subject.to_owned());
                }
            }
            let tail = tx.open_table(ITEM_TAIL)?;
            each_tail_row(&tail, |_, keys| {
                for k in keys {
                    if let Some(subject) = k.strip_prefix(SUBJECT_KEY)
                        && subject.contains(needle)
                    {
                        found.insert(subject.to_owned());
                    }
                }
            })?;
            Ok(found.into_iter().take(max).collect())
        };
        run().map_err(|e| self.read_err(e))
    }

    fn heads(&self) -> Result<Vec<(StreamId, u64)>, ReadError> {
        let tx = self.read()?;
        // A skip scan: the first entry of the next stream, then that stream's last entry.
        let run = || -> Result<Vec<(StreamId, u64)>, redb::Error> {
            let index = tx.open_table(STREAM_INDEX)?;
            let mut out: Vec<(StreamId, u64)> = Vec::new();
            loop {
                let next = match out.last() {
                    None => index.first()?,
                    Some((done, _)) => index
                        .range::<(&str, u64)>((
                            Bound::Excluded((done.as_str(), u64::MAX)),
                            Bound::Unbounded,
                        ))?
                        .next()
                        .transpose()?,
                };
                let Some((key, _)) = next else {
                    return Ok(out);
                };
                let stream = key.value().0.to_owned();
                let head = last_seq(&index, &stream)?;
                out.push((StreamId(stream), head));
            }
        };
        run().map_err(|e| self.read_err(e))
    }

    fn put_snapshot(&self, stream: &StreamId, record: &[u8]) -> Result<(), StorageError> {
        let tx = self.begin_write().map_err(|e| self.failed(e))?;
        tx.open_table(SNAPSHOTS)
            .and_then(|mut t| {
                t.insert(stream.as_str(), record)
                    .map(drop)
                    .map_err(Into::into)
            })
            .map_err(|e| self.failed(e))?;
        tx.commit().map_err(|e| self.failed(e))
    }

    fn get_snapshot(&self, stream: &StreamId) -> Result<Option<Vec<u8>>, ReadError> {
        let tx = self.read()?;
        let run = || -> Result<Option<Vec<u8>>, redb::Error> {
            let snapshots = tx.open_table(SNAPSHOTS)?;
            Ok(snapshots.get(stream.as_str())?.map(|v| v.value().to_vec()))
        };
        run().map_err(|e| self.read_err(e))
    }

    fn verify_storage(&self) -> Result<String, String> {
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        match &mut *db {
            Db::Rw(db) => match db.check_integrity() {
                Ok(true) => Ok("redb verified the checksum of every page".into()),
                Ok(false) => Err(
                    "redb found damaged pages and repaired its file by going back \
                     to its last intact commit"
                        .into(),
                ),
                Err(e) => Err(format!("redb's integrity check failed: {e}")),
            },
            Db::Ro(_) => Ok("not checked: the journal is open read-only".into()),
            Db::Closed => Err("the database is closed after a failed write".into()),
        }
    }
}

/// Writes the item keys of one event as `len : u32 LE ‖ UTF-8 bytes`, one after the other.
fn encode_keys(keys: &[String], out: &mut Vec<u8>) {
    out.clear();
    for key in keys {
        let len = u32::try_from(key.len()).expect("an item key is shorter than 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(key.as_bytes());
    }
}

/// Visits every row of the item tail in position order: its position and its keys.
fn each_tail_row(
    tail: &impl ReadableTable<u64, &'static [u8]>,
    mut visit: impl FnMut(u64, Vec<&str>),
) -> Result<(), redb::Error> {
    for entry in tail.iter()? {
        let (position, keys) = entry?;
        let position = position.value();
        let keys = decode_keys(keys.value()).map_err(|detail| {
            redb::Error::Corrupted(format!("item_tail row {position}: {detail}"))
        })?;
        visit(position, keys);
    }
    Ok(())
}

/// Reads what [`encode_keys`] wrote; an error describes the malformed part.
fn decode_keys(mut bytes: &[u8]) -> Result<Vec<&str>, String> {
    let mut keys = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| format!("{} bytes left, too few for a key length", bytes.len()))?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(format!("a key of {len} bytes, {} left", rest.len()));
        }
        let (key, rest) = rest.split_at(len);
        keys.push(std::str::from_utf8(key).map_err(|e| format!("a key is not UTF-8: {e}"))?);
        bytes = rest;
    }
    Ok(keys)
}

/// The head of a stream: the last seq of its last `stream_index` entry, 0 if it has none.
fn last_seq(
    index: &impl ReadableTable<(&'static str, u64), (u64, u64)>,
    stream: &str,
) -> Result<u64, redb::Error> {
    Ok(
        match index.range((stream, 0)..=(stream, u64::MAX))?.next_back() {
            Some(entry) => {
                let (key, value) = entry?;
                let (first_seq, (_, count)) = (key.value().1, value.value());
                (first_seq + count).saturating_sub(1)
            }
            None => 0,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_tail_rows_round_trip_and_damage_is_reported() {
        let keys = vec![
            "crm:1".to_owned(),
            String::new(),
            "subject:réunion".to_owned(),
        ];
        let mut row = Vec::new();
        encode_keys(&keys, &mut row);
        assert_eq!(decode_keys(&row).unwrap(), keys);
        assert!(decode_keys(&[]).unwrap().is_empty());
        // A truncated row, a length past the end, invalid UTF-8.
        assert!(decode_keys(&row[..row.len() - 1]).is_err());
        assert!(decode_keys(&row[..2]).is_err());
        assert!(decode_keys(&[1, 0, 0, 0, 0xFF]).is_err());
    }
}
