//! The consumer loop on RabbitMQ: the demo organization's CRM changes published on the AMQP
//! bus (quorum queues, in a vhost of the test's own) reach the organization and mailbox
//! actors and record what the synchronous engine records; a message that does not decode and
//! a change the organization refuses are dead-lettered with their reasons; a change published
//! twice is recorded once. Needs RabbitMQ on 127.0.0.1:5672; a missing broker fails the test.

use actix::{Actor, System};
use ledgersync_bus::test_broker::{Vhost, rabbitmqctl};
use ledgersync_bus::{AmqpBus, AmqpConfig, Bus, BusMessage, Consumer, Queue, QueueType};
use ledgersync_domain::event::SettingChanged;
use ledgersync_domain::{Event, EventType, OrgId, OrgSettings, RuleId, StreamId, Timestamp};
use ledgersync_engine::{Engine, ManualClock, replay, scenario};
use ledgersync_journal::{Journal, JournalOptions};
use ledgersync_runtime::{
    ConsumerConfig, OrgActor, Registry, RegistryConfig, SharedSettings, Targets, spawn_consumers,
};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

const ORG: &str = "serenity";
const T0: Timestamp = Timestamp(1_800_000_000_000);

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
        clock: Arc::new(ManualClock::new(T0)),
    }
}

/// The registry and the organization actor on `w`'s journal (inside an actix `System`).
fn actors(w: &World) -> Targets {
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
        settings,
        registry.clone(),
    );
    let known = org.known_mailboxes();
    Targets {
        org: org.start(),
        registry,
        known,
        replies: Default::default(),
        touched: None,
    }
}

fn demo() -> Vec<Event> {
    scenario::story(&OrgId::new(ORG), T0)
        .into_iter()
        .flat_map(|step| step.events)
        .collect()
}

type Decisions = BTreeMap<String, Vec<(EventType, Option<RuleId>)>>;

fn decisions_by_mailbox(journal: &dyn Journal) -> Decisions {
    let mut out = Decisions::new();
    for (stream, _) in journal.streams().unwrap() {
        if stream.as_mailbox().is_some() {
            let events = journal.read_stream(&stream, 1, 100_000).unwrap();
            out.insert(
                stream.to_string(),
                events.iter().map(|e| (e.event_type, e.rule)).collect(),
            );
        }
    }
    out
}

fn org_head(journal: &dyn Journal) -> u64 {
    journal
        .stream_head(&StreamId::org(&OrgId::new(ORG)))
        .unwrap()
}

