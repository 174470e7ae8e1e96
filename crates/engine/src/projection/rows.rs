//! The rows the projection stores and its queries return (JSON in the redb tables).

use ledgersync_domain::event::{AlertLevel, DisableReason, ErrorClass, TestResult, Workload};
use ledgersync_domain::records::Entity;
use ledgersync_domain::state::{IntentKind, LinkStatus};
use ledgersync_domain::{MailboxId, ProfileId, RecordId, RemoteId, RuleId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The CRM row an activity is regarding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Regarding {
    /// Table name (account, opportunity, case, ...).
    pub table: String,
    /// Row id.
    pub id: RecordId,
    /// Display name.
    pub name: String,
}

/// One CRM row as the timeline shows it, with its sync state in every mailbox that has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Row id.
    pub record: RecordId,
    /// Table.
    pub entity: Entity,
    /// Subject or name.
    pub title: String,
    /// Row version last sent by the CRM.
    pub version: u64,
    /// Where the row sits in time: an appointment's start, a task's due date, otherwise when
    /// the CRM first sent the row.
    pub at: Timestamp,
    /// The row it is regarding, if any.
    pub regarding: Option<Regarding>,
    /// Owner.
    pub owner: UserId,
    /// Owner, organizer and attendees that are CRM users, sorted.
    pub participants: Vec<UserId>,
    /// The row was deleted in the CRM.
    pub deleted_in_crm: bool,
    /// Sync state per mailbox.
    pub mailboxes: BTreeMap<MailboxId, MailboxSync>,
}

impl Activity {
    /// True for the tables a timeline lists: appointments, tasks and emails.
    pub fn is_activity(&self) -> bool {
        matches!(
            self.entity,
            Entity::Appointment | Entity::Task | Entity::Email
        )
    }
}

/// The sync state of one row in one mailbox.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxSync {
    /// The link's status; `None` when the mailbox holds no link for the row.
    pub status: Option<LinkStatus>,
    /// The server item, once known.
    pub remote: Option<RemoteId>,
    /// The last decision about the row in this mailbox.
    pub last_decision: Option<LastDecision>,
}

/// The decisions one observation led to for one row in one mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastDecision {
    /// The rules of the decisions, in order, without repeats.
    pub rules: Vec<RuleId>,
    /// What the decisions did (`describe::summarize`), joined.
    pub summary: String,
    /// The parts of `summary`, one per distinct effect.
    pub did: Vec<String>,
    /// The observation that caused them (hyphenated event id).
    pub cause: Option<String>,
    /// The reason of the first decision (`describe::describe`).
    pub reason: String,
    /// When they were recorded.
    pub at: Timestamp,
    /// Journal position of the last of them.
    pub position: u64,
    /// The intents among them, each with the wording of where it stands: its part of `did`
    /// reads as pending until its outcome is recorded, then as done or failed.
    #[serde(default)]
    pub intents: Vec<IntentPart>,
}

/// One intent of a [`LastDecision`] and the words for each place it can get to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentPart {
    /// The intent's event id (hyphenated UUID).
    pub intent: String,
    /// Its part of `did` now.
    pub now: String,
    /// The words once carried out.
    pub done: String,
    /// The words once failed for good, `{why}` standing for the error.
    pub failed: String,
    /// The words while waiting.
    pub pending: String,
}

/// A CRM row linked to a server item in one mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemLink {
    /// CRM row.
    pub record: RecordId,
    /// Mailbox.
    pub mailbox: MailboxId,
    /// Server item, once known.
    pub remote: Option<RemoteId>,
    /// Link status.
    pub status: LinkStatus,
}

/// One item that failed to sync (R79), kept for the retention period (R16): an intent that
/// failed (`error_classified` with an intent), or a server item a listing could not read
/// (`item_failed`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFailure {
    /// Mailbox.
    pub mailbox: MailboxId,
    /// The failed intent's event id (hyphenated UUID); `None` for an item a listing could not
    /// read.
    pub intent: Option<String>,
    /// CRM row, when known (a server item a listing could not read has one only when linked).
    pub record: Option<RecordId>,
    /// Server item, when known.
    pub remote: Option<RemoteId>,
    /// The table, when known.
    pub entity: Option<Entity>,
    /// What the intent was to do; `None` for reading the item from the mail server.
    pub change: Option<IntentKind>,
    /// Permanent or transient (an item a listing could not read is retried by every listing:
    /// transient).
    pub class: ErrorClass,
    /// The error code.
    pub code: String,
    /// The error text.
    pub text: String,
    /// When the last failure was recorded.
    pub at: Timestamp,
    /// Failures before the last one: of the same intent, or consecutive listings that failed
    /// the item.
    pub retries: u32,
}

/// The health of one workload of one mailbox (R80).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadHealth {
    /// Mailbox.
    pub mailbox: MailboxId,
    /// Workload.
    pub workload: Workload,
    /// Last Test & Enable result.
    pub test: Option<TestResult>,
    /// Enabled?
    pub enabled: bool,
    /// Why it is disabled.
    pub disabled_reason: Option<DisableReason>,
    /// Last successful cycle.
    pub last_success: Option<Timestamp>,
    /// Last error: code and message.
    pub last_error: Option<(String, String)>,
    /// Consecutive failed cycles.
    pub consecutive_errors: u32,
    /// Next scheduled run.
    pub next_run: Option<Timestamp>,
}

/// One alert for people to read (R81): an `alert_raised` of a mailbox stream or of the
/// organization stream, kept for `alert_retention_days`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Journal position of the `alert_raised`.
    pub position: u64,
    /// When it was recorded.
    pub at: Timestamp,
    /// Error, warning or information.
    pub level: AlertLevel,
    /// The rule that raised it.
    pub rule: Option<RuleId>,
    /// The text.
    pub text: String,
    /// Who is notified.
    pub notify: Vec<String>,
    /// The mailbox, for an alert of a mailbox stream.
    pub mailbox: Option<MailboxId>,
    /// The server profile, for an alert of the organization stream (R14).
    pub profile: Option<ProfileId>,
}
