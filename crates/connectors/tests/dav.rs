//! The CalDAV/CardDAV backend against a real Radicale (`support/dav.rs`): discovery, the
//! sync-token fallback, edits by other clients, what an update keeps, tasks, vCards, and a
//! collection listed in multiget batches.

mod support;

use calcard::icalendar::{ICalendar, ICalendarComponentType};
use ledgersync_connectors::{
    Connector, Cursor, DavConfig, DavConnector, Listing, ListingEnd, Observation, Outcome,
};
use ledgersync_domain::event::{
    Basis, CancelIntent, CreateIntent, DeleteIntent, Event, ItemWrite, RemoteFields, Side,
    UpdateIntent,
};
use ledgersync_domain::records::{Record, ShowAs};
use ledgersync_domain::{EventId, RemoteId};
use support::dav::{PASSWORD, Server, USER};
use support::*;

fn write(title: &str) -> ItemWrite {
    ItemWrite {
        title: title.into(),
        version: 1,
        show_as: Some(ShowAs::Busy),
        reminder: true,
        notify_attendees: false,
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

fn update(record: &Record, remote: &str, key: &str, item: ItemWrite) -> Event {
    Event::UpdateIntent(UpdateIntent {
        basis: Basis::default(),
        record: record.id.clone(),
        remote: Some(RemoteId::new(remote)),
        target: Side::MailServer,
        item,
        key: key.into(),
    })
}

fn run(c: &mut DavConnector, id: u128, event: &Event, record: Option<&Record>) -> Outcome {
    c.execute(intent(EventId::from_u128(id), event, record))
}

fn ok(outcome: &Outcome) -> (String, Option<String>) {
    match outcome {
        Outcome::Succeeded(s) => (
            s.remote.as_ref().expect("a server id").0.clone(),
            s.etag.clone(),
        ),
        other => panic!("expected intent_succeeded, got {other:?}"),
    }
}

fn complete(l: &Listing) {
    assert_eq!(terminal(l), "listing_completed", "{:?}", l.observations);
    assert!(l.failures.is_empty(), "{:?}", l.failures);
}

/// Every property of a calendar object, read by calcard: (component, property, values).
fn props(text: &str) -> Vec<(ICalendarComponentType, String, String)> {
    let cal = ICalendar::parse(text).unwrap_or_else(|e| panic!("not iCalendar ({e:?}): {text}"));
    cal.components
        .iter()
        .flat_map(|c| {
            c.entries.iter().map(move |e| {
                (
                    c.component_type.clone(),
                    e.name.as_str().to_uppercase(),
                    format!("{:?} {:?}", e.params, e.values),
                )
            })
        })
        .collect()
}

fn count(text: &str, kind: ICalendarComponentType) -> usize {
    ICalendar::parse(text)
        .unwrap()
        .components
        .iter()
        .filter(|c| c.component_type == kind)
        .count()
}

fn has(text: &str, kind: ICalendarComponentType, name: &str, value: &str) -> bool {
    props(text)
        .iter()
        .any(|(k, n, v)| *k == kind && n == name && v.contains(value))
}

#[test]
fn discovery_from_the_bare_server_url_finds_collections_by_display_name() {
    let s = Server::new("discovery");
    s.put(
        &format!("{}x.ics", s.calendar),
        &event_ics("disc-1", "Named"),
    );
    // Only the server URL and the collections' display names: the rest is discovered.
    let mut config = DavConfig::new("paul@serenity.example", s.base.as_str(), USER, PASSWORD);
    config.calendar = Some(s.display_name(&s.calendar));
    config.address_book = Some(s.display_name(&s.contacts));
    let path = s.calendar.clone();
    let mut c = DavConnector::new(config.clone());
    let l = c.list_changes(&Cursor::initial());
    complete(&l);
    let items = seen(&l);
    assert!(
        items
            .iter()
            .any(|i| i.remote.0 == format!("{path}x.ics")
                && matches!(&i.fields, RemoteFields::Appointment { subject, .. } if subject == "Named")),
        "{items:?}"
    );

    // A collection that is not there: a failed listing naming what was looked for and where.
    config.calendar = Some("No such calendar".into());
    let l = DavConnector::new(config).list_changes(&Cursor::initial());
    match &l.end {
        ListingEnd::Failed(f) => {
            assert_eq!(f.error.code, "not_found", "{}", f.error.message);
            assert!(
                f.error.message.contains("No such calendar"),
                "{}",
                f.error.message
            );
            assert!(
                f.error.message.contains(s.base.as_str()),
                "{}",
                f.error.message
            );
        }
        other => panic!("expected listing_failed, got {other:?}"),
    }
    assert!(l.cursor.is_initial());
}

#[test]
fn wrong_password_is_an_auth_failure_that_never_shows_the_password() {
    let s = Server::new("auth");
    let mut config = s.config();
    config.password = "not-the-password-42".into();
    let l = DavConnector::new(config).list_changes(&Cursor::initial());
    match &l.end {
        ListingEnd::Failed(f) => {
            assert_eq!(f.error.code, "auth", "{}", f.error.message);
            assert!(!f.error.message.contains("not-the-password-42"));
        }
        other => panic!("expected listing_failed, got {other:?}"),
    }
}

#[test]
fn a_refused_sync_token_falls_back_to_an_etag_listing_reporting_only_real_changes() {
    let s = Server::new("token");
    for n in 0..4 {
        s.put(
            &format!("{}e{n}.ics", s.calendar),
            &event_ics(&format!("tok-{n}"), &format!("Event {n}")),
        );
    }
    let mut c = s.connector();
    let first = c.list_changes(&Cursor::initial());
    complete(&first);
    assert_eq!(seen(&first).len(), 4);

    // Another client edits one item and adds one; the stored token is damaged.
    let edited = format!("{}e1.ics", s.calendar);
    let etag = s.put(&edited, &event_ics("tok-1", "Event 1 (moved)"));
    s.put(
        &format!("{}e9.ics", s.calendar),
        &event_ics("tok-9", "Event 9"),
    );
    let mut corrupted = String::new();
    for line in first.cursor.as_str().lines() {
        match line.strip_prefix("C\t") {
            Some(rest) => {
                let (href, _) = rest.split_once('\t').unwrap();
                corrupted.push_str(&format!("C\t{href}\thttp://radicale.org/ns/sync/bogus\n"));
            }
            None => corrupted.push_str(&format!("{line}\n")),
        }
    }
    let l = c.list_changes(&Cursor::from_text(corrupted));
    complete(&l);
    assert!(gone(&l).is_empty(), "a refused token is never a delete");
    let mut changed: Vec<(String, String)> = seen(&l)
        .iter()
        .map(|i| (i.remote.0.clone(), i.etag.clone()))
        .collect();
    changed.sort();
    assert_eq!(changed.len(), 2, "only the real changes: {changed:?}");
    assert!(changed.contains(&(edited.clone(), etag)));
    assert!(changed.iter().any(|(r, _)| r.ends_with("e9.ics")));
    let reset = l
        .observations
        .iter()
        .find_map(|e| match e {
            Observation::CursorReset(r) => Some(r.reason.clone()),
            _ => None,
        })
        .expect("the fallback's reason is recorded");
    assert!(
        reset.contains("403") && reset.contains(&s.calendar),
        "{reset}"
    );

    // The fallback stored a good token again: the next listing is a quiet delta.
    let quiet = c.list_changes(&l.cursor);
    complete(&quiet);
    assert!(seen(&quiet).is_empty() && gone(&quiet).is_empty());
    assert!(
        !quiet
            .observations
            .iter()
            .any(|e| matches!(e, Observation::CursorReset(_)))
    );
}

#[test]
fn an_item_edited_by_a_plain_http_client_is_reported_with_its_new_etag() {
    let s = Server::new("curl");
    let path = format!("{}meeting.ics", s.calendar);
    let first_etag = s.put(&path, &event_ics("curl-1", "Before"));
    let mut c = s.connector();
    let first = c.list_changes(&Cursor::initial());
    complete(&first);
    assert_eq!(seen(&first)[0].etag, first_etag);

    let new_etag = s.put(&path, &event_ics("curl-1", "After"));
    assert_ne!(new_etag, first_etag);
    let l = c.list_changes(&first.cursor);
    complete(&l);
    let items = seen(&l);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].remote.0, path);
    assert_eq!(items[0].etag, new_etag);
    assert!(
        matches!(&items[0].fields, RemoteFields::Appointment { subject, .. } if subject == "After")
    );

    // Deleted by that client: gone, once.
    s.delete(&path);
    s.put(
        &format!("{}other.ics", s.calendar),
        &event_ics("curl-2", "Other"),
    );
    let l2 = c.list_changes(&l.cursor);
    // A complete listing reports the delete, listed first for the domain's delete breaker
    // (R25), which weighs it against the mailbox's linked items.
    assert_eq!(terminal(&l2), "listing_completed", "{:?}", l2.observations);
    assert_eq!(gone(&l2), vec![path.clone()]);
    assert!(
        l2.observations.iter().any(|o| matches!(
            o,
            Observation::DeletionsListed(d) if d.remotes.len() == 1
        )),
        "{:?}",
        l2.observations
    );
}

