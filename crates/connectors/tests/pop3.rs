//! The POP3 connector against the real Dovecot of `scripts/services.sh` (POP3 on
//! 127.0.0.1:1110). Messages reach the maildrop of `linda@customer.example` (a user whose
//! mail no other test reads) through Python's imaplib, as a delivery or another mail program
//! would put them there; each test looks only at messages with Message-IDs of its own. No
//! server is a failure naming the command that starts it.

use ledgersync_connectors::imap::Security;
use ledgersync_connectors::pop3::{Pop3Config, Pop3Connector, Pop3Cursor, pop3_remote};
use ledgersync_connectors::{Connector, Cursor, ListingEnd, Observation, Secret};
use ledgersync_domain::ErrorKind;
use ledgersync_domain::event::{EmailFolder, EmailReceived};
use proptest::prelude::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const USER: &str = "linda@customer.example";
const PASSWORD: &str = "lindapw";

fn config() -> Pop3Config {
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", 1110)).is_ok(),
        "no POP3 server is listening on 127.0.0.1:1110: run `scripts/services.sh start` \
         (Dovecot serves POP3 there)"
    );
    let mut c = Pop3Config::new("127.0.0.1", USER, Secret::new(PASSWORD));
    c.port = 1110;
    c.security = Security::Plain;
    c.timeout = Duration::from_secs(20);
    c
}

