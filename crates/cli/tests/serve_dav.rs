//! `ledgersync serve` with CalDAV/CardDAV mailboxes on the real servers `scripts/services.sh`
//! starts: calendars, address books and task lists on Radicale (127.0.0.1:5232), meeting
//! messages sent through Postfix (127.0.0.1:2525) into the attendees' Dovecot INBOXes, read
//! back over IMAP (127.0.0.1:1143) by Python's imaplib, email and icalendar.
//!
//! Each test has collections of its own (a unique name under each user's Radicale home) and a
//! meeting row of its own (so its iCalendar UID is unique), so tests never see each other's
//! items or messages. A server that is not listening fails the test, naming the command that
//! starts it.
//!
//! What the tests do on the server is what a plain WebDAV client does (curl: GET, PUT with
//! If-Match, DELETE), followed by `mailbox sync` (a DAV server does not push: the user asks for
//! a cycle, which the running service runs at once). The test that stops the server mid-sync
//! runs a Radicale of its own (the venv of `scripts/services.sh`, a free port, a temporary
//! directory): the shared one is never stopped.

mod common;

use common::{DEADLINE, Serve, Site, ledgersync, stderr, stdout};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RADICALE: &str = "http://127.0.0.1:5232";
const PASSWORDS: [(&str, &str); 2] = [("jayne", "jaynepw"), ("paul", "paulpw")];

fn require_servers() {
    for (port, what) in [
        (5232, "Radicale (CalDAV/CardDAV)"),
        (2525, "Postfix (SMTP)"),
        (1143, "Dovecot (IMAP)"),
    ] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "{what} is not listening on 127.0.0.1:{port}: run `scripts/services.sh start` \
             (scripts/test does) before these tests"
        );
    }
}

fn password(user: &str) -> &'static str {
    PASSWORDS
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, p)| *p)
        .expect("a test user")
}

