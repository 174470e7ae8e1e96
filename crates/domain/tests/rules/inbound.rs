//! Mail server → CRM: listings (R25), tracked items and mail-side changes (R18 echo guard, R33–R39, R43, R44, R46, R48, R73).

use super::*;

#[test]
fn r18_echo_guard_ledgersyncs_own_update_seen_again_decides_nothing() {
    let mut mb = Mailbox::ready("jayne");
    let c1 = contact("c1", "jayne");
    let remote = mb.sync_new(&c1);

    // The CRM renames the contact: ledgersync rewrites the card (R18, to the mail server).
    let c2 = changed_contact(&c1, |c| c.full_name = "Kaylee Frye".into());
    let ds = mb.feed(upsert(&c2));
    assert_eq!(summary(&ds), [(18, "update_intent")]);
    written_with(
        &mut mb,
        &remote,
        "\"2\"",
        |e| matches!(e, Event::UpdateIntent(p) if p.record == c1.id && p.target == Side::MailServer),
    );

    // The next listing shows the card as ledgersync wrote it (the tag its write reported): its
    // own write, not an edit to send back to the CRM. Seen again (a duplicate), still nothing.
    let own = remote_item(&remote, 2, written_fields(&c2));
    assert_eq!(own.etag, "\"2\"");
    assert_eq!(mb.feed(seen(own.clone())), []);
    assert_eq!(mb.feed(seen(own)), []);

    // Another program edits the card afterwards: a new version, decided by R18 as before.
    let edited = remote_item(
        &remote,
        3,
        RemoteFields::Contact {
            full_name: "Kaylee Frye (engineer)".into(),
            email: match &written_fields(&c2) {
                RemoteFields::Contact { email, .. } => email.clone(),
                other => panic!("a card, not {other:?}"),
            },
        },
    );
    let ds = mb.feed(seen(edited));
    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.target, &u.record), (18, Side::Crm, &c1.id));
    assert_eq!(
        mb.link(&c1.id).written,
        None,
        "the item moved on from the write"
    );
}

#[test]
fn r18_echo_guard_only_the_version_ledgersync_wrote_is_its_own() {
    // A created item: its first sighting with the tag the create reported is the baseline.
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let ds = mb.feed(upsert(&a));
    assert_eq!(summary(&ds), [(17, "create_intent")]);
    let remote = mb.remote_for(&a.id);
    mb.answer_create(&a.id, &remote);
    assert_eq!(mb.link(&a.id).written.as_deref(), Some("\"1\""));
    assert_eq!(
        mb.feed(seen(remote_item(&remote, 1, written_fields(&a)))),
        []
    );

    // Another meeting, edited by another program before the first listing saw ledgersync's
    // version: the listing reports another version, an edit (R18), not the write.
    let b = team_meeting("a2", "jayne", mb.now);
    mb.feed(upsert(&b));
    let remote_b = mb.remote_for(&b.id);
    mb.answer_create(&b.id, &remote_b);
    let edited = remote_item(
        &remote_b,
        9,
        remote_appointment_fields("Moved by khal", &email_of("jayne"), mb.now),
    );
    let ds = mb.feed(seen(edited));
    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.target, &u.record), (18, Side::Crm, &b.id));
}

#[test]
fn r25_failed_listing_is_not_a_delete() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let c = contact("c1", "jayne");
    mb.sync_new(&a);
    mb.sync_new(&c);

    let ds = mb.listing_failed(Workload::Act, "timeout", None);

    assert_eq!(summary(&ds)[0], (25, "no_action"));
    assert!(deletes(&ds).is_empty() && unlinks(&ds).is_empty() && cancels(&ds).is_empty());
    assert_eq!(mb.link(&a.id).status, LinkStatus::Linked);
    assert_eq!(mb.link(&c.id).status, LinkStatus::Linked);
}

#[test]
fn r25_partial_listing_is_not_a_delete() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);

    let ds = mb.feed(Event::ListingPartial(ListingPartial {
        workload: Workload::Act,
        reason: "page 3 of 5 timed out".into(),
    }));

    assert_eq!(summary(&ds), [(25, "no_action")]);
    assert_eq!(mb.link(&a.id).status, LinkStatus::Linked);
    assert!(mb.state.workload(Workload::Act).enabled);
}

