//! A row created from a server item moves to the id the CRM gave it: the result of a track
//! command (R33, R44) may name another row id than the one ledgersync proposed.

use super::{Fold, key};
use crate::projection::ProjectionError;
use ledgersync_domain::RecordId;

impl Fold<'_, '_> {
    /// Moves the row `from` — one built from what a mailbox knew (version 0), the CRM never
    /// having sent it — to `to`, with its per-mailbox sync state and its index entries. A row
    /// the CRM sent stays where it is; a row already at `to` is kept.
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
        if self.row(to)?.is_some() {
            return Ok(());
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
