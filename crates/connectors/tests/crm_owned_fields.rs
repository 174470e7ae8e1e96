//! An update carries every field the CRM owns to the mail side (R18, R26) — into the
//! organizer's copy, an attendee's copy and the "Updated:" REQUEST — and keeps what the CRM does
//! not own; one SEQUENCE per meeting (R26, R29); times read and written in the owner's zone.

mod support;

use ledgersync_connectors::{Connector, Outcome, VdirConnector, time_zone};
use ledgersync_domain::event::{
    Basis, CancelIntent, CreateIntent, Event, ItemWrite, RemoteFields, Side, UpdateIntent,
};
use ledgersync_domain::records::{Party, Record, RecordBody, ShowAs};
use ledgersync_domain::time::timestamp_from_civil;
use ledgersync_domain::{EventId, RemoteId, UserId};
use std::fs;
use std::path::Path;
use support::*;

fn party(user: Option<&str>, email: &str, name: &str) -> Party {
    Party {
        user: user.map(UserId::new),
        email: email.into(),
        name: name.into(),
    }
}

fn item(rec: &Record, notify: bool) -> ItemWrite {
    ItemWrite {
        title: rec.title().into(),
        version: rec.version,
        show_as: Some(ShowAs::Busy),
        reminder: true,
        notify_attendees: notify,
        attendees: 2,
        completed: false,
        actual_start: None,
    }
}

fn exec(c: &mut VdirConnector, id: u128, event: &Event, rec: &Record) -> Option<RemoteId> {
    match c.execute(intent(EventId::from_u128(id), event, Some(rec))) {
        Outcome::Succeeded(s) => s.remote,
        other => panic!("expected intent_succeeded, got {other:?}"),
    }
}

fn create(c: &mut VdirConnector, rec: &Record, mailbox: &str, notify: bool) -> RemoteId {
    let event = Event::CreateIntent(CreateIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: None,
        target: Side::MailServer,
        item: item(rec, notify),
        key: format!("{mailbox}/{}/create/v{}", rec.id, rec.version),
    });
    exec(c, 1, &event, rec).expect("a server id")
}

fn update(c: &mut VdirConnector, rec: &Record, remote: &RemoteId, mailbox: &str, notify: bool) {
    let event = Event::UpdateIntent(UpdateIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: Some(remote.clone()),
        target: Side::MailServer,
        item: item(rec, notify),
        key: format!("{mailbox}/{}/update/v{}", rec.id, rec.version),
    });
    exec(c, 2, &event, rec);
}

fn file(dir: &Path, remote: &RemoteId) -> String {
    let name = remote.as_str().split_once('/').unwrap().1;
    fs::read_to_string(dir.join(name)).unwrap()
}

/// The unfolded lines of a text.
fn lines(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let raw = raw.trim_end_matches('\r');
        if let Some(rest) = raw.strip_prefix(' ') {
            out.last_mut().unwrap().push_str(rest);
        } else if !raw.is_empty() {
            out.push(raw.to_string());
        }
    }
    out
}

fn has(text: &str, want: &str) -> bool {
    lines(text).iter().any(|l| l == want)
}

