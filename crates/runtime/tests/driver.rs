//! The connector driver against a real redb journal and a real vdir calendar and Maildir tree
//! in a tempdir, inside an actix `System`, on a `ManualClock`. No mocks: the connector is the
//! `VdirConnector`, files are written and read on disk.

use actix::{Actor, Addr, System};
use ledgersync_connectors::{Connector, Intent, Outcome, VdirConfig, VdirConnector};
use ledgersync_domain::event::*;
use ledgersync_domain::records::*;
use ledgersync_domain::state::LinkStatus;
use ledgersync_domain::time::timestamp_from_civil;
use ledgersync_domain::{
    Event, EventId, MailboxId, MailboxState, OrgId, OrgSettings, ProfileId, RecordId, StreamId,
    UserId,
};
use ledgersync_engine::engine::Appended;
use ledgersync_engine::mailbox::Incoming;
use ledgersync_engine::projection::Projection;
use ledgersync_engine::{IdGen, ManualClock, replay};
use ledgersync_journal::{Journal, JournalOptions};
use ledgersync_runtime::{
    Credential, Driver, InspectMailbox, ObserveMailbox, Registry, RegistryConfig, SharedSettings,
    Throttle,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

const OWNER: &str = "paul@serenity.example";
const ATTENDEES: [&str; 2] = ["jayne@serenity.example", "kaylee@serenity.example"];

struct World {
    _dir: tempfile::TempDir,
    journal: Arc<dyn Journal>,
    clock: Arc<ManualClock>,
    data: PathBuf,
    calendar: PathBuf,
    maildirs: PathBuf,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = ledgersync_journal::open(&dir.path().join("journal"), &JournalOptions::default())
        .expect("open journal");
    let calendar = dir.path().join("calendars/work");
    fs::create_dir_all(&calendar).expect("calendar dir");
    World {
        data: dir.path().join("data"),
        maildirs: dir.path().join("maildirs"),
        calendar,
        journal,
        clock: Arc::new(ManualClock::new(timestamp_from_civil(2026, 11, 22, 6, 0))),
        _dir: dir,
    }
}

fn mailbox() -> MailboxId {
    MailboxId::new("mbx-paul")
}

fn paul() -> UserId {
    UserId::new("paul")
}

fn registry(w: &World) -> Addr<Registry> {
    let settings: SharedSettings = Arc::new(RwLock::new(OrgSettings::default()));
    Registry::new(
        w.journal.clone(),
        w.clock.clone(),
        settings,
        RegistryConfig::default(),
    )
    .start()
}

fn connector(w: &World) -> VdirConnector {
    let mut config = VdirConfig::new(OWNER);
    config.calendar = Some(w.calendar.clone());
    config.maildirs = Some(w.maildirs.clone());
    VdirConnector::new(config)
}

fn driver(w: &World, registry: &Addr<Registry>) -> Driver {
    Driver::new(
        mailbox(),
        Box::new(connector(w)),
        registry.clone(),
        w.journal.clone(),
        &w.data,
    )
    .expect("driver")
}

fn incoming(event: Event) -> Incoming {
    let id = IdGen.next();
    Incoming {
        event,
        id,
        causation: vec![],
        correlation: id,
    }
}

async fn observe(registry: &Addr<Registry>, event: Event) -> Vec<Appended> {
    registry
        .send(ObserveMailbox::new(mailbox(), incoming(event)))
        .await
        .expect("registry alive")
        .expect("observation recorded")
}

async fn state(registry: &Addr<Registry>) -> MailboxState {
    registry
        .send(InspectMailbox::new(mailbox()))
        .await
        .expect("registry alive")
        .expect("mailbox active")
        .state
        .as_ref()
        .clone()
}

fn party(user: Option<&str>, email: &str) -> Party {
    Party {
        user: user.map(UserId::new),
        email: email.into(),
        name: email.split('@').next().unwrap_or_default().into(),
    }
}

/// A meeting Paul organizes, two days after the clock, with two attendees.
fn appointment(k: u32, subject: &str) -> Record {
    Record {
        id: RecordId::new(format!("apt-{k}")),
        owner: paul(),
        version: 1,
        body: RecordBody::Appointment(Appointment {
            subject: subject.into(),
            organizer: Some(party(Some("paul"), OWNER)),
            required: vec![party(Some("jayne"), ATTENDEES[0])],
            optional: vec![party(None, ATTENDEES[1])],
            start: timestamp_from_civil(2026, 11, 24, 9 + k, 0),
            end: timestamp_from_civil(2026, 11, 24, 10 + k, 0),
            all_day: false,
            location: "Serenity, galley".into(),
            body: "Numbers, then dinner".into(),
            state: ActivityState::Scheduled,
            show_as: ShowAs::Busy,
            priority: Priority::Normal,
            regarding: None,
            service: false,
            recurrence: None,
        }),
    }
}

/// Registers, maps, approves and tests Paul's mailbox, then gives it three appointments;
/// returns the create intents decided.
async fn setup(registry: &Addr<Registry>) -> Vec<Appended> {
    let lifecycle = vec![
        Event::MailboxRegistered(MailboxRegistered {
            mailbox: mailbox(),
            org: OrgId::new("org"),
            address: OWNER.into(),
            profile: ProfileId::new("vdir"),
            server_type: ServerType::Groupware,
        }),
        Event::MailboxMapped(MailboxMapped {
            mailbox: mailbox(),
            user: paul(),
        }),
        Event::AddressApproved(AddressApproved {
            mailbox: mailbox(),
            approved: true,
        }),
        Event::MailboxTested(MailboxTested {
            mailbox: mailbox(),
            incoming: TestResult::Success,
            outgoing: TestResult::Success,
            act: TestResult::Success,
            act_org_marker: None,
            override_other_org: false,
        }),
    ];
    for e in lifecycle {
        observe(registry, e).await;
    }
    let mut creates = Vec::new();
    for (k, subject) in [
        (1, "Quarterly review"),
        (2, "Cargo audit"),
        (3, "Crew dinner"),
    ] {
        let decisions = observe(
            registry,
            Event::RecordUpserted(RecordUpserted {
                record: appointment(k, subject),
            }),
        )
        .await;
        creates.extend(decisions.into_iter().filter(
            |a| matches!(&a.decision.event, Event::CreateIntent(c) if c.target == Side::MailServer),
        ));
    }
    assert_eq!(creates.len(), 3, "one create intent per appointment");
    creates
}

/// Setup, the creates executed, and a first listing that sees the three files.
async fn linked(w: &World, registry: &Addr<Registry>) -> Driver {
    setup(registry).await;
    let mut d = driver(w, registry);
    let executed = d.execute_pending().await.expect("execute");
    assert_eq!(executed.succeeded(), 3, "{:#?}", executed.outcomes);
    let first = d.cycle().await.expect("cycle");
    assert_eq!(first.count("item_seen"), 3);
    assert_eq!(first.terminal, "listing_completed");
    d
}

fn items(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").path())
                .filter(|p| {
                    p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.')
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The calendar file of a record (ledgersync names created files `<record>-<hash>.ics`).
fn file_of(w: &World, record: &str) -> PathBuf {
    items(&w.calendar)
        .into_iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{record}-"))
        })
        .unwrap_or_else(|| panic!("no file for {record}"))
}

/// The meeting cancellations in `address`'s Maildir `new/` (the invitations sent when the
/// organizer's meetings were created are there too).
fn cancellations(w: &World, address: &str) -> Vec<PathBuf> {
    imip(w, address, "METHOD:CANCEL")
}

/// The messages in `address`'s Maildir `new/` that contain `method`.
fn imip(w: &World, address: &str, method: &str) -> Vec<PathBuf> {
    items(&w.maildirs.join(address).join("new"))
        .into_iter()
        .filter(|p| fs::read_to_string(p).is_ok_and(|t| t.contains(method)))
        .collect()
}

/// Rewrites a file as another program would: new text, and an mtime that moved.
fn rewrite(path: &Path, text: &str) {
    fs::write(path, text).expect("write");
    let file = fs::File::options().write(true).open(path).expect("open");
    file.set_modified(SystemTime::now() + Duration::from_secs(60))
        .expect("mtime");
}

/// A listing that changed nothing decides only when the next cycle runs (R9).
fn assert_only_the_next_cycle_decided(decisions: &[Appended]) {
    assert!(
        decisions
            .iter()
            .all(|a| a.decision.event.name() == "cycle_scheduled"),
        "{decisions:#?}"
    );
}

fn decided<'a>(decisions: &'a [Appended], name: &str) -> Vec<&'a Appended> {
    decisions
        .iter()
        .filter(|a| a.decision.event.name() == name)
        .collect()
}

