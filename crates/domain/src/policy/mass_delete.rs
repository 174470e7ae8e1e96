//! The mass-delete guard: a ledgersync safety rule that extends R25 ("absence caused by a
//! failure is never treated as a delete") to listings that *look* complete (sync lessons §11.1
//! "an empty or partial listing is not a delete", vdirsyncer's `StorageEmpty`).
//!
//! SSS has no rule for it; ledgersync files it under [`R25`]: a collection that suddenly lost
//! most of its items is far more often an unmounted share, a wrong path or a sync tool gone
//! wrong than a user's deliberate act, so the engine cannot tell absence from failure.
//!
//! A connector lists a collection and reports, per collection, a [`CollectionListing`]; the
//! guard decides with [`missing_items`] whether the items missing from it are reported gone
//! ([`Verdict::Confirm`]) or withheld ([`Verdict::Withhold`]: the listing ends partial and the
//! items stay known, so they are reported again once a listing is complete and under the
//! limit). Items withheld when a listing:
//! - is incomplete (an entry or a file could not be read);
//! - emptied the collection while items were known in it;
//! - lost more than `mass_delete_percent` percent (default [`DEFAULT_PERCENT`]) of the known
//!   items at once.
//!
//! Items ledgersync deleted itself (carrying out a `delete_intent`) are positively known to be
//! gone: they never count against the last two limits (`missing_unexplained`).

use crate::rules::{R25, RuleId};
use std::fmt;

/// The rule.
pub const RULE: RuleId = R25;
/// The default `mass_delete_percent`.
pub const DEFAULT_PERCENT: u8 = 50;

/// True for an allowed `mass_delete_percent` (1 to 100).
pub fn valid_percent(percent: u8) -> bool {
    (1..=100).contains(&percent)
}

/// What a connector saw of one collection, compared with the items it knew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CollectionListing {
    /// Items known before the listing.
    pub known: usize,
    /// Items present in the listing.
    pub present: usize,
    /// Known items missing from the listing.
    pub missing: usize,
    /// Missing items ledgersync did not delete itself.
    pub missing_unexplained: usize,
    /// True when every entry and file of the collection was read.
    pub complete: bool,
}

/// Why missing items are withheld.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withheld {
    /// The listing is incomplete.
    Incomplete,
    /// The collection became empty while `known` items were known.
    Emptied {
        /// Items known before.
        known: usize,
    },
    /// More than `limit` percent of the known items are missing.
    TooMany {
        /// Missing items ledgersync did not delete.
        missing: usize,
        /// Items known before.
        known: usize,
        /// The limit in percent.
        limit: u8,
    },
}

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Withheld::Incomplete => f.write_str("its listing is incomplete"),
            Withheld::Emptied { known } => write!(
                f,
                "the collection became empty while {known} items were known"
            ),
            Withheld::TooMany {
                missing,
                known,
                limit,
            } => write!(
                f,
                "{missing} of {known} known items are missing, more than {limit}%"
            ),
        }
    }
}

/// The guard's verdict on the missing items of one collection listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing is missing, or what is missing is reported gone.
    Confirm,
    /// The missing items are not reported gone; they stay known.
    Withhold(Withheld),
}

/// The guard (see the module doc): `limit_percent` is the mailbox's `mass_delete_percent`
/// (values over 100 count as 100).
pub fn missing_items(listing: &CollectionListing, limit_percent: u8) -> Verdict {
    let limit = limit_percent.min(100);
    if listing.missing == 0 {
        Verdict::Confirm
    } else if !listing.complete {
        Verdict::Withhold(Withheld::Incomplete)
    } else if listing.missing_unexplained == 0 {
        Verdict::Confirm
    } else if listing.present == 0 {
        Verdict::Withhold(Withheld::Emptied {
            known: listing.known,
        })
    } else if listing.missing_unexplained * 100 > usize::from(limit) * listing.known {
        Verdict::Withhold(Withheld::TooMany {
            missing: listing.missing_unexplained,
            known: listing.known,
            limit,
        })
    } else {
        Verdict::Confirm
    }
}
