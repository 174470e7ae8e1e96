//! The reading side of the incoming-email connector: which messages arrived in the tracked
//! IMAP folders since the last read, their header fields, and which keywords changed; and the
//! Sent folder of the outgoing-email sender (`sent.rs`).
//!
//! | file | what lives there |
//! |---|---|
//! | `mod.rs` | [`ImapConfig`], [`ImapError`], the result types |
//! | `reader.rs` | [`ImapReader`]: the session, `folders`, `read` |
//! | `cursor.rs` | [`ImapCursor`]: per folder UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, MAILBOXID |
//! | `headers.rs` | [`EmailHeaders`]: the header fields read with mail-parser |
//! | `sent.rs` | the Sent folder: `sent_folder`, `contains_message_id` (read-only), `append` |
//!
//! The reader is blocking (connectors run on a blocking thread pool): it owns a tokio
//! current-thread runtime and waits on each IMAP command, each bounded by
//! [`ImapConfig::timeout`]. Reading never changes the mailbox: folders are opened with
//! `EXAMINE` (read-only), headers fetched with `BODY.PEEK`, nothing is stored, moved or
//! expunged. The one write is [`ImapReader::append`]: the copy of an email sent, saved to the
//! Sent folder (R76).
//!
//! It is not yet a [`crate::Connector`]: the wiring into observations comes next.

mod connector;
mod cursor;
mod headers;
mod reader;
mod sent;

pub use connector::{ImapConnector, remote_of};
pub use cursor::{CURSOR_HEADER, CursorError, FolderCursor, ImapCursor};
pub use headers::EmailHeaders;
pub use reader::ImapReader;

use crate::secret::Secret;
use ledgersync_domain::ErrorKind;
use std::fmt;
use std::time::Duration;

/// The default size limit of a message whose headers are read: 150 MB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 150 * 1024 * 1024;
/// The default keyword marking a message as tracked in the CRM.
pub const DEFAULT_TRACKING_KEYWORD: &str = "$CRMTracked";
/// The most folders (besides INBOX) that one mailbox may track.
pub const MAX_TRACKED_FOLDERS: usize = 25;

/// How the connection to the IMAP server is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Plain TCP, no encryption (a server on loopback, tests).
    Plain,
    /// TLS from the first byte (implicit TLS, usually port 993), checked against the
    /// system's certificate authorities.
    Tls,
}

/// Where and how the reader logs in, and what it reads.
#[derive(Clone, Debug, PartialEq)]
pub struct ImapConfig {
    /// The server's host name or address.
    pub host: String,
    /// The server's port (143, 993).
    pub port: u16,
    /// Plain or TLS.
    pub security: Security,
    /// The login name.
    pub username: String,
    /// The password, never printed.
    pub password: Secret,
    /// The longest wait for the connection and for each command.
    pub timeout: Duration,
    /// A message larger than this (its RFC822.SIZE) is reported as too large, headers unread.
    pub max_message_bytes: u64,
    /// The keyword that marks a message as tracked (`$CRMTracked`). The reader reports every
    /// keyword as it is; this one is for the connector built on it.
    pub tracking_keyword: String,
    /// The tracked folders besides INBOX, by their full name under INBOX (`INBOX/Customers`
    /// with the server's delimiter); at most [`MAX_TRACKED_FOLDERS`].
    pub folders: Vec<String>,
}

impl ImapConfig {
    /// A configuration with the defaults: TLS on port 993, 30 s timeout, 150 MB, `$CRMTracked`,
    /// INBOX only.
    pub fn new(host: impl Into<String>, username: impl Into<String>, password: Secret) -> Self {
        ImapConfig {
            host: host.into(),
            port: 993,
            security: Security::Tls,
            username: username.into(),
            password,
            timeout: Duration::from_secs(30),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tracking_keyword: DEFAULT_TRACKING_KEYWORD.to_string(),
            folders: Vec::new(),
        }
    }

    /// `host:port`, as error messages name the server.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why a read failed: a kind the engine acts on, and a message for people (it names the
/// server and the folder, never the password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// What happened and what to do about it.
    pub message: String,
}

impl ImapError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ImapError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ImapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ImapError {}

/// One folder as the server describes it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderState {
    /// The folder's full name (`INBOX`, `INBOX/Customers`, `Sent`).
    pub name: String,
    /// The RFC 8474 MAILBOXID, when the server gives one (see [`ImapReader`]).
    pub mailbox_id: Option<String>,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT: the UID the next message will get at least.
    pub uidnext: u32,
    /// HIGHESTMODSEQ, when the server has CONDSTORE.
    pub highestmodseq: Option<u64>,
    /// The special use of the folder from LIST (`\Sent`), if any.
    pub special_use: Option<String>,
}

/// One message of a tracked folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedMessage {
    /// The folder it is in.
    pub folder: String,
    /// Its UID in that folder.
    pub uid: u32,
    /// The folder's UIDVALIDITY: the UID means something only with it.
    pub uidvalidity: u32,
    /// INTERNALDATE: when the server received it, in milliseconds since the Unix epoch.
    pub internal_date_ms: i64,
    /// RFC822.SIZE in bytes.
    pub size: u64,
    /// Its flags and keywords (`\Seen`, `$CRMTracked`), as the server spells them; `\Recent`
    /// (a session flag) is left out.
    pub keywords: Vec<String>,
    /// Its header fields; `None` when the message is too large (or has no header).
    pub headers: Option<EmailHeaders>,
    /// The message is larger than [`ImapConfig::max_message_bytes`]: its headers were not read.
    pub too_large: bool,
}

/// The flags of a message read before whose flags changed since the last read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeywordChange {
    /// The folder it is in.
    pub folder: String,
    /// Its UID.
    pub uid: u32,
    /// Its flags and keywords now.
    pub keywords: Vec<String>,
}

/// What one [`ImapReader::read`] found.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ImapRead {
    /// The messages that arrived since the cursor (every message of a new or reset folder).
    pub messages: Vec<FetchedMessage>,
    /// Messages known before whose flags changed (servers with CONDSTORE only).
    pub keyword_changes: Vec<KeywordChange>,
    /// Messages known before that gained or lost the tracking keyword
    /// ([`ImapConfig::tracking_keyword`]) since the last read, read again with their headers
    /// (servers with CONDSTORE only).
    pub retracked: Vec<FetchedMessage>,
    /// Folders whose UIDVALIDITY or MAILBOXID changed: every message of theirs is in
    /// `messages` again, and what was known of them before is void.
    pub resets: Vec<String>,
    /// The folder the server marks `\Sent`, when there is one (it is read with the others).
    pub sent: Option<String>,
    /// Where the next read starts.
    pub cursor: ImapCursor,
}
