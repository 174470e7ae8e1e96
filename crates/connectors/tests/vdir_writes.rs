//! Carrying out intents on a vdir: create (named by the idempotency key, retried once),
//! update, delete, and the intents this connector refuses.

mod support;

use ledgersync_connectors::{Connector, Cursor, Intent, Outcome, UNSUPPORTED, fnv1a64};
use ledgersync_domain::event::{
    Basis, CreateIntent, DeleteIntent, Event, ItemWrite, RemoteFields, Side, UpdateIntent,
};
use ledgersync_domain::records::{Record, ShowAs};
use ledgersync_domain::{EventId, RecordId, RemoteId};
use std::fs;
use support::*;

fn write(title: &str) -> ItemWrite {
    ItemWrite {
        title: title.into(),
        version: 1,
        show_as: Some(ShowAs::Busy),
        reminder: false,
        notify_attendees: true,
        attendees: 2,
        completed: false,
        actual_start: None,
    }
}

fn create(record: &Record, key: &str, item: ItemWrite) -> Event {
    Event::CreateIntent(CreateIntent {
        basis: Basis::default(),
        record: record.id.clone(),
        remote: None,
        target: Side::MailServer,
        item,
        key: key.into(),
    })
}

fn run(f: &mut Fixture, id: u128, event: &Event, record: Option<&Record>) -> Outcome {
    f.connector
        .execute(intent(EventId::from_u128(id), event, record))
}

fn succeeded(outcome: &Outcome) -> (Option<String>, Option<String>) {
    match outcome {
        Outcome::Succeeded(s) => (s.remote.as_ref().map(|r| r.0.clone()), s.etag.clone()),
        other => panic!("expected intent_succeeded, got {other:?}"),
    }
}

fn failed_code(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed(f) => f.error.code.clone(),
        other => panic!("expected intent_failed, got {other:?}"),
    }
}

fn item_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[test]
fn create_names_the_file_after_the_key_and_a_retry_writes_nothing() {
    let mut f = Fixture::new();
    let rec = appointment_record("apt-quarterly-review", "Quarterly review");
    let key = "mbx-paul/apt-quarterly-review/create/v1";
    let intent = create(&rec, key, write("Quarterly review"));

    let (remote, etag) = succeeded(&run(&mut f, 1, &intent, Some(&rec)));
    let file = format!("apt-quarterly-review-{:016x}.ics", fnv1a64(key.as_bytes()));
    assert_eq!(remote.as_deref(), Some(format!("calendar/{file}").as_str()));
    assert_eq!(item_files(&f.calendar), vec![file.clone()]);
    let bytes = fs::read(f.calendar.join(&file)).unwrap();

    // Retry after a crash between call and outcome: same answer, same single file, untouched.
    let (remote2, etag2) = succeeded(&run(&mut f, 1, &intent, Some(&rec)));
    assert_eq!((remote2, etag2), (remote.clone(), etag.clone()));
    assert_eq!(item_files(&f.calendar), vec![file.clone()]);
    assert_eq!(fs::read(f.calendar.join(&file)).unwrap(), bytes);

    // The written item lists back as what the CRM row says, with the outcome's version tag.
    let l = f.list(&Cursor::initial());
    let items = seen(&l);
    assert_eq!(items.len(), 1);
    assert_eq!(Some(items[0].etag.clone()), etag);
    match &items[0].fields {
        RemoteFields::Appointment {
            subject,
            organizer,
            start,
            end,
            show_as,
        } => {
            assert_eq!(subject, "Quarterly review");
            assert_eq!(organizer.as_deref(), Some("paul@serenity.example"));
            assert_eq!(
                (*start, *end),
                (
                    rec.appointment().unwrap().start,
                    rec.appointment().unwrap().end
                )
            );
            assert_eq!(*show_as, ShowAs::Busy);
        }
        other => panic!("expected an appointment, got {other:?}"),
    }
    // Written by the engine, not tracked by the user's category.
    assert_eq!(items[0].tracked, None);
}

#[test]
fn a_create_into_a_removed_collection_fails_not_found_and_does_not_recreate_it() {
    let mut f = Fixture::new();
    fs::remove_dir_all(&f.calendar).unwrap();
    let rec = appointment_record("apt-quarterly-review", "Quarterly review");
    let intent = create(
        &rec,
        "mbx-paul/apt-quarterly-review/create/v1",
        write("Quarterly review"),
    );
    let outcome = run(&mut f, 1, &intent, Some(&rec));
    assert_eq!(failed_code(&outcome), "not_found", "{outcome:?}");
    let Outcome::Failed(failed) = &outcome else {
        unreachable!()
    };
    assert!(
        failed.error.message.contains("does not exist"),
        "{}",
        failed.error.message
    );
    assert!(!f.calendar.exists(), "the removed collection stays removed");
}

