//! `ledgersync serve` sending outgoing email (R75–R78) for a mailbox of an `imap` profile with
//! an `[profiles.<id>.smtp]` section, on the servers `scripts/services.sh` starts (Postfix on
//! 127.0.0.1:2525, Dovecot on 1143): an email row in Pending Send applied from the CRM is sent
//! by the mailbox's outgoing driver, arrives once in the recipient's INBOX with its tracking
//! token and the Message-ID derived from the send, is copied to the sender's Sent folder, and
//! leaves as a `mark_email_sent` command; `explain` tells it with R75 and R76.
//!
//! The sender is Jayne (jayne@serenity.example), the recipient Paul; each run's row, subject
//! and Message-ID are its own. What arrived is read back with Python's imaplib + email
//! (`crates/connectors/tests/clients/read_mail.py`).

mod common;

use common::{Serve, Site, ledgersync, stderr, stdout};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const USER: &str = "jayne@serenity.example";
const PASSWORD: &str = "jaynepw";
const PAUL: (&str, &str) = ("paul@serenity.example", "paulpw");

fn require_servers() {
    for port in [1143, 2525] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "nothing listens on 127.0.0.1:{port}: run `scripts/services.sh start` (scripts/test \
             does) before these tests"
        );
    }
}

/// The messages with `message_id` in `folder` of `user`, waiting up to `wait_s` for
/// `expected` of them.
fn read_back(
    (user, password): (&str, &str),
    folder: &str,
    message_id: &str,
    expected: usize,
    wait_s: f64,
) -> Vec<Value> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../connectors/tests/clients/read_mail.py");
    // Another program, on the real clock: the year-ahead pass of scripts/test runs this test
    // under libfaketime, whose preload a child inherits (and Python's `time.sleep` fails under
    // it).
    let out = Command::new("python3")
        .env_remove("LD_PRELOAD")
        .env_remove("FAKETIME")
        .arg(&script)
        .args(["127.0.0.1", "1143", user, password, folder, message_id])
        .arg(expected.to_string())
        .arg(wait_s.to_string())
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "read_mail.py: {}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["messages"].as_array().cloned().unwrap_or_default()
}

#[test]
fn an_email_pending_send_is_sent_once_by_the_outgoing_driver_copied_to_sent_and_marked_sent() {
    require_servers();
    let site = Site::new();
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let password = site.root.join("jayne.password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        &site.config,
        format!(
            "[data]\ndir = \"{}\"\n\n[profiles.mail]\nkind = \"imap\"\n\
             url = \"imap://127.0.0.1:1143\"\ntimeout_seconds = 10\n\n\
             [profiles.mail.smtp]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\n\n\
             [[mailbox]]\nid = \"mbx-jayne\"\nprofile = \"mail\"\nusername = \"{USER}\"\n\
             password_file = \"{}\"\n",
            site.data.display(),
            password.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all = vec![
            "--config",
            site.config.to_str().unwrap(),
            "--data",
            site.data.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        ledgersync(&all)
    };
    let mut serve = Serve::start(&site, "serve.log");
    let row = format!("eml-quote-{tag}");
    let subject = format!("Your quote {tag}");
    let changes = [
        r#"{"kind": "profile_registered", "profile": "mail", "name": "Serenity mail", "server_type": "imap_smtp", "max_connections": 4}"#.to_string(),
        format!(r#"{{"kind": "user_registered", "user": "jayne", "name": "Jayne Cobb", "email": "{USER}"}}"#),
        format!(r#"{{"kind": "mailbox_registered", "mailbox": "mbx-jayne", "address": "{USER}", "profile": "mail"}}"#),
        r#"{"kind": "mailbox_mapped", "mailbox": "mbx-jayne", "user": "jayne"}"#.to_string(),
        r#"{"kind": "address_approved", "mailbox": "mbx-jayne", "approved": true}"#.to_string(),
        r#"{"kind": "mailbox_tested", "mailbox": "mbx-jayne", "incoming": "success", "outgoing": "success"}"#.to_string(),
        format!(r#"{{"kind": "record_upserted", "record": {{"entity": "email", "id": "{row}", "owner": "jayne", "version": 1, "subject": "{subject}", "from": {{"user": "jayne", "email": "{USER}", "name": "Jayne Cobb"}}, "to": [{{"user": "paul", "email": "{}", "name": "Paul Blart"}}], "state": "pending_send", "text": "Paul, the quote is attached.", "tracking_token": "CRM:0001004"}}}}"#, PAUL.0),
    ]
    .join("\n")
        + "\n";
    let file = site.root.join("changes.jsonl");
    std::fs::write(&file, changes).unwrap();
    let out = run(&["crm", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "crm apply: {}", stderr(&out));

    // The outgoing driver sends it; the CRM is then asked to mark it Sent.
    let command: Value = serve.wait_for("the mark_email_sent command", || {
        let out = run(&["--json", "crm", "pending"]);
        stdout(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|c| c["command"] == "mark_email_sent" && c["record"] == row.as_str())
    });
    assert_eq!(command["rule"], "R76");
    let message_id = command["fields"]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message_id.starts_with("<ls-"), "{command}");

    for (who, folder) in [(PAUL, "INBOX"), ((USER, PASSWORD), "Sent")] {
        // Waits for a second copy that must never come.
        let got = read_back(who, folder, &message_id, 2, 2.0);
        assert_eq!(got.len(), 1, "{} {folder}: exactly one: {got:?}", who.0);
        assert_eq!(got[0]["subject"], format!("{subject} CRM:0001004"));
        assert_eq!(got[0]["from"], format!("Jayne Cobb <{USER}>"));
        assert_eq!(got[0]["text"], "Paul, the quote is attached.");
    }

    let why = run(&["explain", &row]);
    assert!(why.status.success(), "{}", stderr(&why));
    let text = stdout(&why);
    assert!(text.contains("R75") && text.contains("R76"), "{text}");
    assert!(text.contains(&message_id), "{text}");

    let status = serve.terminate();
    assert!(status.success(), "{}", serve.log());
    let replay = run(&["replay"]);
    assert!(replay.status.success(), "{}", stdout(&replay));
}
