//! CRM changes through the bus, the organization actor and the mailbox actors, against a real
//! redb journal in a temporary directory, inside an actix `System`. The organization is the
//! demo's (`crates/engine/src/scenario.rs`): three users, two enabled mailboxes, four
//! appointments, a contact and a task, then the four causes of a logical delete and a physical
//! delete. Nothing waits on wall-clock time: a test publishes, then awaits `settled()` (every
//! message acked or dead-lettered).

use actix::{Actor, Addr, System};
use ledgersync_bus::{Bus, BusMessage, Consumer, InProcessBus, Queue};
use ledgersync_domain::event::*;
use ledgersync_domain::filter::SyncFilter;
use ledgersync_domain::records::*;
use ledgersync_domain::{
    Duration, Event, EventId, EventType, FilterId, MailboxId, OrgId, OrgSettings, RecordId, RuleId,
    StreamId, Timestamp, UserId,
};
use ledgersync_engine::mailbox::new_event;
use ledgersync_engine::scenario;
use ledgersync_engine::{Engine, ManualClock, replay};
use ledgersync_journal::{ExpectedSeq, Journal, JournalOptions};
use ledgersync_runtime::{
    ConsumerConfig, CrmChange, CrmChanges, InspectOrg, OrgActor, Registry, RegistryConfig, Settled,
    SharedSettings, Targets, settle_one, spawn_consumers,
};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

const ORG: &str = "serenity";

fn t0() -> Timestamp {
    Timestamp(1_800_000_000_000)
}

struct World {
    _dir: tempfile::TempDir,
    journal: Arc<dyn Journal>,
    clock: Arc<ManualClock>,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = ledgersync_journal::open(&dir.path().join("journal"), &JournalOptions::default())
        .expect("open journal");
    World {
        _dir: dir,
        journal,
        clock: Arc::new(ManualClock::new(t0())),
    }
}

struct Live {
    bus: Arc<InProcessBus>,
    org: Addr<OrgActor>,
    targets: Targets,
    settings: SharedSettings,
}

/// The registry, the organization actor and a consumer per queue. Call inside a System.
fn start(w: &World) -> Live {
    let live = start_without_consumers(w);
    spawn_consumers(live.bus.clone(), &live.targets, &ConsumerConfig::default());
    live
}

/// The registry and the organization actor; the test takes deliveries itself.
fn start_without_consumers(w: &World) -> Live {
    let settings: SharedSettings = Arc::new(RwLock::new(OrgSettings::default()));
    let registry = Registry::new(
        w.journal.clone(),
        w.clock.clone(),
        settings.clone(),
        RegistryConfig::default(),
    )
    .start();
    let org = OrgActor::new(
        OrgId::new(ORG),
        w.journal.clone(),
        w.clock.clone(),
        settings.clone(),
        registry.clone(),
    );
    let known = org.known_mailboxes();
    let org = org.start();
    let bus = Arc::new(InProcessBus::new(4, w.clock.clone()));
    Live {
        bus,
        org: org.clone(),
        targets: Targets {
            org,
            registry,
            known,
            replies: Default::default(),
            touched: None,
        },
        settings,
    }
}

async fn publish_all(live: &Live, events: Vec<Event>) {
    for e in events {
        live.bus
            .publish(BusMessage::crm(e))
            .await
            .expect("published");
    }
    live.bus.settled().await;
}

fn user(id: &str) -> UserId {
    UserId::new(id)
}

fn person(id: &str) -> Party {
    let (_, name, email) = scenario::USERS
        .iter()
        .find(|u| u.0 == id)
        .expect("known user");
    Party {
        user: Some(user(id)),
        email: (*email).into(),
        name: (*name).into(),
    }
}

