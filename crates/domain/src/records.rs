//! CRM records as the engine sees them: full snapshots sent by the CRM on every change.

use crate::ids::{RecordId, UserId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The CRM tables the engine synchronizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Entity {
    /// Appointments (meetings), including service appointments.
    Appointment,
    /// Contacts.
    Contact,
    /// Tasks and the activities mapped to mail-server tasks: fax, letter, phone call.
    Task,
    /// Emails (not governed by sync filters).
    Email,
}

impl Entity {
    /// Lowercase name as used in filters and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Entity::Appointment => "appointment",
            Entity::Contact => "contact",
            Entity::Task => "task",
            Entity::Email => "email",
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Activity state (statecode) of an appointment or task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActivityState {
    /// Open (draft or not yet scheduled).
    Open,
    /// Scheduled (a booked appointment).
    Scheduled,
    /// Completed.
    Completed,
    /// Canceled.
    Canceled,
}

impl ActivityState {
    /// True for Completed and Canceled, the "closed" states.
    pub fn is_closed(self) -> bool {
        matches!(self, ActivityState::Completed | ActivityState::Canceled)
    }
    /// Lowercase name as used in filters.
    pub fn name(self) -> &'static str {
        match self {
            ActivityState::Open => "open",
            ActivityState::Scheduled => "scheduled",
            ActivityState::Completed => "completed",
            ActivityState::Canceled => "canceled",
        }
    }
}

/// Appointment status (statuscode) relevant to Free/Busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShowAs {
    /// Busy.
    Busy,
    /// Free.
    Free,
    /// Tentative.
    Tentative,
    /// Out of office.
    OutOfOffice,
}

/// Priority (importance).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// Low.
    Low,
    /// Normal.
    Normal,
    /// High.
    High,
}

/// A participant of an activity: a CRM user (with a mailbox perhaps) or an outside address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Party {
    /// The CRM user, when the address resolves to one.
    pub user: Option<UserId>,
    /// Email address.
    pub email: String,
    /// Display name.
    pub name: String,
}

/// A reference to the CRM row an activity is regarding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordRef {
    /// Table name (account, opportunity, case, ...).
    pub table: String,
    /// Row id.
    pub id: RecordId,
    /// Display name.
    pub name: String,
}

/// An appointment (meeting) or service appointment.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Appointment {
    /// Subject.
    pub subject: String,
    /// Organizer; `None` when the CRM row has none (it cannot be distributed).
    pub organizer: Option<Party>,
    /// Required attendees.
    pub required: Vec<Party>,
    /// Optional attendees.
    pub optional: Vec<Party>,
    /// Start.
    pub start: Timestamp,
    /// End.
    pub end: Timestamp,
    /// All-day event.
    pub all_day: bool,
    /// Location.
    pub location: String,
    /// Description.
    pub body: String,
    /// State.
    pub state: ActivityState,
    /// Show-as status.
    pub show_as: ShowAs,
    /// Priority.
    pub priority: Priority,
    /// Regarding row.
    pub regarding: Option<RecordRef>,
    /// A service appointment: one copy per participant, never invitations or cancellations (R40).
    pub service: bool,
    /// Recurrence rule text (RRULE) of a series master, if any.
    pub recurrence: Option<String>,
}

impl Appointment {
    /// Every attendee, required then optional.
    pub fn attendees(&self) -> impl Iterator<Item = &Party> {
        self.required.iter().chain(self.optional.iter())
    }
    /// Number of attendees other than the organizer.
    pub fn attendee_count(&self) -> usize {
        let org = self.organizer.as_ref().map(|p| p.email.to_lowercase());
        self.attendees()
            .filter(|p| Some(p.email.to_lowercase()) != org)
            .count()
    }
    /// True when `user` is the organizer.
    pub fn organized_by(&self, user: &UserId) -> bool {
        self.organizer.as_ref().and_then(|p| p.user.as_ref()) == Some(user)
    }
}

/// Contact status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContactState {
    /// Active.
    Active,
    /// Inactive.
    Inactive,
}

/// A contact.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Contact {
    /// Full name.
    pub full_name: String,
    /// Email address.
    pub email: String,
    /// Phone.
    pub phone: String,
    /// Company.
    pub company: String,
    /// Status.
    pub state: ContactState,
}

/// The CRM activity types that map to a mail-server task (R44).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskKind {
    /// Task.
    Task,
    /// Fax.
    Fax,
    /// Letter.
    Letter,
    /// Phone call.
    PhoneCall,
}