#[test]
fn tasks_go_to_the_calendar_as_vtodo_and_contacts_to_the_address_book() {
    let mut f = Fixture::new();
    let task = task_record("task-call-back", "Call back Badger");
    let contact = contact_record("contact-kaylee", "Kaylee Frye", "kaylee@serenity.example");
    let mut w = write("Call back Badger");
    w.show_as = None;
    w.reminder = true;
    succeeded(&run(
        &mut f,
        1,
        &create(&task, "mbx-paul/task-call-back/create/v1", w),
        Some(&task),
    ));
    let mut w = write("Kaylee Frye");
    w.show_as = None;
    succeeded(&run(
        &mut f,
        2,
        &create(&contact, "mbx-paul/contact-kaylee/create/v1", w),
        Some(&contact),
    ));

    let l = f.list(&Cursor::initial());
    assert!(l.failures.is_empty(), "{:?}", l.failures);
    let items = seen(&l);
    assert_eq!(items.len(), 2);
    assert!(items.iter().any(|i| i.remote.0.starts_with("calendar/task-call-back-")
        && matches!(&i.fields, RemoteFields::Task { subject, percent_complete: 0, due: Some(_) } if subject == "Call back Badger")));
    assert!(
        items
            .iter()
            .any(|i| i.remote.0.starts_with("contacts/contact-kaylee-")
                && i.remote.0.ends_with(".vcf")
                && i.fields
                    == RemoteFields::Contact {
                        full_name: "Kaylee Frye".into(),
                        email: "kaylee@serenity.example".into()
                    })
    );
}

#[test]
fn update_rewrites_the_fields_it_owns_and_keeps_the_rest() {
    let mut f = Fixture::new();
    let path = f.calendar.join("khal-made.ics");
    let original = event_ics("khal-1", "Quarterly review").replace(
        "END:VEVENT",
        "X-KHAL-NOTE:kept\r\nBEGIN:VALARM\r\nACTION:AUDIO\r\nTRIGGER:-PT1H\r\nEND:VALARM\r\nEND:VEVENT",
    );
    write_aged(&path, &original, 60);
    let first = f.list(&Cursor::initial());

    let mut w = write("Quarterly review (moved)");
    w.show_as = Some(ShowAs::Free);
    w.reminder = true;
    let update = Event::UpdateIntent(UpdateIntent {
        basis: Basis::default(),
        record: RecordId::new("apt-quarterly-review"),
        remote: Some(RemoteId::new("calendar/khal-made.ics")),
        target: Side::MailServer,
        item: w,
        key: "mbx-paul/apt-quarterly-review/update/v2".into(),
    });
    let (remote, etag) = succeeded(&run(&mut f, 3, &update, None));
    assert_eq!(remote.as_deref(), Some("calendar/khal-made.ics"));

    let text = fs::read_to_string(&path).unwrap();
    for line in [
        "SUMMARY:Quarterly review (moved)",
        "TRANSP:TRANSPARENT",
        "SEQUENCE:1",
        "X-KHAL-NOTE:kept",
        "UID:khal-1",
        "ACTION:AUDIO",
        "TRIGGER:-PT1H",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
    // A reminder is set (R31) and the user has one of their own: it stays, none is added.
    assert_eq!(text.matches("BEGIN:VALARM").count(), 1, "{text}");

    let l = f.list(&first.cursor);
    let items = seen(&l);
    assert_eq!(items.len(), 1);
    assert_eq!(Some(items[0].etag.clone()), etag);
    assert!(
        matches!(&items[0].fields, RemoteFields::Appointment { subject, show_as: ShowAs::Free, .. } if subject == "Quarterly review (moved)")
    );
}

#[test]
fn update_of_a_task_writes_its_completion() {
    let mut f = Fixture::new();
    let task = task_record("task-1", "Send the invoice");
    let mut w = write("Send the invoice");
    w.show_as = None;
    let (remote, _) = succeeded(&run(
        &mut f,
        1,
        &create(&task, "m/task-1/create/v1", w.clone()),
        Some(&task),
    ));
    w.completed = true;
    let update = Event::UpdateIntent(UpdateIntent {
        basis: Basis::default(),
        record: task.id.clone(),
        remote: remote.clone().map(RemoteId::new),
        target: Side::MailServer,
        item: w,
        key: "m/task-1/update/v2".into(),
    });
    succeeded(&run(&mut f, 2, &update, None));
    let text = fs::read_to_string(
        f.calendar
            .join(remote.unwrap().trim_start_matches("calendar/")),
    )
    .unwrap();
    assert!(
        text.contains("STATUS:COMPLETED") && text.contains("PERCENT-COMPLETE:100"),
        "{text}"
    );
    assert!(!text.contains("NEEDS-ACTION"), "{text}");
    let l = f.list(&Cursor::initial());
    assert!(matches!(
        &seen(&l)[0].fields,
        RemoteFields::Task {
            percent_complete: 100,
            ..
        }
    ));
}

#[test]
fn delete_removes_the_item_and_a_retry_still_succeeds() {
    let mut f = Fixture::new();
    let rec = appointment_record("apt-1", "Dinner");
    let (remote, _) = succeeded(&run(
        &mut f,
        1,
        &create(&rec, "m/apt-1/create/v1", write("Dinner")),
        Some(&rec),
    ));
    write_aged(&f.calendar.join("other.ics"), &event_ics("o", "other"), 60);
    write_aged(&f.calendar.join("third.ics"), &event_ics("t", "third"), 60);
    let first = f.list(&Cursor::initial());

    let delete = Event::DeleteIntent(DeleteIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: remote.clone().map(RemoteId::new),
        target: Side::MailServer,
        key: "m/apt-1/delete/v2".into(),
    });
    succeeded(&run(&mut f, 2, &delete, None));
    assert_eq!(
        item_files(&f.calendar),
        vec!["other.ics".to_string(), "third.ics".to_string()]
    );
    succeeded(&run(&mut f, 2, &delete, None));

    let l = f.list(&first.cursor);
    assert_eq!(gone(&l), vec![remote.unwrap()]);
}

