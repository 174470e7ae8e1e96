//! Errors of the projection.

use crate::error::EngineError;
use std::path::PathBuf;

/// What can go wrong while opening, folding into or reading the projection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The projection file could not be opened or created.
    #[error(
        "could not open the projection database {path}: {source}; \
         if it is damaged, delete it and run `ledgersync projections rebuild`"
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: redb::DatabaseError,
    },
    /// The embedded store failed a read, a write or a commit.
    #[error("the projection store failed: {0}")]
    Store(#[from] redb::Error),
    /// The journal could not be read or an event not decoded.
    #[error(transparent)]
    Journal(#[from] EngineError),
    /// The fold state of a mailbox stored with the checkpoint does not decode (a file written
    /// by another ledgersync version).
    #[error(
        "the projection's state of mailbox {mailbox} does not decode: {source}; \
         run `ledgersync projections rebuild` to refold it"
    )]
    State {
        /// The mailbox.
        mailbox: String,
        /// Cause.
        #[source]
        source: ledgersync_domain::DecodeError,
    },
    /// A stored row does not decode (a file written by another ledgersync version).
    #[error(
        "a projection row does not decode: {0}; run `ledgersync projections rebuild` to refold it"
    )]
    Row(#[source] serde_json::Error),
}

macro_rules! via_redb_error {
    ($($t:ty),*) => {$(
        impl From<$t> for ProjectionError {
            fn from(e: $t) -> Self {
                ProjectionError::Store(redb::Error::from(e))
            }
        }
    )*};
}

via_redb_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<ledgersync_journal::ReadError> for ProjectionError {
    fn from(e: ledgersync_journal::ReadError) -> Self {
        ProjectionError::Journal(EngineError::Read(e))
    }
}
