//! The v1 event catalogue: every payload the journal can hold, with its type code.
//!
//! Rules for this file (see `docs/event-format.md`):
//! - a payload struct, once released, never changes; a change is a new `schema_version` with an
//!   upcaster in [`Event::decode`] and a golden fixture for the old version;
//! - codes are never reused or renumbered; new types get new codes;
//! - every released `(type, version)` has a golden fixture in `tests/fixtures/`.

use crate::envelope::{DecodeError, EventType, config};
use crate::filter::SyncFilter;
use crate::ids::{EventId, ItemKey, MailboxId, OrgId, ProfileId, RecordId, RemoteId, UserId};
use crate::records::{Entity, Record, ShowAs};
use crate::settings::SettingUsed;
use crate::time::Timestamp;
pub use command::{CommandType, CrmDone, CrmFailed};
use serde::{Deserialize, Serialize};
use std::fmt;
pub use versions::schema_version_of;

mod command;
pub mod versions;

// ───────────────────────────── shared value types ─────────────────────────────

/// The three independent workloads of a mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Workload {
    /// Incoming email.
    Incoming,
    /// Outgoing email.
    Outgoing,
    /// Appointments, contacts and tasks.
    Act,
}

impl Workload {
    /// All workloads in display order.
    pub const ALL: [Workload; 3] = [Workload::Incoming, Workload::Outgoing, Workload::Act];
    /// Index 0..3.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::Incoming => "incoming email",
            Workload::Outgoing => "outgoing email",
            Workload::Act => "appointments, contacts and tasks",
        })
    }
}

/// A Test & Enable result for one workload (R6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TestResult {
    /// Not run.
    NotRun,
    /// Succeeded.
    Success,
    /// Failed.
    Failure,
}

/// The mail server type of a profile (SSS `servertype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServerType {
    /// Exchange-like groupware with calendars, contacts and tasks (CalDAV/CardDAV + IMAP).
    Groupware,
    /// POP3/SMTP: email only.
    Pop3Smtp,
    /// IMAP/SMTP: email only.
    ImapSmtp,
}

/// Why a user lost (or regained) read access to rows (a logical-delete cause).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccessReason {
    /// A security role was removed.
    Role,
    /// Sharing was revoked.
    Share,
    /// Team membership changed.
    Team,
    /// The user moved to another business unit.
    BusinessUnit,
}

impl fmt::Display for AccessReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessReason::Role => "security role removed",
            AccessReason::Share => "sharing revoked",
            AccessReason::Team => "team membership changed",
            AccessReason::BusinessUnit => "business unit changed",
        })
    }
}

/// Why a synced row left a mailbox's filter union while still existing in the CRM.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeaveReason {
    /// The user's sync filters were edited.
    FilterEdited,
    /// Fields of the row changed so that no filter matches any more.
    FieldChange {
        /// The fields that changed.
        fields: Vec<String>,
    },
    /// The appointment's organizer changed (R29).
    OrganizerChanged {
        /// The previous organizer's address.
        from: String,
        /// The new organizer's address.
        to: String,
    },
    /// The row was reassigned to another owner.
    OwnerChanged {
        /// Previous owner.
        from: UserId,
        /// New owner.
        to: UserId,
    },
    /// The user lost read access (R20).
    AccessLost(AccessReason),
    /// Nothing changed but time: a filter relative to `now` no longer matches.
    TimeWindow,
}

impl fmt::Display for LeaveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaveReason::FilterEdited => f.write_str("sync filter edited"),
            LeaveReason::FieldChange { fields } => {
                write!(f, "fields changed ({})", fields.join(", "))
            }
            LeaveReason::OrganizerChanged { from, to } => {
                write!(f, "organizer changed from {from} to {to}")
            }
            LeaveReason::OwnerChanged { from, to } => {
                write!(f, "owner changed from {from} to {to}")
            }
            LeaveReason::AccessLost(r) => write!(f, "access lost ({r})"),
            LeaveReason::TimeWindow => f.write_str("left a filter's time window"),
        }
    }
}

/// How an item came to be tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TrackedBy {
    /// A sync filter selected the CRM row.
    Filter,
    /// The tracking category (`Tracked to CRM`).
    Category,
    /// A tracked folder.
    Folder,
    /// A tracking token in the subject.
    Token,
    /// The In-Reply-To header.
    InReplyTo,
    /// The conversation index / References.
    Conversation,
    /// Smart matching.
    SmartMatch,
    /// A client add-in.
    AddIn,
}

/// The folder an email was found in (R49).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmailFolder {
    /// The Inbox itself.
    #[default]
    Inbox,
    /// A tracked folder under the Inbox, by its server id (RFC 8474 MAILBOXID, else its name).
    Tracked(String),
    /// The Sent folder.
    Sent,
    /// Another folder, by name.
    Other(String),
}

