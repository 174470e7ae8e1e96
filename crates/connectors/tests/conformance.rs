//! One conformance suite for every backend of the connector contract (`docs/connectors.md`):
//! each scenario is written once against [`Backend`] and runs against the vdir backend (files
//! in a tempdir) and the CalDAV/CardDAV backend (a real Radicale, see `support/dav.rs`).

mod support;

use ledgersync_connectors::{
    BeforeWrite, Connector, Cursor, DavConnector, Listing, Outcome, VdirConnector,
};
use ledgersync_domain::event::{
    Basis, CreateIntent, DeleteIntent, Event, ItemWrite, RemoteFields, Side, UpdateIntent,
};
use ledgersync_domain::records::{Record, ShowAs};
use ledgersync_domain::{EventId, RemoteId};
use std::fs;
use std::path::PathBuf;
use support::dav::Server;
use support::*;

/// Another client writing an item: `(server id, text)`.
type Writer = Box<dyn FnMut(&str, &str) + Send>;

/// What the suite needs of a backend: its connector, and another client of the same server.
trait Backend {
    fn connector(&mut self) -> &mut dyn Connector;
    /// Another client adds a calendar item named `file`; answers its server id.
    fn add(&mut self, file: &str, text: &str) -> String;
    /// A writer for another client: replaces the item `remote` with `text`.
    fn writer(&self) -> Writer;
    /// What the server holds for `remote`, if anything.
    fn read(&self, remote: &str) -> Option<String>;
    /// The calendar items the server holds.
    fn calendar_items(&self) -> usize;
    /// A connector on the same collections that cannot read them (server down, directory
    /// unreadable).
    fn broken(&self) -> Box<dyn Connector>;
    /// Sets the hook an update calls between reading and writing the item.
    fn set_before_write(&mut self, hook: Option<BeforeWrite>);
}

struct Vdir(Fixture);

impl Vdir {
    fn new() -> Self {
        Vdir(Fixture::new())
    }
    fn path(calendar: &std::path::Path, contacts: &std::path::Path, remote: &str) -> PathBuf {
        match remote.split_once('/') {
            Some(("calendar", file)) => calendar.join(file),
            Some(("contacts", file)) => contacts.join(file),
            _ => panic!("not a vdir server id: {remote}"),
        }
    }
}

impl Backend for Vdir {
    fn connector(&mut self) -> &mut dyn Connector {
        &mut self.0.connector
    }
    fn add(&mut self, file: &str, text: &str) -> String {
        write_aged(&self.0.calendar.join(file), text, 60);
        format!("calendar/{file}")
    }
    fn writer(&self) -> Writer {
        let (calendar, contacts) = (self.0.calendar.clone(), self.0.contacts.clone());
        Box::new(move |remote, text| {
            let path = Vdir::path(&calendar, &contacts, remote);
            fs::write(path, text).unwrap();
        })
    }
    fn read(&self, remote: &str) -> Option<String> {
        fs::read_to_string(Vdir::path(&self.0.calendar, &self.0.contacts, remote)).ok()
    }
    fn calendar_items(&self) -> usize {
        fs::read_dir(&self.0.calendar)
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    }
    fn broken(&self) -> Box<dyn Connector> {
        let mut config = self.0.connector.config().clone();
        config.calendar = Some(self.0._tmp.path().join("unmounted/calendar"));
        config.address_book = Some(self.0._tmp.path().join("unmounted/contacts"));
        Box::new(VdirConnector::new(config))
    }
    fn set_before_write(&mut self, hook: Option<BeforeWrite>) {
        self.0.connector.set_before_write(hook);
    }
}

struct Dav {
    server: Server,
    connector: DavConnector,
}

impl Dav {
    fn new(name: &str) -> Self {
        let server = Server::new(name);
        let connector = server.connector();
        Dav { server, connector }
    }
}

impl Backend for Dav {
    fn connector(&mut self) -> &mut dyn Connector {
        &mut self.connector
    }
    fn add(&mut self, file: &str, text: &str) -> String {
        let path = format!("{}{file}", self.server.calendar);
        self.server.put(&path, text);
        path
    }
    fn writer(&self) -> Writer {
        let server = Server {
            base: self.server.base.clone(),
            client: self.server.client.clone(),
            calendar: self.server.calendar.clone(),
            contacts: self.server.contacts.clone(),
        };
        Box::new(move |remote, text| {
            server.put(remote, text);
        })
    }
    fn read(&self, remote: &str) -> Option<String> {
        self.server.get(remote).map(|(_, text)| text)
    }
    fn calendar_items(&self) -> usize {
        self.server.items(&self.server.calendar).len()
    }
    fn broken(&self) -> Box<dyn Connector> {
        let mut config = self.server.config();
        let down = support::dav::closed_url();
        config.calendar = Some(format!("{down}{}", &self.server.calendar[1..]));
        config.address_book = Some(format!("{down}{}", &self.server.contacts[1..]));
        config.server = down;
        Box::new(DavConnector::new(config))
    }
    fn set_before_write(&mut self, hook: Option<BeforeWrite>) {
        self.connector.set_before_write(hook);
    }
}

