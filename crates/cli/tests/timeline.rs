//! `ledgersync timeline` and `ledgersync projections rebuild` as a user runs them, on the data
//! directory of `ledgersync demo`.

mod common;
use common::*;

use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "failed: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn demo(dir: &Path) -> String {
    let data = dir.join("data");
    ok(&ledgersync(&["demo", "--data", data.to_str().unwrap()]));
    data.to_str().unwrap().to_string()
}

#[test]
fn timeline_shows_bike_repair_per_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let data = demo(dir.path());

    let text = ok(&ledgersync(&[
        "timeline",
        "--data",
        &data,
        "apt-bike-repair",
    ]));
    assert!(text.contains("1 activity"), "{text}");
    assert!(text.contains("appointment \"Bike repair\""), "{text}");
    let jayne = text
        .lines()
        .find(|l| l.trim_start().starts_with("mbx-jayne"))
        .expect("a line for Jayne's mailbox");
    assert!(jayne.contains("deleted"), "{jayne}");
    assert!(
        jayne.contains("R22: deleted from the mailbox, cancellation sent to 3 attendee(s)"),
        "{jayne}"
    );
    let paul = text
        .lines()
        .find(|l| l.trim_start().starts_with("mbx-paul"))
        .expect("a line for Paul's mailbox");
    assert!(paul.contains("linked"), "{paul}");

    let json: Value = serde_json::from_str(&ok(&ledgersync(&[
        "timeline",
        "--data",
        &data,
        "--json",
        "apt-bike-repair",
    ])))
    .unwrap();
    assert_eq!(json["record"], "apt-bike-repair");
    let activities = json["activities"].as_array().unwrap();
    assert_eq!(activities.len(), 1);
    let bike = &activities[0];
    assert_eq!(bike["title"], "Bike repair");
    assert_eq!(bike["entity"], "appointment");
    assert_eq!(bike["mailboxes"]["mbx-jayne"]["status"], "deleted");
    assert_eq!(bike["mailboxes"]["mbx-paul"]["status"], "linked");
    // The file the vdir connector wrote in Paul's calendar.
    let remote = bike["mailboxes"]["mbx-paul"]["remote"].as_str().unwrap();
    assert!(
        remote.starts_with("calendar/apt-bike-repair-") && remote.ends_with(".ics"),
        "{remote}"
    );
    assert_eq!(
        bike["mailboxes"]["mbx-jayne"]["last_decision"]["rules"][0],
        "R22"
    );
    // The first timeline caught up with the whole journal; the second had nothing to fold.
    assert_eq!(json["folded"], 0);
    let checkpoint = json["checkpoint"].as_u64().unwrap();
    assert!(checkpoint > 0);

    // A user's timeline, in time order.
    let json: Value = serde_json::from_str(&ok(&ledgersync(&[
        "timeline", "--data", &data, "--json", "--user", "paul",
    ])))
    .unwrap();
    let titles: Vec<&str> = json["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Bike repair", "Site visit", "Quarterly review"]);

    // Rebuild folds every event again, and the timeline reads the same.
    let text = ok(&ledgersync(&["projections", "rebuild", "--data", &data]));
    assert!(
        text.contains(&format!("{checkpoint} events folded in")),
        "{text}"
    );
    let json: Value = serde_json::from_str(&ok(&ledgersync(&[
        "projections",
        "rebuild",
        "--data",
        &data,
        "--json",
    ])))
    .unwrap();
    assert_eq!(json["events"], checkpoint);
    assert_eq!(json["checkpoint"], checkpoint);
    assert!(json["millis"].is_u64());
    let after = ok(&ledgersync(&[
        "timeline",
        "--data",
        &data,
        "apt-bike-repair",
    ]));
    assert!(after.contains("R22: deleted from the mailbox"), "{after}");
}

#[test]
fn timeline_needs_a_data_directory_and_a_subject() {
    let dir = tempfile::tempdir().unwrap();
    let o = ledgersync(&["timeline", "apt-bike-repair"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--data"));

    let empty = dir.path().join("empty");
    let o = ledgersync(&["projections", "rebuild", "--data", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds no journal"));

    let o = ledgersync(&["timeline", "--data", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}
