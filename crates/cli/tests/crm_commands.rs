//! CRM commands as a user runs them (docs/crm-commands.md): a meeting tracked in a calendar that
//! `serve` watches becomes a command `crm pending` lists; the CRM's result lines go in through
//! `crm apply`, against the running service and offline; the link is recorded and shown, the
//! command is no longer listed, a result applied twice is recorded once, and a bad result line
//! is refused with its line and field. Times come from `ledgersync example` (tomorrow), so no
//! test depends on the day it runs.

mod common;

use common::{Site, stderr, stdout};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// A running `serve`, stopped with SIGTERM, killed if the test fails first.
struct Serve {
    child: Option<Child>,
    log: PathBuf,
}

impl Serve {
    fn start(site: &Site) -> Self {
        let log = site.root.join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_ledgersync"))
            .args(["--config", site.config.to_str().unwrap(), "serve"])
            .env_remove("LEDGERSYNC_DATA")
            .env_remove("LEDGERSYNC_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start ledgersync serve");
        let serve = Self {
            child: Some(child),
            log,
        };
        let socket = site.data.join("control.sock");
        serve.wait_for("the control socket", || socket.exists().then_some(()));
        serve
    }

    fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "timed out waiting for {what}; serve log:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self, site: &Site) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        assert!(
            child.wait().unwrap().success(),
            "serve stops cleanly on SIGTERM"
        );
        assert!(
            !site.data.join("control.sock").exists(),
            "the socket is gone"
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "serve log:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// The open commands, as `crm pending --json` prints them (one object a line).
fn pending(site: &Site) -> Vec<Value> {
    let out = site.run(&["--json", "crm", "pending"]);
    assert!(out.status.success(), "crm pending: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn apply(site: &Site, name: &str, lines: &str) -> std::process::Output {
    let file = site.root.join(name);
    fs::write(&file, lines).unwrap();
    site.run(&["crm", "apply", file.to_str().unwrap()])
}

fn event_count(site: &Site) -> usize {
    stdout(&site.run(&["--json", "events"])).lines().count()
}

/// `20271203T143000Z` for the example meeting's start moved by `hours`.
fn ics_time(example: &Path, hours: i64) -> String {
    let text = fs::read_to_string(example).unwrap();
    let start = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["record"]["start"].as_str().map(str::to_string))
        .expect("the example's meeting");
    (chrono::DateTime::parse_from_rfc3339(&start).unwrap() + chrono::Duration::hours(hours))
        .with_timezone(&chrono::Utc)
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// A meeting Jayne organizes and tracks in her calendar (the tracking category), as a mail
/// client writes it.
fn tracked_meeting(start: &str, end: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//khal//EN\r\nBEGIN:VEVENT\r\nUID:lunch@test\r\n\
         DTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\nSUMMARY:Lunch with Kaylee\r\n\
         ORGANIZER:mailto:jayne@serenity.example\r\nCATEGORIES:Tracked to CRM\r\nEND:VEVENT\r\n\
         END:VCALENDAR\r\n"
    )
}

fn result_line(key: &str, tail: &str) -> String {
    format!("{{\"kind\": \"command_result\", \"key\": \"{key}\", {tail}}}\n")
}

/// The schema of `command`'s type names exactly the fields `crm pending --json` prints.
fn fields_match_the_schema(command: &Value) {
    let name = command["command"].as_str().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/schemas")
        .join(format!("crm-command.{name}.schema.json"));
    let schema: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let mut printed: Vec<&String> = command.as_object().unwrap().keys().collect();
    let mut specified: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    printed.sort();
    specified.sort();
    assert_eq!(printed, specified, "{command}");
}

#[test]
fn a_tracked_meeting_goes_to_the_crm_as_a_command_and_its_result_links_it_live_and_offline() {
    let site = Site::new();
    let example = site.example_changes();
    let serve = Serve::start(&site);
    let out = site.run(&["crm", "apply", example.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let calendar = site.root.join("vdir/jayne/calendar");
    serve.wait_for("Jayne's calendar", || calendar.is_dir().then_some(()));

    // Jayne tracks a meeting in her mail client: it becomes a track_appointment command.
    let (start, end) = (ics_time(&example, 4), ics_time(&example, 5));
    fs::write(calendar.join("lunch.ics"), tracked_meeting(&start, &end)).unwrap();
    let command = serve.wait_for("the track_appointment command", || {
        pending(&site)
            .into_iter()
            .find(|c| c["command"] == "track_appointment")
    });
    fields_match_the_schema(&command);
    assert_eq!(command["rule"], "R33", "{command}");
    assert_eq!(command["mailbox"], "mbx-jayne");
    assert_eq!(command["title"], "Lunch with Kaylee");
    assert_eq!(command["remote"], "calendar/lunch.ics");
    assert_eq!(command["fields"]["subject"], "Lunch with Kaylee");
    assert_eq!(command["fields"]["organizer"], "jayne@serenity.example");
    assert_eq!(command["version"], Value::Null);
    assert_eq!(command["due"], true);
    let key = command["key"].as_str().unwrap().to_string();
    assert_eq!(
        key,
        format!("mbx-jayne/{}", command["intent"].as_str().unwrap())
    );

    // The CRM is in maintenance: a retryable failure, recorded through the running service;
    // the same command (same key) waits for its retry.
    let failed = result_line(
        &key,
        r#""status": "failed", "retryable": true, "reason": "CRM in maintenance", "code": "503""#,
    );
    let out = apply(&site, "failed.jsonl", &failed);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("running service"), "{text}");
    assert!(
        text.contains("could not carry out command track_appointment"),
        "{text}"
    );
    assert!(text.contains("[R12]"), "{text}");
    let waiting = pending(&site);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(
        (&waiting[0]["key"], &waiting[0]["attempts"]),
        (&Value::from(key.clone()), &Value::from(1))
    );
    assert_eq!(waiting[0]["last_error"]["code"], "503");
    serve.stop(&site);

    // Offline, the same command is listed (and shown as the mailbox's pending intent); a bad
    // result line is refused, nothing applied.
    assert_eq!(pending(&site)[0]["key"], key.as_str());
    let show = site.run(&["--json", "mailbox", "show", "mbx-jayne"]);
    let show: Value = serde_json::from_str(&stdout(&show)).unwrap();
    let intent = &show["pending_intents"][0];
    assert_eq!(
        (&intent["command"], &intent["key"], &intent["target"]),
        (
            &Value::from("track_appointment"),
            &Value::from(key.clone()),
            &Value::from("crm")
        ),
        "{show:#}"
    );
    let before = event_count(&site);
    let bad = format!(
        "{}{}",
        result_line(
            &key,
            r#""status": "done", "record": "apt-lunch-kaylee", "version": 1"#
        ),
        result_line(&key, r#""status": "done", "record": "apt-lunch-kaylee""#)
    );
    let out = apply(&site, "bad.jsonl", &bad);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("bad.jsonl:2: field \"version\": missing"),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    assert_eq!(event_count(&site), before);

    // The CRM created the appointment: the result links the item to the CRM's row.
    let done = result_line(
        &key,
        r#""status": "done", "record": "apt-lunch-kaylee", "version": 1"#,
    );
    let out = apply(&site, "done.jsonl", &done);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("carried out command track_appointment"),
        "{text}"
    );
    assert!(text.contains("mbx-jayne: linked  [R33]"), "{text}");
    let recorded = event_count(&site);
    // Applied again: acknowledged, recorded nowhere.
    let out = apply(&site, "done-again.jsonl", &done);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no open command has this key"),
        "{}",
        stdout(&out)
    );
    assert_eq!(event_count(&site), recorded);

    assert!(pending(&site).is_empty());
    assert!(stdout(&site.run(&["crm", "pending"])).contains("no open CRM commands"));
    let show = site.run(&["--json", "mailbox", "show", "mbx-jayne"]);
    let show: Value = serde_json::from_str(&stdout(&show)).unwrap();
    let link = show["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["record"] == "apt-lunch-kaylee")
        .unwrap_or_else(|| panic!("the link is recorded: {show:#}"));
    assert_eq!(
        (&link["status"], &link["remote"]),
        (&Value::from("linked"), &Value::from("calendar/lunch.ics"))
    );
    assert_eq!(link["title"], "Lunch with Kaylee");
    let story = stdout(&site.run(&["explain", "apt-lunch-kaylee"]));
    assert!(
        story.contains(&format!("sent to the CRM as a command, key {key}")),
        "{story}"
    );
    assert!(story.contains("R33      intent succeeded: the CRM carried out command track_appointment: row apt-lunch-kaylee is at version 1"), "{story}");
    assert!(
        story.contains("the CRM could not carry out command track_appointment"),
        "{story}"
    );

    // Live again: a contact tracked in the address book, its result applied to the service.
    let serve = Serve::start(&site);
    let contacts = site.root.join("vdir/jayne/contacts");
    fs::create_dir_all(&contacts).unwrap();
    fs::write(
        contacts.join("kaylee.vcf"),
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:kaylee@test\r\nFN:Kaylee Frye\r\nN:Frye;Kaylee;;;\r\n\
         EMAIL;TYPE=INTERNET:kaylee@serenity.example\r\nCATEGORIES:Tracked to CRM\r\nEND:VCARD\r\n",
    )
    .unwrap();
    let card = serve.wait_for("the track_contact command", || {
        pending(&site)
            .into_iter()
            .find(|c| c["command"] == "track_contact")
    });
    fields_match_the_schema(&card);
    assert_eq!(card["fields"]["email"], "kaylee@serenity.example");
    let key = card["key"].as_str().unwrap();
    let out = apply(
        &site,
        "contact.jsonl",
        &result_line(
            key,
            r#""status": "done", "record": "con-kaylee", "version": 1"#,
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("running service"), "{}", stdout(&out));
    assert!(pending(&site).is_empty());
    let show: Value = serde_json::from_str(&stdout(&site.run(&[
        "--json",
        "mailbox",
        "show",
        "mbx-jayne",
    ])))
    .unwrap();
    assert!(
        show["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["record"] == "con-kaylee" && l["status"] == "linked"),
        "{show:#}"
    );
    serve.stop(&site);
}