#[test]
fn an_update_keeps_the_users_alarm_attendees_and_x_properties() {
    let s = Server::new("keep");
    let path = format!("{}user.ics", s.calendar);
    let original = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Thunderbird//EN\r\nBEGIN:VEVENT\r\n\
        UID:keep-1\r\nDTSTAMP:20261120T100000Z\r\nDTSTART:20261124T140000Z\r\n\
        DTEND:20261124T150000Z\r\nSUMMARY:Review\r\nORGANIZER:mailto:paul@serenity.example\r\n\
        ATTENDEE;CN=River Tam;PARTSTAT=ACCEPTED:mailto:river@serenity.example\r\n\
        X-MOZ-GENERATION:3\r\nCATEGORIES:Tracked to CRM\r\n\
        BEGIN:VALARM\r\nACTION:AUDIO\r\nTRIGGER:-PT1H\r\nEND:VALARM\r\n\
        END:VEVENT\r\nEND:VCALENDAR\r\n";
    s.put(&path, original);
    let mut c = s.connector();
    complete(&c.list_changes(&Cursor::initial()));

    let rec = appointment_record("apt-review", "Review");
    let (_, etag) = ok(&run(
        &mut c,
        1,
        &update(&rec, &path, "k/u/1", write("Review (moved)")),
        None,
    ));
    let (server_etag, text) = s.get(&path).unwrap();
    assert_eq!(etag, Some(server_etag));
    use ICalendarComponentType::{VAlarm, VEvent};
    assert!(has(&text, VEvent, "SUMMARY", "Review (moved)"), "{text}");
    assert!(
        has(&text, VEvent, "ATTENDEE", "river@serenity.example"),
        "{text}"
    );
    assert!(has(&text, VEvent, "X-MOZ-GENERATION", "3"), "{text}");
    assert!(has(&text, VEvent, "CATEGORIES", "Tracked to CRM"), "{text}");
    assert_eq!(
        count(&text, VAlarm),
        1,
        "the user's alarm, not a second one: {text}"
    );
    assert!(has(&text, VAlarm, "ACTION", "Audio"), "{text}");
}

