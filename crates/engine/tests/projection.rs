//! The projection: folded incrementally page by page it equals a fresh rebuild; its checkpoint
//! is written with its rows; the demo's "Bike repair" shows its per-mailbox states; item
//! failures are kept for the retention (R16, R79) and mailbox health follows the workloads (R80);
//! alerts of mailboxes and of the organization are kept for `alert_retention_days` (R81).

use ledgersync_domain::event::{
    IntentFailed, ListingCompleted, ListingFailed, RecordUpserted, ServerError, Workload,
};
use ledgersync_domain::records::{
    ActivityState, Appointment, Party, Priority, Record, RecordBody, RecordRef, ShowAs,
};
use ledgersync_domain::state::{IntentKind, LinkStatus};
use ledgersync_domain::{
    Duration, Event, MailboxId, OrgId, RecordId, RuleId, Timestamp, UserId, time,
};
use ledgersync_engine::projection::{
    Activity, Alert, ItemFailure, ItemLink, Projection, WorkloadHealth,
};
use ledgersync_engine::{Clock, Engine, ManualClock, scenario};
use ledgersync_journal::{Backend, Journal, JournalOptions};
use std::path::Path;
use std::sync::Arc;

fn t0() -> Timestamp {
    time::timestamp_from_civil(2026, 11, 20, 9, 0)
}

