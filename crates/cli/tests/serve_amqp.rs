//! `ledgersync serve` with `[bus] kind = "amqp"` against the real RabbitMQ (127.0.0.1:5672, a
//! vhost of each test's own; a missing broker fails the test and says how to start one). The
//! other side is played by `tests/clients/bus_client.py`, written from `docs/` alone with pika:
//! it publishes CRM lines, reads the event stream, the dead letters and the CRM command queue,
//! and answers commands as a CRM adapter would.

mod common;

use common::{Serve, Site, ledgersync, stderr, stdout};
use ledgersync_bus::test_broker::Vhost;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A site whose configuration names the test's vhost as its bus.
fn amqp_site(vhost: &Vhost) -> Site {
    Site::on_bus(&vhost.url())
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/bus_client.py")
}

/// `bus_client.py ARGS`, which must succeed; its standard output.
fn client(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(client_script())
        .args(args)
        .output()
        .expect("python3 runs (scripts/test installs pika)");
    assert!(
        out.status.success(),
        "bus_client.py {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// How many times each of `ids` is recorded in the organization stream.
fn recorded(site: &Site, ids: &[String]) -> BTreeMap<String, usize> {
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let mut counts = BTreeMap::new();
    for e in site.journal() {
        let id = e["event_id"].as_str().unwrap();
        if wanted.contains(id) {
            assert_eq!(e["stream"], "org/serenity", "{e}");
            *counts.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Waits until every one of `ids` is recorded; each must be there once.
fn wait_recorded(serve: &Serve, site: &Site, ids: &[String]) {
    let counts = serve.wait_for("every published line recorded", || {
        let counts = recorded(site, ids);
        (counts.len() == ids.len()).then_some(counts)
    });
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

/// Waits until the journal has not grown for `calm`; its events.
fn settled(serve: &Serve, site: &Site, calm: Duration) -> Vec<Value> {
    let mut last = site.journal();
    let mut since = Instant::now();
    serve.wait_for("the journal to settle", || {
        std::thread::sleep(Duration::from_millis(200));
        let now = site.journal();
        if now.len() != last.len() {
            last = now;
            since = Instant::now();
            return None;
        }
        (since.elapsed() >= calm).then(|| now.clone())
    })
}

/// A consumer of the event stream started before the service (`bus_client.py events`).
struct EventsClient {
    child: Child,
    stdin: ChildStdin,
}

impl EventsClient {
    fn start(vhost: &Vhost, pattern: &str) -> Self {
        let mut child = Command::new("python3")
            .arg(client_script())
            .args(["events", &vhost.url(), pattern])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut lines = BufReader::new(child.stdout.as_mut().unwrap()).lines();
        let ready = lines.next().expect("a first line").unwrap();
        assert_eq!(ready, "READY");
        let stdin = child.stdin.take().unwrap();
        Self { child, stdin }
    }

    /// Tells it the event ids to expect; its verdict (`OK <n> <duplicates>`).
    fn expect(mut self, site: &Site, ids: &[String]) -> String {
        let file = site.root.join("expected-events.json");
        fs::write(&file, serde_json::to_string(ids).unwrap()).unwrap();
        writeln!(self.stdin, "{}", file.display()).unwrap();
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stdout(&out));
        stdout(&out).trim().to_string()
    }
}

fn with_example(site: &Site) -> (Serve, Vec<String>) {
    let serve = Serve::start(site, "serve.log");
    let ids = site.publish(&site.example_changes());
    wait_recorded(&serve, site, &ids);
    (serve, ids)
}

#[test]
fn crm_lines_from_the_queue_are_decided_and_every_event_reaches_a_separate_consumer() {
    let vhost = Vhost::new();
    let site = amqp_site(&vhost);
    let events = EventsClient::start(&vhost, "serenity.#");
    let (serve, ids) = with_example(&site);
    // The lines are recorded under their message ids, once each; the example's meeting reaches
    // Jayne's and Paul's calendars: the driver's listings and intent outcomes travelled through
    // the partitions and were decided by the mailbox actors.
    let calendar = site.root.join("vdir/paul/calendar");
    serve.wait_for("the meeting in Paul's calendar", || {
        fs::read_dir(&calendar)
            .ok()?
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "ics"))
            .then_some(())
    });
    let all = settled(&serve, &site, Duration::from_secs(2));
    let succeeded = all
        .iter()
        .filter(|e| e["stream"] == "mailbox/mbx-paul" && e["event_type"] == "intent_succeeded")
        .count();
    assert!(
        succeeded >= 1,
        "Paul's calendar write is recorded as its outcome"
    );
    assert!(
        all.iter()
            .any(|e| e["stream"] == "mailbox/mbx-jayne" && e["event_type"] == "listing_completed"),
        "Jayne's listings are recorded"
    );
    let positions: Vec<u64> = all
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (1..=all.len() as u64).collect::<Vec<_>>());
    assert_eq!(ids.len(), recorded(&site, &ids).len());

    // Every event of the journal reaches the separate consumer, in order per stream.
    let every: Vec<String> = all
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    let verdict = events.expect(&site, &every);
    assert!(
        verdict.starts_with(&format!("OK {} ", every.len())),
        "{verdict}"
    );
    let log = serve.log();
    assert!(log.contains("consuming CRM lines"), "{log}");
    assert!(!log.contains("guest:guest"), "the password is never logged");
    let mut serve = serve;
    assert!(serve.terminate().success(), "{}", serve.log());
    let replay = site.run(&["replay"]);
    assert!(replay.status.success(), "{}", stdout(&replay));
}

#[test]
fn a_line_delivered_twice_is_recorded_once() {
    let vhost = Vhost::new();
    let site = amqp_site(&vhost);
    let (serve, _) = with_example(&site);
    let file = site.root.join("wash.jsonl");
    fs::write(
        &file,
        r#"{"kind": "user_registered", "user": "wash", "name": "Hoban Washburne", "email": "wash@serenity.example"}"#,
    )
    .unwrap();
    let id = "0193a2b4-0000-7000-8000-00000000d00b";
    for _ in 0..3 {
        client(&["publish", &vhost.url(), file.to_str().unwrap(), id]);
    }
    let ids = vec![id.to_string()];
    wait_recorded(&serve, &site, &ids);
    let all = settled(&serve, &site, Duration::from_secs(2));
    let washes = all
        .iter()
        .filter(|e| e["payload"].to_string().contains("Hoban"))
        .count();
    assert_eq!(washes, 1, "the change is recorded once");
}

#[test]
fn bad_messages_are_dead_lettered_with_their_reasons_and_the_service_keeps_serving() {
    let vhost = Vhost::new();
    let site = amqp_site(&vhost);
    let (serve, _) = with_example(&site);
    let headers = json!({"ledgersync-schema": "crm-change", "ledgersync-schema-version": 1});
    let good = r#"{"kind": "user_registered", "user": "wash", "name": "Hoban Washburne", "email": "wash@serenity.example"}"#;
    let id = |n: u32| format!("0193a2b4-0000-7000-8000-0000000000{n:02}");
    let spec = json!([
        {"queue": "ledgersync.crm", "message_id": id(1), "headers": headers,
         "body": "{\"kind\": \"user_registered\",\n \"user\": }"},
        {"queue": "ledgersync.crm", "message_id": id(2),
         "headers": {"ledgersync-schema": "crm-change", "ledgersync-schema-version": 2},
         "body": good},
        {"queue": "ledgersync.crm", "message_id": id(3), "headers": headers,
         "repeat": "x", "times": 10 * 1024 * 1024},
        {"queue": "ledgersync.crm", "message_id": id(4), "headers": headers,
         "body": "{\"kind\": \"user_exploded\", \"user\": \"wash\"}"},
        {"queue": "ledgersync.crm", "message_id": id(5), "headers": headers,
         "body": "{\"kind\": \"user_registered\", \"user\": \"wash\", \"name\": \"Wash\", \"email\": \"not an address\"}"},
        {"queue": "ledgersync.crm", "message_id": id(6), "headers": headers, "body": good},
    ]);
    let file = site.root.join("bad.json");
    fs::write(&file, spec.to_string()).unwrap();
    client(&["raw", &vhost.url(), file.to_str().unwrap()]);

    let dead: Vec<Value> = serde_json::from_str(&client(&["dead", &vhost.url(), "5"])).unwrap();
    let by_id: BTreeMap<String, &Value> = dead
        .iter()
        .map(|d| (d["message_id"].as_str().unwrap().to_string(), &d["headers"]))
        .collect();
    let reason = |n: u32| {
        by_id
            .get(&id(n))
            .map(|headers| (*headers).clone())
            .unwrap_or_else(|| panic!("message {n} dead-lettered: {dead:#?}"))
    };
    let malformed = reason(1);
    assert!(
        malformed["ledgersync-dead-letter-reason"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
            || malformed["ledgersync-dead-letter-reason"]
                .as_str()
                .unwrap()
                .contains("JSON"),
        "{malformed}"
    );
    assert_eq!(malformed["ledgersync-dead-letter-line"], 2, "{malformed}");
    assert_eq!(malformed["ledgersync-dead-letter-queue"], "ledgersync.crm");
    let version = reason(2);
    assert!(
        version["ledgersync-dead-letter-reason"]
            .as_str()
            .unwrap()
            .contains("version"),
        "{version}"
    );
    let big = reason(3);
    assert!(
        big["ledgersync-dead-letter-reason"]
            .as_str()
            .unwrap()
            .contains("10485760 bytes"),
        "{big}"
    );
    let kind = reason(4);
    assert!(
        kind["ledgersync-dead-letter-reason"]
            .as_str()
            .unwrap()
            .contains("user_exploded"),
        "{kind}"
    );
    let email = reason(5);
    assert_eq!(email["ledgersync-dead-letter-field"], "email", "{email}");
    // The service kept serving: the good change after them is recorded.
    wait_recorded(&serve, &site, &[id(6)]);
    assert!(serve.log().contains("ready:"));
}

/// A meeting Jayne organizes and tracks in her calendar (the tracking category), as a mail
/// client writes it, an hour long from `start` (RFC 3339).
fn tracked_meeting(start: &str) -> String {
    let start = chrono::DateTime::parse_from_rfc3339(start).unwrap();
    let ics = |t: chrono::DateTime<chrono::FixedOffset>| {
        t.with_timezone(&chrono::Utc)
            .format("%Y%m%dT%H%M%SZ")
            .to_string()
    };
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//khal//EN\r\nBEGIN:VEVENT\r\nUID:lunch@test\r\n\
         DTSTAMP:20260101T000000Z\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:Lunch with Kaylee\r\n\
         ORGANIZER:mailto:jayne@serenity.example\r\nCATEGORIES:Tracked to CRM\r\nEND:VEVENT\r\n\
         END:VCALENDAR\r\n",
        ics(start),
        ics(start + chrono::Duration::hours(1))
    )
}

#[test]
fn a_meeting_tracked_in_a_mail_client_goes_to_the_crm_adapter_and_its_result_links_it_without_echo()
{
    let vhost = Vhost::new();
    let site = amqp_site(&vhost);
    let (serve, _) = with_example(&site);
    let example = fs::read_to_string(site.root.join("example.jsonl")).unwrap();
    let meeting: Value = example
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["record"]["entity"] == "appointment")
        .expect("the example's meeting");
    let start = meeting["record"]["start"].as_str().unwrap().to_string();
    let calendar = site.root.join("vdir/jayne/calendar");
    serve.wait_for("Jayne's calendar", || calendar.is_dir().then_some(()));
    fs::write(calendar.join("lunch.ics"), tracked_meeting(&start)).unwrap();

    // The adapter takes the command off the command queue and answers it.
    let done: Vec<Value> = serde_json::from_str(&client(&["adapter", &vhost.url(), "1"])).unwrap();
    let command = &done[0];
    assert_eq!(command["command"], "track_appointment", "{command}");
    assert_eq!(command["title"], "Lunch with Kaylee");
    assert_eq!(command["fields"]["organizer"], "jayne@serenity.example");
    let row = command["record"].as_str().unwrap().to_string();
    let show = serve.wait_for("the link under the CRM's row id", || {
        let out = site.run(&["--json", "mailbox", "show", "mbx-jayne"]);
        let show: Value = serde_json::from_str(&stdout(&out)).ok()?;
        show["links"]
            .as_array()?
            .iter()
            .find(|l| l["record"] == row.as_str() && l["status"] == "linked")
            .cloned()
    });
    assert_eq!(show["remote"], "calendar/lunch.ics", "{show}");
    assert!(
        stdout(&site.run(&["crm", "pending"])).contains("no open CRM commands"),
        "the command is closed"
    );

    // The CRM's own echo of the row it created (the version its result named) decides nothing
    // on the mail side: the item stays as the mail client wrote it.
    let before = settled(&serve, &site, Duration::from_secs(2)).len();
    let lunch = fs::read_to_string(calendar.join("lunch.ics")).unwrap();
    let mut echo = meeting.clone();
    echo["record"]["id"] = json!(row);
    echo["record"]["version"] = json!(1);
    echo["record"]["subject"] = json!("Lunch with Kaylee");
    echo["record"]["required"] = json!([]);
    echo["record"]["optional"] = json!([]);
    echo["record"]["end"] = json!(
        (chrono::DateTime::parse_from_rfc3339(&start).unwrap() + chrono::Duration::hours(1))
            .to_rfc3339()
    );
    let file = site.root.join("echo.jsonl");
    fs::write(&file, echo.to_string()).unwrap();
    let ids = site.publish(&file);
    wait_recorded(&serve, &site, &ids);
    let after = settled(&serve, &site, Duration::from_secs(3));
    let new_decisions: Vec<&Value> = after[before..]
        .iter()
        .filter(|e| e["stream"] == "mailbox/mbx-jayne" && !e["rule"].is_null())
        .collect();
    assert!(
        new_decisions.is_empty(),
        "the echo decided nothing: {new_decisions:#?}"
    );
    assert_eq!(
        fs::read_to_string(calendar.join("lunch.ics")).unwrap(),
        lunch
    );
}

#[test]
fn a_service_killed_before_its_acks_gets_the_messages_again_and_decides_nothing_twice() {
    let vhost = Vhost::new();
    let site = amqp_site(&vhost);
    let (mut serve, _) = with_example(&site);
    const LINES: usize = 1000;
    let batch: String = (0..LINES)
        .map(|i| {
            format!(
                "{{\"kind\": \"record_upserted\", \"record\": {{\"entity\": \"contact\", \"id\": \"con-{i:04}\", \"owner\": \"paul\", \"version\": 1, \"full_name\": \"Contact {i}\", \"email\": \"c{i}@customer.example\", \"state\": \"active\"}}}}\n"
            )
        })
        .collect();
    let file = site.root.join("batch.jsonl");
    fs::write(&file, batch).unwrap();
    let ids = site.publish(&file);
    assert_eq!(ids.len(), LINES);
    // Some of the batch is recorded, not all of it: then the kill.
    serve.wait_for("the first changes recorded", || {
        let n = recorded(&site, &ids).len();
        (n > 0 && n < LINES).then_some(())
    });
    serve.kill();

    let serve = Serve::start(&site, "serve-2.log");
    wait_recorded(&serve, &site, &ids);
    // Every contact ends up in Paul's address book once.
    let contacts = site.root.join("vdir/paul/contacts");
    serve.wait_for("every contact in the address book", || {
        let cards = fs::read_dir(&contacts)
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("con-0") || name.starts_with("con-1")
            })
            .count();
        (cards == LINES).then_some(())
    });
    let all = settled(&serve, &site, Duration::from_secs(2));
    // Each contact decided once: one create, one link. (An intent executed again after the
    // restart — its first outcome not yet consumed when the service died — has a second
    // outcome recorded, which names an intent no longer pending and decides nothing.)
    let per_contact = |event_type: &str| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for e in all
            .iter()
            .filter(|e| e["stream"] == "mailbox/mbx-paul" && e["event_type"] == event_type)
        {
            let text = e["payload"].to_string();
            // The batch's rows (`con-0000`…), not the example's contacts.
            if let Some(at) = text.find("con-")
                && text[at + 4..at + 8].bytes().all(|b| b.is_ascii_digit())
            {
                *counts.entry(text[at..at + 8].to_string()).or_insert(0) += 1;
            }
        }
        counts
    };
    for decision in ["create_intent", "link_created"] {
        let counts = per_contact(decision);
        assert_eq!(counts.len(), LINES, "{decision}: one per contact");
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
        assert!(twice.is_empty(), "{decision} decided twice: {twice:?}");
    }
    let replay = site.run(&["replay"]);
    assert!(replay.status.success(), "{}", stdout(&replay));
}

#[test]
fn crm_apply_with_an_amqp_bus_refuses_a_file_with_a_bad_line_and_publishes_nothing() {
    let vhost = Vhost::new();
    let site = amqp_site(&vhost);
    let file = site.root.join("bad.jsonl");
    fs::write(
        &file,
        "{\"kind\": \"user_registered\", \"user\": \"wash\", \"name\": \"W\", \"email\": \"wash@serenity.example\"}\n[1, 2]\n{\"user\": \"x\"}\n",
    )
    .unwrap();
    let out: Output = ledgersync(&[
        "--config",
        site.config.to_str().unwrap(),
        "crm",
        "apply",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("bad.jsonl:2: not a JSON object"), "{err}");
    assert!(
        err.contains("bad.jsonl:3: field \"kind\": missing"),
        "{err}"
    );
    assert!(err.contains("nothing was published"), "{err}");
}
