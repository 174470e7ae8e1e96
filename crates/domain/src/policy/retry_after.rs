//! When a failed workload is tried again (R11) and how long a server's Retry-After holds back
//! a credential (R15): one policy for the domain's `retry_scheduled` and the runtime's throttle.
//!
//! - A Retry-After is honoured, but never further than [`MAX_RETRY_AFTER`] (an hour) from now:
//!   a server's wrong clock or a typo must not stall a credential or a mailbox for days.
//! - A workload is retried at the later of `now + transient_retry_interval` (R11) and the
//!   capped Retry-After: never sooner than the interval, never before the server asked.
//! - Every mailbox of the credential waits out the same capped Retry-After (R15, sync lessons
//!   §11.7 "honour server back-off globally per credential").

use crate::event::ServerError;
use crate::rules::{R11, R15, RuleId};
use crate::time::{Duration, Timestamp};

/// The rule of the workload retry.
pub const RETRY_RULE: RuleId = R11;
/// The rule of the credential hold.
pub const HOLD_RULE: RuleId = R15;
/// The furthest a Retry-After is honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::hours(1);

/// The server's Retry-After, capped at `now + MAX_RETRY_AFTER`; `None` when it sent none.
pub fn honoured_retry_after(now: Timestamp, error: &ServerError) -> Option<Timestamp> {
    error.retry_after.map(|at| at.min(now + MAX_RETRY_AFTER))
}

/// When a workload that failed transiently is tried again (R11): the later of the retry
/// interval and the honoured Retry-After.
pub fn next_retry(now: Timestamp, interval: Duration, error: &ServerError) -> Timestamp {
    let after_interval = now + interval;
    honoured_retry_after(now, error).map_or(after_interval, |at| at.max(after_interval))
}

/// How long every connection of the credential is held back (R15): from now to the honoured
/// Retry-After, zero when it is already past; `None` when the server sent no Retry-After.
pub fn credential_hold(now: Timestamp, error: &ServerError) -> Option<Duration> {
    honoured_retry_after(now, error).map(|at| Duration((at - now).0.max(0)))
}