fn story(dir: &Path) -> (Arc<dyn Journal>, Engine, Arc<ManualClock>) {
    let journal = ledgersync_journal::open(
        &dir.join("journal"),
        &JournalOptions::with_backend(Backend::Redb),
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let mut engine = Engine::open(journal.clone(), OrgId::new("serenity"), clock.clone()).unwrap();
    scenario::disappearing_appointment(&mut engine, &clock).unwrap();
    (journal, engine, clock)
}

fn mbx(id: &str) -> MailboxId {
    MailboxId::new(id)
}

fn rec(id: &str) -> RecordId {
    RecordId::new(id)
}

const USERS: [&str; 3] = ["jayne", "paul", "laura"];
const MAILBOXES: [&str; 2] = ["mbx-jayne", "mbx-paul"];
const RECORDS: [&str; 8] = [
    "apt-bike-repair",
    "apt-quarterly-review",
    "apt-supplier-call",
    "apt-site-visit",
    "con-linda-park",
    "tsk-send-quote",
    "apt-gearbox-check",
    "acc-serenity-garage",
];

/// Every query answer of the projection.
#[derive(Debug, PartialEq)]
struct Views {
    records: Vec<Vec<Activity>>,
    users: Vec<Vec<Activity>>,
    links: Vec<Vec<ItemLink>>,
    failures: Vec<Vec<ItemFailure>>,
    health: Vec<Vec<WorkloadHealth>>,
    alerts: Vec<Alert>,
}

fn views(p: &Projection) -> Views {
    Views {
        records: RECORDS
            .iter()
            .map(|r| p.timeline_of_record(&rec(r)).unwrap())
            .collect(),
        users: USERS
            .iter()
            .map(|u| p.timeline_of_user(&UserId::new(*u)).unwrap())
            .collect(),
        links: RECORDS
            .iter()
            .map(|r| p.links_of(&rec(r)).unwrap())
            .collect(),
        failures: MAILBOXES
            .iter()
            .map(|m| p.failures_of_mailbox(&mbx(m)).unwrap())
            .collect(),
        health: MAILBOXES
            .iter()
            .map(|m| p.health_of_mailbox(&mbx(m)).unwrap())
            .collect(),
        alerts: p.alerts(None, None).unwrap(),
    }
}

fn rebuilt(dir: &Path, journal: &dyn Journal) -> Views {
    let mut fresh = Projection::open(&dir.join("fresh.redb")).unwrap();
    let done = fresh.rebuild(journal).unwrap();
    assert_eq!(done.checkpoint, journal.last_position().unwrap());
    views(&fresh)
}

fn party(user: &str) -> Party {
    Party {
        user: Some(UserId::new(user)),
        email: format!("{user}@serenity.example"),
        name: user.into(),
    }
}

/// An appointment regarding an account, organized by Paul with Laura attending.
fn gearbox(at: Timestamp) -> Record {
    Record {
        id: rec("apt-gearbox-check"),
        owner: UserId::new("paul"),
        version: 1,
        body: RecordBody::Appointment(Appointment {
            subject: "Gearbox check".into(),
            organizer: Some(party("paul")),
            required: vec![party("laura")],
            optional: vec![],
            start: at,
            end: at + Duration::hours(1),
            all_day: false,
            location: String::new(),
            body: String::new(),
            state: ActivityState::Scheduled,
            show_as: ShowAs::Busy,
            priority: Priority::Normal,
            regarding: Some(RecordRef {
                table: "account".into(),
                id: rec("acc-serenity-garage"),
                name: "Serenity Garage".into(),
            }),
            service: false,
            recurrence: None,
        }),
    }
}

fn unavailable() -> ServerError {
    ServerError {
        code: "503".into(),
        message: "Service Unavailable".into(),
        retry_after: None,
    }
}

#[test]
fn incremental_catch_up_equals_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, mut engine, clock) = story(dir.path());
    let mut live = Projection::open(&dir.path().join("projections.redb"))
        .unwrap()
        .with_page(7);

    // The story in two halves, in pages of 7 events.
    let last = journal.last_position().unwrap();
    let first = live.catch_up_to(journal.as_ref(), last / 2).unwrap();
    assert_eq!(first.checkpoint, last / 2);
    assert_eq!(first.events, last / 2);
    assert_eq!(first.pages, (last / 2).div_ceil(7));
    let second = live.catch_up(journal.as_ref()).unwrap();
    assert_eq!(second.checkpoint, last);
    assert_eq!(second.events, last - last / 2);
    assert_eq!(views(&live), rebuilt(dir.path(), journal.as_ref()));

    // More events: an appointment regarding an account, whose create fails twice in Paul's
    // mailbox, and a failed listing in Jayne's.
    let p = engine
        .crm(Event::RecordUpserted(RecordUpserted {
            record: gearbox(clock.now() + Duration::days(1)),
        }))
        .unwrap();
    let create = p
        .decisions
        .iter()
        .find(|a| a.mailbox == mbx("mbx-paul") && a.decision.event.name() == "create_intent")
        .expect("a create in Paul's mailbox")
        .id;
    for _ in 0..2 {
        engine
            .observe(
                &mbx("mbx-paul"),
                Event::IntentFailed(IntentFailed {
                    intent: create,
                    error: unavailable(),
                    crm: None,
                }),
            )
            .unwrap();
    }
    engine
        .observe(
            &mbx("mbx-jayne"),
            Event::ListingFailed(ListingFailed {
                workload: Workload::Act,
                error: unavailable(),
            }),
        )
        .unwrap();
    // Reopened: the fold state of the mailboxes comes from the file.
    drop(live);
    let mut live = Projection::open(&dir.path().join("projections.redb"))
        .unwrap()
        .with_page(3);
    live.catch_up(journal.as_ref()).unwrap();
    let v = views(&live);
    assert_eq!(v, rebuilt(dir.path(), journal.as_ref()));

    // The account's timeline holds the appointment regarding it.
    let account = live
        .timeline_of_record(&rec("acc-serenity-garage"))
        .unwrap();
    assert_eq!(account.len(), 1);
    assert_eq!(account[0].title, "Gearbox check");
    assert_eq!(
        account[0].regarding.as_ref().unwrap().name,
        "Serenity Garage"
    );
    let paul = &account[0].mailboxes[&mbx("mbx-paul")];
    assert_eq!(paul.status, Some(LinkStatus::Creating));
    // The create's failures are told in the decision that made it: still waiting, retried.
    let last = paul.last_decision.as_ref().unwrap();
    assert_eq!(last.rules, vec![RuleId(17), RuleId(12)]);
    assert!(
        last.summary.starts_with("to be created")
            && last.summary.contains(
                "waiting for the mail server; the last attempt failed (attempt 2 of 10: 503"
            )
            && last.summary.ends_with("it is retried"),
        "{last:#?}"
    );

    // R79: one failure record per intent, with the retries counted.
    let failures = live.failures_of_mailbox(&mbx("mbx-paul")).unwrap();
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let f = &failures[0];
    assert_eq!(
        (
            f.record.as_ref().map(|r| r.as_str()),
            f.change,
            f.code.as_str(),
            f.retries
        ),
        (
            Some("apt-gearbox-check"),
            Some(IntentKind::Create),
            "503",
            1
        )
    );
    assert_eq!(f.text, "Service Unavailable");

    // R80: the failed listing shows in Jayne's ACT health.
    let health = live.health_of_mailbox(&mbx("mbx-jayne")).unwrap();
    assert_eq!(health.len(), 3);
    let act = health.iter().find(|h| h.workload == Workload::Act).unwrap();
    assert_eq!(
        act.last_error,
        Some(("503".to_string(), "Service Unavailable".to_string()))
    );

    // R16: four days later, the next event applied purges the failure.
    clock.advance(Duration::days(4));
    engine
        .observe(
            &mbx("mbx-jayne"),
            Event::ListingCompleted(ListingCompleted {
                workload: Workload::Act,
                items: 0,
            }),
        )
        .unwrap();
    live.catch_up(journal.as_ref()).unwrap();
    assert!(
        live.failures_of_mailbox(&mbx("mbx-paul"))
            .unwrap()
            .is_empty()
    );
    let act = live
        .health_of_mailbox(&mbx("mbx-jayne"))
        .unwrap()
        .into_iter()
        .find(|h| h.workload == Workload::Act)
        .unwrap();
    assert_eq!(act.last_success, Some(clock.now()));
    assert_eq!(act.consecutive_errors, 0);
    assert_eq!(views(&live), rebuilt(dir.path(), journal.as_ref()));
}

