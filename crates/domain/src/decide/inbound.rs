//! Mail server → CRM: tracked items (R33, R34, R36, R44, R48), changes and deletes made on the
//! mail server (R18, R37, R39, R43, R46, R73), and ledgersync's own writes seen again.

use super::*;

impl Decider<'_> {
    // ───────────── mail server → CRM: R33, R36, R37, R39, R43, R44, R46, R48, R73 ─────────────

    pub(super) fn item_seen(&mut self, item: &RemoteItem) {
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

    pub(super) fn item_gone(&mut self, remote: &RemoteId) {
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
}
