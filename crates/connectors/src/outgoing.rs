//! Outgoing email (R75–R78): the connector of a mailbox's outgoing workload. It sends the
//! emails the engine decided to send (a `create_intent` of a CRM email row) over SMTP, and
//! saves a copy to the sender's Sent folder over IMAP (R76).
//!
//! # One message per intent, never two
//!
//! The Message-ID is derived from the intent's idempotency key
//! (`ledgersync_domain::email::outgoing::message_id`), so every attempt of the same intent
//! sends the same message. An attempt:
//!
//! 1. looks for the Message-ID in the sender's Sent folder (`UID SEARCH HEADER Message-ID`,
//!    when IMAP is configured) and for the record an earlier attempt wrote after the SMTP
//!    server accepted the message (`<state_dir>/sent/`, as for meeting messages);
//! 2. sends the message to all of its recipients in one SMTP transaction unless one of the
//!    two says it was sent, and writes the record;
//! 3. with the Sent copy on (`email_save_sent_copy` as the decision's basis names it),
//!    appends the message to the Sent folder (`\Seen`) unless it is there already.
//!
//! What remains: a crash between the server's `250` and the fsync of the record sends the
//! message again on the retry (with the same Message-ID), because the copy is saved after the
//! send, not before: a copy saved before a send that then failed would make the retry believe
//! it was sent. A Sent copy that cannot be saved for a transient reason (network, timeout)
//! fails the attempt: the retry finds the record and only saves the copy. One refused for good
//! (no Sent folder, forbidden) does not undo the send: the outcome is a success, and the copy
//! is missing.
//!
//! # The message
//!
//! `From` is the email's sender (a user or a queue); when the mailbox sends on the sender's
//! behalf (R78: the sender's address is not the mailbox's), `Sender` is the mailbox's
//! address, which is also the envelope sender. `To` and `Cc` are the row's parties, the
//! subject is the intent's (with the tracking token, R63, R64), the body the row's text and/or
//! HTML (`multipart/alternative` with both).

use crate::connector::{Connector, Cursor, Intent, IntentCall, Listing, ListingEnd, Outcome};
use crate::connector::{failed, succeeded};
use crate::hash::fnv1a64;
use crate::imap::{ImapConfig, ImapError, ImapReader};
use crate::smtp::{Refused, Sent, SmtpConfig, SmtpSender};
use ledgersync_domain::ErrorKind;
use ledgersync_domain::email::outgoing;
use ledgersync_domain::event::{ListingCompleted, ServerError, Workload};
use ledgersync_domain::records::{Email, Party, RecordBody};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;

/// Where and how a mailbox's outgoing email is sent.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingConfig {
    /// The mailbox's address: the `Sender` of an email sent on behalf of another (R78).
    pub address: String,
    /// The SMTP submission server.
    pub smtp: SmtpConfig,
    /// The mailbox's IMAP server: its Sent folder is searched before a send and receives the
    /// copy. `None`: neither (the record alone keeps a retry from sending twice).
    pub imap: Option<ImapConfig>,
    /// Save a copy of each email sent to the Sent folder (R76) when the decision to send does
    /// not name `email_save_sent_copy` in its basis (the value it names wins).
    pub save_sent_copy: bool,
}

/// The outgoing-email connector of one mailbox (see the module doc).
#[derive(Debug)]
pub struct OutgoingConnector {
    config: OutgoingConfig,
}

impl OutgoingConnector {
    /// A connector for `config` (nothing is connected until an email is sent).
    pub fn new(config: OutgoingConfig) -> Self {
        Self { config }
    }

    fn send(&self, intent: Intent<'_>) -> Result<String, Refused> {
        let refuse = |kind, message: String| Refused { kind, message };
        let IntentCall::Create(create) = intent.call else {
            return Err(refuse(
                ErrorKind::Unsupported,
                "the outgoing-email connector only sends emails (create intents)".into(),
            ));
        };
        let Some(RecordBody::Email(email)) = intent.record.map(|r| &r.body) else {
            return Err(refuse(
                ErrorKind::Malformed,
                format!(
                    "the email row {} is not known to the mailbox: nothing to send",
                    create.record
                ),
            ));
        };
        let message_id = outgoing::message_id(&create.key, &email.from.email);
        let key_hash = fnv1a64(create.key.as_bytes());
        let recipients = recipients(email);
        let smtp = SmtpSender::new(&self.config.smtp)?;
        let mut imap = match &self.config.imap {
            Some(c) => Some(ImapReader::connect(c).map_err(imap_refused)?),
            None => None,
        };
        let sent_folder = match imap.as_mut() {
            Some(r) => r.sent_folder().map_err(imap_refused)?,
            None => None,
        };
        let in_sent = match (imap.as_mut(), &sent_folder) {
            (Some(r), Some(folder)) => r
                .contains_message_id(folder, &message_id)
                .map_err(imap_refused)?,
            _ => false,
        };
        let text = self.message(email, &create.item.title, &message_id)?;
        if in_sent {
            // An earlier attempt sent it and saved its copy: not sent again.
            if !smtp.message_recorded(key_hash) {
                smtp.record_message(key_hash, &recipients)?;
            }
            return Ok(message_id);
        }
        let sender = self.sender(email);
        match smtp.send_message_once(key_hash, sender, &recipients, &text)? {
            Sent::Now | Sent::Before => {}
        }
        if save_sent_copy(create, self.config.save_sent_copy)
            && let Some(r) = imap.as_mut()
        {
            let saved = match &sent_folder {
                Some(folder) => r.append(folder, "(\\Seen)", &text),
                None => Err(ImapError {
                    kind: ErrorKind::NotFound,
                    message: "the server marks no folder \\Sent".into(),
                }),
            };
            if let Err(e) = saved
                && transient(e.kind)
            {
                return Err(refuse(
                    e.kind,
                    format!(
                        "{message_id} was sent, but its copy could not be saved to the Sent \
                         folder ({}); a retry saves the copy only",
                        e.message
                    ),
                ));
            }
        }
        Ok(message_id)
    }

