//! The [`Journal`] trait and its one implementation over a [`Store`] and a [`GroupCommit`].

use crate::append::{Appended, CommitStats, ExpectedSeq, Snapshot};
use crate::data_dir::{self, DirLock};
use crate::error::{AppendError, OpenError, ReadError};
use crate::group_commit::GroupCommit;
use crate::guard::{self, Guarded};
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

    /// The storage engine's own integrity check (redb `check_integrity`, sled a checksum walk
    /// of every tree): what was checked, or the damage. Used by [`check`].
    fn verify_storage(&self) -> Result<String, String> {
        Ok("not checked".into())
    }
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
    let store = open_store(dir, opts, false)?;
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
        commit: Some(commit),
        store,
        backend: opts.backend,
        dir: dir.to_owned(),
        shown,
        _lock: Some(lock),
    }))
}

/// Opens the storage engine under [`guard::catch`]: a panic on a damaged file becomes
/// [`OpenError::Corrupt`] naming it. The store returned is [`Guarded`] likewise.
fn open_store(
    dir: &Path,
    opts: &JournalOptions,
    read_only: bool,
) -> Result<Arc<dyn Store>, OpenError> {
    let opened = guard::catch(|| -> Result<Arc<dyn Store>, OpenError> {
        let store: Arc<dyn Store> = match (opts.backend, read_only) {
            (Backend::Redb, false) => Arc::new(RedbStore::open(dir, opts)?),
            (Backend::Redb, true) => Arc::new(RedbStore::open_read_only(dir, opts)?),
            (Backend::Sled, false) => Arc::new(SledStore::open(dir, opts)?),
            (Backend::Sled, true) => {
                return Err(OpenError::Io {
                    action: "open read-only (sled cannot open its files without writing; \
                             copy the data directory somewhere writable)",
                    path: dir.join("sled"),
                    source: std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem),
                });
            }
        };
        Ok(Arc::new(Guarded(store)))
    });
    opened.unwrap_or_else(|detail| {
        Err(OpenError::Corrupt {
            backend: opts.backend,
            path: dir.join(match opts.backend {
                Backend::Redb => "journal.redb",
                Backend::Sled => "sled",
            }),
            detail,
        })
    })
}

