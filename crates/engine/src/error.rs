//! Errors of the engine.

use ledgersync_domain::{DecodeError, MailboxId, StreamId};
use ledgersync_journal::{AppendError, ReadError};

/// What can go wrong while processing or reading the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The journal refused or failed an append.
    #[error("could not append to {stream}: {source}")]
    Append {
        /// Stream.
        stream: StreamId,
        /// Cause.
        #[source]
        source: AppendError,
    },
    /// The journal could not be read.
    #[error("could not read the journal: {0}")]
    Read(#[from] ReadError),
    /// A stored event could not be decoded.
    #[error(
        "event at position {position} ({stream}) cannot be decoded: {source}; \
         the journal may have been written by another ledgersync version"
    )]
    Decode {
        /// Global position.
        position: u64,
        /// Stream.
        stream: StreamId,
        /// Cause.
        #[source]
        source: DecodeError,
    },
    /// An observation names a mailbox the organization does not know.
    #[error("unknown mailbox `{0}`: register it first (mailbox_registered)")]
    UnknownMailbox(MailboxId),
    /// An input is not valid.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// One field of an input is not valid (`crm apply` prints it as `file:LINE: field "F": ...`).
    #[error("invalid input: field \"{field}\": {message}")]
    InvalidField {
        /// The field, as a path (`user`, `previous_owner`, `entity`).
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
}