#[test]
fn r25_an_incomplete_listing_withholds_missing_items() {
    use ledgersync_domain::policy::mass_delete::*;
    let listing = |known, present, missing, complete| CollectionListing {
        known,
        present,
        missing,
        complete,
    };
    // Nothing missing, or a complete listing (even an emptied collection: the delete breaker
    // of `decide` weighs it): confirmed.
    assert_eq!(missing_items(&listing(4, 4, 0, true)), Verdict::Confirm);
    assert_eq!(missing_items(&listing(4, 0, 4, true)), Verdict::Confirm);
    assert_eq!(missing_items(&listing(4, 4, 0, false)), Verdict::Confirm);
    // An incomplete listing: whatever is missing is unknown, not gone.
    let v = missing_items(&listing(4, 3, 1, false));
    assert_eq!(v, Verdict::Withhold(Withheld::Incomplete));
    let Verdict::Withhold(why) = v else {
        unreachable!()
    };
    assert_eq!(why.to_string(), "its listing is incomplete");
    assert_eq!(RULE.to_string(), "R25");
}

#[test]
fn r25_a_cursor_reset_is_recorded_and_the_items_it_does_not_show_stay_unknown() {
    use ledgersync_domain::policy::cursor_reset::*;
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);

    let failed = ListingFailed {
        workload: Workload::Act,
        error: ServerError::of_kind(ErrorKind::CursorInvalid, "not a vdir cursor"),
    };
    // Only an unreadable cursor other than the initial one is reset.
    assert_eq!(on_listing_failed(&failed, true), None);
    let other = ListingFailed {
        workload: Workload::Act,
        error: ServerError::of_kind(ErrorKind::Timeout, "slow"),
    };
    assert_eq!(on_listing_failed(&other, false), None);
    let reset = on_listing_failed(&failed, false).expect("a reset");
    assert_eq!(reset.workload, Workload::Act);
    assert!(
        reset.reason.contains("not a vdir cursor"),
        "{}",
        reset.reason
    );
    assert_eq!(NOT_SEEN_AFTER_RESET, NotSeen::Unknown);

    mb.feed(Event::ListingFailed(failed));
    let ds = mb.feed(Event::CursorReset(reset));
    assert_eq!(summary(&ds), [(25, "no_action")]);
    let (_, n) = one(no_actions(&ds), &ds);
    assert!(
        n.basis.reason.contains("unknown, not deleted"),
        "{}",
        n.basis.reason
    );
    // The listing after the reset shows nothing of a1: no delete, the link stays.
    let ds = mb.listing_completed(Workload::Act);
    assert!(deletes(&ds).is_empty() && unlinks(&ds).is_empty() && cancels(&ds).is_empty());
    assert_eq!(mb.link(&a.id).status, LinkStatus::Linked);
}

#[test]
fn r36_server_delete_of_open_future_meeting_by_organizer_deletes_crm_row() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    let ds = mb.feed(gone(&remote));

    assert_eq!(summary(&ds), [(36, "delete_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!(
        (d.target, &d.record, &d.remote),
        (Side::Crm, &a.id, &Some(remote))
    );
}

#[test]
fn r36_server_delete_keeps_crm_row_unless_open_future_and_organizer() {
    // Not the organizer.
    let mut zoe = Mailbox::ready("zoe");
    let a = team_meeting("a1", "jayne", zoe.now);
    let remote = zoe.sync_new(&a);
    assert_eq!(summary(&zoe.feed(gone(&remote))), [(36, "unlinked")]);

    // In the past.
    let mut mb = Mailbox::ready("jayne");
    let past = appointment(
        "a2",
        crm_user("jayne"),
        vec![crm_user("zoe")],
        vec![],
        mb.now - Duration::days(1),
    );
    let remote = mb.sync_new(&past);
    assert_eq!(summary(&mb.feed(gone(&remote))), [(36, "unlinked")]);

    // Completed or canceled.
    for (id, state) in [
        ("a3", ActivityState::Completed),
        ("a4", ActivityState::Canceled),
    ] {
        let closed = with_appointment(team_meeting(id, "jayne", mb.now), |a| a.state = state);
        let remote = mb.sync_new(&closed);
        let ds = mb.feed(gone(&remote));
        assert_eq!(summary(&ds), [(36, "unlinked")], "{state:?}");
        assert!(deletes(&ds).is_empty());
    }
}

#[test]
fn r37_server_changes_to_completed_or_canceled_meeting_are_ignored() {
    let mut mb = Mailbox::ready("jayne");
    for (id, state) in [
        ("a1", ActivityState::Completed),
        ("a2", ActivityState::Canceled),
    ] {
        let a = with_appointment(team_meeting(id, "jayne", mb.now), |a| a.state = state);
        let remote = mb.sync_new(&a);
        let item = remote_item(
            &remote,
            7,
            remote_appointment_fields("Edited in the calendar", &email_of("jayne"), mb.now),
        );

        let ds = mb.feed(seen(item));

        assert_eq!(summary(&ds), [(37, "no_action")], "{state:?}");
        assert!(updates(&ds).is_empty());
    }
}

#[test]
fn r37_server_changes_to_open_meeting_update_the_crm() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);
    let item = remote_item(
        &remote,
        7,
        remote_appointment_fields("Edited in the calendar", &email_of("jayne"), mb.now),
    );

    let ds = mb.feed(seen(item));

    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.target, &u.record), (18, Side::Crm, &a.id));
}