/// Opens the journal in `dir` for reading only: no lock is taken, nothing is written (not
/// even the format marker), so that a backup, a `chmod -R a-w` copy or a read-only mount can
/// be read while nothing else writes it. Appends and snapshot saves are refused
/// ([`AppendError::ReadOnly`]). redb only: sled cannot open its files without writing. A
/// redb file that was not closed cleanly needs repair, which only [`open`] does.
pub fn open_read_only(dir: &Path, opts: &JournalOptions) -> Result<Arc<dyn Journal>, OpenError> {
    let shown = data_dir::display_dir(dir);
    let backend = detect_backend(dir)?;
    if backend != opts.backend {
        return Err(OpenError::BackendMismatch {
            dir: shown,
            found: backend,
            requested: opts.backend,
        });
    }
    let store = open_store(dir, opts, true)?;
    Ok(Arc::new(StoreJournal {
        commit: None,
        store,
        backend: opts.backend,
        dir: dir.to_owned(),
        shown,
        _lock: None,
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
    /// `None` when opened read-only.
    commit: Option<GroupCommit>,
    store: Arc<dyn Store>,
    backend: Backend,
    dir: PathBuf,
    shown: PathBuf,
    _lock: Option<DirLock>,
}

impl Journal for StoreJournal {
    fn submit(
        &self,
        stream: &StreamId,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> AppendTicket {
        match &self.commit {
            Some(commit) => commit.submit(stream, expected, events),
            None => AppendTicket::ready(Err(AppendError::ReadOnly {
                dir: self.shown.clone(),
            })),
        }
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
        if self.commit.is_none() {
            return Err(AppendError::ReadOnly {
                dir: self.shown.clone(),
            });
        }
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

    fn verify_storage(&self) -> Result<String, String> {
        self.store.verify_storage()
    }

    fn commit_stats(&self) -> CommitStats {
        self.commit
            .as_ref()
            .map(GroupCommit::stats)
            .unwrap_or_default()
    }
}

/// One damaged place found by [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The position of the damaged record, when the damage is a record.
    pub position: Option<u64>,
    /// The stream whose events cannot be read, when the damage is found through a stream.
    pub stream: Option<StreamId>,
    /// What is wrong.
    pub detail: String,
}

/// What [`check`] found.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The data directory.
    pub dir: PathBuf,
    /// The storage engine.
    pub backend: Backend,
    /// The last position the storage engine reports.
    pub last_position: u64,
    /// Records read and verified (checksum, layout, position).
    pub records_ok: u64,
    /// Streams read from seq 1 to their head.
    pub streams_ok: usize,
    /// The storage engine's own check: what was checked, or the damage.
    pub storage: Result<String, String>,
    /// Every damaged place, records in position order, then streams.
    pub damaged: Vec<Damage>,
}

impl CheckReport {
    /// Whether nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.storage.is_ok()
    }

    /// The last position before the first damaged record: every record up to it was verified.
    pub fn last_good_position(&self) -> u64 {
        self.damaged
            .iter()
            .filter_map(|d| d.position)
            .min()
            .map_or(self.last_position, |p| p.saturating_sub(1))
    }
}

/// Checks the journal in `dir` (which must not be open elsewhere: the lock is taken): the
/// storage engine's integrity check, then every record's CRC32, layout and position, then
/// every stream from seq 1 to its head through the stream index. Damage is reported, not
/// returned as an error; an error is a journal that cannot be opened at all.
pub fn check(dir: &Path) -> Result<CheckReport, OpenError> {
    let backend = detect_backend(dir)?;
    let journal = open(dir, &JournalOptions::with_backend(backend))?;
    Ok(check_open(journal.as_ref()))
}

fn check_open(journal: &dyn Journal) -> CheckReport {
    let mut damaged = Vec::new();
    let last_position = match journal.last_position() {
        Ok(p) => p,
        Err(e) => {
            damaged.push(Damage {
                position: None,
                stream: None,
                detail: e.to_string(),
            });
            0
        }
    };
    let mut records_ok = 0u64;
    let mut next = 1u64;
    while next <= last_position {
        let mut seen = 0usize;
        let chunk = 1024usize;
        // One record at a time after a failure, so that one bad record does not hide the next.
        match journal.read_all(next, chunk) {
            Ok(events) => {
                for e in &events {
                    if e.position != next {
                        for missing in next..e.position {
                            damaged.push(Damage {
                                position: Some(missing),
                                stream: None,
                                detail: "the record is missing".into(),
                            });
                        }
                    }
                    records_ok += 1;
                    next = e.position + 1;
                    seen += 1;
                }
                if seen == 0 {
                    break;
                }
            }
            Err(e) => {
                let position = match &e {
                    ReadError::Corrupt { position, .. } | ReadError::Decode { position, .. } => {
                        *position
                    }
                    _ => next,
                };
                // Read the good records before the damaged one, then skip it.
                if position > next
                    && let Ok(events) = journal.read_all(next, (position - next) as usize)
                {
                    records_ok += events.len() as u64;
                }
                damaged.push(Damage {
                    position: Some(position),
                    stream: None,
                    detail: e.to_string(),
                });
                if !matches!(e, ReadError::Corrupt { .. } | ReadError::Decode { .. }) {
                    break;
                }
                next = position + 1;
            }
        }
    }
    let mut streams_ok = 0usize;
    match journal.streams() {
        Ok(streams) => {
            for (stream, head) in streams {
                let mut from = 1u64;
                let mut failed = None;
                while from <= head {
                    match journal.read_stream(&stream, from, 4096) {
                        Ok(events) if events.is_empty() => {
                            failed = Some(format!(
                                "the stream index ends at seq {} but the head is {head}",
                                from - 1
                            ));
                            break;
                        }
                        Ok(events) => from += events.len() as u64,
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                match failed {
                    None => streams_ok += 1,
                    Some(detail) => damaged.push(Damage {
                        position: None,
                        stream: Some(stream),
                        detail,
                    }),
                }
            }
        }
        Err(e) => damaged.push(Damage {
            position: None,
            stream: None,
            detail: format!("the list of streams cannot be read: {e}"),
        }),
    }
    let storage = journal.verify_storage();
    CheckReport {
        dir: journal.data_dir().to_owned(),
        backend: journal.backend(),
        last_position,
        records_ok,
        streams_ok,
        storage,
        damaged,
    }
}