/// What the shell looked up for an incoming email before it was recorded (decision 0018):
/// every directory row of its addresses, the filtering methods of the users and queues among
/// them, the tracked emails it can refer to. `decide` needs nothing else from the organization.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailFacts {
    /// Each address of the message (lower case) with every row it matches, active or not.
    pub parties: Vec<(String, Vec<crate::email::resolve::Party>)>,
    /// The filtering method of each user or queue among them, and of the processing mailbox's
    /// user.
    pub acceptors: Vec<crate::email::Acceptor>,
    /// The tracked emails its headers, subject or addresses can refer to.
    pub tracked: Vec<crate::email::correlate::TrackedEmail>,
    /// The row a tracked folder's rule sets (R72).
    pub folder_regarding: Option<crate::records::RecordRef>,
    /// The later of the profile's and the mailbox's "process email from" dates (R50).
    pub process_from: Option<Timestamp>,
}

/// Which side an intent writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// The mail server.
    MailServer,
    /// The CRM.
    Crm,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::MailServer => "mail server",
            Side::Crm => "CRM",
        })
    }
}

/// What the mail server (or a protocol client) answered when an operation failed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServerError {
    /// A status or error code (`401`, `503`, `timeout`, `NO [AUTHENTICATIONFAILED]`, ...).
    pub code: String,
    /// The server's message.
    pub message: String,
    /// The server's Retry-After, when it sent one.
    pub retry_after: Option<Timestamp>,
}

/// Permanent or transient (R10, R11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorClass {
    /// Will not heal by retrying.
    Permanent,
    /// May heal by retrying.
    Transient,
}

/// Who must act on an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorScope {
    /// The server or its profile credentials: the profile owner.
    Server,
    /// The mailbox's own credentials or rights: the mailbox owner.
    Mailbox,
    /// One item only.
    Item,
}

/// Why a workload is disabled.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DisableReason {
    /// A permanent error (R10).
    PermanentError,
    /// The transient-retry limit was reached (R11).
    TransientLimit,
    /// Test & Enable failed for this workload (R6).
    TestFailed,
    /// The address is not approved (R5).
    NotApproved,
    /// Another organization owns ACT sync for this mailbox (R2).
    OtherOrganization,
    /// The mailbox was mapped to another user (R1).
    Remapped,
    /// An administrator disabled it.
    Administrator,
    /// The server type cannot run this workload (R4).
    Unsupported,
}

/// Alert severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertLevel {
    /// Error.
    Error,
    /// Warning.
    Warning,
    /// Information.
    Information,
}

/// The mail-server fields of an item, as parsed by a connector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteFields {
    /// A calendar event.
    Appointment {
        /// Summary.
        subject: String,
        /// Organizer address.
        organizer: Option<String>,
        /// Start.
        start: Timestamp,
        /// End.
        end: Timestamp,
        /// Transparency: Free or Busy.
        show_as: ShowAs,
    },
    /// An address-book card.
    Contact {
        /// Formatted name.
        full_name: String,
        /// Email.
        email: String,
    },
    /// A to-do.
    Task {
        /// Summary.
        subject: String,
        /// Percent complete.
        percent_complete: u8,
        /// Due date.
        due: Option<Timestamp>,
    },
}

impl RemoteFields {
    /// The entity the item maps to (mail-server tasks always map to CRM tasks, R44).
    pub fn entity(&self) -> Entity {
        match self {
            RemoteFields::Appointment { .. } => Entity::Appointment,
            RemoteFields::Contact { .. } => Entity::Contact,
            RemoteFields::Task { .. } => Entity::Task,
        }
    }
    /// Subject or name.
    pub fn title(&self) -> &str {
        match self {
            RemoteFields::Appointment { subject, .. } | RemoteFields::Task { subject, .. } => {
                subject
            }
            RemoteFields::Contact { full_name, .. } => full_name,
        }
    }
}

/// A mail-server item as seen by a connector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteItem {
    /// Server id.
    pub remote: RemoteId,
    /// Server version tag (ETag, ChangeKey, mtime+hash).
    pub etag: String,
    /// Hash of the content, to tell real changes from etag churn.
    pub content_hash: u64,
    /// The tracking signal the user set, if any.
    pub tracked: Option<TrackedBy>,
    /// Set when the connector recognised the item as a copy of another item.
    pub copy_of: Option<RemoteId>,
    /// Parsed fields.
    pub fields: RemoteFields,
}

