//! CRM → mail server: creates and updates (R17, R18, R20, R24, R26, R28–R32, R40, R44, R47, R82).

use super::*;

#[test]
fn r17_row_entering_the_filter_union_is_created_then_linked() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);

    let ds = mb.feed(upsert(&a));

    assert_eq!(summary(&ds), [(17, "create_intent")]);
    let (_, c) = one(creates(&ds), &ds);
    assert_eq!(
        (c.target, &c.record, &c.remote),
        (Side::MailServer, &a.id, &None)
    );
    assert_eq!((c.item.title.as_str(), c.item.version), ("Meeting a1", 1));
    assert!(
        c.basis.reason.contains("My Appointments"),
        "names the filter: {}",
        c.basis.reason
    );
    assert_eq!(mb.link(&a.id).status, LinkStatus::Creating);

    let remote = mb.remote_for(&a.id);
    let ds = mb.answer_create(&a.id, &remote);
    assert_eq!(summary(&ds), [(17, "link_created")]);
    let (_, l) = one(links_created(&ds), &ds);
    assert_eq!((&l.record, &l.remote), (&a.id, &remote));
    assert_eq!(mb.link(&a.id).status, LinkStatus::Linked);
    assert_eq!(mb.state.by_remote.get(&remote), Some(&a.id));
}

#[test]
fn r17_rows_outside_the_union_are_not_created() {
    let mut mb = Mailbox::ready("jayne");
    // Jayne is only an optional attendee: the default appointment filter does not select it.
    let a = appointment(
        "a1",
        crm_user("paul"),
        vec![],
        vec![crm_user("jayne")],
        mb.now + Duration::days(1),
    );
    assert!(mb.feed(upsert(&a)).is_empty());
    // Another user's contact and task.
    assert!(mb.feed(upsert(&contact("c1", "paul"))).is_empty());
    assert!(mb.feed(upsert(&task("t1", "paul", mb.now))).is_empty());
}

#[test]
fn r17_filters_of_a_table_are_unioned() {
    let mut mb = Mailbox::ready("jayne");
    let optional = appointment(
        "a1",
        crm_user("paul"),
        vec![],
        vec![crm_user("jayne")],
        mb.now + Duration::days(1),
    );
    assert!(mb.feed(upsert(&optional)).is_empty());

    // A second filter for the table: the row now matches one of them.
    let ds = mb.set_filters(
        Entity::Appointment,
        &[
            "organizer = me or required_attendee = me",
            "optional_attendee = me",
        ],
    );

    let (rule, c) = one(creates(&ds), &ds);
    assert_eq!(
        (rule, &c.record, c.target),
        (17, &optional.id, Side::MailServer)
    );
    assert!(
        c.basis.reason.contains("appointment filter 1"),
        "{}",
        c.basis.reason
    );
    // Rows of the first filter still match.
    let ds = mb.feed(upsert(&team_meeting("a2", "jayne", mb.now)));
    assert!(
        one(creates(&ds), &ds)
            .1
            .basis
            .reason
            .contains("appointment filter 0")
    );
}

#[test]
fn r17_enabling_act_creates_rows_already_in_the_union() {
    let mut mb = Mailbox::mapped("jayne");
    mb.approve(true);
    let a = team_meeting("a1", "jayne", mb.now);
    let c = contact("c1", "jayne");
    assert!(mb.feed(upsert(&a)).is_empty(), "ACT is not enabled yet");
    assert!(mb.feed(upsert(&c)).is_empty());

    let ds = mb.feed(mb.test(TestResult::NotRun, TestResult::NotRun, TestResult::Success));

    assert_eq!(
        summary(&ds),
        [
            (6, "workload_enabled"),
            (17, "create_intent"),
            (17, "create_intent")
        ]
    );
    let mut created: Vec<_> = creates(&ds).iter().map(|(_, c)| c.record.clone()).collect();
    created.sort();
    assert_eq!(created, [a.id, c.id]);
}

