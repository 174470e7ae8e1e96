//! The incomplete-listing guard: a ledgersync safety rule under R25 ("absence caused by a
//! failure is never treated as a delete", sync lessons §11.1 "an empty or partial listing is
//! not a delete").
//!
//! A connector lists a collection and reports, per collection, a [`CollectionListing`]; the
//! guard decides with [`missing_items`] whether the items missing from it are reported gone
//! ([`Verdict::Confirm`]) or withheld ([`Verdict::Withhold`]: the listing ends partial and the
//! items stay known, so they are reported again once a listing is complete). Items are withheld
//! only when the listing is incomplete (an entry or a file could not be read): their absence
//! is unknown, not a delete.
//!
//! How many deletes a complete listing may make is not decided here: the connector reports
//! them (`deletions_listed`, then an `item_gone` each) and `decide` weighs them against the
//! delete breaker (R25, `docs/decisions/0016-delete-breaker.md`), on recorded observations, so
//! that it is replayed, explained and re-decided by `what-if` like every other rule.

use crate::rules::{R25, RuleId};
use std::fmt;

/// The rule.
pub const RULE: RuleId = R25;

/// What a connector saw of one collection, compared with the items it knew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CollectionListing {
    /// Items known before the listing.
    pub known: usize,
    /// Items present in the listing.
    pub present: usize,
    /// Known items missing from the listing.
    pub missing: usize,
    /// True when every entry and file of the collection was read.
    pub complete: bool,
}

/// Why missing items are withheld.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withheld {
    /// The listing is incomplete.
    Incomplete,
}

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Withheld::Incomplete => f.write_str("its listing is incomplete"),
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

/// The guard (see the module doc).
pub fn missing_items(listing: &CollectionListing) -> Verdict {
    if listing.missing == 0 || listing.complete {
        Verdict::Confirm
    } else {
        Verdict::Withhold(Withheld::Incomplete)
    }
}
