//! The sled 0.34 backend: a directory `sled/` in the data directory.
//!
//! | tree           | key                               | value                         |
//! |----------------|-----------------------------------|-------------------------------|
//! | `events`       | position as u64 BE                | event record (CRC ‖ envelope) |
//! | `stream_heads` | stream (UTF-8)                    | head seq as u64 BE            |
//! | `stream_index` | stream ‖ 0xFF ‖ first seq u64 BE  | first position ‖ count, u64 BE|
//! | `items`        | item key ‖ 0xFF ‖ position u64 BE | empty                         |
//! | `subjects`     | subject (UTF-8)                   | empty                         |
//! | `snapshots`    | stream (UTF-8)                    | snapshot record               |
//! | `meta`         | `format`                          | u64 BE (1)                    |
//!
//! A batch is one multi-tree transaction followed by `Db::flush` (write the IO buffers and
//! fsync); the batch is acknowledged only after the flush.

use crate::data_dir::{FORMAT_VERSION, OLDEST_READABLE_FORMAT};
use crate::error::{OpenError, ReadError, StorageError};
use crate::options::{Backend, JournalOptions};
use crate::store::{Batch, Store, Visit, number_suffix, text_number_key, text_prefix};
use ledgersync_domain::StreamId;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Db, Transactional, Tree};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Name of the sled directory inside the data directory.
pub(crate) const SLED_DIR: &str = "sled";

/// How long `open` waits for sled's own file lock to be released by a closing journal.
const SLED_LOCK_WAIT: Duration = Duration::from_secs(10);