#[test]
fn r18_changed_linked_row_still_in_union_is_updated() {
    let mut mb = Mailbox::ready("jayne");
    let c1 = contact("c1", "jayne");
    let remote = mb.sync_new(&c1);

    let c2 = changed_contact(&c1, |c| c.full_name = "Kaylee Frye".into());
    let ds = mb.feed(upsert(&c2));

    assert_eq!(summary(&ds), [(18, "update_intent")]);
    let (_, u) = one(updates(&ds), &ds);
    assert_eq!((u.target, &u.remote), (Side::MailServer, &Some(remote)));
    assert_eq!((u.item.title.as_str(), u.item.version), ("Kaylee Frye", 2));
    assert_snapshot(&mb.link(&c1.id).synced, &c2);

    // A redelivered or older snapshot changes nothing.
    assert!(mb.feed(upsert(&c2)).is_empty());
    assert!(mb.feed(upsert(&c1)).is_empty());
}

#[test]
fn r18_changed_linked_meeting_is_updated() {
    let mut mb = Mailbox::ready("jayne");
    let a1 = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a1);

    let ds = mb.feed(upsert(&changed_appointment(&a1, |a| {
        a.subject = "Moved review".into()
    })));

    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!(
        (rule, u.target, &u.remote),
        (18, Side::MailServer, &Some(remote))
    );
    assert_eq!(u.item.title, "Moved review");
}

#[test]
fn r20_row_the_owner_cannot_read_is_never_created() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);

    assert!(
        mb.feed(access_lost("jayne", &[&a], AccessReason::Role))
            .is_empty()
    );
    assert!(
        mb.feed(upsert(&a)).is_empty(),
        "matches the filter but is not readable"
    );
    assert!(
        mb.set_filters(Entity::Appointment, &["organizer = me"])
            .is_empty()
    );

    let ds = mb.feed(access_regained("jayne", &[&a], AccessReason::Role));
    assert_eq!(summary(&ds), [(17, "create_intent")]);
}

#[test]
fn r20_losing_read_access_to_a_synced_row_is_a_logical_delete() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    let ds = mb.feed(access_lost("jayne", &[&a], AccessReason::Share));

    assert_eq!(
        summary(&ds),
        [
            (22, "logical_delete"),
            (22, "delete_intent"),
            (22, "cancel_intent")
        ]
    );
    let (_, ld) = one(logical_deletes(&ds), &ds);
    assert_eq!(ld.reason, LeaveReason::AccessLost(AccessReason::Share));
    assert_eq!(one(deletes(&ds), &ds).1.remote, Some(remote));

    // Once the delete is done, regaining access creates the row again.
    let del = mb.id_of(|e| matches!(e, Event::DeleteIntent(_)));
    mb.succeed(del);
    let ds = mb.feed(access_regained("jayne", &[&a], AccessReason::Share));
    let (rule, c) = one(creates(&ds), &ds);
    assert_eq!((rule, c.target), (17, Side::MailServer));
}

#[test]
fn r24_reassigned_contact_moves_from_old_owners_mailbox_to_new_owners() {
    let mut a = Mailbox::ready("jayne");
    let mut b = Mailbox::ready("paul");
    let c1 = contact("c1", "jayne");
    let remote = a.sync_new(&c1);

    let c2 = next_version(&c1, |r| r.owner = UserId::new("paul"));
    let in_a = a.feed(owner_changed(&c2, "jayne"));
    let in_b = b.feed(owner_changed(&c2, "jayne"));

    assert_eq!(
        summary(&in_a),
        [(22, "logical_delete"), (42, "delete_intent")]
    );
    assert_eq!(
        one(logical_deletes(&in_a), &in_a).1.reason,
        LeaveReason::OwnerChanged {
            from: UserId::new("jayne"),
            to: UserId::new("paul")
        }
    );
    let (_, d) = one(deletes(&in_a), &in_a);
    assert_eq!((d.target, &d.remote), (Side::MailServer, &Some(remote)));

    assert_eq!(summary(&in_b), [(17, "create_intent")]);
    let (_, c) = one(creates(&in_b), &in_b);
    assert_eq!((&c.record, c.target), (&c1.id, Side::MailServer));
}

#[test]
fn r26_new_future_meeting_in_organizers_mailbox_invites_attendees() {
    let mut mb = Mailbox::ready("jayne");

    let ds = mb.feed(upsert(&team_meeting("a1", "jayne", mb.now)));

    let (_, c) = one(creates(&ds), &ds);
    assert!(c.item.notify_attendees);
    assert_eq!(c.item.attendees, 2);
}

