//! `ledgersync alerts` as a user runs it, on the data directory of `ledgersync demo` after an
//! administrator's disable (an R81 information alert) and a failed Test & Enable (an error
//! alert).

mod common;
use common::*;

use serde_json::Value;
use std::process::Output;

fn ok(o: &Output) -> String {
    let out = stdout(o);
    assert!(o.status.success(), "failed: {out}{}", stderr(o));
    out
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(&ledgersync(args))).expect("JSON output")
}

#[test]
fn alerts_lists_the_alerts_of_the_mailboxes_by_mailbox_and_level() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    ok(&ledgersync(&["demo", "--data", data]));
    ok(&ledgersync(&[
        "mailbox",
        "disable",
        "mbx-paul",
        "--workload",
        "act",
        "--data",
        data,
    ]));
    ok(&ledgersync(&[
        "mailbox",
        "test-enable",
        "mbx-jayne",
        "--fail",
        "act",
        "--data",
        data,
    ]));

    // Everything, oldest first, as text.
    let text = ok(&ledgersync(&["alerts", "--data", data]));
    assert!(
        text.starts_with("alerts (projection at journal position "),
        "{text}"
    );
    let paul = text
        .lines()
        .find(|l| l.contains("mailbox mbx-paul") && l.contains("information"))
        .unwrap_or_else(|| panic!("Paul's disable alert: {text}"));
    assert!(paul.contains("R81"), "{paul}");
    assert!(paul.contains("has been disabled"), "{paul}");
    let jayne = text
        .lines()
        .find(|l| l.contains("mailbox mbx-jayne") && l.contains("error"))
        .unwrap_or_else(|| panic!("Jayne's failed test alert: {text}"));
    assert!(jayne.starts_with("20"), "a time first: {jayne}");
    assert!(text.contains("    notify: mailbox owner"), "{text}");

    // One mailbox, one level, as JSON.
    let only = json(&[
        "alerts",
        "--data",
        data,
        "--mailbox",
        "mbx-paul",
        "--level",
        "information",
        "--json",
    ]);
    assert_eq!(only["folded"], 0, "the first command caught up: {only}");
    let alerts = only["alerts"].as_array().unwrap();
    assert!(!alerts.is_empty(), "{only}");
    for a in alerts {
        assert_eq!(a["mailbox"], "mbx-paul", "{a}");
        assert_eq!(a["level"], "information", "{a}");
    }
    assert!(alerts.iter().any(|a| a["rule"] == "R81"), "{only}");

    let errors = json(&["alerts", "--data", data, "--level", "error", "--json"]);
    let errors = errors["alerts"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|a| a["mailbox"] == "mbx-jayne" && a["level"] == "error"),
        "{errors:?}"
    );
    assert!(errors.iter().all(|a| a["level"] == "error"), "{errors:?}");
    // Positions and times increase.
    let positions: Vec<u64> = errors
        .iter()
        .map(|a| a["position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");

    // A level that does not exist is refused by the argument parser.
    let bad = ledgersync(&["alerts", "--data", data, "--level", "fatal"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("fatal"), "{}", stderr(&bad));
}
