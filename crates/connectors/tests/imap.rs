//! The IMAP reading layer against a real Dovecot (`support/imap.rs`): first and incremental
//! reads, a message moved into a tracked folder, keyword changes (CONDSTORE), a folder
//! recreated under the same name, the size limit, login and connection failures, and the
//! cursor text.

#[path = "support/imap.rs"]
mod imap_support;

use imap_support::{APPEND_DATE_MS, PASSWORD, TestFolder, config, message, other_client};
use ledgersync_connectors::Secret;
use ledgersync_connectors::imap::{
    FetchedMessage, FolderCursor, ImapCursor, ImapRead, ImapReader, KeywordChange, Security,
};
use ledgersync_domain::ErrorKind;
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn reader(folders: &[&str]) -> ImapReader {
    ImapReader::connect(&config(folders)).unwrap_or_else(|e| panic!("connect: {e}"))
}

fn read(r: &mut ImapReader, cursor: &ImapCursor) -> ImapRead {
    r.read(cursor).unwrap_or_else(|e| panic!("read: {e}"))
}

fn in_folder<'a>(read: &'a ImapRead, folder: &str) -> Vec<&'a FetchedMessage> {
    read.messages
        .iter()
        .filter(|m| m.folder == folder)
        .collect()
}

fn changes_in<'a>(read: &'a ImapRead, folder: &str) -> Vec<&'a KeywordChange> {
    read.keyword_changes
        .iter()
        .filter(|c| c.folder == folder)
        .collect()
}

fn message_id(m: &FetchedMessage) -> &str {
    m.headers
        .as_ref()
        .and_then(|h| h.message_id.as_deref())
        .unwrap_or_else(|| panic!("message {} has no Message-ID: {m:?}", m.uid))
}

#[test]
fn first_read_then_nothing_new_then_exactly_the_next_message() {
    let folder = TestFolder::new("first");
    let ids: Vec<String> = (1..=3)
        .map(|n| format!("first-{n}-{}@customer.example", folder.name.len()))
        .collect();
    let raws: Vec<Vec<u8>> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| message(id, &format!("Offer {n}"), 200))
        .collect();
    for raw in &raws {
        folder.append(raw, "");
    }
    let mut r = reader(&[&folder.name]);
    assert!(r.has_condstore(), "Dovecot advertises CONDSTORE");

    let first = read(&mut r, &ImapCursor::default());
    assert_eq!(
        first.sent.as_deref(),
        Some("Sent"),
        "the read names the \\Sent folder"
    );
    let got = in_folder(&first, &folder.name);
    assert_eq!(got.len(), 3, "{got:#?}");
    for (n, m) in got.iter().enumerate() {
        let h = m.headers.as_ref().expect("headers of a small message");
        assert_eq!(h.message_id.as_deref(), Some(ids[n].as_str()));
        assert_eq!(h.in_reply_to, Some(format!("parent-{}", ids[n])));
        assert_eq!(
            h.references,
            [format!("root-{}", ids[n]), format!("parent-{}", ids[n])]
        );
        assert_eq!(h.thread_index, Some(format!("AQHZ{}", ids[n].len())));
        assert_eq!(h.subject, Some(format!("Offer {n}")));
        assert_eq!(h.from.as_deref(), Some("zoe@customer.example"));
        assert_eq!(h.to, ["river@customer.example", "jayne@serenity.example"]);
        assert_eq!(h.cc, ["linda@customer.example"]);
        assert!(h.bcc.is_empty());
        assert_eq!(h.date, Some(APPEND_DATE_MS), "11:00 +0100 is 10:00 UTC");
        assert_eq!(m.internal_date_ms, APPEND_DATE_MS);
        assert_eq!(m.size, raws[n].len() as u64);
        assert!(!m.too_large);
        assert!(
            !m.keywords.iter().any(|k| k == "\\Seen"),
            "appended unseen: {:?}",
            m.keywords
        );
    }
    let uids: Vec<u32> = got.iter().map(|m| m.uid).collect();
    assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
    let state = &first.cursor.folders[&folder.name];
    assert_eq!(state.uidvalidity, got[0].uidvalidity);
    assert_eq!(state.uidnext, uids[2] + 1);
    assert!(state.highestmodseq.is_some());
    assert!(first.cursor.folders.contains_key("INBOX"));
    assert!(first.resets.is_empty());

    // Nothing new, and reading did not mark anything \Seen (that would be a keyword change).
    let second = read(&mut r, &first.cursor);
    assert!(in_folder(&second, &folder.name).is_empty(), "{second:#?}");
    assert!(changes_in(&second, &folder.name).is_empty(), "{second:#?}");
    assert_eq!(second.cursor.folders[&folder.name], *state);

    // One more message: exactly that one (`N:*` would also name the last one read).
    let fourth = format!("first-4-{}@customer.example", folder.name.len());
    folder.append(&message(&fourth, "Offer 4", 200), "(\\Seen)");
    let third = read(&mut r, &second.cursor);
    let got = in_folder(&third, &folder.name);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(message_id(got[0]), fourth);
    assert!(got[0].uid > uids[2]);
    assert!(got[0].keywords.iter().any(|k| k == "\\Seen"));
    assert_eq!(third.cursor.folders[&folder.name].uidnext, got[0].uid + 1);

    // A message that came and went between two reads: `N:*` still names the last message
    // (below N), which is not new.
    let fleeting = format!("first-5-{}@customer.example", folder.name.len());
    folder.append(&message(&fleeting, "Gone", 200), "");
    other_client(&["expunge", &folder.name, &fleeting], b"");
    let fourth_read = read(&mut r, &third.cursor);
    assert!(
        in_folder(&fourth_read, &folder.name).is_empty(),
        "{fourth_read:#?}"
    );
    assert!(
        fourth_read.cursor.folders[&folder.name].uidnext
            > third.cursor.folders[&folder.name].uidnext
    );
}

