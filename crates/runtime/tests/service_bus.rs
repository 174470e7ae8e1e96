//! The service consuming its CRM queue (`Service::attach_bus`), on the in-process bus: lines
//! taken together are recorded under their message ids; a bad line is dead-lettered with its
//! reason and field, and so is a line that depends on it; the others are recorded; a line
//! delivered again is recorded once; a command result for a command that is not open is
//! acknowledged. The same code runs on RabbitMQ in `crates/cli/tests/serve_amqp.rs`.

use actix::System;
use ledgersync_bus::{Bus, BusMessage, InProcessBus};
use ledgersync_domain::{OrgId, StreamId, Timestamp};
use ledgersync_engine::ManualClock;
use ledgersync_journal::{Journal, JournalOptions};
use ledgersync_runtime::{
    BusConfig, RegistryConfig, Replies, SchedulerConfig, Service, ServiceConfig, Sink,
};
use std::sync::Arc;
use std::time::Duration;

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn org_ids(journal: &dyn Journal) -> Vec<ledgersync_domain::EventId> {
    journal
        .read_stream(&StreamId::org(&OrgId::new("serenity")), 1, 10_000)
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect()
}

#[test]
fn lines_taken_together_record_the_good_ones_and_dead_letter_the_bad_with_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let journal = ledgersync_journal::open(&dir.path().join("journal"), &JournalOptions::default())
        .expect("open journal");
    let clock = Arc::new(ManualClock::new(T0));
    let lines = [
        // 0: good
        r#"{"kind": "user_registered", "user": "jayne", "name": "Jayne Cobb", "email": "jayne@serenity.example"}"#,
        // 1: a profile with an impossible limit (field `max_connections`)
        r#"{"kind": "profile_registered", "profile": "groupware", "name": "Groupware", "server_type": "groupware", "max_connections": 100000}"#,
        // 2: depends on line 1: its profile was refused
        r#"{"kind": "mailbox_registered", "mailbox": "mbx-jayne", "address": "jayne@serenity.example", "profile": "groupware"}"#,
        // 3: good
        r#"{"kind": "user_registered", "user": "paul", "name": "Paul Blart", "email": "paul@serenity.example"}"#,
        // 4: a result for a command nobody asked for: its key names no registered mailbox
        r#"{"kind": "command_result", "key": "mbx-nobody/0193a2b4-0000-7000-8000-000000000001", "status": "done", "record": "x", "version": 1}"#,
    ];
    let messages: Vec<BusMessage> = lines.iter().map(|l| BusMessage::crm_line(*l)).collect();
    let ids: Vec<_> = messages.iter().map(BusMessage::id).collect();
    let journal_for_test = journal.clone();
    let expected = vec![ids[0], ids[3]];
    System::new().block_on(async move {
        let bus = Arc::new(InProcessBus::new(4, clock.clone()));
        // All published before the consumer starts: taken as one batch.
        bus.publish_all(&messages).await.unwrap();
        // The first line again, same id: a redelivery.
        bus.publish(messages[0].clone()).await.unwrap();
        let config = ServiceConfig {
            org: OrgId::new("serenity"),
            data_dir: dir.path().to_path_buf(),
            registry: RegistryConfig::default(),
            scheduler: SchedulerConfig::default(),
            mailboxes: Vec::new(),
            projection_every: Duration::from_secs(60),
            push_quiet: Duration::from_millis(500),
        };
        let service = Arc::new(
            Service::start_with(journal, clock, config, None, Sink::Direct)
                .await
                .unwrap(),
        );
        service.attach_bus(bus.clone(), Replies::default(), BusConfig::default());
        tokio::time::timeout(Duration::from_secs(30), bus.settled())
            .await
            .expect("every line settled");
        let dead = bus.dead_letters().await.unwrap();
        let reasons: Vec<(String, Option<String>)> = dead
            .iter()
            .map(|d| {
                (
                    d.message
                        .as_ref()
                        .map(|m| m.id().to_string())
                        .unwrap_or_default(),
                    d.reason.field.clone(),
                )
            })
            .collect();
        assert_eq!(dead.len(), 3, "{dead:#?}");
        assert_eq!(
            reasons[0],
            (ids[1].to_string(), Some("max_connections".into())),
            "{dead:#?}"
        );
        assert_eq!(reasons[1].0, ids[2].to_string(), "{dead:#?}");
        assert!(
            dead[1].reason.reason.contains("groupware"),
            "{}",
            dead[1].reason.reason
        );
        assert_eq!(
            reasons[2],
            (ids[4].to_string(), Some("key".into())),
            "{dead:#?}"
        );
        service.stop().await.unwrap();
    });
    assert_eq!(
        org_ids(journal_for_test.as_ref()),
        expected,
        "the good lines, once each, under their message ids"
    );
}

