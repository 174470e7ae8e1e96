//! Meeting messages over SMTP: an invitation and a cancellation sent through Postfix
//! (127.0.0.1:2525) land in the attendees' Dovecot INBOXes and read back, with Python's
//! imaplib + email + icalendar, as a mail client reads them; a retry sends nothing twice; the
//! server's refusals become error kinds the domain classifies; the CalDAV connector sends
//! through the same path.
//!
//! The servers come from `scripts/services.sh start`; a test that needs them fails (never
//! skips) when they are not listening. The 452 answer comes from a tiny SMTP server in this
//! file: Postfix cannot be made to answer 452 on demand.

mod support;

use ledgersync_connectors::{
    Connector, Outcome, Secret, SmtpConfig, SmtpTls, VdirConfig, VdirConnector, fnv1a64,
};
use ledgersync_domain::decide::{ErrorSubject, classify};
use ledgersync_domain::event::{
    Basis, CancelIntent, CreateIntent, ErrorClass, ErrorScope, Event, ItemWrite, Side,
};
use ledgersync_domain::records::{Record, ShowAs};
use ledgersync_domain::{ErrorKind, EventId, RecordId, RemoteId};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::smtp::FakeSmtp;
use support::{appointment_record, intent};

const POSTFIX: u16 = 2525;
const IMAP: u16 = 1143;
const SUBMISSION: u16 = 1587;
const ORGANIZER: &str = "paul@serenity.example";
/// Two attendees that exist in the test servers (scripts/services.sh).
const JAYNE: (&str, &str) = ("jayne@serenity.example", "jaynepw");
const ZOE: (&str, &str) = ("zoe@customer.example", "zoepw");

fn require_servers(ports: &[u16]) {
    for port in ports {
        if TcpStream::connect(("127.0.0.1", *port)).is_err() {
            panic!(
                "nothing listens on 127.0.0.1:{port}: start the test servers with \
                 `scripts/services.sh start` (as root; it installs Dovecot, Postfix and \
                 Radicale when missing)"
            );
        }
    }
}

/// A fresh run id: rows, keys and Message-IDs of this run differ from every earlier run's
/// (the INBOXes keep what earlier runs delivered).
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}-{}", std::process::id())
}

struct Setup {
    _tmp: tempfile::TempDir,
    state: PathBuf,
    connector: VdirConnector,
}

fn setup(smtp: impl FnOnce(&Path) -> SmtpConfig) -> Setup {
    let tmp = tempfile::tempdir().expect("tempdir");
    let calendar = tmp.path().join("calendars/work");
    std::fs::create_dir_all(&calendar).unwrap();
    let state = tmp.path().join("state");
    let mut config = VdirConfig::new(ORGANIZER);
    config.calendar = Some(calendar);
    config.smtp = Some(smtp(&state));
    Setup {
        _tmp: tmp,
        state,
        connector: VdirConnector::new(config),
    }
}

fn postfix(state: &Path) -> SmtpConfig {
    let mut c = SmtpConfig::new("127.0.0.1", POSTFIX, state);
    c.tls = SmtpTls::None;
    c.timeout = Duration::from_secs(10);
    c
}

/// The meeting: organized by Paul, with Jayne (required) and Zoe (optional).
fn meeting(id: &str, subject: &str) -> Record {
    let mut rec = appointment_record(id, subject);
    if let ledgersync_domain::records::RecordBody::Appointment(a) = &mut rec.body {
        a.optional[0].email = ZOE.0.to_string();
        a.optional[0].name = "Zoe Washburne".into();
    }
    rec
}

fn create_intent(rec: &Record, key: &str) -> Event {
    Event::CreateIntent(CreateIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: None,
        target: Side::MailServer,
        item: ItemWrite {
            title: rec.title().into(),
            version: 1,
            show_as: Some(ShowAs::Busy),
            reminder: false,
            notify_attendees: true,
            attendees: 2,
            completed: false,
            actual_start: None,
        },
        key: key.to_string(),
    })
}

fn cancel_intent(record: &RecordId, remote: RemoteId, key: &str, attendees: &[&str]) -> Event {
    Event::CancelIntent(CancelIntent {
        basis: Basis::default(),
        record: record.clone(),
        remote: Some(remote),
        attendees: attendees.iter().map(|a| a.to_string()).collect(),
        version: 2,
        key: key.to_string(),
    })
}

fn execute(s: &mut Setup, id: u128, event: &Event, record: Option<&Record>) -> Outcome {
    s.connector
        .execute(intent(EventId::from_u128(id), event, record))
}

