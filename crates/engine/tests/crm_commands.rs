//! CRM commands through the real engine and journal: a tracked meeting leaves as a command, its
//! result is recorded once (also after a restart) and replays, the CRM's echo decides nothing;
//! result lines are read beside the changes with their line numbers; the documented examples and
//! the JSON Schemas agree with the code.

use ledgersync_domain::crm::{Acknowledged, CommandResult, ResultStatus, commands};
use ledgersync_domain::event::{CommandType, ItemSeen, RemoteFields, RemoteItem, Side, TrackedBy};
use ledgersync_domain::records::ShowAs;
use ledgersync_domain::time::timestamp_from_civil;
use ledgersync_domain::{Event, MailboxId, OrgId, OrgState, RecordId, RemoteId, Timestamp};
use ledgersync_engine::ingress::{parse_changes, parse_result_within, split_results};
use ledgersync_engine::{Engine, ManualClock, Settled, explain, replay};
use ledgersync_journal::{Backend, Journal, JournalOptions};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

const ORG: &str = r#"{"kind": "profile_registered", "profile": "gw", "name": "GW", "server_type": "groupware"}
{"kind": "user_registered", "user": "jayne", "name": "Jayne", "email": "jayne@serenity.example"}
{"kind": "mailbox_registered", "mailbox": "mbx-jayne", "address": "jayne@serenity.example", "profile": "gw"}
{"kind": "mailbox_mapped", "mailbox": "mbx-jayne", "user": "jayne"}
{"kind": "address_approved", "mailbox": "mbx-jayne"}
{"kind": "mailbox_tested", "mailbox": "mbx-jayne", "incoming": "success", "outgoing": "success", "act": "success"}
"#;

/// The test clock's "now": 2026-11-20 09:00 UTC, whatever day the test runs.
fn t0() -> Timestamp {
    timestamp_from_civil(2026, 11, 20, 9, 0)
}

fn open(dir: &Path) -> (Arc<dyn Journal>, Engine) {
    let journal =
        ledgersync_journal::open(dir, &JournalOptions::with_backend(Backend::Redb)).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let engine = Engine::open(journal.clone(), OrgId::new("serenity"), clock).unwrap();
    (journal, engine)
}

fn mailbox() -> MailboxId {
    MailboxId::new("mbx-jayne")
}

fn tracked_lunch() -> Event {
    Event::ItemSeen(ItemSeen {
        item: RemoteItem {
            remote: RemoteId::new("calendar/lunch.ics"),
            etag: "\"1\"".into(),
            content_hash: 1,
            tracked: Some(TrackedBy::Category),
            copy_of: None,
            fields: RemoteFields::Appointment {
                subject: "Lunch with Kaylee".into(),
                organizer: Some("jayne@serenity.example".into()),
                start: t0() + ledgersync_domain::Duration::days(1),
                end: t0()
                    + ledgersync_domain::Duration::days(1)
                    + ledgersync_domain::Duration::hours(1),
                show_as: ShowAs::Busy,
            },
        },
    })
}

/// The CRM's row for the tracked lunch, at `version`, at `location`.
fn lunch_row(version: u64, location: &str) -> Event {
    let line = format!(
        r#"{{"kind": "record_upserted", "record": {{"entity": "appointment", "id": "apt-lunch", "owner": "jayne", "version": {version}, "subject": "Lunch with Kaylee", "organizer": {{"user": "jayne", "email": "jayne@serenity.example"}}, "start": "2026-11-21T09:00:00Z", "end": "2026-11-21T10:00:00Z", "state": "scheduled", "location": "{location}"}}}}"#
    );
    parse_changes(&line, &OrgState::new(OrgId::new("serenity"))).unwrap()[0]
        .event
        .clone()
}

#[test]
fn a_tracked_meeting_leaves_as_a_command_its_result_is_recorded_once_and_the_echo_decides_nothing()
{
    let dir = tempfile::tempdir().unwrap();
    let (journal, mut engine) = open(dir.path());
    for c in parse_changes(ORG, engine.org()).unwrap() {
        engine.crm(c.event).unwrap();
    }
    engine.observe(&mailbox(), tracked_lunch()).unwrap();
    let open_now = commands(engine.mailbox(&mailbox()).unwrap(), t0());
    assert_eq!(open_now.len(), 1);
    let command = &open_now[0];
    assert_eq!(
        (command.command, command.rule.to_string()),
        (CommandType::TrackAppointment, "R33".into())
    );
    let result = CommandResult {
        key: command.key.clone(),
        status: ResultStatus::Done {
            record: RecordId::new("apt-lunch"),
            version: 1,
        },
    };

    let Settled::Recorded { processed, .. } = engine.settle(&result).unwrap() else {
        panic!("the open command's result is recorded")
    };
    let decided: Vec<(String, &str)> = processed
        .decisions
        .iter()
        .map(|d| (d.decision.rule.to_string(), d.decision.event.name()))
        .collect();
    assert_eq!(decided, [("R33".to_string(), "link_created")]);
    let recorded = journal.last_position().unwrap();

    // The same result again, and again after a restart: acknowledged, nothing appended.
    assert!(matches!(
        engine.settle(&result).unwrap(),
        Settled::Acknowledged(Acknowledged::NotOpen)
    ));
    drop((engine, journal));
    let (journal, mut engine) = open(dir.path());
    assert!(matches!(
        engine.settle(&result).unwrap(),
        Settled::Acknowledged(Acknowledged::NotOpen)
    ));
    assert_eq!(journal.last_position().unwrap(), recorded);
    assert!(commands(engine.mailbox(&mailbox()).unwrap(), t0()).is_empty());

    // The CRM's row at the version the result named: its own write coming back, nothing for the
    // mail server. A later version is an edit made in the CRM: written to the calendar (R18).
    let echo = engine.crm(lunch_row(1, "Galley")).unwrap();
    assert_eq!(echo.mailboxes, [mailbox()]);
    assert!(echo.decisions.is_empty(), "{:#?}", echo.decisions);
    let edit = engine.crm(lunch_row(2, "Mess hall")).unwrap();
    let updates: Vec<_> = edit
        .decisions
        .iter()
        .filter_map(|d| match &d.decision.event {
            Event::UpdateIntent(u) => Some((d.decision.rule.to_string(), u.target)),
            _ => None,
        })
        .collect();
    assert_eq!(updates, [("R18".to_string(), Side::MailServer)]);

    // Every decision replays; explain tells the command and its result with the rule.
    let report = replay(journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(report.mismatches.is_empty(), "{:#?}", report.mismatches);
    let story = explain(journal.as_ref(), "apt-lunch").unwrap();
    let steps: Vec<String> = story.items[0].mailboxes[0]
        .steps
        .iter()
        .map(|s| format!("{} {}", s.rule.clone().unwrap_or_default(), s.text))
        .collect();
    let key = command.key.to_string();
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("R33 ") && s.contains(&key)),
        "{steps:#?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("R33 the CRM carried out command track_appointment")),
        "{steps:#?}"
    );
}