/// A journal stored in sled.
pub(crate) struct SledStore {
    db: Db,
    events: Tree,
    stream_heads: Tree,
    stream_index: Tree,
    items: Tree,
    subjects: Tree,
    snapshots: Tree,
    dir: PathBuf,
    path: PathBuf,
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl SledStore {
    /// Opens (or creates) `sled/` in `dir`.
    pub(crate) fn open(dir: &Path, opts: &JournalOptions) -> Result<Self, OpenError> {
        let path = dir.join(SLED_DIR);
        let storage = |e: sled::Error| match e {
            sled::Error::Corruption { at, .. } => OpenError::Corrupt {
                backend: Backend::Sled,
                path: path.clone(),
                detail: match at {
                    Some(at) => format!("sled found corrupt data at {at:?}"),
                    None => "sled found corrupt data".to_owned(),
                },
            },
            other => OpenError::Storage {
                backend: Backend::Sled,
                path: path.clone(),
                source: Arc::new(other),
            },
        };
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(opts.cache_bytes as u64);
        // sled releases its own file lock only when its background threads have let go of the
        // file, a little after the last `Db` handle is dropped. We hold the data directory's
        // LOCK, so a held sled lock can only be a journal of this process that is still
        // closing: wait for it rather than fail a reopen.
        let deadline = Instant::now() + SLED_LOCK_WAIT;
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other.map_err(storage)?,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        let meta = tree("meta")?;
        let store = Self {
            events: tree("events")?,
            stream_heads: tree("stream_heads")?,
            stream_index: tree("stream_index")?,
            items: tree("items")?,
            subjects: tree("subjects")?,
            snapshots: tree("snapshots")?,
            db: db.clone(),
            dir: dir.to_owned(),
            path: path.clone(),
        };
        let mut found = match meta.get("format").map_err(storage)? {
            Some(v) => be_u64(&v).ok_or_else(|| OpenError::Corrupt {
                backend: Backend::Sled,
                path: path.clone(),
                detail: format!(
                    "the format entry of the meta tree is {} bytes long",
                    v.len()
                ),
            })?,
            None => {
                meta.insert("format", &u64::from(FORMAT_VERSION).to_be_bytes())
                    .map_err(storage)?;
                db.flush().map_err(storage)?;
                u64::from(FORMAT_VERSION)
            }
        };
        if found == u64::from(OLDEST_READABLE_FORMAT) {
            // Format 1 differs from 2 only in redb's item index: the sled layout is the same.
            meta.insert("format", &u64::from(FORMAT_VERSION).to_be_bytes())
                .map_err(storage)?;
            db.flush().map_err(storage)?;
            found = u64::from(FORMAT_VERSION);
        }
        if found != u64::from(FORMAT_VERSION) {
            return Err(OpenError::VersionMismatch {
                dir: dir.to_owned(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                expected: FORMAT_VERSION,
            });
        }
        Ok(store)
    }

    fn read_err(&self, e: sled::Error) -> ReadError {
        match e {
            sled::Error::Corruption { at, .. } => ReadError::CorruptIndex {
                path: self.path.clone(),
                detail: format!("sled found corrupt data at {at:?}"),
            },
            other => ReadError::Storage {
                dir: self.dir.clone(),
                source: Arc::new(other),
            },
        }
    }

    fn malformed(&self, what: String) -> ReadError {
        ReadError::CorruptIndex {
            path: self.path.clone(),
            detail: what,
        }
    }
}

impl Store for SledStore {
    fn path(&self) -> &Path {
        &self.path
    }

    fn head(&self, stream: &StreamId) -> Result<u64, ReadError> {
        match self
            .stream_heads
            .get(stream.as_str())
            .map_err(|e| self.read_err(e))?
        {
            None => Ok(0),
            Some(v) => be_u64(&v).ok_or_else(|| {
                self.malformed(format!(
                    "the head of stream {stream} is {} bytes long",
                    v.len()
                ))
            }),
        }
    }

    fn last_position(&self) -> Result<u64, ReadError> {
        match self.events.last().map_err(|e| self.read_err(e))? {
            None => Ok(0),
            Some((k, _)) => be_u64(&k)
                .ok_or_else(|| self.malformed(format!("an event key is {} bytes long", k.len()))),
        }
    }

    fn commit(&self, batch: &Batch) -> Result<(), StorageError> {
        let trees = (
            &self.events,
            &self.stream_heads,
            &self.stream_index,
            &self.items,
            &self.subjects,
        );
        let result: Result<(), TransactionError<Infallible>> =
            trees.transaction(|(events, heads, index, items, subjects)| {
                for a in &batch.appends {
                    let mut value = [0u8; 16];
                    value[..8].copy_from_slice(&a.first_position.to_be_bytes());
                    value[8..].copy_from_slice(&a.count.to_be_bytes());
                    index.insert(text_number_key(a.stream.as_str(), a.first_seq), &value)?;
                }
                for e in &batch.events {
                    events.insert(&e.position.to_be_bytes(), e.record.as_slice())?;
                    for key in &e.items {
                        items.insert(text_number_key(key, e.position), &[])?;
                    }
                    for subject in &e.subjects {
                        subjects.insert(subject.as_bytes(), &[])?;
                    }
                }
                for (stream, head) in &batch.heads {
                    heads.insert(stream.as_str().as_bytes(), &head.to_be_bytes())?;
                }
                Ok::<(), ConflictableTransactionError<Infallible>>(())
            });
        match result {
            Ok(()) => {}
            Err(TransactionError::Storage(e)) => return Err(Arc::new(e)),
            Err(TransactionError::Abort(never)) => match never {},
        }
        self.db
            .flush()
            .map(drop)
            .map_err(|e| Arc::new(e) as StorageError)
    }

    fn records_from(&self, from: u64, max: usize, visit: Visit<'_>) -> Result<(), ReadError> {
        for entry in self.events.range(from.to_be_bytes()..).take(max) {
            let (k, v) = entry.map_err(|e| self.read_err(e))?;
            let position = be_u64(&k)
                .ok_or_else(|| self.malformed(format!("an event key is {} bytes long", k.len())))?;
            visit(position, &v)?;
        }
        Ok(())
    }

    fn records_at(&self, positions: &[u64]) -> Result<Vec<Option<Vec<u8>>>, ReadError> {
        positions
            .iter()
            .map(|p| {
                self.events
                    .get(p.to_be_bytes())
                    .map(|v| v.map(|v| v.to_vec()))
                    .map_err(|e| self.read_err(e))
            })
            .collect()
    }

    fn stream_records(
        &self,
        stream: &StreamId,
        from_seq: u64,
        max: usize,
        visit: Visit<'_>,
    ) -> Result<(), ReadError> {
        let s = stream.as_str();
        // Start at the append that holds `from_seq`: the last one starting at or before it.
        let start = match self
            .stream_index
            .range(text_number_key(s, 0)..=text_number_key(s, from_seq))
            .next_back()
        {
            Some(entry) => entry.map_err(|e| self.read_err(e))?.0.to_vec(),
            None => text_number_key(s, from_seq),
        };
        let mut seen = 0usize;
        for entry in self
            .stream_index
            .range(start..=text_number_key(s, u64::MAX))
        {
            if seen >= max {
                break;
            }
            let (k, v) = entry.map_err(|e| self.read_err(e))?;
            let malformed = || {
                self.malformed(format!(
                    "a stream index entry of {stream} is malformed ({} key bytes, {} value bytes)",
                    k.len(),
                    v.len()
                ))
            };
            let first_seq = number_suffix(&k).ok_or_else(malformed)?;
            let (first_position, count) = match (v.get(..8), v.get(8..)) {
                (Some(p), Some(c)) if v.len() == 16 => (
                    be_u64(p).ok_or_else(malformed)?,
                    be_u64(c).ok_or_else(malformed)?,
                ),
                _ => return Err(malformed()),
            };
            let skip = from_seq.saturating_sub(first_seq);
            if skip >= count {
                continue;
            }
            let take = (count - skip).min((max - seen) as u64);
            let (from, to) = (first_position + skip, first_position + skip + take - 1);
            let mut found = 0;
            for record in self.events.range(from.to_be_bytes()..=to.to_be_bytes()) {
                let (k, v) = record.map_err(|e| self.read_err(e))?;
                let position = be_u64(&k).ok_or_else(|| {
                    self.malformed(format!("an event key is {} bytes long", k.len()))
                })?;
                visit(position, &v)?;
                found += 1;
            }
            if found != take {
                return Err(self.malformed(format!(
                    "the stream index maps the append of {stream} at seq {first_seq} to positions \
                     from {first_position}, some of which hold no event"
                )));
            }
            seen += take as usize;
        }
        Ok(())
    }

    fn item_positions(&self, key: &str) -> Result<Vec<u64>, ReadError> {
        self.items
            .scan_prefix(text_prefix(key))
            .keys()
            .map(|k| {
                let k = k.map_err(|e| self.read_err(e))?;
                number_suffix(&k).ok_or_else(|| {
                    self.malformed(format!("an item index key of '{key}' has no position"))
                })
            })
            .collect()
    }

    fn subjects_containing(&self, needle: &str, max: usize) -> Result<Vec<String>, ReadError> {
        let mut out = Vec::new();
        for k in self.subjects.iter().keys() {
            if out.len() >= max {
                break;
            }
            let k = k.map_err(|e| self.read_err(e))?;
            let subject = std::str::from_utf8(&k)
                .map_err(|_| self.malformed("a subject index key is not UTF-8".to_owned()))?;
            if subject.contains(needle) {
                out.push(subject.to_owned());
            }
        }
        Ok(out)
    }

    fn heads(&self) -> Result<Vec<(StreamId, u64)>, ReadError> {
        self.stream_heads
            .iter()
            .map(|entry| {
                let (k, v) = entry.map_err(|e| self.read_err(e))?;
                let stream = String::from_utf8(k.to_vec())
                    .map_err(|_| self.malformed("a stream name is not UTF-8".to_owned()))?;
                let head = be_u64(&v).ok_or_else(|| {
                    self.malformed(format!(
                        "the head of stream {stream} is {} bytes long",
                        v.len()
                    ))
                })?;
                Ok((StreamId(stream), head))
            })
            .collect()
    }

    fn put_snapshot(&self, stream: &StreamId, record: &[u8]) -> Result<(), StorageError> {
        self.snapshots
            .insert(stream.as_str(), record)
            .map_err(|e| Arc::new(e) as StorageError)?;
        self.db
            .flush()
            .map(drop)
            .map_err(|e| Arc::new(e) as StorageError)
    }

    fn get_snapshot(&self, stream: &StreamId) -> Result<Option<Vec<u8>>, ReadError> {
        self.snapshots
            .get(stream.as_str())
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.read_err(e))
    }

    fn verify_storage(&self) -> Result<String, String> {
        // sled has no integrity check of its log; walking every tree with `checksum` reads
        // every page and fails on those it cannot decode.
        let mut trees = 0usize;
        for name in self.db.tree_names() {
            let tree = self.db.open_tree(&name).map_err(|e| {
                format!(
                    "tree {} cannot be opened: {e}",
                    String::from_utf8_lossy(&name)
                )
            })?;
            tree.checksum().map_err(|e| {
                format!(
                    "tree {} cannot be read: {e}",
                    String::from_utf8_lossy(&name)
                )
            })?;
            trees += 1;
        }
        Ok(format!("sled read every page of its {trees} trees"))
    }
}