fn write(title: &str) -> ItemWrite {
    ItemWrite {
        title: title.into(),
        version: 1,
        show_as: Some(ShowAs::Busy),
        reminder: false,
        notify_attendees: false,
        attendees: 2,
        completed: false,
        actual_start: None,
    }
}

fn create(record: &Record, key: &str) -> Event {
    Event::CreateIntent(CreateIntent {
        basis: Basis::default(),
        record: record.id.clone(),
        remote: None,
        target: Side::MailServer,
        item: write(&record_subject(record)),
        key: key.into(),
    })
}

fn record_subject(record: &Record) -> String {
    record
        .appointment()
        .map(|a| a.subject.clone())
        .unwrap_or_default()
}

fn update(record: &Record, remote: &str, title: &str, key: &str) -> Event {
    Event::UpdateIntent(UpdateIntent {
        basis: Basis::default(),
        record: record.id.clone(),
        remote: Some(RemoteId::new(remote)),
        target: Side::MailServer,
        item: write(title),
        key: key.into(),
    })
}

fn delete(record: &Record, remote: &str, key: &str) -> Event {
    Event::DeleteIntent(DeleteIntent {
        basis: Basis::default(),
        record: record.id.clone(),
        remote: Some(RemoteId::new(remote)),
        target: Side::MailServer,
        key: key.into(),
    })
}

