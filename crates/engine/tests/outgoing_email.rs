//! Outgoing email (R75–R78) through the real engine and journal: an email row in Pending Send,
//! read from the CRM's JSON, is decided into a send by its sender's mailbox; the send's success
//! leaves as a `mark_email_sent` command whose result is recorded and whose echo decides
//! nothing; a draft, and a row whose mailbox has no outgoing email, are not sent, and `explain`
//! says why with R75; every decision replays.

use ledgersync_domain::crm::{CommandResult, ResultStatus, commands};
use ledgersync_domain::email::outgoing;
use ledgersync_domain::event::{CommandType, IntentSucceeded, Side};
use ledgersync_domain::time::timestamp_from_civil;
use ledgersync_domain::{Event, MailboxId, OrgId, OrgState, RecordId, RemoteId, Timestamp};
use ledgersync_engine::ingress::parse_changes;
use ledgersync_engine::{Engine, ManualClock, Settled, explain, replay};
use ledgersync_journal::{Backend, Journal, JournalOptions};
use std::path::Path;
use std::sync::Arc;

/// Jayne's mailbox is enabled for everything; Mal's outgoing email failed its test.
const ORG: &str = r#"{"kind": "profile_registered", "profile": "gw", "name": "GW", "server_type": "groupware"}
{"kind": "user_registered", "user": "jayne", "name": "Jayne", "email": "jayne@serenity.example"}
{"kind": "user_registered", "user": "mal", "name": "Mal", "email": "mal@serenity.example"}
{"kind": "mailbox_registered", "mailbox": "mbx-jayne", "address": "jayne@serenity.example", "profile": "gw"}
{"kind": "mailbox_mapped", "mailbox": "mbx-jayne", "user": "jayne"}
{"kind": "address_approved", "mailbox": "mbx-jayne"}
{"kind": "mailbox_tested", "mailbox": "mbx-jayne", "incoming": "success", "outgoing": "success", "act": "success"}
{"kind": "mailbox_registered", "mailbox": "mbx-mal", "address": "mal@serenity.example", "profile": "gw"}
{"kind": "mailbox_mapped", "mailbox": "mbx-mal", "user": "mal"}
{"kind": "address_approved", "mailbox": "mbx-mal"}
{"kind": "mailbox_tested", "mailbox": "mbx-mal", "incoming": "success", "outgoing": "failure", "act": "success"}
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

/// An email row from `user`, as the CRM's JSON gives it.
fn email_row(id: &str, user: &str, version: u64, state: &str) -> Event {
    let line = format!(
        r#"{{"kind": "record_upserted", "record": {{"entity": "email", "id": "{id}", "owner": "{user}", "version": {version}, "subject": "Your quote", "from": {{"user": "{user}", "email": "{user}@serenity.example", "name": "{user}"}}, "to": [{{"email": "zoe@customer.example", "name": "Zoe Washburne"}}], "state": "{state}", "text": "Zoe, the quote is attached.", "tracking_token": "CRM:0001004"}}}}"#
    );
    parse_changes(&line, &OrgState::new(OrgId::new("serenity"))).unwrap()[0]
        .event
        .clone()
}

fn steps(journal: &dyn Journal, query: &str) -> Vec<String> {
    let story = explain(journal, query).unwrap();
    story.items[0]
        .mailboxes
        .iter()
        .flat_map(|m| m.steps.iter())
        .map(|s| format!("{} {}", s.rule.clone().unwrap_or_default(), s.text))
        .collect()
}

