//! A tracked email as a user follows it (docs/crm-commands.md, `track_email`): an email accepted
//! in Jayne's mailbox is listed by `crm pending` as a `track_email` command; its done result goes
//! in through `crm apply`; the account's `timeline` lists the email under the CRM's row;
//! `explain` tells the rule, the regarding row, the command and its result; `replay` reproduces
//! every decision. The email is recorded through the engine on the data directory's journal, as
//! the service records what its IMAP connector reads; its times are fixed, so no test depends on
//! the day it runs.

mod common;

use common::{ledgersync, stderr, stdout};
use ledgersync_domain::email::correlate::TrackedEmail;
use ledgersync_domain::email::resolve::{Party, PartyKind};
use ledgersync_domain::email::{Acceptor, IncomingFilter};
use ledgersync_domain::event::{EmailFacts, EmailFolder, EmailReceived};
use ledgersync_domain::records::RecordRef;
use ledgersync_domain::time::timestamp_from_civil;
use ledgersync_domain::{Event, MailboxId, OrgId, RecordId, RemoteId, Timestamp, UserId};
use ledgersync_engine::{Engine, ManualClock};
use ledgersync_journal::{Backend, JournalOptions};
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

const ORG: &str = r#"{"kind": "profile_registered", "profile": "gw", "name": "GW", "server_type": "groupware"}
{"kind": "user_registered", "user": "jayne", "name": "Jayne", "email": "jayne@serenity.example"}
{"kind": "mailbox_registered", "mailbox": "mbx-jayne", "address": "jayne@serenity.example", "profile": "gw"}
{"kind": "mailbox_mapped", "mailbox": "mbx-jayne", "user": "jayne"}
{"kind": "address_approved", "mailbox": "mbx-jayne"}
{"kind": "mailbox_tested", "mailbox": "mbx-jayne", "incoming": "success", "outgoing": "success", "act": "success"}
"#;

const SUBJECT: &str = "RE: Cargo offer CRM:0001001";

/// When the mail server received the email.
fn received() -> Timestamp {
    timestamp_from_civil(2026, 11, 20, 8, 57)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}{}", stdout(o), stderr(o));
    stdout(o)
}

fn run(data: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--data", data.to_str().unwrap()];
    all.extend_from_slice(args);
    ledgersync(&all)
}

fn blue_sun() -> RecordRef {
    RecordRef {
        table: "account".into(),
        id: RecordId::new("account-blue-sun"),
        name: "Blue Sun".into(),
    }
}

/// Zoe's reply to Jayne's offer, carrying its tracking token, with what the service looks up
/// for it: Zoe's contact, Jayne's filtering method, the offer tracked regarding Blue Sun.
fn zoes_reply() -> Event {
    Event::EmailReceived(EmailReceived {
        remote: RemoteId::new("INBOX/1/42"),
        message_id: "<Reply-42@customer.example>".into(),
        subject: SUBJECT.into(),
        from: "zoe@customer.example".into(),
        to: vec!["jayne@serenity.example".into()],
        in_reply_to: None,
        references: vec![],
        thread_index: None,
        cc: vec!["kaylee@serenity.example".into()],
        bcc: vec![],
        received: received(),
        irm_protected: false,
        folder: EmailFolder::Inbox,
        manual: None,
        size: 4_000,
        facts: EmailFacts {
            parties: vec![(
                "zoe@customer.example".into(),
                vec![Party {
                    kind: PartyKind::Contact,
                    id: RecordId::new("contact-zoe"),
                    name: "Zoe Washburne".into(),
                    owner: Some(UserId::new("jayne")),
                    active: true,
                }],
            )],
            acceptors: vec![Acceptor {
                id: RecordId::new("jayne"),
                kind: PartyKind::User,
                filter: IncomingFilter::RepliesOnly,
                auto_create: None,
                may_own_emails: true,
            }],
            tracked: vec![TrackedEmail {
                activity: RecordId::new("email-offer"),
                message_id: "offer-1@serenity.example".into(),
                token: Some("CRM:0001001".into()),
                conversation: vec![],
                regarding: Some(blue_sun()),
                owner: Some(UserId::new("jayne")),
                hashes: Default::default(),
                outgoing: true,
            }],
            folder_regarding: None,
            process_from: None,
        },
    })
}

/// Records `event` in Jayne's mailbox through the engine on the data directory's journal.
fn observe(data: &Path, event: Event) {
    let journal = ledgersync_journal::open(
        &data.join("journal"),
        &JournalOptions::with_backend(Backend::Redb),
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(received()));
    let mut engine = Engine::open(journal, OrgId::new("serenity"), clock).unwrap();
    engine.observe(&MailboxId::new("mbx-jayne"), event).unwrap();
}