    /// The address the message is sent from: the mailbox's when it sends on behalf of the
    /// From user or queue (R78), else the From address.
    fn sender<'a>(&'a self, email: &'a Email) -> &'a str {
        if self.on_behalf(email) {
            self.config.address.trim()
        } else {
            email.from.email.trim()
        }
    }

    fn on_behalf(&self, email: &Email) -> bool {
        !email
            .from
            .email
            .trim()
            .eq_ignore_ascii_case(self.config.address.trim())
    }

    /// The RFC 5322 message of `email` with the subject `subject` and the Message-ID
    /// `message_id` (`<…>`).
    fn message(&self, email: &Email, subject: &str, message_id: &str) -> Result<Vec<u8>, Refused> {
        let id = message_id.trim_start_matches('<').trim_end_matches('>');
        let mut b = MessageBuilder::new()
            .from(address(&email.from))
            .subject(subject.to_string())
            .message_id(id.to_string())
            .date(crate::compose::now().0 / 1000);
        if self.on_behalf(email) {
            b = b.sender(self.config.address.trim().to_string());
        }
        if !email.to.is_empty() {
            b = b.to(email.to.iter().map(address).collect::<Vec<_>>());
        }
        if !email.cc.is_empty() {
            b = b.cc(email.cc.iter().map(address).collect::<Vec<_>>());
        }
        b = match (&email.text, &email.html) {
            (Some(t), Some(h)) => b.text_body(t.clone()).html_body(h.clone()),
            (None, Some(h)) => b.html_body(h.clone()),
            (Some(t), None) => b.text_body(t.clone()),
            (None, None) => b.text_body(String::new()),
        };
        b.write_to_vec().map_err(|e| Refused {
            kind: ErrorKind::Malformed,
            message: format!("the message {message_id} could not be written: {e}"),
        })
    }
}

/// Whether the copy is saved: `email_save_sent_copy` as the decision to send consulted it (its
/// basis names the value, R76), else `default` (the configuration's).
fn save_sent_copy(create: &ledgersync_domain::event::CreateIntent, default: bool) -> bool {
    create
        .basis
        .settings
        .iter()
        .find(|s| s.key == "email_save_sent_copy")
        .map_or(default, |s| s.value == "true")
}

/// A party as a header address: with its name when it has one.
fn address(p: &Party) -> Address<'static> {
    let email = p.email.trim().to_string();
    if p.name.trim().is_empty() || p.name.trim() == email {
        Address::from(email)
    } else {
        Address::from((p.name.trim().to_string(), email))
    }
}

/// Every To and Cc address, once each.
fn recipients(email: &Email) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in email.to.iter().chain(&email.cc) {
        let a = p.email.trim().to_string();
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&a)) {
            out.push(a);
        }
    }
    out
}

fn imap_refused(e: ImapError) -> Refused {
    Refused {
        kind: e.kind,
        message: e.message,
    }
}

/// A failure a later attempt may not meet (the domain decides; this only chooses whether a
/// missing Sent copy is worth a retry).
fn transient(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Network
            | ErrorKind::Timeout
            | ErrorKind::Unavailable
            | ErrorKind::RateLimited
            | ErrorKind::Unknown
    )
}

impl Connector for OutgoingConnector {
    /// Nothing to list: the emails to send come from the CRM.
    fn list_changes(&mut self, cursor: &Cursor) -> Listing {
        Listing {
            observations: Vec::new(),
            end: ListingEnd::Completed(ListingCompleted {
                workload: Workload::Outgoing,
                items: 0,
            }),
            failures: Vec::new(),
            cursor: cursor.clone(),
        }
    }

    fn execute(&mut self, intent: Intent<'_>) -> Outcome {
        match self.send(intent) {
            Ok(message_id) => succeeded(intent.id, Some(message_id), None),
            Err(r) => failed(intent.id, r.kind, r.message),
        }
    }

    fn workload(&self) -> Workload {
        Workload::Outgoing
    }