fn replay_reproduces_everything(journal: &dyn Journal) -> u64 {
    let report = replay(journal, None, |_, _| {}).expect("replay");
    assert!(report.ok(), "replay mismatches: {:#?}", report.mismatches);
    assert_eq!(report.reproduced, report.decisions);
    assert!(report.decisions > 0);
    report.decisions
}

#[test]
fn executed_creates_write_the_files_and_link_the_rows() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        setup(&registry).await;
        let mut d = driver(&w, &registry);
        let report = d.execute_pending().await.expect("execute");
        assert_eq!(report.succeeded(), 3);
        assert_eq!(decided(&report.decisions, "link_created").len(), 3);
        assert_eq!(items(&w.calendar).len(), 3, "one .ics per appointment");

        let s = state(&registry).await;
        for k in 1..=3 {
            let link = &s.links[&RecordId::new(format!("apt-{k}"))];
            assert_eq!(link.status, LinkStatus::Linked);
            let remote = link.remote.as_ref().expect("linked to its file");
            assert_eq!(s.by_remote[remote], RecordId::new(format!("apt-{k}")));
        }
        assert!(s.intents.is_empty(), "no intent left pending");
        let text = fs::read_to_string(file_of(&w, "apt-1")).expect("read");
        assert!(text.contains("SUMMARY:Quarterly review"), "{text}");
        // Each outcome is recorded as caused by its intent, in the intent's flow (the last cause
        // of an observation is the settings version it was decided under).
        let stream = w
            .journal
            .read_stream(&StreamId::mailbox(&mailbox()), 1, 1_000_000)
            .expect("read");
        for (intent, _) in &report.outcomes {
            let decided = stream.iter().find(|e| e.event_id == *intent).unwrap();
            let outcome = stream
                .iter()
                .find(|e| e.rule.is_none() && e.causation.first() == Some(intent))
                .expect("an outcome caused by the intent");
            assert_eq!(outcome.correlation, decided.correlation);
            assert!(outcome.seq > decided.seq);
        }

        // The first listing sees the three items it wrote, and decides nothing about them.
        let cycle = d.cycle().await.expect("cycle");
        assert_eq!(cycle.count("item_seen"), 3);
        assert_eq!(cycle.terminal, "listing_completed");
        assert!(cycle.cursor_advanced && d.cursor_path().is_file());
        assert!(
            cycle
                .decisions
                .iter()
                .all(|a| a.decision.event.name() == "cycle_scheduled"),
            "{:#?}",
            cycle.decisions
        );
        // Nothing pending: nothing executed again.
        assert!(
            d.execute_pending()
                .await
                .expect("execute")
                .outcomes
                .is_empty()
        );
        assert_eq!(items(&w.calendar).len(), 3);
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn an_edit_made_by_another_program_reaches_the_mailbox_and_the_crm() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        let mut d = linked(&w, &registry).await;

        let path = file_of(&w, "apt-2");
        let text = fs::read_to_string(&path).expect("read");
        rewrite(
            &path,
            &text.replace("SUMMARY:Cargo audit", "SUMMARY:Cargo audit (moved)"),
        );

        let cycle = d.cycle().await.expect("cycle");
        assert_eq!(cycle.count("item_seen"), 1, "only the edited item");
        let s = state(&registry).await;
        let remote = s.links[&RecordId::new("apt-2")].remote.clone().unwrap();
        assert_eq!(
            s.remote_items[&remote].fields.title(),
            "Cargo audit (moved)"
        );
        let updates = decided(&cycle.decisions, "update_intent");
        assert_eq!(updates.len(), 1);
        match &updates[0].decision.event {
            Event::UpdateIntent(u) => {
                assert_eq!(u.target, Side::Crm);
                assert_eq!(u.record, RecordId::new("apt-2"));
                assert_eq!(u.item.title, "Cargo audit (moved)");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(updates[0].decision.rule.0, 18);
        // A CRM-side intent is not the connector's: it stays pending, nothing is executed.
        let report = d.execute_pending().await.expect("execute");
        assert!(report.outcomes.is_empty());
        assert!(state(&registry).await.intents.contains_key(&updates[0].id));
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn a_deleted_file_yields_one_item_gone_and_the_r36_decision_once() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        let mut d = linked(&w, &registry).await;
        fs::remove_file(file_of(&w, "apt-3")).expect("delete");

        let cycle = d.cycle().await.expect("cycle");
        assert_eq!(cycle.count("item_gone"), 1);
        assert_eq!(cycle.terminal, "listing_completed");
        let deletes = decided(&cycle.decisions, "delete_intent");
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0].decision.rule.0, 36);
        match &deletes[0].decision.event {
            Event::DeleteIntent(p) => {
                assert_eq!(p.target, Side::Crm);
                assert_eq!(p.record, RecordId::new("apt-3"));
            }
            other => panic!("{other:?}"),
        }

        // The next cycle: the item is no longer known, nothing is reported or decided.
        let again = d.cycle().await.expect("cycle");
        assert_eq!(again.count("item_gone"), 0);
        assert_eq!(again.count("item_seen"), 0);
        assert!(decided(&again.decisions, "delete_intent").is_empty());
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn a_file_deleted_by_another_program_before_the_first_listing_is_reported_gone() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        setup(&registry).await;
        let mut d = driver(&w, &registry);
        assert_eq!(d.execute_pending().await.expect("execute").succeeded(), 3);
        // Written by ledgersync, deleted by someone else before any listing saw it.
        fs::remove_file(file_of(&w, "apt-3")).expect("delete");

        let cycle = d.cycle().await.expect("cycle");
        assert_eq!(cycle.terminal, "listing_completed");
        assert_eq!(cycle.count("item_seen"), 2, "the two files still there");
        assert_eq!(
            cycle.count("item_gone"),
            1,
            "the deleted one is not forgotten"
        );
        let deletes = decided(&cycle.decisions, "delete_intent");
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0].decision.rule.0, 36);
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn a_corrupt_ics_is_an_item_failure_and_no_delete() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        let mut d = linked(&w, &registry).await;
        let path = file_of(&w, "apt-1");
        let original = fs::read_to_string(&path).expect("read");
        rewrite(&path, "BEGIN:VCALENDAR\r\nthis is not\r\n");

        let cycle = d.cycle().await.expect("cycle");
        assert_eq!(cycle.failures.len(), 1, "{:?}", cycle.failures);
        assert!(cycle.failures[0].item.starts_with("calendar/apt-1-"));
        assert_eq!(cycle.count("item_gone"), 0);
        assert_eq!(cycle.terminal, "listing_completed");
        assert!(decided(&cycle.decisions, "delete_intent").is_empty());
        // R12/R79: recorded as an `item_failed`, just before the terminal event.
        let names: Vec<&str> = cycle.observations.iter().map(|(_, e)| e.name()).collect();
        assert_eq!(names, ["item_failed", "listing_completed"]);
        let Event::ItemFailed(failed) = &cycle.observations[0].1 else {
            unreachable!()
        };
        let remote = failed.remote.clone();
        assert_eq!(remote.as_str(), cycle.failures[0].item);
        assert_eq!(
            (failed.workload, failed.entity, failed.error.code.as_str()),
            (Workload::Act, None, "malformed")
        );
        let s = state(&registry).await;
        assert_eq!(s.links[&RecordId::new("apt-1")].status, LinkStatus::Linked);
        assert_eq!(s.failing_items[&remote].listings, 1);
        assert!(s.remote_items.contains_key(&remote), "never a deletion");

        // The next listing fails it again: one more retry, still no delete.
        let again = d.cycle().await.expect("second cycle");
        assert_eq!(again.count("item_failed"), 1);
        assert!(decided(&again.decisions, "delete_intent").is_empty());
        assert_eq!(state(&registry).await.failing_items[&remote].listings, 2);

        // The projection's item failures (R79) show it, with its row and retry count.
        let mut projection = Projection::open_in(&w.data).expect("projection");
        projection.catch_up(w.journal.as_ref()).expect("catch up");
        let failures = projection
            .failures_of_mailbox(&mailbox())
            .expect("failures");
        assert_eq!(failures.len(), 1, "{failures:#?}");
        let f = &failures[0];
        assert_eq!(
            (
                f.intent.as_deref(),
                f.record.as_ref().map(|r| r.as_str()),
                f.remote.as_ref(),
                f.change,
                f.code.as_str(),
                f.retries
            ),
            (None, Some("apt-1"), Some(&remote), None, "malformed", 1)
        );

        // Repaired: seen again, the failure is over, in the state and in the projection.
        rewrite(&path, &original);
        let repaired = d.cycle().await.expect("third cycle");
        assert_eq!(repaired.count("item_failed"), 0);
        assert_eq!(repaired.count("item_seen"), 1);
        assert!(state(&registry).await.failing_items.is_empty());
        projection.catch_up(w.journal.as_ref()).expect("catch up");
        assert!(
            projection
                .failures_of_mailbox(&mailbox())
                .expect("failures")
                .is_empty()
        );
        replay_reproduces_everything(w.journal.as_ref());
    });
}

