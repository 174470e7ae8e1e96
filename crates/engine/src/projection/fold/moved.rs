//! A row created from a server item moves to the id the CRM gave it: the result of a track
//! command (R33, R44, R52) may name another row id than the one ledgersync proposed.

use super::{Fold, key};
use crate::projection::ProjectionError;
use ledgersync_domain::RecordId;

impl Fold<'_, '_> {
    /// Moves the row `from` — one built from what a mailbox knew (version 0), the CRM never
    /// having sent it — to `to`, with its per-mailbox sync state and its index entries. A row
    /// the CRM sent stays where it is; a row already at `to` is kept, and takes the per-mailbox
    /// sync state it does not have yet.
    pub(super) fn move_row(
        &mut self,
        from: &RecordId,
        to: &RecordId,
    ) -> Result<(), ProjectionError> {
        let Some(old) = self.row(from)? else {
            return Ok(());
        };
        if old.version != 0 || from == to {
            return Ok(());
        }
        if let Some(r) = &old.regarding {
            self.by_regarding
                .remove(key(r.id.as_str(), from.as_str()).as_str())?;
        }
        for u in &old.participants {
            self.by_user
                .remove(key(u.as_str(), from.as_str()).as_str())?;
        }
        self.rows.remove(from.as_str())?;
        if let Some(mut there) = self.row(to)? {
            // Another mailbox's command got there first (the CRM answers every command for
            // the same email with its one row): this mailbox's sync state joins it.
            for (mailbox, sync) in old.mailboxes {
                there.mailboxes.entry(mailbox).or_insert(sync);
            }
            return self.put_row(&there);
        }
        let mut row = old;
        row.record = to.clone();
        if let Some(r) = &row.regarding {
            self.by_regarding
                .insert(key(r.id.as_str(), to.as_str()).as_str(), ())?;
        }
        for u in &row.participants {
            self.by_user
                .insert(key(u.as_str(), to.as_str()).as_str(), ())?;
        }
        self.put_row(&row)
    }
}
