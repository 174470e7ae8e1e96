//! The disappearing-appointment story through the real engine and journal, on both backends:
//! replay reproduces every decision, explain names the rule, cause and setting, what-if lists
//! the items that would differ, and a journal that does not hold what the engine decided is
//! caught.

use ledgersync_domain::event::{FilterChanged, NoAction, SettingChanged};
use ledgersync_domain::filter::SyncFilter;
use ledgersync_domain::records::Entity;
use ledgersync_domain::{
    Event, EventId, FilterId, NewEvent, OrgId, StreamId, Timestamp, UserId, time,
};
use ledgersync_engine::engine::rebuild_states;
use ledgersync_engine::mailbox::new_event;
use ledgersync_engine::{Engine, EngineError, ManualClock, explain, replay, scenario, what_if};
use ledgersync_journal::{Backend, ExpectedSeq, Journal, JournalOptions};
use std::sync::Arc;

fn t0() -> Timestamp {
    time::timestamp_from_civil(2026, 11, 20, 9, 0)
}

fn run_story(
    backend: Backend,
    dir: &std::path::Path,
    snapshot_every: u64,
) -> (Arc<dyn Journal>, Engine) {
    let journal = ledgersync_journal::open(dir, &JournalOptions::with_backend(backend)).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let mut engine = Engine::open(journal.clone(), OrgId::new("serenity"), clock.clone())
        .unwrap()
        .with_snapshot_every(snapshot_every);
    scenario::disappearing_appointment(&mut engine, &clock).unwrap();
    (journal, engine)
}

fn story_holds(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (journal, engine) = run_story(backend, dir.path(), 1000);
    drop(engine);

    let r = replay(journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(r.ok(), "{:#?}", r.mismatches);
    assert!(r.decisions >= 40, "{} decisions", r.decisions);
    assert_eq!(r.reproduced, r.decisions);

    let e = explain(journal.as_ref(), "bike rep").unwrap();
    assert_eq!(e.items.len(), 1);
    let jayne = e.items[0]
        .mailboxes
        .iter()
        .find(|m| m.mailbox.as_str() == "mbx-jayne")
        .unwrap();
    let why = jayne.why.as_deref().unwrap();
    assert!(why.contains("access lost (security role removed)"), "{why}");
    assert!(why.contains("cancellation sent to 3 attendee(s)"), "{why}");
    assert!(
        why.contains("distinct_physical_logical_deletes is false"),
        "{why}"
    );
    assert!(why.ends_with("(R22)"), "{why}");
    let hint = jayne.what_if.as_ref().unwrap();
    assert_eq!(
        (hint.setting.as_str(), hint.value.as_str()),
        ("distinct_physical_logical_deletes", "true")
    );
    assert_eq!(hint.outcome, "unlinked, left in the calendar");
    assert!(
        jayne
            .steps
            .iter()
            .any(|s| s.rule.as_deref() == Some("R22") && s.event_type == "cancel_intent")
    );

    let w = what_if(
        journal.as_ref(),
        &[("distinct_physical_logical_deletes".into(), "true".into())],
        |_, _| {},
    )
    .unwrap();
    let items: Vec<(&str, &str, &str)> = w
        .differences
        .iter()
        .map(|d| (d.title.as_str(), d.mailbox.as_str(), d.simulated.as_str()))
        .collect();
    assert_eq!(
        items,
        [
            (
                "Quarterly review",
                "mbx-paul",
                "unlinked, left in the calendar"
            ),
            ("Bike repair", "mbx-jayne", "unlinked, left in the calendar"),
            (
                "Linda Park",
                "mbx-paul",
                "unlinked, left in the address book"
            ),
        ]
    );
    let bike = &w.differences[1];
    assert_eq!(
        bike.recorded,
        "deleted from the mailbox, cancellation sent to 3 attendee(s)"
    );

    // The physical delete of "Site visit" cancels under both settings.
    assert!(!w.differences.iter().any(|d| d.title == "Site visit"));

    let same = what_if(
        journal.as_ref(),
        &[("distinct_physical_logical_deletes".into(), "false".into())],
        |_, _| {},
    )
    .unwrap();
    assert!(same.differences.is_empty(), "{:#?}", same.differences);
}

#[test]
fn story_on_redb() {
    story_holds(Backend::Redb);
}

#[test]
fn story_on_sled() {
    story_holds(Backend::Sled);
}

#[test]
fn replay_reports_a_decision_the_rules_do_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, engine) = run_story(Backend::Redb, dir.path(), 1000);
    drop(engine);
    let stream = StreamId("mailbox/mbx-jayne".into());
    let head = journal.stream_head(&stream).unwrap();
    let forged = Event::NoAction(NoAction {
        basis: Default::default(),
        record: None,
        remote: None,
    });
    journal
        .append(
            &stream,
            ExpectedSeq::Exactly(head),
            vec![NewEvent {
                event_id: EventId::from_u128(42),
                recorded_at: t0(),
                occurred_at: t0(),
                event_type: forged.event_type(),
                schema_version: 1,
                causation: vec![],
                correlation: None,
                rule: Some(ledgersync_domain::RuleId(25)),
                payload: forged.encode_payload(),
                items: vec![],
            }],
        )
        .unwrap();
    let r = replay(journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(!r.ok());
    assert_eq!(r.mismatches.len(), 1);
    let m = &r.mismatches[0];
    assert_eq!(m.mailbox.as_str(), "mbx-jayne");
    assert!(
        m.recorded.as_deref().unwrap().starts_with("R25 no_action"),
        "{m:?}"
    );
    assert!(m.recomputed.is_none());
    assert_eq!(r.reproduced, r.decisions - 1);
}

