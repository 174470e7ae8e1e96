//! CRM → mail server: sync-filter membership (R17, R19, R20), creates and updates with the
//! Free/Busy, reminder and notification rules (R17, R18, R26, R30–R32, R40, R44, R47), meeting
//! cancellations in the CRM (R28) and the attendee-notification dedupe (R82).

use super::*;

impl Decider<'_> {
    // ───────────── CRM → mail server: R17–R24, R26–R32, R40, R42, R45, R47, R82 ─────────────

    pub(super) fn membership<'f>(
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

    pub(super) fn reconcile(
        &mut self,
        rec: &Record,
        cause: Cause<'_>,
        filters: &FilterSet,
        denial: Option<AccessReason>,
    ) {
        let m = self.membership(rec, filters, denial, true);
        self.reconcile_membership(rec, cause, m);
    }

    pub(super) fn reconcile_with_denial(
        &mut self,
        rec: &Record,
        cause: Cause<'_>,
        filters: &FilterSet,
        denial: Option<AccessReason>,
    ) {
        let m = self.membership(rec, filters, denial, false);
        self.reconcile_membership(rec, cause, m);
    }

    pub(super) fn reconcile_membership(
        &mut self,
        rec: &Record,
        cause: Cause<'_>,
        m: Membership<'_>,
    ) {
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

    pub(super) fn leave_reason_from_fields(&self, old: &Record, new: &Record) -> LeaveReason {
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
    pub(super) fn appointment_write(
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
    pub(super) fn task_write(&self, rec: &Record) -> (ItemWrite, Vec<String>, bool) {
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

    pub(super) fn plain_write(&self, rec: &Record) -> ItemWrite {
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
    pub(super) fn dedupe_notify(
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

    pub(super) fn create(&mut self, rec: &Record, filter: &str) {
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

    pub(super) fn update(&mut self, rec: &Record, link: &Link) {
        if rec.version <= link.synced.version {
            return; // nothing new (a redelivered or older snapshot)
        }
        if link.synced.version == 0 {
            // The row was created from this server item: its first CRM snapshot describes what
            // the server already holds and is adopted, not written back.
            return;
        }
        if link.crm_version == Some(rec.version) {
            // The echo guard of R18, CRM side: the version a CRM command of ledgersync's wrote
            // (its result named it) is that write coming back, adopted, not written back.
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
    pub(super) fn canceled_in_crm(&mut self, rec: &Record, link: &Link) {
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
}
