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
    };
    d.observation(obs);
    d.out
}

struct Decider<'a> {
    state: &'a MailboxState,
    ctx: &'a Context<'a>,
    out: Vec<Decision>,
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
            Event::ItemSeen(p) => self.item_seen(&p.item),
            Event::ItemGone(p) => self.item_gone(&p.remote),
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
            Event::IntentSucceeded(p) => self.intent_succeeded(p),
            Event::IntentFailed(p) => self.intent_failed(p),
            _ => {}
        }
    }

    // ───────────── lifecycle: R1, R2, R4, R5, R6 ─────────────

    fn mapped(&mut self, mailbox: &MailboxId, user: &UserId) {
        let s = self.state;
        let me = s.id.as_ref();
        if me == Some(mailbox) {
            match &s.owner {
                Some(prev) if prev == user => {}
                Some(prev) => {
                    self.stop_all_workloads(format!(
                        "the mailbox {} was mapped to {user}, replacing {prev}",
                        s.address
                    ));
                    self.push(
                        R1,
                        Event::MappingEnded(MappingEnded {
                            basis: basis(
                                format!(
                                    "{} is now mapped to {user}; {prev}'s mapping ends first",
                                    s.address
                                ),
                                vec![],
                            ),
                            user: prev.clone(),
                        }),
                    );
                    self.start_mapping(user);
                }
                None => self.start_mapping(user),
            }
        } else if s.owner.as_ref() == Some(user) {
            // The user moved to another mailbox: one user, one mailbox (R1).
            self.stop_all_workloads(format!("{user} was mapped to another mailbox ({mailbox})"));
            self.push(
                R1,
                Event::MappingEnded(MappingEnded {
                    basis: basis(format!("{user} is now mapped to mailbox {mailbox}"), vec![]),
                    user: user.clone(),
                }),
            );
        }
    }

    fn start_mapping(&mut self, user: &UserId) {
        self.push(
            R1,
            Event::MappingStarted(MappingStarted {
                basis: basis(
                    format!(
                        "{} mapped to {user}; workloads start only after Test & Enable",
                        self.state.address
                    ),
                    vec![],
                ),
                user: user.clone(),
            }),
        );
    }

    /// R5: an email workload of a mailbox whose address is not approved is disabled, with an alert.
    fn not_approved(&mut self, w: Workload) {
        let s = self.state;
        let why = format!(
            "Email cannot be {} for the mailbox {} because its email address has not been approved. \
             The mailbox has been disabled for {}. Approve the address, then run Test & Enable again.",
            if w == Workload::Incoming {
                "received"
            } else {
                "sent"
            },
            s.address,
            w
        );
        if s.workload(w).enabled
            || s.workload(w).disabled_reason != Some(DisableReason::NotApproved)
        {
            self.push(
                R5,
                Event::WorkloadDisabled(WorkloadDisabled {
                    basis: basis(
                        why.clone(),
                        vec![setting(
                            self.ctx.settings,
                            SettingKey::RequireApprovedAddress,
                        )],
                    ),
                    workload: w,
                    reason: DisableReason::NotApproved,
                }),
            );
        }
        self.alert_with(
            R5,
            AlertLevel::Error,
            why,
            vec![setting(
                self.ctx.settings,
                SettingKey::RequireApprovedAddress,
            )],
        );
    }

    /// R5: approval withdrawn while email workloads run.
    fn approval_withdrawn(&mut self) {
        if !self.ctx.settings.require_approved_address {
            return;
        }
        for w in [Workload::Incoming, Workload::Outgoing] {
            if self.state.workload(w).enabled {
                self.not_approved(w);
            }
        }
    }

    fn stop_all_workloads(&mut self, why: String) {
        for w in Workload::ALL {
            if self.state.workload(w).enabled {
                self.push(
                    R1,
                    Event::WorkloadDisabled(WorkloadDisabled {
                        basis: basis(
                            format!("{why}: {w} stops before the new mapping starts"),
                            vec![],
                        ),
                        workload: w,
                        reason: DisableReason::Remapped,
                    }),
                );
            }
        }
    }

    fn alert(&mut self, rule: RuleId, level: AlertLevel, text: String) {
        self.alert_with(rule, level, text, vec![]);
    }

    /// An alert that names the settings that made it.
    fn alert_with(
        &mut self,
        rule: RuleId,
        level: AlertLevel,
        text: String,
        used: Vec<SettingUsed>,
    ) {
        let mut notify = vec![format!("mailbox owner {}", self.owner_name())];
        if level == AlertLevel::Error {
            notify.push("server profile owner".into());
        }
        self.push(
            rule,
            Event::AlertRaised(AlertRaised {
                basis: basis(text.clone(), used),
                level,
                text,
                notify,
            }),
        );
    }

    fn tested(&mut self, p: &MailboxTested) {
        let s = self.state;
        if s.id.as_ref() != Some(&p.mailbox) {
            return;
        }
        let email_only = matches!(
            s.server_type,
            Some(ServerType::Pop3Smtp | ServerType::ImapSmtp)
        );
        for (w, result) in [
            (Workload::Incoming, p.incoming),
            (Workload::Outgoing, p.outgoing),
            (Workload::Act, p.act),
        ] {
            if result == TestResult::NotRun {
                continue;
            }
            let was_enabled = s.workload(w).enabled;
            let disable = |d: &mut Self,
                           rule: RuleId,
                           reason: DisableReason,
                           why: String,
                           alert: Option<String>| {
                if was_enabled || s.workload(w).disabled_reason.as_ref() != Some(&reason) {
                    d.push(
                        rule,
                        Event::WorkloadDisabled(WorkloadDisabled {
                            basis: basis(why, vec![]),
                            workload: w,
                            reason,
                        }),
                    );
                }
                if let Some(text) = alert {
                    d.alert(rule, AlertLevel::Error, text);
                }
            };
            if w == Workload::Act && email_only {
                disable(
                    self,
                    R4,
                    DisableReason::Unsupported,
                    "the server profile is email-only (POP3/IMAP + SMTP): appointments, contacts and tasks are not synchronized".into(),
                    None,
                );
                continue;
            }
            if w != Workload::Act && self.ctx.settings.require_approved_address && !s.approved {
                self.not_approved(w);
                continue;
            }
            if w == Workload::Act
                && let Some(other) = p
                    .act_org_marker
                    .as_ref()
                    .filter(|o| Some(*o) != s.org.as_ref())
            {
                if !p.override_other_org {
                    let text = format!(
                        "Appointments, contacts, and tasks can't be synchronized because the email address of the mailbox {} \
                         is configured with another organization ({other}). Test & Enable with \"sync items from this \
                         organization only\" to take it over.",
                        s.address
                    );
                    disable(
                        self,
                        R2,
                        DisableReason::OtherOrganization,
                        text.clone(),
                        Some(text),
                    );
                    continue;
                }
                if let Some(org) = s.org.clone() {
                    self.push(
                        R2,
                        Event::OrganizationClaimed(OrganizationClaimed {
                            basis: basis(
                                format!("the administrator chose to take ACT sync of {} over from {other}", s.address),
                                vec![],
                            ),
                            org,
                        }),
                    );
                }
            }
            match result {
                TestResult::Success => {
                    if !was_enabled {
                        self.push(
                            R6,
                            Event::WorkloadEnabled(WorkloadEnabled {
                                basis: basis(
                                    format!("Test & Enable succeeded for {w}"),
                                    // An email workload runs only with an approved address
                                    // unless the organization does not require one (R5).
                                    if w == Workload::Act {
                                        vec![]
                                    } else {
                                        vec![setting(
                                            self.ctx.settings,
                                            SettingKey::RequireApprovedAddress,
                                        )]
                                    },
                                ),
                                workload: w,
                            }),
                        );
                        if w == Workload::Act && s.owner.is_some() {
                            self.initial_sync();
                        }
                    }
                }
                TestResult::Failure => {
                    let text = format!(
                        "Test & Enable failed for {w} on the mailbox {}; it stays disabled for {w}. Fix the cause and test again.",
                        s.address
                    );
                    disable(
                        self,
                        R6,
                        DisableReason::TestFailed,
                        text.clone(),
                        Some(text),
                    );
                }
                TestResult::NotRun => {}
            }
        }
    }

    /// On enabling ACT: every row already in the union is created (R17). Rows that left the
    /// union or were deleted while ACT was off are unlinked, never deleted: enabling a workload
    /// is not a cause to delete or cancel anything (R6).
    fn initial_sync(&mut self) {
        let s = self.state;
        for rec in s.records.values() {
            if rec.entity() == Entity::Email {
                continue;
            }
            if s.deleted.contains(&rec.id) {
                if let Some(link) = s.active_link(&rec.id).cloned() {
                    self.unlink(
                        R6,
                        rec,
                        &link,
                        format!(
                            "\"{}\" was deleted in the CRM while appointments, contacts and tasks were disabled; \
                             enabling does not delete: the item is unlinked and left in place",
                            rec.title()
                        ),
                        vec![],
                    );
                }
                continue;
            }
            self.reconcile(rec, Cause::Enabled, &s.filters, None);
        }
    }

    // ───────────── CRM → mail server: R17–R24, R26–R32, R40, R42, R45, R47, R82 ─────────────

    fn membership<'f>(
        &self,
        rec: &Record,
        filters: &'f FilterSet,
        extra_denial: Option<AccessReason>,
        honour_denials: bool,
    ) -> Membership<'f> {
        if let Some(r) = extra_denial {
            return Membership::Denied(r);
        }
        if honour_denials && let Some(r) = self.state.denied.get(&rec.id) {
            return Membership::Denied(*r);
        }
        if !filters.has_enabled(rec.entity()) {
            return Membership::NoFilter;
        }
        let me = self
            .state
            .owner
            .as_ref()
            .expect("reconcile runs only with an owner");
        match filters.first_match(rec, me, self.ctx.now) {
            Some(f) => Membership::In(&f.name),
            None => Membership::NotMatched,
        }
    }

    fn reconcile(
        &mut self,
        rec: &Record,
        cause: Cause<'_>,
        filters: &FilterSet,
        denial: Option<AccessReason>,
    ) {
        let m = self.membership(rec, filters, denial, true);
        self.reconcile_membership(rec, cause, m);
    }

    fn reconcile_with_denial(
        &mut self,
        rec: &Record,
        cause: Cause<'_>,
        filters: &FilterSet,
        denial: Option<AccessReason>,
    ) {
        let m = self.membership(rec, filters, denial, false);
        self.reconcile_membership(rec, cause, m);
    }

    fn reconcile_membership(&mut self, rec: &Record, cause: Cause<'_>, m: Membership<'_>) {
        if rec.entity() == Entity::Email {
            return; // email is not governed by sync filters
        }
        let link = self.state.active_link(&rec.id).cloned();
        match (m, link) {
            (Membership::In(filter), None) => self.create(rec, filter),
            (Membership::In(_), Some(link)) => self.update(rec, &link),
            (Membership::NoFilter, Some(link)) => self.unlink(
                R19,
                rec,
                &link,
                format!(
                    "{} has no enabled {} filter: sync of {} rows stops and the item stays where it is",
                    self.owner_name(),
                    rec.entity(),
                    rec.entity()
                ),
                vec![],
            ),
            (Membership::Denied(_) | Membership::NotMatched, Some(link)) if matches!(cause, Cause::Enabled) => {
                self.unlink(
                    R6,
                    rec,
                    &link,
                    format!(
                        "\"{}\" left {}'s filter union while appointments, contacts and tasks were disabled; \
                         enabling does not delete: the item is unlinked and left in place",
                        rec.title(),
                        self.owner_name()
                    ),
                    vec![],
                )
            }
            (Membership::Denied(reason), Some(link)) => {
                self.logical_delete(rec, &link, LeaveReason::AccessLost(reason))
            }
            (Membership::NotMatched, Some(link)) => {
                let reason = match cause {
                    Cause::FilterEdit => LeaveReason::FilterEdited,
                    Cause::OwnerChange(prev) => LeaveReason::OwnerChanged {
                        from: prev.clone(),
                        to: rec.owner.clone(),
                    },
                    Cause::Access(r) => LeaveReason::AccessLost(r),
                    Cause::Upsert | Cause::Enabled => self.leave_reason_from_fields(&link.synced, rec),
                };
                self.logical_delete(rec, &link, reason)
            }
            (_, None) => {}
        }
    }

    fn leave_reason_from_fields(&self, old: &Record, new: &Record) -> LeaveReason {
        if let (Some(a), Some(b)) = (old.appointment(), new.appointment()) {
            let addr = |p: &Option<crate::records::Party>| {
                p.as_ref().map(|p| p.email.clone()).unwrap_or_default()
            };
            if a.organizer != b.organizer {
                return LeaveReason::OrganizerChanged {
                    from: addr(&a.organizer),
                    to: addr(&b.organizer),
                };
            }
        }
        if old.owner != new.owner {
            return LeaveReason::OwnerChanged {
                from: old.owner.clone(),
                to: new.owner.clone(),
            };
        }
        let fields = changed_fields(old, new);
        if fields.is_empty() {
            // Nothing changed but time: a filter relative to `now` stopped matching.
            return LeaveReason::TimeWindow;
        }
        LeaveReason::FieldChange { fields }
    }

    /// The Free/Busy, reminder and notification an appointment is written with (R26, R30, R31, R40).
    fn appointment_write(
        &self,
        a: &Appointment,
        version: u64,
        notify_basis: Option<Vec<&'static str>>,
    ) -> (ItemWrite, Vec<String>, Vec<SettingUsed>) {
        let s = self.ctx.settings;
        let used = vec![setting(s, SettingKey::ReminderCutoffDays)];
        let mut notes = Vec::new();
        let free = a.state.is_closed() || a.show_as == ShowAs::Free;
        if free {
            notes.push(
                "written as Free because it is completed, canceled or free (R30)".to_string(),
            );
        }
        let past_cutoff = a.start < self.ctx.now - s.reminder_cutoff;
        let reminder = !(past_cutoff || free);
        if !reminder {
            notes.push(if past_cutoff {
                format!(
                    "no reminder: it starts more than {} day(s) in the past (R31)",
                    used[0].value
                )
            } else {
                "no reminder: it is written as Free (R31)".to_string()
            });
        }
        let me = self.state.owner.as_ref();
        let organizer = me.is_some_and(|m| a.organized_by(m));
        let attendees = attendee_addresses(a);
        let future = a.start > self.ctx.now;
        let notify = if a.service {
            notes.push("service appointment: never sends invitations (R40)".into());
            false
        } else {
            let changed_ok = notify_basis.as_ref().is_none_or(|c| !c.is_empty());
            let ok = organizer && future && !attendees.is_empty() && changed_ok;
            if ok {
                notes.push(format!(
                    "{} sent to {} attendee(s) from the organizer's mailbox (R26)",
                    if notify_basis.is_some() {
                        "update"
                    } else {
                        "invitation"
                    },
                    attendees.len()
                ));
            } else {
                let why = if !organizer {
                    "this mailbox is not the organizer's"
                } else if !future {
                    "the meeting is in the past"
                } else if attendees.is_empty() {
                    "there are no attendees"
                } else {
                    "no sensitive property changed"
                };
                notes.push(format!("no invitation or update sent: {why} (R26)"));
            }
            ok
        };
        (
            ItemWrite {
                title: a.subject.clone(),
                version,
                show_as: Some(if free { ShowAs::Free } else { a.show_as }),
                reminder,
                notify_attendees: notify,
                attendees: attendees.len() as u32,
                completed: false,
                actual_start: None,
            },
            notes,
            used,
        )
    }

    /// The server task a CRM task is written as (R44, R47), its notes, and whether R47 (an
    /// actual end in the past completes it) shaped it.
    fn task_write(&self, rec: &Record) -> (ItemWrite, Vec<String>, bool) {
        let t = rec.task().expect("task_write is called for tasks");
        let done_by_date = t.actual_end.is_some_and(|e| e <= self.ctx.now);
        let completed = t.state.is_closed() || done_by_date;
        let mut notes = Vec::new();
        if done_by_date {
            notes.push(
                "actual end is in the past, so the server task is marked Completed (R47)"
                    .to_string(),
            );
        }
        if t.kind != crate::records::TaskKind::Task {
            notes.push(
                format!("a CRM {:?} is written as a server task (R44)", t.kind).to_lowercase(),
            );
        }
        (
            ItemWrite {
                title: t.subject.clone(),
                version: rec.version,
                show_as: None,
                reminder: t
                    .due
                    .is_some_and(|d| d > self.ctx.now - crate::time::Duration::days(1)),
                notify_attendees: false,
                attendees: 0,
                completed,
                actual_start: None,
            },
            notes,
            done_by_date,
        )
    }

    fn plain_write(&self, rec: &Record) -> ItemWrite {
        ItemWrite {
            title: rec.title().to_string(),
            version: rec.version,
            show_as: None,
            reminder: false,
            notify_attendees: false,
            attendees: 0,
            completed: false,
            actual_start: None,
        }
    }

    /// R82: an attendee notification already decided for this row version is not sent again.
    fn dedupe_notify(
        &self,
        rec: &RecordId,
        item: &mut ItemWrite,
        kind: IntentKind,
        notes: &mut Vec<String>,
    ) {
        if item.notify_attendees
            && self
                .state
                .notified
                .contains(&(rec.clone(), item.version, kind))
        {
            item.notify_attendees = false;
            notes.push(format!(
                "attendees were already notified for version {} (R82)",
                item.version
            ));
        }
    }

    fn create(&mut self, rec: &Record, filter: &str) {
        let (mut item, mut notes, used) = match &rec.body {
            RecordBody::Appointment(a) => self.appointment_write(a, rec.version, None),
            RecordBody::Task(_) => {
                let (item, notes, _) = self.task_write(rec);
                (item, notes, vec![])
            }
            _ => (self.plain_write(rec), vec![], vec![]),
        };
        self.dedupe_notify(&rec.id, &mut item, IntentKind::Create, &mut notes);
        let reason = with_notes(
            format!(
                "{} \"{}\" is in {}'s filter union (filter \"{filter}\"): create it in the mailbox",
                rec.entity(),
                rec.title(),
                self.owner_name()
            ),
            &notes,
        );
        let key = self.key("create", &rec.id, rec.version);
        self.push(
            R17,
            Event::CreateIntent(CreateIntent {
                basis: basis(reason, used),
                record: rec.id.clone(),
                remote: None,
                target: Side::MailServer,
                item,
                key,
            }),
        );
    }

    fn update(&mut self, rec: &Record, link: &Link) {
        if rec.version <= link.synced.version {
            return; // nothing new (a redelivered or older snapshot)
        }
        if link.synced.version == 0 {
            // The row was created from this server item: its first CRM snapshot describes what
            // the server already holds and is adopted, not written back.
            return;
        }
        let s = self.ctx.settings;
        if let (Some(old), Some(new)) = (link.synced.appointment(), rec.appointment()) {
            if new.state == ActivityState::Canceled && old.state != ActivityState::Canceled {
                self.canceled_in_crm(rec, link);
                return;
            }
            if new.start <= self.ctx.now && !s.update_past_meetings {
                self.push(
                    R32,
                    Event::NoAction(NoAction {
                        basis: basis(
                            format!(
                                "\"{}\" changed in the CRM but starts in the past; past meetings are not updated",
                                rec.title()
                            ),
                            vec![setting(s, SettingKey::UpdatePastMeetings)],
                        ),
                        record: Some(rec.id.clone()),
                        remote: link.remote.clone(),
                    }),
                );
                return;
            }
            let changes = sensitive_changes(old, new);
            let (mut item, mut notes, mut used) =
                self.appointment_write(new, rec.version, Some(changes));
            used.insert(0, setting(s, SettingKey::UpdatePastMeetings));
            self.dedupe_notify(&rec.id, &mut item, IntentKind::Update, &mut notes);
            let reason = with_notes(
                format!(
                    "\"{}\" changed and is still in the filter union: update it",
                    rec.title()
                ),
                &notes,
            );
            let key = self.key("update", &rec.id, rec.version);
            self.push(
                R18,
                Event::UpdateIntent(UpdateIntent {
                    basis: basis(reason, used),
                    record: rec.id.clone(),
                    remote: link.remote.clone(),
                    target: Side::MailServer,
                    item,
                    key,
                }),
            );
            return;
        }
        let (item, notes, done_by_date) = match &rec.body {
            RecordBody::Task(_) => self.task_write(rec),
            _ => (self.plain_write(rec), vec![], false),
        };
        let reason = with_notes(
            format!(
                "\"{}\" changed and is still in the filter union: update it",
                rec.title()
            ),
            &notes,
        );
        let rule = if done_by_date { R47 } else { R18 };
        let key = self.key("update", &rec.id, rec.version);
        self.push(
            rule,
            Event::UpdateIntent(UpdateIntent {
                basis: basis(reason, vec![]),
                record: rec.id.clone(),
                remote: link.remote.clone(),
                target: Side::MailServer,
                item,
                key,
            }),
        );
    }

    /// R28: an appointment set to Canceled in the CRM.
    fn canceled_in_crm(&mut self, rec: &Record, link: &Link) {
        let s = self.ctx.settings;
        let used = vec![setting(s, SettingKey::PropagateAppointmentCancellations)];
        if !s.propagate_appointment_cancellations {
            self.push(
                R28,
                Event::NoAction(NoAction {
                    basis: basis(
                        format!(
                            "\"{}\" was set to Canceled in the CRM; cancellations are not propagated, the meeting stays unchanged",
                            rec.title()
                        ),
                        used,
                    ),
                    record: Some(rec.id.clone()),
                    remote: link.remote.clone(),
                }),
            );
            return;
        }
        let a = link
            .synced
            .appointment()
            .expect("canceled_in_crm is for appointments");
        let me = self.state.owner.as_ref();
        if a.service {
            let why = format!(
                "service appointment \"{}\" was set to Canceled and cancellations are propagated: this participant's copy \
                 is deleted; service appointments never send cancellations (R40)",
                rec.title()
            );
            self.delete_only(R40, rec, link, why, used);
        } else if me.is_some_and(|m| a.organized_by(m)) {
            let why = format!(
                "\"{}\" was set to Canceled in the CRM and cancellations are propagated: delete it in the organizer's mailbox",
                rec.title()
            );
            self.delete_with_cancellation(R28, rec, link, why, used);
        } else {
            self.push(
                R28,
                Event::NoAction(NoAction {
                    basis: basis(
                        format!(
                            "\"{}\" was set to Canceled; the cancellation is propagated from the organizer's mailbox, not this one",
                            rec.title()
                        ),
                        used,
                    ),
                    record: Some(rec.id.clone()),
                    remote: link.remote.clone(),
                }),
            );
        }
    }

    fn logical_delete(&mut self, rec: &Record, link: &Link, reason: LeaveReason) {
        let s = self.ctx.settings;
        let used = vec![setting(s, SettingKey::DistinctPhysicalLogicalDeletes)];
        let owner = self.owner_name();
        if s.distinct_physical_logical_deletes {
            self.push(
                R23,
                Event::LogicalDelete(LogicalDelete {
                    basis: basis(
                        format!(
                            "\"{}\" is no longer in {owner}'s filter union ({reason}) but still exists in the CRM; \
                             distinct deletes are on, so it is unlinked and left in place",
                            rec.title()
                        ),
                        used.clone(),
                    ),
                    record: rec.id.clone(),
                    reason,
                }),
            );
            self.unlink(
                R23,
                rec,
                link,
                "logical delete with distinct deletes on: unlinked, left in place, nothing sent to attendees".into(),
                used,
            );
            return;
        }
        self.push(
            R22,
            Event::LogicalDelete(LogicalDelete {
                basis: basis(
                    format!(
                        "\"{}\" is no longer in {owner}'s filter union ({reason}) but still exists in the CRM; \
                         distinct deletes are off, so it is treated exactly like a physical delete",
                        rec.title()
                    ),
                    used.clone(),
                ),
                record: rec.id.clone(),
                reason,
            }),
        );
        self.entity_delete(R22, rec, link, false, used);
    }

    fn physical_delete(&mut self, id: &RecordId) {
        let Some(link) = self.state.active_link(id).cloned() else {
            return;
        };
        let rec = self
            .state
            .records
            .get(id)
            .cloned()
            .unwrap_or_else(|| link.synced.clone());
        self.entity_delete(R21, &rec, &link, true, vec![]);
    }

    /// The delete rule of each table: R27 (appointments), R40 (service), R42 (contacts), R45 (tasks).
    fn entity_delete(
        &mut self,
        via: RuleId,
        rec: &Record,
        link: &Link,
        physical: bool,
        mut used: Vec<SettingUsed>,
    ) {
        let kind = if physical {
            "deleted in the CRM"
        } else {
            "logically deleted"
        };
        let title = rec.title().to_string();
        if link.status == LinkStatus::Creating {
            // R27 (and R42, R45): a delete needs a linked item. Nothing was written to the
            // mail server yet, so nothing is deleted there and no attendee hears of it: the
            // pending create (and any update queued behind it) is withdrawn.
            let rule = match rec.entity() {
                Entity::Contact => R42,
                Entity::Task => R45,
                _ => R27,
            };
            self.unlink(
                rule,
                rec,
                link,
                format!(
                    "\"{title}\" {kind} before its create was carried out: the create is withdrawn; \
                     nothing was written to the mailbox or sent to attendees, so nothing is deleted or cancelled"
                ),
                used,
            );
            return;
        }
        match &link.synced.body {
            RecordBody::Appointment(a) => {
                let me = self.state.owner.as_ref();
                let organizer = me.is_some_and(|m| a.organized_by(m));
                let future = a.start > self.ctx.now;
                if a.service {
                    if future {
                        self.delete_only(R40, rec, link, format!(
                            "service appointment \"{title}\" {kind}: this participant's copy is deleted; service appointments never send cancellations (R40)"
                        ), used);
                    } else {
                        self.unlink(R27, rec, link, format!("\"{title}\" {kind} but it is in the past: unlinked, left in place (R27)"), used);
                    }
                    return;
                }
                if organizer && future {
                    let rule = if physical { R27 } else { via };
                    let why = format!(
                        "\"{title}\" {kind}; this is the organizer's mailbox and the meeting is in the future, \
                         so it is deleted here{}",
                        if attendee_addresses(a).is_empty() {
                            ""
                        } else {
                            ", which sends a cancellation to its attendees"
                        }
                    );
                    self.delete_with_cancellation(rule, rec, link, why, used);
                } else {
                    let why = if !organizer {
                        format!(
                            "\"{title}\" {kind}, but this mailbox is not the organizer's: only unlinked, left in the calendar (R27)"
                        )
                    } else {
                        format!(
                            "\"{title}\" {kind}, but the meeting is in the past: only unlinked, left in the calendar (R27)"
                        )
                    };
                    self.unlink(R27, rec, link, why, used);
                }
            }
            RecordBody::Contact(_) => {
                let s = self.ctx.settings;
                used.push(setting(s, SettingKey::ContactDeleteOnlyForNonOwner));
                let me = self.state.owner.as_ref();
                let owner_is_me = me == Some(&rec.owner);
                if s.contact_delete_only_for_non_owner && owner_is_me {
                    self.unlink(R42, rec, link, format!(
                        "contact \"{title}\" {kind}; the mailbox user owns it, and contacts are deleted only in non-owners' mailboxes: unlinked (R42)"
                    ), used);
                } else {
                    self.delete_only(R42, rec, link, format!(
                        "contact \"{title}\" {kind}; the mailbox user is not its owner, so the linked contact is deleted (R42)"
                    ), used);
                }
            }
            RecordBody::Task(_) => {
                let completed_on_server = link
                    .remote
                    .as_ref()
                    .and_then(|r| self.state.remote_items.get(r))
                    .is_some_and(|i| {
                        matches!(
                            i.fields,
                            RemoteFields::Task {
                                percent_complete: 100,
                                ..
                            }
                        )
                    });
                if completed_on_server {
                    self.unlink(R45, rec, link, format!(
                        "task \"{title}\" {kind}, but it is already Completed on the mail server: unlinked, kept there (R45)"
                    ), used);
                } else {
                    self.delete_only(
                        R45,
                        rec,
                        link,
                        format!("task \"{title}\" {kind}: the linked server task is deleted (R45)"),
                        used,
                    );
                }
            }
            RecordBody::Email(_) => {}
        }
    }

    fn delete_only(
        &mut self,
        rule: RuleId,
        rec: &Record,
        link: &Link,
        reason: String,
        used: Vec<SettingUsed>,
    ) {
        let key = self.key("delete", &rec.id, rec.version);
        self.push(
            rule,
            Event::DeleteIntent(DeleteIntent {
                basis: basis(reason, used),
                record: rec.id.clone(),
                remote: link.remote.clone(),
                target: Side::MailServer,
                key,
            }),
        );
    }

    fn delete_with_cancellation(
        &mut self,
        rule: RuleId,
        rec: &Record,
        link: &Link,
        reason: String,
        used: Vec<SettingUsed>,
    ) {
        self.delete_only(rule, rec, link, reason, used.clone());
        let a = link
            .synced
            .appointment()
            .expect("cancellations are for appointments");
        let attendees = attendee_addresses(a);
        if attendees.is_empty() {
            return;
        }
        let version = link.synced.version;
        if self
            .state
            .notified
            .contains(&(rec.id.clone(), version, IntentKind::Cancel))
        {
            self.push(
                R82,
                Event::NoAction(NoAction {
                    basis: basis(
                        format!("the cancellation of \"{}\" version {version} was already sent; it is not sent twice", rec.title()),
                        used,
                    ),
                    record: Some(rec.id.clone()),
                    remote: link.remote.clone(),
                }),
            );
            return;
        }
        let key = self.key("cancel", &rec.id, version);
        self.push(
            rule,
            Event::CancelIntent(CancelIntent {
                basis: basis(
                    format!(
                        "deleting \"{}\" in the organizer's mailbox sends a meeting cancellation to {} attendee(s)",
                        rec.title(),
                        attendees.len()
                    ),
                    used,
                ),
                record: rec.id.clone(),
                remote: link.remote.clone(),
                attendees,
                version,
                key,
            }),
        );
    }

    fn unlink(
        &mut self,
        rule: RuleId,
        rec: &Record,
        link: &Link,
        reason: String,
        used: Vec<SettingUsed>,
    ) {
        self.push(
            rule,
            Event::Unlinked(Unlinked {
                basis: basis(reason, used),
                record: rec.id.clone(),
                remote: link.remote.clone(),
            }),
        );
    }

    /// R19: the last enabled filter of a table was removed.
    fn no_filter_left(&mut self, entity: Entity) {
        let s = self.state;
        let linked: Vec<(&Record, Link)> = s
            .links
            .iter()
            .filter(|(_, l)| l.is_active() && l.synced.entity() == entity)
            .filter_map(|(id, l)| s.records.get(id).map(|r| (r.as_ref(), l.clone())))
            .collect();
        for (rec, link) in linked {
            self.unlink(
                R19,
                rec,
                &link,
                format!(
                    "{} has no enabled {entity} filter any more: sync of {entity} rows stops; \"{}\" stays where it is",
                    self.owner_name(),
                    rec.title()
                ),
                vec![],
            );
        }
    }

    // ───────────── mail server → CRM: R33, R36, R37, R39, R43, R44, R46, R48, R73 ─────────────

    fn item_seen(&mut self, item: &RemoteItem) {
        let s = self.state;
        if !self.act_enabled() {
            return;
        }
        let prev = s.remote_items.get(&item.remote);
        if let Some(record_id) = s.by_remote.get(&item.remote) {
            let Some(link) = s.active_link(record_id).cloned() else {
                return;
            };
            // The echo guard of R18: the version ledgersync itself wrote (its create or
            // update reported this tag) is its own write seen again, no edit by anyone.
            if link.written.as_deref() == Some(item.etag.as_str()) {
                return;
            }
            match prev {
                // First sighting of an item the engine wrote whose written version is unknown
                // (no tag reported): it holds what was written.
                None if link.written.is_none() => return,
                Some(prev)
                    if prev.content_hash == item.content_hash && prev.tracked == item.tracked =>
                {
                    return; // etag churn, no content change
                }
                // A new version: another program changed the item (R18, R48, R73 below).
                _ => {}
            }
            let rec = s
                .records
                .get(record_id)
                .cloned()
                .unwrap_or_else(|| link.synced.clone());
            if prev.is_some_and(|p| p.tracked.is_some()) && item.tracked.is_none() {
                self.push(
                    R73,
                    Event::ItemUntracked(ItemUntracked {
                        basis: basis(
                            format!("the tracking category was removed from \"{}\": untracked, the CRM row is kept", item.fields.title()),
                            vec![],
                        ),
                        record: Some(record_id.clone()),
                        remote: item.remote.clone(),
                    }),
                );
                self.unlink(
                    R73,
                    &rec,
                    &link,
                    "untracked on the mail server: the link ends, both copies stay".into(),
                    vec![],
                );
                return;
            }
            if let RecordBody::Appointment(a) = &rec.body
                && a.state.is_closed()
            {
                self.push(
                    R37,
                    Event::NoAction(NoAction {
                        basis: basis(
                            format!(
                                "\"{}\" changed on the mail server, but the CRM appointment is {}: mail-server changes are ignored",
                                rec.title(),
                                a.state.name()
                            ),
                            vec![],
                        ),
                        record: Some(rec.id.clone()),
                        remote: Some(item.remote.clone()),
                    }),
                );
                return;
            }
            let (rule, completed, note) = match (&item.fields, &rec.body) {
                (
                    RemoteFields::Task {
                        percent_complete: 100,
                        ..
                    },
                    RecordBody::Task(t),
                ) if !t.state.is_closed() => (
                    R48,
                    true,
                    "reached 100 % on the mail server: the CRM task is marked Completed",
                ),
                _ => (
                    R18,
                    false,
                    "changed on the mail server: the linked CRM row is updated",
                ),
            };
            let key = self.key("crm-update", &rec.id, rec.version);
            self.push(
                rule,
                Event::UpdateIntent(UpdateIntent {
                    basis: basis(format!("\"{}\" {note}", item.fields.title()), vec![]),
                    record: rec.id.clone(),
                    remote: Some(item.remote.clone()),
                    target: Side::Crm,
                    item: ItemWrite {
                        title: item.fields.title().to_string(),
                        version: rec.version,
                        show_as: None,
                        reminder: false,
                        notify_attendees: false,
                        attendees: 0,
                        completed,
                        actual_start: None,
                    },
                    key,
                }),
            );
            return;
        }
        let Some(how) = item.tracked else { return };
        if prev.is_some_and(|p| p.tracked.is_some()) {
            return; // already tracked, CRM create pending
        }
        let settings = self.ctx.settings;
        if let Some(orig) = &item.copy_of
            && s.by_remote.contains_key(orig)
            && settings.ignore_copied_items
        {
            self.push(
                R39,
                Event::NoAction(NoAction {
                    basis: basis(
                        format!(
                            "\"{}\" is a copy of a linked item; copies are ignored",
                            item.fields.title()
                        ),
                        vec![setting(settings, SettingKey::IgnoreCopiedItems)],
                    ),
                    record: None,
                    remote: Some(item.remote.clone()),
                }),
            );
            return;
        }
        let (rule, actual_start, what) = match &item.fields {
            RemoteFields::Appointment { organizer, .. } => {
                let from_organizer = organizer
                    .as_ref()
                    .is_some_and(|o| o.eq_ignore_ascii_case(&s.address));
                if !from_organizer && !settings.track_appointments_from_non_organizer {
                    self.push(
                        R34,
                        Event::NoAction(NoAction {
                            basis: basis(
                                format!("\"{}\" was tracked by a non-organizer, and non-organizer tracking is off", item.fields.title()),
                                vec![setting(settings, SettingKey::TrackAppointmentsFromNonOrganizer)],
                            ),
                            record: None,
                            remote: Some(item.remote.clone()),
                        }),
                    );
                    return;
                }
                (
                    R33,
                    None,
                    "tracked meeting in the calendar: an appointment is created in the CRM",
                )
            }
            RemoteFields::Task { .. } => (
                R44,
                Some(self.ctx.now),
                "tracked server task: a CRM task is created, with actual start now (R48)",
            ),
            RemoteFields::Contact { .. } => {
                (R33, None, "tracked contact: a CRM contact is created")
            }
        };
        let record = RecordId(format!("from-{}", item.remote));
        self.push(
            rule,
            Event::ItemTracked(ItemTracked {
                basis: basis(
                    format!(
                        "\"{}\" carries the tracking signal {how:?}",
                        item.fields.title()
                    ),
                    vec![],
                ),
                record: Some(record.clone()),
                remote: item.remote.clone(),
                how,
            }),
        );
        let key = self.key("crm-create", &record, 0);
        self.push(
            rule,
            Event::CreateIntent(CreateIntent {
                basis: basis(format!("\"{}\": {what}", item.fields.title()), vec![]),
                record,
                remote: Some(item.remote.clone()),
                target: Side::Crm,
                item: ItemWrite {
                    title: item.fields.title().to_string(),
                    version: 0,
                    show_as: None,
                    reminder: false,
                    notify_attendees: false,
                    attendees: 0,
                    completed: matches!(
                        item.fields,
                        RemoteFields::Task {
                            percent_complete: 100,
                            ..
                        }
                    ),
                    actual_start,
                },
                key,
            }),
        );
    }

    fn item_gone(&mut self, remote: &RemoteId) {
        let s = self.state;
        if !self.act_enabled() {
            return;
        }
        let Some(record_id) = s.by_remote.get(remote) else {
            return;
        };
        let Some(link) = s.active_link(record_id).cloned() else {
            return;
        };
        let rec = s
            .records
            .get(record_id)
            .cloned()
            .unwrap_or_else(|| link.synced.clone());
        let me = s.owner.as_ref();
        let title = rec.title().to_string();
        let crm_delete = |d: &mut Self, rule: RuleId, reason: String, used: Vec<SettingUsed>| {
            let key = d.key("crm-delete", &rec.id, rec.version);
            d.push(
                rule,
                Event::DeleteIntent(DeleteIntent {
                    basis: basis(reason, used),
                    record: rec.id.clone(),
                    remote: Some(remote.clone()),
                    target: Side::Crm,
                    key,
                }),
            );
        };
        match &rec.body {
            RecordBody::Appointment(a) => {
                let open = !a.state.is_closed();
                let future = a.start > self.ctx.now;
                let organizer = me.is_some_and(|m| a.organized_by(m));
                if open && future && organizer {
                    crm_delete(
                        self,
                        R36,
                        format!(
                            "\"{title}\" was deleted in the organizer's calendar; it is open and in the future, so the CRM appointment is deleted"
                        ),
                        vec![],
                    );
                } else {
                    let why = if !open {
                        "it is completed or canceled in the CRM"
                    } else if !future {
                        "it is in the past"
                    } else {
                        "this mailbox is not the organizer's"
                    };
                    self.unlink(R36, &rec, &link, format!("\"{title}\" was deleted on the mail server, but {why}: the CRM appointment is kept, unlinked"), vec![]);
                }
            }
            RecordBody::Contact(_) => {
                if me == Some(&rec.owner) {
                    crm_delete(
                        self,
                        R43,
                        format!(
                            "contact \"{title}\" was deleted on the mail server by its owner: the CRM contact is deleted"
                        ),
                        vec![],
                    );
                } else {
                    self.unlink(R43, &rec, &link, format!(
                        "contact \"{title}\" was deleted on the mail server, but the mailbox user does not own it: the CRM contact is kept"
                    ), vec![]);
                }
            }
            RecordBody::Task(t) => {
                let settings = self.ctx.settings;
                let used = vec![setting(settings, SettingKey::TaskDeletionMode)];
                let delete = match settings.task_deletion_mode {
                    TaskDeletionMode::Delete => true,
                    TaskDeletionMode::DeleteIfNotCompleted => !t.state.is_closed(),
                    TaskDeletionMode::Never => false,
                };
                if delete {
                    crm_delete(
                        self,
                        R46,
                        format!(
                            "task \"{title}\" was deleted on the mail server: the CRM task is deleted"
                        ),
                        used,
                    );
                } else {
                    self.unlink(R46, &rec, &link, format!(
                        "task \"{title}\" was deleted on the mail server; the task deletion mode keeps the CRM task"
                    ), used);
                }
            }
            RecordBody::Email(_) => {}
        }
    }

    // ───────────── cadence: R7, R8, R9 ─────────────

    /// When the workload's next cycle runs, counted from the end of the cycle that just
    /// finished: incoming 5 minutes, 2 after a busy cycle, growing by a step per quiet cycle up
    /// to 12 (R7); outgoing every 5 minutes (R8); ACT 5 minutes after a cycle with changes,
    /// growing per quiet cycle up to 12, or 15 when incoming email is enabled too (R9).
    fn schedule_after_cycle(&mut self, w: Workload, items: u32) {
        let s = self.state;
        let cfg = &self.ctx.settings.schedule;
        let quiet = if items == 0 {
            s.workload(w).quiet_cycles + 1
        } else {
            0
        };
        let stretched = |base: Duration, max: Duration| {
            Duration(
                (base.0 + cfg.quiet_step.0 * quiet as i64)
                    .min(max.0)
                    .max(base.0.min(max.0)),
            )
        };
        let (interval, why, keys): (Duration, String, &[SettingKey]) = match w {
            Workload::Incoming if items >= cfg.busy_items => (
                cfg.incoming_min,
                format!("busy cycle ({items} items): incoming email is checked again soon"),
                &[
                    SettingKey::ScheduleIncomingMinSeconds,
                    SettingKey::ScheduleBusyItems,
                ],
            ),
            Workload::Incoming if items > 0 => (
                cfg.incoming,
                format!("{items} item(s) this cycle: the ordinary incoming cadence"),
                &[SettingKey::ScheduleIncomingSeconds],
            ),
            Workload::Incoming => (
                stretched(cfg.incoming, cfg.incoming_max),
                format!(
                    "{quiet} quiet cycle(s) in a row: incoming email waits longer, up to the maximum"
                ),
                &[
                    SettingKey::ScheduleIncomingSeconds,
                    SettingKey::ScheduleQuietStepSeconds,
                    SettingKey::ScheduleIncomingMaxSeconds,
                ],
            ),
            Workload::Outgoing => (
                cfg.outgoing,
                "Pending Send is scanned at a fixed interval".to_string(),
                &[SettingKey::ScheduleOutgoingSeconds],
            ),
            Workload::Act => {
                let max = if s.workload(Workload::Incoming).enabled {
                    cfg.act_max_with_incoming
                } else {
                    cfg.act_max
                };
                let key = if s.workload(Workload::Incoming).enabled {
                    SettingKey::ScheduleActMaxWithIncomingSeconds
                } else {
                    SettingKey::ScheduleActMaxSeconds
                };
                if items > 0 {
                    (
                        cfg.act_min,
                        format!("{items} change(s) this cycle: the shortest ACT cadence"),
                        &[SettingKey::ScheduleActMinSeconds],
                    )
                } else {
                    (
                        stretched(cfg.act_min, max),
                        format!(
                            "{quiet} quiet cycle(s) in a row: ACT waits longer, up to the maximum"
                        ),
                        if key == SettingKey::ScheduleActMaxSeconds {
                            &[
                                SettingKey::ScheduleActMinSeconds,
                                SettingKey::ScheduleQuietStepSeconds,
                                SettingKey::ScheduleActMaxSeconds,
                            ]
                        } else {
                            &[
                                SettingKey::ScheduleActMinSeconds,
                                SettingKey::ScheduleQuietStepSeconds,
                                SettingKey::ScheduleActMaxWithIncomingSeconds,
                            ]
                        },
                    )
                }
            }
        };
        let at = self.ctx.now + interval;
        let used = keys
            .iter()
            .map(|k| setting(self.ctx.settings, *k))
            .collect();
        self.push(
            cadence_rule(w),
            Event::CycleScheduled(CycleScheduled {
                basis: basis(
                    format!("{why}: next {w} cycle in {} s, at {at}", interval.0 / 1000),
                    used,
                ),
                workload: w,
                at,
            }),
        );
    }

    // ───────────── outcomes and errors: R10, R11, R12 ─────────────

    fn intent_succeeded(&mut self, p: &IntentSucceeded) {
        let s = self.state;
        if let Some(create) = s.withdrawn.get(&p.intent) {
            self.withdrawn_create_succeeded(p, create);
            return;
        }
        let Some(intent) = s.intents.get(&p.intent) else {
            return;
        };
        if intent.kind != IntentKind::Create {
            return;
        }
        let remote = p.remote.clone().or_else(|| intent.remote.clone());
        let Some(remote) = remote else { return };
        let title = s
            .records
            .get(&intent.record)
            .map(|r| r.title().to_string())
            .unwrap_or_else(|| intent.record.to_string());
        let rule = if intent.to_crm { R33 } else { R17 };
        let waiting = s
            .links
            .get(&intent.record)
            .is_some_and(|l| l.create == Some(p.intent));
        if !waiting {
            self.push(
                rule,
                Event::NoAction(NoAction {
                    basis: basis(
                        format!(
                            "\"{title}\" was created as {remote} after the row stopped being synced to this mailbox \
                             (or was created again): the item stays where it is, unlinked"
                        ),
                        vec![],
                    ),
                    record: Some(intent.record.clone()),
                    remote: Some(remote),
                }),
            );
            return;
        }
        self.push(
            rule,
            Event::LinkCreated(LinkCreated {
                basis: basis(
                    format!(
                        "\"{title}\" was created on the {}: CRM row and server item are linked",
                        if intent.to_crm { "CRM" } else { "mail server" }
                    ),
                    vec![],
                ),
                record: intent.record.clone(),
                remote,
            }),
        );
    }

    /// R27 (R42, R45): a create withdrawn while it was already being carried out succeeded
    /// anyway. The row is not synced to this mailbox, so the item it made is deleted, and the
    /// invitation it sent, if any, is cancelled: what attendees were told is taken back.
    fn withdrawn_create_succeeded(&mut self, p: &IntentSucceeded, create: &PendingIntent) {
        let Some(remote) = p.remote.clone().or_else(|| create.remote.clone()) else {
            return;
        };
        let record = create.record.clone();
        let rec = self.state.records.get(&record).cloned();
        let title = rec
            .as_ref()
            .map(|r| r.title().to_string())
            .unwrap_or_else(|| record.to_string());
        let rule = match rec.as_ref().map(|r| r.entity()) {
            Some(Entity::Contact) => R42,
            Some(Entity::Task) => R45,
            _ => R27,
        };
        let version = rec.as_ref().map_or(0, |r| r.version);
        self.push(
            rule,
            Event::DeleteIntent(DeleteIntent {
                basis: basis(
                    format!(
                        "\"{title}\" was created as {remote} by a create withdrawn while it was being carried out; \
                         the row is not synced to this mailbox, so the item is deleted"
                    ),
                    vec![],
                ),
                record: record.clone(),
                remote: Some(remote.clone()),
                target: Side::MailServer,
                key: format!("{}/{}/delete-withdrawn/{}", self.mailbox_id(), record, p.intent),
            }),
        );
        let (Some((notified, _)), Some(a)) =
            (create.notifies, rec.as_ref().and_then(|r| r.appointment()))
        else {
            return;
        };
        let attendees = attendee_addresses(a);
        if attendees.is_empty() {
            return;
        }
        self.push(
            rule,
            Event::CancelIntent(CancelIntent {
                basis: basis(
                    format!(
                        "the withdrawn create of \"{title}\" sent an invitation before it was withdrawn: \
                         {} attendee(s) get a cancellation",
                        attendees.len()
                    ),
                    vec![],
                ),
                record: record.clone(),
                remote: Some(remote),
                attendees,
                version: notified.max(version),
                key: self.key("cancel", &record, notified),
            }),
        );
    }

    fn intent_failed(&mut self, p: &IntentFailed) {
        let s = self.state;
        let Some(intent) = s.intents.get(&p.intent) else {
            return;
        };
        let (class, _) = classify(&p.error);
        let what = format!("{:?}", intent.kind).to_lowercase();
        let next = match (class, intent.kind) {
            (ErrorClass::Transient, _) => {
                "only this item is retried, with the same idempotency key, in a later cycle; the mailbox is not affected"
            }
            (ErrorClass::Permanent, IntentKind::Delete) => {
                "the item cannot be deleted: it stays where it is, unlinked"
            }
            (ErrorClass::Permanent, IntentKind::Create) => {
                "the item was not created; the row is not linked in this mailbox"
            }
            (ErrorClass::Permanent, _) => {
                "this change is given up; the next change of the row is tried afresh"
            }
        };
        self.push(
            R12,
            Event::ErrorClassified(ErrorClassified {
                basis: basis(
                    format!(
                        "the {what} intent for {} failed ({} {}): {next}",
                        intent.record, p.error.code, p.error.message
                    ),
                    vec![setting(self.ctx.settings, SettingKey::TransientRetryLimit)],
                ),
                workload: Workload::Act,
                class,
                scope: ErrorScope::Item,
                attempt: 1,
                limit: self.ctx.settings.transient_retry_limit,
                intent: Some(p.intent),
                error: p.error.clone(),
            }),
        );
    }

    fn workload_error(&mut self, w: Workload, error: &ServerError) {
        let s = self.state;
        let settings = self.ctx.settings;
        let ws = s.workload(w);
        let (class, scope) = classify(error);
        let attempt = ws.consecutive_errors + 1;
        let limit = settings.transient_retry_limit;
        let used = vec![
            setting(settings, SettingKey::TransientRetryLimit),
            setting(settings, SettingKey::TransientRetryIntervalMinutes),
        ];
        match class {
            ErrorClass::Permanent => {
                self.push(
                    R10,
                    Event::ErrorClassified(ErrorClassified {
                        basis: basis(
                            format!("{} {} is a permanent error", error.code, error.message),
                            used.clone(),
                        ),
                        workload: w,
                        class,
                        scope,
                        attempt,
                        limit,
                        intent: None,
                        error: error.clone(),
                    }),
                );
                if ws.enabled {
                    self.push(
                        R10,
                        Event::WorkloadDisabled(WorkloadDisabled {
                            basis: basis(format!("a permanent error disables {w} at once"), vec![]),
                            workload: w,
                            reason: DisableReason::PermanentError,
                        }),
                    );
                    let who = if scope == ErrorScope::Server {
                        "The owner of the email server profile has been notified."
                    } else {
                        "The mailbox owner must correct the credentials and run Test & Enable again."
                    };
                    self.alert(R10, AlertLevel::Error, format!(
                        "The mailbox {} has been disabled for {w} because the server answered {} {}. {who}",
                        s.address, error.code, error.message
                    ));
                }
            }
            ErrorClass::Transient => {
                self.push(
                    R11,
                    Event::ErrorClassified(ErrorClassified {
                        basis: basis(
                            format!(
                                "{} {} is transient: failure {attempt} of {limit}",
                                error.code, error.message
                            ),
                            used.clone(),
                        ),
                        workload: w,
                        class,
                        scope,
                        attempt,
                        limit,
                        intent: None,
                        error: error.clone(),
                    }),
                );
                if !ws.enabled {
                    return;
                }
                if attempt >= limit {
                    self.push(
                        R11,
                        Event::WorkloadDisabled(WorkloadDisabled {
                            basis: basis(format!("{attempt} consecutive transient failures reach the limit of {limit}"), used.clone()),
                            workload: w,
                            reason: DisableReason::TransientLimit,
                        }),
                    );
                    self.alert_with(R11, AlertLevel::Error, format!(
                        "The mailbox {} has been disabled for {w} after {attempt} consecutive transient failures (last: {} {}). \
                         Check the server, then run Test & Enable again.",
                        s.address, error.code, error.message
                    ), used.clone());
                } else {
                    // Never sooner than the retry interval, never before the server's Retry-After.
                    let at = (self.ctx.now + settings.transient_retry_interval)
                        .max(error.retry_after.unwrap_or_default());
                    self.push(
                        R11,
                        Event::RetryScheduled(RetryScheduled {
                            basis: basis(
                                format!(
                                    "transient failure {attempt} of {limit}: retry {w} at {at}"
                                ),
                                used,
                            ),
                            workload: w,
                            at,
                        }),
                    );
                }
            }
        }
    }
}

/// Classifies a server answer (R10, R11): authentication, authorization, approval, TLS,
/// discovery and malformed-request failures are permanent; everything else (5xx, timeouts, throttling, network) is
/// transient. Credentials problems are the mailbox's; TLS, discovery and 5xx are the server's.
pub fn classify(error: &ServerError) -> (ErrorClass, ErrorScope) {
    let code = error.code.to_ascii_lowercase();
    let permanent_mailbox = [
        "401",
        "403",
        "authenticationfailed",
        "authorizationfailed",
        "unapproved",
        "license",
    ];
    // `unsupported` and `invalid` are the connectors' answers for a request that can never
    // succeed (a CRM-side intent sent to a mail server, a malformed item): retrying is useless.
    let permanent_server = [
        "tls",
        "certificate",
        "autodiscover",
        "404",
        "400",
        "422",
        "unsupported",
        "invalid",
    ];
    if permanent_mailbox.iter().any(|c| code.contains(c)) {
        (ErrorClass::Permanent, ErrorScope::Mailbox)
    } else if permanent_server.iter().any(|c| code.contains(c)) {
        (ErrorClass::Permanent, ErrorScope::Server)
    } else {
        (ErrorClass::Transient, ErrorScope::Server)
    }
}