/// The Message-ID the connector gives the message of intent `key` to `attendee`.
fn message_id(key: &str, attendee: &str) -> String {
    format!(
        "{:016x}.{:016x}@ledgersync",
        fnv1a64(key.as_bytes()),
        fnv1a64(attendee.to_lowercase().as_bytes())
    )
}

/// The messages with `message_id` in `user`'s INBOX, as Python's imaplib + email + icalendar
/// read them; waits up to `wait` for `expected` of them.
fn read_back(
    (user, password): (&str, &str),
    message_id: &str,
    expected: usize,
    wait: Duration,
) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/read_meeting_mail.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["127.0.0.1", &IMAP.to_string(), user, password, message_id])
        .arg(expected.to_string())
        .arg(wait.as_secs_f64().to_string())
        .output()
        .expect("python3 runs (scripts/test installs icalendar for it)");
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["messages"].as_array().cloned().unwrap_or_default()
}

fn calendar(m: &serde_json::Value) -> &serde_json::Value {
    let c = &m["calendar"];
    assert!(c.is_object(), "no text/calendar part in {m}");
    c
}

#[test]
fn an_invitation_and_a_cancellation_over_smtp_arrive_once_and_read_back_as_mail_clients_read_them()
{
    require_servers(&[POSTFIX, IMAP]);
    let run = run_id();
    let mut s = setup(postfix);
    let rec = meeting(&format!("apt-smtp-{run}"), &format!("Engine review {run}"));
    let create_key = format!("mbx-paul/{}/create/v1", rec.id);
    let create = create_intent(&rec, &create_key);

    let remote = match execute(&mut s, 1, &create, Some(&rec)) {
        Outcome::Succeeded(ok) => ok.remote.expect("a server id"),
        other => panic!("the create with invitations failed: {other:?}"),
    };
    // A retry of the same intent (the runtime did not record the outcome): sends nothing.
    assert!(matches!(
        execute(&mut s, 1, &create, Some(&rec)),
        Outcome::Succeeded(_)
    ));

    let uid = format!("{}@ledgersync", rec.id);
    let mut sequences = Vec::new();
    for attendee in [JAYNE, ZOE] {
        let id = message_id(&create_key, attendee.0);
        // Waits for a second copy that must never come.
        let got = read_back(attendee, &id, 2, Duration::from_secs(3));
        assert_eq!(
            got.len(),
            1,
            "{}: one invitation after a retry: {got:?}",
            attendee.0
        );
        let m = &got[0];
        assert_eq!(m["message_id"], format!("<{id}>"));
        assert_eq!(m["subject"], format!("Invitation: Engine review {run}"));
        let c = calendar(m);
        assert_eq!(c["content_type"], "text/calendar");
        assert_eq!(
            c["method_param"].as_str().map(str::to_uppercase).as_deref(),
            Some("REQUEST")
        );
        assert_eq!(c["METHOD"], "REQUEST");
        assert_eq!(c["UID"], uid);
        assert_eq!(c["ORGANIZER"], format!("mailto:{ORGANIZER}"));
        let attendees: Vec<String> = c["ATTENDEE"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_lowercase())
            .collect();
        for a in [JAYNE.0, ZOE.0] {
            assert!(
                attendees.contains(&format!("mailto:{a}")),
                "{a} in {attendees:?}"
            );
        }
        sequences.push(c["SEQUENCE"].as_u64().unwrap());
    }

    // The cancellation, to both; then a retry after a crash between Zoe's 250 and the record
    // of it (the record is removed): Zoe gets the same message again, with the same
    // Message-ID, Jayne nothing.
    let cancel_key = format!("mbx-paul/{}/cancel/v2", rec.id);
    let cancel = cancel_intent(&rec.id, remote, &cancel_key, &[JAYNE.0, ZOE.0]);
    let mut v2 = rec.clone();
    v2.version = 2;
    assert!(matches!(
        execute(&mut s, 2, &cancel, Some(&v2)),
        Outcome::Succeeded(_)
    ));
    let records: Vec<PathBuf> = std::fs::read_dir(s.state.join("sent"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(
        records.len(),
        4,
        "one record per intent and attendee: {records:?}"
    );
    let zoe_record = s.state.join("sent").join(format!(
        "{:016x}.{:016x}",
        fnv1a64(cancel_key.as_bytes()),
        fnv1a64(ZOE.0.as_bytes())
    ));
    std::fs::remove_file(&zoe_record).expect("Zoe's record of the cancellation");
    assert!(matches!(
        execute(&mut s, 2, &cancel, Some(&v2)),
        Outcome::Succeeded(_)
    ));

    for (attendee, copies) in [(JAYNE, 1), (ZOE, 2)] {
        let id = message_id(&cancel_key, attendee.0);
        let got = read_back(attendee, &id, copies + 1, Duration::from_secs(3));
        assert_eq!(got.len(), copies, "{}: {got:?}", attendee.0);
        for m in &got {
            assert_eq!(
                m["message_id"],
                format!("<{id}>"),
                "the same Message-ID on a retry"
            );
            assert_eq!(m["subject"], format!("Canceled: Engine review {run}"));
            let c = calendar(m);
            assert_eq!(c["content_type"], "text/calendar");
            assert_eq!(
                c["method_param"].as_str().map(str::to_uppercase).as_deref(),
                Some("CANCEL")
            );
            assert_eq!(c["METHOD"], "CANCEL");
            assert_eq!(c["UID"], uid);
            assert_eq!(c["STATUS"], "CANCELLED");
            assert_eq!(c["ORGANIZER"], format!("mailto:{ORGANIZER}"));
            let seq = c["SEQUENCE"].as_u64().unwrap();
            assert!(
                sequences.iter().all(|s| seq > *s),
                "the cancellation's SEQUENCE {seq} is above the invitation's {sequences:?}"
            );
            let attendees = c["ATTENDEE"].as_array().unwrap();
            assert_eq!(attendees.len(), 2, "{attendees:?}");
        }
    }
}

#[test]
fn r77_a_full_mailbox_452_fails_the_intent_as_quota_transient_for_the_item_and_a_retry_sends_only_what_is_missing()
 {
    let full = Arc::new(Mutex::new(true));
    let still_full = full.clone();
    let server = FakeSmtp::start(move |address| {
        if address == ZOE.0 && *still_full.lock().unwrap() {
            "452 4.2.2 <zoe@customer.example>: Mailbox full".to_string()
        } else {
            "250 2.1.5 Ok".to_string()
        }
    });
    let port = server.port;
    let mut s = setup(|state| {
        let mut c = SmtpConfig::new("127.0.0.1", port, state);
        c.tls = SmtpTls::None;
        c.timeout = Duration::from_secs(5);
        c
    });
    let rec = meeting("apt-full", "Planning");
    let create = create_intent(&rec, "mbx-paul/apt-full/create/v1");
    let failure = match execute(&mut s, 1, &create, Some(&rec)) {
        Outcome::Failed(f) => f,
        other => panic!("expected intent_failed, got {other:?}"),
    };
    assert_eq!(
        failure.error.kind(),
        ErrorKind::Quota,
        "{}",
        failure.error.message
    );
    assert!(
        failure.error.message.contains(ZOE.0),
        "{}",
        failure.error.message
    );
    assert!(
        failure.error.message.contains("4.2.2"),
        "{}",
        failure.error.message
    );
    // The domain retries it later and never disables the mailbox for it (R12, R77).
    assert_eq!(
        classify(&failure.error, ErrorSubject::Item),
        (ErrorClass::Transient, ErrorScope::Item)
    );
    assert_eq!(server.accepted(), [JAYNE.0]);

    // The mailbox has room again: the retry sends to Zoe only.
    *full.lock().unwrap() = false;
    assert!(matches!(
        execute(&mut s, 1, &create, Some(&rec)),
        Outcome::Succeeded(_)
    ));
    assert_eq!(server.accepted(), [JAYNE.0, ZOE.0]);
    // And once more: nothing.
    assert!(matches!(
        execute(&mut s, 1, &create, Some(&rec)),
        Outcome::Succeeded(_)
    ));
    assert_eq!(server.accepted(), [JAYNE.0, ZOE.0]);
}

#[test]
fn throttling_answers_are_rate_limited_and_transient() {
    let server = FakeSmtp::start(|_| "421 4.7.0 Too many messages, slow down".to_string());
    let port = server.port;
    let mut s = setup(|state| {
        let mut c = SmtpConfig::new("127.0.0.1", port, state);
        c.tls = SmtpTls::None;
        c
    });
    let rec = meeting("apt-throttled", "Planning");
    let create = create_intent(&rec, "mbx-paul/apt-throttled/create/v1");
    let Outcome::Failed(f) = execute(&mut s, 1, &create, Some(&rec)) else {
        panic!("expected intent_failed");
    };
    assert_eq!(
        f.error.kind(),
        ErrorKind::RateLimited,
        "{}",
        f.error.message
    );
    assert_eq!(
        classify(&f.error, ErrorSubject::Item).0,
        ErrorClass::Transient
    );
    assert!(server.accepted().is_empty());
}

#[test]
fn an_unknown_recipient_a_wrong_password_and_no_server_are_not_found_auth_and_network() {
    require_servers(&[POSTFIX, SUBMISSION]);
    // Postfix refuses an address its domain does not have at RCPT: 550 5.1.1.
    let mut s = setup(postfix);
    let mut rec = meeting("apt-unknown", "Planning");
    if let ledgersync_domain::records::RecordBody::Appointment(a) = &mut rec.body {
        a.optional[0].email = "nobody@customer.example".into();
    }
    let create = create_intent(&rec, &format!("mbx-paul/apt-unknown/{}", run_id()));
    let Outcome::Failed(f) = execute(&mut s, 1, &create, Some(&rec)) else {
        panic!("expected intent_failed");
    };
    assert_eq!(f.error.kind(), ErrorKind::NotFound, "{}", f.error.message);
    assert!(
        f.error.message.contains("nobody@customer.example"),
        "{}",
        f.error.message
    );
    assert!(
        !f.error.message.contains(JAYNE.0),
        "Jayne got hers: {}",
        f.error.message
    );

    // Dovecot's submission service with a wrong password: 535, and the password is nowhere.
    let password = "not-paulpw-7d1f";
    let mut s = setup(|state| {
        let mut c = SmtpConfig::new("127.0.0.1", SUBMISSION, state);
        c.tls = SmtpTls::None;
        c.username = Some("paul@example.org".into());
        c.password = Some(Secret::new(password));
        c
    });
    let rec = meeting("apt-auth", "Planning");
    let create = create_intent(&rec, &format!("mbx-paul/apt-auth/{}", run_id()));
    let Outcome::Failed(f) = execute(&mut s, 1, &create, Some(&rec)) else {
        panic!("expected intent_failed");
    };
    assert_eq!(f.error.kind(), ErrorKind::Auth, "{}", f.error.message);
    assert!(!f.error.message.contains(password), "{}", f.error.message);
    assert!(
        f.error.message.contains("paul@example.org"),
        "{}",
        f.error.message
    );

    // Nothing listens: network.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = setup(|state| {
        let mut c = SmtpConfig::new("127.0.0.1", closed, state);
        c.tls = SmtpTls::None;
        c
    });
    let Outcome::Failed(f) = execute(&mut s, 1, &create, Some(&rec)) else {
        panic!("expected intent_failed");
    };
    assert_eq!(f.error.kind(), ErrorKind::Network, "{}", f.error.message);
    assert_eq!(
        classify(&f.error, ErrorSubject::Item).0,
        ErrorClass::Transient
    );
}

