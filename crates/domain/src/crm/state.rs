//! The mailbox state's side of CRM commands: what a CRM-targeted intent leaves as (fixed when it
//! is applied), and what a done result changes (the row the CRM names, the version it wrote).

use super::PendingCommand;
use crate::event::{CommandType, CrmDone, ItemWrite};
use crate::ids::{EventId, RecordId, RemoteId};
use crate::records::Entity;
use crate::state::{IntentKind, MailboxState};

impl MailboxState {
    /// The command an intent of `kind` for `record` that writes to the CRM leaves as, from the
    /// state as it is when the intent is applied: the server item just seen (its fields), the
    /// row as known, the intent's write.
    pub(crate) fn command_facts(
        &self,
        kind: IntentKind,
        record: &RecordId,
        remote: Option<&RemoteId>,
        item: Option<&ItemWrite>,
    ) -> PendingCommand {
        let fields = remote
            .and_then(|r| self.remote_items.get(r))
            .map(|i| i.fields.clone());
        let known = self
            .records
            .get(record)
            .or_else(|| self.links.get(record).map(|l| &l.synced));
        let from_fields = fields.as_ref().map(|f| f.entity());
        let from_row = known.map(|r| r.entity());
        let entity = match kind {
            IntentKind::Create => from_fields.or(from_row),
            _ => from_row.or(from_fields),
        }
        .unwrap_or(Entity::Appointment);
        let command = match kind {
            IntentKind::Create => match entity {
                Entity::Contact => CommandType::TrackContact,
                Entity::Task => CommandType::TrackTask,
                Entity::Appointment | Entity::Email => CommandType::TrackAppointment,
            },
            IntentKind::Update if entity == Entity::Email => CommandType::MarkEmailSent,
            IntentKind::Update if item.is_some_and(|i| i.completed) => CommandType::CompleteTask,
            IntentKind::Update => CommandType::UpdateRecord,
            IntentKind::Delete | IntentKind::Cancel => CommandType::DeleteRecord,
        };
        let title = item
            .map(|i| i.title.clone())
            .or_else(|| known.map(|r| r.title().to_string()))
            .or_else(|| fields.as_ref().map(|f| f.title().to_string()))
            .unwrap_or_default();
        let version = match kind {
            IntentKind::Create => 0,
            IntentKind::Update => item.map_or(0, |i| i.version),
            _ => known.map_or(0, |r| r.version),
        };
        PendingCommand {
            command,
            entity,
            title,
            version,
            fields,
            actual_start: item.and_then(|i| i.actual_start),
            email: None,
        }
    }

    /// A done result of the CRM command `intent` (applied before the intent is closed): a
    /// track command whose row the CRM created under another id than the one proposed moves
    /// the link (and everything naming the proposed id) to the CRM's id; the link remembers the
    /// version the CRM wrote, whose snapshot will be adopted, not written back (R18 echo guard).
    pub(crate) fn crm_done(&mut self, intent: EventId, done: &CrmDone) {
        let Some(pending) = self.intents.get(&intent) else {
            return;
        };
        if pending.command.is_none() {
            return;
        }
        let proposed = pending.record.clone();
        if done.command.creates() && done.record != proposed {
            self.rekey(&proposed, &done.record);
        }
        if done.command != CommandType::DeleteRecord
            && let Some(link) = self.links.get_mut(&done.record)
            && link.is_active()
        {
            link.crm_version = Some(done.version);
        }
    }

    /// Moves what names the row id `from` to `to`: its link (and the snapshot it holds), the
    /// server item's row, the intents of the row.
    fn rekey(&mut self, from: &RecordId, to: &RecordId) {
        if let Some(mut link) = self.links.remove(from) {
            // What the server item holds is the same row, known by the CRM's id now.
            if &link.synced.id == from {
                let mut synced = (*link.synced).clone();
                synced.id = to.clone();
                link.synced = std::sync::Arc::new(synced);
            }
            self.links.insert(to.clone(), link);
        }
        for row in self.by_remote.values_mut() {
            if row == from {
                *row = to.clone();
            }
        }
        for intent in self.intents.values_mut() {
            if &intent.record == from {
                intent.record = to.clone();
            }
        }
        for failed in self.failed_intents.values_mut() {
            if &failed.record == from {
                failed.record = to.clone();
            }
        }
    }
}