#[test]
fn r26_attendees_mailbox_never_sends_invitations() {
    let mut zoe = Mailbox::ready("zoe");

    let ds = zoe.feed(upsert(&team_meeting("a1", "jayne", zoe.now)));

    let (rule, c) = one(creates(&ds), &ds);
    assert_eq!(rule, 17, "zoe still gets her copy");
    assert!(!c.item.notify_attendees);
    assert!(
        c.basis.reason.contains("not the organizer"),
        "{}",
        c.basis.reason
    );
}

#[test]
fn r26_past_meeting_or_meeting_without_attendees_sends_no_invitation() {
    let mut mb = Mailbox::ready("jayne");
    let past = appointment(
        "a1",
        crm_user("jayne"),
        vec![crm_user("zoe")],
        vec![],
        mb.now - Duration::hours(2),
    );
    let alone = appointment(
        "a2",
        crm_user("jayne"),
        vec![],
        vec![],
        mb.now + Duration::days(1),
    );
    let only_me = appointment(
        "a3",
        crm_user("jayne"),
        vec![crm_user("jayne")],
        vec![],
        mb.now + Duration::days(1),
    );

    for rec in [&past, &alone, &only_me] {
        let ds = mb.feed(upsert(rec));
        let (_, c) = one(creates(&ds), &ds);
        assert!(!c.item.notify_attendees, "{}: {}", rec.id, c.basis.reason);
    }
}

#[test]
fn r26_every_sensitive_property_change_sends_an_update() {
    let mut mb = Mailbox::ready("jayne");
    let mut a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);

    let changes: [SensitiveChange; 11] = [
        ("subject", |a| a.subject = "Renamed".into()),
        ("body", |a| a.body = "Agenda attached".into()),
        ("location", |a| a.location = "Room 9".into()),
        ("all-day", |a| a.all_day = true),
        ("start", |a| a.start = a.start + Duration::hours(1)),
        ("end", |a| a.end = a.end + Duration::hours(1)),
        ("required attendees", |a| {
            a.required.push(outsider("mal@serenity.example"))
        }),
        ("optional attendees", |a| {
            a.optional.push(outsider("book@abbey.example"))
        }),
        ("status", |a| a.show_as = ShowAs::Tentative),
        ("priority", |a| a.priority = Priority::High),
        ("recurrence", |a| {
            a.recurrence = Some("FREQ=WEEKLY;COUNT=4".into())
        }),
    ];
    for (name, change) in changes {
        a = changed_appointment(&a, change);
        let ds = mb.feed(upsert(&a));
        let (rule, u) = one(updates(&ds), &ds);
        assert_eq!(rule, 18, "{name}");
        assert!(
            u.item.notify_attendees,
            "a change of {name} notifies attendees: {}",
            u.basis.reason
        );
        assert_eq!(u.item.version, a.version);
    }
}

#[test]
fn r26_change_of_no_sensitive_property_updates_without_notifying() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);

    let regarding = RecordRef {
        table: "account".into(),
        id: "acc-1".into(),
        name: "Blue Sun".into(),
    };
    let ds = mb.feed(upsert(&changed_appointment(&a, |a| {
        a.regarding = Some(regarding)
    })));

    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!(rule, 18);
    assert!(!u.item.notify_attendees, "{}", u.basis.reason);
}

#[test]
fn r26_update_in_attendees_mailbox_never_notifies() {
    let mut zoe = Mailbox::ready("zoe");
    let a = team_meeting("a1", "jayne", zoe.now);
    zoe.sync_new(&a);

    let ds = zoe.feed(upsert(&changed_appointment(&a, |a| {
        a.location = "Room 9".into()
    })));

    assert!(!one(updates(&ds), &ds).1.item.notify_attendees);
}

#[test]
fn r28_canceled_in_crm_leaves_meeting_unchanged_when_propagation_off() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    let ds = mb.feed(upsert(&changed_appointment(&a, |a| {
        a.state = ActivityState::Canceled
    })));

    assert_eq!(summary(&ds), [(28, "no_action")]);
    let (_, n) = one(no_actions(&ds), &ds);
    assert_eq!((&n.record, &n.remote), (&Some(a.id.clone()), &Some(remote)));
    assert!(
        n.basis
            .settings
            .iter()
            .any(|s| s.key == "propagate_appointment_cancellations" && s.value == "false")
    );
    assert_eq!(mb.link(&a.id).status, LinkStatus::Linked);
    assert_snapshot(&mb.link(&a.id).synced, &a); // nothing was written
}

