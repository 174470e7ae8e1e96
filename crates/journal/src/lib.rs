//! The append-only event journal of ledgersync.
//!
//! A journal holds envelopes ([`ledgersync_domain::Envelope`]) in streams (`mailbox/<id>`,
//! `org/<id>`), each with a per-stream `seq` and a journal-wide `position`, both starting at 1
//! and contiguous. It never looks inside payloads. Two embedded storage engines sit behind one
//! [`Journal`] trait: redb 4 (the default) and sled 0.34; both share one group-commit writer,
//! one record layout (CRC32 ‖ envelope) and one conformance and crash test suite.
//!
//! ```no_run
//! use ledgersync_journal::{open, ExpectedSeq, JournalOptions};
//! # fn events() -> Vec<ledgersync_domain::NewEvent> { vec![] }
//! let journal = open("data/journal".as_ref(), &JournalOptions::default())?;
//! let stream = ledgersync_domain::StreamId("mailbox/m1".into());
//! let appended = journal.append(&stream, ExpectedSeq::NoStream, events())?;
//! let envelopes = journal.read_stream(&stream, 1, 100)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Codemap: [`open`] and [`Journal`] in `journal.rs`; the writer thread and its protocol in
//! `group_commit.rs`; the backend trait in `store.rs` with `redb_store.rs` and `sled_store.rs`;
//! the byte layout of values in `record.rs`; the format marker and the lock in `data_dir.rs`.
//! The storage layout, the commit protocol and the crash guarantee are specified in
//! `docs/journal-storage.md`.
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod append;
mod data_dir;
mod error;
mod group_commit;
mod guard;
mod journal;
mod options;
mod record;
mod redb_index;
mod redb_store;
mod sled_store;
mod store;
mod ticket;

pub use append::{Appended, CommitStats, ExpectedSeq, Snapshot};
pub use error::{AppendError, OpenError, ReadError, StorageError};
pub use journal::{CheckReport, Damage, Journal, check, detect_backend, open, open_read_only};
pub use options::{Backend, JournalOptions, UnknownBackend};
pub use ticket::AppendTicket;

/// The journal format version this build reads and writes (the `format=` line of the
/// `LEDGERSYNC-JOURNAL` marker).
pub const FORMAT_VERSION: u32 = data_dir::FORMAT_VERSION;
