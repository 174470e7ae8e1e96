//! `ledgersync crm apply` and `ledgersync mailbox …` as a user runs them: an organization fed
//! from a file into a fresh data directory, then explain, replay and the mailbox lifecycle; a
//! file with a bad line changes nothing.

mod common;
use common::*;

use serde_json::Value;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

fn ok(args: &[&str]) -> String {
    let o = ledgersync(args);
    assert!(
        o.status.success(),
        "ledgersync {args:?} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn json(args: &[&str]) -> Value {
    let text = ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

const ORG: &str = r#"{"kind": "profile_registered", "profile": "groupware", "name": "Serenity groupware", "server_type": "groupware"}
{"kind": "user_registered", "user": "jayne", "name": "Jayne Cobb", "email": "jayne@serenity.example"}
{"kind": "user_registered", "user": "paul", "name": "Paul Blart", "email": "paul@serenity.example"}
{"kind": "mailbox_registered", "mailbox": "mbx-jayne", "address": "jayne@serenity.example", "profile": "groupware"}
{"kind": "mailbox_mapped", "mailbox": "mbx-jayne", "user": "jayne"}
{"kind": "address_approved", "mailbox": "mbx-jayne"}
{"kind": "mailbox_tested", "mailbox": "mbx-jayne", "incoming": "success", "outgoing": "success", "act": "success"}
{"kind": "mailbox_registered", "mailbox": "mbx-paul", "address": "paul@serenity.example", "profile": "groupware"}
{"kind": "mailbox_mapped", "mailbox": "mbx-paul", "user": "paul"}
{"kind": "address_approved", "mailbox": "mbx-paul"}
{"kind": "mailbox_tested", "mailbox": "mbx-paul", "incoming": "success", "outgoing": "success", "act": "success"}

{"kind": "record_upserted", "record": {"entity": "appointment", "id": "apt-bike-repair", "owner": "jayne", "version": 1, "subject": "Bike repair", "organizer": {"user": "jayne", "email": "jayne@serenity.example"}, "required": [{"user": "paul", "email": "paul@serenity.example"}, {"email": "zoe@customer.example", "name": "Zoe"}], "start": "{START}", "end": "{END}", "state": "scheduled"}}
{"kind": "record_upserted", "record": {"entity": "contact", "id": "con-linda", "owner": "paul", "version": 1, "full_name": "Linda Park", "email": "linda@customer.example"}}
{"kind": "record_upserted", "record": {"entity": "task", "id": "tsk-call-zoe", "owner": "jayne", "version": 1, "task_kind": "phone_call", "subject": "Call Zoe", "due": "{DUE}", "state": "open"}}
"#;

/// The organization with its meeting tomorrow and the task due the day after: times relative to
/// now, so an invitation is due whatever day the test runs on.
/// Computed once per test process, so a file applied twice is the same file.
fn org() -> String {
    static ORG_TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ORG_TEXT.get_or_init(org_now).clone()
}

fn org_now() -> String {
    let now = chrono::Utc::now();
    let at = |hours: i64| {
        (now + chrono::Duration::hours(hours)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    ORG.replace("{START}", &at(24))
        .replace("{END}", &at(25))
        .replace("{DUE}", &at(48))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn events(data: &str) -> usize {
    ok(&["events", "--data", data, "--json"]).lines().count()
}

/// A fresh data directory with the organization applied; returns its path.
fn applied(dir: &Path) -> String {
    let data = dir.join("data");
    let data = data.to_str().unwrap().to_string();
    let file = write(dir, "org.jsonl", &org());
    let out = ok(&["crm", "apply", &file, "--data", &data]);
    assert!(out.contains("applied 14 change(s)"), "{out}");
    assert!(
        out.contains("→ mbx-jayne: to be created with an invitation to 2 attendee(s), waiting for the mail server  [R17]"),
        "{out}"
    );
    assert!(
        out.contains(
            "→ mbx-paul: to be created in the mailbox, waiting for the mail server  [R17]"
        ),
        "{out}"
    );
    data
}

#[test]
fn apply_into_a_fresh_directory_then_mailboxes_explain_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let data = applied(dir.path());

    let list = json(&["mailbox", "list", "--data", &data, "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for m in list {
        assert_eq!(m["approved"], true, "{m}");
        for w in ["incoming", "outgoing", "act"] {
            assert_eq!(m["workloads"][w]["status"], "enabled", "{m}");
            assert_eq!(m["workloads"][w]["consecutive_errors"], 0, "{m}");
        }
    }
    assert_eq!(list[0]["mailbox"], "mbx-jayne");
    assert_eq!(list[0]["user"], "jayne");
    assert_eq!(list[0]["address"], "jayne@serenity.example");

    let show = json(&["mailbox", "show", "mbx-jayne", "--data", &data, "--json"]);
    let links = show["links"].as_array().unwrap();
    assert!(
        links
            .iter()
            .any(|l| l["record"] == "apt-bike-repair" && l["status"] == "creating"),
        "{show}"
    );
    assert_eq!(
        show["pending_intents"].as_array().unwrap().len(),
        2,
        "{show}"
    );

    let explain = ok(&["explain", "--data", &data, "Bike repair"]);
    assert!(explain.contains("in mailbox mbx-jayne:"), "{explain}");
    assert!(explain.contains("in mailbox mbx-paul:"), "{explain}");
    assert!(explain.contains("R17"), "{explain}");

    let replay = ok(&["replay", "--data", &data]);
    let line = replay
        .lines()
        .find(|l| l.starts_with("decisions reproduced: "))
        .expect("replay line");
    let (n, total) = line["decisions reproduced: ".len()..]
        .split_once('/')
        .unwrap();
    assert!(n == total && total != "0", "{line}");

    // The same changes again, from standard input and as JSON: the row versions and contents
    // repeat, so they are already recorded and reach no mailbox.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledgersync"))
        .args(["crm", "apply", "-", "--data", &data, "--json"])
        .env_remove("LEDGERSYNC_DATA")
        .env_remove("LEDGERSYNC_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tail: String = org().lines().skip(11).map(|l| format!("{l}\n")).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(tail.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["file"], "stdin");
    assert_eq!(v["applied"], 3);
    assert_eq!(v["changes"][0]["line"], 2, "the blank line counts");
    assert_eq!(v["changes"][0]["kind"], "record_upserted");
    assert_eq!(v["changes"][0]["mailboxes"].as_array().unwrap().len(), 0);
    assert_eq!(
        v["changes"][0]["already_recorded"],
        "already recorded: same row version and content, nothing done"
    );
}

#[test]
fn a_bad_line_exits_2_names_line_and_field_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = applied(dir.path());
    let before = events(&data);
    let file = write(
        dir.path(),
        "changes.jsonl",
        concat!(
            r#"{"kind": "record_deleted", "id": "con-linda", "entity": "contact"}"#,
            "\n",
            r#"{"kind": "record_upserted", "record": {"entity": "appointment", "id": "apt-x", "owner": "jayne", "version": 1, "subject": "X", "start": "2026-13-01", "end": "2026-12-01T10:30:00Z", "state": "scheduled"}}"#,
            "\n",
            r#"{"kind": "access_lost", "user": "paul", "records": ["apt-bike-repair"], "reason": "role", "typo": 1}"#,
            "\n",
        ),
    );
    let o = ledgersync(&["crm", "apply", &file, "--data", &data]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "changes.jsonl:2: field \"record.start\": \"2026-13-01\" is not an RFC 3339 time"
        ),
        "{err}"
    );
    assert!(
        err.contains("changes.jsonl:3: field \"typo\": unknown field `typo`"),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    assert!(!err.contains("changes.jsonl:1"), "line 1 is good: {err}");
    assert_eq!(events(&data), before, "the journal is unchanged");
}

#[test]
fn mailbox_disable_then_list_shows_the_workload_disabled_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = applied(dir.path());
    let out = ok(&[
        "mailbox",
        "disable",
        "mbx-paul",
        "--workload",
        "act",
        "--data",
        &data,
    ]);
    assert!(out.contains("R81"), "{out}");
    let list = json(&["mailbox", "list", "--data", &data, "--json"]);
    let paul = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mailbox"] == "mbx-paul")
        .unwrap();
    assert_eq!(paul["workloads"]["act"]["status"], "disabled", "{paul}");
    assert_eq!(
        paul["workloads"]["act"]["disabled_reason"], "administrator",
        "{paul}"
    );
    assert_eq!(paul["workloads"]["incoming"]["status"], "enabled", "{paul}");
    let text = ok(&["mailbox", "list", "--data", &data]);
    assert!(text.contains("disabled (administrator)"), "{text}");

    // Test & Enable with ACT failing keeps it disabled (R6); `enable` brings it back.
    let failed = json(&[
        "mailbox",
        "test-enable",
        "mbx-paul",
        "--fail",
        "act",
        "--data",
        &data,
        "--json",
    ]);
    assert_eq!(
        failed["mailbox"]["workloads"]["act"]["test"], "failure",
        "{failed}"
    );
    let enabled = json(&["mailbox", "enable", "mbx-paul", "--data", &data, "--json"]);
    assert_eq!(
        enabled["mailbox"]["workloads"]["act"]["status"], "enabled",
        "{enabled}"
    );
    let rules: Vec<&str> = enabled["recorded"][0]["mailboxes"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(rules, ["R6"], "{enabled}");

    // Another organization owns ACT sync on the server: disabled (R2) until taken over.
    let other = json(&[
        "mailbox",
        "test-enable",
        "mbx-paul",
        "--act-org",
        "acme",
        "--data",
        &data,
        "--json",
    ]);
    assert_eq!(
        other["mailbox"]["workloads"]["act"]["disabled_reason"], "other_organization",
        "{other}"
    );
    let claimed = json(&[
        "mailbox",
        "test-enable",
        "mbx-paul",
        "--act-org",
        "acme",
        "--override",
        "--data",
        &data,
        "--json",
    ]);
    assert_eq!(
        claimed["mailbox"]["workloads"]["act"]["status"], "enabled",
        "{claimed}"
    );
    assert_eq!(
        claimed["recorded"][0]["mailboxes"][0]["rules"][0], "R2",
        "{claimed}"
    );

    // Withdrawing the approval disables the email workloads (R5).
    let out = ok(&[
        "mailbox",
        "approve",
        "mbx-paul",
        "--withdraw",
        "--data",
        &data,
    ]);
    assert!(out.contains("R5"), "{out}");
    let list = json(&["mailbox", "list", "--data", &data, "--json"]);
    let paul = &list[1];
    assert_eq!(paul["approved"], false);
    assert_eq!(
        paul["workloads"]["incoming"]["disabled_reason"], "not_approved",
        "{paul}"
    );

    let o = ledgersync(&["mailbox", "show", "mbx-nobody", "--data", &data]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("mbx-jayne, mbx-paul"), "{}", stderr(&o));
}

#[test]
fn r28_a_propagated_cancellation_reads_right_in_crm_apply_and_explain() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let setting = write(
        dir.path(),
        "setting.jsonl",
        "{\"kind\": \"setting_changed\", \"key\": \"propagate_appointment_cancellations\", \"value\": true}\n",
    );
    ok(&["crm", "apply", &setting, "--data", data]);
    let org_file = write(dir.path(), "org.jsonl", &org());
    ok(&["crm", "apply", &org_file, "--data", data]);
    let meeting = org()
        .lines()
        .find(|l| l.contains("apt-bike-repair"))
        .unwrap()
        .replace("\"version\": 1", "\"version\": 2")
        .replace("\"state\": \"scheduled\"", "\"state\": \"canceled\"");
    let cancel = write(dir.path(), "cancel.jsonl", &format!("{meeting}\n"));
    let out = ok(&["crm", "apply", &cancel, "--data", data]);
    assert!(
        out.contains(
            "→ mbx-jayne: to be deleted from the mailbox, waiting for the mail server, cancellation to 2 attendee(s) waiting for the mail server  [R28]"
        ),
        "{out}"
    );
    assert!(out.contains("→ mbx-paul: left unchanged  [R28]"), "{out}");

    let explain = ok(&["explain", "--data", data, "Bike repair"]);
    assert!(!explain.contains("(R28) (R28)"), "{explain}");
    assert!(
        explain.contains(
            "→ left unchanged: \"Bike repair\" was set to Canceled; the cancellation is propagated from the organizer's mailbox, not this one (R28)"
        ),
        "{explain}"
    );
    assert!(
        explain.contains("what-if: with propagate_appointment_cancellations=false it would have been: left unchanged (R28)"),
        "{explain}"
    );
}

/// A change that contradicts what the organization recorded (an unknown user, a
/// deleted row's wrong table, a reassigned row's wrong previous owner, a boolean setting given
/// as "yes" or 1) is bad input like any other: its line and field, exit 2, nothing applied.
#[test]
fn a_change_that_contradicts_the_organization_exits_2_with_its_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let data = applied(dir.path());
    let before = events(&data);
    let file = write(
        dir.path(),
        "changes.jsonl",
        concat!(
            r#"{"kind": "access_lost", "user": "kaylee", "records": ["apt-bike-repair"], "reason": "role"}"#,
            "\n",
            r#"{"kind": "record_deleted", "id": "tsk-call-zoe", "entity": "appointment"}"#,
            "\n",
            r#"{"kind": "owner_changed", "previous_owner": "kaylee", "record": {"entity": "contact", "id": "con-linda", "owner": "jayne", "version": 2, "full_name": "Linda Park"}}"#,
            "\n",
            r#"{"kind": "setting_changed", "key": "distinct_physical_logical_deletes", "value": "yes"}"#,
            "\n",
            r#"{"kind": "setting_changed", "key": "require_approved_address", "value": 0}"#,
            "\n",
            r#"{"kind": "setting_changed", "key": "update_past_meetings", "value": "true"}"#,
            "\n",
        ),
    );
    let o = ledgersync(&["crm", "apply", &file, "--data", &data]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    for expected in [
        "changes.jsonl:1: field \"user\": unknown user `kaylee`",
        "changes.jsonl:2: field \"entity\": row `tsk-call-zoe` is a task",
        "changes.jsonl:3: field \"previous_owner\": row `con-linda` is owned by `paul`",
        "changes.jsonl:4: field \"value\": setting `distinct_physical_logical_deletes` cannot be `yes`: expected true or false",
        "changes.jsonl:5: field \"value\": setting `require_approved_address` cannot be `0`: expected true or false",
        "5 bad line(s)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("changes.jsonl:6"), "line 6 is good: {err}");
    assert_eq!(events(&data), before, "the journal is unchanged");
}

#[test]
fn the_same_file_applied_twice_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = applied(dir.path());
    let before = events(&data);
    let file = write(dir.path(), "org.jsonl", &org());
    let out = ok(&["crm", "apply", &file, "--data", &data]);
    // Every line but the two Test & Enable results (events, recognised by message id only)
    // is what the organization already holds.
    let recorded = out
        .lines()
        .filter(|l| l.contains("→ already recorded"))
        .count();
    assert_eq!(recorded, 12, "{out}");
    assert!(
        out.contains("→ already recorded: same row version and content, nothing done"),
        "{out}"
    );
    assert!(out.contains("(12 already recorded"), "{out}");
    let tested = events(&data) - before;
    // The two tests: each one organization event and one mailbox observation, deciding nothing.
    assert_eq!(tested, 4, "{out}");

    // The rows only, again: nothing at all.
    let rows: String = org()
        .lines()
        .filter(|l| l.contains("record_upserted"))
        .map(|l| format!("{l}\n"))
        .collect();
    let file = write(dir.path(), "rows.jsonl", &rows);
    let before = events(&data);
    let json = json(&["crm", "apply", &file, "--data", &data, "--json"]);
    assert_eq!(events(&data), before, "nothing new recorded");
    for change in json["changes"].as_array().unwrap() {
        assert_eq!(
            change["already_recorded"],
            "already recorded: same row version and content, nothing done"
        );
        assert_eq!(change["mailboxes"], serde_json::json!([]));
    }
}

#[test]
fn the_same_row_version_with_other_content_is_refused_with_its_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let data = applied(dir.path());
    let before = events(&data);
    let file = write(
        dir.path(),
        "changes.jsonl",
        concat!(
            r#"{"kind": "record_upserted", "record": {"entity": "contact", "id": "con-linda", "owner": "paul", "version": 1, "full_name": "Linda Parker", "email": "linda@customer.example"}}"#,
            "\n",
            r#"{"kind": "record_upserted", "record": {"entity": "contact", "id": "con-linda", "owner": "paul", "version": 2, "full_name": "Linda Parker", "email": "linda@customer.example"}}"#,
            "\n",
        ),
    );
    let o = ledgersync(&["crm", "apply", &file, "--data", &data]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "changes.jsonl:1: field \"record.version\": row `con-linda` version 1 is already recorded with other content"
        ),
        "{err}"
    );
    assert!(!err.contains("changes.jsonl:2"), "line 2 is good: {err}");
    assert_eq!(events(&data), before, "the journal is unchanged");
}

#[test]
fn an_oversized_line_or_field_is_refused_with_its_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let data = applied(dir.path());
    let before = events(&data);
    let body = "b".repeat(300 * 1024);
    let subject = "s".repeat(9000);
    let huge = "h".repeat(2 * 1024 * 1024);
    let text = format!(
        concat!(
            r#"{{"kind": "record_upserted", "record": {{"entity": "task", "id": "tsk-a", "owner": "jayne", "version": 1, "subject": "A", "state": "open", "body": "{body}"}}}}"#,
            "\n",
            r#"{{"kind": "record_upserted", "record": {{"entity": "task", "id": "tsk-b", "owner": "jayne", "version": 1, "subject": "{subject}", "state": "open"}}}}"#,
            "\n",
            r#"{{"kind": "user_registered", "user": "kaylee", "name": "Kaylee", "email": "kaylee@serenity.example"}}"#,
            "\n",
            r#"{{"kind": "record_upserted", "record": {{"entity": "task", "id": "tsk-c", "owner": "jayne", "version": 1, "subject": "C", "state": "open", "body": "{huge}"}}}}"#,
            "\n",
        ),
        body = body,
        subject = subject,
        huge = huge
    );
    let file = write(dir.path(), "big.jsonl", &text);
    let o = ledgersync(&["crm", "apply", &file, "--data", &data]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    for expected in [
        "big.jsonl:1: field \"record.body\": is 307200 bytes, more than the limit of 262144 (max_body_bytes in the [limits] table",
        "big.jsonl:2: field \"record.subject\": is 9000 bytes, more than the limit of 8192 (max_field_bytes",
        "big.jsonl:4: the line is 2097",
        "more than the limit of 1048576 (max_line_bytes",
        "3 bad line(s)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("big.jsonl:3"), "line 3 is good: {err}");
    assert_eq!(events(&data), before, "the journal is unchanged");

    // Limits are configured in [limits]; a file beyond max_file_bytes is refused by its size.
    let config = write(
        dir.path(),
        "ledgersync.toml",
        "[limits]\nmax_file_bytes = 4096\nmax_line_bytes = 2048\nmax_field_bytes = 1024\nmax_body_bytes = 1024\n",
    );
    let o = ledgersync(&["--config", &config, "crm", "apply", &file, "--data", &data]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("big.jsonl: ")
            && err.contains("bytes, more than the limit of 4096 (max_file_bytes"),
        "{err}"
    );
    assert_eq!(events(&data), before, "the journal is unchanged");
}

#[test]
fn a_line_that_is_not_utf8_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = applied(dir.path());
    let before = events(&data);
    let path = dir.path().join("latin1.jsonl");
    let mut bytes = br#"{"kind": "user_registered", "user": "kaylee", "name": "Kaylee", "email": "kaylee@serenity.example"}"#.to_vec();
    bytes.extend_from_slice(b"\n");
    bytes.extend_from_slice(br#"{"kind": "user_registered", "user": "zoe", "name": "Zo"#);
    bytes.push(0xeb); // ë in Latin-1
    bytes.extend_from_slice(br#"", "email": "zoe@serenity.example"}"#);
    bytes.extend_from_slice(b"\n");
    std::fs::write(&path, bytes).unwrap();
    let file = path.to_str().unwrap();
    let o = ledgersync(&["crm", "apply", file, "--data", &data]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("latin1.jsonl:2: not UTF-8 text (byte 55 of the line)"),
        "{err}"
    );
    assert_eq!(events(&data), before, "the journal is unchanged");
}

/// `mailbox approve-deletes` (R25): a wrong mailbox id is refused naming the mailboxes there
/// are; on a known mailbox the approval is recorded in the organization stream and routed to
/// the mailbox, which says nothing is held when its delete breaker is closed.
#[test]
fn mailbox_approve_deletes_is_recorded_and_a_wrong_mailbox_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = applied(dir.path());
    let before = events(&data);

    let o = ledgersync(&["mailbox", "approve-deletes", "mbx-nobody", "--data", &data]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("unknown mailbox `mbx-nobody`") && err.contains("mbx-jayne, mbx-paul"),
        "{err}"
    );
    assert_eq!(events(&data), before, "nothing recorded");

    let out = ok(&["mailbox", "approve-deletes", "mbx-paul", "--data", &data]);
    assert!(
        out.contains("administrator approved the deletes the delete breaker holds in mbx-paul"),
        "{out}"
    );
    assert!(
        out.contains("R25") && out.contains("its delete breaker is closed: nothing is held"),
        "{out}"
    );
    let lines: Vec<Value> = ok(&["events", "--data", &data, "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let approvals: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event_type"] == "deletes_approved")
        .collect();
    assert_eq!(approvals.len(), 2, "in org/… and in mailbox/mbx-paul");
    assert_eq!(approvals[0]["payload"]["data"]["mailbox"], "mbx-paul");
    let json = json(&[
        "mailbox",
        "approve-deletes",
        "mbx-paul",
        "--data",
        &data,
        "--json",
    ]);
    assert_eq!(
        json["recorded"][0]["mailboxes"][0]["rules"][0], "R25",
        "{json}"
    );
    assert_eq!(json["mailbox"]["delete_breaker"], Value::Null, "{json}");
}
