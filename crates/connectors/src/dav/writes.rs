//! Carrying out intents on a DAV server.
//!
//! - **Create**: the item's text composed as for a vdir (`compose.rs`, UID from the CRM row),
//!   `PUT <collection>/<record>-<FNV-1a of the key>.ics|.vcf` with `If-None-Match: *`. A 412
//!   means the item is there from an earlier attempt of the same intent (the name is the key's):
//!   it is read back and the create succeeds with its ETag — a retry never duplicates.
//! - **Update**: `GET` the item (body and ETag), edit only what ledgersync owns
//!   (`compose::edit_calendar` / `edit_card`: the user's attendees, alarms, X- properties and
//!   overrides stay), `PUT` with `If-Match: <ETag>`. A 412 (edited by someone else meanwhile)
//!   fails the intent as `conflict`, nothing overwritten; the domain retries once the next
//!   listing has read the new version.
//! - **Delete**: `DELETE` with `If-Match` of the version read just before; a 404 is success.
//! - **Cancel**: the iMIP CANCEL built from the organizer's item (read from the server, or from
//!   the copy kept in memory of an item this connector deleted), delivered into Maildirs as the
//!   vdir backend does (`imip.rs`).
//!
//! The outcome's version is the ETag the server answered the write with, or the one a GET
//! returns when the answer had none: exactly what the next listing reports, so the echo guard
//! (R18) recognises ledgersync's own write.

use super::DavConnector;
use super::http::{Answer, DavError};
use super::xml::DAV;
use crate::compose;
use crate::connector::{Intent, IntentCall, Outcome, failed, succeeded};
use crate::hash::fnv1a64;
use crate::imip::{self, Meeting};
use crate::writes::{slug, uid_of};
use ledgersync_domain::event::{
    CancelIntent, CreateIntent, DeleteIntent, ItemWrite, Side, UpdateIntent,
};
use ledgersync_domain::records::{Record, RecordBody};
use ledgersync_domain::{ErrorKind, EventId, RecordId, RemoteId};
use reqwest::Url;

