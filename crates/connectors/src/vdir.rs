//! The local vdir backend: listing a calendar and an address book.
//!
//! A vdir collection is a directory with one item per file: `.ics` files (one VEVENT or VTODO
//! each, with its overrides) in a calendar, `.vcf` files in an address book. Names starting
//! with `.` are not items (the vdir convention), so the connector keeps its own files under
//! `<collection>/.ledgersync/`: `tmp/` for atomic writes and `deleted/` for the items it deleted
//! (kept so that a cancellation executed after the delete can still read the meeting's UID).
//!
//! An item's server id is `<collection>/<file name>` (`calendar/x.ics`, `contacts/y.vcf`); its
//! version tag is `<mtime in ns>-<FNV-1a 64 of the bytes>`, and `content_hash` is the hash.
//!
//! # Missing items (R25)
//!
//! An `item_gone` is reported only in a listing that ends with `listing_completed`, and only for
//! an item of the cursor whose file is missing while its directory was read in full. Whether
//! the missing items of a collection are reported gone is not this connector's decision: it
//! counts what it listed (known, present, missing, read in full or not) and asks the domain's
//! guard, [`ledgersync_domain::policy::mass_delete::missing_items`]: missing items of a
//! collection not read in full are withheld (the listing ends with `listing_partial` naming
//! the reason, and they stay known in the cursor). A collection that could not be read at all
//! (missing, not a directory, unreadable) keeps its items known too.
//!
//! How many deletes are too many is not decided here either: a complete listing reports
//! `deletions_listed` with every server id it reports gone, then an `item_gone` each, and the
//! domain's delete breaker weighs them (an emptied collection included, see
//! `docs/decisions/0016-delete-breaker.md`).
//!
//! # Errors
//!
//! Failures are reported as an [`ErrorKind`] (see `docs/connectors.md`, "Error vocabulary"):
//! a missing directory or file is `not_found`, a permission error `forbidden`, another I/O
//! error `network`; the domain decides what each means.

use crate::connector::{
    BeforeWrite, Connector, Cursor, Intent, IntentCall, ItemFailure, Listing, ListingEnd,
    Observation, Outcome, WriteHook,
};
use crate::delivery::MeetingDelivery;
use crate::fsutil;
use crate::hash::fnv1a64;
use crate::parse;
use crate::smtp::SmtpConfig;
use ledgersync_domain::event::{
    DeletionsListed, ItemGone, ItemSeen, ListingCompleted, ListingPartial, RemoteItem, ServerError,
    Workload,
};
use ledgersync_domain::policy::mass_delete::{self, CollectionListing, Verdict};
use ledgersync_domain::records::Entity;
use ledgersync_domain::{ErrorKind, RemoteId};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// The default tracking category (`CATEGORIES` value), as in ARCHITECTURE §6.
pub const DEFAULT_TRACKING_CATEGORY: &str = "Tracked to CRM";

/// Where the vdir connector reads and writes, and its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VdirConfig {
    /// The calendar collection (`.ics` files): appointments and tasks. `None`: not synced.
    pub calendar: Option<PathBuf>,
    /// The address-book collection (`.vcf` files): contacts. `None`: not synced.
    pub address_book: Option<PathBuf>,
    /// The directory of Maildirs, one per attendee address (`<dir>/<address>/{tmp,new,cur}`),
    /// that receives meeting invitations and cancellations when no `smtp` is set. `None` (and
    /// no `smtp`): cancellations fail, invitations are not sent.
    pub maildirs: Option<PathBuf>,
    /// The SMTP server that meeting invitations and cancellations are sent through; it takes
    /// precedence over `maildirs`.
    pub smtp: Option<SmtpConfig>,
    /// The mailbox owner's address: the organizer of a cancellation when the item names none.
    pub owner: String,
    /// The `CATEGORIES` value that marks an item as tracked (default `Tracked to CRM`).
    pub tracking_category: String,
    /// The mailbox owner's time zone: floating times and dates of items are read in it, and an
    /// all-day appointment is written on its date there. `None`: UTC.
    pub timezone: Option<chrono_tz::Tz>,
    /// The largest item file read, in bytes (`[limits] max_item_bytes`): a larger one is an
    /// item failure of kind `too_large`, judged by its size and never read.
    pub max_item_bytes: u64,
}

