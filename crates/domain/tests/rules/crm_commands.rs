//! Mail server → CRM, carried out: the decisions that target the CRM leave as CRM commands
//! (R18, R33, R36, R43, R44, R46, R48), and the CRM's results come back as the intents'
//! outcomes (R12, R79), exactly once, without echo.

use super::*;
use ledgersync_domain::crm::{
    Acknowledged, CommandKey, CommandResult, CrmCommand, ResultError, ResultStatus, Settlement,
    admits, commands, settle,
};
use ledgersync_domain::{Decision, RecordId};

/// A meeting organized by the mailbox's user and tracked in the calendar (the category).
fn tracked_meeting(mb: &Mailbox, remote: &RemoteId) -> RemoteItem {
    RemoteItem {
        tracked: Some(TrackedBy::Category),
        ..remote_item(
            remote,
            7,
            remote_appointment_fields(
                "Lunch with Kaylee",
                &mb.address(),
                mb.now + Duration::days(1),
            ),
        )
    }
}

/// The one open command of the mailbox.
fn only_command(mb: &Mailbox) -> CrmCommand {
    let open = commands(&mb.state, mb.now);
    assert_eq!(open.len(), 1, "one open CRM command: {open:#?}");
    open.into_iter().next().unwrap()
}

fn done(key: &CommandKey, record: &str, version: u64) -> CommandResult {
    CommandResult {
        key: key.clone(),
        status: ResultStatus::Done {
            record: RecordId::new(record),
            version,
        },
    }
}

fn failed(key: &CommandKey, retryable: bool) -> CommandResult {
    CommandResult {
        key: key.clone(),
        status: ResultStatus::Failed {
            reason: "the CRM is in maintenance".into(),
            code: Some("503".into()),
            retryable,
            retry_after: None,
        },
    }
}

/// Settles `result` as the shell does: the outcome it comes to is fed to the mailbox.
fn answer(mb: &mut Mailbox, result: &CommandResult) -> Vec<Decision> {
    match settle(&mb.state, result) {
        Ok(Settlement::Record(event)) => {
            assert!(admits(&mb.state, &event));
            mb.feed(*event)
        }
        other => panic!("the result should be recorded, got {other:?}"),
    }
}

/// A tracked meeting whose track_appointment the CRM carried out as row `apt-42` version 1.
fn tracked_and_created(mb: &mut Mailbox) -> (RemoteId, RecordId) {
    let remote = RemoteId::new("calendar/lunch.ics");
    mb.feed(seen(tracked_meeting(mb, &remote)));
    let key = only_command(mb).key;
    let ds = answer(mb, &done(&key, "apt-42", 1));
    assert_eq!(summary(&ds), [(33, "link_created")]);
    (remote, RecordId::new("apt-42"))
}

#[test]
fn r33_meeting_tracked_in_mail_client_becomes_a_crm_command() {
    let mut mb = Mailbox::ready("jayne");
    let remote = RemoteId::new("calendar/lunch.ics");
    let ds = mb.feed(seen(tracked_meeting(&mb, &remote)));
    assert_eq!(summary(&ds), [(33, "item_tracked"), (33, "create_intent")]);
    let intent = mb.id_of(|e| matches!(e, Event::CreateIntent(_)));

    let c = only_command(&mb);
    assert_eq!(c.command.name(), "track_appointment");
    assert_eq!(c.rule.to_string(), "R33");
    assert_eq!(c.entity, Entity::Appointment);
    assert_eq!(c.key, CommandKey::new(mb.id.clone(), intent));
    assert_eq!(c.key.to_string(), format!("mbx-jayne/{intent}"));
    assert_eq!(c.remote, Some(remote.clone()));
    assert_eq!(c.record, RecordId::new("from-calendar/lunch.ics"));
    assert_eq!((c.version, c.attempts, c.due), (None, 0, true));
    assert_eq!(c.title, "Lunch with Kaylee");
    assert!(
        matches!(&c.fields, Some(RemoteFields::Appointment { subject, organizer, start, .. })
            if subject == "Lunch with Kaylee"
                && organizer.as_deref() == Some("jayne@serenity.example")
                && *start == mb.now + Duration::days(1)),
        "{:?}",
        c.fields
    );
    // The key is stable: listed again (later, after another observation), the same command.
    mb.advance(Duration::minutes(30));
    mb.listing_completed(Workload::Act);
    assert_eq!(only_command(&mb).key, c.key);
    assert_eq!(CommandKey::parse(&c.key.to_string()), Ok(c.key));
}