/// An emptied calendar is a complete listing of three deletes: the domain's delete breaker
/// trips (R25), nothing is deleted on either side, a CRM-side delete waits too, and the files
/// coming back close the breaker with no churn.
#[test]
fn an_emptied_directory_trips_the_delete_breaker_until_the_files_come_back() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        let mut d = linked(&w, &registry).await;
        let saved: Vec<(PathBuf, Vec<u8>)> = items(&w.calendar)
            .into_iter()
            .map(|p| {
                let bytes = fs::read(&p).expect("read");
                (p, bytes)
            })
            .collect();
        assert_eq!(saved.len(), 3);
        for (path, _) in &saved {
            fs::remove_file(path).expect("delete");
        }
        let cycle = d.cycle().await.expect("cycle");
        assert_eq!(cycle.terminal, "listing_completed");
        assert_eq!(cycle.count("deletions_listed"), 1);
        assert_eq!(cycle.count("item_gone"), 3);
        assert_eq!(decided(&cycle.decisions, "breaker_tripped").len(), 1);
        assert_eq!(decided(&cycle.decisions, "alert_raised").len(), 1);
        assert_eq!(decided(&cycle.decisions, "no_action").len(), 3);
        assert!(decided(&cycle.decisions, "delete_intent").is_empty());
        let again = d.cycle().await.expect("cycle");
        assert_eq!(again.count("item_gone"), 0);
        let s = state(&registry).await;
        assert!(
            s.links.values().all(|l| l.status == LinkStatus::Linked),
            "nothing deleted in the CRM"
        );
        assert_eq!(s.breaker.as_ref().map(|b| b.held.len()), Some(3));

        // A CRM-side delete while the breaker is open: decided, not carried out.
        let decisions = observe(
            &registry,
            Event::RecordDeleted(RecordDeleted {
                id: RecordId::new("apt-1"),
                entity: Entity::Appointment,
            }),
        )
        .await;
        assert_eq!(decided(&decisions, "delete_intent").len(), 1);
        let report = d.execute_pending().await.expect("execute");
        assert!(report.outcomes.is_empty(), "{:#?}", report.outcomes);
        for address in ATTENDEES {
            assert!(cancellations(&w, address).is_empty(), "{address}");
        }

        // The files come back: matched to their links, no churn, the breaker closes.
        for (path, bytes) in &saved {
            fs::write(path, bytes).expect("restore");
        }
        let back = d.cycle().await.expect("cycle");
        assert_eq!(back.count("item_seen"), 3);
        let names: Vec<&str> = back
            .decisions
            .iter()
            .map(|a| a.decision.event.name())
            .filter(|n| *n != "cycle_scheduled")
            .collect();
        assert_eq!(names, ["breaker_closed"]);
        assert!(state(&registry).await.breaker.is_none());
        // The held CRM-side delete and its cancellation are carried out now.
        let report = d.execute_pending().await.expect("execute");
        assert_eq!(report.succeeded(), 2, "{:#?}", report.outcomes);
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn a_logical_delete_deletes_the_file_and_cancels_the_meeting_once() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        let mut d = linked(&w, &registry).await;
        let path = file_of(&w, "apt-1");

        let decisions = observe(
            &registry,
            Event::AccessLost(AccessLost {
                user: paul(),
                records: vec![RecordId::new("apt-1")],
                reason: AccessReason::Role,
            }),
        )
        .await;
        assert_eq!(decided(&decisions, "logical_delete").len(), 1);
        assert_eq!(decided(&decisions, "delete_intent").len(), 1);
        assert_eq!(decided(&decisions, "cancel_intent").len(), 1);

        let report = d.execute_pending().await.expect("execute");
        assert_eq!(report.succeeded(), 2, "{:#?}", report.outcomes);
        assert!(!path.exists(), "the organizer's item is deleted");
        for address in ATTENDEES {
            let messages = cancellations(&w, address);
            assert_eq!(messages.len(), 1, "{address}: one cancellation");
            let text = fs::read_to_string(&messages[0]).expect("read");
            assert!(text.contains("METHOD:CANCEL"), "{text}");
            assert!(text.contains("Quarterly review"), "{text}");
        }
        let s = state(&registry).await;
        assert_eq!(s.links[&RecordId::new("apt-1")].status, LinkStatus::Deleted);
        assert!(s.intents.is_empty());

        // Nothing pending: nothing sent again; the listing confirms the delete, decides nothing.
        assert!(
            d.execute_pending()
                .await
                .expect("execute")
                .outcomes
                .is_empty()
        );
        let cycle = d.cycle().await.expect("cycle");
        assert_eq!(cycle.count("item_gone"), 1);
        assert!(decided(&cycle.decisions, "delete_intent").is_empty());
        for address in ATTENDEES {
            assert_eq!(cancellations(&w, address).len(), 1);
        }
        replay_reproduces_everything(w.journal.as_ref());
    });
}

