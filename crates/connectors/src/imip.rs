//! Meeting invitations and cancellations as iMIP messages (RFC 6047) delivered to the
//! attendees, into their Maildirs or over SMTP ([`MeetingDelivery`], `delivery.rs`): what a
//! groupware server does when the organizer's calendar changes.
//!
//! **Invitations** (`METHOD:REQUEST`): when a create or an update of an appointment says
//! `notify_attendees` (R26: only in the organizer's mailbox), the calendar object just written
//! is sent to every attendee of the CRM row but the organizer, after the file is written. A
//! retry of the intent delivers only what is missing (messages are named by the intent's key).
//! Without a delivery configured nothing can be delivered and the write alone is done.
//!
//! The `cancel_intent` names the row, the server item and the attendees, but not the meeting's
//! UID, organizer or times: those come from the organizer's calendar item, read from the vdir
//! (or from the copy the connector keeps of an item it deleted, since a cancellation is decided
//! together with the delete and may be carried out after it).
//!
//! Both backends deliver through [`invite`] and [`cancel`]: the vdir connector reads the meeting
//! from its files, the DAV connector from the server (or from the copy it kept in memory of an
//! item it deleted).
//!
//! The message: `multipart/alternative` with a `text/plain` explanation and a
//! `text/calendar; method=CANCEL` part holding `METHOD:CANCEL` and one VEVENT with the UID,
//! the meeting's `SEQUENCE` (`ledgersync_domain::sequence`: 2 · version + 1 when this mailbox's
//! owner organizes the row, the same number in every mailbox), `STATUS:CANCELLED`, the
//! ORGANIZER and one ATTENDEE line per attendee of the intent (RFC 5546 §3.2.5).

use crate::compose::{self, PRODID};
use crate::connector::{Outcome, failed, succeeded};
use crate::delivery::{Letter, MeetingDelivery, Undelivered, deliver_all};
use crate::lines::{self, escape, fold, name_of, unfold, value_of};
use crate::vdir::VdirConnector;
use crate::writes::own;
use ledgersync_domain::ErrorKind;
use ledgersync_domain::EventId;
use ledgersync_domain::event::CancelIntent;
use ledgersync_domain::records::Record;

use std::path::PathBuf;

/// What a cancellation needs from the organizer's item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Meeting {
    uid: String,
    sequence: u64,
    organizer: Option<String>,
    summary: String,
    /// DTSTART, DTEND, DURATION and RECURRENCE-ID lines, copied as they are.
    when: Vec<String>,
}

impl Meeting {
    /// Reads the master VEVENT of a calendar object (the one without RECURRENCE-ID).
    pub(crate) fn from_ics(text: &str) -> Option<Meeting> {
        let l = unfold(text);
        let (b, e, kind) = compose::master(&l)?;
        if kind != "VEVENT" {
            return None;
        }
        let value = |name: &str| lines::property(&l, b, e, name).map(|x| value_of(x).trim());
        let uid = value("UID")?.to_string();
        let when = lines::direct(&l, b, e)
            .filter(|i| {
                matches!(
                    name_of(&l[*i]).as_str(),
                    "DTSTART" | "DTEND" | "DURATION" | "RECURRENCE-ID"
                )
            })
            .map(|i| l[i].clone())
            .collect();
        Some(Meeting {
            uid,
            sequence: value("SEQUENCE").and_then(|s| s.parse().ok()).unwrap_or(0),
            organizer: value("ORGANIZER").map(strip_mailto),
            summary: value("SUMMARY").map(unescape).unwrap_or_default(),
            when,
        })
    }

    /// The calendar object of the cancellation, with the meeting's `SEQUENCE` `sequence`.
    pub(crate) fn cancel_ics(
        &self,
        organizer: &str,
        attendees: &[String],
        sequence: u64,
    ) -> String {
        let mut l: Vec<String> = vec![
            "BEGIN:VCALENDAR".into(),
            "VERSION:2.0".into(),
            format!("PRODID:{PRODID}"),
            "METHOD:CANCEL".into(),
            "BEGIN:VEVENT".into(),
            format!("UID:{}", self.uid),
            format!("DTSTAMP:{}", compose::now_stamp()),
            format!("SEQUENCE:{sequence}"),
            "STATUS:CANCELLED".into(),
            format!("SUMMARY:{}", escape(&self.summary)),
            format!("ORGANIZER:mailto:{organizer}"),
        ];
        l.extend(self.when.iter().cloned());
        for a in attendees {
            l.push(format!("ATTENDEE:mailto:{}", a.trim()));
        }
        l.push("END:VEVENT".into());
        l.push("END:VCALENDAR".into());
        fold(&l)
    }
}