#[test]
fn a_message_moved_from_inbox_into_a_tracked_folder_is_seen_there() {
    let folder = TestFolder::new("moved");
    let id = format!("moved-{}@customer.example", folder.name.replace('/', "-"));
    let mut r = reader(&[&folder.name]);
    let start = read(&mut r, &ImapCursor::default());
    assert!(in_folder(&start, &folder.name).is_empty());

    other_client(&["append", "INBOX", ""], &message(&id, "Moved", 100));
    let before = read(&mut r, &start.cursor);
    let inbox: Vec<_> = in_folder(&before, "INBOX")
        .into_iter()
        .filter(|m| message_id(m) == id)
        .collect();
    assert_eq!(inbox.len(), 1, "read in INBOX first: {before:#?}");

    other_client(&["move", "INBOX", &folder.name, &id], b"");
    let after = read(&mut r, &before.cursor);
    let moved = in_folder(&after, &folder.name);
    assert_eq!(moved.len(), 1, "{after:#?}");
    assert_eq!(message_id(moved[0]), id);
    assert!(
        !after.messages.iter().any(|m| m.folder == "INBOX"
            && m.headers.as_ref().and_then(|h| h.message_id.as_deref()) == Some(&id)),
        "not again in INBOX"
    );
}

#[test]
fn a_keyword_set_by_another_client_is_a_keyword_change() {
    let folder = TestFolder::new("keyword");
    let id = format!("kw-{}@customer.example", folder.name.replace('/', "-"));
    let other = format!(
        "kw-other-{}@customer.example",
        folder.name.replace('/', "-")
    );
    folder.append(&message(&id, "Track me", 100), "");
    folder.append(&message(&other, "Leave me", 100), "");
    let mut r = reader(&[&folder.name]);
    let first = read(&mut r, &ImapCursor::default());
    let got = in_folder(&first, &folder.name);
    assert_eq!(got.len(), 2);
    let uid = got.iter().find(|m| message_id(m) == id).unwrap().uid;

    other_client(&["keyword", &folder.name, &id, "$CRMTracked"], b"");
    let next = read(&mut r, &first.cursor);
    assert!(in_folder(&next, &folder.name).is_empty(), "{next:#?}");
    let changes = changes_in(&next, &folder.name);
    assert_eq!(
        changes.len(),
        1,
        "only the message with the keyword: {changes:#?}"
    );
    assert_eq!(changes[0].uid, uid);
    assert!(
        changes[0].keywords.iter().any(|k| k == "$CRMTracked"),
        "{changes:?}"
    );

    let again = read(&mut r, &next.cursor);
    assert!(changes_in(&again, &folder.name).is_empty(), "{again:#?}");
}