impl VdirConfig {
    /// A configuration with the defaults and no collection.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            calendar: None,
            address_book: None,
            maildirs: None,
            smtp: None,
            owner: owner.into(),
            tracking_category: DEFAULT_TRACKING_CATEGORY.to_string(),
            timezone: None,
            max_item_bytes: ledgersync_domain::Limits::default().max_item_bytes,
        }
    }
}

impl VdirConfig {
    /// How meeting messages are delivered: over `smtp` when set, else into `maildirs`.
    pub fn meeting_delivery(&self) -> Option<MeetingDelivery> {
        match (&self.smtp, &self.maildirs) {
            (Some(smtp), _) => Some(MeetingDelivery::Smtp(smtp.clone())),
            (None, Some(dir)) => Some(MeetingDelivery::Maildir(dir.clone())),
            (None, None) => None,
        }
    }
}

/// Which collection an item lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// `calendar/…​.ics`.
    Calendar,
    /// `contacts/…​.vcf`.
    Contacts,
}

impl Kind {
    pub(crate) const ALL: [Kind; 2] = [Kind::Calendar, Kind::Contacts];
    /// The prefix of server ids.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Calendar => "calendar",
            Kind::Contacts => "contacts",
        }
    }
    /// The file extension of items.
    pub(crate) fn ext(self) -> &'static str {
        match self {
            Kind::Calendar => "ics",
            Kind::Contacts => "vcf",
        }
    }
    /// The table an item of this collection maps to, when the collection alone tells: a
    /// calendar holds events and to-dos alike.
    pub(crate) fn entity(self) -> Option<Entity> {
        match self {
            Kind::Calendar => None,
            Kind::Contacts => Some(Entity::Contact),
        }
    }
    fn of_remote(remote: &str) -> Option<(Kind, &str)> {
        let (prefix, file) = remote.split_once('/')?;
        let kind = Kind::ALL.into_iter().find(|k| k.name() == prefix)?;
        valid_file_name(file, kind).then_some((kind, file))
    }
}

/// True for a file name the connector treats as an item of `kind`: not hidden, no path
/// separator, the collection's extension.
pub(crate) fn valid_file_name(file: &str, kind: Kind) -> bool {
    !file.starts_with('.')
        && !file.contains(['/', '\\', '\0'])
        && file
            .rsplit_once('.')
            .is_some_and(|(stem, ext)| !stem.is_empty() && ext.eq_ignore_ascii_case(kind.ext()))
}

/// The version a cursor gives an item the connector created and no listing has seen yet
/// (never a real etag, which is `<mtime>-<hash>`).
const UNLISTED: &str = "unlisted";

/// The vdir + Maildir connector (see the module doc and [`Connector`]).
#[derive(Clone, Debug)]
pub struct VdirConnector {
    pub(crate) config: VdirConfig,
    pub(crate) before_write: WriteHook,
}

impl VdirConnector {
    /// A connector over the configured directories. Nothing is read or created until a call.
    pub fn new(config: VdirConfig) -> Self {
        Self {
            config,
            before_write: WriteHook::default(),
        }
    }

    /// Sets a hook an update calls with the item's server id after reading the item and
    /// before writing it back: for tests of the write precondition, which play another
    /// program editing the file in that window.
    #[doc(hidden)]
    pub fn set_before_write(&mut self, hook: Option<BeforeWrite>) {
        self.before_write = WriteHook::new(hook);
    }

    /// The configuration.
    pub fn config(&self) -> &VdirConfig {
        &self.config
    }

    /// The directory of a collection, when configured.
    pub(crate) fn dir(&self, kind: Kind) -> Option<&Path> {
        match kind {
            Kind::Calendar => self.config.calendar.as_deref(),
            Kind::Contacts => self.config.address_book.as_deref(),
        }
    }

    /// The path of an item from its server id, when the id names a configured collection.
    pub(crate) fn path_of(&self, remote: &str) -> Option<(Kind, PathBuf)> {
        let (kind, file) = Kind::of_remote(remote)?;
        Some((kind, self.dir(kind)?.join(file)))
    }

