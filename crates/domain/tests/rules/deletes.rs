//! Deletes from the CRM side: R19, R21–R23, R27, R42, R45.

use super::*;

#[test]
fn r19_table_without_enabled_filter_stops_syncing_only_that_table() {
    let mut mb = Mailbox::ready("jayne");
    let c1 = contact("c1", "jayne");
    let t1 = task("t1", "jayne", mb.now);
    let remote = mb.sync_new(&c1);
    mb.sync_new(&t1);

    // The only contact filter is disabled.
    let obs = Event::FilterChanged(FilterChanged {
        user: UserId::new("jayne"),
        entity: Entity::Contact,
        filters: vec![filter(
            Entity::Contact,
            "My Outlook Contacts",
            "owner = me and state = active",
            false,
        )],
    });
    let ds = mb.feed(obs);

    assert_eq!(summary(&ds), [(19, "unlinked")]);
    let (_, u) = one(unlinks(&ds), &ds);
    assert_eq!((&u.record, &u.remote), (&c1.id, &Some(remote)));
    assert!(deletes(&ds).is_empty(), "the item stays where it is");
    assert_eq!(
        mb.link(&t1.id).status,
        LinkStatus::Linked,
        "tasks are unaffected"
    );

    // New contacts are not synced; new tasks still are.
    assert!(mb.feed(upsert(&contact("c2", "jayne"))).is_empty());
    assert_eq!(
        summary(&mb.feed(upsert(&task("t2", "jayne", mb.now)))),
        [(17, "create_intent")]
    );
    // Removing the table's filters altogether has the same effect.
    assert!(mb.set_filters(Entity::Contact, &[]).is_empty());
    assert!(mb.feed(upsert(&contact("c3", "jayne"))).is_empty());
}

#[test]
fn r21_physical_delete_applies_each_tables_delete_rule() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let c = contact("c1", "jayne");
    let t = task("t1", "jayne", mb.now);
    for r in [&a, &c, &t] {
        mb.sync_new(r);
    }

    assert_eq!(
        summary(&mb.feed(deleted(&a))),
        [(27, "delete_intent"), (27, "cancel_intent")]
    );
    assert_eq!(summary(&mb.feed(deleted(&c))), [(42, "unlinked")]);
    assert_eq!(summary(&mb.feed(deleted(&t))), [(45, "delete_intent")]);
    // A row that was never synced here has no delete rule to apply.
    assert!(mb.feed(deleted(&contact("c9", "paul"))).is_empty());
}

#[test]
fn r22_logical_delete_cancels_when_distinct_deletes_off() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    // Jayne narrows her filter: her own meeting leaves it but still exists in the CRM.
    let ds = mb.set_filters(Entity::Appointment, &["required_attendee = me"]);

    assert_eq!(
        summary(&ds),
        [
            (22, "logical_delete"),
            (22, "delete_intent"),
            (22, "cancel_intent")
        ]
    );
    let (_, ld) = one(logical_deletes(&ds), &ds);
    assert_eq!(
        (&ld.record, &ld.reason),
        (&a.id, &LeaveReason::FilterEdited)
    );
    assert!(
        ld.basis
            .settings
            .iter()
            .any(|s| s.key == "distinct_physical_logical_deletes" && s.value == "false")
    );
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!(
        (d.target, &d.remote),
        (Side::MailServer, &Some(remote.clone()))
    );
    let (_, cancel) = one(cancels(&ds), &ds);
    assert_eq!(cancel.attendees, team_addresses());
    assert_eq!((cancel.version, &cancel.remote), (1, &Some(remote)));
}

#[test]
fn r22_logical_delete_has_the_effect_of_a_physical_delete() {
    let mut logical = Mailbox::ready("jayne");
    let mut physical = Mailbox::ready("jayne");
    let t = task("t1", "jayne", logical.now);
    let a = team_meeting("a1", "jayne", logical.now);
    for mb in [&mut logical, &mut physical] {
        mb.sync_new(&t);
        mb.sync_new(&a);
    }

    // The task is reassigned in the CRM (owner filter no longer matches); the meeting leaves
    // the filter because its organizer lost access.
    let t2 = next_version(&t, |r| r.owner = UserId::new("paul"));
    let ld_task = logical.feed(upsert(&t2));
    let ld_meeting = logical.feed(access_lost("jayne", &[&a], AccessReason::Team));
    let pd_task = physical.feed(deleted(&t));
    let pd_meeting = physical.feed(deleted(&a));

    assert_eq!(
        summary(&ld_task),
        [(22, "logical_delete"), (45, "delete_intent")]
    );
    assert_eq!(summary(&pd_task), [(45, "delete_intent")]);
    assert_eq!(deletes(&ld_task)[0].1.remote, deletes(&pd_task)[0].1.remote);
    assert_eq!(
        summary(&ld_meeting)[1..],
        [(22, "delete_intent"), (22, "cancel_intent")]
    );
    assert_eq!(
        summary(&pd_meeting),
        [(27, "delete_intent"), (27, "cancel_intent")]
    );
    assert_eq!(
        cancels(&ld_meeting)[0].1.attendees,
        cancels(&pd_meeting)[0].1.attendees
    );
}

#[test]
fn r23_logical_delete_unlinks_and_sends_nothing_when_distinct_deletes_on() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.distinct_physical_logical_deletes = true;
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    let ds = mb.set_filters(Entity::Appointment, &["required_attendee = me"]);

    assert_eq!(summary(&ds), [(23, "logical_delete"), (23, "unlinked")]);
    assert_eq!(
        one(logical_deletes(&ds), &ds).1.reason,
        LeaveReason::FilterEdited
    );
    assert_eq!(one(unlinks(&ds), &ds).1.remote, Some(remote));
    assert!(deletes(&ds).is_empty() && cancels(&ds).is_empty());
    assert_eq!(mb.link(&a.id).status, LinkStatus::Unlinked);
}

