//! `decide`: what the engine concludes from one observation, given a mailbox's state before it.
//!
//! `decide(state, observation, context)` is pure. The shell then applies the observation and
//! the decisions to the state, in that order, and appends them together. Every decision names
//! the rule (`R<n>` of the SSS specification) that made it, a plain-language reason and the
//! settings it consulted.

use crate::event::*;
use crate::filter::FilterSet;
use crate::ids::{MailboxId, RecordId, RemoteId, UserId};
use crate::records::{ActivityState, Appointment, Entity, Record, RecordBody, ShowAs};
use crate::rules::*;
use crate::settings::{OrgSettings, SettingKey, SettingUsed, TaskDeletionMode};
use crate::state::{IntentKind, Link, LinkStatus, MailboxState, PendingIntent};
use crate::time::{Duration, Timestamp};

mod breaker;
mod cadence;
mod deletes;
mod email;
mod inbound;
mod lifecycle;
mod outbound;
mod outcomes;
mod send;

pub use breaker::{HELD, Trip, trips};
pub use outcomes::{ErrorSubject, classify};

/// What `decide` needs besides the state: the organization's settings and the time.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// Settings in force.
    pub settings: &'a OrgSettings,
    /// The current time (from the shell's clock).
    pub now: Timestamp,
}

/// One decision: the rule that made it and the event that records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The deciding rule.
    pub rule: RuleId,
    /// The decision event.
    pub event: Event,
}

/// Decides what follows from `obs` for the mailbox whose state (before `obs`) is `state`.
/// Events that are not observations yield no decisions.
pub fn decide(state: &MailboxState, obs: &Event, ctx: &Context<'_>) -> Vec<Decision> {
    let mut d = Decider {
        state,
        ctx,
        out: Vec::new(),
        approved_by: None,
    };
    d.observation(obs);
    d.out
}

struct Decider<'a> {
    state: &'a MailboxState,
    ctx: &'a Context<'a>,
    out: Vec<Decision>,
    /// Set while the held deletes an administrator approved are decided (R25).
    approved_by: Option<String>,
}

/// What made a row be re-evaluated.
enum Cause<'a> {
    Upsert,
    OwnerChange(&'a UserId),
    Access(AccessReason),
    FilterEdit,
    Enabled,
}

/// Whether a row is in the owner's filter union (R17, R19, R20).
enum Membership<'a> {
    In(&'a str),
    NotMatched,
    NoFilter,
    Denied(AccessReason),
}

/// Each row once, in id order (a list may name a row twice).
fn unique(ids: &[RecordId]) -> std::collections::BTreeSet<&RecordId> {
    ids.iter().collect()
}

/// The cadence rule of each workload.
fn cadence_rule(w: Workload) -> RuleId {
    match w {
        Workload::Incoming => R7,
        Workload::Outgoing => R8,
        Workload::Act => R9,
    }
}

/// A reason followed by the notes of the rules that shaped the decision, joined by "; ".
fn with_notes(mut reason: String, notes: &[String]) -> String {
    for n in notes {
        reason.push_str("; ");
        reason.push_str(n);
    }
    reason
}

/// The setting `key` as a rule consulted it: named in the basis of its decision.
fn setting(s: &OrgSettings, key: SettingKey) -> SettingUsed {
    SettingUsed {
        key: key.as_str().to_string(),
        value: s.value(key),
    }
}

fn basis(reason: String, settings: Vec<SettingUsed>) -> Basis {
    Basis { reason, settings }
}

fn attendee_addresses(a: &Appointment) -> Vec<String> {
    let org = a.organizer.as_ref().map(|p| p.email.to_lowercase());
    a.attendees()
        .filter(|p| Some(p.email.to_lowercase()) != org)
        .map(|p| p.email.clone())
        .collect()
}

