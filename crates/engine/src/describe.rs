//! Plain-language descriptions of events and decision lists, for `explain`, `what-if` and
//! `events`.

use ledgersync_domain::decide::HELD;
use ledgersync_domain::event::{Side, TestResult};
use ledgersync_domain::records::Entity;
use ledgersync_domain::{Event, RuleId};

/// One line describing an event.
pub fn describe(event: &Event) -> String {
    match event {
        Event::SettingChanged(p) => format!("setting {} set to {}", p.key, p.value),
        Event::UserRegistered(p) => format!("user {} ({}) registered", p.user, p.email),
        Event::ProfileRegistered(p) => format!(
            "server profile {} registered (max {} connections)",
            p.name, p.max_connections
        ),
        Event::MailboxRegistered(p) => {
            format!("mailbox {} registered for {}", p.mailbox, p.address)
        }
        Event::MailboxMapped(p) => format!("mailbox {} mapped to user {}", p.mailbox, p.user),
        Event::AddressApproved(p) => {
            format!(
                "address of {} {}",
                p.mailbox,
                if p.approved {
                    "approved"
                } else {
                    "approval withdrawn"
                }
            )
        }
        Event::MailboxTested(p) => {
            let r = |t: TestResult| match t {
                TestResult::NotRun => "not run",
                TestResult::Success => "success",
                TestResult::Failure => "failure",
            };
            format!(
                "Test & Enable: incoming {}, outgoing {}, ACT {}",
                r(p.incoming),
                r(p.outgoing),
                r(p.act)
            )
        }
        Event::DisableRequested(p) => format!("{} asked to disable {}", p.by, p.workload),
        Event::DeletesApproved(p) => format!(
            "{} approved the deletes the delete breaker holds in {}",
            p.by, p.mailbox
        ),
        Event::RecordUpserted(p) => {
            let extra = match p.record.appointment() {
                Some(a) => format!(
                    ", organizer {}, {} attendee(s), {}",
                    a.organizer
                        .as_ref()
                        .map(|o| o.email.as_str())
                        .unwrap_or("none"),
                    a.attendee_count(),
                    a.state.name()
                ),
                None => String::new(),
            };
            format!(
                "CRM sent {} \"{}\" v{} (owner {}{extra})",
                p.record.entity(),
                p.record.title(),
                p.record.version,
                p.record.owner
            )
        }
        Event::RecordDeleted(p) => format!("{} {} deleted in the CRM", p.entity, p.id),
        Event::OwnerChanged(p) => format!(
            "\"{}\" reassigned from {} to {}",
            p.record.title(),
            p.previous_owner,
            p.record.owner
        ),
        Event::AccessLost(p) => format!(
            "{} lost read access to {} row(s): {}",
            p.user,
            p.records.len(),
            p.reason
        ),
        Event::AccessRegained(p) => {
            format!(
                "{} regained read access to {} row(s): {}",
                p.user,
                p.records.len(),
                p.reason
            )
        }
        Event::FilterChanged(p) => format!(
            "{}'s {} filters changed to: {}",
            p.user,
            p.entity,
            if p.filters.is_empty() {
                "(none)".to_string()
            } else {
                p.filters
                    .iter()
                    .map(|f| {
                        format!(
                            "\"{}\"{}",
                            f.expr,
                            if f.enabled { "" } else { " (disabled)" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" or ")
            }
        ),
        Event::ItemSeen(p) => format!(
            "mail server shows \"{}\" ({})",
            p.item.fields.title(),
            p.item.remote
        ),
        Event::ItemGone(p) => format!("mail server confirms {} is gone", p.remote),
        Event::DeletionsListed(p) => format!(
            "{} listing reports {} item(s) gone",
            p.workload,
            p.remotes.len()
        ),
        Event::ProfileAlertingSet(p) => format!(
            "profile {} alert option (sendemailalert) {}",
            p.profile,
            if p.send_alert { "on" } else { "off" }
        ),
        Event::MailboxFailureNoted(p) => format!(
            "mailbox {} (profile {}) failed for {}",
            p.mailbox, p.profile, p.workload
        ),
        Event::ItemFailed(p) => format!(
            "mail server item {} could not be read: {} {}",
            p.remote, p.error.code, p.error.message
        ),
        Event::ListingCompleted(p) => {
            format!("{} listing completed ({} items)", p.workload, p.items)
        }
        Event::ListingFailed(p) => format!(
            "{} listing failed: {} {}",
            p.workload, p.error.code, p.error.message
        ),
        Event::ListingPartial(p) => format!("{} listing partial: {}", p.workload, p.reason),
        Event::CursorReset(p) => format!("{} sync cursor reset: {}", p.workload, p.reason),
        Event::EmailReceived(p) => format!("email \"{}\" from {} received", p.subject, p.from),
        Event::IntentSucceeded(p) => match (&p.crm, &p.remote) {
            (Some(done), _) => format!(
                "the CRM carried out command {}: row {} is at version {}",
                done.command, done.record, done.version
            ),
            (None, Some(r)) => format!("carried out (server item {r})"),
            (None, None) => "carried out".to_string(),
        },
        Event::IntentFailed(p) => match &p.crm {
            Some(f) => format!(
                "the CRM could not carry out command {} for row {}: {} {} ({})",
                f.command,
                f.record,
                p.error.code,
                p.error.message,
                if f.retryable {
                    "it may be retried"
                } else {
                    "refused for good"
                }
            ),
            None => format!("failed: {} {}", p.error.code, p.error.message),
        },
        other => match other.basis() {
            Some(b) => b.reason.clone(),
            None => other.name().to_string(),
        },
    }
}

/// Where an intent stands, as far as the journal knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Decided, no outcome recorded yet: waiting for the mail server or the CRM.
    Pending,
    /// Carried out: its `intent_succeeded` is recorded (or, in a what-if, the decision as such).
    Done,
    /// Failed for good (a permanent `error_classified`); the text says why.
    Failed(String),
}

/// What happened to the server item of an unlinked row, when the journal knows it is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemFate {
    /// Nothing says it is gone: it was left where it is.
    Left,
    /// The unlink answered its disappearance (`item_gone`: deleted on the mail server or by
    /// the user).
    GoneBefore,
    /// It was left, and deleted on the mail server later.
    GoneLater,
}

/// The phrase for one intent decision at `progress` ("to be deleted from the mailbox, waiting
/// for the mail server", "deleted from the mailbox", "not deleted from the mailbox: 403 ...");
/// `None` for an event that is not an intent.
pub fn intent_phrase(event: &Event, progress: &Progress) -> Option<String> {
    let (done, pending, failed) = match event {
        Event::CreateIntent(p) if p.target == Side::MailServer => {
            if p.item.notify_attendees {
                let n = p.item.attendees;
                (
                    format!("created, invitation sent to {n} attendee(s)"),
                    format!(
                        "to be created with an invitation to {n} attendee(s), waiting for the mail server"
                    ),
                    format!("not created, no invitation sent to {n} attendee(s)"),
                )
            } else {
                (
                    "created in the mailbox".to_string(),
                    "to be created in the mailbox, waiting for the mail server".to_string(),
                    "not created in the mailbox".to_string(),
                )
            }
        }
        Event::CreateIntent(_) => (
            "created in the CRM".to_string(),
            "to be created in the CRM: sent as a CRM command, waiting for its result".to_string(),
            "not created in the CRM".to_string(),
        ),
        Event::UpdateIntent(p) if p.target == Side::MailServer => {
            if p.item.notify_attendees {
                let n = p.item.attendees;
                (
                    format!("updated, update sent to {n} attendee(s)"),
                    format!(
                        "to be updated with an update to {n} attendee(s), waiting for the mail server"
                    ),
                    format!("not updated, no update sent to {n} attendee(s)"),
                )
            } else {
                (
                    "updated in the mailbox".to_string(),
                    "to be updated in the mailbox, waiting for the mail server".to_string(),
                    "not updated in the mailbox".to_string(),
                )
            }
        }
        Event::UpdateIntent(_) => (
            "updated in the CRM".to_string(),
            "to be updated in the CRM: sent as a CRM command, waiting for its result".to_string(),
            "not updated in the CRM".to_string(),
        ),
        Event::DeleteIntent(p) if p.target == Side::MailServer => (
            "deleted from the mailbox".to_string(),
            "to be deleted from the mailbox, waiting for the mail server".to_string(),
            "not deleted from the mailbox".to_string(),
        ),
        Event::DeleteIntent(_) => (
            "deleted in the CRM".to_string(),
            "to be deleted in the CRM: sent as a CRM command, waiting for its result".to_string(),
            "not deleted in the CRM".to_string(),
        ),
        Event::CancelIntent(p) => {
            let n = p.attendees.len();
            (
                format!("cancellation sent to {n} attendee(s)"),
                format!("cancellation to {n} attendee(s) waiting for the mail server"),
                format!("cancellation to {n} attendee(s) not sent"),
            )
        }
        _ => return None,
    };
    Some(match progress {
        Progress::Done => done,
        Progress::Pending => pending,
        Progress::Failed(why) => format!("{failed}: {why}"),
    })
}

/// A short phrase for what a list of decisions did to one item of `entity`, e.g. "deleted from
/// the mailbox, cancellation sent to 3 attendee(s)" or "unlinked, left in the calendar": the
/// decisions as such, every intent worded as carried out (what-if compares decisions this way).
/// What a user reads about the journal goes through [`summarize_as`], which words each intent
/// as far as it got.
pub fn summarize(decisions: &[(RuleId, Event)], entity: Option<Entity>) -> String {
    summarize_as(decisions, entity, |_| Progress::Done, ItemFate::Left)
}

/// [`summarize`] with each intent worded at `progress(index)` and an unlinked item's `fate`.
pub fn summarize_as(
    decisions: &[(RuleId, Event)],
    entity: Option<Entity>,
    progress: impl Fn(usize) -> Progress,
    fate: ItemFate,
) -> String {
    let place = match entity {
        Some(Entity::Appointment) => "left in the calendar",
        Some(Entity::Contact) => "left in the address book",
        Some(Entity::Task) => "left in the task list",
        Some(Entity::Email) | None => "left in place",
    };
    let mut parts: Vec<String> = Vec::new();
    for (i, (_, e)) in decisions.iter().enumerate() {
        if let Some(p) = intent_phrase(e, &progress(i)) {
            if !parts.contains(&p) {
                parts.push(p);
            }
            continue;
        }
        let p = match e {
            // No server item yet: the row was still waiting for its create, which is withdrawn.
            Event::Unlinked(p) if p.remote.is_none() => {
                "create withdrawn before it was carried out, nothing written or sent".into()
            }
            Event::Unlinked(_) => match fate {
                ItemFate::Left => format!("unlinked, {place}"),
                ItemFate::GoneBefore => {
                    "unlinked: the server item is gone (deleted on the mail server), the CRM row is kept"
                        .into()
                }
                ItemFate::GoneLater => {
                    format!("unlinked, {place}; the server item was deleted on the mail server later")
                }
            },
            Event::NoAction(p) if p.basis.reason.starts_with(HELD) => {
                "delete held by the delete breaker, nothing deleted".into()
            }
            Event::NoAction(_) => "left unchanged".into(),
            Event::BreakerTripped(p) => {
                format!("delete breaker tripped, {} delete(s) held", p.deletes)
            }
            Event::BreakerClosed(p) if p.approved => "delete breaker closed: deletes approved".into(),
            Event::BreakerClosed(_) => "delete breaker closed: the held items came back".into(),
            Event::LinkCreated(_) => "linked".into(),
            Event::ItemTracked(_) => "tracked".into(),
            Event::ItemUntracked(_) => "untracked".into(),
            Event::WorkloadDisabled(p) => format!("{} disabled", p.workload),
            Event::WorkloadEnabled(p) => format!("{} enabled", p.workload),
            Event::RetryScheduled(p) => format!("retry at {}", p.at),
            Event::LogicalDelete(_) | Event::AlertRaised(_) | Event::ErrorClassified(_) => continue,
            other => other.name().replace('_', " "),
        };
        if !parts.contains(&p) {
            parts.push(p);
        }
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}