#[test]
fn reopening_rebuilds_the_same_states_from_snapshots_and_tails() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, engine) = run_story(Backend::Redb, dir.path(), 7);
    let live: Vec<_> = engine
        .mailbox_ids()
        .map(|m| (m.clone(), engine.mailbox(m).unwrap().clone()))
        .collect();
    drop(engine);
    let folded = rebuild_states(journal.as_ref()).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let reopened = Engine::open(journal.clone(), OrgId::new("serenity"), clock).unwrap();
    for (id, state) in live {
        assert!(
            journal
                .load_snapshot(&StreamId::mailbox(&id))
                .unwrap()
                .is_some(),
            "{id} has a snapshot"
        );
        assert_eq!(
            reopened.mailbox(&id).unwrap(),
            &state,
            "{id} reopened from snapshot + tail"
        );
        assert_eq!(
            folded.get(&id).unwrap(),
            &state,
            "{id} folded from the whole journal"
        );
    }
}

#[test]
fn bad_crm_input_is_refused_with_its_reason_and_nothing_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, mut engine) = run_story(Backend::Redb, dir.path(), 1000);
    let before = journal.last_position().unwrap();
    let err = |r: Result<_, EngineError>| r.err().map(|e| e.to_string()).unwrap_or_default();

    let e = err(engine.crm(Event::SettingChanged(SettingChanged {
        key: "distinct_deletes".into(),
        value: "true".into(),
    })));
    assert!(
        e.contains("unknown setting `distinct_deletes`")
            && e.contains("distinct_physical_logical_deletes"),
        "{e}"
    );

    let e = err(engine.crm(Event::SettingChanged(SettingChanged {
        key: "task_deletion_mode".into(),
        value: "7".into(),
    })));
    assert!(
        e.contains("0 (delete), 1 (delete if not completed) or 2 (never)"),
        "{e}"
    );

    let e = err(engine.crm(Event::FilterChanged(FilterChanged {
        user: UserId::new("jayne"),
        entity: Entity::Appointment,
        filters: vec![SyncFilter {
            id: FilterId::new("f"),
            name: "typo".into(),
            entity: Entity::Appointment,
            enabled: true,
            expr: "organiser = me".into(),
        }],
    })));
    assert!(
        e.contains("unknown field `organiser`") && e.contains("column 1"),
        "{e}"
    );

    let e = err(engine.crm(Event::NoAction(NoAction {
        basis: Default::default(),
        record: None,
        remote: None,
    })));
    assert!(e.contains("is a decision"), "{e}");

    assert_eq!(
        journal.last_position().unwrap(),
        before,
        "refused input is not recorded"
    );
}