#[test]
fn a_folder_recreated_under_the_same_name_is_read_again_from_the_start() {
    let folder = TestFolder::new("recreated");
    let old = format!("old-{}@customer.example", folder.name.replace('/', "-"));
    let new = format!("new-{}@customer.example", folder.name.replace('/', "-"));
    folder.append(&message(&old, "Old", 100), "");
    let mut r = reader(&[&folder.name]);
    let first = read(&mut r, &ImapCursor::default());
    assert_eq!(in_folder(&first, &folder.name).len(), 1);

    other_client(&["delete", &folder.name], b"");
    let gone = r
        .read(&first.cursor)
        .expect_err("a tracked folder is missing");
    assert_eq!(gone.kind, ErrorKind::NotFound, "{gone}");
    assert!(gone.message.contains(&folder.name), "{gone}");

    let mut r = reader(&[&folder.name]);
    other_client(&["create", &folder.name], b"");
    folder.append(&message(&new, "New", 100), "");
    let next = read(&mut r, &first.cursor);
    assert_eq!(next.resets, std::slice::from_ref(&folder.name), "{next:#?}");
    let got = in_folder(&next, &folder.name);
    assert_eq!(got.len(), 1, "only what the new folder holds: {got:#?}");
    assert_eq!(message_id(got[0]), new);
    assert_ne!(
        next.cursor.folders[&folder.name].uidvalidity,
        first.cursor.folders[&folder.name].uidvalidity
    );

    let after = read(&mut r, &next.cursor);
    assert!(after.resets.is_empty());
    assert!(in_folder(&after, &folder.name).is_empty());
}

#[test]
fn a_message_over_the_size_limit_is_reported_without_headers() {
    let folder = TestFolder::new("large");
    let small = format!("small-{}@customer.example", folder.name.replace('/', "-"));
    let large = format!("large-{}@customer.example", folder.name.replace('/', "-"));
    folder.append(&message(&small, "Small", 500), "");
    let big = message(&large, "Large", 50 * 1024);
    folder.append(&big, "");
    folder.append(
        &message(&small.replace("small", "small2"), "Small 2", 500),
        "",
    );
    let mut c = config(&[&folder.name]);
    c.max_message_bytes = 10 * 1024;
    let mut r = ImapReader::connect(&c).unwrap();
    let got = read(&mut r, &ImapCursor::default());
    let got = in_folder(&got, &folder.name);
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(message_id(got[0]), small);
    assert!(got[1].too_large);
    assert!(got[1].headers.is_none());
    assert_eq!(got[1].size, big.len() as u64);
    assert!(!got[0].too_large && !got[2].too_large);
    assert_eq!(message_id(got[2]), small.replace("small", "small2"));
}

#[test]
fn folders_are_inbox_the_tracked_ones_and_sent() {
    let folder = TestFolder::new("listed");
    let mut r = reader(&[&folder.name]);
    let folders = r.folders().unwrap();
    assert_eq!(folders[0].name, "INBOX");
    assert_eq!(folders[1].name, folder.name);
    let sent = folders
        .iter()
        .find(|f| f.special_use.as_deref() == Some("\\Sent"))
        .expect("Dovecot's Sent folder is marked \\Sent");
    assert_eq!(sent.name, "Sent");
    assert!(folders.iter().all(|f| f.uidvalidity > 0 && f.uidnext > 0));

    let mut outside = reader(&["Trash"]);
    let e = outside.folders().expect_err("Trash is not under INBOX");
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.message.contains("`Trash`"), "{e}");

    let many: Vec<String> = (0..26).map(|n| format!("INBOX/f{n}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let e = ImapReader::connect(&config(&many)).expect_err("26 tracked folders");
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.message.contains("26 tracked folders"), "{e}");

    let missing = format!("{}-missing", folder.name);
    let mut absent = reader(&[&missing]);
    let e = absent.folders().expect_err("no such folder");
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains(&missing), "{e}");
}

#[test]
fn a_wrong_password_is_auth_and_is_never_shown() {
    let mut c = config(&[]);
    let wrong = format!("{PASSWORD}-wrong-Xq7");
    c.password = Secret::new(wrong.clone());
    let e = ImapReader::connect(&c).expect_err("wrong password");
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(!e.message.contains(&wrong), "{e}");
    assert!(!format!("{e:?} {c:?}").contains(&wrong));
    assert!(e.message.contains(&c.server()), "{e}");
}

#[test]
fn nothing_listening_is_a_network_error() {
    let mut c = config(&[]);
    c.port = 1;
    let e = ImapReader::connect(&c).expect_err("nothing on port 1");
    assert_eq!(e.kind, ErrorKind::Network, "{e}");
    assert!(e.message.contains("127.0.0.1:1"), "{e}");
}

