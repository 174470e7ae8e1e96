//! Where meeting messages (iMIP invitations and cancellations, `imip.rs`) go: into the
//! attendees' Maildirs, or over SMTP. Both deliver each attendee's message once, however often
//! the intent is retried, and report per attendee what could not be delivered; a retry
//! delivers only what is missing.

use crate::compose;
use crate::hash::fnv1a64;
use crate::maildir::{self, Delivery};
use crate::smtp::{SmtpConfig, SmtpSender};
use ledgersync_domain::ErrorKind;
use ledgersync_domain::decide::{ErrorSubject, classify};
use ledgersync_domain::event::{ErrorClass, ServerError};
use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::MimePart;
use std::fmt;
use std::path::PathBuf;

/// How a connector delivers meeting messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeetingDelivery {
    /// Into `<dir>/<attendee address>/{tmp,new,cur}`, one Maildir per attendee (a local
    /// stand-in for a groupware server's delivery; the file name carries the intent's key).
    Maildir(PathBuf),
    /// Over SMTP (see [`SmtpConfig`]): one message per attendee, recorded once accepted.
    Smtp(SmtpConfig),
}

/// One iMIP message to send to several attendees.
pub(crate) struct Letter<'a> {
    /// `REQUEST` or `CANCEL`.
    pub method: &'static str,
    pub organizer: &'a str,
    pub subject: &'a str,
    /// The plain-text part.
    pub text: &'a str,
    /// The calendar object, with its METHOD.
    pub ics: &'a str,
}

/// What could not be delivered: one line per attendee missed, and the kind the intent's
/// failure reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Undelivered {
    pub problems: Vec<(ErrorKind, String)>,
}

impl Undelivered {
    /// The kind reported for the intent: the first kind the domain retries (a later try may
    /// reach the attendees missed), else the first kind.
    pub(crate) fn kind(&self) -> ErrorKind {
        let retried = |k: ErrorKind| {
            classify(&ServerError::of_kind(k, ""), ErrorSubject::Item).0 == ErrorClass::Transient
        };
        self.problems
            .iter()
            .map(|(k, _)| *k)
            .find(|k| retried(*k))
            .or_else(|| self.problems.first().map(|(k, _)| *k))
            .unwrap_or(ErrorKind::Network)
    }
}

impl fmt::Display for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<&str> = self.problems.iter().map(|(_, m)| m.as_str()).collect();
        f.write_str(&lines.join("; "))
    }
}

/// Delivers `letter` to each of `attendees`, once per intent `key` (a retry delivers only what
/// is missing). `Err`: the attendees it could not reach, and why.
pub(crate) fn deliver_all(
    delivery: &MeetingDelivery,
    key: &str,
    attendees: &[String],
    letter: &Letter<'_>,
) -> Result<(), Undelivered> {
    let now = compose::now();
    let key_hash = fnv1a64(key.as_bytes());
    let mut problems = Vec::new();
    match delivery {
        // Every Maildir failure is reported `network`, as before SMTP delivery existed: a
        // Maildir that cannot be written (a file in its place, a full disk) may be repaired,
        // and the intent is retried.
        MeetingDelivery::Maildir(root) => {
            let secs = u64::try_from(now.0 / 1000).unwrap_or(0);
            let unique = format!("L{key_hash:016x}");
            for attendee in attendees {
                let Some(dir) = maildir::maildir_of(root, attendee) else {
                    problems.push((
                        ErrorKind::Network,
                        format!("`{attendee}` is not an address a Maildir can be named by"),
                    ));
                    continue;
                };
                let message = message(letter, attendee, key_hash, now.0);
                match message.and_then(|m| maildir::deliver(&dir, &unique, &m, secs)) {
                    Ok(Delivery::Delivered | Delivery::AlreadyThere) => {}
                    Err(e) => {
                        problems.push((ErrorKind::Network, format!("{}: {e}", dir.display())))
                    }
                }
            }
        }
        MeetingDelivery::Smtp(config) => match SmtpSender::new(config) {
            Err(r) => problems.push((r.kind, r.message)),
            Ok(sender) => {
                for attendee in attendees {
                    let sent = message(letter, attendee, key_hash, now.0)
                        .map_err(|e| crate::smtp::Refused {
                            kind: ErrorKind::Malformed,
                            message: format!("`{attendee}`: the message cannot be built ({e})"),
                        })
                        .and_then(|m| sender.send_once(key_hash, letter.organizer, attendee, &m));
                    if let Err(r) = sent {
                        problems.push((r.kind, r.message));
                    }
                }
            }
        },
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Undelivered { problems })
    }
}

/// The Message-ID of the message of the intent `key_hash` to `attendee`: the same on every
/// retry.
pub(crate) fn message_id(key_hash: u64, attendee: &str) -> String {
    format!(
        "{key_hash:016x}.{:016x}@ledgersync",
        fnv1a64(attendee.trim().to_lowercase().as_bytes())
    )
}

/// The MIME message for one attendee.
fn message(
    letter: &Letter<'_>,
    attendee: &str,
    key_hash: u64,
    now_ms: i64,
) -> std::io::Result<Vec<u8>> {
    let calendar = MimePart::new(
        ContentType::new("text/calendar")
            .attribute("method", letter.method)
            .attribute("charset", "utf-8"),
        letter.ics.to_string(),
    );
    let body = MimePart::new(
        "multipart/alternative",
        vec![
            MimePart::new("text/plain", letter.text.to_string()),
            calendar,
        ],
    );
    MessageBuilder::new()
        .from(letter.organizer.to_string())
        .to(attendee.trim().to_string())
        .subject(letter.subject.to_string())
        .message_id(message_id(key_hash, attendee))
        .date(now_ms / 1000)
        .body(body)
        .write_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn undelivered(kinds: &[ErrorKind]) -> Undelivered {
        Undelivered {
            problems: kinds.iter().map(|k| (*k, format!("{k}"))).collect(),
        }
    }

    #[test]
    fn the_intent_reports_a_kind_the_domain_retries_when_one_attendee_may_still_be_reached() {
        use ErrorKind::*;
        // Zoe unknown (permanent), Jayne's mailbox full (transient): retried for Jayne.
        assert_eq!(undelivered(&[NotFound, Quota]).kind(), Quota);
        assert_eq!(
            undelivered(&[Forbidden, RateLimited, Network]).kind(),
            RateLimited
        );
        // Nothing a retry can change: the first.
        assert_eq!(undelivered(&[NotFound, Forbidden]).kind(), NotFound);
        assert_eq!(
            undelivered(&[NotFound, Quota]).to_string(),
            "not_found; quota"
        );
    }

    #[test]
    fn the_message_id_is_the_same_for_every_spelling_of_the_attendee() {
        let a = message_id(7, "Jayne@Serenity.example");
        assert_eq!(a, message_id(7, " jayne@serenity.example "));
        assert_ne!(a, message_id(8, "jayne@serenity.example"));
        assert!(a.ends_with("@ledgersync"), "{a}");
    }
}