/// What an intent writes: the fields that matter for the rules, not the whole item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemWrite {
    /// Subject or name.
    pub title: String,
    /// The CRM row version written.
    pub version: u64,
    /// Free/Busy to write for an appointment (R30).
    pub show_as: Option<ShowAs>,
    /// Whether a reminder is set (R31).
    pub reminder: bool,
    /// Whether attendees get an invitation or update (R26, R40).
    pub notify_attendees: bool,
    /// Number of attendees.
    pub attendees: u32,
    /// Task completion to write (R47, R48).
    pub completed: bool,
    /// Actual start written on a CRM task created from the mail server (R48).
    pub actual_start: Option<Timestamp>,
}

/// The explanation every decision carries: a plain-language reason and the settings consulted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    /// Plain-language reason.
    pub reason: String,
    /// Settings consulted, with their values at decision time.
    pub settings: Vec<SettingUsed>,
}

// ───────────────────────────── payloads ─────────────────────────────

macro_rules! payload {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name { $($(#[$fdoc])* pub $field: $ty),* }
    };
}

payload!(/// An organization setting changed (org stream).
SettingChanged { /// Setting key.
    key: String, /// New value.
    value: String });
payload!(/// A CRM user became known (org stream).
UserRegistered { /// User id.
    user: UserId, /// Display name.
    name: String, /// Primary email.
    email: String });
payload!(/// An email server profile was registered (org stream).
ProfileRegistered { /// Profile id.
    profile: ProfileId, /// Name.
    name: String, /// Server type.
    server_type: ServerType, /// Max concurrent connections (1–300).
    max_connections: u16 });
payload!(/// A server profile's alert option (SSS `sendemailalert`, default off) was set: when on,
/// the profile owner is notified when more than half of its mailboxes fail within an hour (R14).
ProfileAlertingSet { /// Profile id.
    profile: ProfileId, /// Notify the profile owner?
    send_alert: bool });
payload!(/// A mailbox was registered.
MailboxRegistered { /// Mailbox id.
    mailbox: MailboxId, /// Organization.
    org: OrgId, /// Email address.
    address: String, /// Server profile.
    profile: ProfileId, /// Server type of the profile.
    server_type: ServerType });
payload!(/// An administrator mapped the mailbox to a user (observation; R1 decides).
MailboxMapped { /// The mailbox.
    mailbox: MailboxId, /// The user.
    user: UserId });
payload!(/// The mailbox's address was approved or the approval withdrawn.
AddressApproved { /// The mailbox.
    mailbox: MailboxId, /// Approved?
    approved: bool });
payload!(/// Test & Enable ran (R6): results per workload, and the ACT organization marker found.
MailboxTested { /// The mailbox.
    mailbox: MailboxId, /// Incoming email test.
    incoming: TestResult, /// Outgoing email test.
    outgoing: TestResult, /// ACT test.
    act: TestResult, /// The organization the mail server says owns ACT sync (R2).
    act_org_marker: Option<OrgId>, /// The administrator chose to take ACT sync over.
    override_other_org: bool });
payload!(/// An administrator asked to disable a workload.
DisableRequested { /// The mailbox.
    mailbox: MailboxId, /// Workload.
    workload: Workload, /// Who asked.
    by: String });
payload!(/// An administrator approved the deletes the delete breaker holds in a mailbox (R25,
/// `ledgersync mailbox approve-deletes`): recorded in the organization stream and routed to the
/// mailbox, where each held delete is decided as its `item_gone` would have been.
DeletesApproved { /// The mailbox.
    mailbox: MailboxId, /// Who approved.
    by: String });
payload!(/// The CRM sent a full snapshot of a created or changed row.
RecordUpserted { /// The row.
    record: Record });
payload!(/// The CRM row was deleted (physical delete).
RecordDeleted { /// Row id.
    id: RecordId, /// Table.
    entity: Entity });
payload!(/// The CRM row was reassigned; carries the snapshot after the change.
OwnerChanged { /// The row after reassignment.
    record: Record, /// Owner before.
    previous_owner: UserId });
payload!(/// A user lost read access to rows.
AccessLost { /// The user.
    user: UserId, /// The rows.
    records: Vec<RecordId>, /// Why.
    reason: AccessReason });
payload!(/// A user regained read access to rows.
AccessRegained { /// The user.
    user: UserId, /// The rows.
    records: Vec<RecordId>, /// Why.
    reason: AccessReason });
payload!(/// A user's sync filters for one table changed; carries the whole new set for that table.
FilterChanged { /// The user.
    user: UserId, /// The table.
    entity: Entity, /// Every filter of the user for that table.
    filters: Vec<SyncFilter> });
payload!(/// A connector saw an item (new or changed).
ItemSeen { /// The item.
    item: RemoteItem });
payload!(/// A connector confirmed an item is gone (a positive delete, never mere absence).
ItemGone { /// Server id.
    remote: RemoteId });
payload!(/// A complete listing is about to report these items gone: reported once, before their
/// `item_gone`s, so that `decide` can weigh the whole cycle's deletes against the delete
/// breaker (R25). The connector only lists them; the domain decides.
DeletionsListed { /// Workload.
    workload: Workload, /// The server ids the listing reports gone, in the order of their `item_gone`s.
    remotes: Vec<RemoteId> });
payload!(/// A listing finished: the end of a cycle.
ListingCompleted { /// Workload.
    workload: Workload, /// Items the listing returned: for a listing since a cursor, the changes it found.
    items: u32 });
payload!(/// A listing failed: absence of items means nothing (R25).
ListingFailed { /// Workload.
    workload: Workload, /// What the server said.
    error: ServerError });
payload!(/// A listing came back partial: absence of items means nothing (R25).
ListingPartial { /// Workload.
    workload: Workload, /// Why it is partial.
    reason: String });
payload!(/// The server invalidated the sync cursor (UIDVALIDITY change, expired sync-token).
CursorReset { /// Workload.
    workload: Workload, /// Server's reason.
    reason: String });
payload!(/// An email found in a folder the incoming workload reads, with the facts its decision
/// needs (decision 0018). Schema version 2; version 1 had the Inbox's headers only, see
/// [`versions::EmailReceivedV1`].
EmailReceived { /// Server id.
    remote: RemoteId, /// Message-ID.
    message_id: String, /// Subject.
    subject: String, /// Sender.
    from: String, /// To.
    to: Vec<String>, /// In-Reply-To.
    in_reply_to: Option<String>, /// References, oldest first.
    #[serde(default)] references: Vec<String>, /// Thread-Index.
    #[serde(default)] thread_index: Option<String>, /// Cc.
    #[serde(default)] cc: Vec<String>, /// Bcc (known for sent mail).
    #[serde(default)] bcc: Vec<String>, /// When the server received it (IMAP INTERNALDATE).
    #[serde(default)] received: Timestamp, /// Protected by rights management.
    #[serde(default)] irm_protected: bool, /// The folder it is in.
    #[serde(default)] folder: EmailFolder, /// Tracked by hand (the tracking keyword, the add-in), if it was.
    #[serde(default)] manual: Option<crate::email::Manual>, /// Its size in bytes.
    #[serde(default)] size: u64, /// What the shell looked up for it.
    #[serde(default)] facts: EmailFacts });
payload!(/// A connector's push signal (IMAP IDLE, a webhook, a sync-token change): something
/// changed on the server, so the workload's next cycle should not wait.
PushReceived { /// Workload.
    workload: Workload });
payload!(/// A connector found an item it could not read or understand (a corrupt file, a calendar
/// entry without a start): a failure of that item only (R12), stored for people to see (R79),
/// never a deletion. Every listing reports again each item it still cannot understand.
ItemFailed { /// Workload whose listing found it.
    workload: Workload, /// Server id.
    remote: RemoteId, /// The table the item maps to, when the connector can tell.
    entity: Option<Entity>, /// What went wrong: a code and a text the user can act on.
    error: ServerError });
payload!(/// An intent was carried out (schema version 2; version 1 had no `crm`, see
/// [`versions::IntentSucceededV1`]).
IntentSucceeded { /// The intent event.
    intent: EventId, /// Server id of the created item (for a CRM command: the item it came from).
    remote: Option<RemoteId>, /// New server version tag.
    etag: Option<String>, /// Set when the CRM answered a CRM command: the row it holds now.
    crm: Option<CrmDone> });
payload!(/// An intent failed (schema version 2; version 1 had no `crm`, see
/// [`versions::IntentFailedV1`]).
IntentFailed { /// The intent event.
    intent: EventId, /// What the server (or the CRM) said.
    error: ServerError, /// Set when the CRM answered a CRM command: whether it may be retried.
    crm: Option<CrmFailed> });
payload!(/// The runtime noted that a mailbox failed (its decisions held a workload-level
/// `error_classified` or a `workload_disabled` for an error): recorded in the organization
/// stream, where R14 counts the failures of each profile.
MailboxFailureNoted { /// The mailbox.
    mailbox: MailboxId, /// Its server profile.
    profile: ProfileId, /// The workload that failed.
    workload: Workload, /// When the failure was decided (the recorded time of its decision).
    at: Timestamp });
payload!(/// Decision: an item is tracked.
ItemTracked { /// Why.
    basis: Basis, /// CRM row, when known.
    record: Option<RecordId>, /// Server item.
    remote: RemoteId, /// How.
    how: TrackedBy });
payload!(/// Decision: an item is no longer tracked; the CRM row stays (R73).
ItemUntracked { /// Why.
    basis: Basis, /// CRM row.
    record: Option<RecordId>, /// Server item.
    remote: RemoteId });
payload!(/// Decision: a CRM row and a server item are linked.
LinkCreated { /// Why.
    basis: Basis, /// CRM row.
    record: RecordId, /// Server item.
    remote: RemoteId });
payload!(/// Decision: the link is dropped; the server item stays where it is.
Unlinked { /// Why.
    basis: Basis, /// CRM row.
    record: RecordId, /// Server item.
    remote: Option<RemoteId> });
payload!(/// Decision: a synced row left the filter union while it still exists (R22/R23).
LogicalDelete { /// Why.
    basis: Basis, /// CRM row.
    record: RecordId, /// The cause.
    reason: LeaveReason });
payload!(/// Decision: create an item.
CreateIntent { /// Why.
    basis: Basis, /// CRM row (for CRM-side creates, the id chosen for the new row).
    record: RecordId, /// Server item (for CRM-side creates).
    remote: Option<RemoteId>, /// Where to write.
    target: Side, /// What to write.
    item: ItemWrite, /// Idempotency key for the call.
    key: String });
payload!(/// Decision: update an item.
UpdateIntent { /// Why.
    basis: Basis, /// CRM row.
    record: RecordId, /// Server item.
    remote: Option<RemoteId>, /// Where to write.
    target: Side, /// What to write.
    item: ItemWrite, /// Idempotency key.
    key: String });
payload!(/// Decision: delete an item.
DeleteIntent { /// Why.
    basis: Basis, /// CRM row.
    record: RecordId, /// Server item.
    remote: Option<RemoteId>, /// Where to delete.
    target: Side, /// Idempotency key.
    key: String });
payload!(/// Decision: send a meeting cancellation to attendees (iMIP CANCEL).
CancelIntent { /// Why.
    basis: Basis, /// CRM row.
    record: RecordId, /// Server item.
    remote: Option<RemoteId>, /// Attendee addresses.
    attendees: Vec<String>, /// Row version cancelled (the R82 dedupe key with the row id).
    version: u64, /// Idempotency key.
    key: String });
payload!(/// Decision: nothing is done, and why (R25, R28, R32, R37, R82, ...).
NoAction { /// Why.
    basis: Basis, /// CRM row.
    record: Option<RecordId>, /// Server item.
    remote: Option<RemoteId> });
payload!(/// Decision: an email is tracked into the CRM (schema version 2; version 1 had no
/// correlated activity, regarding row, parties or owner, see [`versions::EmailAcceptedV1`]).
EmailAccepted { /// Why: each step with its rule.
    basis: Basis, /// Server item.
    remote: RemoteId, /// Its Message-ID.
    message_id: String, /// The user or queue that accepted it (R52), or the mailbox's user
    /// when it was tracked by hand (R56).
    accepting: RecordId, /// Whose cycle found it.
    receiving_mailbox: MailboxId, /// How it correlated, or how it was tracked by hand.
    correlation: Option<TrackedBy>, /// The email it correlated with.
    correlated: Option<RecordId>, /// Whether that email is its parent activity (R61).
    parent: bool, /// The row it is regarding (R61, R72).
    regarding: Option<crate::records::RecordRef>, /// The sender's row (R66).
    sender: Option<RecordId>, /// The rows of To, Cc and Bcc (R67).
    recipients: Vec<RecordId>, /// A row to create for the unresolved sender (R68).
    create: Option<crate::email::resolve::AutoCreate>, /// Its owner (R69).
    owner: Option<RecordId> });
payload!(/// Decision: an email is not tracked.
EmailRejected { /// Why.
    basis: Basis, /// Server item.
    remote: RemoteId });
payload!(/// Decision: a conflict between both sides was resolved.
ConflictResolved { /// Why.
    basis: Basis, /// CRM row.
    record: RecordId, /// The side whose version wins.
    winner: Side });
payload!(/// Decision: an error was classified.
ErrorClassified { /// Why.
    basis: Basis, /// Workload.
    workload: Workload, /// Permanent or transient.
    class: ErrorClass, /// Who must act.
    scope: ErrorScope, /// Consecutive failure count including this one.
    attempt: u32, /// Limit before disabling.
    limit: u32, /// The failed intent, for item-level errors.
    intent: Option<EventId>, /// The error.
    error: ServerError });
payload!(/// Decision: the workload runs again at a time.
RetryScheduled { /// Why.
    basis: Basis, /// Workload.
    workload: Workload, /// When.
    at: Timestamp });
payload!(/// Decision: when the workload's next cycle runs (R7, R8, R9).
CycleScheduled { /// Why.
    basis: Basis, /// Workload.
    workload: Workload, /// When.
    at: Timestamp });
payload!(/// Decision: a workload is enabled.
WorkloadEnabled { /// Why.
    basis: Basis, /// Workload.
    workload: Workload });
payload!(/// Decision: a workload is disabled.
WorkloadDisabled { /// Why.
    basis: Basis, /// Workload.
    workload: Workload, /// Cause.
    reason: DisableReason });
payload!(/// Decision: an alert for people to read.
AlertRaised { /// Why.
    basis: Basis, /// Severity.
    level: AlertLevel, /// Text.
    text: String, /// Who is notified (mailbox owner, profile owner).
    notify: Vec<String> });
payload!(/// Decision: the delete breaker tripped (R25): one cycle would delete `deletes` linked items,
/// more than `delete_breaker_percent` / `delete_breaker_items` allow (named in the basis); the
/// mailbox's deletes are held on both sides until approved or the items come back.
BreakerTripped { /// Why.
    basis: Basis, /// Deletes that would have been sent.
    deletes: u32 });
payload!(/// Decision: the delete breaker closed (R25): an administrator approved the held deletes
/// (`approved`, they are decided with this decision), or every held item came back.
BreakerClosed { /// Why.
    basis: Basis, /// The workload whose deletes were held.
    workload: Workload, /// True when an administrator approved the held deletes.
    approved: bool });
payload!(/// Decision: a user's mapping to this mailbox ends (R1).
MappingEnded { /// Why.
    basis: Basis, /// The user.
    user: UserId });
payload!(/// Decision: a user is mapped to this mailbox (R1).
MappingStarted { /// Why.
    basis: Basis, /// The user.
    user: UserId });
payload!(/// Decision: this organization takes over ACT sync of the mailbox (R2 override).
OrganizationClaimed { /// Why.
    basis: Basis, /// The organization.
    org: OrgId });

// ───────────────────────────── the catalogue ─────────────────────────────

/// What an event is, for readers of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventClass {
    /// Organization data (settings, users, profiles).
    Organization,
    /// Mailbox lifecycle observations.
    Lifecycle,
    /// Something the CRM reported.
    CrmObservation,
    /// Something a mail-server connector reported.
    MailObservation,
    /// Something the engine concluded.
    Decision,
    /// The result of carrying out an intent.
    Outcome,
    /// Something the live runtime noticed about the organization's mailboxes (R14), recorded
    /// in the organization stream with the decisions it caused.
    OrgObservation,
}

macro_rules! catalogue {
    ($($code:literal $variant:ident $name:literal $class:ident;)*) => {
        /// Every event payload, current version.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "type", content = "data", rename_all = "snake_case")]
        pub enum Event {
            $(
                #[doc = concat!("`", $name, "` (code ", $code, ")")]
                $variant($variant),
            )*
        }

        impl Event {
            /// Every `(code, name, class)` in the catalogue.
            pub const CATALOGUE: &'static [(u16, &'static str, EventClass)] =
                &[$(($code, $name, EventClass::$class)),*];

            /// The type code.
            pub fn event_type(&self) -> EventType {
                match self { $(Event::$variant(_) => EventType($code),)* }
            }

            /// The type name.
            pub fn name(&self) -> &'static str {
                match self { $(Event::$variant(_) => $name,)* }
            }

            /// What kind of event it is.
            pub fn class(&self) -> EventClass {
                match self { $(Event::$variant(_) => EventClass::$class,)* }
            }

            /// The current schema version of this payload type (the one it is written with).
            pub fn schema_version(&self) -> u16 {
                schema_version_of(self.event_type())
            }

            /// Encodes the payload (bincode 2, standard configuration).
            pub fn encode_payload(&self) -> Vec<u8> {
                match self {
                    $(Event::$variant(p) => bincode::serde::encode_to_vec(p, config()),)*
                }
                .expect("encoding a payload to a Vec cannot fail")
            }

            /// Decodes a payload of `(event_type, schema_version)`, upcasting older versions.
            pub fn decode(
                event_type: EventType,
                schema_version: u16,
                bytes: &[u8],
            ) -> Result<Event, DecodeError> {
                match event_type.0 {
                    $($code => {
                        if schema_version == schema_version_of(event_type) {
                            return decode_exact::<$variant>(bytes).map(Event::$variant);
                        }
                        match versions::upcast(event_type, schema_version, bytes) {
                            Some(upcast) => upcast,
                            None => Err(DecodeError::UnknownSchemaVersion {
                                event_type: $name,
                                version: schema_version,
                            }),
                        }
                    })*
                    other => Err(DecodeError::UnknownEventType(other)),
                }
            }
        }

        /// The name of a type code, if this build knows it.
        pub fn type_name(event_type: EventType) -> Option<&'static str> {
            match event_type.0 { $($code => Some($name),)* _ => None }
        }
    };
}