fn run(b: &mut dyn Backend, id: u128, event: &Event, record: Option<&Record>) -> Outcome {
    b.connector()
        .execute(intent(EventId::from_u128(id), event, record))
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

fn subjects(l: &Listing) -> Vec<String> {
    let mut out: Vec<String> = seen(l)
        .iter()
        .map(|i| match &i.fields {
            RemoteFields::Appointment { subject, .. } => subject.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    out.sort();
    out
}

// ───────────────────────────── the scenarios ─────────────────────────────

/// A first listing reports every item; a listing from its cursor only what changed since.
fn lists_everything_first_then_only_changes(b: &mut dyn Backend) {
    b.add("a.ics", &event_ics("a-1", "Alpha"));
    b.add("b.ics", &event_ics("b-1", "Bravo"));
    let first = b.connector().list_changes(&Cursor::initial());
    complete(&first);
    assert_eq!(subjects(&first), ["Alpha", "Bravo"]);
    assert!(gone(&first).is_empty());

    let quiet = b.connector().list_changes(&first.cursor);
    complete(&quiet);
    assert!(seen(&quiet).is_empty(), "{:?}", quiet.observations);
    assert!(gone(&quiet).is_empty());

    let a = seen(&first)
        .iter()
        .find(|i| i.remote.0.ends_with("a.ics"))
        .map(|i| (i.remote.0.clone(), i.etag.clone()))
        .unwrap();
    (b.writer())(&a.0, &event_ics("a-1", "Alpha (moved)"));
    b.add("c.ics", &event_ics("c-1", "Charlie"));
    let changes = b.connector().list_changes(&quiet.cursor);
    complete(&changes);
    assert_eq!(subjects(&changes), ["Alpha (moved)", "Charlie"]);
    let moved = seen(&changes)
        .into_iter()
        .find(|i| i.remote.0 == a.0)
        .expect("the edited item, under its server id");
    assert_ne!(moved.etag, a.1, "an edit is a new version");
    assert!(gone(&changes).is_empty());
}

/// A create writes one item; the version the outcome reports is what the next listing reports
/// (the echo guard's condition); a retry of the same intent (same key) writes nothing more.
fn create_is_idempotent_and_reports_the_listed_version(b: &mut dyn Backend) {
    let first = b.connector().list_changes(&Cursor::initial());
    complete(&first);
    let rec = appointment_record("apt-quarterly-review", "Quarterly review");
    let intent = create(&rec, "mbx-paul/apt-quarterly-review/create/v1");
    let outcome = run(b, 1, &intent, Some(&rec));
    let (remote, etag) = ok(&outcome);
    assert!(etag.is_some(), "a create reports the item's version");
    let cursor = b
        .connector()
        .remember(&first.cursor, call(&intent), &outcome);

    let retried = run(b, 1, &intent, Some(&rec));
    assert_eq!(
        ok(&retried),
        (remote.clone(), etag.clone()),
        "the same answer"
    );
    assert_eq!(b.calendar_items(), 1, "a retry never duplicates");

    let next = b.connector().list_changes(&cursor);
    complete(&next);
    let items = seen(&next);
    assert_eq!(items.len(), 1, "{:?}", next.observations);
    assert_eq!(items[0].remote.0, remote);
    assert_eq!(
        Some(items[0].etag.clone()),
        etag,
        "no echo: the outcome's version"
    );
    assert_eq!(subjects(&next), ["Quarterly review"]);
}

/// An update edits the item; one edited meanwhile by another client is a conflict, and
/// nothing of that client's edit is overwritten.
fn update_holds_to_the_version_it_read(b: &mut dyn Backend) {
    let rec = appointment_record("apt-review", "Review");
    let remote = b.add("review.ics", &event_ics("review-1", "Review"));
    let first = b.connector().list_changes(&Cursor::initial());
    complete(&first);

    let mut other = b.writer();
    let edited_elsewhere = event_ics("review-1", "Edited elsewhere");
    let text = edited_elsewhere.clone();
    b.set_before_write(Some(Box::new(move |r: &str| other(r, &text))));
    let outcome = run(
        b,
        2,
        &update(&rec, &remote, "Review (CRM)", "k/u/1"),
        Some(&rec),
    );
    b.set_before_write(None);
    match &outcome {
        Outcome::Failed(f) => assert_eq!(f.error.code, "conflict", "{}", f.error.message),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let now = b.read(&remote).expect("still there");
    assert!(now.contains("SUMMARY:Edited elsewhere"), "{now}");
    assert!(!now.contains("Review (CRM)"), "nothing overwritten: {now}");

    // Retried after the next listing: it applies, and lists back with its own version.
    let seen_edit = b.connector().list_changes(&first.cursor);
    complete(&seen_edit);
    assert_eq!(subjects(&seen_edit), ["Edited elsewhere"]);
    let outcome = run(
        b,
        3,
        &update(&rec, &remote, "Review (CRM)", "k/u/1"),
        Some(&rec),
    );
    let (written, etag) = ok(&outcome);
    assert_eq!(written, remote);
    let after = b.connector().list_changes(&seen_edit.cursor);
    complete(&after);
    let items = seen(&after);
    assert_eq!(items.len(), 1);
    assert_eq!(Some(items[0].etag.clone()), etag, "no echo");
    assert_eq!(subjects(&after), ["Review (CRM)"]);
}

/// A delete removes the item; the next listing reports it gone once; deleting again succeeds.
fn delete_is_reported_gone_once(b: &mut dyn Backend) {
    let rec = appointment_record("apt-drop", "Drop");
    let keep = b.add("keep.ics", &event_ics("keep-1", "Keep"));
    let remote = b.add("drop.ics", &event_ics("drop-1", "Drop"));
    let first = b.connector().list_changes(&Cursor::initial());
    complete(&first);
    let intent = delete(&rec, &remote, "k/d/1");
    let outcome = run(b, 4, &intent, Some(&rec));
    assert_eq!(ok(&outcome).0, remote);
    assert!(b.read(&remote).is_none());
    assert!(b.read(&keep).is_some());
    let cursor = b
        .connector()
        .remember(&first.cursor, call(&intent), &outcome);

    let again = run(b, 4, &intent, Some(&rec));
    assert!(matches!(again, Outcome::Succeeded(_)), "{again:?}");

    let next = b.connector().list_changes(&cursor);
    complete(&next);
    assert_eq!(gone(&next), [remote]);
    assert!(seen(&next).is_empty());
    let quiet = b.connector().list_changes(&next.cursor);
    complete(&quiet);
    assert!(gone(&quiet).is_empty());
}

/// A listing that cannot read the server is never a delete: no item_gone, no item_seen, the
/// cursor handed back unchanged; the next good listing finds everything still there.
fn a_failed_listing_is_never_a_delete(b: &mut dyn Backend) {
    b.add("a.ics", &event_ics("a-1", "Alpha"));
    b.add("b.ics", &event_ics("b-1", "Bravo"));
    let first = b.connector().list_changes(&Cursor::initial());
    complete(&first);
    let mut broken = b.broken();
    let failed = broken.list_changes(&first.cursor);
    assert_eq!(
        terminal(&failed),
        "listing_failed",
        "{:?}",
        failed.observations
    );
    assert!(seen(&failed).is_empty() && gone(&failed).is_empty());
    assert_eq!(failed.cursor, first.cursor);
    let back = b.connector().list_changes(&failed.cursor);
    complete(&back);
    assert!(gone(&back).is_empty() && seen(&back).is_empty());
}

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod vdir {
            $(#[test] fn $scenario() { super::$scenario(&mut super::Vdir::new()); })*
        }
        mod dav {
            $(#[test] fn $scenario() { super::$scenario(&mut super::Dav::new(stringify!($scenario))); })*
        }
    };
}

conformance!(
    lists_everything_first_then_only_changes,
    create_is_idempotent_and_reports_the_listed_version,
    update_holds_to_the_version_it_read,
    delete_is_reported_gone_once,
    a_failed_listing_is_never_a_delete,
);
