//! The [`Journal`] trait and its one implementation over a [`Store`] and a [`GroupCommit`].

use crate::append::{Appended, CommitStats, ExpectedSeq, Snapshot};
use crate::data_dir::{self, DirLock};
use crate::error::{AppendError, OpenError, ReadError};
use crate::group_commit::GroupCommit;
use crate::options::{Backend, JournalOptions};
use crate::record::{decode_event, decode_snapshot, frame_snapshot};
use crate::redb_store::RedbStore;
use crate::sled_store::SledStore;
use crate::store::Store;
use crate::ticket::AppendTicket;
use ledgersync_domain::{Envelope, ItemKey, NewEvent, StreamId};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// An append-only event journal: streams with per-stream sequences, one global order of
/// positions, an item index and snapshots. Appends go through group commit; reads see every
/// acknowledged append.
///
/// Numbering: `seq` starts at 1 in every stream and `position` at 1 in the journal; both are
/// contiguous, without gaps, and never reused.
pub trait Journal: Send + Sync {
    /// Appends `events` to `stream` atomically if the stream's head satisfies `expected`.
    /// Returns only after the durable commit that contains the append.
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> Result<Appended, AppendError> {
        self.submit(stream, expected, events).wait()
    }

    /// Queues the same append and returns at once; the ticket resolves after the durable
    /// commit. `ticket.wait()` blocks; `ticket.await` suits async callers.
    fn submit(
        &self,
        stream: &StreamId,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> AppendTicket;

    /// The head seq of a stream: the seq of its last event, 0 if it has none.
    fn stream_head(&self, stream: &StreamId) -> Result<u64, ReadError>;

    /// Up to `max` events of `stream` with `seq >= from_seq`, in seq order.
    fn read_stream(
        &self,
        stream: &StreamId,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Envelope>, ReadError>;

    /// Up to `max` events with `position >= from_position`, in position order.
    fn read_all(&self, from_position: u64, max: usize) -> Result<Vec<Envelope>, ReadError>;

    /// The last position of the journal, 0 if it is empty.
    fn last_position(&self) -> Result<u64, ReadError>;

    /// The events at the given positions, in the order given. A position the journal does not
    /// hold is an error ([`ReadError::MissingPosition`]).
    fn read_positions(&self, positions: &[u64]) -> Result<Vec<Envelope>, ReadError>;

    /// The positions of every event indexed under `key`, ascending.
    fn positions_for_item(&self, key: &ItemKey) -> Result<Vec<u64>, ReadError>;

    /// Up to `max` indexed subjects (stored lowercase) that contain `needle`, compared without
    /// case, in alphabetical order.
    fn search_subjects(&self, needle: &str, max: usize) -> Result<Vec<String>, ReadError>;

    /// Every stream with its head, in stream name order.
    fn streams(&self) -> Result<Vec<(StreamId, u64)>, ReadError>;

    /// Saves (replaces) the snapshot of a stream, durably. Its seq may not exceed the head.
    fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), AppendError>;

    /// The latest saved snapshot of a stream.
    fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, ReadError>;

    /// The storage engine in use.
    fn backend(&self) -> Backend;

    /// The data directory.
    fn data_dir(&self) -> &Path;

    /// Group-commit counters since the journal was opened.
    fn commit_stats(&self) -> CommitStats;
}

/// Opens the journal in `dir`, creating the directory and the journal if needed.
///
/// The directory must be new, empty, or a journal created with the same backend and format.
/// It is locked until the returned journal is dropped; dropping it finishes every queued
/// append first.
pub fn open(dir: &Path, opts: &JournalOptions) -> Result<Arc<dyn Journal>, OpenError> {
    let started = Instant::now();
    let shown = data_dir::display_dir(dir);
    let lock = data_dir::prepare(dir, opts.backend).map_err(|e| with_dir(e, &shown))?;
    let store: Arc<dyn Store> = match opts.backend {
        Backend::Redb => Arc::new(RedbStore::open(dir, opts)?),
        Backend::Sled => Arc::new(SledStore::open(dir, opts)?),
    };
    let last_position = store.last_position().map_err(|e| OpenError::Storage {
        backend: opts.backend,
        path: store.path().to_owned(),
        source: Arc::new(e),
    })?;
    let commit = GroupCommit::start(
        store.clone(),
        Arc::from(shown.as_path()),
        opts.max_batch_events,
        last_position,
    )
    .map_err(|source| OpenError::Io {
        action: "start the writer thread of",
        path: shown.clone(),
        source,
    })?;
    tracing::info!(
        dir = %shown.display(),
        backend = %opts.backend,
        last_position,
        open_ms = started.elapsed().as_secs_f64() * 1000.0,
        "journal opened"
    );
    Ok(Arc::new(StoreJournal {
        commit,
        store,
        backend: opts.backend,
        dir: dir.to_owned(),
        shown,
        _lock: lock,
    }))
}

/// The backend an existing journal in `dir` was created with, read from its format marker, so
/// that tools can open a journal without being told its backend.
pub fn detect_backend(dir: &Path) -> Result<Backend, OpenError> {
    data_dir::detect_backend(dir).map_err(|e| with_dir(e, &data_dir::display_dir(dir)))
}

/// Puts the absolute directory into the errors that name it, so that a message is
/// unambiguous whatever the working directory.
fn with_dir(e: OpenError, shown: &Path) -> OpenError {
    match e {
        OpenError::NotAJournal { example, .. } => OpenError::NotAJournal {
            dir: shown.to_owned(),
            example,
        },
        OpenError::VersionMismatch {
            found, expected, ..
        } => OpenError::VersionMismatch {
            dir: shown.to_owned(),
            found,
            expected,
        },
        OpenError::BackendMismatch {
            found, requested, ..
        } => OpenError::BackendMismatch {
            dir: shown.to_owned(),
            found,
            requested,
        },
        OpenError::Locked { holder_pid, .. } => OpenError::Locked {
            dir: shown.to_owned(),
            holder_pid,
        },
        OpenError::NoJournal { .. } => OpenError::NoJournal {
            dir: shown.to_owned(),
        },
        other => other,
    }
}

/// A journal over one store. Fields drop in order: the group commit first (its `Drop` finishes
/// the queue and joins the writer), then the store, then the lock.
struct StoreJournal {
    commit: GroupCommit,
    store: Arc<dyn Store>,
    backend: Backend,
    dir: PathBuf,
    shown: PathBuf,
    _lock: DirLock,
}

impl Journal for StoreJournal {
    fn submit(
        &self,
        stream: &StreamId,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> AppendTicket {
        self.commit.submit(stream, expected, events)
    }

    fn stream_head(&self, stream: &StreamId) -> Result<u64, ReadError> {
        self.store.head(stream)
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Envelope>, ReadError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let from_seq = from_seq.max(1);
        let path = self.store.path();
        let mut out: Vec<Envelope> = Vec::with_capacity(max.min(1024));
        self.store
            .stream_records(stream, from_seq, max, &mut |position, record| {
                let e = decode_event(position, record, path)?;
                let expected_seq = from_seq + out.len() as u64;
                if &e.stream != stream || e.seq != expected_seq {
                    return Err(ReadError::Corrupt {
                        position,
                        path: path.to_owned(),
                        detail: format!(
                            "the stream index points at this position for {stream} seq \
                             {expected_seq}, but the record holds {} seq {}",
                            e.stream, e.seq
                        ),
                    });
                }
                out.push(e);
                Ok(())
            })?;
        Ok(out)
    }

    fn read_all(&self, from_position: u64, max: usize) -> Result<Vec<Envelope>, ReadError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let path = self.store.path();
        let mut out = Vec::with_capacity(max.min(4096));
        self.store
            .records_from(from_position.max(1), max, &mut |position, record| {
                out.push(decode_event(position, record, path)?);
                Ok(())
            })?;
        Ok(out)
    }

