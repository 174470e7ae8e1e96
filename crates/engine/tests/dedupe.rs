//! The same change twice is recorded once (`OrgState::already_recorded`, carried out by
//! `OrgCore::prepare_change` for `Engine::crm`): nothing is appended or routed for a change the
//! organization already holds, across a restart too; a stale version is not recorded; the same
//! row version with other content is refused on `record.version`. And the size limits of
//! `parse_changes_within`.

use ledgersync_domain::{Event, Limits, OrgId, Recorded};
use ledgersync_engine::ingress::{parse_changes, parse_changes_within};
use ledgersync_engine::{Clock, Engine, EngineError, ManualClock, SystemClock};
use ledgersync_journal::{Backend, Journal, JournalOptions};
use std::sync::Arc;

const ORG: &str = r#"{"kind": "profile_registered", "profile": "gw", "name": "GW", "server_type": "groupware"}
{"kind": "user_registered", "user": "jayne", "name": "Jayne", "email": "jayne@serenity.example"}
{"kind": "user_registered", "user": "paul", "name": "Paul", "email": "paul@serenity.example"}
{"kind": "mailbox_registered", "mailbox": "mbx-jayne", "address": "jayne@serenity.example", "profile": "gw"}
{"kind": "mailbox_mapped", "mailbox": "mbx-jayne", "user": "jayne"}
{"kind": "address_approved", "mailbox": "mbx-jayne"}
{"kind": "setting_changed", "key": "require_approved_address", "value": false}
{"kind": "filter_changed", "user": "jayne", "entity": "appointment", "filters": [{"id": "f1", "name": "Mine", "expr": "organizer = me"}]}
{"kind": "access_lost", "user": "paul", "records": ["apt-1"], "reason": "role"}
{"kind": "record_upserted", "record": {"entity": "appointment", "id": "apt-1", "owner": "jayne", "version": 2, "subject": "Bike repair", "organizer": {"user": "jayne", "email": "jayne@serenity.example"}, "start": "{START}", "end": "{END}", "state": "scheduled"}}
{"kind": "record_upserted", "record": {"entity": "contact", "id": "con-1", "owner": "jayne", "version": 1, "full_name": "Linda Park"}}
{"kind": "owner_changed", "previous_owner": "jayne", "record": {"entity": "contact", "id": "con-1", "owner": "paul", "version": 2, "full_name": "Linda Park"}}
{"kind": "record_deleted", "id": "con-1", "entity": "contact"}
"#;

/// The organization with its meeting tomorrow: times relative to now.
fn org_text() -> String {
    let now = chrono::Utc::now();
    let at = |h: i64| {
        (now + chrono::Duration::hours(h)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    ORG.replace("{START}", &at(24)).replace("{END}", &at(25))
}

fn open(dir: &std::path::Path) -> (Arc<dyn Journal>, Engine) {
    let journal =
        ledgersync_journal::open(dir, &JournalOptions::with_backend(Backend::Redb)).unwrap();
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let engine = Engine::open(journal.clone(), OrgId::new("serenity"), clock).unwrap();
    (journal, engine)
}

fn apply(engine: &mut Engine, text: &str) -> Vec<Option<Recorded>> {
    parse_changes(text, engine.org())
        .unwrap_or_else(|e| panic!("{e:?}"))
        .into_iter()
        .map(|c| engine.crm(c.event).unwrap().already_recorded)
        .collect()
}

#[test]
fn every_change_of_a_file_applied_twice_is_recorded_once_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let text = org_text();
    let (journal, mut engine) = open(dir.path());
    let first = apply(&mut engine, &text);
    assert!(first.iter().all(Option::is_none), "{first:?}");
    let events = journal.last_position().unwrap();

    let again = apply(&mut engine, &text);
    assert!(again.iter().all(Option::is_some), "{again:?}");
    assert_eq!(journal.last_position().unwrap(), events, "nothing appended");
    assert_eq!(
        again[9],
        Some(Recorded::SameRow {
            row: "apt-1".into(),
            version: 2
        })
    );
    // A change sent before the delete, again: the row stays deleted.
    assert_eq!(
        again[10],
        Some(Recorded::DeletedRow {
            row: "con-1".into(),
            version: 1,
            deleted: 2
        })
    );
    assert_eq!(
        again[12],
        Some(Recorded::AlreadyDeleted {
            row: "con-1".into()
        })
    );
    assert_eq!(
        again[9].as_ref().unwrap().to_string(),
        "already recorded: same row version and content, nothing done"
    );

    // After a restart the organization is rebuilt from its stream: the same answers.
    drop(engine);
    drop(journal);
    let (journal, mut engine) = open(dir.path());
    let after = apply(&mut engine, &text);
    assert!(after.iter().all(Option::is_some), "{after:?}");
    assert_eq!(journal.last_position().unwrap(), events);
}

#[test]
fn a_stale_version_is_not_recorded_and_other_content_under_a_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, mut engine) = open(dir.path());
    apply(&mut engine, &org_text());
    let events = journal.last_position().unwrap();
    let line = |version: u64, subject: &str| {
        org_text()
            .lines()
            .nth(9)
            .unwrap()
            .replace("\"version\": 2", &format!("\"version\": {version}"))
            .replace("Bike repair", subject)
    };
    let stale = apply(&mut engine, &line(1, "Bike repair, first draft"));
    assert_eq!(
        stale,
        vec![Some(Recorded::Stale {
            row: "apt-1".into(),
            version: 1,
            recorded: 2
        })]
    );
    assert_eq!(journal.last_position().unwrap(), events);

    // In a file: the line and field.
    let errors = parse_changes(&line(2, "Bike repair moved"), engine.org()).unwrap_err();
    assert_eq!(errors[0].line, 1);
    assert_eq!(errors[0].field.as_deref(), Some("record.version"));
    assert!(
        errors[0]
            .message
            .contains("row `apt-1` version 2 is already recorded with other content"),
        "{}",
        errors[0].message
    );
    // Through Engine::crm: the same refusal, nothing appended.
    let event = parse_changes(&line(3, "x"), engine.org()).unwrap()[0]
        .event
        .clone();
    let Event::RecordUpserted(mut p) = event else {
        panic!()
    };
    p.record.version = 2;
    let e = engine.crm(Event::RecordUpserted(p)).unwrap_err();
    assert!(
        matches!(&e, EngineError::InvalidField { field, .. } if field == "record.version"),
        "{e}"
    );
    assert_eq!(journal.last_position().unwrap(), events);

    // A higher version with the new content is recorded.
    assert_eq!(
        apply(&mut engine, &line(3, "Bike repair moved")),
        vec![None]
    );
}

