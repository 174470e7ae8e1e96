//! The redb 4 backend: one file `journal.redb` in the data directory.
//!
//! | table          | key                            | value                          |
//! |----------------|--------------------------------|--------------------------------|
//! | `events`       | position `u64`                 | event record (CRC ‖ envelope)  |
//! | `stream_index` | (stream, first seq of append)  | (first position, count)        |
//! | `item_tail`, `item_runs`, `items.<tier>.<first>`, `items` | see `redb_index.rs` | the item index |
//! | `subjects`     | subject `&str`                 | `()` (no longer written)       |
//! | `snapshots`    | stream `&str`                  | snapshot record                |
//! | `meta`         | name `&str`                    | `u64` (`format` = 3)           |
//!
//! **No heads table.** A stream's head is the last seq of its last `stream_index` entry (one
//! reverse range read); the group-commit writer caches heads, so a commit writes no head.
//! Format 1 kept them in a `stream_heads` table, which opening such a journal drops.
//!
//! **Item index.** A commit appends the item keys of its events to a tail; the tail is written
//! as sorted runs that are merged by tiers (`redb_index.rs` has the layout and its invariants),
//! so that the index costs the same per event in a journal of any size. Every subject is also
//! an item key (`subject:<text>`), so a subject search reads the `subject:` range of the index.
//! The `subjects` table of format 1 is kept for older files and no longer written.
//!
//! Every commit uses `Durability::Immediate` and, by default, quick repair, so that reopening
//! after a crash does not walk the whole file.

use crate::data_dir::{FORMAT_VERSION, readable};
use crate::error::{OpenError, ReadError, StorageError};
use crate::options::{Backend, JournalOptions};
use crate::redb_index::{self, ITEM_RUNS, ITEM_TAIL, ITEMS};
use crate::store::{Batch, Store, Visit};
use ledgersync_domain::StreamId;
use redb::{
    Database, Durability, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition, WriteTransaction,
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
const SUBJECTS: TableDefinition<&str, ()> = TableDefinition::new("subjects");
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn readable_u64(format: u64) -> bool {
    u32::try_from(format).is_ok_and(readable)
}

/// A journal stored in redb.
pub(crate) struct RedbStore {
    /// Replaced after a failed write (see [`RedbStore::begin_write`]).
    db: RwLock<Db>,
    dir: PathBuf,
    path: PathBuf,
    quick_repair: bool,
    /// The item tail is written as a run once it spans this many positions.
    item_fold_span: u64,
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
            item_fold_span: opts.item_fold_span.max(1),
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
            tx.open_table(ITEM_RUNS)?;
            tx.open_table(SUBJECTS)?;
            tx.open_table(SNAPSHOTS)?;
            let mut meta = tx.open_table(META)?;
            let found = meta.get("format")?.map(|v| v.value());
            match found {
                // Format 1 is format 2 with an empty item tail, format 2 format 3 without
                // runs: mark it 3, so that a release that does not know the runs refuses it
                // instead of missing index entries.
                Some(v) if v < u64::from(FORMAT_VERSION) && readable_u64(v) => {
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
            item_fold_span: opts.item_fold_span.max(1),
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
            // Format 2 reads as format 3 without runs; format 1 has no item tail table.
            Some(v) if v >= 2 && readable_u64(v) => Ok(store),
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
            let mut scratch = Vec::new();
            for a in &batch.appends {
                index.insert(
                    (a.stream.as_str(), a.first_seq),
                    (a.first_position, a.count),
                )?;
            }
            for e in &batch.events {
                events.insert(e.position, e.record.as_slice())?;
                if !e.items.is_empty() {
                    redb_index::add_to_tail(&mut tail, e.position, &e.items, &mut scratch)?;
                }
            }
            drop((events, index, tail));
            let last = batch.events.last().map_or(0, |e| e.position);
            redb_index::fold_if_due(&tx, last, self.item_fold_span)?;
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
        redb_index::positions(&tx, key).map_err(|e| self.read_err(e))
    }

    fn subjects_containing(&self, needle: &str, max: usize) -> Result<Vec<String>, ReadError> {
        let tx = self.read()?;
        redb_index::subjects_containing(&tx, needle, max).map_err(|e| self.read_err(e))
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
