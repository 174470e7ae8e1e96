//! What `AmqpBus::status` reads of the broker, and that it changes nothing there: a fresh
//! topology (64 partitions, nothing waiting), the depth of a partition after publishing, its
//! consumer, a dead letter with its reason (listed, and still there afterwards), queues never
//! declared shown as such, the CRM commands' queue (or exchange) of another component shown
//! when present, and a missing broker named with what to do. Needs RabbitMQ on 127.0.0.1:5672
//! (guest/guest); each test works in a vhost of its own, and fails (never skips) when the
//! broker is missing.

mod common;

use common::*;
use ledgersync_bus::{
    AmqpBus, AmqpConfig, ArgumentValue, Bus, BusStatus, ConnectError, Consumer, DeadLetterReason,
    Queue, QueueStats, QueueType, TopologyRole, partition_of,
};
use ledgersync_domain::MailboxId;
use ledgersync_engine::ManualClock;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The configuration `serve` and `bus status` use (64 partitions, quorum queues), in `vhost`.
fn config(vhost: &Vhost) -> AmqpConfig {
    AmqpConfig {
        url: vhost.url(),
        publish_timeout: Duration::from_secs(20),
        connection_name: format!("ledgersync-test {}", vhost.name),
        ..AmqpConfig::default()
    }
}