impl VdirConnector {
    pub(crate) fn cancel(&self, id: EventId, p: &CancelIntent, record: Option<&Record>) -> Outcome {
        let delivery = self.config.meeting_delivery();
        cancel(id, p, record, delivery.as_ref(), &self.config.owner, || {
            self.meeting(p)
        })
    }

    /// Sends the invitation or update of `written` (see [`invite`]).
    pub(crate) fn invite(
        &self,
        key: &str,
        record: &Record,
        written: &str,
        updated: bool,
    ) -> Result<(), Undelivered> {
        let delivery = self.config.meeting_delivery();
        invite(
            delivery.as_ref(),
            &self.config.owner,
            key,
            record,
            written,
            updated,
        )
    }

    /// The organizer's item: by server id in the calendar, else among the deleted items kept,
    /// else the one item the connector created for the row.
    fn meeting(&self, p: &CancelIntent) -> Option<Meeting> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(remote) = &p.remote
            && let Some((_, path)) = self.path_of(remote.as_str())
            && let (Some(dir), Some(file)) = (path.parent(), path.file_name())
        {
            candidates.push(path.clone());
            candidates.push(own(dir, "deleted").join(file));
        }
        for deleted in [false, true] {
            if let [(_, _, path)] = self.created_for(&p.record, deleted).as_slice() {
                candidates.push(path.clone());
            }
        }
        candidates
            .iter()
            .filter_map(|path| crate::fsutil::read_regular_text(path).ok())
            .find_map(|text| Meeting::from_ics(&text))
    }
}

/// Delivers the cancellation of `p` to its attendees through `delivery`; the meeting (UID,
/// SEQUENCE, organizer, times) comes from the organizer's item, read by `meeting` only when
/// needed. A retry of the same intent delivers only what is missing.
pub(crate) fn cancel(
    id: EventId,
    p: &CancelIntent,
    record: Option<&Record>,
    delivery: Option<&MeetingDelivery>,
    owner: &str,
    meeting: impl FnOnce() -> Option<Meeting>,
) -> Outcome {
    let Some(delivery) = delivery else {
        return failed(
            id,
            ErrorKind::Unsupported,
            format!(
                "cancel `{}`: neither a Maildir directory nor an SMTP server is configured \
                 to deliver the cancellation to",
                p.key
            ),
        );
    };
    let remote = p.remote.as_ref().map(|r| r.0.clone());
    if p.attendees.is_empty() {
        return succeeded(id, remote, None);
    }
    let Some(meeting) = meeting() else {
        return failed(
            id,
            ErrorKind::NotFound,
            format!(
                "cancel `{}`: the meeting of row {} is not in the calendar (nor among the \
                 items the connector deleted), so its UID is unknown",
                p.key, p.record
            ),
        );
    };
    let organizer = meeting
        .organizer
        .clone()
        .or_else(|| {
            record
                .and_then(|r| r.appointment())
                .and_then(|a| a.organizer.as_ref())
                .map(|o| o.email.clone())
        })
        .unwrap_or_else(|| owner.to_string());
    // R26, R29: the meeting's sequence for this row version and this mailbox's role, the
    // same number every mailbox derives; never below what the item already carries.
    // Without the row, the item's own number: a CANCEL equal to the last REQUEST applies.
    let sequence = record
        .and_then(|r| r.appointment().map(|a| compose::sequence_of(r, a, owner)))
        .map_or(meeting.sequence, |s| s.max(meeting.sequence));
    let ics = meeting.cancel_ics(&organizer, &p.attendees, sequence);
    let subject = if meeting.summary.is_empty() {
        "Canceled: meeting".to_string()
    } else {
        format!("Canceled: {}", meeting.summary)
    };
    let text = format!(
        "The meeting \"{}\" has been canceled by {organizer}.\r\n",
        meeting.summary
    );
    let letter = Letter {
        method: "CANCEL",
        organizer: &organizer,
        subject: &subject,
        text: &text,
        ics: &ics,
    };
    match deliver_all(delivery, &p.key, &p.attendees, &letter) {
        Ok(()) => succeeded(id, remote, None),
        Err(undelivered) => failed(
            id,
            undelivered.kind(),
            format!(
                "cancel `{}`: not delivered to every attendee ({undelivered}); a retry \
                 delivers only the missing ones",
                p.key
            ),
        ),
    }
}