#[test]
fn a_crm_change_left_half_routed_by_a_crash_is_routed_on_open_exactly_once_even_with_later_events()
{
    use ledgersync_domain::event::{AccessLost, AccessReason};
    let dir = tempfile::tempdir().unwrap();
    let (journal, engine) = run_story(Backend::Redb, dir.path(), 1000);
    drop(engine);
    // The organization append of a change happened; the crash came before any mailbox append.
    let change = Event::AccessLost(AccessLost {
        user: UserId::new("jayne"),
        records: vec![ledgersync_domain::RecordId::new("apt-supplier-call")],
        reason: AccessReason::BusinessUnit,
    });
    let org = StreamId("org/serenity".into());
    let head = journal.stream_head(&org).unwrap();
    let id = EventId::from_u128(7_777);
    journal
        .append(
            &org,
            ExpectedSeq::Exactly(head),
            vec![new_event(id, &change, None, vec![], id, t0())],
        )
        .unwrap();
    // A live service kept appending meanwhile: another mailbox's observation (an outcome the
    // mailbox knows nothing of, so it decides nothing), after the change.
    let paul = StreamId("mailbox/mbx-paul".into());
    let outcome = Event::IntentSucceeded(ledgersync_domain::event::IntentSucceeded {
        intent: EventId::from_u128(9_999),
        remote: None,
        etag: None,
        crm: None,
    });
    let other = EventId::from_u128(8_888);
    journal
        .append(
            &paul,
            ExpectedSeq::Exactly(journal.stream_head(&paul).unwrap()),
            vec![new_event(other, &outcome, None, vec![], other, t0())],
        )
        .unwrap();
    let caused_by_change = |journal: &dyn Journal| {
        let stream = StreamId("mailbox/mbx-jayne".into());
        journal
            .read_stream(&stream, 1, 10_000)
            .unwrap()
            .into_iter()
            .filter(|e| e.causation.first() == Some(&id))
            .count()
    };
    assert_eq!(caused_by_change(journal.as_ref()), 0);
    for _ in 0..2 {
        let clock = Arc::new(ManualClock::new(t0()));
        let engine = Engine::open(journal.clone(), OrgId::new("serenity"), clock).unwrap();
        drop(engine);
        assert_eq!(
            caused_by_change(journal.as_ref()),
            1,
            "routed once, not again on the next open"
        );
    }
    let e = explain(journal.as_ref(), "Supplier call").unwrap();
    let why = e.items[0].mailboxes[0].why.clone().unwrap();
    assert!(why.contains("access lost (business unit changed)"), "{why}");
    assert!(replay(journal.as_ref(), None, |_, _| {}).unwrap().ok());
}

