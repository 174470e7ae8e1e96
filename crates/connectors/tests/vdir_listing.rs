//! Listing a vdir: changes made by other programs, confirmed deletes, and R25 (absence is not
//! deletion) for corrupt files, emptied and unreadable directories.

mod support;

use ledgersync_connectors::{Cursor, Listing, ListingEnd, Observation};
use ledgersync_domain::event::{RemoteFields, TrackedBy};
use std::fs;
use support::*;

#[test]
fn first_listing_sees_every_item_with_fields_and_tracking() {
    let mut f = Fixture::new();
    write_aged(
        &f.calendar.join("a.ics"),
        &event_ics("a", "Quarterly review"),
        60,
    );
    write_aged(&f.contacts.join("k.vcf"), &card_vcf("k", "Kaylee Frye"), 60);
    fs::write(f.calendar.join("notes.txt"), "not an item").unwrap();
    fs::write(f.calendar.join(".hidden.ics"), "not an item either").unwrap();

    let l = f.list(&Cursor::initial());
    assert_eq!(terminal(&l), "listing_completed");
    assert!(l.failures.is_empty(), "{:?}", l.failures);
    let items = seen(&l);
    assert_eq!(items.len(), 2);
    let a = items
        .iter()
        .find(|i| i.remote.0 == "calendar/a.ics")
        .expect("a.ics");
    assert_eq!(a.tracked, Some(TrackedBy::Category));
    assert!(
        matches!(&a.fields, RemoteFields::Appointment { subject, .. } if subject == "Quarterly review")
    );
    let k = items
        .iter()
        .find(|i| i.remote.0 == "contacts/k.vcf")
        .expect("k.vcf");
    assert_eq!(
        k.fields,
        RemoteFields::Contact {
            full_name: "Kaylee Frye".into(),
            email: "k@serenity.example".into()
        }
    );
    assert_eq!(k.tracked, None);
    assert!(matches!(&l.end, ListingEnd::Completed(c) if c.items == 2));
}

#[test]
fn an_edit_made_by_another_program_is_seen_with_a_new_etag() {
    let mut f = Fixture::new();
    for n in ["a", "b", "c"] {
        write_aged(&f.calendar.join(format!("{n}.ics")), &event_ics(n, n), 60);
    }
    let first = f.list(&Cursor::initial());
    let before = seen(&first)
        .into_iter()
        .find(|i| i.remote.0 == "calendar/b.ics")
        .unwrap()
        .clone();

    // Nothing changed: nothing seen.
    let quiet = f.list(&first.cursor);
    assert!(seen(&quiet).is_empty());
    assert_eq!(terminal(&quiet), "listing_completed");

    // khal rewrites the file: new content, new mtime.
    fs::write(
        f.calendar.join("b.ics"),
        event_ics("b", "Moved to Thursday"),
    )
    .unwrap();
    let after_edit = f.list(&quiet.cursor);
    let items = seen(&after_edit);
    assert_eq!(items.len(), 1, "only the edited item: {items:?}");
    let after = items[0];
    assert_eq!(after.remote.0, "calendar/b.ics");
    assert_ne!(after.etag, before.etag);
    assert_ne!(after.content_hash, before.content_hash);
    assert_eq!(after.fields.title(), "Moved to Thursday");
    assert!(gone(&after_edit).is_empty());
}

#[test]
fn r25_a_deleted_file_yields_exactly_one_item_gone() {
    let mut f = Fixture::new();
    for n in ["a", "b", "c"] {
        write_aged(&f.calendar.join(format!("{n}.ics")), &event_ics(n, n), 60);
    }
    let first = f.list(&Cursor::initial());
    fs::remove_file(f.calendar.join("b.ics")).unwrap();

    let second = f.list(&first.cursor);
    assert_eq!(gone(&second), vec!["calendar/b.ics".to_string()]);
    assert_eq!(terminal(&second), "listing_completed");

    let third = f.list(&second.cursor);
    assert!(gone(&third).is_empty());
    assert!(seen(&third).is_empty());
}