/// The calendar parts of the iMIP messages of `method` in `attendee`'s Maildir `new/`.
fn imip(maildirs: &Path, attendee: &str, method: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(maildirs.join(attendee).join("new")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .filter(|m| m.contains(&format!("METHOD:{method}")))
        .map(|m| {
            let start = m.find("BEGIN:VCALENDAR").unwrap();
            let end = m.find("END:VCALENDAR").unwrap() + "END:VCALENDAR".len();
            m[start..end].to_string()
        })
        .collect();
    out.sort();
    out
}

fn sequence(text: &str) -> u64 {
    lines(text)
        .iter()
        .find_map(|l| l.strip_prefix("SEQUENCE:"))
        .expect("a SEQUENCE")
        .parse()
        .unwrap()
}

fn appointment(rec: &mut Record) -> &mut ledgersync_domain::records::Appointment {
    match &mut rec.body {
        RecordBody::Appointment(a) => a,
        _ => unreachable!(),
    }
}

/// A connector for `owner` on the fixture's calendar and Maildirs.
fn as_owner(f: &Fixture, owner: &str) -> VdirConnector {
    let mut config = f.connector.config().clone();
    config.owner = owner.into();
    VdirConnector::new(config)
}

#[test]
fn r18_r26_a_change_of_time_location_and_attendees_reaches_both_copies_and_the_request() {
    let organizer = Fixture::new(); // Paul's calendar
    let attendee = Fixture::new(); // Jayne's calendar
    let mut paul = as_owner(&organizer, "paul@serenity.example");
    let mut jayne = as_owner(&attendee, "jayne@serenity.example");
    let mut rec = appointment_record("apt-review", "Quarterly review");
    let paul_item = create(&mut paul, &rec, "mbx-paul", true);
    let jayne_item = create(&mut jayne, &rec, "mbx-jayne", false);

    rec.version = 2;
    let a = appointment(&mut rec);
    a.start = timestamp_from_civil(2026, 11, 25, 9, 0);
    a.end = timestamp_from_civil(2026, 11, 25, 10, 30);
    a.location = "Persephone, docks".into();
    a.optional = vec![party(None, "zoe@customer.example", "Zoe Washburne")];
    update(&mut paul, &rec, &paul_item, "mbx-paul", true);
    update(&mut jayne, &rec, &jayne_item, "mbx-jayne", false);

    let organizer_copy = file(&organizer.calendar, &paul_item);
    let attendee_copy = file(&attendee.calendar, &jayne_item);
    let requests = imip(&organizer.maildirs, "zoe@customer.example", "REQUEST");
    assert_eq!(requests.len(), 1, "zoe is invited by the update");
    for text in [&organizer_copy, &attendee_copy, &requests[0]] {
        for line in [
            "DTSTART:20261125T090000Z",
            "DTEND:20261125T103000Z",
            "LOCATION:Persephone\\, docks",
            "ORGANIZER;CN=Paul Ortiz:mailto:paul@serenity.example",
            "ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=Jayne Cobb:mailto:jayne@serenity.example",
            "ATTENDEE;ROLE=OPT-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=Zoe Washburne:mailto:zoe@customer.example",
            "STATUS:CONFIRMED",
            "PRIORITY:5",
        ] {
            assert!(has(text, line), "{line} missing in\n{text}");
        }
        assert!(
            !text.contains("kaylee@"),
            "Kaylee left the meeting:\n{text}"
        );
        assert!(!text.contains("20261124T140000Z"), "the old start:\n{text}");
    }
    // One SEQUENCE per meeting: 2 · 2 + 1 for the organizer's copy and request, 2 · 2 for the
    // attendee's copy.
    assert_eq!(sequence(&organizer_copy), 5);
    assert_eq!(sequence(&requests[0]), 5);
    assert_eq!(sequence(&attendee_copy), 4);
    // The REQUEST is the organizer's master as written.
    let jayne_updates = imip(&organizer.maildirs, "jayne@serenity.example", "REQUEST");
    assert_eq!(jayne_updates.len(), 2, "the invitation, then the update");
    assert!(jayne_updates.iter().any(|r| sequence(r) == 3));
    assert!(jayne_updates.iter().any(|r| sequence(r) == 5));
    // And the copies list back with the new times.
    let listing = as_owner(&attendee, "jayne@serenity.example")
        .list_changes(&ledgersync_connectors::Cursor::initial());
    match &seen(&listing)[0].fields {
        RemoteFields::Appointment { start, end, .. } => assert_eq!(
            (*start, *end),
            (
                timestamp_from_civil(2026, 11, 25, 9, 0),
                timestamp_from_civil(2026, 11, 25, 10, 30)
            )
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn r18_an_update_keeps_x_properties_the_users_alarm_rrule_and_an_override_placed_first() {
    let mut f = Fixture::new();
    let path = f.calendar.join("series.ics");
    let original = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//khal//EN\r\n\
        BEGIN:VEVENT\r\nUID:series-1\r\nRECURRENCE-ID:20261201T140000Z\r\n\
        DTSTAMP:20261120T100000Z\r\nDTSTART:20261201T160000Z\r\nDTEND:20261201T170000Z\r\n\
        SUMMARY:Moved once\r\nLOCATION:Galley\r\nSEQUENCE:0\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:series-1\r\nDTSTAMP:20261120T100000Z\r\n\
        DTSTART:20261124T140000Z\r\nDTEND:20261124T150000Z\r\nSUMMARY:Weekly numbers\r\n\
        LOCATION:Galley\r\nRRULE:FREQ=WEEKLY;COUNT=10\r\nEXDATE:20261208T140000Z\r\n\
        X-KHAL-NOTE:keep me\r\nX-UNKNOWN-THING;X-PARAM=1:also kept\r\n\
        CATEGORIES:Work\r\nORGANIZER:mailto:paul@serenity.example\r\n\
        BEGIN:VALARM\r\nACTION:AUDIO\r\nTRIGGER:-PT1H\r\nEND:VALARM\r\n\
        END:VEVENT\r\nEND:VCALENDAR\r\n";
    write_aged(&path, original, 60);
    let mut rec = appointment_record("apt-numbers", "Weekly numbers, revised");
    rec.version = 4;
    appointment(&mut rec).location = "Bridge".into();
    let remote = RemoteId::new("calendar/series.ics");
    update(&mut f.connector, &rec, &remote, "mbx-paul", false);

    let text = fs::read_to_string(&path).unwrap();
    let l = lines(&text);
    // The override, first in the file, is untouched, byte for byte.
    let override_block: Vec<&str> = original.split("\r\n").skip(3).take(10).collect::<Vec<_>>();
    assert_eq!(&l[3..13], override_block.as_slice(), "{text}");
    // The master got the CRM's fields...
    let master = l[13..].to_vec();
    for line in [
        "SUMMARY:Weekly numbers\\, revised",
        "LOCATION:Bridge",
        "DTSTART:20261124T140000Z",
        "SEQUENCE:9",
    ] {
        assert!(
            master.iter().any(|x| x == line),
            "{line} missing in\n{text}"
        );
    }
    assert!(!master.iter().any(|x| x == "LOCATION:Galley"), "{text}");
    assert!(
        !master.iter().any(|x| x == "DTSTAMP:20261120T100000Z"),
        "{text}"
    );
    // ...and kept everything the CRM does not own.
    for line in [
        "RRULE:FREQ=WEEKLY;COUNT=10",
        "EXDATE:20261208T140000Z",
        "X-KHAL-NOTE:keep me",
        "X-UNKNOWN-THING;X-PARAM=1:also kept",
        "CATEGORIES:Work",
        "ACTION:AUDIO",
        "TRIGGER:-PT1H",
    ] {
        assert!(
            master.iter().any(|x| x == line),
            "{line} missing in\n{text}"
        );
    }
    assert_eq!(text.matches("BEGIN:VALARM").count(), 1, "{text}");
    assert_eq!(text.matches("BEGIN:VEVENT").count(), 2, "{text}");

    // R31: no reminder (past or free) removes every alarm, the user's too.
    let mut free = item(&rec, false);
    free.reminder = false;
    free.show_as = Some(ShowAs::Free);
    let event = Event::UpdateIntent(UpdateIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: Some(remote),
        target: Side::MailServer,
        item: free,
        key: "mbx-paul/apt-numbers/update/v5".into(),
    });
    exec(&mut f.connector, 3, &event, &rec);
    let text = fs::read_to_string(&path).unwrap();
    assert!(!text.contains("BEGIN:VALARM"), "{text}");
    assert!(has(&text, "TRANSP:TRANSPARENT"), "{text}");
    assert!(has(&text, "X-KHAL-NOTE:keep me"), "{text}");
}

#[test]
fn an_all_day_row_is_written_on_its_local_date() {
    // `2026-12-23T00:00+01:00` to `2026-12-24T00:00+01:00`, as the CRM sends an all-day row
    // from Berlin: 22 December 23:00 UTC.
    let mut rec = appointment_record("apt-party", "Christmas party");
    let a = appointment(&mut rec);
    a.all_day = true;
    a.start = timestamp_from_civil(2026, 12, 22, 23, 0);
    a.end = timestamp_from_civil(2026, 12, 23, 23, 0);
    for zone in [None, Some("Europe/Berlin")] {
        let mut f = Fixture::new();
        let mut config = f.connector.config().clone();
        config.timezone = zone.map(|z| time_zone(z).unwrap());
        f.connector = VdirConnector::new(config);
        let remote = create(&mut f.connector, &rec, "mbx-paul", false);
        let text = file(&f.calendar, &remote);
        assert!(
            has(&text, "DTSTART;VALUE=DATE:20261223"),
            "{zone:?}:\n{text}"
        );
        assert!(has(&text, "DTEND;VALUE=DATE:20261224"), "{zone:?}:\n{text}");
        // An update writes the same dates.
        let mut v2 = rec.clone();
        v2.version = 2;
        update(&mut f.connector, &v2, &remote, "mbx-paul", false);
        let text = file(&f.calendar, &remote);
        assert!(
            has(&text, "DTSTART;VALUE=DATE:20261223"),
            "{zone:?}:\n{text}"
        );
        assert!(!text.contains("20261222"), "{zone:?}:\n{text}");
    }
    // In Berlin the date lists back as the instant the CRM sent.
    let mut f = Fixture::new();
    let mut config = f.connector.config().clone();
    config.timezone = Some(time_zone("Europe/Berlin").unwrap());
    f.connector = VdirConnector::new(config);
    create(&mut f.connector, &rec, "mbx-paul", false);
    match &seen(&f.list(&ledgersync_connectors::Cursor::initial()))[0].fields {
        RemoteFields::Appointment { start, end, .. } => assert_eq!(
            (*start, *end),
            (
                timestamp_from_civil(2026, 12, 22, 23, 0),
                timestamp_from_civil(2026, 12, 23, 23, 0)
            )
        ),
        other => panic!("{other:?}"),
    }
}

fn start_of(f: &mut Fixture, ics: &str) -> ledgersync_domain::Timestamp {
    fs::write(f.calendar.join("e.ics"), ics).unwrap();
    let listing = f.list(&ledgersync_connectors::Cursor::initial());
    match &seen(&listing)[0].fields {
        RemoteFields::Appointment { start, .. } => *start,
        other => panic!("{other:?}: {listing:?}"),
    }
}

#[test]
fn a_vtimezone_the_zone_database_does_not_know_is_read_by_its_offsets() {
    let mut f = Fixture::new();
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Microsoft Corporation//Outlook//EN\r\n\
        BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time (custom)\r\n\
        BEGIN:STANDARD\r\nDTSTART:16011028T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n\
        RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\n\
        BEGIN:DAYLIGHT\r\nDTSTART:16010325T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n\
        RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n\
        BEGIN:VEVENT\r\nUID:o-1\r\nDTSTAMP:20261120T100000Z\r\n\
        DTSTART;TZID=W. Europe Standard Time (custom):20260715T100000\r\n\
        DTEND;TZID=W. Europe Standard Time (custom):20260715T110000\r\n\
        SUMMARY:Summer\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    // Daylight time in July: 10:00 at +02:00.
    assert_eq!(
        start_of(&mut f, ics),
        timestamp_from_civil(2026, 7, 15, 8, 0)
    );
    // Standard time in January: 10:00 at +01:00.
    let winter = ics.replace("20260715", "20260115");
    assert_eq!(
        start_of(&mut f, &winter),
        timestamp_from_civil(2026, 1, 15, 9, 0)
    );
}

#[test]
fn a_floating_time_is_read_in_the_owners_zone() {
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nBEGIN:VEVENT\r\nUID:f-1\r\n\
        DTSTAMP:20261120T100000Z\r\nDTSTART:20261124T140000\r\nDTEND:20261124T150000\r\n\
        SUMMARY:Floating\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let mut utc = Fixture::new();
    assert_eq!(
        start_of(&mut utc, ics),
        timestamp_from_civil(2026, 11, 24, 14, 0)
    );
    let mut ny = Fixture::new();
    let mut config = ny.connector.config().clone();
    config.timezone = Some(time_zone("America/New_York").unwrap());
    ny.connector = VdirConnector::new(config);
    // 14:00 EST is 19:00 UTC.
    assert_eq!(
        start_of(&mut ny, ics),
        timestamp_from_civil(2026, 11, 24, 19, 0)
    );
}

#[test]
fn a_contact_is_written_with_its_structured_name_and_an_update_keeps_the_users_additions() {
    let mut f = Fixture::new();
    let mut rec = contact_record("con-kaylee", "Kaylee Frye", "kaylee@serenity.example");
    let mut w = item(&rec, false);
    w.show_as = None;
    let event = Event::CreateIntent(CreateIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: None,
        target: Side::MailServer,
        item: w,
        key: "mbx-paul/con-kaylee/create/v1".into(),
    });
    let remote = exec(&mut f.connector, 1, &event, &rec).unwrap();
    let text = file(&f.contacts, &remote);
    for line in [
        "VERSION:3.0",
        "FN:Kaylee Frye",
        "N:Frye;Kaylee;;;",
        "EMAIL;TYPE=INTERNET:kaylee@serenity.example",
        "TEL:+1 555 0100",
        "ORG:Serenity",
    ] {
        assert!(has(&text, line), "{line} missing in\n{text}");
    }
    // The user adds a second address, a note and a work type on the phone in khard.
    let path = f.contacts.join(remote.as_str().split_once('/').unwrap().1);
    let edited = text.replace("TEL:", "TEL;TYPE=work:").replace(
        "END:VCARD",
        "EMAIL;TYPE=home:kaylee@home.example\r\nNOTE:engines\r\nX-KHARD:1\r\nEND:VCARD",
    );
    write_aged(&path, &edited, 60);

    rec.version = 2;
    if let RecordBody::Contact(c) = &mut rec.body {
        c.full_name = "Kaylee Mae Frye".into();
        c.email = "kaylee@serenity.example".into();
        c.phone = "+1 555 0199".into();
        c.company = String::new();
    }
    let mut w = item(&rec, false);
    w.show_as = None;
    let event = Event::UpdateIntent(UpdateIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: Some(remote.clone()),
        target: Side::MailServer,
        item: w,
        key: "mbx-paul/con-kaylee/update/v2".into(),
    });
    exec(&mut f.connector, 2, &event, &rec);
    let text = fs::read_to_string(&path).unwrap();
    for line in [
        "FN:Kaylee Mae Frye",
        "N:Frye;Kaylee;Mae;;",
        "EMAIL;TYPE=INTERNET:kaylee@serenity.example",
        "TEL;TYPE=work:+1 555 0199",
        "EMAIL;TYPE=home:kaylee@home.example",
        "NOTE:engines",
        "X-KHARD:1",
    ] {
        assert!(has(&text, line), "{line} missing in\n{text}");
    }
    assert!(
        !text.contains("ORG:"),
        "the CRM emptied the company:\n{text}"
    );
}

#[test]
fn r29_after_the_organizer_change_pauls_copy_is_the_organizers_and_his_update_outranks_jaynes_cancel()
 {
    let jayne_side = Fixture::new();
    let paul_side = Fixture::new();
    let mut jayne = as_owner(&jayne_side, "jayne@serenity.example");
    let mut paul = as_owner(&paul_side, "paul@serenity.example");
    // Version 1: Jayne organizes, Paul and Zoe attend.
    let mut rec = appointment_record("apt-bike-repair", "Bike repair");
    {
        let a = appointment(&mut rec);
        a.organizer = Some(party(Some("jayne"), "jayne@serenity.example", "Jayne Cobb"));
        a.required = vec![
            party(Some("paul"), "paul@serenity.example", "Paul Blart"),
            party(None, "zoe@customer.example", "Zoe Washburne"),
        ];
        a.optional = vec![];
    }
    let jayne_item = create(&mut jayne, &rec, "mbx-jayne", true);
    let paul_item = create(&mut paul, &rec, "mbx-paul", false);
    assert_eq!(sequence(&file(&jayne_side.calendar, &jayne_item)), 3);
    assert_eq!(sequence(&file(&paul_side.calendar, &paul_item)), 2);

    // Version 2: Paul organizes, Zoe attends; Jayne's mailbox cancels (logical delete, R29).
    rec.version = 2;
    {
        let a = appointment(&mut rec);
        a.organizer = Some(party(Some("paul"), "paul@serenity.example", "Paul Blart"));
        a.required = vec![party(None, "zoe@customer.example", "Zoe Washburne")];
    }
    let cancel = Event::CancelIntent(CancelIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: Some(jayne_item.clone()),
        attendees: vec![
            "paul@serenity.example".into(),
            "zoe@customer.example".into(),
        ],
        version: 2,
        key: "mbx-jayne/apt-bike-repair/cancel/v2".into(),
    });
    exec(&mut jayne, 3, &cancel, &rec);
    update(&mut paul, &rec, &paul_item, "mbx-paul", true);

    let copy = file(&paul_side.calendar, &paul_item);
    assert!(
        has(
            &copy,
            "ORGANIZER;CN=Paul Blart:mailto:paul@serenity.example"
        ),
        "{copy}"
    );
    assert!(!copy.contains("ORGANIZER;CN=Jayne"), "{copy}");
    assert!(
        has(
            &copy,
            "ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=Zoe Washburne:mailto:zoe@customer.example"
        ),
        "{copy}"
    );
    let cancels = imip(&jayne_side.maildirs, "zoe@customer.example", "CANCEL");
    let requests = imip(&paul_side.maildirs, "zoe@customer.example", "REQUEST");
    assert_eq!((cancels.len(), requests.len()), (1, 1));
    assert!(has(
        &requests[0],
        "ORGANIZER;CN=Paul Blart:mailto:paul@serenity.example"
    ));
    assert_eq!(sequence(&cancels[0]), 4);
    assert_eq!(sequence(&requests[0]), 5);
    assert_eq!(sequence(&copy), 5);
    // Whichever order Zoe's client reads them in, the meeting stays: the REQUEST outranks
    // the CANCEL, so a CANCEL read last is stale, and one read first is undone by the REQUEST.
    assert!(sequence(&requests[0]) > sequence(&cancels[0]));
}