/// A Message-ID of this test run.
fn id(name: &str) -> String {
    format!(
        "{name}-{}-{}@customer.example",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Another client APPENDs a message of about `size` bytes to the INBOX.
fn deliver(message_id: &str, subject: &str, size: usize) {
    let mut raw = format!(
        "From: Zoe <zoe@customer.example>\r\nTo: {USER}\r\nCc: paul@serenity.example\r\n\
         Subject: {subject}\r\nMessage-ID: <{message_id}>\r\nIn-Reply-To: <offer@serenity.example>\r\n\
         Date: Tue, 05 Mar 2024 11:00:00 +0100\r\n\r\n"
    );
    while raw.len() < size {
        raw.push_str("Some text of the body.\r\n");
    }
    let script = "import imaplib, sys\n\
        m = imaplib.IMAP4('127.0.0.1', 1143)\n\
        m.login(sys.argv[1], sys.argv[2])\n\
        typ, data = m.append('INBOX', None, None, sys.stdin.buffer.read())\n\
        assert typ == 'OK', data\n\
        m.logout()\n";
    let mut child = Command::new("python3")
        .args(["-c", script, USER, PASSWORD])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(raw.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "APPEND: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn emails(listing: &ledgersync_connectors::Listing) -> Vec<&EmailReceived> {
    listing
        .observations
        .iter()
        .filter_map(|o| match o {
            Observation::Email(e) => Some(e.as_ref()),
            _ => None,
        })
        .collect()
}

#[test]
fn each_message_is_reported_once_with_its_headers_and_nothing_is_deleted() {
    let mut pop3 = Pop3Connector::new(config());
    let first_id = id("first");
    deliver(&first_id, "RE: Engine parts", 300);
    let first = pop3.list_changes(&Cursor::initial());
    assert!(
        matches!(first.end, ListingEnd::Completed(_)),
        "{:?}",
        first.end
    );
    let all = emails(&first);
    let mine: Vec<_> = all.iter().filter(|e| e.message_id == first_id).collect();
    assert_eq!(mine.len(), 1, "{all:?}");
    let e = mine[0];
    assert_eq!(e.subject, "RE: Engine parts");
    assert_eq!(e.from, "zoe@customer.example");
    assert_eq!(e.to, vec![USER.to_string()]);
    assert_eq!(e.cc, vec!["paul@serenity.example".to_string()]);
    assert_eq!(e.in_reply_to.as_deref(), Some("offer@serenity.example"));
    assert_eq!(e.folder, EmailFolder::Inbox);
    assert!(e.remote.as_str().starts_with("pop3/"), "{}", e.remote);
    assert!(
        e.received.0 > 0,
        "the Date header stands in for the arrival time"
    );

    // From the cursor: nothing, then exactly the next message.
    let again = pop3.list_changes(&first.cursor);
    assert!(
        emails(&again).iter().all(|e| e.message_id != first_id),
        "a message reported twice"
    );
    let second_id = id("second");
    deliver(&second_id, "RE: Engine parts, again", 300);
    let next = pop3.list_changes(&again.cursor);
    let new: Vec<_> = emails(&next)
        .into_iter()
        .filter(|e| e.message_id == first_id || e.message_id == second_id)
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0].message_id, second_id);

    // Nothing was deleted: a listing from the start reports both.
    let fresh = Pop3Connector::new(config()).list_changes(&Cursor::initial());
    let both = emails(&fresh)
        .iter()
        .filter(|e| e.message_id == first_id || e.message_id == second_id)
        .count();
    assert_eq!(both, 2);
}

#[test]
fn a_message_over_the_limit_is_a_too_large_failure_and_the_others_are_read() {
    let mut c = config();
    c.max_message_bytes = 1_000;
    let small = id("small");
    let big = id("big");
    deliver(&small, "Small", 300);
    deliver(&big, "Big", 5_000);
    let listing = Pop3Connector::new(c).list_changes(&Cursor::initial());
    assert!(matches!(listing.end, ListingEnd::Completed(_)));
    assert!(emails(&listing).iter().any(|e| e.message_id == small));
    assert!(emails(&listing).iter().all(|e| e.message_id != big));
    let failure = listing
        .failures
        .iter()
        .find(|f| f.kind == ErrorKind::TooLarge)
        .expect("a too_large failure");
    assert!(
        failure.error.contains("email_max_message_mib"),
        "{}",
        failure.error
    );
    assert!(failure.item.starts_with("pop3/"), "{}", failure.item);
}

#[test]
fn a_wrong_password_fails_the_listing_as_auth_and_is_never_shown() {
    let mut c = config();
    let wrong = "not-lindas-password-42";
    c.password = Secret::new(wrong);
    let cursor = Cursor::from_text(Pop3Cursor::default().to_text());
    let listing = Pop3Connector::new(c).list_changes(&cursor);
    match &listing.end {
        ListingEnd::Failed(f) => {
            assert_eq!(f.error.kind(), ErrorKind::Auth, "{:?}", f.error);
            assert!(!f.error.message.contains(wrong), "{}", f.error.message);
            assert!(
                f.error.message.contains("127.0.0.1:1110"),
                "{}",
                f.error.message
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(listing.cursor, cursor, "the cursor stays");
}

#[test]
fn a_cursor_that_is_not_a_pop3_cursor_fails_the_listing() {
    let cursor = Cursor::from_text("imap-cursor 1\nINBOX 1 2 -");
    let listing = Pop3Connector::new(config()).list_changes(&cursor);
    match &listing.end {
        ListingEnd::Failed(f) => assert_eq!(f.error.kind(), ErrorKind::CursorInvalid),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nothing_listening_is_a_network_failure() {
    let mut c = config();
    c.port = 1;
    let listing = Pop3Connector::new(c).list_changes(&Cursor::initial());
    match &listing.end {
        ListingEnd::Failed(f) => assert_eq!(f.error.kind(), ErrorKind::Network, "{:?}", f.error),
        other => panic!("{other:?}"),
    }
}

#[test]
fn test_connection_logs_in_and_counts_the_maildrop() {
    let found = Pop3Connector::new(config())
        .test_connection()
        .expect("a login");
    assert!(found.contains("127.0.0.1:1110"), "{found}");
}

#[test]
fn the_remote_of_a_message_names_its_unique_id() {
    assert_eq!(
        pop3_remote("00000001a1b2c3d4").as_str(),
        "pop3/00000001a1b2c3d4"
    );
}

proptest! {
    #[test]
    fn a_cursor_round_trips(ids in proptest::collection::btree_set("[!-~]{1,70}", 0..20)) {
        let cursor = Pop3Cursor { seen: ids };
        prop_assert_eq!(Pop3Cursor::from_text(&cursor.to_text()), Ok(cursor));
    }

    #[test]
    fn any_text_reads_as_a_cursor_or_an_error_never_a_panic(text in ".{0,200}") {
        let _ = Pop3Cursor::from_text(&text);
    }
}
