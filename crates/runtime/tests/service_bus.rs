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
