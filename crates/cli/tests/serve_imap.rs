//! `ledgersync serve` with a mailbox of an IMAP profile on the real Dovecot that
//! `scripts/services.sh` starts (127.0.0.1:1143): incoming email, pushed by IDLE, decided
//! under R49–R69 and explained.
//!
//! The mailbox is Kaylee's (kaylee@serenity.example), whose INBOX no other test reads.
//! Messages are APPENDed by another IMAP client (Python's imaplib,
//! `tests/clients/imap_client.py`), as a user's mail program or a delivery would put them
//! there. Each test's messages carry Message-IDs and subjects of their own, and each test runs
//! its own `serve` with its own data directory, so messages other runs left in the INBOX are
//! decided by this run too but never confused with this test's.

mod common;

use common::{Serve, Site, ledgersync, stderr, stdout};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

const USER: &str = "kaylee@serenity.example";
const PASSWORD: &str = "kayleepw";

fn require_dovecot() {
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", 1143)).is_ok(),
        "Dovecot (IMAP) is not listening on 127.0.0.1:1143: run `scripts/services.sh start` \
         (scripts/test does) before these tests"
    );
}

/// Another IMAP client: `imap_client.py OP ARGS`, the message (if any) on standard input.
fn imap(args: &[&str], message: Option<&str>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/imap_client.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["127.0.0.1", "1143", USER, PASSWORD])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(message.unwrap_or_default().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "imap_client.py {args:?}: {}",
        stderr(&out)
    );
}

/// An RFC 5322 message from Zoe to Kaylee.
fn message(id: &str, subject: &str, in_reply_to: Option<&str>) -> String {
    let mut m = format!(
        "From: Zoe Washburne <zoe@customer.example>\r\nTo: Kaylee Frye <{USER}>\r\n\
         Subject: {subject}\r\nMessage-ID: {id}\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
    );
    if let Some(parent) = in_reply_to {
        m.push_str(&format!(
            "In-Reply-To: {parent}\r\nReferences: {parent}\r\n"
        ));
    }
    m.push_str(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Kaylee.\r\n",
    );
    m
}

/// A Message-ID as an `email_accepted` records it: without its angle brackets, lower case.
fn key(id: &str) -> String {
    id.trim_matches(['<', '>']).to_lowercase()
}

/// A site with Kaylee's mailbox on an `imap` profile, tracking `folder` besides INBOX.
struct MailSite {
    site: Site,
    tag: String,
    folder: String,
}