async fn passive(config: AmqpConfig) -> AmqpBus {
    AmqpBus::connect_passive(config, Arc::new(ManualClock::new(NOW)))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn status(bus: &AmqpBus) -> BusStatus {
    within(30, "the status", bus.status())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn stats(status: &BusStatus, role: TopologyRole) -> Option<QueueStats> {
    status
        .queue(role)
        .unwrap_or_else(|| panic!("no {role:?} in {status:?}"))
        .stats
}

/// The names of what the vhost holds: queues, and exchanges other than the broker's own.
fn broker_names(vhost: &Vhost) -> (Vec<String>, Vec<String>) {
    let list = |what: &str| -> Vec<Value> {
        let out = rabbitmqctl(&[what, "-p", &vhost.name, "name", "--formatter", "json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let names = |values: Vec<Value>| -> Vec<String> {
        let mut names: Vec<String> = values
            .iter()
            .filter_map(|v| v["name"].as_str())
            .filter(|n| !n.is_empty() && !n.starts_with("amq."))
            .map(str::to_string)
            .collect();
        names.sort();
        names
    };
    (names(list("list_queues")), names(list("list_exchanges")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_topology_shows_64_empty_partitions_and_what_is_not_declared() {
    let vhost = Vhost::new();
    let declaring = connect(config(&vhost)).await;
    let before = broker_names(&vhost);
    let bus = passive(config(&vhost)).await;
    let status = status(&bus).await;

    let summary = status.partition_summary();
    assert_eq!(summary.partitions, 64);
    assert_eq!(summary.declared, 64, "{summary:?}");
    assert_eq!(summary.messages_waiting, 0);
    assert_eq!(summary.with_consumer, 0);
    assert_eq!(summary.without_consumer, (0..64).collect::<Vec<_>>());
    assert!(summary.not_declared.is_empty());
    let partitions: Vec<&str> = status
        .queues
        .iter()
        .filter(|q| matches!(q.role, TopologyRole::Partition(_)))
        .map(|q| q.name.as_str())
        .collect();
    assert_eq!(partitions.len(), 64);
    assert_eq!(partitions[0], "ledgersync.partition.0");
    assert_eq!(partitions[63], "ledgersync.partition.63");

    let crm = status.queue(TopologyRole::Crm).unwrap();
    assert_eq!(crm.name, "ledgersync.crm");
    assert_eq!(
        crm.stats,
        Some(QueueStats {
            messages: 0,
            consumers: 0
        })
    );
    let argument = |name: &str| {
        crm.arguments
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        argument("x-queue-type"),
        Some(ArgumentValue::Text("quorum".into()))
    );
    assert_eq!(
        argument("x-single-active-consumer"),
        Some(ArgumentValue::Bool(true))
    );
    assert_eq!(
        argument("x-dead-letter-exchange"),
        Some(ArgumentValue::Text("ledgersync.dead-letter".into()))
    );
    assert_eq!(argument("x-delivery-limit"), Some(ArgumentValue::Int(100)));
    assert_eq!(status.queue_type, QueueType::Quorum);

    assert_eq!(
        stats(&status, TopologyRole::DeadLetters),
        Some(QueueStats::default())
    );
    let dlx = status.exchange(TopologyRole::DeadLetterExchange).unwrap();
    assert_eq!(
        (dlx.name.as_str(), dlx.kind, dlx.declared),
        ("ledgersync.dead-letter", Some("fanout"), true)
    );
    // Nothing publishes the event stream here: it is not declared. The CRM commands' queue
    // is the bus's own, empty.
    let events = status.exchange(TopologyRole::Events).unwrap();
    assert_eq!(
        (events.name.as_str(), events.declared),
        ("ledgersync.events", false)
    );
    let commands = status.queue(TopologyRole::CrmCommands).unwrap();
    assert_eq!(commands.name, "ledgersync.crm.commands");
    assert_eq!(
        commands.stats,
        Some(QueueStats {
            messages: 0,
            consumers: 0
        })
    );

    // The password never shows.
    assert_eq!(
        status.url,
        format!("amqp://guest:***@127.0.0.1:5672/{}", vhost.name)
    );
    // Looking changed nothing.
    assert_eq!(broker_names(&vhost), before);
    declaring.close().await;
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_messages_published_to_a_partition_are_its_depth_and_its_consumer_counts() {
    let vhost = Vhost::new();
    let bus = connect(config(&vhost)).await;
    let messages: Vec<_> = (1..=3).map(|n| outcome("mbx-kaylee", n)).collect();
    bus.publish_all(&messages).await.unwrap();
    let partition = partition_of(&MailboxId::new("mbx-kaylee"), 64);

    let looking = passive(config(&vhost)).await;
    let seen = status(&looking).await;
    assert_eq!(
        stats(&seen, TopologyRole::Partition(partition)),
        Some(QueueStats {
            messages: 3,
            consumers: 0
        })
    );
    let summary = seen.partition_summary();
    assert_eq!(summary.messages_waiting, 3);
    assert_eq!(summary.with_consumer, 0);
    assert_eq!(
        looking
            .queue_stats(&format!("ledgersync.partition.{partition}"))
            .await
            .unwrap(),
        Some(QueueStats {
            messages: 3,
            consumers: 0
        })
    );

    // A consumer subscribes (and takes the three into its prefetch window).
    let mut consumer = bus.consume(Queue::Partition(partition)).await.unwrap();
    let first = within(30, "a delivery", consumer.next()).await.unwrap();
    assert_eq!(n_of(first.message().unwrap()), 1);
    let seen = status(&looking).await;
    let summary = seen.partition_summary();
    assert_eq!(summary.with_consumer, 1, "{summary:?}");
    assert_eq!(summary.without_consumer.len(), 63);
    assert!(!summary.without_consumer.contains(&partition));
    assert_eq!(
        stats(&seen, TopologyRole::Partition(partition)).map(|s| s.consumers),
        Some(1)
    );
    drop(consumer);
    bus.close().await;
    looking.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_shows_with_its_reason_and_stays() {
    let vhost = Vhost::new();
    let bus = connect(config(&vhost)).await;
    let bad = outcome("mbx-river", 7);
    bus.publish(bad.clone()).await.unwrap();
    let queue = bad.queue(64);
    let mut consumer = bus.consume(queue).await.unwrap();
    let delivery = within(30, "a delivery", consumer.next()).await.unwrap();
    let reason = DeadLetterReason {
        reason: "invalid input: mailbox `mbx-river` is not known to the organization".into(),
        field: Some("mailbox".into()),
        line: Some(1),
        column: Some(12),
    };
    delivery.dead_letter(reason.clone()).await.unwrap();
    drop(consumer);

    let looking = passive(config(&vhost)).await;
    let seen = status(&looking).await;
    assert_eq!(
        stats(&seen, TopologyRole::DeadLetters).map(|s| s.messages),
        Some(1)
    );
    let dead = within(30, "the dead letters", looking.dead_letters())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason, reason);
    assert_eq!(dead[0].queue, Some(queue));
    assert_eq!(dead[0].at, Some(NOW));
    // Listing gave it back: it is still there for the next look.
    let mut still = None;
    for _ in 0..50 {
        still = stats(&status(&looking).await, TopologyRole::DeadLetters).map(|s| s.messages);
        if still == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(still, Some(1));
    bus.close().await;
    looking.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_never_declared_show_as_not_declared_and_nothing_is_created() {
    let vhost = Vhost::new();
    // A broker nobody declared anything on.
    let bus = passive(config(&vhost)).await;
    assert!(!bus.declares());
    let seen = status(&bus).await;
    assert!(seen.queues.iter().all(|q| q.stats.is_none()), "{seen:?}");
    assert!(seen.exchanges.iter().all(|e| !e.declared), "{seen:?}");
    let summary = seen.partition_summary();
    assert_eq!(summary.declared, 0);
    assert_eq!(summary.not_declared.len(), 64);
    assert_eq!(bus.queue_stats("ledgersync.crm").await.unwrap(), None);
    assert!(!bus.exchange_exists("ledgersync.dead-letter").await.unwrap());
    // Publishing through a passive bus declares nothing either: the message is not taken.
    assert!(bus.publish(change(1)).await.is_err());
    bus.close().await;
    assert_eq!(broker_names(&vhost), (vec![], vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crm_commands_queue_shows_the_commands_waiting_for_the_adapter() {
    let vhost = Vhost::new();
    let bus = connect(config(&vhost)).await;
    let command = ledgersync_bus::WireMessage {
        body: b"{}".to_vec(),
        content_type: Some("application/json".into()),
        message_id: Some("0190c0de-0000-7000-8000-000000000001".into()),
        schema: Some(ledgersync_bus::CRM_COMMAND_SCHEMA.into()),
        schema_version: Some("1".into()),
    };
    bus.publish_wire(Queue::CrmCommands, vec![command])
        .await
        .unwrap();
    let mut commands = status(&bus)
        .await
        .queue(TopologyRole::CrmCommands)
        .unwrap()
        .stats;
    for _ in 0..50 {
        if commands.is_some_and(|s| s.messages == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        commands = status(&bus)
            .await
            .queue(TopologyRole::CrmCommands)
            .unwrap()
            .stats;
    }
    assert_eq!(
        commands,
        Some(QueueStats {
            messages: 1,
            consumers: 0
        })
    );
    bus.close().await;
}

#[tokio::test]
async fn a_missing_broker_says_how_to_start_one_without_the_password() {
    let config = AmqpConfig {
        url: "amqp://ops:s3cret-pw@127.0.0.1:1/%2f".into(),
        ..AmqpConfig::default()
    };
    let e = AmqpBus::connect_passive(config, Arc::new(ManualClock::new(NOW)))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectError::Unreachable { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("scripts/services.sh start"), "{text}");
    assert!(text.contains("amqp://ops:***@127.0.0.1:1/%2f"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}
