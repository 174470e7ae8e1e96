//! An item tracked into the CRM (R33, R44) is first known by the row id ledgersync proposed
//! for it (`from-<server item>`), an accepted email (R52) by `email-<hash of its Message-ID>`;
//! the CRM's answers to its command before the row existed are indexed under that id. A story of the item, or of the row the CRM created for it, includes
//! them.

use super::read;
use crate::error::EngineError;
use ledgersync_domain::event::Side;
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
        match &s.event {
            Event::ItemTracked(p) => proposed.extend(p.record.clone()),
            // A tracked email's command (it has no item_tracked).
            Event::CreateIntent(p) if p.target == Side::Crm && p.remote.is_some() => {
                proposed.insert(p.record.clone());
            }
            _ => {}
        }
    }
    for row in proposed {
        positions.extend(journal.positions_for_item(&ItemKey::Crm(row))?);
    }
    Ok(())
}