/// The intent events of the mailbox stream, by id.
fn intent_events(journal: &dyn Journal) -> Vec<(EventId, Event)> {
    journal
        .read_stream(&StreamId::mailbox(&mailbox()), 1, 1_000_000)
        .expect("read")
        .into_iter()
        .filter_map(|env| {
            let id = env.event_id;
            let stored = ledgersync_engine::log::Stored::decode(env).expect("decode");
            matches!(
                stored.event,
                Event::CreateIntent(_) | Event::DeleteIntent(_) | Event::CancelIntent(_)
            )
            .then_some((id, stored.event))
        })
        .collect()
}

#[test]
fn a_restart_re_executes_pending_intents_exactly_once() {
    let w = world();
    System::new().block_on(async {
        let first = registry(&w);
        let d = linked(&w, &first).await;
        let cursor = d.cursor().clone();
        // A logical delete of apt-2 and a new appointment: three intents pending.
        observe(
            &first,
            Event::AccessLost(AccessLost {
                user: paul(),
                records: vec![RecordId::new("apt-2")],
                reason: AccessReason::Share,
            }),
        )
        .await;
        observe(
            &first,
            Event::RecordUpserted(RecordUpserted {
                record: appointment(4, "Engine overhaul"),
            }),
        )
        .await;
        let s = state(&first).await;
        assert_eq!(s.intents.len(), 3);

        // The crash: every call was made, no outcome was recorded.
        let records = s.records.clone();
        let mut raw = connector(&w);
        for (id, event) in intent_events(w.journal.as_ref()) {
            if let Some(p) = s.intents.get(&id) {
                let intent = Intent::of(id, &event, records.get(&p.record).map(|r| r.as_ref()))
                    .expect("a mail-side intent");
                let outcome = raw.execute(intent);
                assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
            }
        }
        assert_eq!(items(&w.calendar).len(), 3, "apt-2 deleted, apt-4 created");
        for address in ATTENDEES {
            assert_eq!(cancellations(&w, address).len(), 1);
        }
        drop(d);
        drop(first);

        // A new registry and driver on the same journal and data directory.
        let second = registry(&w);
        let mut d = driver(&w, &second);
        assert_eq!(
            d.cursor(),
            &cursor,
            "the cursor was read back from its file"
        );
        let report = d.execute_pending().await.expect("execute");
        assert_eq!(report.succeeded(), 3, "{:#?}", report.outcomes);
        assert_eq!(items(&w.calendar).len(), 3, "no second file");
        for address in ATTENDEES {
            assert_eq!(
                cancellations(&w, address).len(),
                1,
                "{address}: no second message"
            );
        }
        let s = state(&second).await;
        assert!(s.intents.is_empty());
        assert_eq!(s.links[&RecordId::new("apt-4")].status, LinkStatus::Linked);
        assert_eq!(s.links[&RecordId::new("apt-2")].status, LinkStatus::Deleted);
        // Exactly once: a second call finds nothing pending.
        assert!(
            d.execute_pending()
                .await
                .expect("execute")
                .outcomes
                .is_empty()
        );
        // The listing after the restart starts from the stored cursor.
        let cycle = d.cycle().await.expect("cycle");
        assert_eq!(cycle.count("item_seen"), 1, "only the new apt-4 file");
        assert_eq!(
            cycle.count("item_gone"),
            1,
            "the apt-2 file deleted by the intent"
        );
        assert!(decided(&cycle.decisions, "delete_intent").is_empty());
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn a_crash_before_the_cursor_is_stored_relists_harmlessly() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        let d = linked(&w, &registry).await;
        let older = fs::read_to_string(d.cursor_path()).expect("cursor file");
        let path = file_of(&w, "apt-2");
        let text = fs::read_to_string(&path).expect("read");
        rewrite(
            &path,
            &text.replace("SUMMARY:Cargo audit", "SUMMARY:Cargo audit (moved)"),
        );
        fs::remove_file(file_of(&w, "apt-3")).expect("delete");
        let mut d = d;
        let cycle = d.cycle().await.expect("cycle");
        assert_eq!(decided(&cycle.decisions, "update_intent").len(), 1);
        assert_eq!(decided(&cycle.decisions, "delete_intent").len(), 1);

        // The crash window: the observations are durable, the cursor file is the older one.
        drop(d);
        fs::write(w.data.join("mbx-paul.cursor"), &older).expect("older cursor");
        let mut d = driver(&w, &registry);
        let again = d.cycle().await.expect("cycle");
        assert_eq!(again.count("item_seen"), 1, "the edit is listed again");
        assert_eq!(again.count("item_gone"), 1, "the delete is listed again");
        assert!(decided(&again.decisions, "update_intent").is_empty());
        assert!(decided(&again.decisions, "delete_intent").is_empty());
        assert_only_the_next_cycle_decided(&again.decisions);
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn an_unreadable_cursor_is_reset_and_listed_again_from_the_start() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        let d = linked(&w, &registry).await;
        let path = d.cursor_path().to_owned();
        drop(d);
        fs::write(&path, "not a vdir cursor").expect("damage the cursor");

        let mut d = driver(&w, &registry);
        let failed = d.cycle().await.expect("cycle");
        assert_eq!(failed.terminal, "listing_failed");
        assert!(failed.cursor_reset);
        assert_eq!(failed.count("cursor_reset"), 1);
        assert!(d.cursor().is_initial());
        assert_eq!(fs::read_to_string(&path).expect("cursor file"), "");

        // From the initial cursor: every item seen again, none gone, nothing new decided.
        let again = d.cycle().await.expect("cycle");
        assert_eq!(again.terminal, "listing_completed");
        assert!(!again.cursor_reset);
        assert_eq!(again.count("item_seen"), 3);
        assert_eq!(again.count("item_gone"), 0);
        assert_only_the_next_cycle_decided(&again.decisions);
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn every_connector_call_takes_a_connection_of_the_throttle() {
    use ledgersync_runtime::ConnectionLimit;
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        setup(&registry).await;
        let throttle = Arc::new(Throttle::new());
        let credential = Credential {
            profile: ProfileId::new("vdir"),
            account: OWNER.into(),
        };
        throttle.set_limit(&credential.profile, ConnectionLimit::new(1).expect("limit"));
        let mut d = driver(&w, &registry).with_throttle(throttle.clone(), credential.clone());
        assert_eq!(d.execute_pending().await.expect("execute").succeeded(), 3);
        assert_eq!(d.cycle().await.expect("cycle").count("item_seen"), 3);
        assert_eq!(throttle.peak(&credential), 1, "the calls held a connection");
        assert_eq!(throttle.in_use(&credential), 0, "and gave it back");
    });
}

/// A server that answers every listing with 503 and a Retry-After ten minutes away.
struct Busy;

impl Connector for Busy {
    fn list_changes(
        &mut self,
        _cursor: &ledgersync_connectors::Cursor,
    ) -> ledgersync_connectors::Listing {
        let in_ten_minutes = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64
            + 600_000;
        ledgersync_connectors::Listing {
            observations: vec![],
            end: ledgersync_connectors::ListingEnd::Failed(ListingFailed {
                workload: Workload::Act,
                error: ServerError {
                    code: "503".into(),
                    message: "try again later".into(),
                    retry_after: Some(ledgersync_domain::Timestamp(in_ten_minutes)),
                },
            }),
            failures: vec![],
            cursor: ledgersync_connectors::Cursor::initial(),
        }
    }

    fn execute(&mut self, intent: Intent<'_>) -> Outcome {
        panic!("nothing to execute: {:?}", intent.id)
    }
}

#[test]
fn a_retry_after_holds_back_every_mailbox_on_the_credential() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        let throttle = Arc::new(Throttle::new());
        let credential = Credential {
            profile: ProfileId::new("vdir"),
            account: "service-account".into(),
        };
        let mut busy = Driver::new(
            mailbox(),
            Box::new(Busy),
            registry.clone(),
            w.journal.clone(),
            &w.data,
        )
        .expect("driver")
        .with_throttle(throttle.clone(), credential.clone());
        let cycle = busy.cycle().await.expect("cycle");
        assert_eq!(cycle.terminal, "listing_failed");

        // Another mailbox on the same credential gets no connection before the Retry-After.
        let held = tokio::time::timeout(Duration::from_millis(300), throttle.acquire(&credential));
        assert!(
            held.await.is_err(),
            "a connection was handed out during the Retry-After"
        );
        // Another credential is not held back.
        let other = Credential {
            profile: ProfileId::new("vdir"),
            account: "someone-else".into(),
        };
        let free = tokio::time::timeout(Duration::from_millis(300), throttle.acquire(&other));
        assert!(free.await.is_ok(), "another credential waits too");
    });
}

