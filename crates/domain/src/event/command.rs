//! The value types a CRM command's result carries in an outcome payload (`intent_succeeded` and
//! `intent_failed`, schema version 2). Released with those payloads: they never change (a new
//! enum variant may only be added after the last one).

use crate::ids::RecordId;
use crate::records::Entity;
use crate::rules::{R18, R33, R36, R43, R44, R46, R48, R52, R76, RuleId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a CRM command asks the CRM to do, named after the rule that decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CommandType {
    /// R33: a meeting the user tracked in the calendar becomes a CRM appointment.
    TrackAppointment,
    /// R33: a contact the user tracked in the address book becomes a CRM contact.
    TrackContact,
    /// R44, R48: a task the user tracked on the mail server becomes a CRM task, its actual
    /// start set to when it was tracked.
    TrackTask,
    /// R18: a linked item changed on the mail server; the CRM row takes the change.
    UpdateRecord,
    /// R48: a linked task reached 100 % on the mail server; the CRM task is marked Completed.
    CompleteTask,
    /// R36, R43, R46: a linked item was deleted on the mail server and its table's rule
    /// deletes the CRM row.
    DeleteRecord,
    /// R52 (R56, R57, R72): an incoming email was accepted (`email_accepted`); the CRM creates
    /// its email activity, at most one per Message-ID.
    TrackEmail,
    /// R76: an email in Pending Send was sent by its mailbox; the CRM marks the email row
    /// Sent.
    MarkEmailSent,
}

impl CommandType {
    /// Every command type, in declaration order.
    pub const ALL: [CommandType; 8] = [
        CommandType::TrackAppointment,
        CommandType::TrackContact,
        CommandType::TrackTask,
        CommandType::UpdateRecord,
        CommandType::CompleteTask,
        CommandType::DeleteRecord,
        CommandType::TrackEmail,
        CommandType::MarkEmailSent,
    ];

    /// The snake_case name used in `crm pending`, result lines and the JSON Schemas.
    pub fn name(self) -> &'static str {
        match self {
            CommandType::TrackAppointment => "track_appointment",
            CommandType::TrackContact => "track_contact",
            CommandType::TrackTask => "track_task",
            CommandType::UpdateRecord => "update_record",
            CommandType::CompleteTask => "complete_task",
            CommandType::DeleteRecord => "delete_record",
            CommandType::TrackEmail => "track_email",
            CommandType::MarkEmailSent => "mark_email_sent",
        }
    }

    /// The command type of a `name`, if it is one.
    pub fn from_name(name: &str) -> Option<CommandType> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether the command creates a CRM row (its result names the new row's id).
    pub fn creates(self) -> bool {
        matches!(
            self,
            CommandType::TrackAppointment
                | CommandType::TrackContact
                | CommandType::TrackTask
                | CommandType::TrackEmail
        )
    }

    /// The rule that decides this command for a row of `entity`: R33 (tracked meetings and
    /// contacts), R44 (tracked tasks), R18 (edits), R48 (completed tasks), and the delete rule
    /// of the table (R36 appointments, R43 contacts, R46 tasks), R52 (accepted emails: the
    /// email's own acceptance rule is named on its `email_accepted`).
    pub fn rule(self, entity: Entity) -> RuleId {
        match self {
            CommandType::TrackAppointment | CommandType::TrackContact => R33,
            CommandType::TrackTask => R44,
            CommandType::UpdateRecord => R18,
            CommandType::CompleteTask => R48,
            CommandType::TrackEmail => R52,
            CommandType::MarkEmailSent => R76,
            CommandType::DeleteRecord => match entity {
                Entity::Contact => R43,
                Entity::Task => R46,
                Entity::Appointment | Entity::Email => R36,
            },
        }
    }

    /// What the command does, in words ("create the appointment in the CRM").
    pub fn phrase(self) -> &'static str {
        match self {
            CommandType::TrackAppointment => "create the tracked meeting as a CRM appointment",
            CommandType::TrackContact => "create the tracked contact as a CRM contact",
            CommandType::TrackTask => "create the tracked task as a CRM task",
            CommandType::UpdateRecord => "update the CRM row with the mail-server change",
            CommandType::CompleteTask => "mark the CRM task Completed",
            CommandType::DeleteRecord => "delete the CRM row",
            CommandType::TrackEmail => "create the accepted email as a CRM email activity",
            CommandType::MarkEmailSent => "mark the CRM email Sent",
        }
    }
}

impl fmt::Display for CommandType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The CRM carried a command out: the row it holds afterwards (the `crm` part of an
/// `intent_succeeded`, schema version 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmDone {
    /// The command type answered.
    pub command: CommandType,
    /// The CRM row: for a `track_*` command the id the CRM gave the new row, otherwise the
    /// row the command was about.
    pub record: RecordId,
    /// The row version the CRM holds after the command (for a delete: the version deleted).
    /// Its `record_upserted` of exactly this version is ledgersync's own write coming back and
    /// decides nothing (the echo guard of R18 on the CRM side).
    pub version: u64,
}

/// The CRM could not carry a command out (the `crm` part of an `intent_failed`, schema
/// version 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmFailed {
    /// The command type answered.
    pub command: CommandType,
    /// The CRM row the command was about (for a `track_*` command, the id ledgersync
    /// proposed).
    pub record: RecordId,
    /// The CRM's word: may the same command be tried again (R12)? `false` gives it up at once.
    pub retryable: bool,
}