#[test]
fn r33_contact_tracked_in_the_address_book_becomes_a_track_contact_command() {
    let mut mb = Mailbox::ready("jayne");
    let remote = RemoteId::new("contacts/kaylee.vcf");
    let card = RemoteFields::Contact {
        full_name: "Kaylee Frye".into(),
        email: "kaylee@serenity.example".into(),
    };
    mb.feed(seen(RemoteItem {
        tracked: Some(TrackedBy::Category),
        ..remote_item(&remote, 3, card.clone())
    }));
    let c = only_command(&mb);
    assert_eq!((c.command.name(), c.rule.0), ("track_contact", 33));
    assert_eq!(c.fields, Some(card));
}

#[test]
fn r44_r48_task_tracked_on_the_mail_server_becomes_a_track_task_command_started_now() {
    let mut mb = Mailbox::ready("jayne");
    mb.feed(seen(tracked_server_task(
        &RemoteId::new("tasks/42.ics"),
        0,
        1,
    )));
    let c = only_command(&mb);
    assert_eq!((c.command.name(), c.rule.0), ("track_task", 44));
    assert_eq!(
        c.actual_start,
        Some(mb.now),
        "R48: actual start is when it was tracked"
    );
}

#[test]
fn r33_a_done_result_links_the_item_to_the_row_the_crm_created_exactly_once() {
    let mut mb = Mailbox::ready("jayne");
    let remote = RemoteId::new("calendar/lunch.ics");
    mb.feed(seen(tracked_meeting(&mb, &remote)));
    let key = only_command(&mb).key;
    let result = done(&key, "apt-42", 1);
    let Ok(Settlement::Record(outcome)) = settle(&mb.state, &result) else {
        panic!("an open command's result is recorded")
    };

    let ds = mb.feed(*outcome.clone());
    let (rule, link) = one(links_created(&ds), &ds);
    assert_eq!(
        (rule, &link.record, &link.remote),
        (33, &RecordId::new("apt-42"), &remote)
    );
    assert!(
        link.basis.reason.contains("track_appointment"),
        "{}",
        link.basis.reason
    );
    // The link is the CRM's row now; the proposed id is forgotten; nothing is open any more.
    assert_eq!(mb.link(&RecordId::new("apt-42")).status, LinkStatus::Linked);
    assert_eq!(
        mb.link(&RecordId::new("apt-42")).synced.id,
        RecordId::new("apt-42")
    );
    assert_eq!(
        mb.state.by_remote.get(&remote),
        Some(&RecordId::new("apt-42"))
    );
    assert!(
        !mb.state
            .links
            .contains_key(&RecordId::new("from-calendar/lunch.ics"))
    );
    assert!(commands(&mb.state, mb.now).is_empty());

    // The same result again (a redelivery): acknowledged, nothing to record; and the outcome
    // itself, had it raced the first one, is not admitted.
    assert_eq!(
        settle(&mb.state, &result),
        Ok(Settlement::Acknowledged(Acknowledged::NotOpen))
    );
    assert!(!admits(&mb.state, &outcome));
}

#[test]
fn r18_echo_guard_the_crms_snapshot_of_the_version_a_result_named_decides_nothing() {
    let mut mb = Mailbox::ready("jayne");
    let c1 = contact("c1", "jayne");
    let remote = mb.sync_new(&c1);
    // Edited in the address book: an update_record command (R18) based on version 1.
    let edited = remote_item(
        &remote,
        9,
        RemoteFields::Contact {
            full_name: "Kaylee Frye".into(),
            email: "c1@customer.example".into(),
        },
    );
    let ds = mb.feed(seen(edited));
    assert_eq!(summary(&ds), [(18, "update_intent")]);
    let c = only_command(&mb);
    assert_eq!(
        (c.command.name(), c.rule.0, c.version),
        ("update_record", 18, Some(1))
    );

    // The CRM took the edit as version 2.
    assert_eq!(answer(&mut mb, &done(&c.key, "c1", 2)), []);
    assert!(commands(&mb.state, mb.now).is_empty());

    // Its snapshot of version 2 is that write coming back: nothing for the mail server.
    let v2 = changed_contact(&c1, |c| c.full_name = "Kaylee Frye".into());
    assert_eq!(mb.feed(upsert(&v2)), []);
    assert_snapshot(&mb.link(&c1.id).synced, &v2);

    // A later version is an edit made in the CRM: written to the mail server (R18).
    let v3 = changed_contact(&v2, |c| c.phone = "+1 555 0199".into());
    let ds = mb.feed(upsert(&v3));
    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.target, u.item.version), (18, Side::MailServer, 3));
}