#[test]
fn a_created_appointment_carries_transp_and_its_reminder_and_an_update_to_free_drops_it() {
    let s = Server::new("transp");
    let mut c = s.connector();
    let rec = appointment_record("apt-transp", "Dinner");
    let (remote, _) = ok(&run(
        &mut c,
        1,
        &create(&rec, "k/c/transp", write("Dinner")),
        Some(&rec),
    ));
    let (_, text) = s.get(&remote).unwrap();
    use ICalendarComponentType::{VAlarm, VEvent};
    assert!(has(&text, VEvent, "TRANSP", "Opaque"), "{text}");
    assert_eq!(count(&text, VAlarm), 1, "R31: a reminder: {text}");

    let mut free = write("Dinner");
    free.show_as = Some(ShowAs::Free);
    free.reminder = false;
    ok(&run(
        &mut c,
        2,
        &update(&rec, &remote, "k/u/transp", free),
        Some(&rec),
    ));
    let (_, text) = s.get(&remote).unwrap();
    assert!(has(&text, VEvent, "TRANSP", "Transparent"), "{text}");
    assert_eq!(
        count(&text, VAlarm),
        0,
        "R30–R31: no reminder when free: {text}"
    );
    let l = c.list_changes(&Cursor::initial());
    complete(&l);
    assert!(matches!(
        &seen(&l)[0].fields,
        RemoteFields::Appointment {
            show_as: ShowAs::Free,
            ..
        }
    ));
}