#[test]
fn r25_a_corrupt_file_is_an_item_failure_never_a_delete() {
    let mut f = Fixture::new();
    for n in ["a", "b", "c"] {
        write_aged(&f.calendar.join(format!("{n}.ics")), &event_ics(n, n), 60);
    }
    fs::write(
        f.calendar.join("broken.ics"),
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:cut",
    )
    .unwrap();
    let first = f.list(&Cursor::initial());
    assert_eq!(seen(&first).len(), 3, "the other items are still listed");
    assert_eq!(first.failures.len(), 1);
    assert_eq!(first.failures[0].item, "calendar/broken.ics");
    assert!(
        first.failures[0].error.contains("broken.ics"),
        "{}",
        first.failures[0]
    );

    // A known item gets corrupted: a failure, no item_gone, the others unaffected.
    fs::write(f.calendar.join("b.ics"), [0xff, 0xfe, 0x00, 0x42]).unwrap();
    let second = f.list(&first.cursor);
    assert!(gone(&second).is_empty());
    assert!(seen(&second).is_empty());
    let failed: Vec<&str> = second.failures.iter().map(|x| x.item.as_str()).collect();
    assert_eq!(failed, vec!["calendar/b.ics", "calendar/broken.ics"]);

    // Still not gone on the next listing; repaired, it is seen again.
    let third = f.list(&second.cursor);
    assert!(gone(&third).is_empty());
    fs::write(f.calendar.join("b.ics"), event_ics("b", "repaired")).unwrap();
    let fourth = f.list(&third.cursor);
    let items = seen(&fourth);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].fields.title(), "repaired");
}

/// The `deletions_listed` of a listing: the server ids it reports gone, before its
/// `item_gone`s.
fn deletions_listed(l: &Listing) -> Vec<String> {
    let at = l
        .observations
        .iter()
        .position(|e| matches!(e, Observation::DeletionsListed(_)));
    let first_gone = l
        .observations
        .iter()
        .position(|e| matches!(e, Observation::Gone(_)));
    match at.map(|i| &l.observations[i]) {
        Some(Observation::DeletionsListed(d)) => {
            assert!(at < first_gone, "the count comes before the item_gones");
            d.remotes.iter().map(|r| r.to_string()).collect()
        }
        _ => {
            assert_eq!(first_gone, None, "no item_gone without deletions_listed");
            Vec::new()
        }
    }
}

#[test]
fn r25_an_emptied_directory_completes_with_the_count_and_its_item_gones() {
    let mut f = Fixture::new();
    for n in ["a", "b", "c"] {
        write_aged(&f.calendar.join(format!("{n}.ics")), &event_ics(n, n), 60);
    }
    let first = f.list(&Cursor::initial());
    assert!(deletions_listed(&first).is_empty());
    for n in ["a", "b", "c"] {
        fs::remove_file(f.calendar.join(format!("{n}.ics"))).unwrap();
    }
    // The connector only reports: the domain's delete breaker decides (R25).
    let second = f.list(&first.cursor);
    assert_eq!(terminal(&second), "listing_completed");
    let all = vec![
        "calendar/a.ics".to_string(),
        "calendar/b.ics".to_string(),
        "calendar/c.ics".to_string(),
    ];
    assert_eq!(deletions_listed(&second), all);
    assert_eq!(gone(&second), all);
    match &second.end {
        ListingEnd::Completed(c) => assert_eq!(c.items, 3, "the changes, not the count"),
        other => panic!("expected listing_completed, got {other:?}"),
    }
    // Reported once: the next listing knows nothing of them.
    let third = f.list(&second.cursor);
    assert!(gone(&third).is_empty() && deletions_listed(&third).is_empty());
}

#[test]
fn r25_losing_many_items_at_once_is_reported_for_the_domain_to_weigh() {
    let mut f = Fixture::new();
    for n in ["a", "b", "c", "d"] {
        write_aged(&f.calendar.join(format!("{n}.ics")), &event_ics(n, n), 60);
    }
    let first = f.list(&Cursor::initial());
    for n in ["a", "b", "c"] {
        fs::remove_file(f.calendar.join(format!("{n}.ics"))).unwrap();
    }
    let second = f.list(&first.cursor);
    assert_eq!(terminal(&second), "listing_completed");
    assert_eq!(deletions_listed(&second).len(), 3);
    assert_eq!(gone(&second).len(), 3);
}

#[test]
fn r25_an_unreadable_or_missing_directory_is_a_failed_listing() {
    let mut f = Fixture::new();
    write_aged(&f.calendar.join("a.ics"), &event_ics("a", "a"), 60);
    write_aged(&f.contacts.join("k.vcf"), &card_vcf("k", "Kaylee"), 60);
    let first = f.list(&Cursor::initial());

    // The calendar became a file, the address book vanished.
    fs::remove_dir_all(&f.calendar).unwrap();
    fs::write(&f.calendar, "a file where a directory was").unwrap();
    fs::remove_dir_all(&f.contacts).unwrap();
    let second = f.list(&first.cursor);
    assert!(second.observations.is_empty());
    match &second.end {
        ListingEnd::Failed(e) => assert_eq!(e.error.code, "not_found"),
        other => panic!("expected listing_failed, got {other:?}"),
    }
    assert_eq!(
        second.cursor, first.cursor,
        "a failed listing keeps the cursor"
    );
}