/// Messages ready or unacked in the vhost's queues, by name.
fn queued(vhost: &Vhost) -> BTreeMap<String, u64> {
    rabbitmqctl(&["list_queues", "-p", &vhost.name, "name", "messages"])
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn crm_changes_through_rabbitmq_record_what_the_synchronous_engine_records() {
    let sync = world();
    let mut engine =
        Engine::open(sync.journal.clone(), OrgId::new(ORG), sync.clock.clone()).unwrap();
    for e in demo() {
        engine.crm(e).unwrap();
    }
    drop(engine);

    let live = world();
    let vhost = Vhost::new();
    let events = demo();
    System::new().block_on(async {
        let targets = actors(&live);
        let config = AmqpConfig {
            url: vhost.url(),
            partitions: 8,
            queue_type: QueueType::Quorum,
            ..AmqpConfig::default()
        };
        let bus = Arc::new(
            AmqpBus::connect(config, live.clock.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        spawn_consumers(bus.clone(), &targets, &ConsumerConfig::default());
        let messages: Vec<BusMessage> = events.iter().cloned().map(BusMessage::crm).collect();
        bus.publish_all(&messages).await.unwrap();
        // Published twice: recorded once.
        bus.publish(messages[0].clone()).await.unwrap();
        // Not JSON, and a setting the organization does not have.
        let mut broken = ledgersync_bus::wire::encode(&BusMessage::crm(events[0].clone()));
        broken.body = b"{\"type\": \"user_registered\", \"data\": [}".to_vec();
        bus.publish_wire(Queue::Crm, vec![broken]).await.unwrap();
        let refused = BusMessage::crm(Event::SettingChanged(SettingChanged {
            key: "no_such_setting".into(),
            value: "1".into(),
        }));
        bus.publish(refused.clone()).await.unwrap();

        let settled = async {
            loop {
                let q = queued(&vhost);
                if q.get("ledgersync.crm") == Some(&0)
                    && q.get("ledgersync.dead-letters") == Some(&2)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(120), settled)
            .await
            .unwrap_or_else(|_| panic!("the CRM queue did not drain: {:?}", queued(&vhost)));
        let dead = bus.dead_letters().await.unwrap();
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert_eq!(dead[0].queue, Some(Queue::Crm));
        assert_eq!(dead[0].message, None);
        assert!(
            dead[0].reason.reason.contains("is not JSON"),
            "{:?}",
            dead[0].reason
        );
        assert_eq!(dead[0].reason.line, Some(1));
        assert_eq!(dead[1].message.as_ref(), Some(&refused));
        assert!(
            dead[1].reason.reason.contains("no_such_setting"),
            "{:?}",
            dead[1].reason
        );
        bus.close().await;
    });
    assert_eq!(org_head(live.journal.as_ref()), events.len() as u64);
    let expected = decisions_by_mailbox(sync.journal.as_ref());
    assert!(expected.len() >= 2);
    assert_eq!(decisions_by_mailbox(live.journal.as_ref()), expected);
    let report = replay(live.journal.as_ref(), None, |_, _| {}).unwrap();
    assert!(report.ok(), "{:?}", report.mismatches);
}

/// Ids of the events of `stream` equal to `id`.
fn recorded_times(
    journal: &dyn Journal,
    stream: &StreamId,
    id: ledgersync_domain::EventId,
) -> usize {
    journal
        .read_stream(stream, 1, 100_000)
        .unwrap()
        .iter()
        .filter(|e| e.event_id == id)
        .count()
}

/// What a service killed after recording a message and before acking it leaves behind: the
/// broker delivers the message again (to the next consumer), and it is recorded once.
#[test]
fn an_observation_recorded_but_not_acked_is_delivered_again_and_recorded_once() {
    let live = world();
    let mut engine =
        Engine::open(live.journal.clone(), OrgId::new(ORG), live.clock.clone()).unwrap();
    for e in demo() {
        engine.crm(e).unwrap();
    }
    let mailbox = engine.mailbox_ids().next().expect("a mailbox").clone();
    drop(engine);
    let vhost = Vhost::new();
    let message = BusMessage::observation(
        mailbox.clone(),
        Event::IntentSucceeded(ledgersync_domain::event::IntentSucceeded {
            intent: ledgersync_domain::EventId::from_u128(7),
            remote: None,
            etag: None,
            crm: None,
        }),
    );
    let id = message.id();
    let stream = StreamId::mailbox(&mailbox);
    System::new().block_on(async {
        let targets = actors(&live);
        let (org, registry) = (targets.org.clone(), targets.registry.clone());
        // Recovered: the organization knows its mailboxes.
        org.send(ledgersync_runtime::InspectDirectory)
            .await
            .unwrap()
            .unwrap();
        let config = AmqpConfig {
            url: vhost.url(),
            partitions: 8,
            queue_type: QueueType::Quorum,
            ..AmqpConfig::default()
        };
        let first = AmqpBus::connect(config.clone(), live.clock.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        first.publish(message.clone()).await.unwrap();
        // The first consumer records the observation and goes away before its ack.
        let mut consumer = first.consume(message.queue(8)).await.unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .unwrap()
            .unwrap();
        let BusMessage::MailObservation { incoming, .. } = delivery.message().unwrap().clone()
        else {
            panic!("a mail observation")
        };
        registry
            .send(ledgersync_runtime::ObserveMailbox::new(
                mailbox.clone(),
                incoming,
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(recorded_times(live.journal.as_ref(), &stream, id), 1);
        drop(delivery);
        drop(consumer);
        first.close().await;

        // The next consumer gets it again, redelivered; the mailbox answers it with nothing.
        let second = Arc::new(
            AmqpBus::connect(config, live.clock.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let mut consumer = second.consume(message.queue(8)).await.unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .unwrap()
            .unwrap();
        assert!(delivery.redelivered());
        let settled = ledgersync_runtime::settle_one(delivery, &targets).await;
        assert_eq!(settled, ledgersync_runtime::Settled::Acked);
        second.close().await;
    });
    assert_eq!(
        recorded_times(live.journal.as_ref(), &stream, id),
        1,
        "recorded once"
    );
    // And once more after the mailbox is rebuilt from its log (the ids come from the stream).
    let core =
        ledgersync_engine::mailbox::MailboxCore::recover(live.journal.as_ref(), mailbox).unwrap();
    assert!(core.already_observed(&id));
}