#[test]
fn checkpoint_is_the_last_position_and_a_second_catch_up_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _engine, _clock) = story(dir.path());
    let path = dir.path().join("projections.redb");
    let mut p = Projection::open(&path).unwrap();
    assert_eq!(p.checkpoint().unwrap(), 0);
    let done = p.catch_up(journal.as_ref()).unwrap();
    let last = journal.last_position().unwrap();
    assert_eq!(done.events, last);
    assert_eq!(done.checkpoint, last);
    assert_eq!(p.checkpoint().unwrap(), last);
    let before = views(&p);

    let again = p.catch_up(journal.as_ref()).unwrap();
    assert_eq!((again.events, again.pages, again.checkpoint), (0, 0, last));
    drop(p);
    let mut p = Projection::open(&path).unwrap();
    assert_eq!(p.checkpoint().unwrap(), last);
    let again = p.catch_up(journal.as_ref()).unwrap();
    assert_eq!((again.events, again.pages), (0, 0));
    assert_eq!(views(&p), before);

    // Rebuild drops everything and folds from position 1 to the same views.
    let rebuilt = p.rebuild(journal.as_ref()).unwrap();
    assert_eq!((rebuilt.events, rebuilt.checkpoint), (last, last));
    assert_eq!(views(&p), before);
}

