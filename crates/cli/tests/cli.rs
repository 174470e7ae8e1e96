//! The `ledgersync` binary as a user runs it: the demo, then replay, explain, what-if and events
//! on its data directory, and clear errors for bad input.

mod common;
use common::*;

use serde_json::Value;
use std::path::Path;

fn demo(dir: &Path, backend: &str) -> String {
    let data = dir.join("data");
    let o = ledgersync(&[
        "demo",
        "--data",
        data.to_str().unwrap(),
        "--backend",
        backend,
    ]);
    assert!(
        o.status.success(),
        "demo failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn reproduced(text: &str) -> (u64, u64) {
    let line = text
        .lines()
        .find(|l| l.starts_with("decisions reproduced: "))
        .expect("replay line");
    let (a, b) = line["decisions reproduced: ".len()..]
        .split_once('/')
        .unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

#[test]
fn demo_explains_the_cancellation_then_what_if_then_replays() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo(dir.path(), "redb");
    let explain = out.find("== ledgersync explain").expect("explain section");
    let what_if = out.find("== ledgersync what-if").expect("what-if section");
    let replay = out.find("== ledgersync replay").expect("replay section");
    assert!(explain < what_if && what_if < replay, "sections in order");
    let why = out
        .lines()
        .find(|l| l.trim_start().starts_with("why: access lost"))
        .expect("why line");
    assert!(
        why.contains("(R22)") && why.contains("distinct_physical_logical_deletes is false"),
        "{why}"
    );
    assert!(out.contains("Bike repair (mailbox mbx-jayne"), "{out}");
    assert!(
        out.contains("cancellation sent to 3 attendee(s) → unlinked, left in the calendar"),
        "{out}"
    );
    let (n, total) = reproduced(&out);
    assert!(total > 0 && n == total, "{n}/{total}");

    // Through serve's path: the connector wrote the cancellations into the attendees'
    // Maildirs, shown before the explanation; each attendee of "Bike repair" got one.
    let on_disk = out.find("== on disk").expect("on-disk section");
    assert!(
        on_disk < explain,
        "the files are shown next to, before, explain"
    );
    let maildir = dir.path().join("data").join("maildir");
    for attendee in [
        "paul@serenity.example",
        "zoe@customer.example",
        "kaylee@garage.example",
    ] {
        let new = maildir.join(attendee).join("new");
        let bike: Vec<String> = std::fs::read_dir(&new)
            .unwrap_or_else(|e| panic!("{}: {e}", new.display()))
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .filter(|m| m.contains("SUMMARY:Bike repair"))
            .collect();
        let count = |method: &str| bike.iter().filter(|m| m.contains(method)).count();
        assert_eq!(
            count("METHOD:REQUEST"),
            1,
            "one invitation to Bike repair for {attendee}"
        );
        assert_eq!(
            count("METHOD:CANCEL"),
            1,
            "one cancellation of Bike repair for {attendee}"
        );
        assert!(
            out.contains(&format!("{attendee}  METHOD:CANCEL SUMMARY:Bike repair")),
            "{out}"
        );
    }
    // Jayne's copy is gone from her calendar; Paul's (an attendee's) stays.
    let calendar = |user: &str| -> Vec<String> {
        std::fs::read_dir(dir.path().join("data/vdir").join(user).join("calendar"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("apt-bike-repair"))
            .collect()
    };
    assert!(calendar("jayne").is_empty());
    assert_eq!(calendar("paul").len(), 1);
    // The story was applied from files.
    assert!(dir.path().join("data/story").read_dir().unwrap().count() >= 7);
}

#[test]
fn read_commands_work_on_the_demo_data_with_json() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), "sled");
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let o = ledgersync(&["replay", "--data", data]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (n, total) = reproduced(&stdout(&o));
    assert_eq!(n, total);

    let o = ledgersync(&["replay", "--data", data, "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["reproduced"], v["decisions"]);
    assert_eq!(v["mismatches"].as_array().unwrap().len(), 0);

    let o = ledgersync(&["explain", "--data", data, "Bike repair", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let jayne = v["items"][0]["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mailbox"] == "mbx-jayne")
        .unwrap()
        .clone();
    assert_eq!(
        jayne["what_if"]["setting"],
        "distinct_physical_logical_deletes"
    );
    assert!(jayne["why"].as_str().unwrap().contains("R22"));

    let o = ledgersync(&["explain", "--data", data, "crm:apt-site-visit"]);
    assert!(stdout(&o).contains("R27"), "{}", stdout(&o));

    let o = ledgersync(&[
        "what-if",
        "--data",
        data,
        "--set",
        "distinct_physical_logical_deletes=true",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let titles: Vec<&str> = v["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Quarterly review", "Bike repair", "Linda Park"]);

    let o = ledgersync(&["events", "--data", data, "--json"]);
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 100);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["position"], (i + 1) as u64, "positions contiguous from 1");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["event_type"] == "cancel_intent" && l["rule"] == "R22")
    );

    let o = ledgersync(&[
        "events",
        "--data",
        data,
        "--mailbox",
        "mbx-paul",
        "--limit",
        "3",
    ]);
    assert_eq!(stdout(&o).lines().count(), 3);
    assert!(stdout(&o).lines().all(|l| l.contains("mailbox/mbx-paul")));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = ledgersync(&["replay"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("pass --data DIR"), "{}", stderr(&o));

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = ledgersync(&["explain", "--data", empty.to_str().unwrap(), "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("holds no journal"), "{}", stderr(&o));

    demo(dir.path(), "redb");
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let o = ledgersync(&["what-if", "--data", data, "--set", "distinct_deletes=true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown setting `distinct_deletes`"),
        "{}",
        stderr(&o)
    );
    let o = ledgersync(&["what-if", "--data", data, "--set", "update_past_meetings"]);
    assert!(
        stderr(&o).contains("not of the form key=value"),
        "{}",
        stderr(&o)
    );
    let o = ledgersync(&["explain", "--data", data, "No such meeting"]);
    assert!(
        stderr(&o).contains("no item matches `No such meeting`"),
        "{}",
        stderr(&o)
    );

    let o = ledgersync(&["demo", "--data", data]);
    assert!(stderr(&o).contains("is not empty"), "{}", stderr(&o));

    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[journal]\nbackend = \"rocksdb\"\n").unwrap();
    let o = ledgersync(&["--config", cfg.to_str().unwrap(), "demo"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("bad.toml") && e.contains("journal.backend") && e.contains("redb, sled"),
        "{e}"
    );
}

#[test]
fn a_running_journal_is_not_opened_twice() {
    let dir = tempfile::tempdir().unwrap();
    demo(dir.path(), "redb");
    let journal_dir = dir.path().join("data").join("journal");
    let held =
        ledgersync_journal::open(&journal_dir, &ledgersync_journal::JournalOptions::default())
            .unwrap();
    let o = ledgersync(&[
        "replay",
        "--data",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).to_lowercase().contains("another"),
        "{}",
        stderr(&o)
    );
    drop(held);
}

#[test]
fn example_prints_an_organization_whose_meeting_is_tomorrow_and_crm_apply_takes_it() {
    let out = ledgersync(&["example"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let meeting = lines
        .iter()
        .find(|l| l["record"]["id"] == "apt-bike-repair")
        .expect("the meeting");
    let start =
        chrono::DateTime::parse_from_rfc3339(meeting["record"]["start"].as_str().unwrap()).unwrap();
    let now = chrono::Utc::now();
    let ahead = start.with_timezone(&chrono::Utc) - now;
    assert!(
        ahead > chrono::Duration::hours(8) && ahead <= chrono::Duration::hours(34),
        "the meeting starts {start}, {ahead} after now"
    );

    // A user applies it as printed: the organizer's mailbox sends the invitations.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("example.jsonl");
    std::fs::write(&file, &text).unwrap();
    let data = dir.path().join("data");
    let out = ledgersync(&[
        "crm",
        "apply",
        file.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("→ mbx-jayne: to be created with an invitation to 2 attendee(s), waiting for the mail server  [R17]"),
        "{}",
        stdout(&out)
    );

    let out = ledgersync(&["example", "--start", "tomorrow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--start \"tomorrow\" is not an RFC 3339 time"),
        "{}",
        stderr(&out)
    );
}