/// The next message of the CRM command queue, as the adapter reads it.
async fn next_command(consumer: &mut ledgersync_bus::InProcessConsumer) -> serde_json::Value {
    use ledgersync_bus::Consumer;
    let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("a command within 30 s")
        .expect("the bus is open");
    assert_eq!(
        delivery.wire().schema.as_deref(),
        Some(ledgersync_bus::CRM_COMMAND_SCHEMA)
    );
    let command: serde_json::Value = serde_json::from_slice(&delivery.wire().body).unwrap();
    assert_eq!(
        delivery.message_id(),
        command["intent"].as_str(),
        "the message id is the intent id"
    );
    delivery.ack().await.unwrap();
    command
}

/// A meeting tracked on the mail server goes to the CRM command queue; a retryable failure
/// brings it back once its retry time has come, with the same key; a done result links it.
#[test]
fn a_crm_command_is_published_again_after_a_retryable_failure_and_closed_by_its_result() {
    use ledgersync_domain::event::{ItemSeen, RemoteFields, RemoteItem, TrackedBy};
    use ledgersync_domain::records::ShowAs;
    use ledgersync_domain::{Duration as Minutes, Event, MailboxId, RemoteId};
    use ledgersync_engine::scenario::{MAILBOXES, mailbox_events, organization_events};
    let dir = tempfile::tempdir().unwrap();
    let journal = ledgersync_journal::open(&dir.path().join("journal"), &JournalOptions::default())
        .expect("open journal");
    let clock = Arc::new(ManualClock::new(T0));
    let org = OrgId::new("serenity");
    let mut setup = organization_events();
    for (mailbox, user) in MAILBOXES {
        setup.extend(mailbox_events(&org, mailbox, user, true));
    }
    let jayne = MailboxId::new("mbx-jayne");
    let lunch = Event::ItemSeen(ItemSeen {
        item: RemoteItem {
            remote: RemoteId::new("calendar/lunch.ics"),
            etag: "\"1\"".into(),
            content_hash: 1,
            tracked: Some(TrackedBy::Category),
            copy_of: None,
            fields: RemoteFields::Appointment {
                subject: "Lunch with Kaylee".into(),
                organizer: Some("jayne@serenity.example".into()),
                start: T0 + Minutes::days(1),
                end: T0 + Minutes::days(1) + Minutes::minutes(60),
                show_as: ShowAs::Busy,
            },
        },
    });
    let journal_for_test = journal.clone();
    System::new().block_on(async move {
        let bus = Arc::new(InProcessBus::new(4, clock.clone()));
        let config = ServiceConfig {
            org: org.clone(),
            data_dir: dir.path().to_path_buf(),
            registry: RegistryConfig::default(),
            scheduler: SchedulerConfig::default(),
            mailboxes: Vec::new(),
            projection_every: Duration::from_secs(60),
            push_quiet: Duration::from_millis(500),
        };
        let service = Arc::new(
            Service::start_with(journal, clock.clone(), config, None, Sink::Direct)
                .await
                .unwrap(),
        );
        service.attach_bus(bus.clone(), Replies::default(), BusConfig::default());
        let mut adapter = bus.consume(ledgersync_bus::Queue::CrmCommands).await.unwrap();
        bus.publish_all(&setup.into_iter().map(BusMessage::crm).collect::<Vec<_>>())
            .await
            .unwrap();
        bus.settled().await;
        bus.publish(BusMessage::observation(jayne.clone(), lunch))
            .await
            .unwrap();

        let first = next_command(&mut adapter).await;
        assert_eq!(first["command"], "track_appointment", "{first}");
        assert_eq!(first["attempts"], 0);
        let key = first["key"].as_str().unwrap().to_string();
        bus.publish(BusMessage::crm_line(format!(
            r#"{{"kind": "command_result", "key": "{key}", "status": "failed", "retryable": true, "reason": "CRM in maintenance"}}"#
        )))
        .await
        .unwrap();
        bus.settled().await;
        // Not before its retry time (transient_retry_interval_minutes, 5 by default).
        let early = tokio::time::timeout(Duration::from_millis(2500), next_command(&mut adapter)).await;
        assert!(early.is_err(), "published again before its retry time: {early:?}");
        clock.advance(Minutes::minutes(6));
        let again = next_command(&mut adapter).await;
        assert_eq!((again["key"].as_str(), &again["attempts"]), (Some(key.as_str()), &serde_json::json!(1)));
        assert_eq!(again["last_error"]["message"], "CRM in maintenance");
        bus.publish(BusMessage::crm_line(format!(
            r#"{{"kind": "command_result", "key": "{key}", "status": "done", "record": "apt-lunch", "version": 1}}"#
        )))
        .await
        .unwrap();
        bus.settled().await;
        assert!(bus.dead_letters().await.unwrap().is_empty());
        service.stop().await.unwrap();
    });
    let stream = journal_for_test
        .read_stream(&StreamId::mailbox(&MailboxId::new("mbx-jayne")), 1, 10_000)
        .unwrap();
    let linked = stream
        .iter()
        .filter(|e| ledgersync_domain::event::type_name(e.event_type) == Some("link_created"))
        .count();
    assert_eq!(linked, 1, "the done result links the item once");
}
