//! Meeting invitations and cancellations: an iMIP `METHOD:REQUEST` or `METHOD:CANCEL`
//! message lands once in each attendee's Maildir `new/` and parses back.

mod support;

use ledgersync_connectors::{Connector, Outcome, UNSUPPORTED};
use ledgersync_domain::event::{
    Basis, CancelIntent, CreateIntent, DeleteIntent, Event, ItemWrite, Side,
};
use ledgersync_domain::records::{Record, ShowAs};
use ledgersync_domain::{EventId, RemoteId};
use mail_parser::{MessageParser, MimeHeaders};
use std::fs;
use std::path::Path;
use support::*;

const ATTENDEES: [&str; 2] = ["jayne@serenity.example", "Kaylee@Serenity.example"];

fn run(f: &mut Fixture, id: u128, event: &Event, record: Option<&Record>) -> Outcome {
    f.connector
        .execute(intent(EventId::from_u128(id), event, record))
}

/// Creates the organizer's copy, without sending invitations (`notify_attendees` off): the
/// cancellation tests see only cancellations.
fn created(f: &mut Fixture, rec: &Record) -> RemoteId {
    created_with(f, rec, false)
}

fn created_with(f: &mut Fixture, rec: &Record, notify: bool) -> RemoteId {
    let create = Event::CreateIntent(CreateIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: None,
        target: Side::MailServer,
        item: ItemWrite {
            title: rec.title().into(),
            version: 1,
            show_as: Some(ShowAs::Busy),
            reminder: false,
            notify_attendees: notify,
            attendees: 2,
            completed: false,
            actual_start: None,
        },
        key: format!("mbx-paul/{}/create/v1", rec.id),
    });
    match run(f, 1, &create, Some(rec)) {
        Outcome::Succeeded(s) => s.remote.expect("a server id"),
        other => panic!("create failed: {other:?}"),
    }
}

fn cancel(rec: &Record, remote: Option<RemoteId>) -> Event {
    Event::CancelIntent(CancelIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote,
        attendees: ATTENDEES.iter().map(|a| a.to_string()).collect(),
        version: 2,
        key: format!("mbx-paul/{}/cancel/v2", rec.id),
    })
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Parses one delivered cancellation and returns (subject, calendar part text).
fn parse_cancellation(path: &Path) -> (String, String) {
    parse_imip(path, "CANCEL")
}

/// Parses one delivered iMIP message of `method` and returns (subject, calendar part text).
fn parse_imip(path: &Path, method: &str) -> (String, String) {
    let raw = fs::read(path).unwrap();
    let message = MessageParser::default()
        .parse(&raw)
        .expect("a MIME message");
    let subject = message.subject().unwrap_or_default().to_string();
    let part = message
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.ctype() == "text" && c.subtype() == Some("calendar"))
        })
        .expect("a text/calendar part");
    let ct = part.content_type().unwrap();
    assert_eq!(
        ct.attribute("method")
            .map(str::to_ascii_uppercase)
            .as_deref(),
        Some(method)
    );
    (subject, part.text_contents().expect("text").to_string())
}

#[test]
fn an_invitation_lands_once_in_each_attendees_maildir_and_never_in_the_organizers() {
    let mut f = Fixture::new();
    let rec = appointment_record("apt-planning", "Planning");
    let remote = created_with(&mut f, &rec, true);
    for address in ["jayne@serenity.example", "kaylee@serenity.example"] {
        let new = files(&f.maildirs.join(address).join("new"));
        assert_eq!(new.len(), 1, "{address}: {new:?}");
        let (subject, ics) = parse_imip(&new[0], "REQUEST");
        assert_eq!(subject, "Invitation: Planning");
        let lines: Vec<&str> = ics.lines().map(|l| l.trim_end_matches('\r')).collect();
        for line in [
            "METHOD:REQUEST",
            "UID:apt-planning@ledgersync",
            "SUMMARY:Planning",
        ] {
            assert!(lines.contains(&line), "{line} missing in\n{ics}");
        }
        let method = lines.iter().position(|l| *l == "METHOD:REQUEST").unwrap();
        let event = lines.iter().position(|l| *l == "BEGIN:VEVENT").unwrap();
        assert!(
            method < event,
            "METHOD is a calendar property, before the VEVENT"
        );
    }
    assert!(
        files(&f.maildirs.join("paul@serenity.example").join("new")).is_empty(),
        "the organizer is not invited to their own meeting"
    );
    // A retry of the create (its outcome lost) delivers nothing twice.
    created_with(&mut f, &rec, true);
    assert_eq!(
        files(&f.maildirs.join("jayne@serenity.example").join("new")).len(),
        1
    );
    // The calendar holds the item itself, without a METHOD (RFC 5545 §3.7.2: stored objects
    // carry none).
    let path = f
        .calendar
        .join(remote.as_str().trim_start_matches("calendar/"));
    let stored = fs::read_to_string(path).unwrap();
    assert!(!stored.contains("METHOD:"), "{stored}");
}