#[test]
fn r28_canceled_in_crm_deletes_in_organizers_mailbox_when_propagation_on() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.propagate_appointment_cancellations = true;
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    let ds = mb.feed(upsert(&changed_appointment(&a, |a| {
        a.state = ActivityState::Canceled
    })));

    assert_eq!(summary(&ds), [(28, "delete_intent"), (28, "cancel_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!((d.target, &d.remote), (Side::MailServer, &Some(remote)));
    assert_eq!(one(cancels(&ds), &ds).1.attendees, team_addresses());
}

#[test]
fn r28_canceled_in_crm_is_not_propagated_from_an_attendees_mailbox() {
    let mut zoe = Mailbox::ready("zoe");
    zoe.settings.propagate_appointment_cancellations = true;
    let a = team_meeting("a1", "jayne", zoe.now);
    zoe.sync_new(&a);

    let ds = zoe.feed(upsert(&changed_appointment(&a, |a| {
        a.state = ActivityState::Canceled
    })));

    assert_eq!(summary(&ds), [(28, "no_action")]);
}

#[test]
fn r82_a_meeting_deleted_by_a_propagated_cancellation_is_not_created_again_by_the_same_line() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.propagate_appointment_cancellations = true;
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);
    let canceled = changed_appointment(&a, |a| a.state = ActivityState::Canceled);
    let ds = mb.feed(upsert(&canceled));
    assert_eq!(summary(&ds), [(28, "delete_intent"), (28, "cancel_intent")]);
    let delete = mb.id_of(|e| matches!(e, Event::DeleteIntent(_)));
    mb.succeed(delete);
    assert_eq!(mb.link(&a.id).status, LinkStatus::Deleted);

    let pending = mb.state.intents.clone();

    // The CRM (or a bus) delivers the same line again, and then the older version.
    assert!(
        mb.feed(upsert(&canceled)).is_empty(),
        "a re-delivered version decides nothing"
    );
    assert!(
        mb.feed(upsert(&a)).is_empty(),
        "an older version decides nothing"
    );
    assert_eq!(mb.state.records[&a.id].version, canceled.version);
    assert_eq!(mb.state.intents, pending, "no new intent");
    assert_eq!(mb.link(&a.id).remote, None);
    let _ = remote;
}

#[test]
fn r82_a_stale_version_after_an_organizer_change_decides_nothing() {
    let mut jayne = Mailbox::ready("jayne");
    let a1 = team_meeting("a1", "jayne", jayne.now);
    jayne.sync_new(&a1);
    let a2 = changed_appointment(&a1, |a| a.organizer = Some(crm_user("paul")));
    let ds = jayne.feed(upsert(&a2));
    assert!(deletes(&ds).len() == 1, "{:?}", summary(&ds));
    let delete = jayne.id_of(|e| matches!(e, Event::DeleteIntent(_)));
    jayne.succeed(delete);

    // Version 1 arrives late: Jayne is its organizer, but version 2 was already decided.
    assert!(jayne.feed(upsert(&a1)).is_empty());
    assert!(jayne.feed(owner_changed(&a1, "zoe")).is_empty());
    assert_eq!(jayne.state.records[&a1.id].version, a2.version);
    // A newer version that puts it back is decided as usual.
    let a3 = changed_appointment(&a2, |a| a.organizer = Some(crm_user("jayne")));
    assert_eq!(summary(&jayne.feed(upsert(&a3))), [(17, "create_intent")]);
}