#[test]
fn an_email_pending_send_is_sent_by_its_mailbox_marked_sent_in_the_crm_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, mut engine) = open(dir.path());
    for c in parse_changes(ORG, engine.org()).unwrap() {
        engine.crm(c.event).unwrap();
    }
    let jayne = MailboxId::new("mbx-jayne");

    // R75: Jayne's mailbox sends it, with the token in the subject.
    let decided = engine
        .crm(email_row("eml-quote", "jayne", 1, "pending_send"))
        .unwrap();
    let sends: Vec<_> = decided
        .decisions
        .iter()
        .filter_map(|d| match &d.decision.event {
            Event::CreateIntent(c) => Some((d.id, d.decision.rule.to_string(), c.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1, "{:#?}", decided.decisions);
    let (intent, rule, send) = &sends[0];
    assert_eq!(rule, "R75");
    assert_eq!(send.target, Side::MailServer);
    assert_eq!(send.item.title, "Your quote CRM:0001004");
    let message_id = outgoing::message_id(&send.key, "jayne@serenity.example");

    // The connector sent it: linked to its Message-ID, and the CRM is told (R76).
    let sent = engine
        .observe(
            &jayne,
            Event::IntentSucceeded(IntentSucceeded {
                intent: *intent,
                remote: Some(RemoteId::new(message_id.clone())),
                etag: None,
                crm: None,
            }),
        )
        .unwrap();
    let names: Vec<(String, &str)> = sent
        .decisions
        .iter()
        .map(|d| (d.decision.rule.to_string(), d.decision.event.name()))
        .collect();
    assert_eq!(
        names,
        [
            ("R76".to_string(), "link_created"),
            ("R76".to_string(), "update_intent")
        ]
    );
    let open_now = commands(engine.mailbox(&jayne).unwrap(), t0());
    assert_eq!(open_now.len(), 1);
    assert_eq!(open_now[0].command, CommandType::MarkEmailSent);
    let json = ledgersync_engine::command_json::command_json(&open_now[0]);
    assert_eq!(json["fields"]["message_id"], message_id.as_str());
    assert_eq!(json["rule"], "R76");
    let result = CommandResult {
        key: open_now[0].key.clone(),
        status: ResultStatus::Done {
            record: RecordId::new("eml-quote"),
            version: 2,
        },
    };
    assert!(matches!(
        engine.settle(&result).unwrap(),
        Settled::Recorded { .. }
    ));
    // The CRM's row, now Sent: decides nothing; a row still pending is not sent again.
    let echo = engine
        .crm(email_row("eml-quote", "jayne", 2, "sent"))
        .unwrap();
    assert!(echo.decisions.is_empty(), "{:#?}", echo.decisions);
    let again = engine
        .crm(email_row("eml-quote", "jayne", 3, "pending_send"))
        .unwrap();
    assert!(
        again
            .decisions
            .iter()
            .all(|d| !matches!(d.decision.event, Event::CreateIntent(_))),
        "{:#?}",
        again.decisions
    );

    // Not sent: a draft, and an email of a mailbox whose outgoing email is not enabled.
    let draft = engine
        .crm(email_row("eml-draft", "jayne", 1, "draft"))
        .unwrap();
    assert_eq!(draft.decisions.len(), 1);
    let mal = engine
        .crm(email_row("eml-mal", "mal", 1, "pending_send"))
        .unwrap();
    assert_eq!(mal.decisions.len(), 1);
    assert_eq!(mal.decisions[0].decision.event.name(), "no_action");

    let report = replay(journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(report.mismatches.is_empty(), "{:#?}", report.mismatches);
    let quote = steps(journal.as_ref(), "eml-quote");
    for wanted in [
        "R75 \"Your quote\" is pending send",
        "R76 \"Your quote\" was sent as",
        "R76 \"Your quote\" was sent: the CRM marks the email Sent",
    ] {
        assert!(
            quote.iter().any(|s| s.starts_with(wanted)),
            "{wanted}: {quote:#?}"
        );
    }
    let draft = steps(journal.as_ref(), "eml-draft");
    assert!(
        draft
            .iter()
            .any(|s| s.starts_with("R75 ") && s.contains("is draft, not pending send")),
        "{draft:#?}"
    );
    let mal = steps(journal.as_ref(), "eml-mal");
    assert!(
        mal.iter().any(|s| s.starts_with("R75 ")
            && s.contains(
                "outgoing email is not tested and enabled for the mailbox mal@serenity.example"
            )),
        "{mal:#?}"
    );
}
