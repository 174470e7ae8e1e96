//! An item tracked into the CRM (R33, R44) is first known by the row id ledgersync proposed
//! for it (`from-<server item>`); the CRM's answers to its command before the row existed are
//! indexed under that id. A story of the item, or of the row the CRM created for it, includes
//! them.

use super::read;
use crate::error::EngineError;
use ledgersync_domain::{Event, ItemKey};
use ledgersync_journal::Journal;
use std::collections::BTreeSet;

/// Adds to `positions` those of the proposed rows of the items tracked among them.
pub(super) fn add_proposed_rows(
    journal: &dyn Journal,
    positions: &mut BTreeSet<u64>,
) -> Result<(), EngineError> {
    let mut proposed = BTreeSet::new();
    for s in read(journal, &positions.iter().copied().collect::<Vec<_>>())? {
        if let Event::ItemTracked(p) = &s.event
            && let Some(row) = &p.record
        {
            proposed.insert(row.clone());
        }
    }
    for row in proposed {
        positions.extend(journal.positions_for_item(&ItemKey::Crm(row))?);
    }
    Ok(())
}