/// A task, fax, letter or phone call.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Task {
    /// Which activity type.
    pub kind: TaskKind,
    /// Subject.
    pub subject: String,
    /// Description.
    pub body: String,
    /// Start date.
    pub start: Option<Timestamp>,
    /// Due date (scheduled end).
    pub due: Option<Timestamp>,
    /// Actual start.
    pub actual_start: Option<Timestamp>,
    /// Actual end (completion date).
    pub actual_end: Option<Timestamp>,
    /// Percent complete.
    pub percent_complete: u8,
    /// State.
    pub state: ActivityState,
    /// Priority.
    pub priority: Priority,
    /// Regarding row.
    pub regarding: Option<RecordRef>,
}

/// Where an email activity is in its life (its CRM status reason, reduced to what the engine
/// acts on). Only `pending_send` is sent (R75).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailState {
    /// Being written in the CRM: not sent.
    Draft,
    /// Sent with the Send request and waiting for the sender's mailbox to submit it (R75).
    PendingSend,
    /// Sent (R76).
    Sent,
    /// Received and tracked: the state of every email row written before the state was
    /// recorded.
    #[default]
    Received,
}

impl EmailState {
    /// Lowercase name as the CRM wire format spells it.
    pub fn name(self) -> &'static str {
        match self {
            EmailState::Draft => "draft",
            EmailState::PendingSend => "pending_send",
            EmailState::Sent => "sent",
            EmailState::Received => "received",
        }
    }
}

impl fmt::Display for EmailState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An email activity (schema version 2 of the record payloads: the state, Cc, the bodies and
/// the submitting user were added; see `event::versions::EmailV1`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Email {
    /// Subject.
    pub subject: String,
    /// Sender: the user or queue the email is from.
    pub from: Party,
    /// To recipients.
    pub to: Vec<Party>,
    /// Message-ID header.
    pub message_id: String,
    /// Regarding row.
    pub regarding: Option<RecordRef>,
    /// Where the email is in its life; only `pending_send` is sent (R75).
    #[serde(default)]
    pub state: EmailState,
    /// Cc recipients.
    #[serde(default)]
    pub cc: Vec<Party>,
    /// The plain-text body, when the CRM row has one.
    #[serde(default)]
    pub text: Option<String>,
    /// The HTML body, when the CRM row has one.
    #[serde(default)]
    pub html: Option<String>,
    /// The user who used the Send request, when not the sender (R78: with outgoing delegation
    /// on, that user's mailbox sends on behalf of the From user or queue).
    #[serde(default)]
    pub submitted_by: Option<UserId>,
    /// The tracking token the CRM assigned to the row (R63, the CRM's `trackingtoken`), added
    /// to the subject of the email sent (R64).
    #[serde(default)]
    pub tracking_token: Option<String>,
}

/// The table-specific part of a record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordBody {
    /// An appointment.
    Appointment(Appointment),
    /// A contact.
    Contact(Contact),
    /// A task-like activity.
    Task(Task),
    /// An email.
    Email(Email),
}

/// A full snapshot of one CRM row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    /// Row id.
    pub id: RecordId,
    /// Owning user.
    pub owner: UserId,
    /// Row version from the CRM (increases on every change).
    pub version: u64,
    /// The table-specific fields.
    pub body: RecordBody,
}

impl Record {
    /// The table of the record.
    pub fn entity(&self) -> Entity {
        match self.body {
            RecordBody::Appointment(_) => Entity::Appointment,
            RecordBody::Contact(_) => Entity::Contact,
            RecordBody::Task(_) => Entity::Task,
            RecordBody::Email(_) => Entity::Email,
        }
    }
    /// A human title: subject or name.
    pub fn title(&self) -> &str {
        match &self.body {
            RecordBody::Appointment(a) => &a.subject,
            RecordBody::Contact(c) => &c.full_name,
            RecordBody::Task(t) => &t.subject,
            RecordBody::Email(e) => &e.subject,
        }
    }
    /// The appointment fields, if it is one.
    pub fn appointment(&self) -> Option<&Appointment> {
        match &self.body {
            RecordBody::Appointment(a) => Some(a),
            _ => None,
        }
    }
    /// The task fields, if it is one.
    pub fn task(&self) -> Option<&Task> {
        match &self.body {
            RecordBody::Task(t) => Some(t),
            _ => None,
        }
    }
    /// Every CRM user taking part in the record: owner, organizer, attendees, email parties.
    pub fn participants(&self) -> Vec<UserId> {
        let mut out = vec![self.owner.clone()];
        match &self.body {
            RecordBody::Appointment(a) => out.extend(
                a.organizer
                    .iter()
                    .chain(a.attendees())
                    .filter_map(|p| p.user.clone()),
            ),
            RecordBody::Email(e) => {
                out.extend(
                    std::iter::once(&e.from)
                        .chain(&e.to)
                        .chain(&e.cc)
                        .filter_map(|p| p.user.clone()),
                );
                out.extend(e.submitted_by.clone());
            }
            RecordBody::Contact(_) | RecordBody::Task(_) => {}
        }
        out.sort();
        out.dedup();
        out
    }
}