    /// Test & Enable of outgoing email: the SMTP server answers and accepts the login, and
    /// (when configured) the IMAP server accepts the login and has a Sent folder.
    fn test_connection(&mut self) -> Result<String, ServerError> {
        let smtp = SmtpSender::new(&self.config.smtp).map_err(server_error)?;
        smtp.test().map_err(server_error)?;
        let mut found = format!("SMTP {} answers", self.config.smtp.host);
        if let Some(c) = &self.config.imap {
            let mut r = ImapReader::connect(c).map_err(|e| server_error(imap_refused(e)))?;
            match r.sent_folder().map_err(|e| server_error(imap_refused(e)))? {
                Some(f) => found.push_str(&format!("; the Sent folder is `{f}`")),
                None if self.config.save_sent_copy => {
                    return Err(ServerError::of_kind(
                        ErrorKind::NotFound,
                        format!(
                            "{} marks no folder \\Sent: the copies of emails sent cannot be \
                             saved (email_save_sent_copy)",
                            c.server()
                        ),
                    ));
                }
                None => found.push_str("; no Sent folder"),
            }
        }
        Ok(found)
    }
}

fn server_error(r: Refused) -> ServerError {
    ServerError::of_kind(r.kind, r.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgersync_domain::RecordId;
    use ledgersync_domain::UserId;
    use ledgersync_domain::event::{Basis, CreateIntent, ItemWrite, Side};
    use ledgersync_domain::records::EmailState;
    use ledgersync_domain::settings::SettingUsed;

    fn connector() -> OutgoingConnector {
        OutgoingConnector::new(OutgoingConfig {
            address: "jayne@serenity.example".into(),
            smtp: SmtpConfig::new("127.0.0.1", 25, "/nonexistent"),
            imap: None,
            save_sent_copy: true,
        })
    }

    fn email(from: &str, text: Option<&str>, html: Option<&str>) -> Email {
        Email {
            subject: "Your quote".into(),
            from: Party {
                user: None,
                email: from.into(),
                name: "Serenity Sales".into(),
            },
            to: vec![Party {
                user: Some(UserId::new("paul")),
                email: "paul@serenity.example".into(),
                name: "Paul Blart".into(),
            }],
            message_id: String::new(),
            regarding: None,
            state: EmailState::PendingSend,
            cc: Vec::new(),
            text: text.map(String::from),
            html: html.map(String::from),
            submitted_by: None,
            tracking_token: None,
        }
    }

    fn headers(text: &[u8]) -> String {
        let t = String::from_utf8_lossy(text);
        t.split("\r\n\r\n").next().unwrap().to_string()
    }

    #[test]
    fn an_email_on_behalf_of_a_queue_names_the_mailbox_as_sender_r78() {
        let c = connector();
        let id = "<ls-0123456789abcdef@serenity.example>";
        let on_behalf = email("sales@serenity.example", Some("Hello"), None);
        let h = headers(&c.message(&on_behalf, "Your quote CRM:0001004", id).unwrap());
        assert!(h.contains("Sender: <jayne@serenity.example>"), "{h}");
        assert!(
            h.contains("From: \"Serenity Sales\" <sales@serenity.example>"),
            "{h}"
        );
        assert!(
            h.contains("Message-ID: <ls-0123456789abcdef@serenity.example>"),
            "{h}"
        );
        assert!(h.contains("Subject: Your quote CRM:0001004"), "{h}");
        assert!(h.contains("Content-Type: text/plain"), "{h}");
        assert_eq!(c.sender(&on_behalf), "jayne@serenity.example");

        let own = email(
            "Jayne@Serenity.example",
            Some("Hello"),
            Some("<p>Hello</p>"),
        );
        let h = headers(&c.message(&own, "Your quote", id).unwrap());
        assert!(!h.contains("Sender:"), "{h}");
        assert!(h.contains("multipart/alternative"), "{h}");
        assert_eq!(c.sender(&own), "Jayne@Serenity.example");
    }

    #[test]
    fn the_decision_s_basis_says_whether_the_copy_is_saved_r76() {
        let create = |settings: Vec<SettingUsed>| CreateIntent {
            basis: Basis {
                reason: String::new(),
                settings,
            },
            record: RecordId::new("eml-1"),
            remote: None,
            target: Side::MailServer,
            item: ItemWrite {
                title: "Your quote".into(),
                version: 1,
                show_as: None,
                reminder: false,
                notify_attendees: false,
                attendees: 1,
                completed: false,
                actual_start: None,
            },
            key: "mbx-jayne/eml-1/send/v1".into(),
        };
        let named = |v: &str| {
            vec![SettingUsed {
                key: "email_save_sent_copy".into(),
                value: v.into(),
            }]
        };
        assert!(!save_sent_copy(&create(named("false")), true));
        assert!(save_sent_copy(&create(named("true")), false));
        assert!(
            save_sent_copy(&create(Vec::new()), true),
            "the configuration's"
        );
        assert!(!save_sent_copy(&create(Vec::new()), false));
    }
}
