//! Outgoing email (R75–R78) on the real servers: an email the engine decided to send goes
//! through Postfix (127.0.0.1:2525) into the recipients' Dovecot INBOXes exactly once, with the
//! tracking token in its subject and the Message-ID derived from the intent's key, and a copy
//! in the sender's Sent folder; a retry after a crash between the send and its outcome sends
//! nothing twice; the server's quota and throttling answers keep it pending (R77).
//!
//! What arrived is read back with Python's imaplib + email (`tests/clients/read_mail.py`). The
//! servers come from `scripts/services.sh start`; a test that needs them fails (never skips)
//! when they are not listening. The 452 and 421 answers come from a tiny SMTP server
//! (`support/smtp.rs`).

mod support;

use ledgersync_connectors::imap::{ImapConfig, Security};
use ledgersync_connectors::{
    Connector, Outcome, OutgoingConfig, OutgoingConnector, Secret, SmtpConfig, SmtpTls,
};
use ledgersync_domain::decide::{ErrorSubject, classify};
use ledgersync_domain::email::outgoing;
use ledgersync_domain::event::{Basis, CreateIntent, ErrorClass, Event, ItemWrite, Side};
use ledgersync_domain::records::{Email, EmailState, Party, Record, RecordBody};
use ledgersync_domain::settings::EmailOptions;
use ledgersync_domain::{ErrorKind, EventId, RecordId, UserId};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::intent;
use support::smtp::FakeSmtp;

const POSTFIX: u16 = 2525;
const IMAP: u16 = 1143;
const JAYNE: (&str, &str) = ("jayne@serenity.example", "jaynepw");
const PAUL: (&str, &str) = ("paul@serenity.example", "paulpw");
const ZOE: (&str, &str) = ("zoe@customer.example", "zoepw");
const TOKEN: &str = "CRM:0001004";

fn require_servers(ports: &[u16]) {
    for port in ports {
        if TcpStream::connect(("127.0.0.1", *port)).is_err() {
            panic!(
                "nothing listens on 127.0.0.1:{port}: start the test servers with \
                 `scripts/services.sh start` (as root; it installs Dovecot and Postfix when \
                 missing)"
            );
        }
    }
}

/// A fresh run id: rows, keys and Message-IDs of this run differ from every earlier run's.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}-{}", std::process::id())
}

fn party(user: Option<&str>, email: &str, name: &str) -> Party {
    Party {
        user: user.map(UserId::new),
        email: email.into(),
        name: name.into(),
    }
}

/// An email from `from` to Paul, Cc Zoe, in Pending Send, with both bodies.
fn email_row(id: &str, subject: &str, from: Party) -> Record {
    Record {
        id: RecordId::new(id),
        owner: UserId::new("jayne"),
        version: 1,
        body: RecordBody::Email(Email {
            subject: subject.into(),
            from,
            to: vec![party(Some("paul"), PAUL.0, "Paul Blart")],
            message_id: String::new(),
            regarding: None,
            state: EmailState::PendingSend,
            cc: vec![party(None, ZOE.0, "Zoe Washburne")],
            text: Some("Paul, the quote for the compression coil is attached.".into()),
            html: Some(
                "<p>Paul, the quote for the <b>compression coil</b> is attached.</p>".into(),
            ),
            submitted_by: None,
            tracking_token: Some(TOKEN.into()),
        }),
    }
}

/// The send intent as the engine decides it (R75): the subject with the row's token (R63,
/// R64), the key naming the mailbox, the row and its version.
fn send_intent(rec: &Record, mailbox: &str) -> Event {
    let RecordBody::Email(e) = &rec.body else {
        unreachable!()
    };
    let (subject, _) = outgoing::subject(
        &e.subject,
        e.tracking_token.as_deref(),
        &EmailOptions::default(),
    );
    Event::CreateIntent(CreateIntent {
        basis: Basis::default(),
        record: rec.id.clone(),
        remote: None,
        target: Side::MailServer,
        item: ItemWrite {
            title: subject.subject,
            version: rec.version,
            show_as: None,
            reminder: false,
            notify_attendees: false,
            attendees: 2,
            completed: false,
            actual_start: None,
        },
        key: format!("{mailbox}/{}/send/v{}", rec.id, rec.version),
    })
}

fn key_of(event: &Event) -> &str {
    match event {
        Event::CreateIntent(c) => &c.key,
        _ => unreachable!(),
    }
}

