//! R14, the profile alert: when more than half of a server profile's mailboxes fail within one
//! hour and the profile's alert option (SSS `sendemailalert`, default off) is on, the profile
//! owner is notified — at most once per profile per hour.
//!
//! The inputs are organization-stream events:
//!
//! - `profile_alerting_set` turns the option on or off ([`crate::org::ProfileInfo::send_alert`]);
//! - `mailbox_failure_noted` — recorded by the runtime when a mailbox's decisions show a failure
//!   ([`failed_workload`]) — is the observation [`decide_org`] decides on. `OrgState::apply`
//!   keeps, per profile, the last failure time of each mailbox within the hour before the latest
//!   one ([`ProfileFailures`]).
//!
//! [`decide_org`] follows invariant 2 of the architecture: it sees the organization state before
//! the observation. The decision (`alert_raised`, rule R14) is appended with its observation in
//! one append, and `OrgState::apply` of that `alert_raised` records the alert time for the
//! profile of the observation just before it.
//!
//! Counting: a mailbox counts once however often it failed; "within one hour" means less than
//! an hour before the failure being decided; the profile's mailboxes are those registered on it
//! now. Exactly half is not more than half: no alert.

use crate::decide::{Context, Decision};
use crate::event::{
    AlertLevel, AlertRaised, Basis, DisableReason, Event, MailboxFailureNoted, Workload,
};
use crate::ids::MailboxId;
use crate::org::OrgState;
use crate::rules::RuleId;
use crate::time::{Duration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The window of R14: failures within one hour.
pub const WINDOW: Duration = Duration::hours(1);

/// The rule number of the profile alert.
const RULE: RuleId = crate::rules::R14;

/// A profile's recent mailbox failures and its last alert (R14).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileFailures {
    /// The last failure of each mailbox, within the hour before the latest failure noted.
    pub recent: BTreeMap<MailboxId, Timestamp>,
    /// When the profile's owner was last alerted (the failure time that raised it).
    pub last_alert: Option<Timestamp>,
}

/// True when a failure at `at` is within the window of a failure at `now`.
pub fn within_window(at: Timestamp, now: Timestamp) -> bool {
    at > now - WINDOW && at <= now
}

/// The workload whose failure the decisions of one mailbox observation show, if any: a
/// workload-level `error_classified` (no intent), or a `workload_disabled` for an error (a
/// permanent error, the transient limit, a failed test, an unapproved address, another
/// organization). Disabling by an administrator, a new mapping or an email-only server is not
/// a failure.
pub fn failed_workload<'a>(decisions: impl IntoIterator<Item = &'a Event>) -> Option<Workload> {
    decisions.into_iter().find_map(|e| match e {
        Event::ErrorClassified(p) if p.intent.is_none() => Some(p.workload),
        Event::WorkloadDisabled(p) => match p.reason {
            DisableReason::PermanentError
            | DisableReason::TransientLimit
            | DisableReason::TestFailed
            | DisableReason::NotApproved
            | DisableReason::OtherOrganization => Some(p.workload),
            DisableReason::Remapped | DisableReason::Administrator | DisableReason::Unsupported => {
                None
            }
        },
        _ => None,
    })
}

/// Decides what follows from an organization observation (`mailbox_failure_noted`) on the
/// organization state before it (R14). Other events yield nothing.
pub fn decide_org(state: &OrgState, obs: &Event, _ctx: &Context<'_>) -> Vec<Decision> {
    match obs {
        Event::MailboxFailureNoted(p) => profile_alert(state, p).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn profile_alert(state: &OrgState, p: &MailboxFailureNoted) -> Option<Decision> {
    let profile = state.profiles.get(&p.profile)?;
    if !profile.send_alert {
        return None;
    }
    let before = state.profile_failures.get(&p.profile);
    if before
        .and_then(|f| f.last_alert)
        .is_some_and(|last| within_window(last, p.at))
    {
        return None;
    }
    let on_profile: Vec<&MailboxId> = state.mailboxes_on(&p.profile).collect();
    let mut failed: Vec<&MailboxId> = before
        .map(|f| {
            f.recent
                .iter()
                .filter(|(m, at)| within_window(**at, p.at) && on_profile.contains(m))
                .map(|(m, _)| m)
                .collect()
        })
        .unwrap_or_default();
    if on_profile.contains(&&p.mailbox) && !failed.contains(&&p.mailbox) {
        failed.push(&p.mailbox);
    }
    failed.sort();
    let (n, total) = (failed.len(), on_profile.len());
    if total == 0 || n * 2 <= total {
        return None;
    }
    let names: Vec<&str> = failed.iter().map(|m| m.as_str()).collect();
    let text = format!(
        "{n} of the {total} mailboxes of the email server profile {} failed within one hour ({}). \
         Check the email server profile's server and credentials; the owners of the affected \
         mailboxes have been informed and need not act.",
        profile.name,
        names.join(", ")
    );
    let reason = format!(
        "more than 50 % of the mailboxes of profile {} failed within one hour ({n} of {total}, \
         the last {} for {}) and the profile's alert option (sendemailalert) is on",
        profile.name, p.mailbox, p.workload
    );
    Some(Decision {
        rule: RULE,
        event: Event::AlertRaised(AlertRaised {
            basis: Basis {
                reason,
                settings: vec![],
            },
            level: AlertLevel::Error,
            text,
            notify: vec![format!("server profile owner ({})", profile.name)],
        }),
    })
}