#[test]
fn r39_copy_of_a_linked_item_is_ignored_when_ignore_copies_on() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let original = mb.sync_new(&a);
    let copy = RemoteItem {
        tracked: Some(TrackedBy::Category),
        copy_of: Some(original.clone()),
        ..remote_item(
            &RemoteId::new("copy-1"),
            11,
            remote_appointment_fields("Meeting a1", &email_of("jayne"), mb.now),
        )
    };

    let ds = mb.feed(seen(copy.clone()));
    assert_eq!(summary(&ds), [(39, "no_action")]);
    assert_eq!(
        one(no_actions(&ds), &ds).1.remote,
        Some(copy.remote.clone())
    );

    // With the setting off the copy is tracked like any item.
    let mut mb2 = Mailbox::ready("jayne");
    mb2.settings.ignore_copied_items = false;
    mb2.sync_new(&a);
    let ds = mb2.feed(seen(copy));
    assert_eq!(summary(&ds), [(33, "item_tracked"), (33, "create_intent")]);
    assert_eq!(one(creates(&ds), &ds).1.target, Side::Crm);
}

#[test]
fn r73_removing_the_tracking_category_untracks_and_keeps_the_crm_row() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);
    let fields = remote_appointment_fields(
        "Meeting a1",
        &email_of("jayne"),
        a.appointment().unwrap().start,
    );
    let tracked = RemoteItem {
        tracked: Some(TrackedBy::Category),
        ..remote_item(&remote, 1, fields)
    };
    mb.feed(seen(tracked.clone()));

    // Removing the category rewrites the item: a new version tag (the same tag would be the
    // version ledgersync wrote, its own write seen again).
    let ds = mb.feed(seen(RemoteItem {
        tracked: None,
        etag: "\"1-untracked\"".into(),
        ..tracked
    }));

    assert_eq!(summary(&ds), [(73, "item_untracked"), (73, "unlinked")]);
    assert_eq!(one(untracked(&ds), &ds).1.record, Some(a.id.clone()));
    assert!(deletes(&ds).is_empty(), "the CRM row is kept");
    assert_eq!(mb.link(&a.id).status, LinkStatus::Unlinked);
}