#[test]
fn a_delete_decided_before_the_create_outcome_finds_the_item_by_its_row() {
    let mut f = Fixture::new();
    let rec = appointment_record("apt-2", "Briefing");
    succeeded(&run(
        &mut f,
        1,
        &create(&rec, "m/apt-2/create/v1", write("Briefing")),
        Some(&rec),
    ));
    let delete = Event::DeleteIntent(DeleteIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: None,
        target: Side::MailServer,
        key: "m/apt-2/delete/v2".into(),
    });
    let (remote, _) = succeeded(&run(&mut f, 2, &delete, None));
    assert!(remote.unwrap().starts_with("calendar/apt-2-"));
    assert!(item_files(&f.calendar).is_empty());
}

#[test]
fn intents_this_connector_does_not_carry_out_fail_clearly() {
    let mut f = Fixture::new();
    let rec = appointment_record("apt-3", "Crm side");
    let crm = Event::CreateIntent(CreateIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: Some(RemoteId::new("calendar/x.ics")),
        target: Side::Crm,
        item: write("Crm side"),
        key: "m/apt-3/crm-create/v1".into(),
    });
    // The runtime never hands a connector a CRM-side intent; one built by hand is refused.
    assert!(Intent::of(EventId::from_u128(1), &crm, Some(&rec)).is_none());
    let outcome = run(&mut f, 1, &crm, Some(&rec));
    assert_eq!(failed_code(&outcome), UNSUPPORTED);
    match &outcome {
        Outcome::Failed(x) => {
            assert_eq!(x.intent, EventId::from_u128(1));
            assert!(
                x.error.message.contains("targets the CRM"),
                "{}",
                x.error.message
            );
        }
        _ => unreachable!(),
    }
    // A create without its CRM row cannot be written.
    assert_eq!(
        failed_code(&run(
            &mut f,
            2,
            &create(&rec, "m/apt-3/create/v1", write("x")),
            None
        )),
        UNSUPPORTED
    );
    // An update of an item that is not there.
    let update = Event::UpdateIntent(UpdateIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: Some(RemoteId::new("calendar/missing.ics")),
        target: Side::MailServer,
        item: write("x"),
        key: "m/apt-3/update/v2".into(),
    });
    assert_eq!(failed_code(&run(&mut f, 3, &update, None)), "not_found");
    // Not an intent at all: it cannot become one, so it never reaches a connector.
    let not_intent = Event::ItemGone(ledgersync_domain::event::ItemGone {
        remote: RemoteId::new("calendar/x.ics"),
    });
    assert!(Intent::of(EventId::from_u128(4), &not_intent, None).is_none());
    assert!(item_files(&f.calendar).is_empty());
}

