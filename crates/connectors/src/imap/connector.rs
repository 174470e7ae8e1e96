//! The incoming-email connector: an [`ImapReader`] behind the [`Connector`] contract.
//!
//! A listing reads every tracked folder from the cursor and reports each new message as an
//! `email_received` (workload `incoming`), with its headers, folder, size and whether it
//! carries the tracking keyword (tracked by hand, R56). A message read before whose tracking
//! keyword was added or removed since (CONDSTORE) is reported again as it is now, under the
//! same server id: the mailbox tracks it (R56) or untracks it (R73). The facts its decision needs are looked
//! up by the engine before it is recorded (decision 0018): the connector leaves them empty. A
//! folder whose UIDVALIDITY changed is reported as a `cursor_reset` before its messages are
//! reported again (their server ids stay those of the new UIDVALIDITY, and the mailbox decides
//! only what it did not decide yet). A message over the size limit is an item failure
//! (`too_large`, R12) and nothing else is lost. A failed read is `listing_failed` and the
//! cursor stays. The connector carries out no intent.

use super::{FetchedMessage, ImapConfig, ImapCursor, ImapError, ImapReader};
use crate::connector::{
    Connector, Cursor, Intent, ItemFailure, Listing, ListingEnd, Observation, Outcome,
};
use ledgersync_domain::ErrorKind;
use ledgersync_domain::email::Manual;
use ledgersync_domain::event::{
    CursorReset, EmailFacts, EmailFolder, EmailReceived, ListingCompleted, ServerError, Workload,
};
use ledgersync_domain::{RemoteId, Timestamp};

/// Reads the incoming email of one mailbox from its IMAP server.
pub struct ImapConnector {
    config: ImapConfig,
    reader: Option<ImapReader>,
}

impl std::fmt::Debug for ImapConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapConnector")
            .field("server", &self.config.server())
            .field("username", &self.config.username)
            .finish()
    }
}

/// The server id of a message: its folder, the folder's UIDVALIDITY and its UID.
pub fn remote_of(folder: &str, uidvalidity: u32, uid: u32) -> RemoteId {
    RemoteId::new(format!("{folder}/{uidvalidity}/{uid}"))
}

impl ImapConnector {
    /// A connector for `config`; it connects at its first listing.
    pub fn new(config: ImapConfig) -> Self {
        Self {
            config,
            reader: None,
        }
    }

    fn read(&mut self, cursor: &ImapCursor) -> Result<super::ImapRead, ImapError> {
        if self.reader.is_none() {
            self.reader = Some(ImapReader::connect(&self.config)?);
        }
        let reader = self.reader.as_mut().expect("connected above");
        let read = reader.read(cursor);
        if read.is_err() {
            // A session that failed is not used again: the next listing connects afresh.
            self.reader = None;
        }
        read
    }

    fn folder_of(&self, name: &str, sent: Option<&str>) -> EmailFolder {
        if name.eq_ignore_ascii_case("INBOX") {
            EmailFolder::Inbox
        } else if sent == Some(name) {
            EmailFolder::Sent
        } else if self.config.folders.iter().any(|f| f == name) {
            EmailFolder::Tracked(name.to_string())
        } else {
            EmailFolder::Other(name.to_string())
        }
    }

    fn received(&self, m: &FetchedMessage, sent: Option<&str>) -> EmailReceived {
        let h = m.headers.clone().unwrap_or_default();
        let tracked = m
            .keywords
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&self.config.tracking_keyword));
        EmailReceived {
            remote: remote_of(&m.folder, m.uidvalidity, m.uid),
            message_id: h.message_id.unwrap_or_default(),
            subject: h.subject.unwrap_or_default(),
            from: h.from.unwrap_or_default(),
            to: h.to,
            in_reply_to: h.in_reply_to,
            references: h.references,
            thread_index: h.thread_index,
            cc: h.cc,
            bcc: h.bcc,
            received: Timestamp(m.internal_date_ms),
            irm_protected: false,
            folder: self.folder_of(&m.folder, sent),
            manual: tracked.then_some(Manual::Category),
            size: m.size,
            facts: EmailFacts::default(),
        }
    }
}