    /// Reads one item file: its version tag, hash and parsed fields.
    /// A file larger than [`VdirConfig::max_item_bytes`] is not read: the error is of kind
    /// [`io::ErrorKind::FileTooLarge`].
    pub(crate) fn read_item(&self, kind: Kind, path: &Path) -> io::Result<FileState> {
        // Never through a symbolic link: nothing outside the collection is read; never more
        // than the item limit in memory.
        let max = self.config.max_item_bytes;
        let (bytes, meta) = fsutil::read_regular_within(path, max, |len| too_large(len, max))?;
        let mtime = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let hash = fnv1a64(&bytes);
        let etag = format!("{mtime}-{hash:016x}");
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|e| format!("not UTF-8 text (byte {})", e.valid_up_to() + 1))
            .and_then(|text| {
                // A file is the user's input: a panic of the parser on it is an item failure,
                // never a crash of the mailbox.
                let category = self.config.tracking_category.as_str();
                let zone = self.config.timezone;
                std::panic::catch_unwind(|| match kind {
                    Kind::Calendar => parse::calendar(text, category, zone),
                    Kind::Contacts => parse::card(text, category),
                })
                .unwrap_or_else(|_| Err("the parser failed on this file".to_string()))
            });
        Ok(FileState { etag, hash, parsed })
    }

    fn list(&self, cursor: &Cursor) -> Listing {
        let known = match decode_cursor(cursor) {
            Ok(known) => known,
            Err(message) => return failed_listing(cursor, ErrorKind::CursorInvalid, message),
        };
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| self.dir(*k).is_some())
            .collect();
        if kinds.is_empty() {
            return failed_listing(
                cursor,
                ErrorKind::Unsupported,
                "no vdir collection is configured: set a calendar or an address-book directory",
            );
        }
        let mut next: BTreeMap<String, String> = BTreeMap::new();
        let mut seen = Vec::new();
        let mut gone = Vec::new();
        let mut failures = Vec::new();
        let mut partial: Vec<String> = Vec::new();
        let mut unreadable: Vec<(String, io::Error)> = Vec::new();
        // Items of the cursor in collections no longer configured stay known.
        for (remote, etag) in &known {
            if Kind::of_remote(remote).is_none_or(|(k, _)| !kinds.contains(&k)) {
                next.insert(remote.clone(), etag.clone());
            }
        }
        for kind in kinds {
            let dir = self.dir(kind).expect("configured");
            let known_here: BTreeMap<&String, &String> = known
                .iter()
                .filter(|(r, _)| Kind::of_remote(r).is_some_and(|(k, _)| k == kind))
                .collect();
            let keep_known = |next: &mut BTreeMap<String, String>| {
                for (r, e) in &known_here {
                    next.entry((*r).clone()).or_insert_with(|| (*e).clone());
                }
            };
            let entries = match fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) => {
                    unreadable.push((format!("{} ({})", kind.name(), dir.display()), e));
                    keep_known(&mut next);
                    continue;
                }
            };
            let mut present: BTreeSet<String> = BTreeSet::new();
            let mut complete = true;
            let mut files: Vec<(String, PathBuf)> = Vec::new();
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        complete = false;
                        partial.push(format!(
                            "{}: an entry could not be read ({e})",
                            dir.display()
                        ));
                        continue;
                    }
                };
                let Some(file) = entry.file_name().to_str().map(str::to_string) else {
                    failures.push(ItemFailure {
                        item: format!("{}/{}", kind.name(), entry.file_name().to_string_lossy()),
                        entity: kind.entity(),
                        kind: ErrorKind::Malformed,
                        error: "the file name is not UTF-8; rename the file".into(),
                    });
                    continue;
                };
                if !valid_file_name(&file, kind) {
                    continue;
                }
                // `DirEntry::file_type` does not follow links.
                match entry.file_type() {
                    Ok(t) if t.is_symlink() => {
                        let remote = format!("{}/{file}", kind.name());
                        // There, though refused: an item known before stays known, never gone.
                        present.insert(remote.clone());
                        if let Some(etag) = known_here.get(&remote) {
                            next.insert(remote.clone(), (*etag).clone());
                        }
                        failures.push(ItemFailure {
                            item: remote,
                            entity: kind.entity(),
                            kind: ErrorKind::Forbidden,
                            error: format!("{} {}", entry.path().display(), fsutil::LINK_REFUSED),
                        });
                    }
                    Ok(t) if t.is_file() => files.push((file, entry.path())),
                    _ => {}
                }
            }
            // Name order: the same directory always lists the same way.
            files.sort();
            for (file, path) in files {
                let remote = format!("{}/{file}", kind.name());
                present.insert(remote.clone());
                match self.read_item(kind, &path) {
                    // Replaced by a link since the directory was read: refused all the same.
                    Err(e)
                        if e.kind() == io::ErrorKind::PermissionDenied
                            && fsutil::is_link(&path) =>
                    {
                        failures.push(ItemFailure {
                            item: remote.clone(),
                            entity: kind.entity(),
                            kind: ErrorKind::Forbidden,
                            error: format!("{} {}", path.display(), fsutil::LINK_REFUSED),
                        });
                        if let Some(etag) = known_here.get(&remote) {
                            next.insert(remote.clone(), (*etag).clone());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                        failures.push(ItemFailure {
                            item: remote.clone(),
                            entity: kind.entity(),
                            kind: ErrorKind::TooLarge,
                            error: format!(
                                "{e}; {} was not read: shrink or remove it, or raise the limit",
                                path.display()
                            ),
                        });
                        // Known before: stays known with its old version, never gone.
                        if let Some(etag) = known_here.get(&remote) {
                            next.insert(remote.clone(), (*etag).clone());
                        }
                    }
                    Err(e) => {
                        complete = false;
                        partial.push(format!("{remote} could not be read ({e})"));
                        if let Some(etag) = known_here.get(&remote) {
                            next.insert(remote.clone(), (*etag).clone());
                        }
                    }
                    Ok(FileState {
                        parsed: Err(error), ..
                    }) => {
                        failures.push(ItemFailure {
                            item: remote.clone(),
                            entity: kind.entity(),
                            kind: ErrorKind::Malformed,
                            error: format!("{error}; fix or remove {}", path.display()),
                        });
                        // Known before: stays known with its old version, never gone.
                        if let Some(etag) = known_here.get(&remote) {
                            next.insert(remote.clone(), (*etag).clone());
                        }
                    }
                    Ok(FileState {
                        etag,
                        hash,
                        parsed: Ok(parsed),
                    }) => {
                        if known_here.get(&remote).map(|e| e.as_str()) != Some(etag.as_str()) {
                            seen.push(Observation::Seen(ItemSeen {
                                item: RemoteItem {
                                    remote: RemoteId::new(remote.clone()),
                                    etag: etag.clone(),
                                    content_hash: hash,
                                    tracked: parsed.tracked,
                                    copy_of: None,
                                    fields: parsed.fields,
                                },
                            }));
                        }
                        next.insert(remote, etag);
                    }
                }
            }
            let missing: Vec<&String> = known_here
                .keys()
                .filter(|r| !present.contains(r.as_str()))
                .copied()
                .collect();
            if missing.is_empty() {
                continue;
            }
            let listing = CollectionListing {
                known: known_here.len(),
                present: present.len(),
                missing: missing.len(),
                complete,
            };
            match mass_delete::missing_items(&listing) {
                // The collection's incompleteness is already a reason of the partial listing.
                Verdict::Withhold(_) => {
                    for r in missing {
                        next.insert(r.clone(), known_here[r].clone());
                    }
                }
                Verdict::Confirm => gone.extend(missing.into_iter().cloned()),
            }
        }
        let configured = Kind::ALL.iter().filter(|k| self.dir(**k).is_some()).count();
        if unreadable.len() == configured {
            let kind = unreadable
                .iter()
                .map(|(_, e)| io_kind(e))
                .next()
                .unwrap_or(ErrorKind::Network);
            let message = unreadable
                .iter()
                .map(|(what, e)| format!("{what}: {e}"))
                .collect::<Vec<_>>()
                .join("; ");
            return failed_listing(
                cursor,
                kind,
                format!("no collection could be listed: {message}; check the configured paths"),
            );
        }
        for (what, e) in &unreadable {
            partial.push(format!("{what} could not be listed ({e})"));
        }
        let mut observations = seen;
        let end = if partial.is_empty() {
            // The cycle's deletes, listed before their `item_gone`s: the domain's delete
            // breaker weighs them together (R25).
            if !gone.is_empty() {
                observations.push(Observation::DeletionsListed(DeletionsListed {
                    workload: Workload::Act,
                    remotes: gone.iter().cloned().map(RemoteId::new).collect(),
                }));
            }
            for remote in gone {
                next.remove(&remote);
                observations.push(Observation::Gone(ItemGone {
                    remote: RemoteId::new(remote),
                }));
            }
            // The changes this listing found (what `listing_completed.items` means): a calendar
            // that did not change is a quiet one, whose cadence stretches (R9).
            let changes = observations
                .iter()
                .filter(|e| !matches!(e, Observation::DeletionsListed(_)))
                .count() as u32;
            ListingEnd::Completed(ListingCompleted {
                workload: Workload::Act,
                items: changes,
            })
        } else {
            // Deletes of a partial listing are withheld too: the items stay known.
            for remote in gone {
                let etag = known[&remote].clone();
                next.insert(remote, etag);
            }
            ListingEnd::Partial(ListingPartial {
                workload: Workload::Act,
                reason: partial.join("; "),
            })
        };
        Listing {
            observations,
            end,
            failures,
            cursor: encode_cursor(&next),
        }
    }
}