#[test]
fn bike_repair_shows_its_state_per_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _engine, _clock) = story(dir.path());
    let mut p = Projection::open(&dir.path().join("projections.redb")).unwrap();
    p.catch_up(journal.as_ref()).unwrap();

    let check = |timeline: &[Activity]| {
        let bike = timeline
            .iter()
            .find(|a| a.title == "Bike repair")
            .expect("Bike repair in the timeline");
        assert_eq!(bike.record, rec("apt-bike-repair"));
        let jayne = &bike.mailboxes[&mbx("mbx-jayne")];
        let paul = &bike.mailboxes[&mbx("mbx-paul")];
        assert_eq!(jayne.status, Some(LinkStatus::Deleted));
        assert_eq!(paul.status, Some(LinkStatus::Linked));
        let why = jayne.last_decision.as_ref().unwrap();
        assert_eq!(why.rules, vec![RuleId(22)]);
        assert!(
            why.summary.contains("cancellation sent to 3 attendee(s)"),
            "{why:?}"
        );
        assert!(why.reason.contains("access lost"), "{why:?}");
    };
    check(&p.timeline_of_record(&rec("apt-bike-repair")).unwrap());
    for user in ["jayne", "paul", "laura"] {
        let timeline = p.timeline_of_user(&UserId::new(user)).unwrap();
        check(&timeline);
        assert!(timeline.windows(2).all(|w| w[0].at <= w[1].at));
    }
    // A contact is no activity: it has links but no timeline entry.
    assert!(
        p.timeline_of_record(&rec("con-linda-park"))
            .unwrap()
            .is_empty()
    );
    let links = p.links_of(&rec("apt-bike-repair")).unwrap();
    assert_eq!(
        links
            .iter()
            .map(|l| (l.mailbox.as_str(), l.status))
            .collect::<Vec<_>>(),
        vec![
            ("mbx-jayne", LinkStatus::Deleted),
            ("mbx-paul", LinkStatus::Linked)
        ]
    );
    assert_eq!(
        links[1].remote.as_ref().map(|r| r.as_str()),
        Some("mbx-paul/apt-bike-repair.ics")
    );
}

#[test]
fn a_page_that_fails_leaves_neither_rows_nor_checkpoint() {
    use ledgersync_domain::{EventId, NewEvent, StreamId};
    use ledgersync_journal::ExpectedSeq;

    let dir = tempfile::tempdir().unwrap();
    let (journal, mut engine, clock) = story(dir.path());
    let path = dir.path().join("projections.redb");
    let mut p = Projection::open(&path).unwrap();
    let story_end = p.catch_up(journal.as_ref()).unwrap().checkpoint;
    let before = views(&p);

    // Good events (an appointment regarding an account), then one that does not decode: the
    // same page holds both.
    engine
        .crm(Event::RecordUpserted(RecordUpserted {
            record: gearbox(clock.now() + Duration::days(1)),
        }))
        .unwrap();
    drop(engine);
    let org = StreamId("org/serenity".into());
    let head = journal.stream_head(&org).unwrap();
    journal
        .append(
            &org,
            ExpectedSeq::Exactly(head),
            vec![NewEvent {
                event_id: EventId::from_u128(99),
                recorded_at: clock.now(),
                occurred_at: clock.now(),
                event_type: Event::RecordUpserted(RecordUpserted {
                    record: gearbox(clock.now()),
                })
                .event_type(),
                schema_version: 1,
                causation: vec![],
                correlation: None,
                rule: None,
                payload: vec![0xff, 0xff, 0xff],
                items: vec![],
            }],
        )
        .unwrap();
    assert!(journal.last_position().unwrap() > story_end + 1);

    let err = p.catch_up(journal.as_ref()).unwrap_err();
    assert!(err.to_string().contains("cannot be decoded"), "{err}");
    assert_eq!(p.checkpoint().unwrap(), story_end);
    assert_eq!(views(&p), before);
    assert!(
        p.timeline_of_record(&rec("acc-serenity-garage"))
            .unwrap()
            .is_empty()
    );

    // Page by page, the good events before the bad one are committed with their checkpoint.
    let mut p = p.with_page(1);
    assert!(p.catch_up(journal.as_ref()).is_err());
    let last = journal.last_position().unwrap();
    assert_eq!(p.checkpoint().unwrap(), last - 1);
    assert_eq!(
        p.timeline_of_record(&rec("acc-serenity-garage")).unwrap()[0].title,
        "Gearbox check"
    );
    // The fold state was reloaded from the file after the failed page: same views as a fresh
    // fold up to the same position.
    let mut fresh = Projection::open(&dir.path().join("fresh.redb")).unwrap();
    fresh.catch_up_to(journal.as_ref(), last - 1).unwrap();
    assert_eq!(views(&p), views(&fresh));
}