/// The first schema version of every payload type; most types are still at it (the current
/// version of each type is [`schema_version_of`]).
pub const FIRST_SCHEMA_VERSION: u16 = 1;

pub(crate) fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (v, used) = bincode::serde::decode_from_slice::<T, _>(bytes, config())
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError::Malformed(format!(
            "{} trailing bytes after the payload",
            bytes.len() - used
        )));
    }
    Ok(v)
}

catalogue! {
    1 SettingChanged "setting_changed" Organization;
    2 UserRegistered "user_registered" Organization;
    3 ProfileRegistered "profile_registered" Organization;
    4 ProfileAlertingSet "profile_alerting_set" Organization;
    10 MailboxRegistered "mailbox_registered" Lifecycle;
    11 MailboxMapped "mailbox_mapped" Lifecycle;
    12 AddressApproved "address_approved" Lifecycle;
    13 MailboxTested "mailbox_tested" Lifecycle;
    14 DisableRequested "disable_requested" Lifecycle;
    15 DeletesApproved "deletes_approved" Lifecycle;
    20 RecordUpserted "record_upserted" CrmObservation;
    21 RecordDeleted "record_deleted" CrmObservation;
    22 OwnerChanged "owner_changed" CrmObservation;
    23 AccessLost "access_lost" CrmObservation;
    24 AccessRegained "access_regained" CrmObservation;
    25 FilterChanged "filter_changed" CrmObservation;
    30 ItemSeen "item_seen" MailObservation;
    31 ItemGone "item_gone" MailObservation;
    32 ListingCompleted "listing_completed" MailObservation;
    33 ListingFailed "listing_failed" MailObservation;
    34 ListingPartial "listing_partial" MailObservation;
    35 CursorReset "cursor_reset" MailObservation;
    36 EmailReceived "email_received" MailObservation;
    37 PushReceived "push_received" MailObservation;
    38 ItemFailed "item_failed" MailObservation;
    39 DeletionsListed "deletions_listed" MailObservation;
    40 IntentSucceeded "intent_succeeded" Outcome;
    41 IntentFailed "intent_failed" Outcome;
    50 ItemTracked "item_tracked" Decision;
    51 ItemUntracked "item_untracked" Decision;
    52 LinkCreated "link_created" Decision;
    53 Unlinked "unlinked" Decision;
    54 LogicalDelete "logical_delete" Decision;
    55 CreateIntent "create_intent" Decision;
    56 UpdateIntent "update_intent" Decision;
    57 DeleteIntent "delete_intent" Decision;
    58 CancelIntent "cancel_intent" Decision;
    59 NoAction "no_action" Decision;
    60 EmailAccepted "email_accepted" Decision;
    61 EmailRejected "email_rejected" Decision;
    62 ConflictResolved "conflict_resolved" Decision;
    63 ErrorClassified "error_classified" Decision;
    64 RetryScheduled "retry_scheduled" Decision;
    65 WorkloadEnabled "workload_enabled" Decision;
    66 WorkloadDisabled "workload_disabled" Decision;
    67 AlertRaised "alert_raised" Decision;
    68 BreakerTripped "breaker_tripped" Decision;
    69 MappingEnded "mapping_ended" Decision;
    70 MappingStarted "mapping_started" Decision;
    71 OrganizationClaimed "organization_claimed" Decision;
    72 CycleScheduled "cycle_scheduled" Decision;
    73 BreakerClosed "breaker_closed" Decision;
    80 MailboxFailureNoted "mailbox_failure_noted" OrgObservation;
}