#[test]
fn a_recurring_event_keeps_its_overridden_instance_after_an_update() {
    let s = Server::new("rrule");
    let path = format!("{}series.ics", s.calendar);
    let series = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
        BEGIN:VEVENT\r\nUID:series-1\r\nDTSTAMP:20261120T100000Z\r\n\
        DTSTART:20261124T140000Z\r\nDTEND:20261124T150000Z\r\nRRULE:FREQ=WEEKLY;COUNT=5\r\n\
        SUMMARY:Standup\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:series-1\r\nDTSTAMP:20261120T100000Z\r\n\
        RECURRENCE-ID:20261201T140000Z\r\nDTSTART:20261201T160000Z\r\nDTEND:20261201T170000Z\r\n\
        SUMMARY:Standup (moved this week)\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    s.put(&path, series);
    let mut c = s.connector();
    let l = c.list_changes(&Cursor::initial());
    complete(&l);
    assert!(
        matches!(&seen(&l)[0].fields, RemoteFields::Appointment { subject, .. } if subject == "Standup")
    );
    let rec = appointment_record("apt-standup", "Standup");
    let mut w = write("Daily standup");
    w.reminder = false;
    ok(&run(&mut c, 1, &update(&rec, &path, "k/u/rr", w), None));
    let (_, text) = s.get(&path).unwrap();
    use ICalendarComponentType::VEvent;
    assert_eq!(count(&text, VEvent), 2, "{text}");
    assert!(has(&text, VEvent, "SUMMARY", "Daily standup"), "{text}");
    assert!(
        has(&text, VEvent, "SUMMARY", "Standup (moved this week)"),
        "{text}"
    );
    assert!(has(&text, VEvent, "RECURRENCE-ID", "2026"), "{text}");
    assert!(has(&text, VEvent, "RRULE", "Weekly"), "{text}");
}

#[test]
fn a_task_is_written_as_vtodo_listed_and_completed() {
    let s = Server::new("vtodo");
    let mut c = s.connector();
    let rec = task_record("task-call-back", "Call back Badger");
    let mut w = write("Call back Badger");
    w.show_as = None;
    let (remote, etag) = ok(&run(&mut c, 1, &create(&rec, "k/c/task", w), Some(&rec)));
    assert!(remote.starts_with(&s.calendar) && remote.ends_with(".ics"));
    let (_, text) = s.get(&remote).unwrap();
    assert_eq!(count(&text, ICalendarComponentType::VTodo), 1, "{text}");
    let l = c.list_changes(&Cursor::initial());
    complete(&l);
    assert_eq!(Some(seen(&l)[0].etag.clone()), etag);
    assert!(matches!(&seen(&l)[0].fields,
        RemoteFields::Task { subject, percent_complete: 0, due: Some(_) } if subject == "Call back Badger"));

    let mut done = write("Call back Badger");
    done.show_as = None;
    done.completed = true;
    ok(&run(
        &mut c,
        2,
        &update(&rec, &remote, "k/u/task", done),
        Some(&rec),
    ));
    let l2 = c.list_changes(&l.cursor);
    complete(&l2);
    assert!(matches!(
        &seen(&l2)[0].fields,
        RemoteFields::Task {
            percent_complete: 100,
            ..
        }
    ));
}

