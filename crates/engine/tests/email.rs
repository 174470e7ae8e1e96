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

/// The CRM's email row for the tracked reply, as a CRM change line.
fn crm_email_row(org: &ledgersync_domain::OrgState, id: &str, version: u64) -> Event {
    let line = format!(
        r#"{{"kind": "record_upserted", "record": {{"entity": "email", "id": "{id}", "owner": "paul", "version": {version}, "subject": "RE: Cargo offer CRM:0001001", "from": {{"email": "zoe@customer.example", "name": "Zoe Washburne"}}, "to": [{{"user": "paul", "email": "paul@serenity.example"}}], "message_id": "<reply-1@customer.example>", "regarding": {{"table": "account", "id": "account-blue-sun", "name": "Blue Sun"}}}}}}"#
    );
    ledgersync_engine::ingress::parse_changes(&line, org).unwrap()[0]
        .event
        .clone()
}

#[test]
fn a_tracked_email_leaves_as_a_command_shows_on_its_accounts_timeline_and_moves_to_the_crms_row() {
    use ledgersync_domain::crm::{CommandResult, EmailCommand, ResultStatus, commands};
    use ledgersync_domain::event::CommandType;
    use ledgersync_domain::records::Entity;
    use ledgersync_domain::state::LinkStatus;
    use ledgersync_engine::Settled;
    use ledgersync_engine::projection::Projection;

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
    let decided: Vec<(String, &str)> = tracked
        .decisions
        .iter()
        .map(|d| (d.decision.rule.to_string(), d.decision.event.name()))
        .collect();
    assert_eq!(
        decided,
        [
            ("R52".to_string(), "email_accepted"),
            ("R52".to_string(), "create_intent")
        ]
    );
    let proposed = EmailCommand::proposed_record("<reply-1@customer.example>", &RemoteId::new("x"));

    // The command, as `crm pending` lists it.
    let open_now = commands(engine.mailbox(&paul).unwrap(), t0());
    assert_eq!(open_now.len(), 1, "{open_now:#?}");
    let command = &open_now[0];
    assert_eq!(command.command, CommandType::TrackEmail);
    assert_eq!(command.record, proposed);
    let json = ledgersync_engine::command_json::command_json(command);
    assert_eq!(json["command"], "track_email");
    assert_eq!(json["entity"], "email");
    assert_eq!(json["fields"]["message_id"], "reply-1@customer.example");
    assert_eq!(json["fields"]["regarding"]["id"], "account-blue-sun");
    assert_eq!(json["fields"]["correlation"], "token");
    assert_eq!(json["fields"]["correlated"], "email-offer");
    assert_eq!(json["fields"]["sender"], "contact-zoe");
    assert_eq!(json["fields"]["received"], "2030-03-04T09:00:00Z");

    // On the account's timeline at once: waiting for the CRM.
    let mut projection = Projection::open(&dir.path().join("projections.redb")).unwrap();
    projection.catch_up(journal.as_ref()).unwrap();
    let account = projection
        .timeline_of_record(&RecordId::new("account-blue-sun"))
        .unwrap();
    assert_eq!(account.len(), 1, "{account:#?}");
    let row = &account[0];
    assert_eq!(row.record, proposed);
    assert_eq!(row.entity, Entity::Email);
    assert_eq!(row.title, "RE: Cargo offer CRM:0001001");
    assert_eq!(row.at, t0());
    assert_eq!(row.version, 0);
    assert_eq!(row.regarding.as_ref().unwrap().name, "Blue Sun");
    let sync = &row.mailboxes[&paul];
    assert_eq!(sync.status, Some(LinkStatus::Creating));
    assert_eq!(sync.remote, Some(RemoteId::new("INBOX/1/1")));
    let last = sync.last_decision.as_ref().unwrap();
    assert!(
        last.summary.contains("waiting for its result"),
        "{}",
        last.summary
    );

    // The CRM created the activity under its own id: the command closes, nothing is linked,
    // and the row moves to that id.
    let result = CommandResult {
        key: command.key.clone(),
        status: ResultStatus::Done {
            record: RecordId::new("email-crm-7"),
            version: 1,
        },
    };
    let Settled::Recorded { processed, .. } = engine.settle(&result).unwrap() else {
        panic!("the open command's result is recorded")
    };
    assert!(processed.decisions.is_empty(), "{:#?}", processed.decisions);
    let state = engine.mailbox(&paul).unwrap();
    assert!(commands(state, t0()).is_empty());
    assert!(state.links.is_empty(), "{:#?}", state.links);
    projection.catch_up(journal.as_ref()).unwrap();
    let account = projection
        .timeline_of_record(&RecordId::new("account-blue-sun"))
        .unwrap();
    assert_eq!(account.len(), 1, "{account:#?}");
    assert_eq!(account[0].record, RecordId::new("email-crm-7"));
    let sync = &account[0].mailboxes[&paul];
    assert_eq!(
        sync.status,
        Some(LinkStatus::Linked),
        "the email in the mailbox is the CRM's row now"
    );
    assert_eq!(sync.remote, Some(RemoteId::new("INBOX/1/1")));
    assert!(
        sync.last_decision
            .as_ref()
            .unwrap()
            .summary
            .contains("created in the CRM"),
        "{:?}",
        sync.last_decision
    );
    assert!(
        projection.timeline_of_record(&proposed).unwrap().is_empty(),
        "nothing is left under the proposed id"
    );

    // The CRM sends the row: it becomes the CRM's row, where it was in time.
    let row_event = crm_email_row(engine.org(), "email-crm-7", 1);
    engine.crm(row_event).unwrap();
    projection.catch_up(journal.as_ref()).unwrap();
    let account = projection
        .timeline_of_record(&RecordId::new("account-blue-sun"))
        .unwrap();
    assert_eq!(account.len(), 1, "{account:#?}");
    assert_eq!((account[0].version, account[0].at), (1, t0()));
    assert!(account[0].mailboxes.contains_key(&paul));
    drop(engine);

    // A rebuilt projection says the same; replay reproduces every decision.
    let mut fresh = Projection::open(&dir.path().join("fresh.redb")).unwrap();
    fresh.rebuild(journal.as_ref()).unwrap();
    assert_eq!(
        fresh
            .timeline_of_record(&RecordId::new("account-blue-sun"))
            .unwrap(),
        account
    );
    let r = replay(journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(r.ok(), "{:#?}", r.mismatches);

    // explain tells the acceptance, the regarding row, the command and its result.
    let e = explain(journal.as_ref(), "RE: Cargo offer CRM:0001001").unwrap();
    let why: Vec<String> = e
        .items
        .iter()
        .flat_map(|i| &i.mailboxes)
        .filter_map(|m| m.why.clone())
        .collect();
    assert!(
        why.iter().any(|w| w.contains("(accepted by R52)")
            && w.contains("regarding account \"Blue Sun\" (account-blue-sun)")
            && w.contains("a track_email command was sent to the CRM (key mbx-paul/")
            && w.contains("the CRM created the email activity email-crm-7 (version 1)")),
        "{why:#?}"
    );
}

#[test]
fn one_message_tracked_by_two_mailboxes_is_one_row_and_a_refused_command_leaves_none() {
    use ledgersync_domain::crm::{CommandResult, ResultStatus, commands};
    use ledgersync_domain::records::Entity;
    use ledgersync_domain::state::LinkStatus;
    use ledgersync_engine::projection::Projection;

    let dir = tempfile::tempdir().unwrap();
    let journal =
        ledgersync_journal::open(dir.path(), &JournalOptions::with_backend(Backend::Redb)).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let org = OrgId::new("serenity");
    let mut engine = Engine::open(journal.clone(), org.clone(), clock).unwrap();
    for e in scenario::organization_events() {
        engine.crm(e).unwrap();
    }
    for (mailbox, user) in [("mbx-paul", "paul"), ("mbx-jayne", "jayne")] {
        for e in scenario::mailbox_events(&org, mailbox, user, true) {
            engine.crm(e).unwrap();
        }
    }
    let paul = MailboxId::new("mbx-paul");
    let jayne = MailboxId::new("mbx-jayne");
    // The same reply, to both of them, found by each mailbox's cycle.
    let to_both = |uid: u32, user: &str| {
        let Event::EmailReceived(mut e) = from_zoe(uid, "RE: Cargo offer CRM:0001001", None) else {
            unreachable!()
        };
        e.message_id = "<reply-both@customer.example>".into();
        e.to = vec![
            "paul@serenity.example".into(),
            "jayne@serenity.example".into(),
        ];
        e.facts.acceptors[0].id = RecordId::new(user);
        Event::EmailReceived(e)
    };
    engine.observe(&paul, to_both(1, "paul")).unwrap();
    engine.observe(&jayne, to_both(7, "jayne")).unwrap();
    let key_of = |engine: &Engine, m: &MailboxId| {
        let open = commands(engine.mailbox(m).unwrap(), t0());
        assert_eq!(open.len(), 1, "{open:#?}");
        open[0].clone()
    };
    let (p, j) = (key_of(&engine, &paul), key_of(&engine, &jayne));
    assert_eq!(p.record, j.record, "both propose the same row");
    assert_ne!(p.key, j.key);
    let done = |c: &ledgersync_domain::crm::CrmCommand| CommandResult {
        key: c.key.clone(),
        status: ResultStatus::Done {
            record: RecordId::new("email-crm-9"),
            version: 1,
        },
    };

    let mut projection = Projection::open(&dir.path().join("projections.redb")).unwrap();
    projection.catch_up(journal.as_ref()).unwrap();
    let rows = projection
        .timeline_of_record(&RecordId::new("account-blue-sun"))
        .unwrap();
    assert_eq!(rows.len(), 1, "one row for one message: {rows:#?}");
    assert_eq!(rows[0].mailboxes.len(), 2);

    // The CRM creates the activity for Paul's command and answers Jayne's with the same row
    // (docs/crm-commands.md, "One email activity per Message-ID").
    engine.settle(&done(&p)).unwrap();
    projection.catch_up(journal.as_ref()).unwrap();
    engine.settle(&done(&j)).unwrap();
    projection.catch_up(journal.as_ref()).unwrap();
    let rows = projection
        .timeline_of_record(&RecordId::new("account-blue-sun"))
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].record, RecordId::new("email-crm-9"));
    for m in [&paul, &jayne] {
        let sync = &rows[0].mailboxes[m];
        assert_eq!(sync.status, Some(LinkStatus::Linked), "{m}: {sync:#?}");
        assert!(
            sync.last_decision
                .as_ref()
                .is_some_and(|d| d.summary.contains("created in the CRM")),
            "{m}: {sync:#?}"
        );
    }

    // Another email, whose command the CRM refuses for good: given up (R12), it stays on the
    // timeline under the proposed row, with no status, and is listed among the item failures.
    engine
        .observe(
            &paul,
            from_zoe(2, "RE: Cargo offer CRM:0001001 (again)", None),
        )
        .unwrap();
    let c = key_of(&engine, &paul);
    engine
        .settle(&CommandResult {
            key: c.key.clone(),
            status: ResultStatus::Failed {
                reason: "the account is locked".into(),
                code: None,
                retryable: false,
                retry_after: None,
            },
        })
        .unwrap();
    projection.catch_up(journal.as_ref()).unwrap();
    let rows = projection.timeline_of_record(&c.record).unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let sync = &rows[0].mailboxes[&paul];
    assert_eq!((sync.status, &sync.remote), (None, &None), "{sync:#?}");
    assert!(
        sync.last_decision
            .as_ref()
            .is_some_and(|d| d.summary.contains("not created in the CRM")),
        "{sync:#?}"
    );
    let failures = projection.failures_of_mailbox(&paul).unwrap();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(failures[0].entity, Some(Entity::Email));
    drop(engine);

    let mut fresh = Projection::open(&dir.path().join("fresh.redb")).unwrap();
    fresh.rebuild(journal.as_ref()).unwrap();
    for record in ["account-blue-sun", c.record.as_str()] {
        let record = RecordId::new(record);
        assert_eq!(
            fresh.timeline_of_record(&record).unwrap(),
            projection.timeline_of_record(&record).unwrap()
        );
    }
    let r = replay(journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(r.ok(), "{:#?}", r.mismatches);
}