fn pending(data: &Path) -> Vec<Value> {
    ok(&run(data, &["--json", "crm", "pending"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn an_accepted_email_goes_to_the_crm_as_track_email_and_shows_on_the_accounts_timeline() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let org = tmp.path().join("org.jsonl");
    std::fs::write(&org, ORG).unwrap();
    ok(&run(&data, &["crm", "apply", org.to_str().unwrap()]));
    observe(&data, zoes_reply());

    // The command, as the CRM's adapter reads it.
    let open = pending(&data);
    assert_eq!(open.len(), 1, "{open:#?}");
    let c = &open[0];
    assert_eq!(c["command"], "track_email");
    assert_eq!(c["rule"], "R52");
    assert_eq!(c["entity"], "email");
    assert_eq!(c["version"], Value::Null);
    assert_eq!(c["remote"], "INBOX/1/42");
    assert_eq!(c["title"], SUBJECT);
    let proposed = c["record"].as_str().unwrap().to_string();
    assert!(
        proposed.starts_with("email-") && proposed.len() == "email-".len() + 16,
        "{proposed}"
    );
    let f = &c["fields"];
    assert_eq!(f["message_id"], "reply-42@customer.example");
    assert_eq!(f["subject"], SUBJECT);
    assert_eq!(f["from"], "zoe@customer.example");
    assert_eq!(f["to"], serde_json::json!(["jayne@serenity.example"]));
    assert_eq!(f["cc"], serde_json::json!(["kaylee@serenity.example"]));
    assert_eq!(f["received"], "2026-11-20T08:57:00Z");
    assert_eq!(f["accepting"], "jayne");
    assert_eq!(f["receiving_mailbox"], "mbx-jayne");
    assert_eq!(
        f["regarding"],
        serde_json::json!({"table": "account", "id": "account-blue-sun", "name": "Blue Sun"})
    );
    assert_eq!(f["correlated"], "email-offer");
    assert_eq!(f["correlation"], "token");
    assert_eq!(f["parent"], false);
    assert_eq!(f["sender"], "contact-zoe");
    assert_eq!(f["owner"], "jayne");
    assert_eq!(f["create"], Value::Null);
    let text = ok(&run(&data, &["crm", "pending"]));
    assert!(text.contains("track_email"), "{text}");

    // On the account's timeline before the CRM answers: waiting for it.
    let before = ok(&run(&data, &["timeline", "account-blue-sun"]));
    assert!(before.contains("1 activity"), "{before}");
    assert!(
        before.contains(&format!("email \"{SUBJECT}\"  {proposed}")),
        "{before}"
    );
    assert!(before.contains("waiting for its result"), "{before}");

    // The CRM created the activity as eml-7731.
    let key = c["key"].as_str().unwrap();
    let results = tmp.path().join("results.jsonl");
    std::fs::write(
        &results,
        format!(
            r#"{{"kind": "command_result", "key": "{key}", "status": "done", "record": "eml-7731", "version": 1}}"#
        ) + "\n",
    )
    .unwrap();
    let applied = ok(&run(&data, &["crm", "apply", results.to_str().unwrap()]));
    assert!(
        applied.contains("the CRM carried out command track_email"),
        "{applied}"
    );
    assert!(pending(&data).is_empty(), "the command is closed");
    // The same result again is recorded nowhere.
    let again = ok(&run(&data, &["crm", "apply", results.to_str().unwrap()]));
    assert!(again.contains("already recorded"), "{again}");

    let timeline: Value = serde_json::from_str(&ok(&run(
        &data,
        &["--json", "timeline", "account-blue-sun"],
    )))
    .unwrap();
    let activities = timeline["activities"].as_array().unwrap();
    assert_eq!(activities.len(), 1, "{timeline:#}");
    let email = &activities[0];
    assert_eq!(email["record"], "eml-7731");
    assert_eq!(email["entity"], "email");
    assert_eq!(email["title"], SUBJECT);
    assert_eq!(email["regarding"]["id"], "account-blue-sun");
    assert_eq!(email["mailboxes"]["mbx-jayne"]["status"], "linked");
    assert_eq!(email["mailboxes"]["mbx-jayne"]["remote"], "INBOX/1/42");
    assert!(
        email["mailboxes"]["mbx-jayne"]["last_decision"]["summary"]
            .as_str()
            .unwrap()
            .contains("created in the CRM"),
        "{email:#}"
    );
    let text = ok(&run(&data, &["timeline", "account-blue-sun"]));
    assert!(
        text.contains(&format!("email \"{SUBJECT}\"  eml-7731")),
        "{text}"
    );
    let jayne = text
        .lines()
        .find(|l| l.trim_start().starts_with("mbx-jayne"))
        .expect("a line for Jayne's mailbox");
    assert!(
        jayne.contains("linked") && jayne.contains("R52: created in the CRM"),
        "{jayne}"
    );

    // The CRM sends its row: the timeline shows it at the version the CRM holds.
    let row = tmp.path().join("row.jsonl");
    std::fs::write(
        &row,
        format!(
            r#"{{"kind": "record_upserted", "record": {{"entity": "email", "id": "eml-7731", "owner": "jayne", "version": 1, "subject": "{SUBJECT}", "from": {{"email": "zoe@customer.example", "name": "Zoe Washburne"}}, "to": [{{"user": "jayne", "email": "jayne@serenity.example"}}], "message_id": "<reply-42@customer.example>", "regarding": {{"table": "account", "id": "account-blue-sun", "name": "Blue Sun"}}}}}}"#
        ) + "\n",
    )
    .unwrap();
    ok(&run(&data, &["crm", "apply", row.to_str().unwrap()]));
    let timeline: Value = serde_json::from_str(&ok(&run(
        &data,
        &["--json", "timeline", "account-blue-sun"],
    )))
    .unwrap();
    let activities = timeline["activities"].as_array().unwrap();
    assert_eq!(activities.len(), 1, "{timeline:#}");
    assert_eq!(activities[0]["record"], "eml-7731");
    assert_eq!(activities[0]["version"], 1);

    // Why, and what became of it.
    let why = ok(&run(&data, &["explain", SUBJECT]));
    for said in [
        "accepted by R52",
        "regarding account \"Blue Sun\" (account-blue-sun)",
        "a track_email command was sent to the CRM (key mbx-jayne/",
        "the CRM created the email activity eml-7731 (version 1)",
    ] {
        assert!(why.contains(said), "`{said}` missing from:\n{why}");
    }

    // The CRM's row tells the email it was created for.
    let why = ok(&run(&data, &["explain", "eml-7731"]));
    assert!(
        why.contains("the CRM created the email activity eml-7731 (version 1)"),
        "{why}"
    );

    // Every decision replays.
    ok(&run(&data, &["replay"]));
}