#[test]
fn a_cancellation_lands_once_in_each_attendees_maildir_and_parses_back() {
    let mut f = Fixture::new();
    let rec = appointment_record("apt-quarterly-review", "Quarterly review");
    let remote = created(&mut f, &rec);
    // The meeting's UID is the CRM row's, the same in every mailbox, so each attendee's
    // calendar matches the cancellation to its own copy.
    let uid = "UID:apt-quarterly-review@ledgersync".to_string();

    // The delete is decided with the cancellation and carried out first (R22).
    let delete = Event::DeleteIntent(DeleteIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: Some(remote.clone()),
        target: Side::MailServer,
        key: "mbx-paul/apt-quarterly-review/delete/v2".into(),
    });
    assert!(matches!(
        run(&mut f, 2, &delete, None),
        Outcome::Succeeded(_)
    ));

    let intent = cancel(&rec, Some(remote.clone()));
    match run(&mut f, 3, &intent, Some(&rec)) {
        Outcome::Succeeded(s) => {
            assert_eq!(s.intent, EventId::from_u128(3));
            assert_eq!(s.remote, Some(remote.clone()));
        }
        other => panic!("cancel failed: {other:?}"),
    }
    for address in ["jayne@serenity.example", "kaylee@serenity.example"] {
        let maildir = f.maildirs.join(address);
        for sub in ["tmp", "new", "cur"] {
            assert!(maildir.join(sub).is_dir(), "{address}: {sub}/ missing");
        }
        let new = files(&maildir.join("new"));
        assert_eq!(new.len(), 1, "{address}: {new:?}");
        assert!(files(&maildir.join("tmp")).is_empty());
        let (subject, ics) = parse_cancellation(&new[0]);
        assert_eq!(subject, "Canceled: Quarterly review");
        let lines: Vec<&str> = ics.lines().map(|l| l.trim_end_matches('\r')).collect();
        for line in [
            "METHOD:CANCEL",
            uid.as_str(),
            // R26, R29: 2 · version 1 + 1, Paul organizing: the same number as his invitation
            // and his copy, so the cancellation applies.
            "SEQUENCE:3",
            "STATUS:CANCELLED",
            "ORGANIZER:mailto:paul@serenity.example",
            "ATTENDEE:mailto:jayne@serenity.example",
            "ATTENDEE:mailto:Kaylee@Serenity.example",
            "DTSTART:20261124T140000Z",
        ] {
            assert!(
                lines.iter().any(|l| l.ends_with(line)),
                "{line} missing in\n{ics}"
            );
        }
    }

    // A retry delivers nothing more, even after a mail client moved the message to cur/.
    let jayne = f.maildirs.join("jayne@serenity.example");
    let first = files(&jayne.join("new")).remove(0);
    let seen_name = format!("{}:2,S", first.file_name().unwrap().to_string_lossy());
    fs::rename(&first, jayne.join("cur").join(seen_name)).unwrap();
    assert!(matches!(
        run(&mut f, 3, &intent, Some(&rec)),
        Outcome::Succeeded(_)
    ));
    assert!(files(&jayne.join("new")).is_empty());
    assert_eq!(files(&jayne.join("cur")).len(), 1);
    assert_eq!(
        files(&f.maildirs.join("kaylee@serenity.example").join("new")).len(),
        1
    );
}

#[test]
fn a_cancellation_without_the_meeting_or_without_maildirs_fails_clearly() {
    let mut f = Fixture::new();
    let rec = appointment_record("apt-unknown", "Never written");
    match run(&mut f, 1, &cancel(&rec, None), Some(&rec)) {
        Outcome::Failed(x) => assert_eq!(x.error.code, "not_found"),
        other => panic!("expected intent_failed, got {other:?}"),
    }
    assert!(files(&f.maildirs).is_empty());

    let mut config = f.connector.config().clone();
    config.maildirs = None;
    let mut no_maildirs = ledgersync_connectors::VdirConnector::new(config);
    let rec = appointment_record("apt-4", "Lunch");
    let remote = created(&mut f, &rec);
    let event = cancel(&rec, Some(remote));
    match no_maildirs.execute(intent(EventId::from_u128(9), &event, Some(&rec))) {
        Outcome::Failed(x) => assert_eq!(x.error.code, UNSUPPORTED),
        other => panic!("expected intent_failed, got {other:?}"),
    }
}
