//! Schema versions of the payloads and the upcasters of their older versions.
//!
//! Every payload type starts at schema version 1. A type whose payload grew has a newer current
//! version, listed in [`schema_version_of`]; its older versions keep their struct here (under a
//! `V<n>` name, never changed) and an upcaster in [`upcast`], so every event ever written still
//! decodes (`docs/event-format.md`, "Versioning rules").
//!
//! | type               | version | since this version                                      |
//! |--------------------|---------|---------------------------------------------------------|
//! | `intent_succeeded` | 2       | `crm`: the row the CRM holds after a CRM command        |
//! | `intent_failed`    | 2       | `crm`: the command type, its row, whether it is retried |
//! | `email_received`   | 2       | References, Thread-Index, Cc, Bcc, received time, IRM, folder, tracked by hand, size, the looked-up facts (decision 0018) |
//! | `email_accepted`   | 2       | Message-ID, accepting row (not only a user), correlated activity, parent, regarding, sender, recipients, row to create, owner |
//! | `record_upserted`  | 2       | an email row's state, Cc, text and HTML bodies, submitting user (R75–R78) |
//! | `owner_changed`    | 2       | the same email fields, in the row it carries            |

use super::{
    Basis, CrmDone, CrmFailed, DecodeError, EmailAccepted, EmailFacts, EmailFolder, EmailReceived,
    Event, EventId, EventType, IntentFailed, IntentSucceeded, OwnerChanged, RecordUpserted,
    RemoteId, ServerError, TrackedBy, decode_exact,
};
use crate::ids::{MailboxId, RecordId, UserId};
use crate::records::{
    Appointment, Contact, Email, EmailState, Party, Record, RecordBody, RecordRef, Task,
};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The type code of `intent_succeeded`.
const INTENT_SUCCEEDED: u16 = 40;
/// The type code of `intent_failed`.
const INTENT_FAILED: u16 = 41;
/// The type code of `email_received`.
const EMAIL_RECEIVED: u16 = 36;
/// The type code of `email_accepted`.
const EMAIL_ACCEPTED: u16 = 60;
/// The type code of `record_upserted`.
const RECORD_UPSERTED: u16 = 20;
/// The type code of `owner_changed`.
const OWNER_CHANGED: u16 = 22;

/// The current schema version of the payload type `event_type`: the version events of that
/// type are written with.
pub fn schema_version_of(event_type: EventType) -> u16 {
    match event_type.0 {
        INTENT_SUCCEEDED | INTENT_FAILED | EMAIL_RECEIVED | EMAIL_ACCEPTED | RECORD_UPSERTED
        | OWNER_CHANGED => 2,
        _ => super::FIRST_SCHEMA_VERSION,
    }
}

/// `intent_succeeded` as schema version 1 wrote it: a connector's outcome only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentSucceededV1 {
    /// The intent event.
    pub intent: EventId,
    /// Server id of the created item.
    pub remote: Option<RemoteId>,
    /// New server version tag.
    pub etag: Option<String>,
}

impl From<IntentSucceededV1> for IntentSucceeded {
    fn from(v1: IntentSucceededV1) -> Self {
        IntentSucceeded {
            intent: v1.intent,
            remote: v1.remote,
            etag: v1.etag,
            crm: None::<CrmDone>,
        }
    }
}

/// `intent_failed` as schema version 1 wrote it: a connector's outcome only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentFailedV1 {
    /// The intent event.
    pub intent: EventId,
    /// What the server said.
    pub error: ServerError,
}

impl From<IntentFailedV1> for IntentFailed {
    fn from(v1: IntentFailedV1) -> Self {
        IntentFailed {
            intent: v1.intent,
            error: v1.error,
            crm: None::<CrmFailed>,
        }
    }
}

/// `email_received` as schema version 1 wrote it: the Inbox's headers, nothing looked up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailReceivedV1 {
    /// Server id.
    pub remote: RemoteId,
    /// Message-ID.
    pub message_id: String,
    /// Subject.
    pub subject: String,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// In-Reply-To.
    pub in_reply_to: Option<String>,
}

impl From<EmailReceivedV1> for EmailReceived {
    fn from(v1: EmailReceivedV1) -> Self {
        EmailReceived {
            remote: v1.remote,
            message_id: v1.message_id,
            subject: v1.subject,
            from: v1.from,
            to: v1.to,
            in_reply_to: v1.in_reply_to,
            references: Vec::new(),
            thread_index: None,
            cc: Vec::new(),
            bcc: Vec::new(),
            received: Timestamp(0),
            irm_protected: false,
            folder: EmailFolder::Inbox,
            manual: None,
            size: 0,
            facts: EmailFacts::default(),
        }
    }
}

/// `email_accepted` as schema version 1 wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAcceptedV1 {
    /// Why.
    pub basis: Basis,
    /// Server item.
    pub remote: RemoteId,
    /// Who accepted.
    pub accepting: UserId,
    /// Whose cycle found it.
    pub receiving_mailbox: MailboxId,
    /// How it correlated.
    pub correlation: Option<TrackedBy>,
}