fn failed(cursor: &Cursor, kind: ErrorKind, message: String) -> Listing {
    Listing::failed(
        Workload::Incoming,
        cursor,
        ServerError::of_kind(kind, message),
    )
}

impl Connector for ImapConnector {
    fn list_changes(&mut self, cursor: &Cursor) -> Listing {
        let known = if cursor.is_initial() {
            ImapCursor::default()
        } else {
            match ImapCursor::from_text(cursor.as_str()) {
                Ok(c) => c,
                Err(e) => {
                    return failed(
                        cursor,
                        ErrorKind::CursorInvalid,
                        format!("the stored IMAP cursor cannot be read ({e})"),
                    );
                }
            }
        };
        let read = match self.read(&known) {
            Ok(read) => read,
            Err(e) => return failed(cursor, e.kind, e.message),
        };
        let sent = read.sent.as_deref();
        let mut observations = Vec::new();
        let mut failures = Vec::new();
        for folder in &read.resets {
            observations.push(Observation::CursorReset(CursorReset {
                workload: Workload::Incoming,
                reason: format!(
                    "the folder {folder} has a new UIDVALIDITY (deleted and created again): its messages are read again"
                ),
            }));
        }
        let mut items = 0u32;
        for m in &read.messages {
            if m.too_large {
                failures.push(ItemFailure {
                    item: remote_of(&m.folder, m.uidvalidity, m.uid).to_string(),
                    entity: None,
                    kind: ErrorKind::TooLarge,
                    error: format!(
                        "the message of {} bytes in {} is larger than the limit of {} bytes \
                         (email_max_message_mib); it is not read, the other messages are",
                        m.size, m.folder, self.config.max_message_bytes
                    ),
                });
                continue;
            }
            items += 1;
            observations.push(Observation::Email(Box::new(self.received(m, sent))));
        }
        // Messages read before that gained or lost the tracking keyword: observed again as
        // they are now (R56 tracks one that gained it; R73 untracks one that lost it).
        for m in read.retracked.iter().filter(|m| !m.too_large) {
            items += 1;
            observations.push(Observation::Email(Box::new(self.received(m, sent))));
        }
        Listing {
            observations,
            end: ListingEnd::Completed(ListingCompleted {
                workload: Workload::Incoming,
                items,
            }),
            failures,
            cursor: Cursor::from_text(read.cursor.to_text()),
        }
    }

    fn workload(&self) -> Workload {
        Workload::Incoming
    }

    /// Test & Enable of the incoming workload: logs in and finds INBOX, the tracked folders and
    /// the `\Sent` folder, reading no message.
    fn test_connection(&mut self) -> Result<String, ServerError> {
        let found = ImapReader::connect(&self.config).and_then(|mut reader| {
            let folders = reader.folders()?;
            Ok((folders, reader.has_condstore(), reader.has_idle()))
        });
        match found {
            Ok((folders, condstore, idle)) => {
                let names: Vec<&str> = folders.iter().map(|f| f.name.as_str()).collect();
                Ok(format!(
                    "{} folder(s) read at {}: {}; CONDSTORE {}, IDLE {}",
                    names.len(),
                    self.config.server(),
                    names.join(", "),
                    if condstore {
                        "yes"
                    } else {
                        "no (keyword changes are not seen)"
                    },
                    if idle {
                        "yes"
                    } else {
                        "no (read at intervals only)"
                    },
                ))
            }
            Err(e) => Err(ServerError::of_kind(e.kind, e.message)),
        }
    }

    fn execute(&mut self, intent: Intent<'_>) -> Outcome {
        Outcome::unsupported(
            intent.id,
            "the IMAP connector reads incoming email; it carries out no intent",
        )
    }
}