fn appointment(
    id: &str,
    owner: &str,
    subject: &str,
    organizer: Party,
    required: Vec<Party>,
    days: i64,
) -> Record {
    Record {
        id: RecordId::new(id),
        owner: user(owner),
        version: 1,
        body: RecordBody::Appointment(Appointment {
            subject: subject.into(),
            organizer: Some(organizer),
            required,
            optional: vec![],
            start: t0() + Duration::days(days),
            end: t0() + Duration::days(days) + Duration::hours(1),
            all_day: false,
            location: "Serenity Valley office".into(),
            body: String::new(),
            state: ActivityState::Scheduled,
            show_as: ShowAs::Busy,
            priority: Priority::Normal,
            regarding: None,
            service: false,
            recurrence: None,
        }),
    }
}

/// The setup of a mailbox: registered, mapped, (approved,) tested.
fn mailbox_setup(mbx: &str, u: &str, approve: bool) -> Vec<Event> {
    scenario::mailbox_events(&OrgId::new(ORG), mbx, u, approve)
}

fn organization() -> Vec<Event> {
    scenario::organization_events()
}

/// The demo's CRM changes, in order.
fn demo() -> Vec<Event> {
    scenario::story(&OrgId::new(ORG), t0())
        .into_iter()
        .flat_map(|step| step.events)
        .collect()
}

type Decisions = BTreeMap<String, Vec<(EventType, Option<RuleId>)>>;

/// Per mailbox stream, the event types and rules in stream order.
fn decisions_by_mailbox(journal: &dyn Journal) -> Decisions {
    let mut out = Decisions::new();
    for (stream, _) in journal.streams().unwrap() {
        if stream.as_mailbox().is_none() {
            continue;
        }
        let events = journal.read_stream(&stream, 1, 100_000).unwrap();
        out.insert(
            stream.to_string(),
            events.iter().map(|e| (e.event_type, e.rule)).collect(),
        );
    }
    out
}

fn decision_count(d: &Decisions) -> usize {
    d.values()
        .flatten()
        .filter(|(_, rule)| rule.is_some())
        .count()
}

fn org_head(journal: &dyn Journal) -> u64 {
    journal
        .stream_head(&StreamId::org(&OrgId::new(ORG)))
        .unwrap()
}