impl From<EmailAcceptedV1> for EmailAccepted {
    fn from(v1: EmailAcceptedV1) -> Self {
        EmailAccepted {
            basis: v1.basis,
            remote: v1.remote,
            message_id: String::new(),
            accepting: RecordId::new(v1.accepting.as_str()),
            receiving_mailbox: v1.receiving_mailbox,
            correlation: v1.correlation,
            correlated: None,
            parent: false,
            regarding: None,
            sender: None,
            recipients: Vec::new(),
            create: None,
            owner: None,
        }
    }
}

/// An email row as schema version 1 of `record_upserted` and `owner_changed` wrote it: no
/// state, Cc, bodies or submitting user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailV1 {
    /// Subject.
    pub subject: String,
    /// Sender.
    pub from: Party,
    /// To recipients.
    pub to: Vec<Party>,
    /// Message-ID header.
    pub message_id: String,
    /// Regarding row.
    pub regarding: Option<RecordRef>,
}

impl From<EmailV1> for Email {
    fn from(v1: EmailV1) -> Self {
        Email {
            subject: v1.subject,
            from: v1.from,
            to: v1.to,
            message_id: v1.message_id,
            regarding: v1.regarding,
            state: EmailState::Received,
            cc: Vec::new(),
            text: None,
            html: None,
            submitted_by: None,
            tracking_token: None,
        }
    }
}

/// The table-specific part of a row as schema version 1 wrote it (the variants in the same
/// order; only the email's layout differs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordBodyV1 {
    /// An appointment.
    Appointment(Appointment),
    /// A contact.
    Contact(Contact),
    /// A task-like activity.
    Task(Task),
    /// An email.
    Email(EmailV1),
}

/// A CRM row as schema version 1 of `record_upserted` and `owner_changed` wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordV1 {
    /// Row id.
    pub id: RecordId,
    /// Owning user.
    pub owner: UserId,
    /// Row version.
    pub version: u64,
    /// The table-specific fields.
    pub body: RecordBodyV1,
}

impl From<RecordV1> for Record {
    fn from(v1: RecordV1) -> Self {
        Record {
            id: v1.id,
            owner: v1.owner,
            version: v1.version,
            body: match v1.body {
                RecordBodyV1::Appointment(a) => RecordBody::Appointment(a),
                RecordBodyV1::Contact(c) => RecordBody::Contact(c),
                RecordBodyV1::Task(t) => RecordBody::Task(t),
                RecordBodyV1::Email(e) => RecordBody::Email(e.into()),
            },
        }
    }
}

/// `record_upserted` as schema version 1 wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordUpsertedV1 {
    /// The row.
    pub record: RecordV1,
}

/// `owner_changed` as schema version 1 wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerChangedV1 {
    /// The row after reassignment.
    pub record: RecordV1,
    /// Owner before.
    pub previous_owner: UserId,
}

/// Decodes an older schema version of `event_type` into the current event, or `None` when the
/// type has no such version.
pub fn upcast(
    event_type: EventType,
    schema_version: u16,
    bytes: &[u8],
) -> Option<Result<Event, DecodeError>> {
    Some(match (event_type.0, schema_version) {
        (INTENT_SUCCEEDED, 1) => decode_exact::<IntentSucceededV1>(bytes)
            .map(|v1| Event::IntentSucceeded(IntentSucceeded::from(v1))),
        (INTENT_FAILED, 1) => decode_exact::<IntentFailedV1>(bytes)
            .map(|v1| Event::IntentFailed(IntentFailed::from(v1))),
        (EMAIL_RECEIVED, 1) => decode_exact::<EmailReceivedV1>(bytes)
            .map(|v1| Event::EmailReceived(EmailReceived::from(v1))),
        (EMAIL_ACCEPTED, 1) => decode_exact::<EmailAcceptedV1>(bytes)
            .map(|v1| Event::EmailAccepted(EmailAccepted::from(v1))),
        (RECORD_UPSERTED, 1) => decode_exact::<RecordUpsertedV1>(bytes).map(|v1| {
            Event::RecordUpserted(RecordUpserted {
                record: v1.record.into(),
            })
        }),
        (OWNER_CHANGED, 1) => decode_exact::<OwnerChangedV1>(bytes).map(|v1| {
            Event::OwnerChanged(OwnerChanged {
                record: v1.record.into(),
                previous_owner: v1.previous_owner,
            })
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_email_received_in_json_reads_with_the_defaults_of_version_2() {
        // The wire format (JSON) of a mail observation written before version 2.
        let v1 = r#"{"type":"email_received","data":{"remote":"INBOX/1/7","message_id":"<a@b>","subject":"Hi","from":"zoe@customer.example","to":["paul@serenity.example"],"in_reply_to":null}}"#;
        let event: Event = serde_json::from_str(v1).unwrap();
        let Event::EmailReceived(e) = event else {
            panic!("{event:?}")
        };
        let expected = EmailReceived::from(EmailReceivedV1 {
            remote: RemoteId::new("INBOX/1/7"),
            message_id: "<a@b>".into(),
            subject: "Hi".into(),
            from: "zoe@customer.example".into(),
            to: vec!["paul@serenity.example".into()],
            in_reply_to: None,
        });
        assert_eq!(e, expected);
    }
}