impl Event {
    /// The decision's explanation, for decision events.
    pub fn basis(&self) -> Option<&Basis> {
        Some(match self {
            Event::ItemTracked(p) => &p.basis,
            Event::ItemUntracked(p) => &p.basis,
            Event::LinkCreated(p) => &p.basis,
            Event::Unlinked(p) => &p.basis,
            Event::LogicalDelete(p) => &p.basis,
            Event::CreateIntent(p) => &p.basis,
            Event::UpdateIntent(p) => &p.basis,
            Event::DeleteIntent(p) => &p.basis,
            Event::CancelIntent(p) => &p.basis,
            Event::NoAction(p) => &p.basis,
            Event::EmailAccepted(p) => &p.basis,
            Event::EmailRejected(p) => &p.basis,
            Event::ConflictResolved(p) => &p.basis,
            Event::ErrorClassified(p) => &p.basis,
            Event::RetryScheduled(p) => &p.basis,
            Event::WorkloadEnabled(p) => &p.basis,
            Event::WorkloadDisabled(p) => &p.basis,
            Event::AlertRaised(p) => &p.basis,
            Event::BreakerTripped(p) => &p.basis,
            Event::MappingEnded(p) => &p.basis,
            Event::MappingStarted(p) => &p.basis,
            Event::OrganizationClaimed(p) => &p.basis,
            Event::CycleScheduled(p) => &p.basis,
            Event::BreakerClosed(p) => &p.basis,
            _ => return None,
        })
    }