/// curl as a plain WebDAV client: the HTTP status and the body.
fn curl(
    user: &str,
    method: &str,
    url: &str,
    headers: &[&str],
    body: Option<&str>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .args(["-u", &format!("{user}:{}", password(user))]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if body.is_some() {
        // From standard input: a whole calendar is longer than an argument may be.
        cmd.args(["--data-binary", "@-"]);
    }
    let mut child = cmd
        .arg(url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run curl");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(body.unwrap_or_default().as_bytes())
            .expect("curl's input");
    }
    let out = child.wait_with_output().expect("run curl");
    assert!(
        out.status.success(),
        "curl {method} {url}: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').expect("a status line");
    (
        code.trim().parse().expect("an HTTP status"),
        body.to_owned(),
    )
}

/// A site whose two mailboxes (Jayne's and Paul's, as in the example organization) sync
/// collections of their own on Radicale; meeting messages go through Postfix.
struct DavSite {
    site: Site,
    tag: String,
}

impl DavSite {
    fn new(name: &str) -> Self {
        require_servers();
        let site = Site::new();
        let tag = format!(
            "{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        let mut text = format!(
            "[data]\ndir = \"{}\"\n\n[profiles.groupware]\nkind = \"caldav\"\nurl = \"{RADICALE}/\"\n\
             timeout_seconds = 10\n\n[profiles.groupware.smtp]\nhost = \"127.0.0.1\"\nport = 2525\n\
             tls = \"none\"\n",
            site.data.display()
        );
        for (user, pw) in PASSWORDS {
            let file = site.root.join(format!("{user}.password"));
            std::fs::write(&file, format!("{pw}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            let calendar = format!("/{user}/{tag}-calendar/");
            let contacts = format!("/{user}/{tag}-contacts/");
            let (code, body) = curl(
                user,
                "MKCALENDAR",
                &format!("{RADICALE}{calendar}"),
                &["Content-Type: application/xml"],
                Some(
                    "<?xml version=\"1.0\"?><C:mkcalendar xmlns:D=\"DAV:\" \
                     xmlns:C=\"urn:ietf:params:xml:ns:caldav\"><D:set><D:prop>\
                     <C:supported-calendar-component-set><C:comp name=\"VEVENT\"/>\
                     <C:comp name=\"VTODO\"/></C:supported-calendar-component-set>\
                     </D:prop></D:set></C:mkcalendar>",
                ),
            );
            assert_eq!(code, 201, "MKCALENDAR {calendar}: {body}");
            let (code, body) = curl(
                user,
                "MKCOL",
                &format!("{RADICALE}{contacts}"),
                &["Content-Type: application/xml"],
                Some(
                    "<?xml version=\"1.0\"?><D:mkcol xmlns:D=\"DAV:\" \
                     xmlns:CR=\"urn:ietf:params:xml:ns:carddav\"><D:set><D:prop><D:resourcetype>\
                     <D:collection/><CR:addressbook/></D:resourcetype></D:prop></D:set></D:mkcol>",
                ),
            );
            assert_eq!(code, 201, "MKCOL {contacts}: {body}");
            text.push_str(&format!(
                "\n[[mailbox]]\nid = \"mbx-{user}\"\nprofile = \"groupware\"\nusername = \"{user}\"\n\
                 password_file = \"{}\"\ncalendar = \"{calendar}\"\naddress_book = \"{contacts}\"\n",
                file.display()
            ));
        }
        std::fs::write(&site.config, text).unwrap();
        Self { site, tag }
    }

    /// The meeting's row id: unique to this test, so its UID is too.
    fn meeting(&self) -> String {
        format!("apt-{}", self.tag)
    }

    /// The contact rows of the example (Paul's), with ids of this test.
    fn linda(&self) -> String {
        format!("con-linda-{}", self.tag)
    }

    fn river(&self) -> String {
        format!("con-river-{}", self.tag)
    }

    fn calendar_url(&self, user: &str) -> String {
        format!("{RADICALE}/{user}/{}-calendar/", self.tag)
    }

    fn contacts_url(&self, user: &str) -> String {
        format!("{RADICALE}/{user}/{}-contacts/", self.tag)
    }

    /// The example organization with this test's meeting id, and a cadence of seconds.
    fn example(&self, extra: &[&str]) -> PathBuf {
        let out = ledgersync(&["example"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let mut text = [
            r#"{"kind": "setting_changed", "key": "schedule_act_min_seconds", "value": 1}"#,
            r#"{"kind": "setting_changed", "key": "schedule_act_max_seconds", "value": 2}"#,
        ]
        .join("\n");
        text.push('\n');
        for line in extra {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(
            &stdout(&out)
                .replace("apt-bike-repair", &self.meeting())
                .replace("con-linda-park", &self.linda())
                .replace("con-river-tam", &self.river()),
        );
        let file = self.site.root.join("example.jsonl");
        std::fs::write(&file, text).unwrap();
        file
    }

    fn apply(&self, lines: &str) {
        let file = self.site.root.join(format!(
            "change-{}.jsonl",
            Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id())
        ));
        std::fs::write(&file, lines).unwrap();
        let out = self.run(&["crm", "apply", file.to_str().unwrap()]);
        assert!(out.status.success(), "crm apply: {}", stderr(&out));
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec![
            "--config",
            self.site.config.to_str().unwrap(),
            "--data",
            self.site.data.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        ledgersync(&all)
    }

    #[allow(dead_code)]
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// `mailbox sync M` sent to the running service: a cycle of the mailbox now, as a user
    /// asks after changing something on the server (a DAV server does not push).
    fn sync_now(&self, mailbox: &str) {
        let out = self.run(&["mailbox", "sync", mailbox]);
        assert!(
            out.status.success(),
            "mailbox sync {mailbox}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).contains("pushed"), "{}", stdout(&out));
    }

    /// The open CRM commands, as `crm pending --json` prints them.
    fn pending(&self) -> Vec<Value> {
        let out = self.run(&["--json", "crm", "pending"]);
        assert!(out.status.success(), "crm pending: {}", stderr(&out));
        stdout(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn events(&self, mailbox: &str) -> Vec<Value> {
        let out = self.run(&["--json", "events", "--mailbox", mailbox]);
        assert!(out.status.success(), "events: {}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The items of a Radicale collection: (href, body), from a PROPFIND and a GET of each.
///
/// The PROPFIND asks for `resourcetype`, not `getetag`: Radicale 3.9 computes a collection's
/// own ETag after releasing its storage lock, so a `getetag` PROPFIND answers 500 when the
/// running service deletes an item at that moment.
fn items(user: &str, collection: &str) -> Vec<(String, String)> {
    let (code, body) = curl(
        user,
        "PROPFIND",
        collection,
        &["Depth: 1", "Content-Type: application/xml"],
        Some(
            "<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:prop><D:resourcetype/></D:prop></D:propfind>",
        ),
    );
    assert_eq!(code, 207, "PROPFIND {collection}: {body}");
    let path = collection.trim_start_matches(RADICALE);
    let mut hrefs: Vec<String> = body
        .split("href>")
        .filter_map(|s| s.strip_suffix("</").or_else(|| s.split("</").next()))
        .filter(|h| h.starts_with(path) && h.len() > path.len())
        .map(str::to_owned)
        .collect();
    hrefs.sort();
    hrefs.dedup();
    // An item deleted between the listing and its GET (the service is running) is gone.
    hrefs
        .into_iter()
        .filter_map(|h| {
            let (code, body) = curl(user, "GET", &format!("{RADICALE}{h}"), &[], None);
            if code == 404 {
                return None;
            }
            assert_eq!(code, 200, "GET {h}");
            Some((h, body))
        })
        .collect()
}

/// The meeting messages about `uid` in `address`'s Dovecot INBOX, as Python reads them.
fn inbox(address: &str, uid: &str) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/imap_inbox.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["127.0.0.1", "1143", address, inbox_password(address), uid])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "imap_inbox.py {address}: {}",
        stderr(&out)
    );
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn inbox_password(address: &str) -> &'static str {
    match address {
        "paul@serenity.example" => "paulpw",
        "jayne@serenity.example" => "jaynepw",
        "zoe@customer.example" => "zoepw",
        other => panic!("no test password for {other}"),
    }
}

fn wait_for<T>(serve: &Serve, what: &str, check: impl FnMut() -> Option<T>) -> T {
    serve.wait_for(what, check)
}

fn uid_of(body: &str) -> String {
    body.lines()
        .find_map(|l| l.trim_end().strip_prefix("UID:"))
        .expect("a UID")
        .to_owned()
}

/// Waits `calm` with nothing new in the mailbox's stream; returns its events.
fn settled(site: &DavSite, mailbox: &str, calm: Duration) -> Vec<Value> {
    let started = Instant::now();
    let mut last = site.events(mailbox).len();
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = site.events(mailbox).len();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= calm {
            return site.events(mailbox);
        }
        assert!(started.elapsed() < DEADLINE, "{mailbox} never settled");
    }
}

/// The item at `url` with its ETag, as a WebDAV client reads it before an edit.
fn get(user: &str, url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-f", "-w", "\n%header{etag}"])
        .args(["-u", &format!("{user}:{}", password(user))])
        .arg(url)
        .output()
        .expect("run curl");
    assert!(out.status.success(), "GET {url}: {}", stderr(&out));
    let text = stdout(&out);
    let (body, etag) = text.rsplit_once('\n').expect("an ETag line");
    assert!(!etag.trim().is_empty(), "GET {url}: no ETag");
    (etag.trim().to_owned(), body.to_owned())
}

/// The item at `url` written back as a WebDAV client does: `PUT` with `If-Match`.
fn put(user: &str, url: &str, etag: &str, body: &str) {
    let kind = if body.contains("BEGIN:VCARD") {
        "Content-Type: text/vcard; charset=utf-8"
    } else {
        "Content-Type: text/calendar; charset=utf-8"
    };
    let if_match = format!("If-Match: {etag}");
    let (code, answer) = curl(user, "PUT", url, &[kind, &if_match], Some(body));
    assert!(matches!(code, 201 | 204), "PUT {url}: {code} {answer}");
}

/// `body` with the first `NAME` property (its parameters dropped) set to `value`, or added
/// before the end of the first component when it has none.
fn with_property(body: &str, name: &str, value: &str) -> String {
    let mut lines: Vec<String> = body.lines().map(|l| l.trim_end().to_owned()).collect();
    let is = |l: &str| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(':') || rest.starts_with(';'))
    };
    let line = format!("{name}:{value}");
    if let Some(i) = lines.iter().position(|l| is(l)) {
        lines[i] = line;
        while lines.get(i + 1).is_some_and(|l| l.starts_with(' ')) {
            lines.remove(i + 1);
        }
    } else {
        let end = lines
            .iter()
            .position(|l| l.starts_with("END:") && l != "END:VCALENDAR")
            .or_else(|| lines.iter().position(|l| l.starts_with("END:")))
            .expect("an END line");
        lines.insert(end, line);
    }
    lines.join("\r\n") + "\r\n"
}

/// The URL of an item's href.
fn url(href: &str) -> String {
    format!("{RADICALE}{href}")
}

/// The events of `mailbox` of one `event_type`.
fn of_type(site: &DavSite, mailbox: &str, event_type: &str) -> Vec<Value> {
    site.events(mailbox)
        .into_iter()
        .filter(|e| e["event_type"] == event_type)
        .collect()
}

/// The `update_intent`s of `mailbox` that write to the CRM (an edit seen on the server).
fn updates_to_the_crm(site: &DavSite, mailbox: &str) -> Vec<Value> {
    of_type(site, mailbox, "update_intent")
        .into_iter()
        .filter(|e| e["payload"]["data"]["target"] == "Crm")
        .collect()
}

/// The meeting messages about `uid` in `address`'s INBOX that cancel it.
fn cancellations(address: &str, uid: &str) -> Vec<Value> {
    inbox(address, uid)
        .into_iter()
        .filter(|m| m["method"] == "CANCEL" || m["content_type_method"] == "CANCEL")
        .collect()
}

/// (record, remote, status) of each link of `mailbox`, as `mailbox show` lists them.
fn links(site: &DavSite, mailbox: &str) -> Vec<(String, String, String)> {
    let shown = site.json(&["mailbox", "show", mailbox]);
    let mut v: Vec<(String, String, String)> = shown["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| {
            (
                l["record"].as_str().unwrap_or_default().to_owned(),
                l["remote"].as_str().unwrap_or_default().to_owned(),
                l["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Starts `serve` on `site`, applies the example organization (and `extra` first), and waits
/// for the meeting in Jayne's and Paul's calendars, Paul's and Zoe's invitations, Paul's two
/// cards, and both mailboxes settled. The meeting's UID.
fn example_in_sync(site: &DavSite, extra: &[&str]) -> (Serve, String) {
    let serve = Serve::start(&site.site, "serve.log");
    site.apply(&std::fs::read_to_string(site.example(extra)).unwrap());
    let jayne = wait_for(&serve, "the meeting in Jayne's Radicale calendar", || {
        items("jayne", &site.calendar_url("jayne")).pop()
    });
    let uid = uid_of(&jayne.1);
    wait_for(&serve, "the meeting in Paul's Radicale calendar", || {
        items("paul", &site.calendar_url("paul")).pop()
    });
    for attendee in ["paul@serenity.example", "zoe@customer.example"] {
        wait_for(&serve, "the invitation in the INBOX", || {
            (!inbox(attendee, &uid).is_empty()).then_some(())
        });
    }
    wait_for(&serve, "two cards in Paul's address book", || {
        (items("paul", &site.contacts_url("paul")).len() == 2).then_some(())
    });
    settled(site, "mbx-jayne", Duration::from_secs(2));
    settled(site, "mbx-paul", Duration::from_secs(2));
    (serve, uid)
}

fn disappearing_appointment(distinct_deletes: bool) {
    let site = DavSite::new(if distinct_deletes {
        "distinct"
    } else {
        "plain"
    });
    let setting = format!(
        r#"{{"kind": "setting_changed", "key": "distinct_physical_logical_deletes", "value": {distinct_deletes}}}"#
    );
    let mut serve = Serve::start(&site.site, "serve.log");
    site.apply(&std::fs::read_to_string(site.example(&[&setting])).unwrap());

    // The meeting reaches Jayne's (the organizer's) and Paul's calendars on Radicale, and Paul
    // and Zoe get one invitation each in their INBOX.
    let jayne = wait_for(&serve, "the meeting in Jayne's Radicale calendar", || {
        items("jayne", &site.calendar_url("jayne")).pop()
    });
    let uid = uid_of(&jayne.1);
    assert!(jayne.1.contains("SUMMARY:Bike repair"), "{}", jayne.1);
    wait_for(&serve, "the meeting in Paul's Radicale calendar", || {
        items("paul", &site.calendar_url("paul")).pop()
    });
    for attendee in ["paul@serenity.example", "zoe@customer.example"] {
        let invitations = wait_for(&serve, "the invitation in the INBOX", || {
            let v = inbox(attendee, &uid);
            (!v.is_empty()).then_some(v)
        });
        assert_eq!(invitations.len(), 1, "{attendee}: {invitations:?}");
        assert_eq!(invitations[0]["method"], "REQUEST");
        assert_eq!(invitations[0]["content_type_method"], "REQUEST");
        assert_eq!(invitations[0]["organizer"], "jayne@serenity.example");
    }
    // The contacts reach Paul's address book.
    wait_for(&serve, "two cards in Paul's address book", || {
        (items("paul", &site.contacts_url("paul")).len() == 2).then_some(())
    });

    // The meeting leaves Jayne's sync filter: the disappearing appointment.
    site.apply(&format!(
        r#"{{"kind": "access_lost", "user": "jayne", "records": ["{}"], "reason": "role"}}"#,
        site.meeting()
    ));
    if distinct_deletes {
        // R23: unlinked, left in place, nothing sent.
        wait_for(&serve, "the R23 unlink", || {
            site.events("mbx-jayne")
                .iter()
                .any(|e| e["rule"] == "R23")
                .then_some(())
        });
        settled(&site, "mbx-jayne", Duration::from_secs(3));
        assert_eq!(items("jayne", &site.calendar_url("jayne")).len(), 1);
        let paul = inbox("paul@serenity.example", &uid);
        assert!(
            paul.iter().all(|m| m["method"] != "CANCEL"),
            "no cancellation with distinct deletes on: {paul:?}"
        );
    } else {
        // R22: deleted in the organizer's calendar, one cancellation per attendee.
        wait_for(&serve, "the meeting deleted from Jayne's calendar", || {
            items("jayne", &site.calendar_url("jayne"))
                .is_empty()
                .then_some(())
        });
        for attendee in ["paul@serenity.example", "zoe@customer.example"] {
            let cancel = wait_for(&serve, "the cancellation in the INBOX", || {
                let v: Vec<Value> = inbox(attendee, &uid)
                    .into_iter()
                    .filter(|m| m["method"] == "CANCEL")
                    .collect();
                (!v.is_empty()).then_some(v)
            });
            assert_eq!(cancel.len(), 1, "{attendee}: {cancel:?}");
            assert_eq!(cancel[0]["content_type_method"], "CANCEL");
            assert_eq!(cancel[0]["status"], "CANCELLED");
            assert!(cancel[0]["sequence"].as_i64().unwrap() > 0);
        }
        let why = site.run(&["explain", "Bike repair"]);
        assert!(stdout(&why).contains("R22"), "{}", stdout(&why));
    }
    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log());
    let replay = site.run(&["replay"]);
    assert!(replay.status.success(), "{}", stdout(&replay));
}

#[test]
fn the_disappearing_appointment_cancels_in_the_attendees_inbox_when_distinct_deletes_is_off() {
    disappearing_appointment(false);
}

#[test]
fn the_disappearing_appointment_sends_nothing_when_distinct_deletes_is_on() {
    disappearing_appointment(true);
}

/// R36: Paul, an attendee, deletes the meeting from his own calendar with a plain WebDAV
/// client. His copy is only unlinked: no cancellation reaches anyone, the organizer's copy
/// stays, and the CRM row is not deleted.
#[test]
fn r36_an_attendee_deleting_the_meeting_in_his_calendar_cancels_nothing_and_keeps_the_row() {
    let site = DavSite::new("r36");
    let (mut serve, uid) = example_in_sync(&site, &[]);
    let (href, _) = items("paul", &site.calendar_url("paul"))
        .pop()
        .expect("Paul's copy");

    let (code, body) = curl("paul", "DELETE", &url(&href), &[], None);
    assert!(matches!(code, 200 | 204), "DELETE {href}: {code} {body}");
    site.sync_now("mbx-paul");
    let unlinked = wait_for(&serve, "Paul's copy unlinked under R36", || {
        of_type(&site, "mbx-paul", "unlinked")
            .into_iter()
            .find(|e| e["rule"] == "R36")
    });
    assert_eq!(unlinked["payload"]["data"]["record"], site.meeting());
    let reason = unlinked["payload"]["data"]["basis"]["reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("not the organizer's") && reason.contains("kept"),
        "{reason}"
    );
    settled(&site, "mbx-paul", Duration::from_secs(3));
    settled(&site, "mbx-jayne", Duration::from_secs(1));

    // Nothing was cancelled: no CANCEL in either attendee's INBOX, the organizer's copy is
    // still on Radicale and linked, and the CRM is asked to delete nothing.
    for attendee in ["paul@serenity.example", "zoe@customer.example"] {
        assert_eq!(
            cancellations(attendee, &uid),
            Vec::<Value>::new(),
            "{attendee}"
        );
    }
    let jayne = items("jayne", &site.calendar_url("jayne"));
    assert_eq!(jayne.len(), 1, "{jayne:?}");
    assert_eq!(uid_of(&jayne[0].1), uid);
    assert!(
        links(&site, "mbx-jayne")
            .iter()
            .any(|(r, _, s)| *r == site.meeting() && s == "linked"),
        "{:?}",
        links(&site, "mbx-jayne")
    );
    let pending = site.pending();
    assert!(
        pending.iter().all(|c| c["command"] != "delete_record"),
        "{pending:#?}"
    );
    assert!(
        of_type(&site, "mbx-paul", "delete_intent").is_empty()
            && of_type(&site, "mbx-jayne", "delete_intent").is_empty(),
        "no delete decided anywhere"
    );
    let why = stdout(&site.run(&["explain", &site.meeting()]));
    assert!(why.contains("R36"), "{why}");

    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log());
    let replay = site.run(&["replay"]);
    assert!(replay.status.success(), "{}", stdout(&replay));
}

/// R18 on a real server: the organizer's copy edited by a plain WebDAV client (GET, then PUT
/// with If-Match) is an edit the CRM is asked to apply; ledgersync's own writes (the copies it
/// created) are never edits, and a settled service appends nothing while idle.
#[test]
fn r18_a_meeting_edited_by_a_webdav_client_goes_to_the_crm_and_ledgersyncs_own_writes_do_not() {
    let site = DavSite::new("edit");
    let (mut serve, _uid) = example_in_sync(&site, &[]);

    // Its own writes, seen again by every listing since, are no edits.
    for mailbox in ["mbx-jayne", "mbx-paul"] {
        assert_eq!(
            updates_to_the_crm(&site, mailbox),
            Vec::<Value>::new(),
            "{mailbox}"
        );
    }
    // Cycles pushed to both mailboxes list the collections again, reading ledgersync's own
    // writes: no change (a listing of 0 items), nothing decided, only the cycle's bookkeeping.
    for mailbox in ["mbx-jayne", "mbx-paul"] {
        let from = site.events(mailbox).len();
        for _ in 0..2 {
            let listings = of_type(&site, mailbox, "listing_completed").len();
            site.sync_now(mailbox);
            wait_for(&serve, "the pushed cycle", || {
                (of_type(&site, mailbox, "listing_completed").len() > listings).then_some(())
            });
        }
        let new: Vec<Value> = settled(&site, mailbox, Duration::from_secs(1))
            .into_iter()
            .skip(from)
            .collect();
        for e in &new {
            assert!(
                ["push_received", "cycle_scheduled", "listing_completed"]
                    .contains(&e["event_type"].as_str().unwrap()),
                "{mailbox}: {e}"
            );
            if e["event_type"] == "listing_completed" {
                assert_eq!(e["payload"]["data"]["items"], 0, "{mailbox}: {e}");
            }
        }
    }
    // Idle, no cycle due (the quiet cadence stretches to minutes): nothing appended.
    let before = (
        site.events("mbx-jayne").len(),
        site.events("mbx-paul").len(),
    );
    std::thread::sleep(Duration::from_secs(3));
    let after = (
        site.events("mbx-jayne").len(),
        site.events("mbx-paul").len(),
    );
    assert_eq!(before, after, "an idle service appended events");

    // A WebDAV client renames the meeting in Jayne's calendar.
    let (href, _) = items("jayne", &site.calendar_url("jayne"))
        .pop()
        .expect("Jayne's copy");
    let (etag, body) = get("jayne", &url(&href));
    put(
        "jayne",
        &url(&href),
        &etag,
        &with_property(&body, "SUMMARY", "Bike repair and tune-up"),
    );
    site.sync_now("mbx-jayne");
    let update = wait_for(&serve, "the edit decided", || {
        updates_to_the_crm(&site, "mbx-jayne").pop()
    });
    assert_eq!(update["rule"], "R18", "{update}");
    assert_eq!(
        update["payload"]["data"]["record"],
        site.meeting(),
        "{update}"
    );
    let command = site
        .pending()
        .into_iter()
        .find(|c| c["command"] == "update_record" && c["record"] == site.meeting())
        .expect("an update_record command for the meeting");
    assert_eq!(command["rule"], "R18", "{command}");
    assert_eq!(command["mailbox"], "mbx-jayne", "{command}");
    assert_eq!(
        command["fields"]["subject"], "Bike repair and tune-up",
        "{command}"
    );
    let timeline = stdout(&site.run(&["timeline", &site.meeting()]));
    assert!(timeline.contains("R18"), "{timeline}");
    // Paul's copy did not change: no edit there.
    settled(&site, "mbx-jayne", Duration::from_secs(2));
    assert_eq!(updates_to_the_crm(&site, "mbx-paul"), Vec::<Value>::new());
    assert_eq!(updates_to_the_crm(&site, "mbx-jayne").len(), 1);

    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log());
}

/// A vCard read back with Python's vobject: (FN, EMAIL, TEL values).
fn card(body: &str) -> Value {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, vobject\n\
             c = vobject.readOne(sys.stdin.read())\n\
             print(json.dumps({'fn': c.fn.value, \
             'email': [e.value for e in c.contents.get('email', [])], \
             'tel': [t.value for t in c.contents.get('tel', [])]}))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "vobject: {}\n{body}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// R43/R18 and R48: a CRM contact reaches Paul's address book as a vCard and a CRM task his
/// calendar as a VTODO; the card edited on the server and the to-do completed there come back
/// to the CRM as commands.
#[test]
fn r18_r48_a_contact_and_a_task_reach_radicale_and_their_edits_there_come_back_to_the_crm() {
    let site = DavSite::new("cardtask");
    let (mut serve, _uid) = example_in_sync(&site, &[]);
    let task = format!("tsk-{}", site.tag);
    let due = (chrono::Utc::now() + chrono::Duration::days(2))
        .format("%Y-%m-%dT17:00:00Z")
        .to_string();
    site.apply(&format!(
        r#"{{"kind": "record_upserted", "record": {{"entity": "task", "id": "{task}", "owner": "paul", "version": 1, "subject": "Order the spare chain", "due": "{due}", "percent_complete": 0, "state": "open", "priority": "normal"}}}}"#
    ));

    // The contact, as a client reads it.
    let (card_href, card_body) = items("paul", &site.contacts_url("paul"))
        .into_iter()
        .find(|(_, b)| b.contains("Linda Park"))
        .expect("Linda's card");
    let linda = card(&card_body);
    assert_eq!(linda["fn"], "Linda Park", "{linda}");
    assert_eq!(linda["email"][0], "linda@customer.example", "{linda}");
    assert!(
        linda["tel"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "+1 555 0100"),
        "{linda}"
    );
    // The task, a VTODO in the calendar.
    let (todo_href, todo) = wait_for(&serve, "the task in Paul's calendar", || {
        items("paul", &site.calendar_url("paul"))
            .into_iter()
            .find(|(_, b)| b.contains("BEGIN:VTODO"))
    });
    assert!(todo.contains("SUMMARY:Order the spare chain"), "{todo}");
    wait_for(&serve, "the task linked", || {
        links(&site, "mbx-paul")
            .iter()
            .any(|(r, remote, s)| *r == task && !remote.is_empty() && s == "linked")
            .then_some(())
    });
    settled(&site, "mbx-paul", Duration::from_secs(2));
    assert_eq!(updates_to_the_crm(&site, "mbx-paul"), Vec::<Value>::new());

    // Linda's new address and phone, typed into a client.
    let (etag, body) = get("paul", &url(&card_href));
    let body = with_property(&body, "EMAIL", "linda.park@customer.example");
    put(
        "paul",
        &url(&card_href),
        &etag,
        &with_property(&body, "TEL", "+1 555 0199"),
    );
    site.sync_now("mbx-paul");
    let command = wait_for(&serve, "the contact's update for the CRM", || {
        site.pending()
            .into_iter()
            .find(|c| c["command"] == "update_record" && c["entity"] == "contact")
    });
    assert_eq!(command["rule"], "R18", "{command}");
    assert_eq!(command["record"], site.linda(), "{command}");
    assert_eq!(
        command["fields"]["email"], "linda.park@customer.example",
        "{command}"
    );

    // The task completed in a client.
    let (etag, body) = get("paul", &url(&todo_href));
    let body = with_property(&body, "STATUS", "COMPLETED");
    put(
        "paul",
        &url(&todo_href),
        &etag,
        &with_property(&body, "PERCENT-COMPLETE", "100"),
    );
    site.sync_now("mbx-paul");
    let command = wait_for(&serve, "the task's completion for the CRM", || {
        site.pending()
            .into_iter()
            .find(|c| c["command"] == "complete_task")
    });
    assert_eq!(command["rule"], "R48", "{command}");
    assert_eq!(command["record"], task, "{command}");
    assert_eq!(command["entity"], "task", "{command}");
    let pending = site.pending();
    assert!(
        pending.iter().all(|c| c["command"] != "delete_record"),
        "{pending:#?}"
    );

    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log());
}

/// R25 on a real server: every card of Paul's address book deleted with curl trips the delete
/// breaker; no CRM row is touched and nothing is cancelled until an administrator approves the
/// deletes through the running service, which then decides them (R43).
#[test]
fn r25_an_address_book_emptied_on_radicale_trips_the_breaker_until_the_deletes_are_approved() {
    let site = DavSite::new("breaker");
    let (mut serve, uid) = example_in_sync(&site, &[]);
    let cards = items("paul", &site.contacts_url("paul"));
    assert_eq!(cards.len(), 2);
    for (href, _) in &cards {
        let (code, body) = curl("paul", "DELETE", &url(href), &[], None);
        assert!(matches!(code, 200 | 204), "DELETE {href}: {code} {body}");
    }
    site.sync_now("mbx-paul");

    let breaker = wait_for(&serve, "the delete breaker of mbx-paul", || {
        let m = site.json(&["mailbox", "show", "mbx-paul"]);
        (!m["delete_breaker"].is_null()).then(|| m["delete_breaker"].clone())
    });
    assert_eq!(breaker["deletes"], 2, "{breaker}");
    assert!(
        breaker["reason"]
            .as_str()
            .unwrap()
            .starts_with("2 of 3 linked items would have been deleted in one cycle"),
        "{breaker}"
    );
    let alerts = stdout(&site.run(&["alerts", "--mailbox", "mbx-paul"]));
    assert!(
        alerts.contains("The delete breaker of the mailbox") && alerts.contains("2 of 3"),
        "{alerts}"
    );
    let shown = stdout(&site.run(&["mailbox", "show", "mbx-paul"]));
    assert!(
        shown.contains("delete breaker open since")
            && shown.contains("2 of 3 linked items")
            && shown.contains("(2 held)"),
        "{shown}"
    );
    settled(&site, "mbx-paul", Duration::from_secs(3));

    // Held: the links stand, the CRM is asked for nothing, nobody gets a cancellation.
    assert!(
        links(&site, "mbx-paul")
            .iter()
            .all(|(_, _, s)| s == "linked"),
        "{:?}",
        links(&site, "mbx-paul")
    );
    assert_eq!(site.pending(), Vec::<Value>::new());
    for attendee in ["paul@serenity.example", "zoe@customer.example"] {
        assert_eq!(
            cancellations(attendee, &uid),
            Vec::<Value>::new(),
            "{attendee}"
        );
    }

    let out = site.run(&["mailbox", "approve-deletes", "mbx-paul"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("administrator approved the deletes the delete breaker holds in mbx-paul")
            && text.contains("breaker closed in mbx-paul"),
        "{text}"
    );
    let deletes = wait_for(&serve, "the approved deletes decided", || {
        let v: Vec<Value> = site
            .pending()
            .into_iter()
            .filter(|c| c["command"] == "delete_record")
            .collect();
        (v.len() == 2).then_some(v)
    });
    let mut records: Vec<&str> = deletes
        .iter()
        .map(|c| {
            assert_eq!(c["rule"], "R43", "{c}");
            c["record"].as_str().unwrap()
        })
        .collect();
    records.sort_unstable();
    let mut expected = [site.linda(), site.river()];
    expected.sort_unstable();
    assert_eq!(records, expected);
    assert!(
        site.json(&["mailbox", "show", "mbx-paul"])["delete_breaker"].is_null(),
        "closed"
    );
    // The meeting was never part of it.
    assert_eq!(items("jayne", &site.calendar_url("jayne")).len(), 1);
    assert_eq!(items("paul", &site.calendar_url("paul")).len(), 1);

    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log());
}

/// R25's cursor reset on a real server: a sync token Radicale refuses (tampered in the stored
/// cursor while the service was stopped) makes the listing compare ETags instead: the one item
/// changed meanwhile is seen, nothing is deleted or linked twice, and the refusal is recorded.
#[test]
fn r25_a_sync_token_radicale_refuses_is_reset_with_no_duplicate_and_no_delete() {
    let site = DavSite::new("token");
    let (mut serve, _uid) = example_in_sync(&site, &[]);
    let links_before = links(&site, "mbx-paul");
    let hrefs_before: Vec<String> = items("paul", &site.contacts_url("paul"))
        .into_iter()
        .chain(items("paul", &site.calendar_url("paul")))
        .map(|(h, _)| h)
        .collect();
    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log());

    // Every stored token replaced by one Radicale never issued.
    let cursor = site.site.data.join("cursors").join("mbx-paul.cursor");
    let text = std::fs::read_to_string(&cursor).unwrap();
    let mut tampered = 0;
    let text: Vec<String> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f[0] == "C" && f.len() >= 3 && !f[2].is_empty() {
                tampered += 1;
                format!(
                    "C\t{}\thttp://radicale.org/ns/sync/{}",
                    f[1],
                    "0".repeat(64)
                )
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert_eq!(tampered, 2, "a token per collection:\n{}", text.join("\n"));
    std::fs::write(&cursor, text.join("\n") + "\n").unwrap();

    // Meanwhile Linda's card changes on the server.
    let (card_href, _) = items("paul", &site.contacts_url("paul"))
        .into_iter()
        .find(|(_, b)| b.contains("Linda Park"))
        .expect("Linda's card");
    let (etag, body) = get("paul", &url(&card_href));
    put(
        "paul",
        &url(&card_href),
        &etag,
        &with_property(&body, "EMAIL", "linda.park@customer.example"),
    );

    let from = site.events("mbx-paul").len();
    let mut serve = Serve::start(&site.site, "serve-2.log");
    site.sync_now("mbx-paul");
    wait_for(&serve, "the cursor reset", || {
        site.events("mbx-paul")
            .iter()
            .skip(from)
            .any(|e| e["event_type"] == "cursor_reset")
            .then_some(())
    });
    let update = wait_for(&serve, "the changed card decided", || {
        updates_to_the_crm(&site, "mbx-paul").pop()
    });
    assert_eq!(update["rule"], "R18", "{update}");
    assert_eq!(update["payload"]["data"]["record"], site.linda());
    settled(&site, "mbx-paul", Duration::from_secs(3));

    let since: Vec<Value> = site.events("mbx-paul").into_iter().skip(from).collect();
    // One reset per collection, each naming the server's refusal.
    let mut resets: Vec<&str> = since
        .iter()
        .filter(|e| e["event_type"] == "cursor_reset")
        .map(|e| e["payload"]["data"]["reason"].as_str().unwrap())
        .collect();
    resets.sort_unstable();
    assert_eq!(resets.len(), 2, "{resets:#?}");
    for (reason, collection) in resets
        .iter()
        .zip([site.calendar_url("paul"), site.contacts_url("paul")])
    {
        let path = collection.trim_start_matches(RADICALE);
        assert!(
            reason.starts_with(&format!(
                "the server refused the sync token of {path} (HTTP 403)"
            )) && reason.contains("only what differs is reported"),
            "{reason}"
        );
    }
    let types: Vec<&str> = since
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert!(
        !types.iter().any(|t| [
            "item_gone",
            "deletions_listed",
            "delete_intent",
            "breaker_tripped"
        ]
        .contains(t)),
        "{types:?}"
    );
    // Only the changed card is reported seen again: nothing re-created.
    let seen: Vec<&Value> = since
        .iter()
        .filter(|e| e["event_type"] == "item_seen")
        .map(|e| &e["payload"]["data"]["item"]["remote"])
        .collect();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0]
            .as_str()
            .unwrap()
            .ends_with(card_href.rsplit('/').next().unwrap()),
        "{seen:?}"
    );
    assert_eq!(links(&site, "mbx-paul"), links_before);
    let hrefs_after: Vec<String> = items("paul", &site.contacts_url("paul"))
        .into_iter()
        .chain(items("paul", &site.calendar_url("paul")))
        .map(|(h, _)| h)
        .collect();
    assert_eq!(hrefs_after, hrefs_before);
    let pending = site.pending();
    assert!(
        pending.iter().all(|c| c["command"] != "delete_record"),
        "{pending:#?}"
    );

    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log());
}

/// A Radicale of the test's own, from the venv `scripts/services.sh` installed (the shared one
/// on 5232 is never stopped): its configuration, users and collections in a temporary
/// directory, on a free port; killed and started again on the same port and storage.
struct PrivateRadicale {
    dir: PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRadicale {
    fn binary() -> PathBuf {
        let dirs = std::env::var_os("LEDGERSYNC_TEST_DIR")
            .map(PathBuf::from)
            .into_iter()
            .chain([PathBuf::from("/var/lib/ledgersync-test")])
            .chain(
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ledgersync-test")),
            );
        let tried: Vec<PathBuf> = dirs.map(|d| d.join("venv/bin/radicale")).collect();
        tried
            .iter()
            .find(|p| p.exists())
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "no Radicale venv at {tried:?}: run `scripts/services.sh start`, which \
                     installs it"
                )
            })
    }

    fn new(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::create_dir_all(dir.join("collections")).unwrap();
        let users: String = PASSWORDS
            .iter()
            .map(|(u, p)| format!("{u}:{p}\n"))
            .collect();
        std::fs::write(dir.join("users"), users).unwrap();
        std::fs::write(
            dir.join("config"),
            format!(
                "[server]\nhosts = 127.0.0.1:{port}\n[auth]\ntype = htpasswd\n\
                 htpasswd_filename = {d}/users\nhtpasswd_encryption = plain\n[rights]\n\
                 type = owner_only\n[storage]\nfilesystem_folder = {d}/collections\n\
                 [logging]\nlevel = info\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let mut radicale = Self {
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        radicale.start();
        radicale
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("radicale.log")).unwrap_or_default()
    }

    /// Starts it and waits until it answers.
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("radicale.log"))
            .unwrap();
        // The server keeps the real clock, as the shared Radicale does: the tests move only
        // ledgersync's (scripts/test runs them a second time under libfaketime, whose preload
        // a child would inherit).
        let child = Command::new(Self::binary())
            .env_remove("LD_PRELOAD")
            .env_remove("FAKETIME")
            .arg("--config")
            .arg(self.dir.join("config"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start radicale");
        self.child = Some(child);
        // An HTTP answer, not only a connection: a connect to a port nobody listens on yet
        // can connect to itself (the kernel may pick that very port as its source).
        let answers = || {
            Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-X",
                    "PROPFIND",
                ])
                .args(["-H", "Depth: 0", &format!("{}/", self.url())])
                .output()
                .is_ok_and(|o| matches!(stdout(&o).trim(), "207" | "401"))
        };
        let started = Instant::now();
        while !answers() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the private Radicale did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the server is gone at once, mid-answer if it was answering.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill radicale");
        child.wait().expect("reaped");
    }
}

impl Drop for PrivateRadicale {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A whole calendar of `n` events (one bulk PUT), their times from tomorrow on.
fn many_events(tag: &str, n: usize) -> String {
    let start = chrono::Utc::now().date_naive() + chrono::Days::new(1);
    let mut text =
        String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//ledgersync tests//EN\r\n");
    let description = "Bring the bike, the spare chain and the receipts. ".repeat(40);
    for i in 0..n {
        let day = start + chrono::Days::new((i / 8) as u64);
        let hour = 8 + i % 8;
        let d = day.format("%Y%m%d");
        text.push_str(&format!(
            "BEGIN:VEVENT\r\nUID:{tag}-{i}\r\nDTSTAMP:{d}T000000Z\r\nDTSTART:{d}T{hour:02}0000Z\r\n\
             DTEND:{d}T{hour:02}3000Z\r\nSUMMARY:Appointment {i}\r\nDESCRIPTION:{description}\r\n\
             END:VEVENT\r\n"
        ));
    }
    text.push_str("END:VCALENDAR\r\n");
    text
}

/// R11 and R25 on a real server stopped mid-sync: Radicale is killed while the first listing
/// of a calendar of 300 events runs (the kill follows its first REPORT in Radicale's log,
/// before the listing could read every member). The failed listing deletes nothing and is a
/// transient error (the mailbox stays enabled); once Radicale is back on the same port and
/// storage, the next cycle completes and sees every event exactly once.
#[test]
fn r11_radicale_stopped_mid_listing_deletes_nothing_and_the_next_cycle_sees_each_item_once() {
    const EVENTS: usize = 300;
    require_servers();
    let site = Site::new();
    let mut radicale = PrivateRadicale::new(&site.root.join("radicale"));
    let base = radicale.url();
    let tag = format!("big-{}", std::process::id());
    let calendar = "/paul/calendar/";
    let contacts = "/paul/contacts/";
    let (code, body) = curl(
        "paul",
        "MKCOL",
        &format!("{base}{contacts}"),
        &["Content-Type: application/xml"],
        Some(
            "<?xml version=\"1.0\"?><D:mkcol xmlns:D=\"DAV:\" \
             xmlns:CR=\"urn:ietf:params:xml:ns:carddav\"><D:set><D:prop><D:resourcetype>\
             <D:collection/><CR:addressbook/></D:resourcetype></D:prop></D:set></D:mkcol>",
        ),
    );
    assert_eq!(code, 201, "MKCOL {contacts}: {body}");
    let (code, body) = curl(
        "paul",
        "PUT",
        &format!("{base}{calendar}"),
        &["Content-Type: text/calendar; charset=utf-8"],
        Some(&many_events(&tag, EVENTS)),
    );
    assert!(matches!(code, 201 | 204), "PUT {calendar}: {code} {body}");

    let file = site.root.join("paul.password");
    std::fs::write(&file, "paulpw\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        &site.config,
        format!(
            "[data]\ndir = \"{}\"\n\n[profiles.groupware]\nkind = \"caldav\"\nurl = \"{base}/\"\n\
             timeout_seconds = 5\n\n[[mailbox]]\nid = \"mbx-paul\"\nprofile = \"groupware\"\n\
             username = \"paul\"\npassword_file = \"{}\"\ncalendar = \"{calendar}\"\n\
             address_book = \"{contacts}\"\n",
            site.data.display(),
            file.display()
        ),
    )
    .unwrap();
    let dav = DavSite {
        site,
        tag: tag.clone(),
    };
    let mut serve = Serve::start(&dav.site, "serve.log");
    // Paul's mailbox of the example organization alone, and no CRM row.
    let example = stdout(&ledgersync(&["example"]));
    let mut changes: String = [
        r#"{"kind": "setting_changed", "key": "schedule_act_min_seconds", "value": 1}"#,
        r#"{"kind": "setting_changed", "key": "schedule_act_max_seconds", "value": 2}"#,
    ]
    .join("\n");
    changes.push('\n');
    for line in example.lines() {
        if !line.contains("jayne") && !line.contains("record_upserted") {
            changes.push_str(line);
            changes.push('\n');
        }
    }
    let reports_before = radicale.log().matches("REPORT").count();
    dav.apply(&changes);

    // The first listing's REPORT reached Radicale: kill it at once (polled every 10 ms; the
    // listing still has the REPORT's answer and three multigets of 100 events to read, so the
    // kill falls in its middle, which the assertions below check: no listing ever completed).
    let started = Instant::now();
    while radicale.log().matches("REPORT").count() == reports_before {
        assert!(
            started.elapsed() < DEADLINE,
            "no listing reached Radicale; serve log:\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    radicale.kill();
    let failed = wait_for(&serve, "the failed listing", || {
        dav.events("mbx-paul")
            .into_iter()
            .find(|e| e["event_type"] == "listing_failed" || e["event_type"] == "listing_partial")
    });
    let events = dav.events("mbx-paul");
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    // It was the first listing, cut off by the server's going away, and it deleted nothing.
    assert!(!types.contains(&"listing_completed"), "{types:?}");
    assert_eq!(failed["event_type"], "listing_failed", "{failed}");
    let error = &failed["payload"]["data"]["error"];
    assert_eq!(error["code"], "network", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("REPORT /paul/calendar/"),
        "{error}"
    );
    let classified = events
        .iter()
        .find(|e| e["event_type"] == "error_classified")
        .expect("the error classified");
    assert_eq!(classified["rule"], "R11", "{classified}");
    assert_eq!(
        classified["payload"]["data"]["class"], "Transient",
        "{classified}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event_type"] == "retry_scheduled" && e["rule"] == "R11"),
        "{types:?}"
    );
    assert!(
        events.iter().any(|e| e["event_type"] == "no_action"
            && e["rule"] == "R25"
            && e["payload"]["data"]["basis"]["reason"]
                .as_str()
                .unwrap()
                .contains("unknown, not deleted")),
        "{types:?}"
    );
    for t in [
        "item_gone",
        "deletions_listed",
        "delete_intent",
        "breaker_tripped",
    ] {
        assert!(!types.contains(&t), "{t}: {types:?}");
    }
    let shown = dav.json(&["mailbox", "show", "mbx-paul"]);
    let act = &shown["workloads"]["act"];
    assert_eq!(act["status"], "enabled", "{act}");
    assert_eq!(act["last_error"]["code"], "network", "{act}");
    assert!(act["consecutive_errors"].as_u64() >= Some(1), "{act}");
    assert_eq!(dav.pending(), Vec::<Value>::new());

    // Radicale back on the same port and storage: the next cycle completes.
    radicale.start();
    dav.sync_now("mbx-paul");
    wait_for(&serve, "a complete listing", || {
        dav.events("mbx-paul")
            .iter()
            .any(|e| e["event_type"] == "listing_completed")
            .then_some(())
    });
    let events = settled(&dav, "mbx-paul", Duration::from_secs(2));
    let mut seen: Vec<&str> = events
        .iter()
        .filter(|e| e["event_type"] == "item_seen")
        .map(|e| e["payload"]["data"]["item"]["remote"].as_str().unwrap())
        .collect();
    seen.sort_unstable();
    let all = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), EVENTS, "every event seen");
    assert_eq!(all, EVENTS, "each event seen once");
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    for t in [
        "item_gone",
        "deletions_listed",
        "delete_intent",
        "breaker_tripped",
    ] {
        assert!(!types.contains(&t), "{t}: {types:?}");
    }
    let act = &dav.json(&["mailbox", "show", "mbx-paul"])["workloads"]["act"];
    assert_eq!(act["status"], "enabled", "{act}");
    assert_eq!(act["consecutive_errors"], 0, "{act}");
    assert_eq!(dav.pending(), Vec::<Value>::new());
    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log());
}