/// A mailbox reads the settings, a setting change commits, then the mailbox's append commits:
/// the decision was made under the settings it read, and replay, what-if and explain use
/// exactly those, not the ones in force at its journal position.
fn a_setting_change_racing_a_decision_replays_n_of_n(backend: Backend) {
    use ledgersync_domain::event::{ListingCompleted, Workload};
    use ledgersync_domain::{MailboxId, SettingsVersion};
    use ledgersync_engine::{IdGen, Incoming, MailboxCore};

    let dir = tempfile::tempdir().unwrap();
    let (journal, engine) = run_story(backend, dir.path(), 1000);
    let read = engine.org().settings.clone();
    assert_eq!(read.get("schedule_act_min_seconds").unwrap(), "300");
    drop(engine);

    let mailbox = MailboxId::new("mbx-jayne");
    let core = MailboxCore::recover(journal.as_ref(), mailbox.clone()).unwrap();
    let id = IdGen.next();
    let now = t0() + ledgersync_domain::Duration::hours(3);
    let (batch, _) = core.prepare(
        Incoming {
            event: Event::ListingCompleted(ListingCompleted {
                workload: Workload::Act,
                items: 0,
            }),
            id,
            causation: vec![],
            correlation: id,
        },
        &read,
        now,
        &IdGen,
    );
    // The change commits first, and so gets the earlier position.
    let clock = Arc::new(ManualClock::new(now));
    let mut engine = Engine::open(journal.clone(), OrgId::new("serenity"), clock).unwrap();
    let change = engine
        .crm(Event::SettingChanged(SettingChanged {
            key: "schedule_act_min_seconds".into(),
            value: "60".into(),
        }))
        .unwrap();
    drop(engine);
    journal
        .append(&batch.stream, batch.expected, batch.events)
        .unwrap();

    let events = journal
        .read_stream(&StreamId::mailbox(&mailbox), 1, 100_000)
        .unwrap();
    let obs = events.iter().find(|e| e.event_id == id).unwrap();
    assert_eq!(
        obs.causation.last(),
        Some(&read.version.0),
        "the observation names the settings it was decided under"
    );
    assert_ne!(read.version, SettingsVersion(change.org_event.unwrap()));
    let decided = ledgersync_engine::describe::describe(
        &ledgersync_engine::log::Stored::decode(
            events
                .iter()
                .find(|e| e.causation.first() == Some(&id))
                .unwrap()
                .clone(),
        )
        .unwrap()
        .event,
    );
    // ACT minimum 300 s + one quiet step of 60 s; under the new minimum it would be 120 s.
    assert!(
        decided.contains("in 360 s"),
        "decided under the settings read: {decided}"
    );

    let r = replay(journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(r.ok(), "{:#?}", r.mismatches);
    // What-if with the value already in force for that decision changes nothing.
    let w = what_if(
        journal.as_ref(),
        &[("schedule_act_min_seconds".into(), "300".into())],
        |_, _| {},
    )
    .unwrap();
    assert!(
        w.differences.iter().all(|d| d.position != obs.position),
        "{:#?}",
        w.differences
    );
}

#[test]
fn a_setting_change_racing_a_decision_replays_n_of_n_redb() {
    a_setting_change_racing_a_decision_replays_n_of_n(Backend::Redb);
}

#[test]
fn a_setting_change_racing_a_decision_replays_n_of_n_sled() {
    a_setting_change_racing_a_decision_replays_n_of_n(Backend::Sled);
}

/// An item deleted on the mail server (or by the user) is not "left in the calendar":
/// explain words the unlink after what happened to the item.
#[test]
fn explain_of_an_item_gone_says_it_is_gone_not_left_in_the_calendar() {
    use ledgersync_domain::event::ItemGone;
    let dir = tempfile::tempdir().unwrap();
    let (journal, mut engine) = run_story(Backend::Redb, dir.path(), 1000);
    let paul = ledgersync_domain::MailboxId::new("mbx-paul");
    let (record, remote) = engine
        .mailbox(&paul)
        .unwrap()
        .links
        .iter()
        .filter(|(_, l)| l.is_active() && l.synced.entity() == Entity::Appointment)
        .find_map(|(r, l)| l.remote.clone().map(|remote| (r.clone(), remote)))
        .expect("a linked appointment in Paul's mailbox");
    let p = engine
        .observe(&paul, Event::ItemGone(ItemGone { remote }))
        .unwrap();
    assert!(
        p.decisions
            .iter()
            .any(|d| d.decision.event.name() == "unlinked"),
        "{p:#?}"
    );
    let e = explain(journal.as_ref(), record.as_str()).unwrap();
    let story = e.items[0]
        .mailboxes
        .iter()
        .find(|m| m.mailbox == paul)
        .unwrap();
    let why = story.why.as_deref().unwrap();
    assert!(
        why.contains("the server item is gone (deleted on the mail server), the CRM row is kept"),
        "{why}"
    );
    assert!(!why.contains("left in the calendar"), "{why}");
}

/// A cycle that would delete every one of Paul's linked items trips the delete breaker (R25):
/// explain says why in plain words, and what-if with the share turned off re-decides the
/// deletes.
#[test]
fn a_tripped_delete_breaker_is_explained_and_re_decided_by_what_if() {
    use ledgersync_domain::event::{DeletionsListed, ItemGone, Workload};
    let dir = tempfile::tempdir().unwrap();
    let (journal, mut engine) = run_story(Backend::Redb, dir.path(), 1000);
    let paul = ledgersync_domain::MailboxId::new("mbx-paul");
    let linked: Vec<(ledgersync_domain::RecordId, ledgersync_domain::RemoteId)> = engine
        .mailbox(&paul)
        .unwrap()
        .links
        .iter()
        .filter(|(_, l)| l.is_active())
        .filter_map(|(r, l)| l.remote.clone().map(|remote| (r.clone(), remote)))
        .collect();
    assert!(!linked.is_empty(), "{linked:?}");
    // Every linked item gone in one cycle: the collection was emptied.
    let gone = linked.clone();
    let listed = engine
        .observe(
            &paul,
            Event::DeletionsListed(DeletionsListed {
                workload: Workload::Act,
                remotes: gone.iter().map(|(_, r)| r.clone()).collect(),
            }),
        )
        .unwrap();
    let names: Vec<&str> = listed
        .decisions
        .iter()
        .map(|d| d.decision.event.name())
        .collect();
    assert_eq!(names, ["breaker_tripped", "alert_raised"]);
    for (_, remote) in &gone {
        let p = engine
            .observe(
                &paul,
                Event::ItemGone(ItemGone {
                    remote: remote.clone(),
                }),
            )
            .unwrap();
        let names: Vec<&str> = p
            .decisions
            .iter()
            .map(|d| d.decision.event.name())
            .collect();
        assert_eq!(names, ["no_action"]);
    }
    let (n, total) = (gone.len(), linked.len());

    let e = explain(journal.as_ref(), gone[0].0.as_str()).unwrap();
    let story = e.items[0]
        .mailboxes
        .iter()
        .find(|m| m.mailbox == paul)
        .unwrap();
    let why = story.why.as_deref().unwrap();
    assert!(
        why.contains(&format!(
            "{n} of {total} linked items would have been deleted in one cycle"
        )) && why.contains("the collection was emptied, more than 20 % (setting delete_breaker_percent)")
            && why.contains("deletes held until `ledgersync mailbox approve-deletes mbx-paul` or the items come back")
            && why.ends_with("(R25)"),
        "{why}"
    );

    let w = what_if(
        journal.as_ref(),
        &[("delete_breaker_percent".into(), "100".into())],
        |_, _| {},
    )
    .unwrap();
    let breaker = w
        .differences
        .iter()
        .find(|d| d.mailbox == paul && d.record.is_none() && d.remote.is_none())
        .expect("the breaker itself differs");
    assert_eq!(
        breaker.recorded,
        format!("delete breaker tripped, {n} delete(s) held")
    );
    assert_eq!(breaker.simulated, "nothing");
    let held: Vec<_> = w
        .differences
        .iter()
        .filter(|d| d.recorded == "delete held by the delete breaker, nothing deleted")
        .collect();
    assert_eq!(held.len(), n, "{:#?}", w.differences);
    assert!(held.iter().all(|d| d.simulated != "left unchanged"));
}
