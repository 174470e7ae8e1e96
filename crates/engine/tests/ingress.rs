//! CRM changes in (`engine::ingress`): every kind maps to its event, the documented examples and
//! the JSON Schema agree with the parser, bad lines name their line and field, and a file with
//! one bad line maps to nothing.

use ledgersync_domain::event::{AccessReason, ServerType, TestResult, Workload};
use ledgersync_domain::records::{ActivityState, Entity, RecordBody, ShowAs, TaskKind};
use ledgersync_domain::{Event, OrgId, OrgState};
use ledgersync_engine::ingress::{
    Change, KINDS, LineError, RESULT_KIND, parse_changes, parse_time,
};
use ledgersync_engine::{Engine, ManualClock};
use ledgersync_journal::{Backend, JournalOptions};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

fn org() -> OrgState {
    OrgState::new(OrgId::new("serenity"))
}

fn doc_path(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Every line of the ```json blocks of docs/crm-changes.md, in order.
fn doc_lines() -> Vec<String> {
    let md = std::fs::read_to_string(doc_path("docs/crm-changes.md")).unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside && line.trim() == "```json";
            continue;
        }
        if inside && !line.trim().is_empty() {
            out.push(line.to_string());
        }
    }
    out
}

fn parse(text: &str) -> Vec<Change> {
    parse_changes(text, &org()).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(|e| e.render("t.jsonl"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn errors(text: &str) -> Vec<LineError> {
    parse_changes(text, &org()).expect_err("the file should be refused")
}

const ORG: &str = r#"{"kind": "profile_registered", "profile": "gw", "name": "GW", "server_type": "groupware"}
{"kind": "user_registered", "user": "jayne", "name": "Jayne", "email": "jayne@serenity.example"}
{"kind": "mailbox_registered", "mailbox": "mbx-jayne", "address": "jayne@serenity.example", "profile": "gw"}
"#;

#[test]
fn every_documented_example_parses_in_order_and_every_kind_is_documented() {
    let lines = doc_lines();
    assert!(lines.len() >= KINDS.len(), "{} example lines", lines.len());
    let changes = parse(&lines.join("\n"));
    assert_eq!(changes.len(), lines.len());
    for (change, line) in changes.iter().zip(&lines) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(change.event.name(), v["kind"].as_str().unwrap(), "{line}");
    }
    for kind in KINDS {
        assert!(
            changes.iter().any(|c| c.event.name() == kind),
            "kind {kind} has no example in docs/crm-changes.md"
        );
    }
}

#[test]
fn the_schema_one_of_names_exactly_the_parsers_kinds() {
    let text = std::fs::read_to_string(doc_path("docs/schemas/crm-change.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let mut in_schema: Vec<String> = schema["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            k["properties"]["kind"]["const"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // The change kinds, and the result line read beside them (docs/crm-commands.md).
    let mut parser: Vec<String> = KINDS.iter().map(|k| k.to_string()).collect();
    parser.push(RESULT_KIND.to_string());
    in_schema.sort();
    parser.sort();
    assert_eq!(in_schema, parser);
    // Every change kind the schema lists is accepted by the parser (its documented example
    // parses); the result line's examples are checked in tests/crm_commands.rs.
    let documented: Vec<String> = parse(&doc_lines().join("\n"))
        .iter()
        .map(|c| c.event.name().to_string())
        .collect();
    for k in in_schema.iter().filter(|k| *k != RESULT_KIND) {
        assert!(documented.contains(k), "{k}");
    }
}

#[test]
fn every_kind_maps_to_its_event_with_its_fields() {
    let text = format!(
        "{ORG}{}",
        r#"{"kind": "mailbox_mapped", "mailbox": "mbx-jayne", "user": "jayne"}
{"kind": "address_approved", "mailbox": "mbx-jayne", "approved": false}
{"kind": "mailbox_tested", "mailbox": "mbx-jayne", "act": "failure", "act_org": "other", "override_other_org": true}
{"kind": "disable_requested", "mailbox": "mbx-jayne", "workload": "act"}
{"kind": "setting_changed", "key": "transient_retry_limit", "value": 7}
{"kind": "record_upserted", "record": {"entity": "appointment", "id": "a1", "owner": "jayne", "version": 3, "subject": "S", "start": "2026-12-01T10:30:00+01:00", "end": "2026-12-01T11:00:00+01:00", "state": "scheduled", "show_as": "out_of_office", "organizer": {"user": "jayne", "email": "jayne@serenity.example"}, "optional": [{"email": "x@y.example"}]}}
{"kind": "record_upserted", "record": {"entity": "task", "id": "t1", "owner": "jayne", "version": 1, "task_kind": "fax", "subject": "Fax", "state": "completed", "percent_complete": 100}}
{"kind": "owner_changed", "previous_owner": "paul", "record": {"entity": "contact", "id": "c1", "owner": "jayne", "version": 2, "full_name": "Linda"}}
{"kind": "record_deleted", "id": "e1", "entity": "email"}
{"kind": "access_lost", "user": "jayne", "records": ["a1", "t1"], "reason": "business_unit"}
{"kind": "access_regained", "user": "jayne", "records": ["a1"], "reason": "share"}
{"kind": "filter_changed", "user": "jayne", "entity": "task", "filters": [{"id": "f1", "name": "Mine", "expr": "owner = me"}]}
"#
    );
    let events: Vec<Event> = parse(&text).into_iter().map(|c| c.event).collect();
    let names: Vec<&str> = events.iter().map(Event::name).collect();
    assert_eq!(
        names,
        [
            "profile_registered",
            "user_registered",
            "mailbox_registered",
            "mailbox_mapped",
            "address_approved",
            "mailbox_tested",
            "disable_requested",
            "setting_changed",
            "record_upserted",
            "record_upserted",
            "owner_changed",
            "record_deleted",
            "access_lost",
            "access_regained",
            "filter_changed",
        ]
    );
    match &events[0] {
        Event::ProfileRegistered(p) => {
            assert_eq!(p.server_type, ServerType::Groupware);
            assert_eq!(p.max_connections, 10, "default");
        }
        e => panic!("{e:?}"),
    }
    match &events[2] {
        Event::MailboxRegistered(p) => {
            assert_eq!(p.org, OrgId::new("serenity"));
            assert_eq!(p.server_type, ServerType::Groupware, "from the profile");
        }
        e => panic!("{e:?}"),
    }
    match &events[4] {
        Event::AddressApproved(p) => assert!(!p.approved),
        e => panic!("{e:?}"),
    }
    match &events[5] {
        Event::MailboxTested(p) => {
            assert_eq!(
                (p.incoming, p.outgoing, p.act),
                (TestResult::NotRun, TestResult::NotRun, TestResult::Failure)
            );
            assert_eq!(p.act_org_marker, Some(OrgId::new("other")));
            assert!(p.override_other_org);
        }
        e => panic!("{e:?}"),
    }
    match &events[6] {
        Event::DisableRequested(p) => {
            assert_eq!(p.workload, Workload::Act);
            assert_eq!(p.by, "administrator");
        }
        e => panic!("{e:?}"),
    }
    match &events[7] {
        Event::SettingChanged(p) => assert_eq!(
            (p.key.as_str(), p.value.as_str()),
            ("transient_retry_limit", "7")
        ),
        e => panic!("{e:?}"),
    }
    match &events[8] {
        Event::RecordUpserted(p) => {
            assert_eq!(p.record.version, 3);
            let RecordBody::Appointment(a) = &p.record.body else {
                panic!("{p:?}")
            };
            assert_eq!(a.start, parse_time("2026-12-01T09:30:00Z").unwrap());
            assert_eq!(a.end.0 - a.start.0, 30 * 60 * 1000);
            assert_eq!(a.state, ActivityState::Scheduled);
            assert_eq!(a.show_as, ShowAs::OutOfOffice);
            assert_eq!(a.optional.len(), 1);
            assert!(a.organized_by(&"jayne".into()));
        }
        e => panic!("{e:?}"),
    }
    match &events[9] {
        Event::RecordUpserted(p) => {
            let t = p.record.task().unwrap();
            assert_eq!((t.kind, t.percent_complete), (TaskKind::Fax, 100));
        }
        e => panic!("{e:?}"),
    }
    match &events[10] {
        Event::OwnerChanged(p) => {
            assert_eq!(p.previous_owner.as_str(), "paul");
            assert_eq!(p.record.entity(), Entity::Contact);
        }
        e => panic!("{e:?}"),
    }
    match &events[11] {
        Event::RecordDeleted(p) => assert_eq!(p.entity, Entity::Email),
        e => panic!("{e:?}"),
    }
    match &events[12] {
        Event::AccessLost(p) => {
            assert_eq!(p.records.len(), 2);
            assert_eq!(p.reason, AccessReason::BusinessUnit);
        }
        e => panic!("{e:?}"),
    }
    match &events[14] {
        Event::FilterChanged(p) => {
            assert_eq!(p.entity, Entity::Task);
            assert!(p.filters[0].enabled, "default");
            assert_eq!(p.filters[0].entity, Entity::Task);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn bad_lines_name_their_line_and_field() {
    let text = format!(
        "{ORG}\n{}",
        r#"{"kind": "record_upserted", "record": {"entity": "appointment", "id": "a", "owner": "u", "version": 1, "subject": "S", "start": "2026-13-01", "end": "2026-12-01T10:00:00Z", "state": "scheduled"}}
{"kind": "record_upserted", "record": {"entity": "appointment", "id": "a", "owner": "u", "version": 1, "subject": "S", "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z", "state": "sched"}}
{"kind": "record_deleted", "id": "a", "entity": "appointment", "colour": "red"}
{"kind": "filter_changed", "user": "jayne", "entity": "appointment", "filters": [{"id": "f", "name": "n", "expr": "owner = me and colour = red"}]}
{"kind": "mailbox_mapped", "mailbox": "mbx-nobody", "user": "jayne"}
{"kind": "record_upsert"}
{"kind": "record_upserted", "record": {"entity": "contact", "id": "c", "owner": "u", "version": 1, "full_name": "C", "email": 5}}
not json
{"kind": "setting_changed", "key": "no_such_setting", "value": "1"}"#
    );
    let errs = errors(&text);
    let got: Vec<(usize, Option<&str>)> =
        errs.iter().map(|e| (e.line, e.field.as_deref())).collect();
    assert_eq!(
        got,
        [
            (5, Some("record.start")),
            (6, Some("record.state")),
            (7, Some("colour")),
            (8, Some("filters[0].expr")),
            (9, Some("mailbox")),
            (10, Some("kind")),
            (11, Some("record.email")),
            (12, None),
            (13, Some("key")),
        ],
        "{errs:#?}"
    );
    assert_eq!(
        errs[0].render("changes.jsonl"),
        "changes.jsonl:5: field \"record.start\": \"2026-13-01\" is not an RFC 3339 time \
         (expected e.g. \"2026-12-01T09:30:00Z\" or \"2026-12-01T10:30:00+01:00\")"
    );
    assert!(errs[1].message.contains("scheduled"), "{}", errs[1].message);
    assert!(errs[3].message.contains("column 16"), "{}", errs[3].message);
    assert!(
        errs[5].message.contains("record_upserted"),
        "{}",
        errs[5].message
    );
}

#[test]
fn references_follow_the_organization_as_the_file_builds_it() {
    // Mapping needs the mailbox registered and the user known, earlier in the file or before.
    let errs = errors(
        r#"{"kind": "mailbox_mapped", "mailbox": "mbx-jayne", "user": "jayne"}
{"kind": "mailbox_registered", "mailbox": "mbx-jayne", "address": "jayne@serenity.example", "profile": "gw"}"#,
    );
    assert_eq!(errs[0].line, 1);
    assert_eq!(errs[1].field.as_deref(), Some("profile"));
    assert_eq!(
        parse(&format!(
            "{ORG}{}",
            r#"{"kind": "mailbox_mapped", "mailbox": "mbx-jayne", "user": "jayne"}"#
        ))
        .len(),
        4
    );
    let again = format!(
        "{ORG}{}",
        r#"{"kind": "mailbox_registered", "mailbox": "mbx-jayne", "address": "j@s.example", "profile": "gw"}"#
    );
    assert_eq!(errors(&again)[0].line, 4);
}

#[test]
fn a_file_with_one_bad_line_maps_to_nothing_and_the_journal_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let journal =
        ledgersync_journal::open(dir.path(), &JournalOptions::with_backend(Backend::Redb)).unwrap();
    let clock = Arc::new(ManualClock::new(
        parse_time("2026-11-20T08:00:00Z").unwrap(),
    ));
    let mut engine = Engine::open(journal.clone(), OrgId::new("serenity"), clock).unwrap();
    let mut lines = doc_lines();
    lines.insert(
        5,
        r#"{"kind": "user_registered", "user": "kaylee", "name": "Kaylee", "email": "not-an-address"}"#.into(),
    );
    let errs = parse_changes(&lines.join("\n"), engine.org()).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].line, errs[0].field.as_deref()), (6, Some("email")));
    assert_eq!(journal.last_position().unwrap(), 0);

    // Without the bad line the same file applies through Engine::crm, line by line.
    lines.remove(5);
    let changes = parse_changes(&lines.join("\n"), engine.org()).unwrap();
    for c in &changes {
        engine.crm(c.event.clone()).unwrap();
    }
    assert!(journal.last_position().unwrap() > changes.len() as u64);
    let routed = engine.org().routed.get(&"apt-bike-repair".into()).unwrap();
    assert_eq!(
        routed.len(),
        2,
        "organizer jayne and attendee paul: {routed:?}"
    );
    let report = ledgersync_engine::replay(journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(report.ok() && report.decisions > 0, "{report:?}");
}

/// Input that cannot be right is refused with its line and field, as other bad input.
#[test]
fn changes_that_contradict_the_organization_are_refused_with_their_field() {
    let rows = r#"{"kind": "record_upserted", "record": {"entity": "task", "id": "t1", "owner": "jayne", "version": 1, "task_kind": "task", "subject": "Call", "state": "open"}}
{"kind": "record_upserted", "record": {"entity": "contact", "id": "c1", "owner": "jayne", "version": 1, "full_name": "Linda"}}
"#;
    let text = format!(
        "{ORG}{rows}{}",
        r#"{"kind": "access_lost", "user": "kaylee", "records": ["t1"], "reason": "role"}
{"kind": "access_regained", "user": "kaylee", "records": ["t1"], "reason": "role"}
{"kind": "filter_changed", "user": "kaylee", "entity": "task", "filters": []}
{"kind": "record_deleted", "id": "t1", "entity": "appointment"}
{"kind": "owner_changed", "previous_owner": "paul", "record": {"entity": "contact", "id": "c1", "owner": "kaylee", "version": 2, "full_name": "Linda"}}
{"kind": "setting_changed", "key": "distinct_physical_logical_deletes", "value": "yes"}
{"kind": "setting_changed", "key": "ignore_copied_items", "value": 1}
{"kind": "setting_changed", "key": "update_past_meetings", "value": "on"}"#
    );
    let errs = errors(&text);
    let got: Vec<(usize, Option<&str>)> =
        errs.iter().map(|e| (e.line, e.field.as_deref())).collect();
    assert_eq!(
        got,
        [
            (6, Some("user")),
            (7, Some("user")),
            (8, Some("user")),
            (9, Some("entity")),
            (10, Some("previous_owner")),
            (11, Some("value")),
            (12, Some("value")),
            (13, Some("value")),
        ],
        "{errs:#?}"
    );
    for e in &errs[..3] {
        assert!(
            e.message.contains("unknown user `kaylee`") && e.message.contains("user_registered"),
            "{}",
            e.message
        );
    }
    assert_eq!(
        errs[3].render("changes.jsonl"),
        "changes.jsonl:9: field \"entity\": row `t1` is a task (as the CRM last sent it), not an \
         appointment; send \"entity\": \"task\" or correct the id"
    );
    assert!(
        errs[4].message.contains("owned by `jayne`")
            && errs[4].message.contains("\"previous_owner\": \"jayne\""),
        "{}",
        errs[4].message
    );
    for e in &errs[5..] {
        assert!(
            e.message.contains("expected true or false"),
            "{}",
            e.message
        );
    }

    // The same changes, right: accepted. Strings "true"/"false" are booleans too.
    let good = format!(
        "{ORG}{rows}{}",
        r#"{"kind": "record_deleted", "id": "t1", "entity": "task"}
{"kind": "owner_changed", "previous_owner": "jayne", "record": {"entity": "contact", "id": "c1", "owner": "jayne2", "version": 2, "full_name": "Linda"}}
{"kind": "owner_changed", "previous_owner": "jayne2", "record": {"entity": "contact", "id": "c1", "owner": "jayne", "version": 3, "full_name": "Linda"}}
{"kind": "setting_changed", "key": "distinct_physical_logical_deletes", "value": true}
{"kind": "setting_changed", "key": "ignore_copied_items", "value": "false"}
{"kind": "access_lost", "user": "jayne", "records": ["t1"], "reason": "role"}"#
    );
    assert_eq!(parse(&good).len(), 11);
}

/// A row the organization never saw (or saw deleted) cannot be checked: its delete and its
/// reassignment are taken as the CRM sends them (docs/crm-changes.md).
#[test]
fn a_row_the_organization_never_saw_is_deleted_or_reassigned_as_sent() {
    let text = format!(
        "{ORG}{}",
        r#"{"kind": "record_deleted", "id": "never-seen", "entity": "appointment"}
{"kind": "owner_changed", "previous_owner": "paul", "record": {"entity": "contact", "id": "c9", "owner": "jayne", "version": 4, "full_name": "Zoe"}}
{"kind": "record_deleted", "id": "c9", "entity": "contact"}
{"kind": "record_deleted", "id": "c9", "entity": "task"}"#
    );
    assert_eq!(parse(&text).len(), 7);
}

/// `Engine::crm` (and the organization actor) refuse the same changes: the check is
/// `validate_crm`, shared by every way in.
#[test]
fn the_engine_refuses_what_the_parser_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let journal =
        ledgersync_journal::open(dir.path(), &JournalOptions::with_backend(Backend::Redb)).unwrap();
    let clock = Arc::new(ManualClock::new(
        parse_time("2026-11-20T08:00:00Z").unwrap(),
    ));
    let mut engine = Engine::open(journal.clone(), OrgId::new("serenity"), clock).unwrap();
    for c in parse_changes(ORG, engine.org()).unwrap() {
        engine.crm(c.event).unwrap();
    }
    let before = journal.last_position().unwrap();
    let lost = Event::AccessLost(ledgersync_domain::event::AccessLost {
        user: "kaylee".into(),
        records: vec!["t1".into()],
        reason: AccessReason::Role,
    });
    let e = engine.crm(lost).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("invalid input: field \"user\": unknown user `kaylee`"),
        "{e}"
    );
    let yes = Event::SettingChanged(ledgersync_domain::event::SettingChanged {
        key: "require_approved_address".into(),
        value: "yes".into(),
    });
    assert!(engine.crm(yes).is_err());
    assert_eq!(journal.last_position().unwrap(), before, "nothing recorded");
}

#[test]
fn an_address_that_could_name_a_path_is_refused_at_the_door() {
    for (bad, field) in [
        (
            r#"{"kind": "record_upserted", "record": {"entity": "contact", "id": "c", "owner": "jayne", "version": 1, "full_name": "C", "email": "x@../../tmp/evil"}}"#,
            "record.email",
        ),
        (
            r#"{"kind": "user_registered", "user": "kaylee", "name": "Kaylee", "email": "kaylee/../x@serenity.example"}"#,
            "email",
        ),
        (
            r#"{"kind": "record_upserted", "record": {"entity": "appointment", "id": "a", "owner": "jayne", "version": 1, "subject": "S", "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z", "state": "scheduled", "optional": [{"email": "a..b@serenity.example"}]}}"#,
            "record.optional[0].email",
        ),
    ] {
        let errs = errors(&format!("{ORG}\n{bad}"));
        assert_eq!(errs.len(), 1, "{bad}: {errs:#?}");
        assert_eq!(errs[0].field.as_deref(), Some(field), "{errs:#?}");
        assert!(
            errs[0].message.contains("is not an email address"),
            "{}",
            errs[0].message
        );
    }
    // Ordinary and quoted addresses pass.
    let ok = format!(
        "{ORG}\n{}",
        r#"{"kind": "record_upserted", "record": {"entity": "contact", "id": "c", "owner": "jayne", "version": 1, "full_name": "C", "email": "\"j smith\"@[192.0.2.1]"}}"#
    );
    assert_eq!(parse(&ok).len(), 4);
}
