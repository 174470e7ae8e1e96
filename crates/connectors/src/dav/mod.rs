//! The CalDAV (RFC 4791) and CardDAV (RFC 6352) backend: a calendar, a task list and an
//! address book on a groupware server, listed with RFC 6578 `sync-collection` and written with
//! ETag preconditions.
//!
//! | file | what lives there |
//! |---|---|
//! | `mod.rs` | [`DavConfig`], [`Secret`], [`DavConnector`] and its [`Connector`] calls |
//! | `http.rs` | the blocking HTTP client, statuses → [`ErrorKind`] |
//! | `xml.rs` | request bodies and the namespace-aware reading of `multistatus` answers |
//! | `discovery.rs` | well-known URLs, principal, homes, collections |
//! | `cursor.rs` | the cursor: per collection its href, sync token and known items |
//! | `listing.rs` | sync-collection, the ETag fallback, multiget, the mass-delete guard |
//! | `writes.rs` | create (`If-None-Match: *`), update (`If-Match`), delete, cancel |
//!
//! # Cursor states
//!
//! The cursor holds, per collection, its href, the sync token of its last complete listing
//! and every known item (`href → ETag`). With a token, a listing asks only for the changes
//! since it (a delta: `404` members are removed); with an empty token, or when the server
//! refuses the token (any answer but 207: Radicale 403, Xandikos 412 or 500) or has no
//! sync-collection, it reads every member's ETag (`PROPFIND Depth: 1`) and compares with the
//! known items: only what differs is reported, matched by href, never as delete + create.
//!
//! A server id is the item's href path (`/alice/work/x.ics`); its version tag is the ETag as
//! the server returned it; its content hash is the FNV-1a 64 of the body, as the vdir backend
//! computes it.

mod cursor;
mod discovery;
mod http;
mod listing;
mod writes;
mod xml;

use crate::compose;
use crate::connector::{
    BeforeWrite, Connector, Cursor, Intent, IntentCall, Listing, Outcome, WriteHook,
};
use crate::delivery::MeetingDelivery;
use crate::imip::Meeting;
use crate::smtp::SmtpConfig;
use crate::vdir::DEFAULT_TRACKING_CATEGORY;
use http::{DavError, Http, Tls};
use reqwest::Url;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// A password: never printed (`Debug` and `Display` write `[redacted]`), never part of an
/// error. One type for every password of the crate (`secret.rs`).
pub use crate::secret::Secret;

/// Where the DAV connector reads and writes, and its limits.
#[derive(Clone, Debug, PartialEq)]
pub struct DavConfig {
    /// The mailbox owner's address: the organizer of an item that names none.
    pub owner: String,
    /// The server URL (`http://127.0.0.1:5232/`): discovery starts here.
    pub server: String,
    /// The account's user name.
    pub username: String,
    /// The account's password.
    pub password: Secret,
    /// The calendar (appointments): an absolute URL, a path, or a display name. `None`: the
    /// first calendar that accepts VEVENT.
    pub calendar: Option<String>,
    /// The task list (VTODO), given like `calendar`. `None`: the calendar, when it accepts
    /// VTODO.
    pub tasks: Option<String>,
    /// The address book, given like `calendar`. `None`: the first address book.
    pub address_book: Option<String>,
    /// The `CATEGORIES` value that marks an item as tracked (default `Tracked to CRM`).
    pub tracking_category: String,
    /// The mailbox owner's zone (floating times, all-day dates). `None`: UTC.
    pub timezone: Option<chrono_tz::Tz>,
    /// The largest item read, in bytes: a larger one is an item failure `too_large`.
    pub max_item_bytes: u64,
    /// The time one request may take (connect and answer), default 30 s.
    pub timeout: Duration,
    /// The hrefs asked per `calendar-multiget` / `addressbook-multiget`, default 100.
    pub multiget_batch: usize,
    /// The directory of Maildirs that receives invitations and cancellations (iMIP), as the
    /// vdir backend delivers them, when no `smtp` is set. `None` (and no `smtp`): the write
    /// alone is done, a cancellation fails.
    pub maildirs: Option<PathBuf>,
    /// A PEM file of certificate authorities trusted besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    /// The SMTP server that invitations and cancellations are sent through; it takes
    /// precedence over `maildirs`.
    pub smtp: Option<SmtpConfig>,
}

