//! Carrying out intents on the vdir: create, update and delete of item files, and dispatch of
//! cancellations to the Maildir side.
//!
//! Idempotency by key: the file of a created item is named `<record>-<FNV-1a of the create's
//! key>.<ext>`, so a retried create finds its file and writes nothing; an update or delete
//! without a server id (decided before the create's outcome) finds the file by the record part
//! of the name.

use crate::compose;
use crate::connector::{Intent, IntentCall, Outcome, failed, succeeded};
use crate::fsutil;
use crate::hash::fnv1a64;
use crate::vdir::{FileState, Kind, VdirConnector, io_kind, valid_file_name};
use ledgersync_domain::event::{CreateIntent, DeleteIntent, ItemWrite, Side, UpdateIntent};
use ledgersync_domain::records::{Record, RecordBody};
use ledgersync_domain::{ErrorKind, EventId, RecordId, RemoteId};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The error code of an intent this connector cannot carry out by design (wrong side, missing
/// configuration or context): the code of [`ErrorKind::Unsupported`], permanent for the domain.
pub const UNSUPPORTED: &str = ErrorKind::Unsupported.as_code();

/// The folder, inside a collection, where the connector keeps its own files.
pub const OWN_DIR: &str = ".ledgersync";

impl VdirConnector {
    pub(crate) fn carry_out(&self, intent: Intent<'_>) -> Outcome {
        let id = intent.id;
        match intent.call {
            IntentCall::Create(p) if p.target == Side::Crm => crm_side(id, "create", &p.key),
            IntentCall::Update(p) if p.target == Side::Crm => crm_side(id, "update", &p.key),
            IntentCall::Delete(p) if p.target == Side::Crm => crm_side(id, "delete", &p.key),
            IntentCall::Create(p) => self.create(id, p, intent.record),
            IntentCall::Update(p) => self.update(id, p, intent.record),
            IntentCall::Delete(p) => self.delete(id, p),
            IntentCall::Cancel(p) => self.cancel(id, p, intent.record),
        }
    }

    fn create(&self, id: EventId, p: &CreateIntent, record: Option<&Record>) -> Outcome {
        let Some(record) = record else {
            return failed(
                id,
                ErrorKind::Unsupported,
                format!(
                    "create `{}`: the CRM row {} is needed to write the item (the intent does \
                     not carry its table, times or addresses)",
                    p.key, p.record
                ),
            );
        };
        let kind = match record.body {
            RecordBody::Appointment(_) | RecordBody::Task(_) => Kind::Calendar,
            RecordBody::Contact(_) => Kind::Contacts,
            RecordBody::Email(_) => {
                return failed(
                    id,
                    ErrorKind::Unsupported,
                    format!("create `{}`: emails are not written to a vdir", p.key),
                );
            }
        };
        let Some(dir) = self.dir(kind) else {
            return failed(
                id,
                ErrorKind::Unsupported,
                format!(
                    "create `{}`: no {} collection is configured",
                    p.key,
                    kind.name()
                ),
            );
        };
        let stem = format!("{}-{:016x}", slug(&p.record), fnv1a64(p.key.as_bytes()));
        let file = format!("{stem}.{}", kind.ext());
        let remote = format!("{}/{file}", kind.name());
        let target = dir.join(&file);
        let done = |this: &Self| {
            this.notify(
                id,
                "create",
                &p.key,
                &p.item,
                Some(record),
                (kind, &remote, &target),
            )
        };
        if target.exists() {
            // A retry of a create that was carried out: nothing to write, the invitations
            // that are missing still to deliver.
            return done(self);
        }
        let uid = uid_of(&p.record);
        let text = match &record.body {
            RecordBody::Appointment(a) => {
                compose::appointment(&uid, record, a, &p.item, self.mailbox())
            }
            RecordBody::Task(t) => compose::task(&uid, record, t, &p.item),
            RecordBody::Contact(c) => compose::contact(&uid, record, c, &p.item),
            RecordBody::Email(_) => unreachable!("refused above"),
        };
        if let Err(e) = self.check(kind, &text) {
            return failed(id, ErrorKind::Malformed, format!("create `{}`: {e}", p.key));
        }
        match fsutil::create_new(&own(dir, "tmp"), &target, text.as_bytes()) {
            Ok(_) => done(self),
            Err(e) => failed(
                id,
                io_kind(&e),
                format!("create `{}`: cannot write {}: {e}", p.key, target.display()),
            ),
        }
    }

    fn update(&self, id: EventId, p: &UpdateIntent, record: Option<&Record>) -> Outcome {
        let (kind, remote, path) = match self.locate(p.remote.as_ref(), &p.record) {
            Ok(Some(found)) => found,
            Ok(None) => {
                return failed(
                    id,
                    ErrorKind::NotFound,
                    format!(
                        "update `{}`: the item of row {} is not in the vdir (deleted by the \
                         user?)",
                        p.key, p.record
                    ),
                );
            }
            Err(message) => {
                return failed(
                    id,
                    ErrorKind::NotFound,
                    format!("update `{}`: {message}", p.key),
                );
            }
        };
        // The version read: the write below happens only if the file is still that one.
        let version = |this: &Self| this.read_item(kind, &path).ok().map(|f| f.etag);
        let read = version(self);
        let text = match fsutil::read_regular_text(&path) {
            Ok(text) => text,
            Err(e) => {
                return failed(
                    id,
                    io_kind(&e),
                    format!("update `{}`: cannot read {}: {e}", p.key, path.display()),
                );
            }
        };
        let Some(new_text) = compose::edit_item(
            kind == Kind::Calendar,
            &text,
            &p.item,
            record,
            self.mailbox(),
        ) else {
            return failed(
                id,
                ErrorKind::Malformed,
                format!(
                    "update `{}`: {} holds no VEVENT or VTODO to update",
                    p.key,
                    path.display()
                ),
            );
        };
        if let Err(e) = self.check(kind, &new_text) {
            return failed(id, ErrorKind::Malformed, format!("update `{}`: {e}", p.key));
        }
        self.before_write.call(&remote);
        if version(self) != read {
            return failed(
                id,
                ErrorKind::Conflict,
                format!(
                    "update `{}`: {} changed since it was read; nothing was overwritten: the \
                     next listing reads the new version, then the update is retried",
                    p.key,
                    path.display()
                ),
            );
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        match fsutil::replace(&own(dir, "tmp"), &path, new_text.as_bytes()) {
            Ok(()) => self.notify(
                id,
                "update",
                &p.key,
                &p.item,
                record,
                (kind, &remote, &path),
            ),
            Err(e) => failed(
                id,
                io_kind(&e),
                format!("update `{}`: cannot write {}: {e}", p.key, path.display()),
            ),
        }
    }

    fn delete(&self, id: EventId, p: &DeleteIntent) -> Outcome {
        let (_, remote, path) = match self.locate(p.remote.as_ref(), &p.record) {
            Ok(Some(found)) => found,
            // Already gone (a retry, or the user deleted it): the goal is reached.
            Ok(None) => return succeeded(id, p.remote.as_ref().map(|r| r.0.clone()), None),
            Err(message) => {
                return failed(
                    id,
                    ErrorKind::NotFound,
                    format!("delete `{}`: {message}", p.key),
                );
            }
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let kept = own(dir, "deleted").join(path.file_name().unwrap_or_default());
        match fsutil::move_file(&path, &kept) {
            Ok(()) => succeeded(id, Some(remote), None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => succeeded(id, Some(remote), None),
            Err(e) => failed(
                id,
                io_kind(&e),
                format!("delete `{}`: cannot remove {}: {e}", p.key, path.display()),
            ),
        }
    }

    /// Finds the file of an item: by server id, or by the record part of the names of files
    /// the connector created for `record`. `Ok(None)`: no such file.
    pub(crate) fn locate(
        &self,
        remote: Option<&RemoteId>,
        record: &RecordId,
    ) -> Result<Option<(Kind, String, PathBuf)>, String> {
        if let Some(remote) = remote {
            let Some((kind, path)) = self.path_of(remote.as_str()) else {
                return Err(format!(
                    "`{remote}` is not an item of a configured vdir collection"
                ));
            };
            // A link is never followed: for an intent, it is not the item.
            return Ok(fsutil::is_regular_file(&path).then(|| (kind, remote.0.clone(), path)));
        }
        let found = self.created_for(record, false);
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            many => Err(format!(
                "row {record} has {} items in the vdir ({}); the intent names none",
                many.len(),
                many.iter()
                    .map(|(_, r, _)| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The files the connector created for `record`, in the collections (or, with
    /// `deleted`, among the deleted items it keeps).
    pub(crate) fn created_for(
        &self,
        record: &RecordId,
        deleted: bool,
    ) -> Vec<(Kind, String, PathBuf)> {
        let prefix = format!("{}-", slug(record));
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let Some(dir) = self.dir(kind) else { continue };
            let dir = if deleted {
                own(dir, "deleted")
            } else {
                dir.to_path_buf()
            };
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(file) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let Some(rest) = file.strip_prefix(&prefix) else {
                    continue;
                };
                // `<record>-<16 hex digits>.<ext>`: the hash part tells it from another record
                // whose slug starts the same.
                let hash_part = rest.rsplit_once('.').map(|(h, _)| h).unwrap_or("");
                if hash_part.len() == 16
                    && entry.file_type().is_ok_and(|t| t.is_file())
                    && hash_part.chars().all(|c| c.is_ascii_hexdigit())
                    && valid_file_name(&file, kind)
                {
                    out.push((kind, format!("{}/{file}", kind.name()), entry.path()));
                }
            }
        }
        out.sort();
        out
    }

    /// The mailbox a write goes to: its owner's address and zone.
    pub(crate) fn mailbox(&self) -> compose::Mailbox<'_> {
        compose::Mailbox {
            owner: &self.config.owner,
            zone: self.config.timezone,
        }
    }

    fn check(&self, kind: Kind, text: &str) -> Result<(), String> {
        compose::parses_back(
            kind == Kind::Calendar,
            text,
            &self.config.tracking_category,
            self.config.timezone,
        )
    }

    /// The outcome of a create or update written to `path`: when the intent says
    /// `notify_attendees` (R26: the organizer's mailbox), the invitation or update is first
    /// delivered to the attendees (`imip.rs`); a delivery that failed fails the intent, and its
    /// retry delivers what is missing.
    fn notify(
        &self,
        id: EventId,
        what: &str,
        key: &str,
        write: &ItemWrite,
        record: Option<&Record>,
        (kind, remote, path): (Kind, &str, &Path),
    ) -> Outcome {
        if write.notify_attendees
            && let Some(record) = record
            && record.appointment().is_some()
        {
            let written = match fsutil::read_regular_text(path) {
                Ok(text) => text,
                Err(e) => {
                    return failed(
                        id,
                        io_kind(&e),
                        format!("{what} `{key}`: cannot read back {}: {e}", path.display()),
                    );
                }
            };
            if let Err(undelivered) = self.invite(key, record, &written, what == "update") {
                return failed(
                    id,
                    undelivered.kind(),
                    format!(
                        "{what} `{key}`: written, but the invitation was not delivered to \
                         every attendee ({undelivered}); a retry delivers only the missing ones"
                    ),
                );
            }
        }
        self.outcome(id, kind, remote, path)
    }

    fn outcome(&self, id: EventId, kind: Kind, remote: &str, path: &Path) -> Outcome {
        match self.read_item(kind, path) {
            Ok(FileState { etag, .. }) => succeeded(id, Some(remote.to_string()), Some(etag)),
            Err(_) => succeeded(id, Some(remote.to_string()), None),
        }
    }
}

fn crm_side(id: EventId, what: &str, key: &str) -> Outcome {
    failed(
        id,
        ErrorKind::Unsupported,
        format!(
            "{what} `{key}` targets the CRM; the vdir connector writes only to the mail side, \
             the CRM ingress carries out CRM-side intents"
        ),
    )
}

/// `<collection>/.ledgersync/<what>`.
pub(crate) fn own(dir: &Path, what: &str) -> PathBuf {
    dir.join(OWN_DIR).join(what)
}

/// The iCalendar / vCard UID of a CRM row's items: the same in every mailbox, so that the
/// organizer's copy, each attendee's copy and the iMIP messages about the meeting name one
/// meeting (RFC 5545 §3.8.4.7; RFC 6047 matches a CANCEL to the attendee's copy by UID).
/// Characters other than ASCII letters, digits, `-`, `_` and `.` are percent-encoded, so two
/// rows never share a UID.
pub(crate) fn uid_of(record: &RecordId) -> String {
    let mut uid = String::new();
    for b in record.as_str().bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            uid.push(b as char);
        } else {
            uid.push_str(&format!("%{b:02X}"));
        }
    }
    uid.push_str("@ledgersync");
    uid
}

/// A record id as a file-name part: ASCII letters, digits, `-` and `_`, at most 64 characters.
pub(crate) fn slug(record: &RecordId) -> String {
    let s: String = record
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() { "item".to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rows_uid_is_the_same_in_every_mailbox_and_never_shared() {
        assert_eq!(
            uid_of(&RecordId::new("apt-bike-repair")),
            "apt-bike-repair@ledgersync"
        );
        assert_ne!(
            uid_of(&RecordId::new("a/b")),
            uid_of(&RecordId::new("a_b")),
            "the slug would merge them; the UID does not"
        );
        assert_eq!(uid_of(&RecordId::new("a b;c")), "a%20b%3Bc@ledgersync");
    }
}
