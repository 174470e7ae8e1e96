//! What follows a cursor the connector cannot read (R25 "absence is not deletion", sync
//! lessons §11.2 "a cursor or token reset must not mean delete-and-recreate").
//!
//! A connector reports an unreadable cursor as a `listing_failed` of kind
//! [`ErrorKind::CursorInvalid`]. Then:
//! 1. the driver records a `cursor_reset` (built by [`on_listing_failed`]) and stores the
//!    initial cursor — unless the cursor already was the initial one (nothing to reset: the
//!    failure is an ordinary transient error, retried per R11);
//! 2. the next listing starts from nothing known: every item present is reported seen, and
//!    matched to its link by server id (an unchanged item decides nothing, a changed one is an
//!    ordinary change), never deleted and recreated;
//! 3. an item known before the reset that the next listing does not show is **unknown**, not
//!    gone ([`NOT_SEEN_AFTER_RESET`]): no `item_gone` is reported for it, its link stays, and
//!    nothing is deleted in the CRM. Only a later listing, which knows the items the reset
//!    listing saw, reports deletions again, through the [`mass_delete`](super::mass_delete)
//!    guard.

use crate::error_kind::ErrorKind;
use crate::event::{CursorReset, ListingFailed};
use crate::rules::{R25, RuleId};

/// The rule.
pub const RULE: RuleId = R25;

/// What happens to an item known before a reset and not seen after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotSeen {
    /// Unknown: kept, linked, never deleted because of the reset.
    Unknown,
}

/// The policy for items not seen after a reset.
pub const NOT_SEEN_AFTER_RESET: NotSeen = NotSeen::Unknown;

/// The `cursor_reset` to record after `failed`, when the connector could not read a cursor
/// other than the initial one; `None` otherwise (the failure is handled as any other).
pub fn on_listing_failed(failed: &ListingFailed, cursor_is_initial: bool) -> Option<CursorReset> {
    if failed.error.kind() != ErrorKind::CursorInvalid || cursor_is_initial {
        return None;
    }
    Some(CursorReset {
        workload: failed.workload,
        reason: format!(
            "the stored cursor could not be read ({}); the next listing starts from the initial \
             cursor: items it shows are matched by server id, items it does not show are \
             unknown, not deleted ({RULE})",
            failed.error.message
        ),
    })
}