#[test]
fn r18_echo_guard_a_tracked_rows_snapshot_is_adopted_and_a_later_one_is_written() {
    let mut mb = Mailbox::ready("jayne");
    let (remote, row) = tracked_and_created(&mut mb);
    let v1 = with_appointment(
        appointment(
            row.as_str(),
            crm_user("jayne"),
            vec![],
            vec![],
            mb.now + Duration::days(1),
        ),
        |a| a.subject = "Lunch with Kaylee".into(),
    );
    assert_eq!(
        mb.feed(upsert(&v1)),
        [],
        "the CRM's row as created: no write back"
    );
    let v2 = changed_appointment(&v1, |a| a.location = "Galley".into());
    let ds = mb.feed(upsert(&v2));
    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!(
        (rule, u.target, &u.remote),
        (18, Side::MailServer, &Some(remote))
    );
}

#[test]
fn r48_task_completed_on_the_mail_server_becomes_a_complete_task_command() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    let remote = mb.sync_new(&t);
    mb.feed(seen(remote_item(
        &remote,
        5,
        remote_task_fields("Task t1", 100),
    )));
    let c = only_command(&mb);
    assert_eq!(
        (c.command.name(), c.rule.0, &c.record),
        ("complete_task", 48, &t.id)
    );
    // The CRM marked it Completed as version 2; its snapshot comes back without echo.
    assert_eq!(answer(&mut mb, &done(&c.key, "t1", 2)), []);
    let v2 = changed_task(&t, |t| {
        t.state = ActivityState::Completed;
        t.percent_complete = 100
    });
    assert_eq!(mb.feed(upsert(&v2)), []);
}

#[test]
fn r36_r43_r46_deletes_made_on_the_mail_server_become_delete_record_commands() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let c = contact("c1", "jayne");
    let t = task("t1", "jayne", mb.now);
    let items = [(&a, 36), (&c, 43), (&t, 46)];
    for (row, rule) in items {
        let remote = mb.sync_new(row);
        let ds = mb.feed(gone(&remote));
        assert_eq!(summary(&ds), [(rule, "delete_intent")]);
        let open = commands(&mb.state, mb.now);
        let cmd = open.iter().find(|c| c.record == row.id).expect("a command");
        assert_eq!((cmd.command.name(), cmd.rule.0), ("delete_record", rule));
        assert_eq!((cmd.entity, cmd.version), (row.entity(), Some(1)));
        // Done: the link ends deleted, and the CRM's own delete decides nothing more.
        assert_eq!(answer(&mut mb, &done(&cmd.key, row.id.as_str(), 1)), []);
        assert_eq!(mb.link(&row.id).status, LinkStatus::Deleted);
        assert_eq!(mb.feed(deleted(row)), []);
    }
    assert!(commands(&mb.state, mb.now).is_empty());
}

#[test]
fn r12_a_retryable_failure_is_offered_again_with_the_same_key_after_the_retry_interval() {
    let mut mb = Mailbox::ready("jayne");
    let remote = RemoteId::new("calendar/lunch.ics");
    mb.feed(seen(tracked_meeting(&mb, &remote)));
    let key = only_command(&mb).key;

    let ds = answer(&mut mb, &failed(&key, true));
    let (rule, e) = one(classifications(&ds), &ds);
    assert_eq!(
        (rule, e.class, e.attempt, e.limit),
        (12, ErrorClass::Transient, 1, 10)
    );
    assert!(
        e.basis.reason.contains("same idempotency key"),
        "{}",
        e.basis.reason
    );
    let waiting = only_command(&mb);
    assert_eq!(
        (&waiting.key, waiting.attempts, waiting.due),
        (&key, 1, false)
    );
    assert_eq!(waiting.retry_at, Some(mb.now + Duration::minutes(5)));
    assert_eq!(
        waiting.last_error.as_ref().map(|e| e.code.as_str()),
        Some("503")
    );

    mb.advance(Duration::minutes(5));
    let again = only_command(&mb);
    assert_eq!(
        (&again.key, again.due),
        (&key, true),
        "the same command, due again"
    );
    assert_eq!(
        summary(&answer(&mut mb, &done(&key, "apt-42", 1))),
        [(33, "link_created")]
    );
}

