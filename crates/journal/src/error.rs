//! The errors of the journal, one enum per operation family. Every message names the data
//! directory, file or stream concerned and says what the user can do.

use crate::append::ExpectedSeq;
use crate::options::Backend;
use ledgersync_domain::{DecodeError, StreamId};
use std::path::PathBuf;
use std::sync::Arc;

/// An error of the storage engine underneath (redb or sled), shared by every append of a
/// failed batch.
pub type StorageError = Arc<dyn std::error::Error + Send + Sync + 'static>;

fn pid_text(pid: &Option<u32>) -> String {
    match pid {
        Some(pid) => format!("process {pid}"),
        None => "another process".to_owned(),
    }
}

/// Why a journal could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A file system operation on the data directory failed.
    #[error(
        "could not {action} {path}: {source}; check that the path is a directory ledgersync may \
         write to and that the disk is not full"
    )]
    Io {
        /// What was being done (`create the data directory`, `read`, ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system error.
        source: std::io::Error,
    },
    /// The directory holds files but no journal format marker.
    #[error(
        "{dir} is not empty (it holds '{example}') and is not a ledgersync journal (it has no \
         LEDGERSYNC-JOURNAL marker); pass a new or empty directory with --data, or the data \
         directory of an existing journal"
    )]
    NotAJournal {
        /// The directory.
        dir: PathBuf,
        /// One of the entries found in it.
        example: String,
    },
    /// The directory holds no journal (asked for by [`detect_backend`](crate::detect_backend)).
    #[error(
        "{dir} holds no ledgersync journal (it has no LEDGERSYNC-JOURNAL marker); pass the data \
         directory of an existing journal"
    )]
    NoJournal {
        /// The directory.
        dir: PathBuf,
    },
    /// The format marker exists but cannot be understood.
    #[error(
        "the journal format marker {path} is unreadable: {detail}; it must hold the lines \
         'format=3' and 'backend=redb' (or 'backend=sled'): restore it from a backup of this \
         directory, or rewrite it naming the backend the directory was created with"
    )]
    BadMarker {
        /// The marker file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The directory was written in another journal format version.
    #[error(
        "the journal in {dir} has format version {found}, but this build of ledgersync reads \
         format versions 1 to {expected} (and marks a version 1 journal {expected} when it opens \
         it); run the ledgersync release that wrote it, or pass another directory with --data"
    )]
    VersionMismatch {
        /// The data directory.
        dir: PathBuf,
        /// The version in the marker.
        found: u32,
        /// The version this build writes (it also reads version 1).
        expected: u32,
    },
    /// The directory was created with the other backend.
    #[error(
        "the journal in {dir} was created with the {found} backend, but {requested} was \
         requested; select the {found} backend to open it (a journal cannot change backend in \
         place), or pass another directory with --data"
    )]
    BackendMismatch {
        /// The data directory.
        dir: PathBuf,
        /// The backend recorded in the marker.
        found: Backend,
        /// The backend asked for.
        requested: Backend,
    },
    /// Another journal (in this or another process) has the directory open.
    #[error(
        "the journal in {dir} is in use by {}; stop the other ledgersync process or pass \
         another directory with --data",
        pid_text(.holder_pid)
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The process id written in the `LOCK` file by the holder, when readable.
        holder_pid: Option<u32>,
    },
    /// The storage engine reports that its files are damaged.
    #[error(
        "the {backend} storage in {path} is corrupt: {detail}. Keep a copy of the data directory \
         for analysis and restore it from your last backup (docs/journal-storage.md, Damage: \
         `ledgersync journal check` lists the damage when the file still opens){}",
        if *.backend == Backend::Sled {
            " (sled 0.34 has known, unfixed reports of this after abrupt stops; see \
             docs/decisions/0001-redb-default-journal-sled-supported.md)"
        } else { "" }
    )]
    Corrupt {
        /// The backend.
        backend: Backend,
        /// The database file (redb) or directory (sled).
        path: PathBuf,
        /// What the engine reported.
        detail: String,
    },
    /// The storage engine failed to open for another reason.
    #[error(
        "the {backend} storage in {path} could not be opened: {source}; check the permissions \
         of the data directory and the free space on its disk, then retry"
    )]
    Storage {
        /// The backend.
        backend: Backend,
        /// The database file (redb) or directory (sled).
        path: PathBuf,
        /// The engine's error.
        source: StorageError,
    },
}