#[test]
fn crm_changes_on_the_bus_reach_their_mailboxes_and_replay_reproduces_every_decision() {
    let w = world();
    let events = demo();
    let n = events.len() as u64;
    System::new().block_on(async {
        let live = start(&w);
        publish_all(&live, events).await;
        assert!(live.bus.dead_letters().await.unwrap().is_empty());
        // A mail-side outcome on the bus goes to its mailbox's partition and actor.
        let stream = StreamId::mailbox(&MailboxId::new("mbx-jayne"));
        let intent = w
            .journal
            .read_stream(&stream, 1, 100_000)
            .unwrap()
            .into_iter()
            .find(|e| {
                matches!(
                    Event::decode(e.event_type, e.schema_version, &e.payload),
                    Ok(Event::CreateIntent(_))
                )
            })
            .expect("a create intent for Jayne");
        let before = w.journal.stream_head(&stream).unwrap();
        live.bus
            .publish(BusMessage::observation(
                MailboxId::new("mbx-jayne"),
                Event::IntentSucceeded(IntentSucceeded {
                    intent: intent.event_id,
                    remote: Some(ledgersync_domain::RemoteId("mbx-jayne/x.ics".into())),
                    etag: Some("\"1\"".into()),
                    crm: None,
                }),
            ))
            .await
            .unwrap();
        live.bus.settled().await;
        assert!(w.journal.stream_head(&stream).unwrap() > before);
        let view = live.org.send(InspectOrg).await.unwrap().unwrap();
        assert_eq!(view.head, n);
        assert_eq!(view.state.mailboxes.len(), 2);
        live.bus.close();
    });
    assert_eq!(org_head(w.journal.as_ref()), n);
    let d = decisions_by_mailbox(w.journal.as_ref());
    assert_eq!(d.len(), 2, "both mailboxes reached: {:?}", d.keys());
    let report = replay(w.journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(report.ok(), "{:?}", report.mismatches);
    assert!(report.decisions > 0);
    assert_eq!(report.decisions, report.reproduced);
}

/// The demo's changes recorded through the synchronous engine, one by one.
fn demo_through_the_synchronous_engine() -> World {
    let sync = world();
    let mut engine =
        Engine::open(sync.journal.clone(), OrgId::new(ORG), sync.clock.clone()).unwrap();
    for e in demo() {
        engine.crm(e).unwrap();
    }
    drop(engine);
    sync
}

/// Both journals hold the same decisions in every mailbox, and organization streams as long.
fn same_decisions(live: &World, sync: &World) {
    let expected = decisions_by_mailbox(sync.journal.as_ref());
    assert!(decision_count(&expected) > 10);
    assert_eq!(decisions_by_mailbox(live.journal.as_ref()), expected);
    assert_eq!(
        org_head(live.journal.as_ref()),
        org_head(sync.journal.as_ref())
    );
}

#[test]
fn the_bus_and_actors_record_the_same_decisions_as_the_synchronous_engine() {
    let sync = demo_through_the_synchronous_engine();
    let live = world();
    System::new().block_on(async {
        let l = start(&live);
        publish_all(&l, demo()).await;
        assert!(l.bus.dead_letters().await.unwrap().is_empty());
        l.bus.close();
    });
    same_decisions(&live, &sync);
}

#[test]
fn changes_recorded_in_batches_decide_as_one_by_one_each_batch_in_one_append() {
    let sync = demo_through_the_synchronous_engine();
    let live = world();
    let batches: Vec<Vec<Event>> = demo().chunks(7).map(<[Event]>::to_vec).collect();
    System::new().block_on(async {
        let l = start_without_consumers(&live);
        for batch in &batches {
            let changes: Vec<CrmChange> = batch
                .iter()
                .map(|event| CrmChange {
                    id: ledgersync_engine::IdGen.next(),
                    event: event.clone(),
                })
                .collect();
            let ids: Vec<EventId> = changes.iter().map(|c| c.id).collect();
            let done = l.org.send(CrmChanges { changes }).await.unwrap();
            assert!(done.failed.is_none(), "{:?}", done.failed);
            assert_eq!(done.routed.len(), batch.len());
            // Recorded in one append: consecutive positions of the organization stream.
            let org = StreamId::org(&OrgId::new(ORG));
            let recorded: Vec<u64> = live
                .journal
                .read_stream(&org, 1, 100_000)
                .unwrap()
                .into_iter()
                .filter(|e| ids.contains(&e.event_id))
                .map(|e| e.position)
                .collect();
            assert_eq!(recorded.len(), batch.len());
            assert!(
                recorded.windows(2).all(|w| w[1] == w[0] + 1),
                "{recorded:?}"
            );
        }
    });
    same_decisions(&live, &sync);
}

#[test]
fn a_bad_change_in_a_batch_records_the_changes_before_it_and_nothing_after() {
    let w = world();
    System::new().block_on(async {
        let l = start(&w);
        publish_all(&l, organization()).await;
        let head = org_head(w.journal.as_ref());
        let upsert = |n: u32| {
            Event::RecordUpserted(RecordUpserted {
                record: appointment(
                    &format!("apt-batch-{n}"),
                    "paul",
                    &format!("Batch {n}"),
                    person("paul"),
                    vec![person("jayne")],
                    1,
                ),
            })
        };
        let bad = Event::AccessLost(AccessLost {
            user: user("nobody"),
            records: vec![],
            reason: AccessReason::Role,
        });
        let changes: Vec<CrmChange> = [upsert(1), upsert(2), bad, upsert(3)]
            .into_iter()
            .map(|event| CrmChange {
                id: ledgersync_engine::IdGen.next(),
                event,
            })
            .collect();
        let done = l.org.send(CrmChanges { changes }).await.unwrap();
        assert_eq!(done.routed.len(), 2);
        let (at, e) = done.failed.expect("the third change is refused");
        assert_eq!(at, 2);
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().contains("nobody"), "{e}");
        assert_eq!(org_head(w.journal.as_ref()), head + 2);
        l.bus.close();
    });
}