#[test]
fn r29_organizer_change_deletes_old_organizers_copy_and_creates_new_organizers() {
    let mut jayne = Mailbox::ready("jayne");
    let mut paul = Mailbox::ready("paul");
    let a1 = team_meeting("a1", "jayne", jayne.now);
    let remote = jayne.sync_new(&a1);

    let a2 = changed_appointment(&a1, |a| a.organizer = Some(crm_user("paul")));
    let old = jayne.feed(upsert(&a2));
    let new = paul.feed(upsert(&a2));

    assert_eq!(
        summary(&old),
        [
            (22, "logical_delete"),
            (22, "delete_intent"),
            (22, "cancel_intent")
        ]
    );
    assert_eq!(
        one(logical_deletes(&old), &old).1.reason,
        LeaveReason::OrganizerChanged {
            from: email_of("jayne"),
            to: email_of("paul")
        }
    );
    assert_eq!(one(deletes(&old), &old).1.remote, Some(remote));
    assert_eq!(one(cancels(&old), &old).1.attendees, team_addresses());

    assert_eq!(summary(&new), [(17, "create_intent")]);
    let (_, c) = one(creates(&new), &new);
    assert!(
        c.item.notify_attendees,
        "the new organizer invites the attendees"
    );
    assert_eq!(c.item.attendees, 2);
}

#[test]
fn r29_organizer_change_with_distinct_deletes_on_only_unlinks_old_organizers_copy() {
    let mut jayne = Mailbox::ready("jayne");
    jayne.settings.distinct_physical_logical_deletes = true;
    let a1 = team_meeting("a1", "jayne", jayne.now);
    jayne.sync_new(&a1);

    let a2 = changed_appointment(&a1, |a| a.organizer = Some(crm_user("paul")));
    let ds = jayne.feed(upsert(&a2));

    assert_eq!(summary(&ds), [(23, "logical_delete"), (23, "unlinked")]);
    assert!(matches!(
        one(logical_deletes(&ds), &ds).1.reason,
        LeaveReason::OrganizerChanged { .. }
    ));
}

#[test]
fn r30_completed_canceled_or_free_appointments_are_written_free() {
    let mut mb = Mailbox::ready("jayne");
    let cases = [
        ("a1", ActivityState::Scheduled, ShowAs::Busy, ShowAs::Busy),
        ("a2", ActivityState::Completed, ShowAs::Busy, ShowAs::Free),
        ("a3", ActivityState::Canceled, ShowAs::Busy, ShowAs::Free),
        ("a4", ActivityState::Scheduled, ShowAs::Free, ShowAs::Free),
        (
            "a5",
            ActivityState::Scheduled,
            ShowAs::Tentative,
            ShowAs::Tentative,
        ),
        (
            "a6",
            ActivityState::Open,
            ShowAs::OutOfOffice,
            ShowAs::OutOfOffice,
        ),
    ];
    for (id, state, show_as, written) in cases {
        let rec = with_appointment(team_meeting(id, "jayne", mb.now), |a| {
            a.state = state;
            a.show_as = show_as;
        });
        let ds = mb.feed(upsert(&rec));
        let (_, c) = one(creates(&ds), &ds);
        assert_eq!(c.item.show_as, Some(written), "{state:?} / {show_as:?}");
    }

    // A synced meeting completed in the CRM is updated to Free.
    let a = team_meeting("a7", "jayne", mb.now);
    mb.sync_new(&a);
    let ds = mb.feed(upsert(&changed_appointment(&a, |a| {
        a.state = ActivityState::Completed
    })));
    assert_eq!(one(updates(&ds), &ds).1.item.show_as, Some(ShowAs::Free));
}

#[test]
fn r31_no_reminder_more_than_7_days_past_or_free() {
    let mut mb = Mailbox::ready("jayne");
    let now = mb.now;
    let cases = [
        ("a1", now - Duration::days(8), ShowAs::Busy, false),
        ("a2", now - Duration::days(6), ShowAs::Busy, true),
        ("a3", now + Duration::days(2), ShowAs::Free, false),
        ("a4", now + Duration::days(2), ShowAs::Busy, true),
    ];
    for (id, start, show_as, reminder) in cases {
        let rec = with_appointment(team_meeting(id, "jayne", now), |a| {
            a.start = start;
            a.end = start + Duration::hours(1);
            a.show_as = show_as;
        });
        let ds = mb.feed(upsert(&rec));
        let (_, c) = one(creates(&ds), &ds);
        assert_eq!(c.item.reminder, reminder, "{id}: {}", c.basis.reason);
    }
}