/// Sends the calendar object `written` (the organizer's item, as just written) as an iMIP
/// `METHOD:REQUEST` to every attendee of `record` but the organizer, through `delivery`
/// (`None`: nothing to deliver with, nothing sent). `Err`: what could not be delivered, and
/// the kind the intent's failure reports; a retry of the same `key` delivers only what is
/// missing.
pub(crate) fn invite(
    delivery: Option<&MeetingDelivery>,
    owner: &str,
    key: &str,
    record: &Record,
    written: &str,
    updated: bool,
) -> Result<(), Undelivered> {
    let Some(delivery) = delivery else {
        return Ok(());
    };
    let Some(a) = record.appointment() else {
        return Ok(());
    };
    let organizer = a
        .organizer
        .as_ref()
        .map(|o| o.email.clone())
        .unwrap_or_else(|| owner.to_string());
    let attendees: Vec<String> = a
        .required
        .iter()
        .chain(&a.optional)
        .map(|p| p.email.trim().to_string())
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case(organizer.trim()))
        .collect();
    if attendees.is_empty() {
        return Ok(());
    }
    let ics = with_method(written, "REQUEST");
    let (prefix, verb) = if updated {
        ("Updated", "updated")
    } else {
        ("Invitation", "invites you to")
    };
    let subject = if a.subject.is_empty() {
        format!("{prefix}: meeting")
    } else {
        format!("{prefix}: {}", a.subject)
    };
    let text = format!("{organizer} {verb} \"{}\".\r\n", a.subject);
    let letter = Letter {
        method: "REQUEST",
        organizer: &organizer,
        subject: &subject,
        text: &text,
        ics: &ics,
    };
    deliver_all(delivery, key, &attendees, &letter)
}

/// A calendar object with `METHOD:<method>` among its VCALENDAR properties (before the first
/// component), replacing a METHOD it had.
fn with_method(ics: &str, method: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut placed = false;
    for line in unfold(ics) {
        if name_of(&line) == "METHOD" {
            continue;
        }
        if !placed && line.starts_with("BEGIN:") && !line.eq_ignore_ascii_case("BEGIN:VCALENDAR") {
            out.push(format!("METHOD:{method}"));
            placed = true;
        }
        out.push(line);
    }
    fold(&out)
}

fn strip_mailto(value: &str) -> String {
    match value.split_once(':') {
        Some((scheme, address)) if scheme.eq_ignore_ascii_case("mailto") => address.to_string(),
        _ => value.to_string(),
    }
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellation_carries_uid_sequence_and_status() {
        let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:m-1\r\nSEQUENCE:2\r\n\
            SUMMARY:Quarterly review\\, Q4\r\nDTSTART:20261120T140000Z\r\n\
            ORGANIZER;CN=Paul:mailto:paul@serenity.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let m = Meeting::from_ics(ics).expect("a meeting");
        assert_eq!(m.organizer.as_deref(), Some("paul@serenity.example"));
        assert_eq!(m.summary, "Quarterly review, Q4");
        let out = unfold(&m.cancel_ics(
            "paul@serenity.example",
            &["jayne@serenity.example".into()],
            3,
        ));
        for line in [
            "METHOD:CANCEL",
            "UID:m-1",
            "SEQUENCE:3",
            "STATUS:CANCELLED",
            "ORGANIZER:mailto:paul@serenity.example",
            "ATTENDEE:mailto:jayne@serenity.example",
            "DTSTART:20261120T140000Z",
        ] {
            assert!(out.iter().any(|l| l == line), "{line} missing in {out:?}");
        }
    }
}