fn smtp(port: u16, state: &Path) -> SmtpConfig {
    let mut c = SmtpConfig::new("127.0.0.1", port, state);
    c.tls = SmtpTls::None;
    c.timeout = Duration::from_secs(10);
    c
}

fn imap((user, password): (&str, &str)) -> ImapConfig {
    let mut c = ImapConfig::new("127.0.0.1", user, Secret::new(password));
    c.port = IMAP;
    c.security = Security::Plain;
    c.timeout = Duration::from_secs(10);
    c
}

/// The messages with `message_id` in `folder` of `user`, as Python's imaplib + email read
/// them; waits up to `wait` for `expected` of them.
fn read_back(
    (user, password): (&str, &str),
    folder: &str,
    message_id: &str,
    expected: usize,
    wait: Duration,
) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/read_mail.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([
            "127.0.0.1",
            &IMAP.to_string(),
            user,
            password,
            folder,
            message_id,
        ])
        .arg(expected.to_string())
        .arg(wait.as_secs_f64().to_string())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["messages"].as_array().cloned().unwrap_or_default()
}

fn records(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("sent"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_email_pending_send_reaches_its_recipients_once_with_its_token_and_message_id_and_is_copied_to_sent()
 {
    require_servers(&[POSTFIX, IMAP]);
    let run = run_id();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mut connector = OutgoingConnector::new(OutgoingConfig {
        address: JAYNE.0.into(),
        smtp: smtp(POSTFIX, &state),
        imap: Some(imap(JAYNE)),
        save_sent_copy: true,
    });
    let rec = email_row(
        &format!("eml-{run}"),
        &format!("Your quote {run}"),
        party(Some("jayne"), JAYNE.0, "Jayne Cobb"),
    );
    let send = send_intent(&rec, "mbx-jayne");
    let message_id = outgoing::message_id(key_of(&send), JAYNE.0);

    let outcome = connector.execute(intent(EventId::from_u128(1), &send, Some(&rec)));
    let Outcome::Succeeded(ok) = outcome else {
        panic!("the send failed: {outcome:?}")
    };
    assert_eq!(
        ok.remote.as_ref().map(|r| r.as_str()),
        Some(message_id.as_str())
    );
    assert_eq!(records(&state).len(), 1, "the send is recorded");

    // A retry of the same intent (the outcome was not recorded): nothing is sent again.
    assert!(matches!(
        connector.execute(intent(EventId::from_u128(1), &send, Some(&rec))),
        Outcome::Succeeded(_)
    ));
    // A crash between the send and its record: the record is gone, the copy in Sent is
    // found by its Message-ID, and nothing is sent again either.
    for r in records(&state) {
        std::fs::remove_file(r).unwrap();
    }
    let again = connector.execute(intent(EventId::from_u128(1), &send, Some(&rec)));
    assert!(matches!(again, Outcome::Succeeded(_)), "{again:?}");
    assert_eq!(records(&state).len(), 1, "the copy found is recorded");

    let subject = format!("Your quote {run} {TOKEN}");
    for (who, folder) in [(PAUL, "INBOX"), (ZOE, "INBOX"), (JAYNE, "Sent")] {
        // Waits for a second copy that must never come.
        let got = read_back(who, folder, &message_id, 2, Duration::from_secs(3));
        assert_eq!(
            got.len(),
            1,
            "{} {folder}: exactly one copy: {got:?}",
            who.0
        );
        let m = &got[0];
        assert_eq!(m["message_id"], message_id);
        assert_eq!(
            m["subject"], subject,
            "R63: the tracking token is in the subject"
        );
        assert_eq!(m["from"], format!("Jayne Cobb <{}>", JAYNE.0));
        assert_eq!(
            m["sender"],
            serde_json::Value::Null,
            "not sent on behalf of anyone"
        );
        assert_eq!(m["to"], format!("Paul Blart <{}>", PAUL.0));
        assert_eq!(m["cc"], format!("Zoe Washburne <{}>", ZOE.0));
        assert_eq!(m["content_type"], "multipart/alternative");
        assert_eq!(
            m["text"],
            "Paul, the quote for the compression coil is attached."
        );
        assert!(
            m["html"]
                .as_str()
                .unwrap()
                .contains("<b>compression coil</b>"),
            "{m}"
        );
        assert!(m["date"].is_string());
        if folder == "Sent" {
            let flags: Vec<&str> = m["flags"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f.as_str())
                .collect();
            assert!(flags.contains(&"\\Seen"), "the copy is read: {flags:?}");
        }
    }
}

#[test]
fn r78_an_email_sent_on_behalf_of_another_names_the_mailbox_as_sender_and_a_retry_without_imap_relies_on_its_record()
 {
    require_servers(&[POSTFIX, IMAP]);
    let run = run_id();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // Jayne's mailbox sends for the sales queue; no IMAP: no Sent folder search, no copy.
    let mut connector = OutgoingConnector::new(OutgoingConfig {
        address: JAYNE.0.into(),
        smtp: smtp(POSTFIX, &state),
        imap: None,
        save_sent_copy: false,
    });
    let mut rec = email_row(
        &format!("eml-queue-{run}"),
        &format!("Parts on order {run}"),
        party(None, "sales@serenity.example", "Serenity Sales"),
    );
    if let RecordBody::Email(e) = &mut rec.body {
        e.submitted_by = Some(UserId::new("jayne"));
        e.html = None;
    }
    let send = send_intent(&rec, "mbx-jayne");
    let message_id = outgoing::message_id(key_of(&send), "sales@serenity.example");
    for attempt in 0..2 {
        let outcome = connector.execute(intent(EventId::from_u128(7), &send, Some(&rec)));
        assert!(
            matches!(outcome, Outcome::Succeeded(_)),
            "attempt {attempt}: {outcome:?}"
        );
    }
    let got = read_back(PAUL, "INBOX", &message_id, 2, Duration::from_secs(3));
    assert_eq!(got.len(), 1, "exactly one copy: {got:?}");
    let m = &got[0];
    assert_eq!(m["from"], "Serenity Sales <sales@serenity.example>");
    assert_eq!(m["sender"], JAYNE.0, "R78: the mailbox that sent it");
    assert_eq!(m["content_type"], "text/plain");
    assert_eq!(
        read_back(JAYNE, "Sent", &message_id, 1, Duration::from_millis(200)).len(),
        0,
        "no copy without the option"
    );
}

#[test]
fn r77_a_452_or_421_answer_keeps_the_email_pending_and_the_send_after_it_goes_out_once() {
    for (code, answer, kind) in [
        (
            452,
            "452 4.5.3 Too many recipients this hour",
            ErrorKind::Quota,
        ),
        (421, "421 4.7.0 Try again later", ErrorKind::RateLimited),
    ] {
        let busy = std::sync::Arc::new(std::sync::Mutex::new(true));
        let still = busy.clone();
        let answer = answer.to_string();
        let server = FakeSmtp::start(move |_| {
            if *still.lock().unwrap() {
                answer.clone()
            } else {
                "250 2.1.5 Ok".to_string()
            }
        });
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let mut connector = OutgoingConnector::new(OutgoingConfig {
            address: JAYNE.0.into(),
            smtp: smtp(server.port, &state),
            imap: None,
            save_sent_copy: false,
        });
        let rec = email_row(
            &format!("eml-busy-{code}"),
            "Your quote",
            party(Some("jayne"), JAYNE.0, "Jayne Cobb"),
        );
        let send = send_intent(&rec, "mbx-jayne");
        let failure = match connector.execute(intent(EventId::from_u128(3), &send, Some(&rec))) {
            Outcome::Failed(f) => f,
            other => panic!("{code}: expected intent_failed, got {other:?}"),
        };
        assert_eq!(
            failure.error.kind(),
            kind,
            "{code}: {}",
            failure.error.message
        );
        assert!(
            failure.error.message.contains(&code.to_string()),
            "{}",
            failure.error.message
        );
        // The domain keeps it pending (R77): transient, for the item only, a throttled send.
        assert_eq!(
            classify(&failure.error, ErrorSubject::Item).0,
            ErrorClass::Transient
        );
        assert!(outgoing::throttled(&failure.error), "{code} is R77's");
        assert!(server.accepted().is_empty(), "{code}: nothing was sent");
        assert!(records(&state).is_empty(), "{code}: nothing recorded");

        // The server takes mail again: the retry sends it, once.
        *busy.lock().unwrap() = false;
        for _ in 0..2 {
            let ok = connector.execute(intent(EventId::from_u128(3), &send, Some(&rec)));
            assert!(matches!(ok, Outcome::Succeeded(_)), "{code}: {ok:?}");
        }
        let mut accepted = server.accepted();
        accepted.sort();
        assert_eq!(accepted, [PAUL.0, ZOE.0], "{code}: one message to both");
    }
}