#[test]
fn alerts_of_mailboxes_and_profiles_are_kept_for_the_alert_retention() {
    use ledgersync_domain::event::{
        AlertLevel, AlertRaised, Basis, MailboxFailureNoted, SettingChanged,
    };
    use ledgersync_domain::{EventId, NewEvent, ProfileId, StreamId};
    use ledgersync_journal::ExpectedSeq;

    let dir = tempfile::tempdir().unwrap();
    let (journal, mut engine, clock) = story(dir.path());
    let mut live = Projection::open(&dir.path().join("projections.redb"))
        .unwrap()
        .with_page(3);
    live.catch_up(journal.as_ref()).unwrap();
    let from_story = live.alerts(None, None).unwrap().len();

    // Alerts are kept 2 days from now on.
    engine
        .crm(Event::SettingChanged(SettingChanged {
            key: "alert_retention_days".into(),
            value: "2".into(),
        }))
        .unwrap();
    // R10: a 401 disables Jayne's ACT workload with an error alert.
    clock.advance(Duration::minutes(1));
    engine
        .observe(
            &mbx("mbx-jayne"),
            Event::ListingFailed(ListingFailed {
                workload: Workload::Act,
                error: ServerError {
                    code: "401".into(),
                    message: "Unauthorized".into(),
                    retry_after: None,
                },
            }),
        )
        .unwrap();
    // R14: a profile alert in the organization stream, after its observation, as the
    // organization actor records them.
    let org = StreamId("org/serenity".into());
    let noted = Event::MailboxFailureNoted(MailboxFailureNoted {
        mailbox: mbx("mbx-jayne"),
        profile: ProfileId::new("groupware"),
        workload: Workload::Act,
        at: clock.now(),
    });
    let alert = Event::AlertRaised(AlertRaised {
        basis: Basis::default(),
        level: AlertLevel::Error,
        text: "2 of the 2 mailboxes of the email server profile groupware failed".into(),
        notify: vec!["server profile owner (groupware)".into()],
    });
    let stored = |id: u128, e: &Event, rule: Option<RuleId>, causation: Vec<EventId>| NewEvent {
        event_id: EventId::from_u128(id),
        recorded_at: clock.now(),
        occurred_at: clock.now(),
        event_type: e.event_type(),
        schema_version: 1,
        causation,
        correlation: Some(EventId::from_u128(1001)),
        rule,
        payload: e.encode_payload(),
        items: e.item_keys(),
    };
    let head = journal.stream_head(&org).unwrap();
    journal
        .append(
            &org,
            ExpectedSeq::Exactly(head),
            vec![
                stored(1001, &noted, None, vec![]),
                stored(
                    1002,
                    &alert,
                    Some(RuleId(14)),
                    vec![EventId::from_u128(1001)],
                ),
            ],
        )
        .unwrap();
    live.catch_up(journal.as_ref()).unwrap();

    let all = live.alerts(None, None).unwrap();
    assert_eq!(all.len(), from_story + 2, "{all:#?}");
    let jayne = live
        .alerts(Some(&mbx("mbx-jayne")), Some(AlertLevel::Error))
        .unwrap();
    assert_eq!(jayne.len(), 1, "{jayne:#?}");
    assert_eq!(jayne[0].rule, Some(RuleId(10)));
    assert!(jayne[0].text.contains("401"), "{}", jayne[0].text);
    let profile = all.last().unwrap();
    assert_eq!(
        (
            profile.rule,
            profile.mailbox.as_ref(),
            profile.profile.as_ref()
        ),
        (Some(RuleId(14)), None, Some(&ProfileId::new("groupware")))
    );
    assert!(
        live.alerts(None, Some(AlertLevel::Warning))
            .unwrap()
            .iter()
            .all(|a| a.level == AlertLevel::Warning)
    );
    assert_eq!(views(&live), rebuilt(dir.path(), journal.as_ref()));

    // Three days later, the next event applied purges every alert older than two days.
    clock.advance(Duration::days(3));
    engine
        .observe(
            &mbx("mbx-paul"),
            Event::ListingCompleted(ListingCompleted {
                workload: Workload::Act,
                items: 0,
            }),
        )
        .unwrap();
    live.catch_up(journal.as_ref()).unwrap();
    assert!(live.alerts(None, None).unwrap().is_empty());
    assert_eq!(views(&live), rebuilt(dir.path(), journal.as_ref()));
}