#[test]
fn a_failing_intent_is_attempted_at_most_limit_times_with_the_interval_between_attempts() {
    let w = world();
    // Where Jayne's Maildir should be is a plain file: no invitation to her can be delivered.
    fs::create_dir_all(&w.maildirs).expect("maildirs");
    fs::write(w.maildirs.join(ATTENDEES[0]), "not a Maildir").expect("blocker");
    System::new().block_on(async {
        let mut org = OrgSettings::default();
        org.set("transient_retry_limit", "3").expect("limit");
        let interval = org.transient_retry_interval;
        let settings: SharedSettings = Arc::new(RwLock::new(org));
        let registry = Registry::new(
            w.journal.clone(),
            w.clock.clone(),
            settings,
            RegistryConfig::default(),
        )
        .start();
        let creates: Vec<EventId> = setup(&registry).await.iter().map(|a| a.id).collect();
        let mut d = driver(&w, &registry);
        let mut attempts: std::collections::BTreeMap<EventId, Vec<ledgersync_domain::Timestamp>> =
            Default::default();
        let mut given_up = Vec::new();
        let mut alerts = 0;
        // Twenty minutes in one-minute steps: the limit is reached after two intervals.
        for _ in 0..=20 {
            let report = d.execute_pending().await.expect("execute");
            for (intent, outcome) in &report.outcomes {
                assert!(
                    matches!(outcome, Event::IntentFailed(_)),
                    "the invitation cannot be delivered: {outcome:?}"
                );
                attempts
                    .entry(*intent)
                    .or_default()
                    .push(ledgersync_engine::Clock::now(w.clock.as_ref()));
            }
            for a in decided(&report.decisions, "error_classified") {
                let Event::ErrorClassified(c) = &a.decision.event else {
                    unreachable!()
                };
                let intent = c.intent.expect("an item's error");
                assert_eq!(c.class, ErrorClass::Transient, "{}", c.basis.reason);
                assert_eq!(
                    (c.attempt, c.limit),
                    (attempts[&intent].len() as u32, 3),
                    "{}",
                    c.basis.reason
                );
                if c.attempt == c.limit {
                    given_up.push(intent);
                }
            }
            alerts += decided(&report.decisions, "alert_raised").len();
            assert!(
                decided(&report.decisions, "workload_disabled").is_empty(),
                "an item never disables the mailbox"
            );
            w.clock.advance(ledgersync_domain::Duration::minutes(1));
        }
        assert_eq!(attempts.len(), 3, "every create was attempted");
        for intent in &creates {
            let at = &attempts[intent];
            assert_eq!(at.len(), 3, "attempted exactly the limit: {at:?}");
            for pair in at.windows(2) {
                assert_eq!(pair[1] - pair[0], interval, "the interval between attempts");
            }
        }
        given_up.sort();
        let mut expected = creates.clone();
        expected.sort();
        assert_eq!(given_up, expected);
        assert_eq!(alerts, 3, "one alert per item given up");
        let s = state(&registry).await;
        assert!(s.intents.is_empty(), "nothing left to execute");
        assert_eq!(s.failed_intents.len(), 3);
        assert!(s.failed_intents.values().all(|f| f.attempts == 3));
        assert!(s.workload(Workload::Act).enabled);
        // (No replay check here: the limit was set in the shared settings directly, not by a
        // `setting_changed` of the organization stream a replay would read.)
    });
}