#[test]
fn a_malformed_change_is_dead_lettered_with_its_reason_and_the_next_one_is_processed() {
    let w = world();
    System::new().block_on(async {
        let live = start(&w);
        let mut setup = organization();
        setup.extend(mailbox_setup("mbx-jayne", "jayne", true));
        publish_all(&live, setup).await;
        let head = org_head(w.journal.as_ref());
        let position = w.journal.last_position().unwrap();
        let bad_setting = Event::SettingChanged(SettingChanged {
            key: "no_such_setting".into(),
            value: "1".into(),
        });
        let bad_filter = Event::FilterChanged(FilterChanged {
            user: user("jayne"),
            entity: Entity::Appointment,
            filters: vec![SyncFilter {
                id: FilterId::new("broken"),
                name: "Broken".into(),
                entity: Entity::Appointment,
                enabled: true,
                expr: "organizer = = me (".into(),
            }],
        });
        // A CRM change sent as a mail-side observation is bad input too.
        let misrouted = BusMessage::observation(
            MailboxId::new("mbx-jayne"),
            Event::UserRegistered(UserRegistered {
                user: user("kaylee"),
                name: "Kaylee Frye".into(),
                email: "kaylee@serenity.example".into(),
            }),
        );
        live.bus
            .publish(BusMessage::crm(bad_setting))
            .await
            .unwrap();
        live.bus.publish(BusMessage::crm(bad_filter)).await.unwrap();
        live.bus.publish(misrouted).await.unwrap();
        live.bus.settled().await;
        let dead = live.bus.dead_letters().await.unwrap();
        assert_eq!(dead.len(), 3, "{dead:?}");
        // An observation for a mailbox the organization does not know.
        live.bus
            .publish(BusMessage::observation(
                MailboxId::new("mbx-nobody"),
                Event::IntentSucceeded(IntentSucceeded {
                    intent: EventId::from_u128(1),
                    remote: None,
                    etag: None,
                    crm: None,
                }),
            ))
            .await
            .unwrap();
        live.bus.settled().await;
        let unknown = live
            .bus
            .dead_letters()
            .await
            .unwrap()
            .pop()
            .expect("dead-lettered");
        assert!(
            unknown.reason.reason.contains("mbx-nobody"),
            "{}",
            unknown.reason
        );
        assert!(w.journal.streams().unwrap().iter().all(|(s, _)| {
            s.as_mailbox()
                .is_none_or(|m| m != MailboxId::new("mbx-nobody"))
        }));
        // CRM changes keep their order (the CRM queue); the misrouted observation is on its
        // mailbox's partition, so it may be dead-lettered before or between them.
        let crm: Vec<_> = dead
            .iter()
            .filter(|d| d.queue == Some(Queue::Crm))
            .collect();
        assert!(
            crm[0].reason.reason.contains("no_such_setting"),
            "{}",
            crm[0].reason
        );
        assert_eq!(
            crm[0].reason.field.as_deref(),
            Some("key"),
            "{}",
            crm[0].reason
        );
        assert!(
            crm[1]
                .message
                .as_ref()
                .unwrap()
                .line()
                .is_some_and(|l| l.contains("\"kind\":\"filter_changed\"")),
            "{:?}",
            crm[1].message
        );
        assert!(
            crm[1].reason.reason.contains("does not compile"),
            "{}",
            crm[1].reason
        );
        assert_eq!(
            crm[1].reason.field.as_deref(),
            Some("filters[0].expr"),
            "{}",
            crm[1].reason
        );
        let misrouted = dead
            .iter()
            .find(|d| d.message.as_ref().is_some_and(|m| m.mailbox().is_some()))
            .expect("the misrouted observation");
        assert!(
            misrouted.reason.reason.contains("user_registered"),
            "{}",
            misrouted.reason
        );
        assert_eq!(dead[0].at, Some(t0()));
        assert_eq!(org_head(w.journal.as_ref()), head, "nothing appended");
        assert_eq!(w.journal.last_position().unwrap(), position);
        assert_eq!(*live.settings.read().unwrap(), OrgSettings::default());
        // The next message is processed.
        let supplier = appointment(
            "apt-supplier-call",
            "jayne",
            "Supplier call",
            person("jayne"),
            vec![],
            3,
        );
        publish_all(
            &live,
            vec![Event::RecordUpserted(RecordUpserted { record: supplier })],
        )
        .await;
        assert_eq!(live.bus.dead_letters().await.unwrap().len(), 4);
        assert_eq!(org_head(w.journal.as_ref()), head + 1);
        assert!(w.journal.last_position().unwrap() > position + 1);
        live.bus.close();
    });
    assert!(replay(w.journal.as_ref(), None, |_, _| {}).unwrap().ok());
}