#[test]
fn result_lines_are_read_beside_the_changes_with_their_numbers_and_bad_ones_name_their_field() {
    let mut org = OrgState::new(OrgId::new("serenity"));
    for c in parse_changes(ORG, &org).unwrap() {
        org.apply(&c.event);
    }
    let key = "mbx-jayne/01934f6a-8c00-7000-8000-000000000028";
    let text = format!(
        r#"{{"kind": "user_registered", "user": "paul", "name": "Paul", "email": "paul@serenity.example"}}
{{"kind": "command_result", "key": "{key}", "status": "done", "record": "apt-1", "version": 2}}
{{"kind": "command_result", "key": "{key}", "status": "done", "record": "apt-1"}}
{{"kind": "command_result", "key": "mbx-jayne/42", "status": "done", "record": "apt-1", "version": 1}}
{{"kind": "command_result", "key": "mbx-nobody/01934f6a-8c00-7000-8000-000000000028", "status": "failed", "retryable": true, "reason": "x"}}
{{"kind": "command_result", "key": "{key}", "status": "failed", "retryable": false, "reason": "no", "version": 3}}
{{"kind": "command_result", "key": "{key}", "status": "failed", "reason": "no"}}
{{"kind": "record_deleted", "id": "apt-9", "entity": "appointment"}}
"#
    );
    let split = split_results(&text, &org, &Default::default());
    assert_eq!(split.results.len(), 1);
    assert_eq!(split.results[0].line, 2);
    let bad: Vec<(usize, Option<&str>)> = split
        .errors
        .iter()
        .map(|e| (e.line, e.field.as_deref()))
        .collect();
    assert_eq!(
        bad,
        [
            (3, Some("version")),
            (4, Some("key")),
            (5, Some("key")),
            (6, Some("version")),
            (7, Some("retryable"))
        ]
    );
    assert!(
        split.errors[1].message.contains("crm pending"),
        "{}",
        split.errors[1].message
    );
    // The change lines keep their numbers.
    let changes = parse_changes(&split.changes, &org).unwrap();
    let lines: Vec<usize> = changes.iter().map(|c| c.line).collect();
    assert_eq!(lines, [1, 8]);
}

fn doc_path(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Every line of the ```json blocks of docs/crm-commands.md.
fn doc_lines() -> Vec<Value> {
    let md = std::fs::read_to_string(doc_path("docs/crm-commands.md")).unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside && line.trim() == "```json";
            continue;
        }
        if inside && !line.trim().is_empty() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")));
        }
    }
    out
}

/// Checks `value` against the shape of `schema`: exactly its properties, every required one,
/// the `const` and `enum` values (what the schemas of docs/schemas say, without a validator).
fn conforms(value: &Value, schema: &Value, what: &str) {
    let props = schema["properties"].as_object().unwrap();
    let object = value.as_object().unwrap();
    let mut given: Vec<&String> = object.keys().collect();
    let mut known: Vec<&String> = props.keys().collect();
    given.sort();
    known.sort();
    assert_eq!(given, known, "{what}: fields");
    for (name, rule) in props {
        if let Some(c) = rule.get("const") {
            assert_eq!(&object[name], c, "{what}: {name}");
        }
        if let Some(allowed) = rule.get("enum").and_then(Value::as_array) {
            assert!(allowed.contains(&object[name]), "{what}: {name}");
        }
    }
}

#[test]
fn the_documented_commands_and_results_agree_with_the_code_and_the_schemas() {
    let mut org = OrgState::new(OrgId::new("serenity"));
    for c in parse_changes(ORG, &org).unwrap() {
        org.apply(&c.event);
    }
    let mut types = Vec::new();
    for line in doc_lines() {
        if line["kind"] == "command_result" {
            parse_result_within(&line.to_string(), &org, &Default::default())
                .unwrap_or_else(|e| panic!("{line}: {e:?}"));
            continue;
        }
        let name = line["command"].as_str().expect("a command example");
        let file = format!("docs/schemas/crm-command.{name}.schema.json");
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(doc_path(&file)).unwrap()).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        conforms(&line, &schema, name);
        types.push(name.to_string());
    }
    let every: Vec<String> = CommandType::ALL
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(
        types, every,
        "one documented example per command type, in order"
    );
}
