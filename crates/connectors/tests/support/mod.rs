//! Shared helpers of the connector tests: real directories in a tempdir, real files.
#![allow(dead_code)]

pub mod dav;
pub mod smtp;

use ledgersync_connectors::{
    Connector, Cursor, Intent, IntentCall, Listing, Observation, VdirConfig, VdirConnector,
};
use ledgersync_domain::event::{Event, RemoteItem};
use ledgersync_domain::records::*;
use ledgersync_domain::time::timestamp_from_civil;
use ledgersync_domain::{RecordId, UserId};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A calendar, an address book and a Maildir root in a fresh tempdir.
pub struct Fixture {
    pub _tmp: tempfile::TempDir,
    pub calendar: PathBuf,
    pub contacts: PathBuf,
    pub maildirs: PathBuf,
    pub connector: VdirConnector,
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let calendar = tmp.path().join("calendars/work");
        let contacts = tmp.path().join("contacts/default");
        let maildirs = tmp.path().join("maildirs");
        fs::create_dir_all(&calendar).unwrap();
        fs::create_dir_all(&contacts).unwrap();
        let mut config = VdirConfig::new("paul@serenity.example");
        config.calendar = Some(calendar.clone());
        config.address_book = Some(contacts.clone());
        config.maildirs = Some(maildirs.clone());
        Fixture {
            _tmp: tmp,
            calendar,
            contacts,
            maildirs,
            connector: VdirConnector::new(config),
        }
    }

    pub fn list(&mut self, cursor: &Cursor) -> Listing {
        self.connector.list_changes(cursor)
    }
}

pub fn event_ics(uid: &str, summary: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//khal//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
         DTSTAMP:20261120T100000Z\r\nDTSTART:20261124T140000Z\r\nDTEND:20261124T150000Z\r\n\
         SUMMARY:{summary}\r\nORGANIZER:mailto:paul@serenity.example\r\n\
         CATEGORIES:Tracked to CRM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

pub fn card_vcf(uid: &str, name: &str) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\n\
         EMAIL:{uid}@serenity.example\r\nEND:VCARD\r\n"
    )
}

/// Writes a file and sets its mtime `age_secs` in the past (so that a later rewrite has a
/// newer one, as an editor's would).
pub fn write_aged(path: &Path, text: &str, age_secs: u64) {
    fs::write(path, text).unwrap();
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(age_secs))
        .unwrap();
}

pub fn seen(listing: &Listing) -> Vec<&RemoteItem> {
    listing
        .observations
        .iter()
        .filter_map(|e| match e {
            Observation::Seen(s) => Some(&s.item),
            _ => None,
        })
        .collect()
}

pub fn gone(listing: &Listing) -> Vec<String> {
    listing
        .observations
        .iter()
        .filter_map(|e| match e {
            Observation::Gone(g) => Some(g.remote.0.clone()),
            _ => None,
        })
        .collect()
}

pub fn terminal(listing: &Listing) -> &'static str {
    listing.end.name()
}

/// The listing as the events the driver gives the mailbox, the terminal event last.
pub fn events(listing: &Listing) -> Vec<Event> {
    listing.clone().events()
}

fn party(user: Option<&str>, email: &str, name: &str) -> Party {
    Party {
        user: user.map(UserId::new),
        email: email.into(),
        name: name.into(),
    }
}

pub fn appointment_record(id: &str, subject: &str) -> Record {
    Record {
        id: RecordId::new(id),
        owner: UserId::new("paul"),
        version: 1,
        body: RecordBody::Appointment(Appointment {
            subject: subject.into(),
            organizer: Some(party(Some("paul"), "paul@serenity.example", "Paul Ortiz")),
            required: vec![party(Some("jayne"), "jayne@serenity.example", "Jayne Cobb")],
            optional: vec![party(None, "kaylee@serenity.example", "Kaylee Frye")],
            start: timestamp_from_civil(2026, 11, 24, 14, 0),
            end: timestamp_from_civil(2026, 11, 24, 15, 0),
            all_day: false,
            location: "Serenity, galley".into(),
            body: "Numbers, then dinner".into(),
            state: ActivityState::Scheduled,
            show_as: ShowAs::Busy,
            priority: Priority::Normal,
            regarding: None,
            service: false,
            recurrence: None,
        }),
    }
}

pub fn task_record(id: &str, subject: &str) -> Record {
    Record {
        id: RecordId::new(id),
        owner: UserId::new("paul"),
        version: 1,
        body: RecordBody::Task(Task {
            kind: TaskKind::PhoneCall,
            subject: subject.into(),
            body: String::new(),
            start: None,
            due: Some(timestamp_from_civil(2026, 12, 1, 9, 0)),
            actual_start: None,
            actual_end: None,
            percent_complete: 0,
            state: ActivityState::Open,
            priority: Priority::High,
            regarding: None,
        }),
    }
}

pub fn contact_record(id: &str, name: &str, email: &str) -> Record {
    Record {
        id: RecordId::new(id),
        owner: UserId::new("paul"),
        version: 1,
        body: RecordBody::Contact(Contact {
            full_name: name.into(),
            email: email.into(),
            phone: "+1 555 0100".into(),
            company: "Serenity".into(),
            state: ContactState::Active,
        }),
    }
}

/// The intent of `event` for a connector, whichever side it targets (a test may hand a
/// connector a CRM-side intent; the runtime never does).
pub fn call(event: &Event) -> IntentCall<'_> {
    match event {
        Event::CreateIntent(p) => IntentCall::Create(p),
        Event::UpdateIntent(p) => IntentCall::Update(p),
        Event::DeleteIntent(p) => IntentCall::Delete(p),
        Event::CancelIntent(p) => IntentCall::Cancel(p),
        other => panic!("`{}` is not an intent", other.name()),
    }
}

/// The intent `id` of `event`, with its CRM row.
pub fn intent<'a>(
    id: ledgersync_domain::EventId,
    event: &'a Event,
    record: Option<&'a Record>,
) -> Intent<'a> {
    Intent {
        id,
        call: call(event),
        record,
    }
}