impl DavConfig {
    /// A configuration with the defaults, the collections to discover.
    pub fn new(
        owner: impl Into<String>,
        server: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<Secret>,
    ) -> Self {
        Self {
            owner: owner.into(),
            server: server.into(),
            username: username.into(),
            password: password.into(),
            calendar: None,
            tasks: None,
            address_book: None,
            tracking_category: DEFAULT_TRACKING_CATEGORY.to_string(),
            timezone: None,
            max_item_bytes: 4 << 20,
            timeout: Duration::from_secs(30),
            multiget_batch: 100,
            maildirs: None,
            ca_file: None,
            smtp: None,
        }
    }

    /// How meeting messages are delivered: over `smtp` when set, else into `maildirs`.
    pub fn meeting_delivery(&self) -> Option<MeetingDelivery> {
        match (&self.smtp, &self.maildirs) {
            (Some(smtp), _) => Some(MeetingDelivery::Smtp(smtp.clone())),
            (None, Some(dir)) => Some(MeetingDelivery::Maildir(dir.clone())),
            (None, None) => None,
        }
    }
}

/// The collections a connector syncs, as discovered or configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) calendar: Option<Url>,
    pub(crate) tasks: Option<Url>,
    pub(crate) contacts: Option<Url>,
}

impl Resolved {
    /// Each collection once, with whether it holds calendar objects (else vCards).
    pub(crate) fn collections(&self) -> Vec<(Url, bool)> {
        let mut out: Vec<(Url, bool)> = Vec::new();
        for (url, calendar) in [
            (&self.calendar, true),
            (&self.tasks, true),
            (&self.contacts, false),
        ] {
            if let Some(url) = url
                && !out.iter().any(|(u, _)| u == url)
            {
                out.push((url.clone(), calendar));
            }
        }
        out
    }
}

/// The CalDAV + CardDAV connector (see the module doc and [`Connector`]).
pub struct DavConnector {
    pub(crate) config: DavConfig,
    /// Built on the first call (where blocking is allowed), never in `new`.
    http: OnceLock<Result<Http, DavError>>,
    pub(crate) resolved: Option<Resolved>,
    pub(crate) before_write: WriteHook,
    /// The meetings of items this connector deleted, by row id and by href: a cancellation
    /// carried out after the delete reads its UID here (for the connector's life only).
    pub(crate) deleted: HashMap<String, Meeting>,
}

impl fmt::Debug for DavConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DavConnector")
            .field("config", &self.config)
            .field("resolved", &self.resolved)
            .finish_non_exhaustive()
    }
}

impl DavConnector {
    /// A connector for the configured account. Nothing is sent, and no HTTP client built,
    /// until a call: [`Connector::list_changes`] and [`Connector::execute`] block, so call them
    /// where blocking is allowed (the runtime's blocking pool), never inside an async task.
    pub fn new(config: DavConfig) -> Self {
        Self {
            http: OnceLock::new(),
            config,
            resolved: None,
            before_write: WriteHook::default(),
            deleted: HashMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DavConfig {
        &self.config
    }

    /// Sets a hook an update calls with the item's server id after reading the item and
    /// before writing it back: for tests of the ETag precondition, which play another client
    /// editing the item in that window.
    #[doc(hidden)]
    pub fn set_before_write(&mut self, hook: Option<BeforeWrite>) {
        self.before_write = WriteHook::new(hook);
    }

    pub(crate) fn http(&self) -> Result<&Http, DavError> {
        let c = &self.config;
        self.http
            .get_or_init(|| {
                Http::new(
                    &c.username,
                    &c.password,
                    c.timeout,
                    Tls::of(&c.server, c.ca_file.as_deref()),
                )
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The mailbox a write goes to: its owner's address and zone.
    pub(crate) fn mailbox(&self) -> compose::Mailbox<'_> {
        compose::Mailbox {
            owner: &self.config.owner,
            zone: self.config.timezone,
        }
    }
}

impl Connector for DavConnector {
    fn list_changes(&mut self, cursor: &Cursor) -> Listing {
        self.list(cursor)
    }

    fn execute(&mut self, intent: Intent<'_>) -> Outcome {
        self.carry_out(intent)
    }

    fn remember(&self, cursor: &Cursor, intent: IntentCall<'_>, outcome: &Outcome) -> Cursor {
        cursor::remember(cursor, intent, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_printed() {
        let config = DavConfig::new(
            "paul@serenity.example",
            "http://127.0.0.1:5232/",
            "paul",
            "hunter2",
        );
        let connector = DavConnector::new(config.clone());
        for text in [
            format!("{config:?}"),
            format!("{connector:?}"),
            format!("{}", config.password),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
        }
        assert_eq!(config.password.expose(), "hunter2");
    }
}