impl Connector for VdirConnector {
    fn list_changes(&mut self, cursor: &Cursor) -> Listing {
        self.list(cursor)
    }

    fn remember(&self, cursor: &Cursor, intent: IntentCall<'_>, outcome: &Outcome) -> Cursor {
        let Outcome::Succeeded(done) = outcome else {
            return cursor.clone();
        };
        let Some(remote) = &done.remote else {
            return cursor.clone();
        };
        // A cursor that does not decode stays as it is: the next listing resets it.
        let Ok(mut known) = decode_cursor(cursor) else {
            return cursor.clone();
        };
        if Kind::of_remote(&remote.0).is_none() {
            // Not a collection item (a cancellation message in a Maildir).
            return cursor.clone();
        }
        // Only a create: the item becomes known as written but never listed, with a version
        // no file has, so the next listing still reports it (`item_seen`, the first sighting
        // that records its content) — or reports it gone if someone deleted it meanwhile. An
        // update or a delete is left to the listing, which already knows the item.
        if !matches!(intent, IntentCall::Create(_)) || known.contains_key(&remote.0) {
            return cursor.clone();
        }
        known.insert(remote.0.clone(), UNLISTED.to_string());
        encode_cursor(&known)
    }

    fn execute(&mut self, intent: Intent<'_>) -> Outcome {
        self.carry_out(intent)
    }
}