#[test]
fn r25_the_connectors_own_delete_of_the_last_item_is_confirmed_not_withheld() {
    let mut f = Fixture::new();
    let rec = appointment_record("apt-last", "Last one");
    let (remote, _) = succeeded(&run(
        &mut f,
        1,
        &create(&rec, "m/apt-last/create/v1", write("Last one")),
        Some(&rec),
    ));
    let first = f.list(&Cursor::initial());
    assert_eq!(seen(&first).len(), 1);
    let delete = Event::DeleteIntent(DeleteIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: remote.clone().map(RemoteId::new),
        target: Side::MailServer,
        key: "m/apt-last/delete/v2".into(),
    });
    succeeded(&run(&mut f, 2, &delete, None));
    let second = f.list(&first.cursor);
    assert_eq!(terminal(&second), "listing_completed");
    assert_eq!(gone(&second), vec![remote.unwrap()]);
    let third = f.list(&second.cursor);
    assert!(gone(&third).is_empty());
    assert_eq!(terminal(&third), "listing_completed");
}

#[test]
fn an_update_decided_before_the_create_outcome_finds_the_item_by_its_row() {
    let mut f = Fixture::new();
    let rec = contact_record("contact-inara", "Inara Serra", "inara@companion.example");
    let mut w = write("Inara Serra");
    w.show_as = None;
    let (created, _) = succeeded(&run(
        &mut f,
        1,
        &create(&rec, "m/contact-inara/create/v1", w.clone()),
        Some(&rec),
    ));
    w.title = "Inara Serra (Companion)".into();
    let update = Event::UpdateIntent(UpdateIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: None,
        target: Side::MailServer,
        item: w,
        key: "m/contact-inara/update/v2".into(),
    });
    let (remote, _) = succeeded(&run(&mut f, 2, &update, Some(&rec)));
    assert_eq!(remote, created);
    let l = f.list(&Cursor::initial());
    assert_eq!(seen(&l)[0].fields.title(), "Inara Serra (Companion)");
}

#[test]
fn the_version_a_write_reports_is_the_one_the_next_listing_reports_for_its_file() {
    let mut f = Fixture::new();
    let rec = appointment_record("apt-bike-repair", "Bike repair");
    let before = f.list(&Cursor::initial());

    // A create, remembered in the cursor as the runtime does once its outcome is recorded.
    let intent = create(&rec, "m/apt-bike-repair/create/v1", write("Bike repair"));
    let outcome = run(&mut f, 1, &intent, Some(&rec));
    let (remote, created) = succeeded(&outcome);
    let cursor = f
        .connector
        .remember(&before.cursor, call(&intent), &outcome);
    let listed = f.list(&cursor);
    let items = seen(&listed);
    assert_eq!(items.len(), 1);
    assert_eq!(Some(&items[0].remote.0), remote.as_ref());
    assert!(created.is_some(), "a create reports the version it wrote");
    assert_eq!(Some(items[0].etag.clone()), created, "create");

    // An update of that file, listed from the cursor that knows the created version.
    let update = Event::UpdateIntent(UpdateIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: remote.clone().map(RemoteId::new),
        target: Side::MailServer,
        item: write("Bike repair and tune-up"),
        key: "m/apt-bike-repair/update/v2".into(),
    });
    let outcome = run(&mut f, 2, &update, Some(&rec));
    let (_, updated) = succeeded(&outcome);
    let cursor = f
        .connector
        .remember(&listed.cursor, call(&update), &outcome);
    let relisted = f.list(&cursor);
    let items = seen(&relisted);
    assert_eq!(items.len(), 1);
    assert_ne!(updated, created);
    assert_eq!(Some(items[0].etag.clone()), updated, "update");

    // Another program's edit of the file is another version.
    let path = f
        .calendar
        .join(remote.unwrap().trim_start_matches("calendar/"));
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("SUMMARY:", "SUMMARY:Edited: ")).unwrap();
    let edited = f.list(&relisted.cursor);
    let items = seen(&edited);
    assert_eq!(items.len(), 1);
    assert_ne!(
        Some(items[0].etag.clone()),
        updated,
        "an edit by another program"
    );
}