#[test]
fn a_vcard_round_trips_and_an_update_keeps_the_users_lines() {
    let s = Server::new("vcard");
    let mut c = s.connector();
    let rec = contact_record("contact-kaylee", "Kaylee Frye", "kaylee@serenity.example");
    let mut w = write("Kaylee Frye");
    w.show_as = None;
    let (remote, etag) = ok(&run(&mut c, 1, &create(&rec, "k/c/card", w), Some(&rec)));
    assert!(
        remote.starts_with(&s.contacts) && remote.ends_with(".vcf"),
        "{remote}"
    );
    let l = c.list_changes(&Cursor::initial());
    complete(&l);
    let items = seen(&l);
    assert_eq!(items.len(), 1);
    assert_eq!(Some(items[0].etag.clone()), etag);
    assert_eq!(
        items[0].fields,
        RemoteFields::Contact {
            full_name: "Kaylee Frye".into(),
            email: "kaylee@serenity.example".into()
        }
    );

    // The user adds a note in their address book; the CRM renames the contact.
    let (_, text) = s.get(&remote).unwrap();
    let with_note = text.replace("END:VCARD", "NOTE:Engine room\r\nEND:VCARD");
    s.put(&remote, &with_note);
    let mut renamed = write("Kaylee Frye-Tam");
    renamed.show_as = None;
    let (_, etag) = ok(&run(
        &mut c,
        2,
        &update(&rec, &remote, "k/u/card", renamed),
        None,
    ));
    let (server_etag, text) = s.get(&remote).unwrap();
    assert_eq!(etag, Some(server_etag));
    assert!(text.contains("FN:Kaylee Frye-Tam"), "{text}");
    assert!(text.contains("NOTE:Engine room"), "{text}");
    let l2 = c.list_changes(&l.cursor);
    complete(&l2);
    assert!(matches!(&seen(&l2)[0].fields,
        RemoteFields::Contact { full_name, .. } if full_name == "Kaylee Frye-Tam"));
}

