//! Safety and pacing policies the shells carry out: pure functions of what a connector or a
//! driver reports, each named after the rule it implements.
//!
//! `decide` answers one observation with decision events. Some rules must be applied *before*
//! an observation exists, by the code that produces it (a connector building a listing, a
//! driver pacing a credential): those rules live here, and the shells only call them.
//!
//! | module           | rule | decides                                                          |
//! |------------------|------|------------------------------------------------------------------|
//! | [`mass_delete`]  | R25  | whether the items missing from a collection listing are reported gone or withheld (an incomplete listing withholds them) |
//! | [`cursor_reset`] | R25  | what follows a cursor the connector cannot read; items not seen after it stay unknown |
//! | [`connections`]  | R15  | the allowed range and default of a profile's connection limit    |
//! | [`retry_after`]  | R11, R15 | when a workload is retried and how long a credential is held back |
//!
//! Error kinds and their classification (R10, R11, R12) are in [`crate::error_kind`] and
//! [`crate::decide::classify`].

pub mod connections;
pub mod cursor_reset;
pub mod mass_delete;
pub mod retry_after;
