//! `ledgersync serve` with CalDAV/CardDAV mailboxes on the real servers `scripts/services.sh`
//! starts: calendars, address books and task lists on Radicale (127.0.0.1:5232), meeting
//! messages sent through Postfix (127.0.0.1:2525) into the attendees' Dovecot INBOXes, read
//! back over IMAP (127.0.0.1:1143) by Python's imaplib, email and icalendar.
//!
//! Each test has collections of its own (a unique name under each user's Radicale home) and a
//! meeting row of its own (so its iCalendar UID is unique), so tests never see each other's
//! items or messages. A server that is not listening fails the test, naming the command that
//! starts it.

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
    if let Some(body) = body {
        cmd.args(["--data-binary", body]);
    }
    let out = cmd.arg(url).output().expect("run curl");
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
        text.push_str(&stdout(&out).replace("apt-bike-repair", &self.meeting()));
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
fn items(user: &str, collection: &str) -> Vec<(String, String)> {
    let (code, body) = curl(
        user,
        "PROPFIND",
        collection,
        &["Depth: 1", "Content-Type: application/xml"],
        Some(
            "<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:prop><D:getetag/></D:prop></D:propfind>",
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
    hrefs
        .into_iter()
        .map(|h| {
            let (code, body) = curl(user, "GET", &format!("{RADICALE}{h}"), &[], None);
            assert_eq!(code, 200, "GET {h}");
            (h, body)
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
