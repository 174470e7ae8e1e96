//! R15: the engine never opens more concurrent connections to a mail server than the profile's
//! limit, **default 10, allowed range 1–300**, counted per credential.
//!
//! Every place that accepts or applies a limit (the CRM ingress and the engine's validation of
//! `profile_registered`, the runtime's throttle) checks it with [`check_max_connections`].

use crate::rules::{R15, RuleId};
use std::fmt;

/// The rule.
pub const RULE: RuleId = R15;
/// The smallest allowed limit.
pub const MIN_CONNECTIONS: u16 = 1;
/// The largest allowed limit.
pub const MAX_CONNECTIONS: u16 = 300;
/// The limit of a profile that sets none.
pub const DEFAULT_CONNECTIONS: u16 = 10;

/// A connection limit outside [`MIN_CONNECTIONS`]–[`MAX_CONNECTIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimitError(pub u16);

impl ConnectionLimitError {
    /// What is wrong, without the field name: `must be between 1 and 300, got 301`.
    pub fn detail(&self) -> String {
        format!(
            "must be between {MIN_CONNECTIONS} and {MAX_CONNECTIONS}, got {} ({RULE})",
            self.0
        )
    }
}

impl fmt::Display for ConnectionLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "max_connections {}", self.detail())
    }
}

impl std::error::Error for ConnectionLimitError {}

/// `n` when it is an allowed limit (R15).
pub fn check_max_connections(n: u16) -> Result<u16, ConnectionLimitError> {
    if (MIN_CONNECTIONS..=MAX_CONNECTIONS).contains(&n) {
        Ok(n)
    } else {
        Err(ConnectionLimitError(n))
    }
}