fn last_summary(p: &mut Projection, journal: &dyn Journal, record: &str, mailbox: &str) -> String {
    p.catch_up(journal).unwrap();
    let rows = p.timeline_of_record(&rec(record)).unwrap();
    rows[0].mailboxes[&mbx(mailbox)]
        .last_decision
        .as_ref()
        .unwrap()
        .summary
        .clone()
}

/// An intent reads as waiting until its outcome is recorded, then as done or failed.
#[test]
fn an_intent_reads_as_pending_until_its_outcome_then_done_or_failed() {
    use ledgersync_domain::event::{IntentSucceeded, RecordDeleted};
    use ledgersync_domain::records::Entity;
    let dir = tempfile::tempdir().unwrap();
    let (journal, mut engine, clock) = story(dir.path());
    let mut live = Projection::open(&dir.path().join("projections.redb")).unwrap();
    let j = journal.as_ref();

    let p = engine
        .crm(Event::RecordUpserted(RecordUpserted {
            record: gearbox(clock.now() + Duration::days(1)),
        }))
        .unwrap();
    let intent = |p: &ledgersync_engine::Processed, name: &str| {
        p.decisions
            .iter()
            .find(|a| a.mailbox == mbx("mbx-paul") && a.decision.event.name() == name)
            .unwrap_or_else(|| panic!("a {name} in Paul's mailbox: {p:#?}"))
            .id
    };
    let create = intent(&p, "create_intent");
    assert_eq!(
        last_summary(&mut live, j, "apt-gearbox-check", "mbx-paul"),
        "to be created with an invitation to 1 attendee(s), waiting for the mail server"
    );
    engine
        .observe(
            &mbx("mbx-paul"),
            Event::IntentSucceeded(IntentSucceeded {
                intent: create,
                remote: Some("calendar/gearbox.ics".into()),
                etag: None,
                crm: None,
            }),
        )
        .unwrap();
    assert_eq!(
        last_summary(&mut live, j, "apt-gearbox-check", "mbx-paul"),
        "linked"
    );

    // Deleted in the CRM: a delete and a cancellation, both waiting; then one done, one failed.
    let p = engine
        .crm(Event::RecordDeleted(RecordDeleted {
            id: rec("apt-gearbox-check"),
            entity: Entity::Appointment,
        }))
        .unwrap();
    let (delete, cancel) = (intent(&p, "delete_intent"), intent(&p, "cancel_intent"));
    assert_eq!(
        last_summary(&mut live, j, "apt-gearbox-check", "mbx-paul"),
        "to be deleted from the mailbox, waiting for the mail server, cancellation to 1 \
         attendee(s) waiting for the mail server"
    );
    engine
        .observe(
            &mbx("mbx-paul"),
            Event::IntentSucceeded(IntentSucceeded {
                intent: delete,
                remote: None,
                etag: None,
                crm: None,
            }),
        )
        .unwrap();
    assert_eq!(
        last_summary(&mut live, j, "apt-gearbox-check", "mbx-paul"),
        "deleted from the mailbox, cancellation to 1 attendee(s) waiting for the mail server"
    );
    engine
        .observe(
            &mbx("mbx-paul"),
            Event::IntentFailed(IntentFailed {
                intent: cancel,
                error: ServerError {
                    code: "422".into(),
                    message: "Unprocessable".into(),
                    retry_after: None,
                },
                crm: None,
            }),
        )
        .unwrap();
    assert_eq!(
        last_summary(&mut live, j, "apt-gearbox-check", "mbx-paul"),
        "deleted from the mailbox, cancellation to 1 attendee(s) not sent: 422 Unprocessable"
    );
    assert_eq!(views(&live), rebuilt(dir.path(), j));
}