    fn last_position(&self) -> Result<u64, ReadError> {
        self.store.last_position()
    }

    fn read_positions(&self, positions: &[u64]) -> Result<Vec<Envelope>, ReadError> {
        let records = self.store.records_at(positions)?;
        let path = self.store.path();
        positions
            .iter()
            .zip(records)
            .map(|(&position, record)| match record {
                Some(record) => decode_event(position, &record, path),
                None => Err(ReadError::MissingPosition {
                    dir: self.shown.clone(),
                    position,
                    last_position: self.store.last_position().unwrap_or(0),
                }),
            })
            .collect()
    }

    fn positions_for_item(&self, key: &ItemKey) -> Result<Vec<u64>, ReadError> {
        self.store.item_positions(&key.to_key())
    }

    fn search_subjects(&self, needle: &str, max: usize) -> Result<Vec<String>, ReadError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.store.subjects_containing(&needle.to_lowercase(), max)
    }

    fn streams(&self) -> Result<Vec<(StreamId, u64)>, ReadError> {
        self.store.heads()
    }

    fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), AppendError> {
        let head = self.store.head(stream).map_err(|e| AppendError::Read {
            stream: stream.clone(),
            source: Arc::new(e),
        })?;
        if snapshot.seq > head {
            return Err(AppendError::SnapshotAhead {
                stream: stream.clone(),
                seq: snapshot.seq,
                head,
            });
        }
        let record = frame_snapshot(snapshot.seq, &snapshot.bytes);
        self.store
            .put_snapshot(stream, &record)
            .map_err(|source| AppendError::Commit {
                dir: self.shown.clone(),
                stream: stream.clone(),
                source,
            })
    }

    fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, ReadError> {
        match self.store.get_snapshot(stream)? {
            None => Ok(None),
            Some(record) => {
                let (seq, bytes) = decode_snapshot(stream, &record, self.store.path())?;
                Ok(Some(Snapshot { seq, bytes }))
            }
        }
    }

    fn backend(&self) -> Backend {
        self.backend
    }

    fn data_dir(&self) -> &Path {
        &self.dir
    }

    fn commit_stats(&self) -> CommitStats {
        self.commit.stats()
    }
}