#[test]
fn r32_past_meetings_are_not_updated_when_update_past_meetings_off() {
    let mut mb = Mailbox::ready("jayne");
    let a = appointment(
        "a1",
        crm_user("jayne"),
        vec![crm_user("zoe")],
        vec![],
        mb.now - Duration::days(1),
    );
    let remote = mb.sync_new(&a);

    let ds = mb.feed(upsert(&changed_appointment(&a, |a| {
        a.body = "Minutes attached".into()
    })));

    assert_eq!(summary(&ds), [(32, "no_action")]);
    let (_, n) = one(no_actions(&ds), &ds);
    assert_eq!(n.remote, Some(remote));
    assert!(
        n.basis
            .settings
            .iter()
            .any(|s| s.key == "update_past_meetings" && s.value == "false")
    );
}

#[test]
fn r32_past_meetings_are_updated_without_notifying_when_update_past_meetings_on() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.update_past_meetings = true;
    let a = appointment(
        "a1",
        crm_user("jayne"),
        vec![crm_user("zoe")],
        vec![],
        mb.now - Duration::days(1),
    );
    mb.sync_new(&a);

    let ds = mb.feed(upsert(&changed_appointment(&a, |a| {
        a.body = "Minutes attached".into()
    })));

    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.target), (18, Side::MailServer));
    assert!(
        !u.item.notify_attendees,
        "past meetings send no update (R26)"
    );
}

#[test]
fn r40_service_appointment_copies_go_to_each_participant_without_invitations() {
    let mut jayne = Mailbox::ready("jayne");
    let mut zoe = Mailbox::ready("zoe");
    let s = service_appointment("s1", jayne.now);

    for mb in [&mut jayne, &mut zoe] {
        let ds = mb.feed(upsert(&s));
        let (rule, c) = one(creates(&ds), &ds);
        assert_eq!(
            (rule, c.target),
            (17, Side::MailServer),
            "{} gets its own copy",
            mb.id
        );
        assert!(!c.item.notify_attendees, "{}", c.basis.reason);
    }

    // A sensitive change notifies nobody either.
    let remote = jayne.remote_for(&s.id);
    jayne.answer_create(&s.id, &remote);
    let ds = jayne.feed(upsert(&changed_appointment(&s, |a| {
        a.location = "Room 9".into()
    })));
    assert!(!one(updates(&ds), &ds).1.item.notify_attendees);
}

#[test]
fn r40_deleting_a_service_appointment_deletes_each_copy_without_cancellation() {
    let mut jayne = Mailbox::ready("jayne");
    let mut zoe = Mailbox::ready("zoe");
    let s = service_appointment("s1", jayne.now);

    for mb in [&mut jayne, &mut zoe] {
        let remote = mb.sync_new(&s);
        let ds = mb.feed(deleted(&s));
        assert_eq!(summary(&ds), [(40, "delete_intent")], "{}", mb.id);
        assert_eq!(one(deletes(&ds), &ds).1.remote, Some(remote));
    }
}

#[test]
fn r40_canceling_a_service_appointment_sends_no_cancellation() {
    let mut jayne = Mailbox::ready("jayne");
    jayne.settings.propagate_appointment_cancellations = true;
    let s = service_appointment("s1", jayne.now);
    jayne.sync_new(&s);

    let ds = jayne.feed(upsert(&changed_appointment(&s, |a| {
        a.state = ActivityState::Canceled
    })));

    assert!(
        cancels(&ds).is_empty(),
        "service appointments never send cancellations: {:?}",
        summary(&ds)
    );
}

#[test]
fn r44_fax_letter_and_phone_call_are_written_as_server_tasks() {
    let mut mb = Mailbox::ready("jayne");
    for (id, kind) in [
        ("t1", TaskKind::Task),
        ("t2", TaskKind::Fax),
        ("t3", TaskKind::Letter),
        ("t4", TaskKind::PhoneCall),
    ] {
        let ds = mb.feed(upsert(&task_of_kind(id, "jayne", kind, mb.now)));
        let (rule, c) = one(creates(&ds), &ds);
        assert_eq!((rule, c.target), (17, Side::MailServer), "{kind:?}");
        if kind != TaskKind::Task {
            assert!(
                c.basis.reason.contains("is written as a server task"),
                "{}",
                c.basis.reason
            );
        }
    }
}