/// R26: the properties whose change sends an update to attendees.
fn sensitive_changes(old: &Appointment, new: &Appointment) -> Vec<&'static str> {
    let mut v = Vec::new();
    let checks: [(&'static str, bool); 12] = [
        ("subject", old.subject != new.subject),
        ("body", old.body != new.body),
        ("location", old.location != new.location),
        ("all-day", old.all_day != new.all_day),
        ("start", old.start != new.start),
        ("end", old.end != new.end),
        ("required attendees", old.required != new.required),
        ("optional attendees", old.optional != new.optional),
        ("organizer", old.organizer != new.organizer),
        (
            "status",
            old.state != new.state || old.show_as != new.show_as,
        ),
        ("priority", old.priority != new.priority),
        ("recurrence", old.recurrence != new.recurrence),
    ];
    for (name, changed) in checks {
        if changed {
            v.push(name);
        }
    }
    v
}

fn changed_fields(old: &Record, new: &Record) -> Vec<String> {
    let mut v: Vec<String> = match (&old.body, &new.body) {
        (RecordBody::Appointment(a), RecordBody::Appointment(b)) => sensitive_changes(a, b)
            .into_iter()
            .map(String::from)
            .collect(),
        (RecordBody::Contact(a), RecordBody::Contact(b)) => {
            let mut f = Vec::new();
            if a.state != b.state {
                f.push("status".to_string());
            }
            if a.full_name != b.full_name || a.email != b.email {
                f.push("name or email".to_string());
            }
            f
        }
        (RecordBody::Task(a), RecordBody::Task(b)) => {
            let mut f = Vec::new();
            if a.state != b.state {
                f.push("status".to_string());
            }
            if a.due != b.due || a.start != b.start {
                f.push("dates".to_string());
            }
            f
        }
        _ => Vec::new(),
    };
    if old.owner != new.owner {
        v.push("owner".into());
    }
    v
}

impl<'a> Decider<'a> {
    fn push(&mut self, rule: RuleId, event: Event) {
        self.out.push(Decision { rule, event });
    }

    fn mailbox_id(&self) -> MailboxId {
        self.state.id.clone().unwrap_or_else(|| MailboxId::new("?"))
    }

    fn owner_name(&self) -> String {
        self.state
            .owner
            .as_ref()
            .map(|u| u.to_string())
            .unwrap_or_else(|| "nobody".into())
    }

    fn act_enabled(&self) -> bool {
        self.state.workload(Workload::Act).enabled && self.state.owner.is_some()
    }

    fn key(&self, what: &str, record: &RecordId, version: u64) -> String {
        format!("{}/{}/{}/v{}", self.mailbox_id(), record, what, version)
    }