#[test]
fn r25_one_unreadable_collection_makes_the_listing_partial_and_withholds_deletes() {
    let mut f = Fixture::new();
    write_aged(&f.calendar.join("a.ics"), &event_ics("a", "a"), 60);
    write_aged(&f.calendar.join("b.ics"), &event_ics("b", "b"), 60);
    write_aged(&f.calendar.join("c.ics"), &event_ics("c", "c"), 60);
    write_aged(&f.contacts.join("k.vcf"), &card_vcf("k", "Kaylee"), 60);
    let first = f.list(&Cursor::initial());

    fs::remove_dir_all(&f.contacts).unwrap();
    fs::remove_file(f.calendar.join("c.ics")).unwrap();
    fs::write(f.calendar.join("a.ics"), event_ics("a", "edited")).unwrap();
    let second = f.list(&first.cursor);
    assert_eq!(terminal(&second), "listing_partial");
    assert!(gone(&second).is_empty(), "no delete in a partial listing");
    assert_eq!(
        seen(&second).len(),
        1,
        "what could be read is still reported"
    );

    // Once everything is readable again, the calendar delete is confirmed, the contact is not gone.
    fs::create_dir_all(&f.contacts).unwrap();
    write_aged(&f.contacts.join("k.vcf"), &card_vcf("k", "Kaylee"), 60);
    let third = f.list(&second.cursor);
    assert_eq!(terminal(&third), "listing_completed");
    assert_eq!(gone(&third), vec!["calendar/c.ics".to_string()]);
}

#[test]
fn a_foreign_cursor_is_a_failed_listing() {
    let mut f = Fixture::new();
    let l = f.list(&Cursor::from_text("UIDVALIDITY 42"));
    match &l.end {
        ListingEnd::Failed(e) => assert_eq!(e.error.code, "cursor"),
        other => panic!("expected listing_failed, got {other:?}"),
    }
}

#[test]
fn empty_collections_with_nothing_known_list_as_complete() {
    let mut f = Fixture::new();
    let l = f.list(&Cursor::initial());
    assert!(matches!(&l.end, ListingEnd::Completed(c) if c.items == 0));
    assert!(l.cursor.is_initial());
}

#[test]
fn an_oversized_item_is_a_too_large_failure_never_read_never_gone() {
    let mut f = Fixture::new();
    write_aged(&f.calendar.join("a.ics"), &event_ics("a", "small"), 60);
    write_aged(&f.calendar.join("b.ics"), &event_ics("b", "grows"), 60);
    // 200 MiB, sparse: judged by its size (the default limit is 4 MiB), never loaded.
    let huge = fs::File::create(f.calendar.join("huge.ics")).unwrap();
    huge.set_len(200 * 1024 * 1024).unwrap();
    drop(huge);
    let first = f.list(&Cursor::initial());
    assert_eq!(seen(&first).len(), 2, "the other items are still listed");
    assert_eq!(first.failures.len(), 1, "{:?}", first.failures);
    let failure = &first.failures[0];
    assert_eq!(failure.item, "calendar/huge.ics");
    assert_eq!(failure.kind, ledgersync_domain::ErrorKind::TooLarge);
    assert!(
        failure.error.contains("209715200 bytes")
            && failure.error.contains("max_item_bytes")
            && failure.error.contains("huge.ics"),
        "{failure}"
    );

    // A configured limit; a known item that outgrows it is a failure, never gone.
    let mut config = f.connector.config().clone();
    config.max_item_bytes = 2048;
    f.connector = ledgersync_connectors::VdirConnector::new(config);
    let mut big = event_ics("b", "grows");
    big = big.replace("SUMMARY:grows", &format!("SUMMARY:{}", "x".repeat(4000)));
    fs::write(f.calendar.join("b.ics"), big).unwrap();
    let second = f.list(&first.cursor);
    assert!(gone(&second).is_empty());
    assert!(seen(&second).is_empty());
    let failed: Vec<(&str, &str)> = second
        .failures
        .iter()
        .map(|x| (x.item.as_str(), x.kind.as_code()))
        .collect();
    assert_eq!(
        failed,
        vec![
            ("calendar/b.ics", "too_large"),
            ("calendar/huge.ics", "too_large")
        ]
    );
}