#[test]
fn a_message_that_arrives_between_two_idles_is_reported_by_the_next() {
    let folder = TestFolder::new("idle-gap");
    let mut r = reader(&[&folder.name]);
    assert_eq!(
        r.idle_once(&folder.name, Duration::from_millis(300)),
        Ok(false)
    );
    // Not idling now: the server tells nobody.
    let id = format!("gap-{}@customer.example", folder.name.replace('/', "-"));
    folder.append(&message(&id, "Between", 100), "");
    let asked = Instant::now();
    assert_eq!(r.idle_once(&folder.name, Duration::from_secs(20)), Ok(true));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "reported at once, not at the end of the IDLE: {:?}",
        asked.elapsed()
    );
    // Reported once: the next call waits again.
    assert_eq!(
        r.idle_once(&folder.name, Duration::from_millis(300)),
        Ok(false)
    );
}

#[test]
fn a_reader_dropped_inside_an_async_task_logs_out_without_a_panic() {
    let r = reader(&[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A service that stops drops its connectors from an async task.
    runtime.block_on(async move { drop(r) });
}

#[test]
fn idle_wakes_up_when_another_client_appends() {
    let folder = TestFolder::new("idle");
    let mut r = reader(&[&folder.name]);
    let quiet = Instant::now();
    let changed = r.idle_once(&folder.name, Duration::from_millis(700));
    assert_eq!(changed, Ok(false), "nothing happened in the folder");
    assert!(quiet.elapsed() >= Duration::from_millis(600));

    let name = folder.name.clone();
    let waiter = std::thread::spawn(move || {
        let changed = r.idle_once(&name, Duration::from_secs(20));
        (changed, Instant::now(), r)
    });
    // Time for the reader to open the folder and start IDLE (a few milliseconds).
    std::thread::sleep(Duration::from_millis(500));
    let id = format!("idle-{}@customer.example", folder.name.replace('/', "-"));
    folder.append(&message(&id, "Wake up", 100), "");
    let appended = Instant::now();
    let (changed, woke, mut r) = waiter.join().unwrap();
    assert_eq!(changed, Ok(true));
    assert!(
        woke.saturating_duration_since(appended) < Duration::from_secs(2),
        "woken {:?} after the APPEND",
        woke.saturating_duration_since(appended)
    );

    // The session goes on after IDLE.
    let after = read(&mut r, &ImapCursor::default());
    let got = in_folder(&after, &folder.name);
    assert_eq!(got.len(), 1);
    assert_eq!(message_id(got[0]), id);
}

/// A server on a free loopback port that accepts one connection, writes `greeting` and then
/// holds the connection open without a word more until the test ends.
fn fake_server(greeting: &'static [u8]) -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            use std::io::{Read, Write};
            let _ = stream.write_all(greeting);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.read(&mut [0u8; 256]);
        }
    });
    (port, handle)
}

#[test]
fn a_server_that_never_greets_is_a_timeout() {
    let (port, server) = fake_server(b"");
    let mut c = config(&[]);
    c.port = port;
    c.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let e = ImapReader::connect(&c).expect_err("no greeting");
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(e.message.contains(&c.server()), "{e}");
    drop(server);
}