    fn observation(&mut self, obs: &Event) {
        let s = self.state;
        match obs {
            Event::MailboxMapped(p) => self.mapped(&p.mailbox, &p.user),
            Event::MailboxTested(p) => self.tested(p),
            Event::DisableRequested(p) if s.workload(p.workload).enabled => {
                self.push(
                    R81,
                    Event::WorkloadDisabled(WorkloadDisabled {
                        basis: basis(format!("{} disabled {} on request", p.by, p.workload), vec![]),
                        workload: p.workload,
                        reason: DisableReason::Administrator,
                    }),
                );
                self.alert(
                    R81,
                    AlertLevel::Information,
                    format!("The mailbox {} has been disabled for {} by {}.", s.address, p.workload, p.by),
                );
            }
            Event::AddressApproved(p) if !p.approved && s.id.as_ref() == Some(&p.mailbox) => {
                self.approval_withdrawn();
            }
            // R82: a row version this mailbox has already received (re-delivered) or an older
            // one (arriving late) decides nothing, linked or not: a decided delete or
            // cancellation never comes back by itself.
            Event::RecordUpserted(RecordUpserted { record })
            | Event::OwnerChanged(OwnerChanged { record, .. })
                if s.already_seen(record) => {}
            // R75–R78: an email row is not synced by filters; its sending mailbox may send it.
            Event::RecordUpserted(p) if p.record.entity() == Entity::Email => {
                if let RecordBody::Email(e) = &p.record.body {
                    self.outgoing_email(&p.record, e);
                }
            }
            Event::RecordUpserted(p) if self.act_enabled() => {
                self.reconcile(&p.record, Cause::Upsert, &s.filters, None);
            }
            Event::OwnerChanged(p) if self.act_enabled() => {
                self.reconcile(&p.record, Cause::OwnerChange(&p.previous_owner), &s.filters, None);
            }
            Event::RecordDeleted(p) if self.act_enabled() => self.physical_delete(&p.id),
            Event::AccessLost(p) if self.act_enabled() && s.owner.as_ref() == Some(&p.user) => {
                for id in unique(&p.records) {
                    if let Some(rec) = s.records.get(id).filter(|_| !s.deleted.contains(id)) {
                        self.reconcile(rec, Cause::Access(p.reason), &s.filters, Some(p.reason));
                    }
                }
            }
            Event::AccessRegained(p) if self.act_enabled() && s.owner.as_ref() == Some(&p.user) => {
                for id in unique(&p.records) {
                    if let Some(rec) = s.records.get(id).filter(|_| !s.deleted.contains(id)) {
                        // These rows are readable again, whatever denial they had.
                        self.reconcile_with_denial(rec, Cause::Upsert, &s.filters, None);
                    }
                }
            }
            Event::FilterChanged(p) if self.act_enabled() && s.owner.as_ref() == Some(&p.user) => {
                let mut filters = s.filters.clone();
                if filters.replace_entity(p.entity, &p.filters).is_err() {
                    return;
                }
                if !filters.has_enabled(p.entity) {
                    self.no_filter_left(p.entity);
                    return;
                }
                let rows: Vec<&Record> = s
                    .records
                    .values()
                    .map(|r| r.as_ref())
                    .filter(|r| r.entity() == p.entity && !s.deleted.contains(&r.id))
                    .collect();
                for rec in rows {
                    self.reconcile(rec, Cause::FilterEdit, &filters, None);
                }
            }
            Event::ListingCompleted(p) if s.workload(p.workload).enabled => {
                self.schedule_after_cycle(p.workload, p.items)
            }
            Event::PushReceived(p) if s.workload(p.workload).enabled => {
                let rule = cadence_rule(p.workload);
                self.push(
                    rule,
                    Event::CycleScheduled(CycleScheduled {
                        basis: basis(
                            format!("the server signalled a change for {}: the next cycle runs now", p.workload),
                            vec![],
                        ),
                        workload: p.workload,
                        at: self.ctx.now,
                    }),
                );
            }
            Event::ItemSeen(p) => {
                self.item_back(&p.item.remote);
                self.item_seen(&p.item)
            }
            // An email delivered again, or read again after its folder's UIDVALIDITY changed,
            // decides nothing new.
            Event::EmailReceived(p) if s.email_already_received(p) => self.email_seen_again(p),
            Event::EmailReceived(p) => self.email_received(p),
            // R25: while the delete breaker is open, a gone linked item is held.
            Event::ItemGone(p) if self.held_gone(&p.remote) => {}
            Event::ItemGone(p) => self.item_gone(&p.remote),
            Event::DeletionsListed(p) => self.deletions_listed(p),
            Event::DeletesApproved(p) => self.deletes_approved(p),
            Event::ListingFailed(p) => {
                self.push(
                    R25,
                    Event::NoAction(NoAction {
                        basis: basis(
                            format!(
                                "listing for {} failed ({} {}); items missing from it are unknown, not deleted",
                                p.workload, p.error.code, p.error.message
                            ),
                            vec![],
                        ),
                        record: None,
                        remote: None,
                    }),
                );
                self.workload_error(p.workload, &p.error);
            }
            Event::ListingPartial(p) => self.push(
                R25,
                Event::NoAction(NoAction {
                    basis: basis(
                        format!(
                            "listing for {} was partial ({}); items missing from it are unknown, not deleted",
                            p.workload, p.reason
                        ),
                        vec![],
                    ),
                    record: None,
                    remote: None,
                }),
            ),
            // R25 (sync lessons §11.2): a reset cursor is not a delete-and-recreate.
            Event::CursorReset(p) => self.push(
                crate::policy::cursor_reset::RULE,
                Event::NoAction(NoAction {
                    basis: basis(
                        format!(
                            "the cursor of {} was reset: items the next listing shows are matched to their \
                             links by server id; items it does not show are unknown, not deleted",
                            p.workload
                        ),
                        vec![],
                    ),
                    record: None,
                    remote: None,
                }),
            ),
            Event::IntentSucceeded(p) => self.intent_succeeded(p),
            Event::IntentFailed(p) => self.intent_failed(p),
            _ => {}
        }
    }
}