/// An intent for the CRM is worded for the CRM: waiting for it, then done.
#[test]
fn a_crm_side_intent_waits_for_the_crm() {
    use ledgersync_engine::describe::{ItemFate, Progress, summarize_as};
    let dir = tempfile::tempdir().unwrap();
    let (journal, _engine, _clock) = story(dir.path());
    // Any recorded CRM-side create of the story, or one built from a mail-side create.
    let mut crm_create = None;
    ledgersync_engine::log::scan(
        journal.as_ref(),
        1,
        |_, _| {},
        |s| {
            if let Event::CreateIntent(p) = &s.event {
                let mut p = p.clone();
                p.target = ledgersync_domain::event::Side::Crm;
                crm_create.get_or_insert((s.envelope.rule.unwrap(), Event::CreateIntent(p)));
            }
            Ok(())
        },
    )
    .unwrap();
    let decided = [crm_create.expect("a create in the story")];
    let said = |p: Progress| summarize_as(&decided, None, move |_| p.clone(), ItemFate::Left);
    assert_eq!(
        said(Progress::Pending),
        "to be created in the CRM: sent as a CRM command, waiting for its result"
    );
    assert_eq!(said(Progress::Done), "created in the CRM");
    assert_eq!(
        said(Progress::Failed("403 Forbidden".into())),
        "not created in the CRM: 403 Forbidden"
    );
}

#[test]
fn a_new_version_moves_the_row_between_timelines_only_where_it_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, mut engine, clock) = story(dir.path());
    let mut live = Projection::open(&dir.path().join("projections.redb")).unwrap();
    let v1 = gearbox(clock.now() + Duration::days(1));
    engine
        .crm(Event::RecordUpserted(RecordUpserted { record: v1.clone() }))
        .unwrap();
    live.catch_up(journal.as_ref()).unwrap();
    let has = |live: &Projection, user: &str| {
        live.timeline_of_user(&UserId::new(user))
            .unwrap()
            .iter()
            .any(|a| a.record == rec("apt-gearbox-check"))
    };
    assert!(has(&live, "paul") && has(&live, "laura") && !has(&live, "jayne"));
    // Version 2: Laura leaves, Jayne joins, the account is no longer the regarding row.
    let mut v2 = v1;
    v2.version = 2;
    if let RecordBody::Appointment(a) = &mut v2.body {
        a.required = vec![party("jayne")];
        a.regarding = None;
    }
    engine
        .crm(Event::RecordUpserted(RecordUpserted { record: v2 }))
        .unwrap();
    live.catch_up(journal.as_ref()).unwrap();
    assert!(has(&live, "paul"), "Paul stays: he organizes both versions");
    assert!(has(&live, "jayne") && !has(&live, "laura"));
    assert!(
        live.timeline_of_record(&rec("acc-serenity-garage"))
            .unwrap()
            .is_empty(),
        "the account's timeline no longer holds it"
    );
    assert_eq!(views(&live), rebuilt(dir.path(), journal.as_ref()));
}