#[test]
fn a_server_that_is_not_imap_is_malformed() {
    let (port, server) = fake_server(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    let mut c = config(&[]);
    c.port = port;
    c.timeout = Duration::from_secs(3);
    let e = ImapReader::connect(&c).expect_err("not an IMAP greeting");
    assert_eq!(e.kind, ErrorKind::Malformed, "{e}");
    assert!(e.message.contains(&c.server()), "{e}");
    drop(server);
}

#[test]
fn tls_to_a_plain_text_port_is_a_tls_error() {
    let mut c = config(&[]);
    c.security = Security::Tls;
    let e = ImapReader::connect(&c).expect_err("port 1143 does not speak TLS");
    assert_eq!(e.kind, ErrorKind::Tls, "{e}");
    assert!(e.message.contains(&c.server()), "{e}");
}

#[test]
fn cursor_text_that_is_not_a_cursor_is_an_error() {
    for text in [
        "",
        "garbage",
        "imap-cursor 3\n",
        "imap-cursor 1\nfolder INBOX 1 2\n",
        "imap-cursor 1\nfolder INBOX x 2 - -\n",
        "imap-cursor 1\nfolder INBOX 1 2 -5 -\n",
        "imap-cursor 1\nfolder INBOX 1 2 - F1\n",
        "imap-cursor 1\nfolder IN%zzBOX 1 2 - -\n",
        "imap-cursor 1\nfolder INBOX 1 2 - -\nfolder INBOX 3 4 - -\n",
        "imap-cursor 1\nmailbox INBOX 1 2 - -\n",
        "imap-cursor 2\nfolder INBOX 1 2 - - k=x\n",
        "imap-cursor 2\nfolder INBOX 1 2 - - 7\n",
    ] {
        assert!(ImapCursor::from_text(text).is_err(), "{text:?}");
    }
    let empty = ImapCursor::from_text("imap-cursor 1\n").unwrap();
    assert!(empty.folders.is_empty());
}

fn folder_cursor() -> impl Strategy<Value = FolderCursor> {
    (
        proptest::option::of(".{0,12}"),
        any::<u32>(),
        any::<u32>(),
        proptest::option::of(any::<u64>()),
        proptest::collection::btree_set(any::<u32>(), 0..5),
    )
        .prop_map(
            |(mailbox_id, uidvalidity, uidnext, highestmodseq, tracked)| FolderCursor {
                mailbox_id,
                uidvalidity,
                uidnext,
                highestmodseq,
                tracked,
            },
        )
}

proptest! {
    #[test]
    fn cursor_text_round_trips(
        folders in proptest::collection::btree_map("[ -~\r\n\u{e4}%]{0,20}", folder_cursor(), 0..6)
    ) {
        let cursor = ImapCursor { folders };
        let text = cursor.to_text();
        prop_assert_eq!(ImapCursor::from_text(&text), Ok(cursor));
    }

    #[test]
    fn cursor_from_text_never_panics(text in "(imap-cursor 1\n)?[ -~\n%]{0,80}") {
        let _ = ImapCursor::from_text(&text);
    }
}

// ───────────── the incoming-email connector on top of the reader ─────────────

mod connector {
    use super::imap_support::{APPEND_DATE_MS, TestFolder, config, message};
    use ledgersync_connectors::imap::{ImapConnector, remote_of};
    use ledgersync_connectors::{Connector, Cursor, ListingEnd, Observation, Secret};
    use ledgersync_domain::ErrorKind;
    use ledgersync_domain::email::Manual;
    use ledgersync_domain::event::{EmailFacts, EmailFolder, EmailReceived, Workload};

    fn emails_in<'a>(obs: &'a [Observation], folder: &str) -> Vec<&'a EmailReceived> {
        obs.iter()
            .filter_map(|o| match o {
                Observation::Email(e) if e.remote.as_str().starts_with(&format!("{folder}/")) => {
                    Some(e.as_ref())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_listing_reports_each_new_message_once_as_email_received_and_a_large_one_as_a_failure() {
        let folder = TestFolder::new("connector");
        folder.append(&message("plain-1@customer.example", "Cargo offer", 200), "");
        folder.append(
            &message("kept-2@customer.example", "Photos from the dock", 200),
            "($CRMTracked)",
        );
        folder.append(&message("big-3@customer.example", "Manifest", 50_000), "");
        let mut c = config(&[&folder.name]);
        c.max_message_bytes = 10_000;
        let mut imap = ImapConnector::new(c);

        let first = imap.list_changes(&Cursor::initial());
        assert!(
            matches!(&first.end, ListingEnd::Completed(p) if p.workload == Workload::Incoming),
            "{:?}",
            first.end
        );
        let emails = emails_in(&first.observations, &folder.name);
        assert_eq!(emails.len(), 2, "{emails:#?}");
        let plain = emails
            .iter()
            .find(|e| e.subject == "Cargo offer")
            .expect("the plain message");
        assert_eq!(plain.message_id, "plain-1@customer.example");
        assert_eq!(plain.from, "zoe@customer.example");
        assert_eq!(
            plain.in_reply_to.as_deref(),
            Some("parent-plain-1@customer.example")
        );
        assert_eq!(plain.cc, vec!["linda@customer.example".to_string()]);
        assert_eq!(plain.received.0, APPEND_DATE_MS);
        assert_eq!(plain.folder, EmailFolder::Tracked(folder.name.clone()));
        assert_eq!(plain.manual, None);
        assert_eq!(
            plain.facts,
            EmailFacts::default(),
            "the engine looks the facts up"
        );
        let kept = emails
            .iter()
            .find(|e| e.subject == "Photos from the dock")
            .expect("the message with the tracking keyword");
        assert_eq!(kept.manual, Some(Manual::Category), "R56: tracked by hand");
        // The large one: an item failure naming its size and the limit, nothing else lost.
        let big: Vec<_> = first
            .failures
            .iter()
            .filter(|f| f.item.starts_with(&format!("{}/", folder.name)))
            .collect();
        assert_eq!(big.len(), 1, "{:#?}", first.failures);
        assert_eq!(big[0].kind, ErrorKind::TooLarge);
        assert!(
            big[0]
                .error
                .contains("larger than the limit of 10000 bytes"),
            "{}",
            big[0].error
        );

        // From the cursor: nothing new in the folder; then exactly the next message.
        let second = imap.list_changes(&first.cursor);
        assert!(emails_in(&second.observations, &folder.name).is_empty());
        folder.append(
            &message("next-4@customer.example", "RE: Cargo offer", 200),
            "",
        );
        let third = imap.list_changes(&second.cursor);
        let next = emails_in(&third.observations, &folder.name);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].subject, "RE: Cargo offer");
        let uid: Vec<&str> = next[0].remote.as_str().rsplitn(3, '/').collect();
        assert_eq!(
            next[0].remote,
            remote_of(
                &folder.name,
                uid[1].parse().unwrap(),
                uid[0].parse().unwrap()
            )
        );
    }

    use crate::other_client;

    #[test]
    fn the_tracking_keyword_set_or_removed_later_reports_the_message_again_and_other_flags_do_not()
    {
        let folder = TestFolder::new("connector-retrack");
        let mut imap = ImapConnector::new(config(&[&folder.name]));
        let id = format!("retrack-{}@customer.example", folder.name.replace('/', "-"));
        folder.append(&message(&id, "Engine noise", 200), "");
        let first = imap.list_changes(&Cursor::initial());
        let seen = emails_in(&first.observations, &folder.name);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].manual, None);
        let remote = seen[0].remote.clone();

        // Read by the user: another flag; nothing is reported.
        other_client(&["keyword", &folder.name, &id, "\\Seen"], b"");
        let read = imap.list_changes(&first.cursor);
        assert!(emails_in(&read.observations, &folder.name).is_empty());

        // The tracking keyword set: the message again, as it is now, same server id.
        other_client(&["keyword", &folder.name, &id, "$CRMTracked"], b"");
        let set = imap.list_changes(&read.cursor);
        let again = emails_in(&set.observations, &folder.name);
        assert_eq!(again.len(), 1, "{again:#?}");
        assert_eq!(again[0].remote, remote);
        assert_eq!(again[0].manual, Some(Manual::Category));
        assert_eq!(again[0].subject, "Engine noise", "read with its headers");

        // Removed: again, without it; then nothing more.
        other_client(&["unkeyword", &folder.name, &id, "$CRMTracked"], b"");
        let removed = imap.list_changes(&set.cursor);
        let again = emails_in(&removed.observations, &folder.name);
        assert_eq!(again.len(), 1, "{again:#?}");
        assert_eq!(again[0].remote, remote);
        assert_eq!(again[0].manual, None);
        let after = imap.list_changes(&removed.cursor);
        assert!(emails_in(&after.observations, &folder.name).is_empty());
    }

    #[test]
    fn a_bad_cursor_or_a_wrong_password_is_a_failed_listing_that_keeps_the_cursor() {
        let folder = TestFolder::new("connector-bad");
        let mut imap = ImapConnector::new(config(&[&folder.name]));
        let garbage = Cursor::from_text("not an imap cursor");
        let listing = imap.list_changes(&garbage);
        match &listing.end {
            ListingEnd::Failed(f) => assert_eq!(f.error.kind(), ErrorKind::CursorInvalid),
            other => panic!("{other:?}"),
        }
        assert_eq!(listing.cursor, garbage);

        let mut c = config(&[&folder.name]);
        c.password = Secret::new("not-the-password");
        let mut imap = ImapConnector::new(c);
        let listing = imap.list_changes(&Cursor::initial());
        match &listing.end {
            ListingEnd::Failed(f) => {
                assert_eq!(f.error.kind(), ErrorKind::Auth);
                assert!(!f.error.message.contains("not-the-password"));
            }
            other => panic!("{other:?}"),
        }
        assert!(listing.cursor.is_initial());
    }
}
