//! A tracked email is on the timeline as soon as it is accepted: its `track_email` intent (R52)
//! makes a row from what the command carries, under the id ledgersync proposes, until the CRM's
//! result names its own id (the row moves, `moved.rs`) and the CRM sends the row itself.

use super::Fold;
use crate::projection::ProjectionError;
use ledgersync_domain::crm::EmailCommand;
use ledgersync_domain::event::CommandType;
use ledgersync_domain::records::{Email, Party, Record, RecordBody};
use ledgersync_domain::state::{LinkStatus, PendingIntent};
use ledgersync_domain::{EventId, MailboxId, MailboxState, RecordId, UserId};

/// The row a tracked email shows as before the CRM sends it: version 0, its subject, the
/// regarding row decided, its owner (the one decided, else the mailbox's user), its sender and
/// recipients (the mailbox's own address as its user).
fn provisional(state: &MailboxState, record: &RecordId, email: &EmailCommand) -> Record {
    let party = |address: &String| Party {
        user: address
            .eq_ignore_ascii_case(&state.address)
            .then(|| state.owner.clone())
            .flatten(),
        email: address.clone(),
        name: address.clone(),
    };
    let owner = email
        .owner
        .as_ref()
        .map(|o| UserId::new(o.as_str()))
        .or_else(|| state.owner.clone())
        .unwrap_or_else(|| UserId::new(email.accepting.as_str()));
    Record {
        id: record.clone(),
        owner,
        version: 0,
        body: RecordBody::Email(Email {
            subject: email.subject.clone(),
            from: party(&email.from),
            to: email.to.iter().chain(&email.cc).map(party).collect(),
            message_id: email.message_id.clone(),
            regarding: email.regarding.clone(),
            state: ledgersync_domain::records::EmailState::Received,
            cc: Vec::new(),
            text: None,
            html: None,
            submitted_by: None,
            tracking_token: None,
        }),
    }
}

/// Whether `intent` is a `track_email` command.
pub(super) fn is_email(intent: &PendingIntent) -> bool {
    intent
        .command
        .as_ref()
        .is_some_and(|c| c.command == CommandType::TrackEmail)
}

/// The open `track_email` command of `record` in `state`, if any.
pub(super) fn open_email<'s>(
    state: &'s MailboxState,
    record: &RecordId,
) -> Option<&'s ledgersync_domain::state::PendingIntent> {
    state
        .intents
        .values()
        .find(|i| &i.record == record && i.command.as_ref().is_some_and(|c| c.email.is_some()))
}

impl Fold<'_, '_> {
    /// The `track_email` intent `intent` of `mailbox` was just applied: its email gets a row at
    /// its received time, unless the row is already there (another mailbox tracked the same
    /// message, or the CRM sent it).
    pub(super) fn email_tracked(
        &mut self,
        mailbox: &MailboxId,
        intent: EventId,
    ) -> Result<(), ProjectionError> {
        let state = &self.states[mailbox];
        let Some(pending) = state.intents.get(&intent) else {
            return Ok(());
        };
        let Some(email) = pending.command.as_ref().and_then(|c| c.email.as_ref()) else {
            return Ok(());
        };
        if self.row(&pending.record)?.is_some() {
            return Ok(());
        }
        let record = provisional(state, &pending.record, email);
        self.upsert_row(&record, email.received)
    }

    /// The `track_email` command of `record` in `mailbox` is settled for good: created in the
    /// CRM, the email in the mailbox is linked to the CRM's row (as far as the timeline tells:
    /// nothing is synced back to the mail server); given up, the mailbox holds nothing of it.
    pub(super) fn email_settled(
        &mut self,
        mailbox: &MailboxId,
        record: &RecordId,
        created: bool,
    ) -> Result<(), ProjectionError> {
        let Some(mut row) = self.row(record)? else {
            return Ok(());
        };
        let Some(entry) = row.mailboxes.get_mut(mailbox) else {
            return Ok(());
        };
        if created {
            entry.status = Some(LinkStatus::Linked);
        } else {
            entry.status = None;
            entry.remote = None;
        }
        self.put_row(&row)
    }
}