#[test]
fn r47_actual_end_in_the_past_marks_the_server_task_completed() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    mb.sync_new(&t);

    let ds = mb.feed(upsert(&changed_task(&t, |t| {
        t.actual_end = Some(mb.now - Duration::hours(1))
    })));

    assert_eq!(summary(&ds), [(47, "update_intent")]);
    let (_, u) = one(updates(&ds), &ds);
    assert_eq!((u.target, u.item.completed), (Side::MailServer, true));

    // A new task already ended is created completed.
    let done = with_task(task("t2", "jayne", mb.now), |t| {
        t.actual_end = Some(mb.now - Duration::days(1))
    });
    let ds = mb.feed(upsert(&done));
    assert!(one(creates(&ds), &ds).1.item.completed);
}

#[test]
fn r47_actual_end_in_the_future_leaves_the_server_task_open() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    mb.sync_new(&t);

    let ds = mb.feed(upsert(&changed_task(&t, |t| {
        t.actual_end = Some(mb.now + Duration::days(1))
    })));

    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.item.completed), (18, false));
}

#[test]
fn r82_cancellation_is_not_sent_twice_when_the_delete_is_redelivered() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);
    assert_eq!(
        summary(&mb.feed(deleted(&a))),
        [(27, "delete_intent"), (27, "cancel_intent")]
    );
    let cancel = mb.id_of(|e| matches!(e, Event::CancelIntent(_)));
    let delete = mb.id_of(|e| matches!(e, Event::DeleteIntent(_)));
    mb.succeed(cancel);
    // The delete failed transiently: it stays pending and is retried with its key (R12).
    assert_eq!(summary(&mb.fail(delete, "503")), [(12, "error_classified")]);
    assert!(mb.state.intents.contains_key(&delete));

    let ds = mb.feed(deleted(&a));

    assert!(
        ds.is_empty(),
        "a redelivered delete decides nothing: {ds:#?}"
    );
}

#[test]
fn r82_a_cancellation_that_failed_transiently_is_retried_not_decided_again() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);
    mb.feed(deleted(&a));
    let cancel = mb.id_of(|e| matches!(e, Event::CancelIntent(_)));
    let delete = mb.id_of(|e| matches!(e, Event::DeleteIntent(_)));
    mb.fail(cancel, "503");
    mb.fail(delete, "503");
    // Both stay pending: the connector retries them with the same idempotency keys.
    assert!(mb.state.intents.contains_key(&cancel) && mb.state.intents.contains_key(&delete));

    let ds = mb.feed(deleted(&a));

    assert!(cancels(&ds).is_empty(), "{ds:#?}");
}

#[test]
fn r82_a_meeting_invited_again_after_its_cancellation_can_be_cancelled_again() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);
    let lost = mb.feed(access_lost("jayne", &[&a], AccessReason::Role));
    assert_eq!(cancels(&lost).len(), 1);
    for id in [
        mb.id_of(|e| matches!(e, Event::CancelIntent(_))),
        mb.id_of(|e| matches!(e, Event::DeleteIntent(_))),
    ] {
        mb.succeed(id);
    }
    // Access comes back: the meeting is created again, with invitations.
    let back = mb.feed(access_regained("jayne", &[&a], AccessReason::Role));
    let (_, create) = one(creates(&back), &back);
    assert!(create.item.notify_attendees);
    let remote = mb.remote_for(&a.id);
    mb.answer_create(&a.id, &remote);

    let lost_again = mb.feed(access_lost("jayne", &[&a], AccessReason::Role));

    assert_eq!(cancels(&lost_again).len(), 1, "{lost_again:#?}");
}

#[test]
fn r82_update_is_not_sent_twice_for_the_same_version() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);
    let a2 = changed_appointment(&a, |a| a.location = "Room 9".into());
    let ds = mb.feed(upsert(&a2));
    let (_, u) = one(updates(&ds), &ds);
    assert!(
        u.item.notify_attendees,
        "the first update of version 2 notifies"
    );

    assert!(
        mb.feed(upsert(&a2)).is_empty(),
        "a redelivered version sends nothing"
    );
    // Re-evaluating the row (access regained) finds nothing new to send either.
    assert!(
        mb.feed(access_regained("jayne", &[&a2], AccessReason::Role))
            .is_empty()
    );
}