#[test]
fn the_caldav_connector_sends_its_invitations_over_smtp_too() {
    require_servers(&[POSTFIX, IMAP]);
    let server = support::dav::Server::new("smtp");
    let state = tempfile::tempdir().unwrap();
    let mut config = server.config();
    config.smtp = Some(postfix(state.path()));
    let mut c = ledgersync_connectors::DavConnector::new(config);
    let run = run_id();
    let rec = meeting(&format!("apt-dav-smtp-{run}"), &format!("DAV review {run}"));
    let key = format!("mbx-paul/{}/create/v1", rec.id);
    let create = create_intent(&rec, &key);
    for _ in 0..2 {
        let outcome = c.execute(intent(EventId::from_u128(1), &create, Some(&rec)));
        assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    }
    let id = message_id(&key, JAYNE.0);
    let got = read_back(JAYNE, &id, 2, Duration::from_secs(3));
    assert_eq!(got.len(), 1, "one invitation after a retry: {got:?}");
    let cal = calendar(&got[0]);
    assert_eq!(cal["METHOD"], "REQUEST");
    assert_eq!(cal["UID"], format!("{}@ledgersync", rec.id));
    assert_eq!(cal["SUMMARY"], format!("DAV review {run}"));
}

#[test]
fn tls_required_by_the_configuration_and_not_offered_is_a_tls_failure() {
    require_servers(&[POSTFIX]);
    // Postfix on 2525 offers no STARTTLS, and speaks no TLS from the first byte.
    for mode in [SmtpTls::StartTls, SmtpTls::Tls] {
        let mut s = setup(|state| {
            let mut c = SmtpConfig::new("127.0.0.1", POSTFIX, state);
            c.tls = mode;
            c.timeout = Duration::from_secs(5);
            c
        });
        let rec = meeting("apt-tls", "Planning");
        let create = create_intent(&rec, &format!("mbx-paul/apt-tls/{}", run_id()));
        let Outcome::Failed(f) = execute(&mut s, 1, &create, Some(&rec)) else {
            panic!("{mode:?}: expected intent_failed");
        };
        assert_eq!(
            f.error.kind(),
            ErrorKind::Tls,
            "{mode:?}: {}",
            f.error.message
        );
    }
}