#[test]
fn a_change_left_half_routed_by_a_crash_is_routed_once_when_the_org_actor_starts() {
    let w = world();
    System::new().block_on(async {
        let live = start(&w);
        publish_all(&live, demo()).await;
        live.bus.close();
    });
    // The organization append of a change happened; the crash came before any mailbox append.
    let change = Event::AccessLost(AccessLost {
        user: user("jayne"),
        records: vec![RecordId::new("apt-supplier-call")],
        reason: AccessReason::BusinessUnit,
    });
    let org = StreamId::org(&OrgId::new(ORG));
    let head = w.journal.stream_head(&org).unwrap();
    let id = EventId::from_u128(7_777);
    w.journal
        .append(
            &org,
            ExpectedSeq::Exactly(head),
            vec![new_event(id, &change, None, vec![], id, t0())],
        )
        .unwrap();
    let caused_by_change = |journal: &dyn Journal| {
        journal
            .read_stream(&StreamId::mailbox(&MailboxId::new("mbx-jayne")), 1, 100_000)
            .unwrap()
            .into_iter()
            .filter(|e| e.causation.first() == Some(&id))
            .count()
    };
    assert_eq!(caused_by_change(w.journal.as_ref()), 0);
    for _ in 0..2 {
        System::new().block_on(async {
            let live = start(&w);
            // Answered once the recovery (and the routing it finishes) is done.
            let view = live.org.send(InspectOrg).await.unwrap().unwrap();
            assert_eq!(view.head, head + 1);
            live.bus.close();
        });
        assert_eq!(
            caused_by_change(w.journal.as_ref()),
            1,
            "routed once, not again on the next start"
        );
    }
    let report = replay(w.journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(report.ok(), "{:?}", report.mismatches);
}

#[test]
fn a_redelivered_change_is_not_recorded_twice() {
    let w = world();
    System::new().block_on(async {
        let live = start(&w);
        let change = BusMessage::crm(organization().remove(1));
        live.bus.publish(change.clone()).await.unwrap();
        live.bus.publish(change).await.unwrap();
        live.bus.settled().await;
        assert!(live.bus.dead_letters().await.unwrap().is_empty());
        assert_eq!(org_head(w.journal.as_ref()), 1);
        live.bus.close();
    });
}

#[test]
fn a_setting_change_reaches_the_mailboxes_only_once_durable_and_decides_the_next_observation() {
    let w = world();
    let refused = |journal: &dyn Journal, mbx: &str| {
        journal
            .read_stream(&StreamId::mailbox(&MailboxId::new(mbx)), 1, 100_000)
            .unwrap()
            .into_iter()
            .filter(|e| e.rule.is_some())
            .filter(|e| {
                matches!(
                    Event::decode(e.event_type, e.schema_version, &e.payload),
                    Ok(Event::WorkloadDisabled(_))
                )
            })
            .count()
    };
    System::new().block_on(async {
        let live = start(&w);
        // With the default `require_approved_address = true`, an unapproved address has its
        // email workloads refused (R5).
        let mut events = organization();
        events.extend(mailbox_setup("mbx-jayne", "jayne", false));
        publish_all(&live, events).await;
        assert!(refused(w.journal.as_ref(), "mbx-jayne") > 0);
        // Refused setting values are never visible to the mailboxes.
        publish_all(
            &live,
            vec![Event::SettingChanged(SettingChanged {
                key: "require_approved_address".into(),
                value: "maybe".into(),
            })],
        )
        .await;
        assert_eq!(live.bus.dead_letters().await.unwrap().len(), 1);
        assert!(live.settings.read().unwrap().require_approved_address);
        // A durable change is in force for the next observation.
        let head = org_head(w.journal.as_ref());
        let mut events = vec![Event::SettingChanged(SettingChanged {
            key: "require_approved_address".into(),
            value: "false".into(),
        })];
        events.extend(mailbox_setup("mbx-paul", "paul", false));
        publish_all(&live, events).await;
        assert_eq!(org_head(w.journal.as_ref()), head + 4);
        assert!(!live.settings.read().unwrap().require_approved_address);
        assert_eq!(refused(w.journal.as_ref(), "mbx-paul"), 0);
        live.bus.close();
    });
    // Replay re-decides each observation with the settings recorded before it in the
    // organization stream: N/N means no mailbox decided with a setting not yet durable.
    let report = replay(w.journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(report.ok(), "{:?}", report.mismatches);
}

#[test]
fn a_change_the_journal_refuses_is_released_and_recorded_once_when_redelivered() {
    let w = world();
    System::new().block_on(async {
        let live = start_without_consumers(&w);
        let mut crm = live.bus.consume(Queue::Crm).await.unwrap();
        let mut setup = organization();
        setup.extend(mailbox_setup("mbx-jayne", "jayne", true));
        for e in setup {
            live.bus.publish(BusMessage::crm(e)).await.unwrap();
            let delivery = crm.next().await.unwrap();
            let settled = settle_one(delivery, &live.targets).await;
            assert_eq!(settled, Settled::Acked);
        }
        // Another writer moves the organization stream behind the actor's back.
        let org = StreamId::org(&OrgId::new(ORG));
        let head = w.journal.stream_head(&org).unwrap();
        let other = Event::UserRegistered(UserRegistered {
            user: user("kaylee"),
            name: "Kaylee Frye".into(),
            email: "kaylee@serenity.example".into(),
        });
        let other_id = EventId::from_u128(4_242);
        w.journal
            .append(
                &org,
                ExpectedSeq::Exactly(head),
                vec![new_event(other_id, &other, None, vec![], other_id, t0())],
            )
            .unwrap();
        let mailbox = StreamId::mailbox(&MailboxId::new("mbx-jayne"));
        let before = w.journal.stream_head(&mailbox).unwrap();
        let supplier = appointment(
            "apt-supplier-call",
            "jayne",
            "Supplier call",
            person("jayne"),
            vec![],
            3,
        );
        live.bus
            .publish(BusMessage::crm(Event::RecordUpserted(RecordUpserted {
                record: supplier,
            })))
            .await
            .unwrap();
        // The append conflicts: not acked, not dead-lettered, nothing recorded.
        let delivery = crm.next().await.unwrap();
        let settled = settle_one(delivery, &live.targets).await;
        match &settled {
            Settled::Released(reason) => assert!(reason.contains("another writer"), "{reason}"),
            other => panic!("expected a release, got {other:?}"),
        }
        assert_eq!(live.bus.pending(), 1);
        assert!(live.bus.dead_letters().await.unwrap().is_empty());
        assert_eq!(w.journal.stream_head(&org).unwrap(), head + 1);
        assert_eq!(w.journal.stream_head(&mailbox).unwrap(), before);
        // Redelivered: the actor rebuilt from the stream records it once and routes it.
        let delivery = crm.next().await.unwrap();
        assert!(delivery.redelivered());
        let settled = settle_one(delivery, &live.targets).await;
        assert_eq!(settled, Settled::Acked);
        assert_eq!(live.bus.pending(), 0);
        assert_eq!(w.journal.stream_head(&org).unwrap(), head + 2);
        assert!(w.journal.stream_head(&mailbox).unwrap() > before);
        let view = live.org.send(InspectOrg).await.unwrap().unwrap();
        assert_eq!(view.head, head + 2);
        assert!(view.state.users.contains_key(&user("kaylee")));
    });
    let report = replay(w.journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(report.ok(), "{:?}", report.mismatches);
}

/// The profile of the demo organization, its alert option on, three mailboxes on it.
fn alerting_organization() -> Vec<Event> {
    let org = OrgId::new(ORG);
    let mut events = organization();
    events.push(Event::ProfileAlertingSet(ProfileAlertingSet {
        profile: ledgersync_domain::ProfileId::new("groupware"),
        send_alert: true,
    }));
    for (mbx, u) in [
        ("mbx-jayne", "jayne"),
        ("mbx-paul", "paul"),
        ("mbx-laura", "laura"),
    ] {
        events.extend(scenario::mailbox_events(&org, mbx, u, true));
    }
    events
}

#[test]
fn r14_two_of_three_mailboxes_failing_alert_the_profile_owner_once_through_the_org_actor() {
    use ledgersync_engine::mailbox::Incoming;
    use ledgersync_runtime::ObserveMailbox;
    use ledgersync_runtime::registry::ForwardFailures;

    let w = world();
    System::new().block_on(async {
        let live = start(&w);
        live.targets
            .registry
            .send(ForwardFailures(live.org.clone().recipient()))
            .await
            .expect("registry alive");
        publish_all(&live, alerting_organization()).await;
        let head_before = org_head(w.journal.as_ref());

        let fail = |mbx: &str| {
            let id = ledgersync_engine::IdGen.next();
            ObserveMailbox::new(
                MailboxId::new(mbx),
                Incoming {
                    event: Event::ListingFailed(ListingFailed {
                        workload: Workload::Act,
                        error: ServerError {
                            code: "401".into(),
                            message: "Unauthorized".into(),
                            retry_after: None,
                        },
                    }),
                    id,
                    causation: vec![],
                    correlation: id,
                },
            )
        };
        for (i, mbx) in ["mbx-jayne", "mbx-paul", "mbx-laura"].iter().enumerate() {
            w.clock.advance(Duration::minutes(10));
            let decisions = live
                .targets
                .registry
                .send(fail(mbx))
                .await
                .expect("registry alive")
                .expect("recorded");
            assert!(
                decisions
                    .iter()
                    .any(|a| a.decision.event.name() == "workload_disabled"),
                "{i}: {decisions:#?}"
            );
        }
        // Queued behind the failures the registry forwarded.
        let view = live
            .org
            .send(InspectOrg)
            .await
            .expect("org alive")
            .expect("org state");
        let org_stream = w
            .journal
            .read_stream(&StreamId::org(&OrgId::new(ORG)), head_before + 1, 100)
            .unwrap();
        let names: Vec<(String, Option<RuleId>)> = org_stream
            .iter()
            .map(|e| {
                let s = ledgersync_engine::log::Stored::decode(e.clone()).unwrap();
                (s.event.name().to_string(), e.rule)
            })
            .collect();
        assert_eq!(
            names,
            [
                ("mailbox_failure_noted".to_string(), None),
                ("mailbox_failure_noted".to_string(), None),
                ("alert_raised".to_string(), Some(RuleId(14))),
                ("mailbox_failure_noted".to_string(), None),
            ],
            "one alert, at the second of three mailboxes, none for the third within the hour"
        );
        assert_eq!(view.head, head_before + 4);
        // The alert follows its observation, caused by it.
        assert_eq!(org_stream[2].causation, vec![org_stream[1].event_id]);
        let alert = ledgersync_engine::log::Stored::decode(org_stream[2].clone()).unwrap();
        let Event::AlertRaised(a) = alert.event else {
            unreachable!()
        };
        assert_eq!(a.level, AlertLevel::Error);
        assert!(a.notify[0].starts_with("server profile owner"), "{a:?}");

        // Replay re-decides the organization's observations too: N/N includes the alert.
        let report = replay(w.journal.as_ref(), None, |_, _| {}).unwrap();
        assert!(report.ok(), "{:#?}", report.mismatches);
        assert_eq!(
            report.decisions as usize,
            decision_count(&decisions_by_mailbox(w.journal.as_ref())) + 1
        );
    });
}

/// Setting changes (on the CRM queue) race mail-side observations (on the mailboxes'
/// partitions) through the live actors: whichever commits first, every decision names the
/// settings it was made under, and replay reproduces all of them.
#[test]
fn setting_changes_racing_decisions_on_the_live_service_replay_n_of_n() {
    let w = world();
    System::new().block_on(async {
        let live = start(&w);
        publish_all(&live, demo()).await;
        assert!(live.bus.dead_letters().await.unwrap().is_empty());
        let mailboxes = ["mbx-jayne", "mbx-paul"];
        for round in 0..150u32 {
            let step = if round % 2 == 0 { "60" } else { "240" };
            live.bus
                .publish(BusMessage::crm(Event::SettingChanged(SettingChanged {
                    key: "schedule_quiet_step_seconds".into(),
                    value: step.into(),
                })))
                .await
                .unwrap();
            for m in mailboxes {
                live.bus
                    .publish(BusMessage::observation(
                        MailboxId::new(m),
                        Event::ListingCompleted(ListingCompleted {
                            workload: Workload::Act,
                            items: 0,
                        }),
                    ))
                    .await
                    .unwrap();
            }
        }
        live.bus.settled().await;
        assert!(live.bus.dead_letters().await.unwrap().is_empty());
    });
    let report = replay(w.journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(report.ok(), "{:#?}", report.mismatches);
    assert!(report.decisions >= 300, "{} decisions", report.decisions);
}

/// The partitions' consumer takes a batch: when one mailbox's append fails, that delivery is
/// released and the ones behind it are held; when it comes back, each mailbox's observations
/// are recorded once and in the order they were published, and every driver was answered.
#[test]
fn a_partition_batch_with_a_failed_append_records_each_mailbox_in_order_once() {
    let w = world();
    System::new().block_on(async {
        let live = start_without_consumers(&w);
        // One partition: both mailboxes' observations are in the same batch.
        let bus = Arc::new(InProcessBus::new(1, w.clock.clone()));
        let config = ConsumerConfig {
            retry_after: std::time::Duration::from_millis(10),
        };
        spawn_consumers(bus.clone(), &live.targets, &config);
        for e in demo() {
            bus.publish(BusMessage::crm(e)).await.unwrap();
        }
        bus.settled().await;
        let view = live.org.send(InspectOrg).await.unwrap().unwrap();
        let mailboxes: Vec<MailboxId> = view.state.mailboxes.keys().cloned().collect();
        assert_eq!(mailboxes.len(), 2);
        let (a, b) = (mailboxes[0].clone(), mailboxes[1].clone());
        // Another writer moves a's stream behind its actor's back: its next append conflicts.
        let stream_a = StreamId::mailbox(&a);
        let head = w.journal.stream_head(&stream_a).unwrap();
        let listing = |items| {
            Event::ListingCompleted(ListingCompleted {
                workload: Workload::Act,
                items,
            })
        };
        let other_id = EventId::from_u128(4_343);
        w.journal
            .append(
                &stream_a,
                ExpectedSeq::Exactly(head),
                vec![new_event(
                    other_id,
                    &listing(0),
                    None,
                    vec![],
                    other_id,
                    t0(),
                )],
            )
            .unwrap();
        let messages = vec![
            BusMessage::observation(a.clone(), listing(1)),
            BusMessage::observation(b.clone(), listing(2)),
            BusMessage::observation(a.clone(), listing(3)),
        ];
        let waits: Vec<_> = messages
            .iter()
            .map(|m| live.targets.replies.wait_for(m.id()))
            .collect();
        bus.publish_all(&messages).await.unwrap();
        bus.settled().await;
        for wait in waits {
            assert!(matches!(
                wait.await.unwrap(),
                ledgersync_runtime::Reply::Decided(_)
            ));
        }
        assert!(bus.dead_letters().await.unwrap().is_empty());
        let ids = |mailbox: &MailboxId| -> Vec<EventId> {
            w.journal
                .read_stream(&StreamId::mailbox(mailbox), 1, 100_000)
                .unwrap()
                .iter()
                .map(|e| e.event_id)
                .filter(|id| messages.iter().any(|m| m.id() == *id))
                .collect()
        };
        assert_eq!(ids(&a), vec![messages[0].id(), messages[2].id()]);
        assert_eq!(ids(&b), vec![messages[1].id()]);
        bus.close();
    });
}