#[test]
fn a_200_item_collection_lists_in_multiget_batches() {
    let s = Server::new("bulk");
    for n in 0..200 {
        s.put(
            &format!("{}bulk-{n:03}.ics", s.calendar),
            &event_ics(&format!("bulk-{n}"), &format!("Bulk {n:03}")),
        );
    }
    let mut config = s.config();
    config.multiget_batch = 7;
    let mut c = DavConnector::new(config);
    let l = c.list_changes(&Cursor::initial());
    complete(&l);
    let mut subjects: Vec<String> = seen(&l)
        .iter()
        .map(|i| match &i.fields {
            RemoteFields::Appointment { subject, .. } => subject.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 200);
    let quiet = c.list_changes(&l.cursor);
    complete(&quiet);
    assert!(seen(&quiet).is_empty());
}

#[test]
fn an_oversized_item_is_a_too_large_failure_never_read_never_gone() {
    let s = Server::new("bad");
    let good = format!("{}good.ics", s.calendar);
    let big = format!("{}big.ics", s.calendar);
    s.put(&good, &event_ics("bad-1", "Good"));
    s.put(&big, &event_ics("bad-2", &"x".repeat(3000)));
    let mut config = s.config();
    config.max_item_bytes = 2000;
    let mut c = DavConnector::new(config);
    let l = c.list_changes(&Cursor::initial());
    assert_eq!(terminal(&l), "listing_completed");
    assert_eq!(seen(&l).len(), 1);
    assert_eq!(l.failures.len(), 1, "{:?}", l.failures);
    assert_eq!(l.failures[0].item, big);
    assert_eq!(l.failures[0].kind.as_code(), "too_large");

    // Reported again on every listing, and never gone.
    let l2 = c.list_changes(&l.cursor);
    assert_eq!(terminal(&l2), "listing_completed");
    assert_eq!(l2.failures.len(), 1, "{:?}", l2.failures);
    assert!(gone(&l2).is_empty() && seen(&l2).is_empty());
    assert!(
        l2.failures[0].error.contains("still"),
        "{}",
        l2.failures[0].error
    );

    // Shrunk by the user: read and reported at last.
    s.put(&big, &event_ics("bad-2", "Small now"));
    let l3 = c.list_changes(&l2.cursor);
    complete(&l3);
    assert_eq!(seen(&l3).len(), 1);
    assert_eq!(seen(&l3)[0].remote.0, big);
}

#[test]
fn one_missing_collection_makes_the_listing_partial_and_keeps_its_items_known() {
    let s = Server::new("partial");
    s.put(
        &format!("{}a.ics", s.calendar),
        &event_ics("part-1", "Alpha"),
    );
    s.put(
        &format!("{}k.vcf", s.contacts),
        &card_vcf("part-2", "Kaylee"),
    );
    let mut c = s.connector();
    let first = c.list_changes(&Cursor::initial());
    complete(&first);
    assert_eq!(seen(&first).len(), 2);

    // The address book is removed on the server: the listing is partial, nothing is gone,
    // and the card stays known for the listing that finds the book again.
    let r = s
        .client
        .delete(s.url(&s.contacts))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    s.put(
        &format!("{}b.ics", s.calendar),
        &event_ics("part-3", "Bravo"),
    );
    let l = c.list_changes(&first.cursor);
    assert_eq!(terminal(&l), "listing_partial", "{:?}", l.observations);
    assert!(gone(&l).is_empty());
    assert_eq!(seen(&l).len(), 1, "the calendar was read");
    match &l.end {
        ListingEnd::Partial(p) => assert!(p.reason.contains("404"), "{}", p.reason),
        _ => unreachable!(),
    }
    assert!(l.cursor.as_str().contains("k.vcf"), "{}", l.cursor);
}

#[test]
fn invitations_and_a_cancellation_after_the_delete_reach_the_attendees_maildirs() {
    let s = Server::new("imip");
    let maildirs = tempfile::tempdir().unwrap();
    let mut config = s.config();
    config.maildirs = Some(maildirs.path().to_path_buf());
    let mut c = DavConnector::new(config);
    let rec = appointment_record("apt-imip", "Quarterly review");
    let mut w = write("Quarterly review");
    w.notify_attendees = true;
    let (remote, _) = ok(&run(&mut c, 1, &create(&rec, "k/c/imip", w), Some(&rec)));
    let messages = |who: &str| -> Vec<String> {
        let dir = maildirs.path().join(who).join("new");
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| std::fs::read_to_string(e.path()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    };
    for who in ["jayne@serenity.example", "kaylee@serenity.example"] {
        let got = messages(who);
        assert_eq!(got.len(), 1, "{who}");
        assert!(got[0].contains("METHOD:REQUEST") && got[0].contains("UID:apt-imip@ledgersync"));
    }
    assert!(
        messages("paul@serenity.example").is_empty(),
        "not to the organizer"
    );

    let delete = Event::DeleteIntent(DeleteIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: Some(RemoteId::new(&remote)),
        target: Side::MailServer,
        key: "k/d/imip".into(),
    });
    ok(&run(&mut c, 2, &delete, Some(&rec)));
    assert!(s.get(&remote).is_none());
    let cancel = Event::CancelIntent(CancelIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: Some(RemoteId::new(&remote)),
        attendees: vec!["jayne@serenity.example".into()],
        version: 1,
        key: "k/x/imip".into(),
    });
    ok(&run(&mut c, 3, &cancel, Some(&rec)));
    let got = messages("jayne@serenity.example");
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .any(|m| m.contains("METHOD:CANCEL") && m.contains("UID:apt-imip@ledgersync")),
        "{got:?}"
    );
}

#[test]
fn a_server_that_does_not_answer_is_a_timeout_and_the_cursor_stays() {
    // A socket that accepts and never answers (a hung server), not a DAV server.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let url = format!("http://127.0.0.1:{port}/");
    let mut config = DavConfig::new("paul@serenity.example", &url, USER, PASSWORD);
    config.calendar = Some("/alice/work/".into());
    config.address_book = Some("/alice/contacts/".into());
    config.timeout = std::time::Duration::from_millis(500);
    let cursor =
        Cursor::from_text("dav 1\nC\t/alice/work/\ttoken-1\nI\t/alice/work/a.ics\t\"1\"\n");
    let l = DavConnector::new(config).list_changes(&cursor);
    match &l.end {
        ListingEnd::Failed(f) => assert_eq!(f.error.code, "timeout", "{}", f.error.message),
        other => panic!("expected listing_failed, got {other:?}"),
    }
    assert!(gone(&l).is_empty());
    assert_eq!(l.cursor, cursor);
}