#[test]
fn r12_a_failure_the_crm_calls_not_retryable_gives_the_command_up() {
    let mut mb = Mailbox::ready("jayne");
    let remote = RemoteId::new("calendar/lunch.ics");
    mb.feed(seen(tracked_meeting(&mb, &remote)));
    let key = only_command(&mb).key;

    let ds = answer(&mut mb, &failed(&key, false));
    let (rule, e) = one(classifications(&ds), &ds);
    assert_eq!((rule, e.class, e.attempt), (12, ErrorClass::Permanent, 1));
    assert!(e.basis.reason.contains("given up"), "{}", e.basis.reason);
    assert!(commands(&mb.state, mb.now).is_empty(), "not offered again");
    assert!(mb.state.failed_intents.contains_key(&key.intent));
    assert!(
        !mb.state
            .links
            .contains_key(&RecordId::new("from-calendar/lunch.ics"))
    );
    // A late result for it is acknowledged, not recorded.
    assert_eq!(
        settle(&mb.state, &done(&key, "apt-42", 1)),
        Ok(Settlement::Acknowledged(Acknowledged::GivenUp))
    );
}

#[test]
fn r12_r79_retryable_failures_give_the_command_up_at_the_retry_limit() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.transient_retry_limit = 3;
    let remote = RemoteId::new("calendar/lunch.ics");
    mb.feed(seen(tracked_meeting(&mb, &remote)));
    let key = only_command(&mb).key;
    for attempt in 1..=2 {
        let ds = answer(&mut mb, &failed(&key, true));
        assert_eq!(
            summary(&ds),
            [(12, "error_classified")],
            "attempt {attempt}"
        );
        mb.advance(Duration::minutes(5));
    }
    let ds = answer(&mut mb, &failed(&key, true));
    assert_eq!(
        summary(&ds),
        [(12, "error_classified"), (79, "alert_raised")]
    );
    assert!(commands(&mb.state, mb.now).is_empty());
}

#[test]
fn a_result_that_contradicts_its_command_is_refused_with_its_field() {
    let mut mb = Mailbox::ready("jayne");
    let c1 = contact("c1", "jayne");
    let remote = mb.sync_new(&c1);
    let edited = RemoteFields::Contact {
        full_name: "Kaylee Frye".into(),
        email: "c1@customer.example".into(),
    };
    mb.feed(seen(remote_item(&remote, 9, edited)));
    let key = only_command(&mb).key;

    let other_row = settle(&mb.state, &done(&key, "c2", 2)).unwrap_err();
    assert!(matches!(other_row, ResultError::OtherRow { .. }));
    assert_eq!(other_row.field(), "record");
    let stale = settle(&mb.state, &done(&key, "c1", 1)).unwrap_err();
    assert_eq!(stale.field(), "version");
    assert!(
        stale.to_string().contains("higher version than 1"),
        "{stale}"
    );

    // An intent for the mail server is its connector's, not the CRM's.
    let c2 = next_version(&c1, |r| r.owner = UserId::new("jayne"));
    let c2 = changed_contact(&c2, |c| c.company = "Serenity".into());
    mb.feed(upsert(&c2));
    let mail_side =
        mb.id_of(|e| matches!(e, Event::UpdateIntent(p) if p.target == Side::MailServer));
    let not_a_command = settle(
        &mb.state,
        &done(&CommandKey::new(mb.id.clone(), mail_side), "c1", 4),
    )
    .unwrap_err();
    assert_eq!(not_a_command.field(), "key");
}

#[test]
fn command_keys_round_trip_and_other_text_is_refused_with_what_to_do() {
    let key = CommandKey::new(
        MailboxId::new("mbx/with/slash"),
        ledgersync_domain::EventId::from_u128(7),
    );
    assert_eq!(CommandKey::parse(&key.to_string()), Ok(key));
    for bad in ["no-slash", "/0000", "mbx-jayne/not-a-uuid"] {
        let e = CommandKey::parse(bad).unwrap_err();
        assert!(e.to_string().contains("crm pending"), "{e}");
    }
}