/// Why an append (or a snapshot save) was not written.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The stream's head is not what the caller expected; nothing was written.
    #[error(
        "append to stream {stream} expected {expected} but the stream's head is {actual}: another \
         writer appended first; read the stream after seq {actual} and decide again"
    )]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedSeq,
        /// The head at the time of the append.
        actual: u64,
    },
    /// The append itself is not valid; nothing was written.
    #[error("append to stream '{stream}' refused: {reason}")]
    Invalid {
        /// The stream.
        stream: StreamId,
        /// What is wrong.
        reason: &'static str,
    },
    /// A snapshot claims to include events the stream does not have.
    #[error(
        "snapshot of stream {stream} at seq {seq} refused: the stream's head is {head}; save a \
         snapshot only of events that were appended"
    )]
    SnapshotAhead {
        /// The stream.
        stream: StreamId,
        /// The snapshot's seq.
        seq: u64,
        /// The stream's head.
        head: u64,
    },
    /// The head of the stream could not be read before appending; nothing was written.
    #[error("could not read the head of stream {stream} before appending to it: {source}")]
    Read {
        /// The stream.
        stream: StreamId,
        /// The read error.
        source: Arc<ReadError>,
    },
    /// The durable commit failed; nothing of its batch was written.
    #[error(
        "the journal in {dir} could not commit the batch holding this append to {stream}: \
         {source}; nothing of that batch was written. Check the free space and permissions of \
         {dir}, then retry the append"
    )]
    Commit {
        /// The data directory.
        dir: PathBuf,
        /// The stream of this append.
        stream: StreamId,
        /// The engine's error.
        source: StorageError,
    },
    /// The journal's writer thread is gone: the journal was closed, or the writer failed.
    #[error(
        "the journal writer of {dir} has stopped (the journal was closed or its writer thread \
         failed; see the log); nothing more can be appended: reopen the journal"
    )]
    WriterStopped {
        /// The data directory.
        dir: PathBuf,
    },
    /// The journal was opened read-only (`open_read_only`): it takes no appends.
    #[error(
        "the journal in {dir} is open read-only (a command that only reads, or a read-only data \
         directory): it takes no appends"
    )]
    ReadOnly {
        /// The data directory.
        dir: PathBuf,
    },
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A stored event record fails its CRC32 check or is not at the position it is stored
    /// under.
    #[error(
        "the journal record at position {position} in {path} is corrupt: {detail}. Stop \
         ledgersync, keep a copy of the data directory for analysis and restore it from your last \
         backup; events before position {position} are not affected by this error"
    )]
    Corrupt {
        /// The position of the record.
        position: u64,
        /// The database file (redb) or directory (sled).
        path: PathBuf,
        /// What is wrong (checksum found and computed, or the mismatch).
        detail: String,
    },
    /// A record's checksum is right but its envelope cannot be decoded by this build.
    #[error(
        "the journal record at position {position} in {path} has a valid checksum but cannot be \
         decoded: {source}"
    )]
    Decode {
        /// The position of the record.
        position: u64,
        /// The database file (redb) or directory (sled).
        path: PathBuf,
        /// The decoder's error.
        source: DecodeError,
    },
    /// An index entry (stream head, stream index, meta) is malformed.
    #[error(
        "an index entry in {path} is malformed: {detail}. The journal cannot be trusted: stop \
         ledgersync, keep a copy of the data directory, run `ledgersync journal check` to see \
         what is damaged, and restore your last backup or recover the intact records with \
         `ledgersync journal recover --to NEW_DIR`"
    )]
    CorruptIndex {
        /// The database file (redb) or directory (sled).
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A saved snapshot fails its CRC32 check.
    #[error(
        "the snapshot of stream {stream} in {path} is corrupt: {detail}. Snapshots are only a \
         cache and the stream's events are not affected: replay the stream from seq 1 and save \
         a new snapshot"
    )]
    CorruptSnapshot {
        /// The stream.
        stream: StreamId,
        /// The database file (redb) or directory (sled).
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A position that the journal does not hold was asked for.
    #[error(
        "position {position} is not in the journal in {dir} (its positions run from 1 to \
         {last_position}); ask only for positions the journal returned"
    )]
    MissingPosition {
        /// The data directory.
        dir: PathBuf,
        /// The position asked for.
        position: u64,
        /// The last position of the journal.
        last_position: u64,
    },
    /// The storage engine itself failed on damaged data (it panicked on a corrupt page; the
    /// panic was caught at the journal boundary).
    #[error(
        "the journal storage {path} is damaged: the storage engine failed while reading it \
         ({detail}). Stop ledgersync, keep a copy of the data directory, run `ledgersync journal \
         check` to see what is damaged, then recover the good records with `ledgersync journal \
         recover --to NEW_DIR` (which copies the records before the damage) or restore your last backup (docs/journal-storage.md, Damage)"
    )]
    Damaged {
        /// The database file (redb) or directory (sled).
        path: PathBuf,
        /// What the storage engine said.
        detail: String,
    },
    /// The storage engine failed to read.
    #[error(
        "reading the journal in {dir} failed: {source}; check that its disk is readable, then \
         retry"
    )]
    Storage {
        /// The data directory.
        dir: PathBuf,
        /// The engine's error.
        source: StorageError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_place_and_the_remedy() {
        let e = OpenError::Locked {
            dir: "/srv/ls".into(),
            holder_pid: Some(42),
        };
        let text = e.to_string();
        assert!(
            text.contains("/srv/ls") && text.contains("process 42"),
            "{text}"
        );
        assert!(text.contains("--data"), "{text}");
        let e = OpenError::Locked {
            dir: "/srv/ls".into(),
            holder_pid: None,
        };
        assert!(e.to_string().contains("another process"));
        let e = OpenError::Corrupt {
            backend: Backend::Sled,
            path: "/srv/ls/sled".into(),
            detail: "bad".into(),
        };
        assert!(e.to_string().contains("sled 0.34"), "{e}");
        let e = AppendError::Conflict {
            stream: StreamId("mailbox/m1".into()),
            expected: ExpectedSeq::Exactly(3),
            actual: 5,
        };
        let text = e.to_string();
        assert!(text.contains("mailbox/m1") && text.contains("head 3") && text.contains("is 5"));
    }
}