    /// True for observations (CRM, mail, lifecycle, outcomes, organization observations): the
    /// inputs of `decide` (and, for `OrgObservation`, of `alerting::decide_org`).
    pub fn is_observation(&self) -> bool {
        matches!(
            self.class(),
            EventClass::Lifecycle
                | EventClass::CrmObservation
                | EventClass::MailObservation
                | EventClass::Outcome
                | EventClass::OrgObservation
        )
    }

    /// The CRM row this event is about, when there is exactly one.
    pub fn record(&self) -> Option<&RecordId> {
        match self {
            Event::RecordUpserted(p) => Some(&p.record.id),
            Event::OwnerChanged(p) => Some(&p.record.id),
            Event::RecordDeleted(p) => Some(&p.id),
            Event::IntentSucceeded(p) => p.crm.as_ref().map(|c| &c.record),
            Event::IntentFailed(p) => p.crm.as_ref().map(|c| &c.record),
            Event::ItemTracked(p) => p.record.as_ref(),
            Event::ItemUntracked(p) => p.record.as_ref(),
            Event::LinkCreated(p) => Some(&p.record),
            Event::Unlinked(p) => Some(&p.record),
            Event::LogicalDelete(p) => Some(&p.record),
            Event::CreateIntent(p) => Some(&p.record),
            Event::UpdateIntent(p) => Some(&p.record),
            Event::DeleteIntent(p) => Some(&p.record),
            Event::CancelIntent(p) => Some(&p.record),
            Event::NoAction(p) => p.record.as_ref(),
            Event::ConflictResolved(p) => Some(&p.record),
            _ => None,
        }
    }