#[test]
fn r43_server_contact_delete_by_owner_deletes_crm_contact() {
    let mut mb = Mailbox::ready("jayne");
    let c = contact("c1", "jayne");
    let remote = mb.sync_new(&c);

    let ds = mb.feed(gone(&remote));

    assert_eq!(summary(&ds), [(43, "delete_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!((d.target, &d.record), (Side::Crm, &c.id));
}

#[test]
fn r43_server_contact_delete_by_non_owner_keeps_crm_contact() {
    let mut paul = Mailbox::ready("paul");
    paul.set_filters(Entity::Contact, &["state = active"]);
    let c = contact("c1", "jayne");
    let remote = paul.sync_new(&c);

    let ds = paul.feed(gone(&remote));

    assert_eq!(summary(&ds), [(43, "unlinked")]);
}

#[test]
fn r44_tracked_server_task_becomes_a_crm_task() {
    let mut mb = Mailbox::ready("jayne");
    let remote = RemoteId::new("tasks/42.ics");

    let ds = mb.feed(seen(tracked_server_task(&remote, 0, 1)));

    assert_eq!(summary(&ds), [(44, "item_tracked"), (44, "create_intent")]);
    let (_, c) = one(creates(&ds), &ds);
    assert_eq!((c.target, &c.remote), (Side::Crm, &Some(remote)));
    assert_eq!(c.item.title, "Order spare parts");
    assert_eq!(
        remote_task_fields("x", 0).entity(),
        Entity::Task,
        "server tasks map to CRM tasks only"
    );
}

#[test]
fn r44_crm_task_created_from_a_server_task_is_not_copied_back_to_the_server() {
    let mut mb = Mailbox::ready("jayne");
    let remote = RemoteId::new("tasks/42.ics");
    let ds = mb.feed(seen(tracked_server_task(&remote, 0, 1)));
    let record = one(creates(&ds), &ds).1.record.clone();
    mb.answer_create(&record, &remote);

    // The CRM reports the row the engine created.
    let row = with_task(task(record.as_str(), "jayne", mb.now), |t| {
        t.subject = "Order spare parts".into()
    });
    let ds = mb.feed(upsert(&row));

    assert!(
        creates(&ds)
            .iter()
            .all(|(_, c)| c.target != Side::MailServer),
        "the row came from the server item; creating it there again duplicates it: {:?}",
        summary(&ds)
    );
    assert_eq!(
        mb.state.active_link(&record).and_then(|l| l.remote.clone()),
        Some(remote)
    );
}

#[test]
fn r46_mode_0_deletes_the_crm_task() {
    assert_eq!(
        summary(&server_task_delete(TaskDeletionMode::Delete, false)),
        [(46, "delete_intent")]
    );
    assert_eq!(
        summary(&server_task_delete(TaskDeletionMode::Delete, true)),
        [(46, "delete_intent")]
    );
}

#[test]
fn r46_mode_1_deletes_only_a_crm_task_that_is_not_completed() {
    let open = server_task_delete(TaskDeletionMode::DeleteIfNotCompleted, false);
    assert_eq!(summary(&open), [(46, "delete_intent")]);
    let done = server_task_delete(TaskDeletionMode::DeleteIfNotCompleted, true);
    assert_eq!(summary(&done), [(46, "unlinked")]);
}

#[test]
fn r46_mode_2_never_deletes_the_crm_task() {
    let ds = server_task_delete(TaskDeletionMode::Never, false);
    assert_eq!(summary(&ds), [(46, "unlinked")]);
    let (_, u) = one(unlinks(&ds), &ds);
    assert!(
        u.basis
            .settings
            .iter()
            .any(|s| s.key == "task_deletion_mode" && s.value == "2")
    );
}

#[test]
fn r48_server_task_at_100_percent_completes_the_crm_task() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    let remote = mb.sync_new(&t);

    let ds = mb.feed(seen(remote_item(
        &remote,
        2,
        remote_task_fields("Task t1", 100),
    )));

    assert_eq!(summary(&ds), [(48, "update_intent")]);
    let (_, u) = one(updates(&ds), &ds);
    assert_eq!(
        (u.target, &u.record, u.item.completed),
        (Side::Crm, &t.id, true)
    );

    // Less than 100 % is an ordinary update that does not complete it.
    let ds = mb.feed(seen(remote_item(
        &remote,
        3,
        remote_task_fields("Task t1", 50),
    )));
    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.item.completed), (18, false));
}

#[test]
fn r48_task_created_from_the_server_gets_actual_start_now() {
    let mut mb = Mailbox::ready("jayne");
    mb.advance(Duration::minutes(17));

    let ds = mb.feed(seen(tracked_server_task(
        &RemoteId::new("tasks/7.ics"),
        0,
        1,
    )));

    let (_, c) = one(creates(&ds), &ds);
    assert_eq!(
        (c.target, c.item.actual_start, c.item.completed),
        (Side::Crm, Some(mb.now), false)
    );

    // A server task tracked when already at 100 % is created completed.
    let ds = mb.feed(seen(tracked_server_task(
        &RemoteId::new("tasks/8.ics"),
        100,
        1,
    )));
    assert!(one(creates(&ds), &ds).1.item.completed);
}

#[test]
fn r48_task_created_from_the_server_is_completed_in_the_crm_when_it_reaches_100() {
    let mut mb = Mailbox::ready("jayne");
    let remote = RemoteId::new("tasks/42.ics");
    let ds = mb.feed(seen(tracked_server_task(&remote, 0, 1)));
    let record = one(creates(&ds), &ds).1.record.clone();
    let ds = mb.answer_create(&record, &remote);
    assert_eq!(summary(&ds), [(33, "link_created")]);

    let ds = mb.feed(seen(tracked_server_task(&remote, 100, 2)));

    assert_eq!(summary(&ds), [(48, "update_intent")]);
    let (_, u) = one(updates(&ds), &ds);
    assert_eq!(
        (u.target, &u.record, u.item.completed),
        (Side::Crm, &record, true)
    );
}