impl DavConnector {
    pub(crate) fn carry_out(&mut self, intent: Intent<'_>) -> Outcome {
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

    fn create(&mut self, id: EventId, p: &CreateIntent, record: Option<&Record>) -> Outcome {
        let fail = |e: DavError| failed(id, e.kind, format!("create `{}`: {e}", p.key));
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
        let resolved = match self.resolve() {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let (collection, calendar, what) = match &record.body {
            RecordBody::Appointment(_) => (resolved.calendar, true, "calendar"),
            RecordBody::Task(_) => (resolved.tasks, true, "task list"),
            RecordBody::Contact(_) => (resolved.contacts, false, "address book"),
            RecordBody::Email(_) => {
                return failed(
                    id,
                    ErrorKind::Unsupported,
                    format!("create `{}`: emails are not written to a DAV server", p.key),
                );
            }
        };
        let Some(collection) = collection else {
            return failed(
                id,
                ErrorKind::Unsupported,
                format!("create `{}`: no {what} is configured or found", p.key),
            );
        };
        let ext = if calendar { "ics" } else { "vcf" };
        let file = format!(
            "{}-{:016x}.{ext}",
            slug(&p.record),
            fnv1a64(p.key.as_bytes())
        );
        let url = match collection.join(&file) {
            Ok(url) => url,
            Err(e) => return fail(DavError::new(ErrorKind::Malformed, e.to_string())),
        };
        let uid = uid_of(&p.record);
        let text = match &record.body {
            RecordBody::Appointment(a) => {
                compose::appointment(&uid, record, a, &p.item, self.mailbox())
            }
            RecordBody::Task(t) => compose::task(&uid, record, t, &p.item),
            RecordBody::Contact(c) => compose::contact(&uid, record, c, &p.item),
            RecordBody::Email(_) => unreachable!("refused above"),
        };
        if let Err(e) = self.check(calendar, &text) {
            return failed(id, ErrorKind::Malformed, format!("create `{}`: {e}", p.key));
        }
        let answer = match self.put(&url, calendar, &text, ("If-None-Match", "*")) {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        let (etag, written) = if answer.is_success() {
            (answer.etag.clone(), text)
        } else if answer.status == 412 {
            // There from an earlier attempt of this intent (the name is the key's).
            match self.get(&url) {
                Ok(Some((etag, body))) => (etag, body),
                Ok(None) => {
                    return failed(
                        id,
                        ErrorKind::Conflict,
                        format!(
                            "create `{}`: {} exists by the server's precondition but cannot be \
                             read back; retried",
                            p.key,
                            url.path()
                        ),
                    );
                }
                Err(e) => return fail(e),
            }
        } else {
            return fail(answer.error(&format!("PUT {}", url.path())));
        };
        self.written(
            id,
            "create",
            &p.key,
            &p.item,
            Some(record),
            &url,
            etag,
            &written,
        )
    }

    fn update(&mut self, id: EventId, p: &UpdateIntent, record: Option<&Record>) -> Outcome {
        let fail = |e: DavError| failed(id, e.kind, format!("update `{}`: {e}", p.key));
        let url = match self.locate(p.remote.as_ref(), &p.record) {
            Ok(Some(url)) => url,
            Ok(None) => {
                return failed(
                    id,
                    ErrorKind::NotFound,
                    format!(
                        "update `{}`: the item of row {} is not on the server (deleted by the \
                         user?)",
                        p.key, p.record
                    ),
                );
            }
            Err(e) => return fail(e),
        };
        let (etag, text) = match self.get(&url) {
            Ok(Some(got)) => got,
            Ok(None) => {
                return failed(
                    id,
                    ErrorKind::NotFound,
                    format!(
                        "update `{}`: {} is not on the server (deleted by the user?)",
                        p.key,
                        url.path()
                    ),
                );
            }
            Err(e) => return fail(e),
        };
        let calendar = !is_card(&text);
        let Some(edited) = compose::edit_item(calendar, &text, &p.item, record, self.mailbox())
        else {
            return failed(
                id,
                ErrorKind::Malformed,
                format!(
                    "update `{}`: {} holds no VEVENT or VTODO to update",
                    p.key,
                    url.path()
                ),
            );
        };
        if let Err(e) = self.check(calendar, &edited) {
            return failed(id, ErrorKind::Malformed, format!("update `{}`: {e}", p.key));
        }
        self.before_write.call(url.path());
        let precondition = match &etag {
            Some(etag) => ("If-Match", etag.as_str()),
            // No version to hold the write to: the item must at least still exist.
            None => ("If-Match", "*"),
        };
        let answer = match self.put(&url, calendar, &edited, precondition) {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        if answer.status == 412 {
            return failed(
                id,
                ErrorKind::Conflict,
                format!(
                    "update `{}`: {} changed on the server since it was read (ETag {}); nothing \
                     was overwritten: the next listing reads the new version, then the update \
                     is retried",
                    p.key,
                    url.path(),
                    etag.as_deref().unwrap_or("none")
                ),
            );
        }
        if !answer.is_success() {
            return fail(answer.error(&format!("PUT {}", url.path())));
        }
        let etag = answer.etag.clone();
        self.written(id, "update", &p.key, &p.item, record, &url, etag, &edited)
    }

    fn delete(&mut self, id: EventId, p: &DeleteIntent) -> Outcome {
        let fail = |e: DavError| failed(id, e.kind, format!("delete `{}`: {e}", p.key));
        let url = match self.locate(p.remote.as_ref(), &p.record) {
            Ok(Some(url)) => url,
            // Already gone (a retry, or the user deleted it): the goal is reached.
            Ok(None) => return succeeded(id, p.remote.as_ref().map(|r| r.0.clone()), None),
            Err(e) => return fail(e),
        };
        let remote = Some(url.path().to_string());
        let etag = match self.get(&url) {
            Ok(Some((etag, text))) => {
                // Kept for a cancellation carried out after the delete.
                if let Some(meeting) = Meeting::from_ics(&text) {
                    self.deleted
                        .insert(p.record.as_str().to_string(), meeting.clone());
                    self.deleted.insert(url.path().to_string(), meeting);
                }
                etag
            }
            Ok(None) => return succeeded(id, remote, None),
            Err(e) => return fail(e),
        };
        let mut headers = Vec::new();
        if let Some(etag) = &etag {
            headers.push(("If-Match", etag.as_str()));
        }
        let what = format!("DELETE {}", url.path());
        let answer = match self
            .http()
            .and_then(|h| h.send("DELETE", &url, &headers, None, 1 << 16))
        {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        match answer.status {
            200..=299 | 404 | 410 => succeeded(id, remote, None),
            412 => failed(
                id,
                ErrorKind::Conflict,
                format!(
                    "delete `{}`: {} changed on the server since it was read; nothing was \
                     deleted: the next listing reads the new version, then the delete is retried",
                    p.key,
                    url.path()
                ),
            ),
            _ => fail(answer.error(&what)),
        }
    }

    fn cancel(&mut self, id: EventId, p: &CancelIntent, record: Option<&Record>) -> Outcome {
        let delivery = self.config.meeting_delivery();
        let owner = self.config.owner.clone();
        let meeting = || {
            if let Some(remote) = &p.remote {
                if let Some(m) = self.deleted.get(remote.as_str()) {
                    return Some(m.clone());
                }
                if let Ok(url) = self.url_of(remote.as_str())
                    && let Ok(Some((_, text))) = self.get(&url)
                    && let Some(m) = Meeting::from_ics(&text)
                {
                    return Some(m);
                }
            }
            self.deleted.get(p.record.as_str()).cloned()
        };
        imip::cancel(id, p, record, delivery.as_ref(), &owner, meeting)
    }

    /// The outcome of a create or update written to `url`: the invitations first (when the
    /// intent says `notify_attendees`), then the success with the server's ETag.
    #[allow(clippy::too_many_arguments)]
    fn written(
        &self,
        id: EventId,
        what: &str,
        key: &str,
        write: &ItemWrite,
        record: Option<&Record>,
        url: &Url,
        etag: Option<String>,
        text: &str,
    ) -> Outcome {
        if write.notify_attendees
            && let Some(record) = record
            && record.appointment().is_some()
            && let Err(undelivered) = imip::invite(
                self.config.meeting_delivery().as_ref(),
                &self.config.owner,
                key,
                record,
                text,
                what == "update",
            )
        {
            return failed(
                id,
                undelivered.kind(),
                format!(
                    "{what} `{key}`: written, but the invitation was not delivered to every \
                     attendee ({undelivered}); a retry delivers only the missing ones"
                ),
            );
        }
        let etag = etag.or_else(|| self.get(url).ok().flatten().and_then(|(e, _)| e));
        succeeded(id, Some(url.path().to_string()), etag)
    }

    /// A PUT of an item with one precondition header.
    fn put(
        &self,
        url: &Url,
        calendar: bool,
        text: &str,
        precondition: (&str, &str),
    ) -> Result<Answer, DavError> {
        let content_type = if calendar {
            "text/calendar; charset=utf-8"
        } else {
            "text/vcard; charset=utf-8"
        };
        self.http()?.send(
            "PUT",
            url,
            &[("Content-Type", content_type), precondition],
            Some(text.to_string()),
            1 << 16,
        )
    }

    /// GETs an item: `Ok(None)` when it is not there (404, 410).
    pub(crate) fn get(&self, url: &Url) -> Result<Option<(Option<String>, String)>, DavError> {
        let max = self.config.max_item_bytes;
        let answer = self.http()?.send("GET", url, &[], None, max)?;
        match answer.status {
            404 | 410 => Ok(None),
            s if (200..300).contains(&s) => {
                if answer.truncated {
                    return Err(DavError::new(
                        ErrorKind::TooLarge,
                        format!(
                            "{} is larger than max_item_bytes ({max} bytes); it was not read",
                            url.path()
                        ),
                    ));
                }
                Ok(Some((answer.etag, answer.body)))
            }
            _ => Err(answer.error(&format!("GET {}", url.path()))),
        }
    }

    /// The URL of a server id (an href path), on the collection's server.
    fn url_of(&mut self, remote: &str) -> Result<Url, DavError> {
        let base = self
            .resolve()?
            .collections()
            .into_iter()
            .map(|(u, _)| u)
            .find(|u| remote.starts_with(u.path()))
            .map_or_else(|| self.base(), Ok)?;
        if !remote.starts_with('/') || remote.ends_with('/') {
            return Err(DavError::new(
                ErrorKind::NotFound,
                format!("`{remote}` is not the href of a DAV item"),
            ));
        }
        base.join(remote)
            .map_err(|e| DavError::new(ErrorKind::Malformed, format!("`{remote}`: {e}")))
    }

    /// The URL of an intent's item: by server id, else the one item the connector created for
    /// `record` (`<record>-<16 hex>.<ext>` in a collection). `Ok(None)`: none.
    fn locate(
        &mut self,
        remote: Option<&RemoteId>,
        record: &RecordId,
    ) -> Result<Option<Url>, DavError> {
        if let Some(remote) = remote {
            return self.url_of(remote.as_str()).map(Some);
        }
        let prefix = format!("{}-", slug(record));
        let mut found = Vec::new();
        for (collection, _) in self.resolve()?.collections() {
            let m = self.propfind(&collection, "1", &["d:getetag"])?;
            for r in &m.responses {
                let Ok(url) = collection.join(&r.href) else {
                    continue;
                };
                let name = url.path().rsplit('/').next().unwrap_or("").to_string();
                let Some(rest) = name.strip_prefix(&prefix) else {
                    continue;
                };
                let hash = rest.rsplit_once('.').map(|(h, _)| h).unwrap_or("");
                if hash.len() == 16
                    && hash.chars().all(|c| c.is_ascii_hexdigit())
                    && r.prop(DAV, "getetag").is_some()
                {
                    found.push(url);
                }
            }
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            n => Err(DavError::new(
                ErrorKind::NotFound,
                format!(
                    "row {record} has {n} items on the server ({}); the intent names none",
                    found
                        .iter()
                        .map(|u| u.path())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    fn check(&self, calendar: bool, text: &str) -> Result<(), String> {
        compose::parses_back(
            calendar,
            text,
            &self.config.tracking_category,
            self.config.timezone,
        )
    }
}

/// True for a vCard (else a calendar object).
fn is_card(text: &str) -> bool {
    text.trim_start()
        .get(..11)
        .is_some_and(|b| b.eq_ignore_ascii_case("BEGIN:VCARD"))
}

fn crm_side(id: EventId, what: &str, key: &str) -> Outcome {
    failed(
        id,
        ErrorKind::Unsupported,
        format!(
            "{what} `{key}` targets the CRM; the DAV connector writes only to the mail side, \
             the CRM ingress carries out CRM-side intents"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_and_calendars_are_told_apart() {
        assert!(is_card("BEGIN:VCARD\r\nVERSION:3.0\r\n"));
        assert!(is_card("\r\nbegin:vcard\r\n"));
        assert!(!is_card("BEGIN:VCALENDAR\r\n"));
        assert!(!is_card(""));
    }
}