    /// The mail-server item this event is about, when there is one.
    pub fn remote(&self) -> Option<&RemoteId> {
        match self {
            Event::ItemSeen(p) => Some(&p.item.remote),
            Event::ItemGone(p) => Some(&p.remote),
            Event::ItemFailed(p) => Some(&p.remote),
            Event::EmailReceived(p) => Some(&p.remote),
            Event::IntentSucceeded(p) => p.remote.as_ref(),
            Event::ItemTracked(p) => Some(&p.remote),
            Event::ItemUntracked(p) => Some(&p.remote),
            Event::LinkCreated(p) => Some(&p.remote),
            Event::Unlinked(p) => p.remote.as_ref(),
            Event::CreateIntent(p) => p.remote.as_ref(),
            Event::UpdateIntent(p) => p.remote.as_ref(),
            Event::DeleteIntent(p) => p.remote.as_ref(),
            Event::CancelIntent(p) => p.remote.as_ref(),
            Event::NoAction(p) => p.remote.as_ref(),
            Event::EmailAccepted(p) => Some(&p.remote),
            Event::EmailRejected(p) => Some(&p.remote),
            _ => None,
        }
    }

    /// The journal index keys of this event: its CRM rows, server items and subjects.
    pub fn item_keys(&self) -> Vec<ItemKey> {
        let mut keys = Vec::new();
        if let Some(r) = self.record() {
            keys.push(ItemKey::Crm(r.clone()));
        }
        if let Some(r) = self.remote() {
            keys.push(ItemKey::Remote(r.clone()));
        }
        match self {
            Event::RecordUpserted(p) => {
                keys.push(ItemKey::Subject(p.record.title().to_lowercase()))
            }
            Event::OwnerChanged(p) => keys.push(ItemKey::Subject(p.record.title().to_lowercase())),
            Event::ItemSeen(p) => keys.push(ItemKey::Subject(p.item.fields.title().to_lowercase())),
            Event::AccessLost(p) => keys.extend(p.records.iter().cloned().map(ItemKey::Crm)),
            Event::AccessRegained(p) => keys.extend(p.records.iter().cloned().map(ItemKey::Crm)),
            Event::DeletionsListed(p) => {
                keys.extend(p.remotes.iter().cloned().map(ItemKey::Remote))
            }
            Event::EmailReceived(p) => keys.push(ItemKey::Subject(p.subject.to_lowercase())),
            // "Why was this email tracked to that account": the regarding row finds it.
            Event::EmailAccepted(p) => {
                keys.extend(p.regarding.iter().map(|r| ItemKey::Crm(r.id.clone())))
            }
            _ => {}
        }
        keys
    }
}