/// One item file as read.
pub(crate) struct FileState {
    pub(crate) etag: String,
    pub(crate) hash: u64,
    pub(crate) parsed: Result<parse::Parsed, String>,
}

/// The kind of an I/O error (what happened; the domain's `classify` decides what it means).
fn too_large(len: u64, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!(
            "the item is {len} bytes, more than the limit of {max} (max_item_bytes in the \
             [limits] table of the configuration)"
        ),
    )
}

pub(crate) fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
        io::ErrorKind::TimedOut => ErrorKind::Timeout,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::Quota,
        io::ErrorKind::FileTooLarge => ErrorKind::TooLarge,
        _ => ErrorKind::Network,
    }
}

fn failed_listing(cursor: &Cursor, kind: ErrorKind, message: impl Into<String>) -> Listing {
    Listing::failed(Workload::Act, cursor, ServerError::of_kind(kind, message))
}

/// Cursor text: one `<server id>\t<version tag>` line per known item, sorted.
fn encode_cursor(known: &BTreeMap<String, String>) -> Cursor {
    let mut text = String::new();
    for (remote, etag) in known {
        text.push_str(remote);
        text.push('\t');
        text.push_str(etag);
        text.push('\n');
    }
    Cursor::from_text(text)
}

fn decode_cursor(cursor: &Cursor) -> Result<BTreeMap<String, String>, String> {
    let mut known = BTreeMap::new();
    for (n, line) in cursor.as_str().lines().enumerate() {
        let Some((remote, etag)) = line.split_once('\t') else {
            return Err(format!(
                "the cursor is not a vdir cursor (line {}: `{line}`); start again from the \
                 initial cursor (a cursor reset)",
                n + 1
            ));
        };
        known.insert(remote.to_string(), etag.to_string());
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_garbage() {
        let mut m = BTreeMap::new();
        m.insert("calendar/a.ics".to_string(), "1-00".to_string());
        m.insert("contacts/b.vcf".to_string(), "2-ff".to_string());
        assert_eq!(decode_cursor(&encode_cursor(&m)), Ok(m));
        assert!(decode_cursor(&Cursor::from_text("garbage")).is_err());
    }

    #[test]
    fn file_names() {
        assert!(valid_file_name("a.ics", Kind::Calendar));
        assert!(valid_file_name("A.ICS", Kind::Calendar));
        assert!(!valid_file_name(".hidden.ics", Kind::Calendar));
        assert!(!valid_file_name("a.vcf", Kind::Calendar));
        assert!(!valid_file_name(".ics", Kind::Calendar));
        assert_eq!(
            Kind::of_remote("contacts/x.vcf"),
            Some((Kind::Contacts, "x.vcf"))
        );
        assert_eq!(Kind::of_remote("calendar/../x.ics"), None);
    }
}