#[test]
fn r27_physical_delete_by_organizer_of_future_meeting_deletes_and_cancels() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    let ds = mb.feed(deleted(&a));

    assert_eq!(summary(&ds), [(27, "delete_intent"), (27, "cancel_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!((d.target, &d.remote), (Side::MailServer, &Some(remote)));
    assert_eq!(one(cancels(&ds), &ds).1.attendees, team_addresses());
    assert_eq!(mb.link(&a.id).status, LinkStatus::Deleting);
}

#[test]
fn r27_physical_delete_in_attendees_mailbox_only_unlinks() {
    let mut zoe = Mailbox::ready("zoe");
    let a = team_meeting("a1", "jayne", zoe.now);
    let remote = zoe.sync_new(&a);

    let ds = zoe.feed(deleted(&a));

    assert_eq!(summary(&ds), [(27, "unlinked")]);
    assert_eq!(one(unlinks(&ds), &ds).1.remote, Some(remote));
}

#[test]
fn r27_physical_delete_of_past_meeting_only_unlinks() {
    let mut mb = Mailbox::ready("jayne");
    let a = appointment(
        "a1",
        crm_user("jayne"),
        vec![crm_user("zoe")],
        vec![],
        mb.now - Duration::days(1),
    );
    mb.sync_new(&a);

    let ds = mb.feed(deleted(&a));

    assert_eq!(summary(&ds), [(27, "unlinked")]);
}

#[test]
fn r27_physical_delete_deletes_even_with_distinct_deletes_on() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.distinct_physical_logical_deletes = true;
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);

    let ds = mb.feed(deleted(&a));

    assert_eq!(summary(&ds), [(27, "delete_intent"), (27, "cancel_intent")]);
}

#[test]
fn r27_meeting_that_is_not_linked_is_not_deleted() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.distinct_physical_logical_deletes = true;
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);
    // It left the filter with distinct deletes on: unlinked, left in the calendar.
    assert_eq!(
        summary(&mb.set_filters(Entity::Appointment, &["required_attendee = me"]))[1],
        (23, "unlinked")
    );

    assert!(
        mb.feed(deleted(&a)).is_empty(),
        "an unlinked meeting is left alone"
    );
}

#[test]
fn r27_a_row_that_leaves_the_union_before_its_create_is_carried_out_sends_nothing() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let created = mb.feed(upsert(&a));
    let (_, c) = one(creates(&created), &created);
    assert!(c.item.notify_attendees, "the create would invite");
    let create = mb.id_of(|e| matches!(e, Event::CreateIntent(_)));

    // Deleted in the CRM before any connector ran (crm apply without serve).
    let ds = mb.feed(deleted(&a));
    assert_eq!(
        summary(&ds),
        [(27, "unlinked")],
        "no delete, no cancellation"
    );
    assert!(
        mb.state.intents.is_empty(),
        "the create is withdrawn: {:?}",
        mb.state.intents
    );
    assert_eq!(mb.link(&a.id).status, LinkStatus::Unlinked);

    // The create was already being carried out and succeeds anyway: its item is deleted and its
    // invitation cancelled.
    let ds = mb.feed(Event::IntentSucceeded(IntentSucceeded {
        intent: create,
        remote: Some(RemoteId::new("jayne/a1.ics")),
        etag: None,
        crm: None,
    }));
    assert_eq!(summary(&ds), [(27, "delete_intent"), (27, "cancel_intent")]);
    assert_eq!(one(cancels(&ds), &ds).1.attendees, team_addresses());
}

#[test]
fn r42_crm_contact_delete_unlinks_in_the_owners_mailbox() {
    let mut mb = Mailbox::ready("jayne");
    let c = contact("c1", "jayne");
    let remote = mb.sync_new(&c);

    let ds = mb.feed(deleted(&c));

    assert_eq!(summary(&ds), [(42, "unlinked")]);
    assert_eq!(one(unlinks(&ds), &ds).1.remote, Some(remote));
}

#[test]
fn r42_crm_contact_delete_deletes_in_a_non_owners_mailbox() {
    let mut paul = Mailbox::ready("paul");
    paul.set_filters(Entity::Contact, &["state = active"]);
    let c = contact("c1", "jayne");
    let remote = paul.sync_new(&c);

    let ds = paul.feed(deleted(&c));

    assert_eq!(summary(&ds), [(42, "delete_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!((d.target, &d.remote), (Side::MailServer, &Some(remote)));
}

#[test]
fn r42_owners_copy_is_deleted_when_the_rule_is_configured_off() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.contact_delete_only_for_non_owner = false;
    let c = contact("c1", "jayne");
    mb.sync_new(&c);

    let ds = mb.feed(deleted(&c));

    assert_eq!(summary(&ds), [(42, "delete_intent")]);
}

#[test]
fn r45_crm_task_delete_deletes_the_server_task() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    let remote = mb.sync_new(&t);

    let ds = mb.feed(deleted(&t));

    assert_eq!(summary(&ds), [(45, "delete_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!((d.target, &d.remote), (Side::MailServer, &Some(remote)));
}

#[test]
fn r45_crm_task_delete_keeps_a_task_already_completed_on_the_server() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    let remote = mb.sync_new(&t);
    mb.feed(seen(remote_item(
        &remote,
        2,
        remote_task_fields("Task t1", 100),
    )));

    let ds = mb.feed(deleted(&t));

    assert_eq!(summary(&ds), [(45, "unlinked")]);
    assert_eq!(one(unlinks(&ds), &ds).1.remote, Some(remote));
}