impl Drop for MailSite {
    /// The test's folder leaves the server, whatever the test's end.
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/imap_client.py");
        let _ = Command::new("python3")
            .arg(script)
            .args(["127.0.0.1", "1143", USER, PASSWORD, "delete", &self.folder])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl MailSite {
    fn new(name: &str) -> Self {
        require_dovecot();
        let site = Site::new();
        let tag = format!(
            "{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        let folder = format!("INBOX/Customers-{tag}");
        imap(&["create", &folder], None);
        let password = site.root.join("kaylee.password");
        std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            &site.config,
            format!(
                "[data]\ndir = \"{}\"\n\n[profiles.mail]\nkind = \"imap\"\n\
                 url = \"imap://127.0.0.1:1143\"\ntimeout_seconds = 10\n\n[[mailbox]]\n\
                 id = \"mbx-kaylee\"\nprofile = \"mail\"\nusername = \"{USER}\"\n\
                 password_file = \"{}\"\nfolders = [\"{folder}\"]\n",
                site.data.display(),
                password.display()
            ),
        )
        .unwrap();
        Self { site, tag, folder }
    }

    /// The organization: Kaylee's mailbox on an IMAP/SMTP profile, tested for incoming email
    /// only (R4), Zoe a contact, and the CRM email Kaylee sent Zoe about the Blue Sun account.
    fn organization(&self) -> String {
        let tag = &self.tag;
        [
            r#"{"kind": "profile_registered", "profile": "mail", "name": "Serenity mail", "server_type": "imap_smtp", "max_connections": 4}"#.to_string(),
            format!(r#"{{"kind": "user_registered", "user": "kaylee", "name": "Kaylee Frye", "email": "{USER}"}}"#),
            format!(r#"{{"kind": "mailbox_registered", "mailbox": "mbx-kaylee", "address": "{USER}", "profile": "mail"}}"#),
            r#"{"kind": "mailbox_mapped", "mailbox": "mbx-kaylee", "user": "kaylee"}"#.to_string(),
            r#"{"kind": "address_approved", "mailbox": "mbx-kaylee", "approved": true}"#.to_string(),
            r#"{"kind": "mailbox_tested", "mailbox": "mbx-kaylee", "incoming": "success"}"#.to_string(),
            format!(r#"{{"kind": "record_upserted", "record": {{"entity": "contact", "id": "con-zoe-{tag}", "owner": "kaylee", "version": 1, "full_name": "Zoe Washburne", "email": "zoe@customer.example", "phone": "", "company": "Blue Sun", "state": "active"}}}}"#),
            format!(r#"{{"kind": "record_upserted", "record": {{"entity": "email", "id": "eml-offer-{tag}", "owner": "kaylee", "version": 1, "subject": "Engine parts offer CRM:{digits}", "from": {{"user": "kaylee", "email": "{USER}"}}, "to": [{{"email": "zoe@customer.example", "name": "Zoe Washburne"}}], "message_id": "<offer-{tag}@serenity.example>", "regarding": {{"table": "account", "id": "acc-blue-sun-{tag}", "name": "Blue Sun"}}}}}}"#, digits = self.token_digits()),
        ]
        .join("\n")
            + "\n"
    }

    /// The seven digits of the tracking token of the CRM email: unique to this test.
    fn token_digits(&self) -> String {
        let n: u64 = self.tag.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        // The designator digit `0`, then the user number and the counter (R63).
        format!("0{:06}", n % 1_000_000)
    }

    fn apply(&self, lines: &str) {
        let file = self.site.root.join(format!(
            "change-{}.jsonl",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
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

    /// The mailbox's email decisions, by the Message-ID of the email decided.
    fn decision(&self, message_id: &str) -> Option<Value> {
        let out = self.run(&["--json", "events", "--mailbox", "mbx-kaylee"]);
        assert!(out.status.success(), "events: {}", stderr(&out));
        let events: Vec<Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let remotes: Vec<&Value> = events
            .iter()
            .filter(|e| {
                e["event_type"] == "email_received"
                    && e["payload"]["data"]["message_id"]
                        .as_str()
                        .is_some_and(|m| key(m) == key(message_id))
            })
            .map(|e| &e["payload"]["data"]["remote"])
            .collect();
        events
            .iter()
            .filter(|e| {
                matches!(
                    e["event_type"].as_str(),
                    Some("email_accepted" | "email_rejected")
                )
            })
            .rfind(|e| remotes.contains(&&e["payload"]["data"]["remote"]))
            .cloned()
    }

    fn count(&self, event_type: &str, message_id: &str) -> usize {
        let out = self.run(&["--json", "events", "--mailbox", "mbx-kaylee"]);
        assert!(out.status.success(), "events: {}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| {
                e["event_type"] == event_type
                    && e["payload"]["data"]["message_id"]
                        .as_str()
                        .is_some_and(|m| key(m) == key(message_id))
            })
            .count()
    }
}

/// R60–R62, R54, R51 on a real INBOX: a reply carrying the tracking token, one carrying only
/// In-Reply-To and a forward with In-Reply-To are tracked to the account the CRM email is
/// regarding; a message carrying neither is not tracked (replies only), until it is moved
/// into a tracked folder. Each arrives by IDLE, with no cycle asked for; `explain` says why;
/// a recreated tracked folder (a new UIDVALIDITY) decides nothing twice; replay agrees.
#[test]
fn replies_arriving_in_the_inbox_are_tracked_to_the_account_and_explained() {
    let s = MailSite::new("replies");
    let mut serve = Serve::start(&s.site, "serve.log");
    s.apply(&s.organization());
    let tag = &s.tag;
    let offer = format!("<offer-{tag}@serenity.example>");
    let token = format!("RE: Engine parts offer CRM:{}", s.token_digits());
    let mails = [
        (
            format!("<token-{tag}@customer.example>"),
            token.clone(),
            None,
        ),
        (
            format!("<reply-{tag}@customer.example>"),
            "RE: Engine parts offer".to_string(),
            Some(offer.as_str()),
        ),
        (
            format!("<forward-{tag}@customer.example>"),
            "FW: Engine parts offer".to_string(),
            Some(offer.as_str()),
        ),
        (
            format!("<question-{tag}@customer.example>"),
            format!("A new question {tag}"),
            None,
        ),
    ];
    // The mailbox's first cycle reads the INBOX as it is; the messages arrive after it, and
    // only IDLE makes the mailbox read them before its next scheduled cycle.
    serve.wait_for("the first incoming listing", || {
        let out = s.run(&["--json", "events", "--mailbox", "mbx-kaylee"]);
        stdout(&out).contains("\"listing_completed\"").then_some(())
    });
    for (id, subject, parent) in &mails {
        imap(&["append", "INBOX"], Some(&message(id, subject, *parent)));
    }
    let decided: Vec<Value> = mails
        .iter()
        .map(|(id, _, _)| serve.wait_for("the email decision", || s.decision(id)))
        .collect();
    let blue_sun = format!("acc-blue-sun-{tag}");
    for (d, (id, subject, _)) in decided.iter().zip(&mails).take(3) {
        assert_eq!(d["event_type"], "email_accepted", "{subject}: {d}");
        assert_eq!(
            d["payload"]["data"]["regarding"]["id"],
            blue_sun.as_str(),
            "{d}"
        );
        assert_eq!(d["payload"]["data"]["message_id"], key(id), "{d}");
    }
    for (d, how) in decided.iter().zip(["Token", "InReplyTo", "InReplyTo"]) {
        assert_eq!(d["payload"]["data"]["correlation"], how, "{d}");
    }
    assert_eq!(decided[3]["event_type"], "email_rejected", "{}", decided[3]);
    assert_eq!(decided[3]["rule"], "R54", "{}", decided[3]);

    // The tracked emails are on the account's timeline, waiting for the CRM to create them,
    // and each leaves as a `track_email` command.
    let timeline = serve.wait_for("the emails on the account's timeline", || {
        let out = s.run(&["timeline", &blue_sun]);
        let text = stdout(&out);
        mails[..3]
            .iter()
            .all(|(_, subject, _)| text.contains(subject.as_str()))
            .then_some(text)
    });
    assert!(!timeline.contains(&mails[3].1), "{timeline}");
    let pending = s.run(&["--json", "crm", "pending"]);
    let commands: Vec<Value> = stdout(&pending)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|c: &Value| c["command"] == "track_email")
        .collect();
    for (id, _, _) in &mails[..3] {
        assert!(
            commands
                .iter()
                .any(|c| c["fields"]["message_id"] == key(id).as_str()),
            "no track_email command for {id}: {commands:?}"
        );
    }

    // explain, in words: why the token reply was tracked to the account, why the question was
    // not.
    let why = s.run(&["explain", &token]);
    assert!(why.status.success(), "{}", stderr(&why));
    let text = stdout(&why);
    assert!(text.contains("Blue Sun"), "{text}");
    assert!(text.to_lowercase().contains("token"), "{text}");
    let why_not = s.run(&["explain", &mails[3].1]);
    let text = stdout(&why_not);
    assert!(text.contains("R54"), "{text}");

    // R51: moved into a tracked folder, the question is tracked (a cycle of the mailbox is
    // asked for: IDLE watches the INBOX only).
    imap(&["move", "INBOX", &s.folder, &mails[3].0], None);
    let sync = s.run(&["mailbox", "sync", "mbx-kaylee"]);
    assert!(sync.status.success(), "{}", stderr(&sync));
    let moved = serve.wait_for("the moved question tracked", || {
        s.decision(&mails[3].0)
            .filter(|d| d["event_type"] == "email_accepted")
    });
    assert_eq!(moved["payload"]["data"]["message_id"], key(&mails[3].0));

    // The tracked folder deleted and created again with the same message in it: a new
    // UIDVALIDITY, the message read again, nothing decided twice.
    imap(&["delete", &s.folder], None);
    imap(&["create", &s.folder], None);
    imap(
        &["append", &s.folder],
        Some(&message(&mails[3].0, &mails[3].1, None)),
    );
    let sync = s.run(&["mailbox", "sync", "mbx-kaylee"]);
    assert!(sync.status.success(), "{}", stderr(&sync));
    serve.wait_for("the folder read again", || {
        (s.count("email_received", &mails[3].0) >= 3).then_some(())
    });
    let accepted = s.count("email_accepted", &mails[3].0);
    assert_eq!(
        accepted, 1,
        "the recreated folder's message is not tracked twice"
    );

    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log());
    let replay = s.run(&["replay"]);
    assert!(replay.status.success(), "{}", stdout(&replay));
}

/// R12 on a real server: a 200 MB message in a tracked folder, over the 150 MiB limit
/// (`email_max_message_mib`), is refused with its size and the setting named, as an item
/// failure of the mailbox; the messages beside it are decided, and the next cycles go on.
#[test]
fn a_200_mb_message_is_refused_with_its_reason_and_nothing_else_is_lost() {
    let s = MailSite::new("big");
    let tag = &s.tag;
    let before = format!("<before-{tag}@customer.example>");
    let big = format!("<big-{tag}@customer.example>");
    let after = format!("<after-{tag}@customer.example>");
    imap(
        &["append", &s.folder],
        Some(&message(
            &before,
            &format!("Before the big one {tag}"),
            None,
        )),
    );
    imap(&["append-big", &s.folder, &big, "200"], None);
    imap(
        &["append", &s.folder],
        Some(&message(&after, &format!("After the big one {tag}"), None)),
    );
    let mut serve = Serve::start(&s.site, "serve.log");
    s.apply(&s.organization());
    // Both small messages are decided (tracked: the folder is tracked, R51).
    for id in [&before, &after] {
        let d = serve.wait_for("the small message decided", || s.decision(id));
        assert_eq!(d["event_type"], "email_accepted", "{d}");
    }
    let out = s.run(&["--json", "events", "--mailbox", "mbx-kaylee"]);
    let failures: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event_type"] == "item_failed")
        .collect();
    assert!(
        failures.iter().any(|f| {
            let text = f.to_string();
            text.contains("too_large")
                && text.contains("email_max_message_mib")
                && text.contains(&s.folder)
        }),
        "no too_large failure naming the limit and the folder: {failures:?}"
    );
    assert_eq!(
        s.count("email_received", &big),
        0,
        "the big message is not read"
    );
    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log());
    let replay = s.run(&["replay"]);
    assert!(replay.status.success(), "{}", stdout(&replay));
}

/// The shipped example (config/mail.toml, config/mail-organization.jsonl): `serve` with the
/// example configuration tracks a reply delivered to Kaylee's INBOX (LMTP, as Postfix delivers)
/// onto the Blue Sun account, and `explain` and `timeline` show it.
#[test]
fn the_shipped_mail_example_tracks_a_delivered_reply_onto_the_account() {
    require_dovecot();
    let site = Site::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shipped = std::fs::read_to_string(root.join("config/mail.toml")).unwrap();
    assert!(shipped.contains("dir = \"data-mail\""), "{shipped}");
    std::fs::write(
        &site.config,
        shipped.replace(
            "dir = \"data-mail\"",
            &format!("dir = \"{}\"", site.data.display()),
        ),
    )
    .unwrap();
    let mut serve = Serve::spawn_with_env(
        &site.config,
        site.root.join("serve.log"),
        &[],
        &[("LEDGERSYNC_KAYLEE_PASSWORD", PASSWORD)],
    );
    serve.wait_for("serve ready", || {
        serve.log().contains("ready:").then_some(())
    });
    let run = |args: &[&str]| {
        let mut all = vec!["--config", site.config.to_str().unwrap()];
        all.extend_from_slice(args);
        ledgersync(&all)
    };
    let organization = root.join("config/mail-organization.jsonl");
    let out = run(&["crm", "apply", organization.to_str().unwrap()]);
    assert!(out.status.success(), "crm apply: {}", stderr(&out));
    serve.wait_for("the first incoming listing", || {
        let out = run(&["--json", "events", "--mailbox", "mbx-kaylee"]);
        stdout(&out).contains("\"listing_completed\"").then_some(())
    });
    // Test & Enable against the server: the incoming workload, the only one of the profile.
    let tested = run(&["--json", "mailbox", "test-enable", "mbx-kaylee"]);
    assert!(tested.status.success(), "{}", stderr(&tested));
    let answer: Value = serde_json::from_str(&stdout(&tested)).unwrap();
    assert_eq!(answer["connection"]["connector"], "imap", "{answer}");
    assert_eq!(answer["connection"]["incoming"], "success", "{answer}");
    assert!(
        answer["connection"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("INBOX") && d.contains("IDLE yes")),
        "{answer}"
    );
    let id = format!(
        "<example-{}-{}@customer.example>",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let subject = "RE: Engine parts offer CRM:0001001";
    let raw = format!(
        "From: zoe@customer.example\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: {id}\r\n\r\nYes.\r\n"
    );
    let lmtp = Command::new("python3")
        .args([
            "-c",
            "import smtplib, sys; smtplib.LMTP('127.0.0.1', 2424).sendmail('zoe@customer.example', [sys.argv[1]], sys.stdin.buffer.read())",
            USER,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(raw.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run python3");
    assert!(lmtp.status.success(), "LMTP delivery: {}", stderr(&lmtp));
    let accepted = serve.wait_for("the delivered reply tracked", || {
        let out = run(&["--json", "events", "--mailbox", "mbx-kaylee"]);
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|e| {
                e["event_type"] == "email_accepted"
                    && e["payload"]["data"]["message_id"] == key(&id)
            })
    });
    assert_eq!(
        accepted["payload"]["data"]["regarding"]["id"], "acc-blue-sun",
        "{accepted}"
    );
    let timeline = serve.wait_for("the reply on the account's timeline", || {
        let text = stdout(&run(&["timeline", "acc-blue-sun"]));
        text.contains(subject).then_some(text)
    });
    assert!(timeline.contains(subject), "{timeline}");
    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log());
}
