//! Deletes from the CRM side: logical (R22, R23) and physical (R21) deletes, the delete rule
//! of each table (R27, R40, R42, R45), unlinking, and the last filter removed (R19).

use super::*;

impl Decider<'_> {
    pub(super) fn logical_delete(&mut self, rec: &Record, link: &Link, reason: LeaveReason) {
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

    pub(super) fn physical_delete(&mut self, id: &RecordId) {
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
    pub(super) fn entity_delete(
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

    pub(super) fn delete_only(
        &mut self,
        rule: RuleId,
        rec: &Record,
        link: &Link,
        reason: String,
        used: Vec<SettingUsed>,
    ) {
        let key = self.key("delete", &rec.id, rec.version);
        let reason = with_notes(reason, self.held_note().as_slice());
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

    pub(super) fn delete_with_cancellation(
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
        let reason = format!(
            "deleting \"{}\" in the organizer's mailbox sends a meeting cancellation to {} attendee(s)",
            rec.title(),
            attendees.len()
        );
        let reason = with_notes(reason, self.held_note().as_slice());
        self.push(
            rule,
            Event::CancelIntent(CancelIntent {
                basis: basis(reason, used),
                record: rec.id.clone(),
                remote: link.remote.clone(),
                attendees,
                version,
                key,
            }),
        );
    }

    pub(super) fn unlink(
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
    pub(super) fn no_filter_left(&mut self, entity: Entity) {
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
}