#[test]
fn a_changed_value_is_recorded_the_same_value_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (_journal, mut engine) = open(dir.path());
    apply(&mut engine, &org_text());
    let lines = [
        // Changed: recorded.
        (
            r#"{"kind": "setting_changed", "key": "require_approved_address", "value": true}"#,
            false,
        ),
        // The value in force: not.
        (
            r#"{"kind": "setting_changed", "key": "require_approved_address", "value": "true"}"#,
            true,
        ),
        (
            r#"{"kind": "filter_changed", "user": "jayne", "entity": "appointment", "filters": []}"#,
            false,
        ),
        (
            r#"{"kind": "filter_changed", "user": "jayne", "entity": "appointment", "filters": []}"#,
            true,
        ),
        (
            r#"{"kind": "access_regained", "user": "paul", "records": ["apt-1"], "reason": "role"}"#,
            false,
        ),
        (
            r#"{"kind": "access_regained", "user": "paul", "records": ["apt-1"], "reason": "role"}"#,
            true,
        ),
        (
            r#"{"kind": "access_lost", "user": "paul", "records": ["apt-1"], "reason": "role"}"#,
            false,
        ),
        (
            r#"{"kind": "address_approved", "mailbox": "mbx-jayne", "approved": false}"#,
            false,
        ),
        (
            r#"{"kind": "address_approved", "mailbox": "mbx-jayne", "approved": false}"#,
            true,
        ),
        (
            r#"{"kind": "user_registered", "user": "paul", "name": "Paul Blart", "email": "paul@serenity.example"}"#,
            false,
        ),
        // A Test & Enable result is an event: recorded each time.
        (
            r#"{"kind": "mailbox_tested", "mailbox": "mbx-jayne", "incoming": "success"}"#,
            false,
        ),
        (
            r#"{"kind": "mailbox_tested", "mailbox": "mbx-jayne", "incoming": "success"}"#,
            false,
        ),
    ];
    for (line, recorded) in lines {
        let got = apply(&mut engine, line);
        assert_eq!(got[0].is_some(), recorded, "{line}: {got:?}");
    }
}

#[test]
fn lines_and_fields_beyond_the_limits_are_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (_journal, mut engine) = open(dir.path());
    apply(&mut engine, &org_text());
    let limits = Limits {
        max_line_bytes: 2048,
        max_body_bytes: 1024,
        max_field_bytes: 100,
        ..Limits::default()
    };
    let task = |extra: &str| {
        format!(
            r#"{{"kind": "record_upserted", "record": {{"entity": "task", "id": "t", "owner": "jayne", "version": 1, "state": "open", {extra}}}}}"#
        )
    };
    let text = [
        task(&format!(r#""subject": "ok", "body": "{}""#, "b".repeat(1000))),
        task(&format!(r#""subject": "ok", "body": "{}""#, "b".repeat(1025))),
        task(&format!(r#""subject": "{}""#, "s".repeat(101))),
        task(&format!(r#""subject": "ok", "body": "{}""#, "b".repeat(3000))),
        format!(
            r#"{{"kind": "access_lost", "user": "paul", "records": ["a", "{}"], "reason": "role"}}"#,
            "r".repeat(101)
        ),
    ]
    .join("\n");
    let errors = parse_changes_within(&text, engine.org(), &limits).unwrap_err();
    let got: Vec<(usize, Option<&str>)> = errors
        .iter()
        .map(|e| (e.line, e.field.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, Some("record.body")),
            (3, Some("record.subject")),
            (4, None),
            (5, Some("records[1]")),
        ],
        "{errors:?}"
    );
    assert!(errors[0].message.contains("max_body_bytes"), "{errors:?}");
    assert!(errors[1].message.contains("max_field_bytes"), "{errors:?}");
    assert!(errors[2].message.contains("max_line_bytes"), "{errors:?}");
}