#[test]
fn a_listing_begun_early_is_recorded_by_the_next_cycle_and_dropped_when_the_driver_writes_first() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        // Three creates pending: a listing begun now would not show the files they write.
        setup(&registry).await;
        let mut d = driver(&w, &registry);
        d.begin_listing();
        let executed = d.execute_pending().await.expect("execute");
        assert_eq!(executed.succeeded(), 3);
        // The early listing was dropped: the cycle lists after the writes, sees the three
        // files with the versions the outcomes recorded, and decides nothing about them.
        let cycle = d.cycle().await.expect("cycle");
        assert_eq!(cycle.count("item_seen"), 3);
        assert!(
            cycle
                .decisions
                .iter()
                .all(|a| a.decision.event.name() == "cycle_scheduled"),
            "{:#?}",
            cycle.decisions
        );

        // Another program edits a file; a listing begun now is the next cycle's.
        let path = file_of(&w, "apt-2");
        let text = fs::read_to_string(&path).expect("read");
        rewrite(
            &path,
            &text.replace("SUMMARY:Cargo audit", "SUMMARY:Cargo audit (moved)"),
        );
        d.begin_listing();
        // Nothing to carry out: the listing begun early is kept.
        assert!(
            d.execute_pending()
                .await
                .expect("execute")
                .outcomes
                .is_empty()
        );
        // A listing of three files is long done after a second; a later edit is the next
        // cycle's, and this cycle records what the early listing saw.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        rewrite(
            &path,
            &text.replace("SUMMARY:Cargo audit", "SUMMARY:Cargo audit (moved again)"),
        );
        let cycle = d.cycle().await.expect("cycle");
        assert_eq!(
            cycle.count("item_seen"),
            1,
            "the edit the early listing saw"
        );
        let updates = decided(&cycle.decisions, "update_intent");
        assert_eq!(updates.len(), 1);
        match &updates[0].decision.event {
            Event::UpdateIntent(u) => assert_eq!(u.item.title, "Cargo audit (moved)"),
            other => panic!("{other:?}"),
        }
        // The next cycle lists from there and sees the later edit.
        let cycle = d.cycle().await.expect("cycle");
        assert_eq!(cycle.count("item_seen"), 1);
        replay_reproduces_everything(w.journal.as_ref());
    });
}
