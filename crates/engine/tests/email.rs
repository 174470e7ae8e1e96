//! Incoming email through the real engine and journal: each `email_received` is decided from
//! the facts recorded in it; replay reproduces the decisions, explain says why an email was or
//! was not tracked, and what-if re-decides it under another email setting.

use ledgersync_domain::email::correlate::TrackedEmail;
use ledgersync_domain::email::resolve::{Party, PartyKind};
use ledgersync_domain::email::{Acceptor, IncomingFilter};
use ledgersync_domain::event::{EmailFacts, EmailFolder, EmailReceived, TrackedBy};
use ledgersync_domain::records::RecordRef;
use ledgersync_domain::{Event, MailboxId, OrgId, RecordId, RemoteId, Timestamp, UserId, time};
use ledgersync_engine::{Engine, ManualClock, explain, replay, scenario, what_if};
use ledgersync_journal::{Backend, JournalOptions};
use std::sync::Arc;

fn t0() -> Timestamp {
    // Relative to nothing the test does not control: the engine's clock is this one.
    time::timestamp_from_civil(2030, 3, 4, 9, 0)
}

fn blue_sun() -> RecordRef {
    RecordRef {
        table: "account".into(),
        id: RecordId::new("account-blue-sun"),
        name: "Blue Sun".into(),
    }
}

/// An email from Zoe to Paul with what the shell looks up for it.
fn from_zoe(uid: u32, subject: &str, in_reply_to: Option<&str>) -> Event {
    Event::EmailReceived(EmailReceived {
        remote: RemoteId::new(format!("INBOX/1/{uid}")),
        message_id: format!("<reply-{uid}@customer.example>"),
        subject: subject.into(),
        from: "zoe@customer.example".into(),
        to: vec!["paul@serenity.example".into()],
        in_reply_to: in_reply_to.map(str::to_string),
        references: vec![],
        thread_index: None,
        cc: vec![],
        bcc: vec![],
        received: t0(),
        irm_protected: false,
        folder: EmailFolder::Inbox,
        manual: None,
        size: 3_000,
        facts: EmailFacts {
            parties: vec![(
                "zoe@customer.example".into(),
                vec![Party {
                    kind: PartyKind::Contact,
                    id: RecordId::new("contact-zoe"),
                    name: "Zoe Washburne".into(),
                    owner: Some(UserId::new("paul")),
                    active: true,
                }],
            )],
            acceptors: vec![Acceptor {
                id: RecordId::new("paul"),
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
                owner: Some(UserId::new("paul")),
                hashes: Default::default(),
                outgoing: true,
            }],
            folder_regarding: None,
            process_from: None,
        },
    })
}

#[test]
fn emails_are_decided_replayed_explained_and_re_decided() {
    let dir = tempfile::tempdir().unwrap();
    let journal =
        ledgersync_journal::open(dir.path(), &JournalOptions::with_backend(Backend::Redb)).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let org = OrgId::new("serenity");
    let mut engine = Engine::open(journal.clone(), org.clone(), clock).unwrap();
    for e in scenario::organization_events() {
        engine.crm(e).unwrap();
    }
    for e in scenario::mailbox_events(&org, "mbx-paul", "paul", true) {
        engine.crm(e).unwrap();
    }
    let paul = MailboxId::new("mbx-paul");
    let tracked = engine
        .observe(&paul, from_zoe(1, "RE: Cargo offer CRM:0001001", None))
        .unwrap();
    match &tracked.decisions[0].decision.event {
        Event::EmailAccepted(a) => {
            assert_eq!(a.correlation, Some(TrackedBy::Token));
            assert_eq!(a.regarding, Some(blue_sun()));
        }
        other => panic!("{other:?}"),
    }
    let forward = engine
        .observe(
            &paul,
            from_zoe(2, "FW: Cargo offer", Some("<offer-1@serenity.example>")),
        )
        .unwrap();
    assert_eq!(forward.decisions[0].decision.event.name(), "email_accepted");
    let question = engine
        .observe(&paul, from_zoe(3, "A new question", None))
        .unwrap();
    assert_eq!(question.decisions[0].decision.rule.0, 54);
    // Delivered again: nothing new.
    let again = engine
        .observe(&paul, from_zoe(3, "A new question", None))
        .unwrap();
    assert!(again.decisions.is_empty(), "{:?}", again.decisions);
    drop(engine);

    let r = replay(journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(r.ok(), "{:#?}", r.mismatches);

    // Why was this email tracked to that account: the account finds it.
    let e = explain(journal.as_ref(), "account-blue-sun").unwrap();
    let why: Vec<String> = e
        .items
        .iter()
        .flat_map(|i| &i.mailboxes)
        .filter_map(|m| m.why.clone())
        .collect();
    assert!(
        why.iter()
            .any(|w| w.contains("the subject carries the tracking token CRM:0001001")),
        "{why:#?}"
    );
    // Why was it not tracked: by subject.
    let e = explain(journal.as_ref(), "A new question").unwrap();
    let why = e.items[0].mailboxes[0].why.clone().unwrap();
    assert!(why.contains("it answers no email in the CRM"), "{why}");
    assert!(why.ends_with("(R54)"), "{why}");

    // Forwards no longer correlating through In-Reply-To: the forward would not be tracked.
    let report = what_if(
        journal.as_ref(),
        &[("email_do_not_correlate_forwards".into(), "true".into())],
        |_, _| {},
    )
    .unwrap();
    assert_eq!(report.differences.len(), 1, "{:#?}", report.differences);
    let d = &report.differences[0];
    assert_eq!(d.remote, Some(RemoteId::new("INBOX/1/2")));
    assert_eq!(d.simulated_rules, vec!["R54".to_string()]);
}
