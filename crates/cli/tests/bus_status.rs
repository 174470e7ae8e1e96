//! `ledgersync bus status` as a user runs it: the binary with a configuration whose `[bus]`
//! points at RabbitMQ on 127.0.0.1:5672, a vhost of the test's own (a missing broker fails the
//! test, never skips it): the topology, a partition's depth, a dead letter with its reason, in
//! JSON and in text, and nothing changed on the broker; the in-process bus says it has nothing
//! to show; an unreachable broker is an error that says what to do and hides the password.

mod common;

use common::{ledgersync, stderr, stdout};
use ledgersync_bus::test_broker::{Vhost, rabbitmqctl};
use ledgersync_bus::{AmqpBus, AmqpConfig, Bus, BusMessage, Consumer, DeadLetterReason};
use ledgersync_domain::event::IntentSucceeded;
use ledgersync_domain::{Event, EventId, MailboxId};
use ledgersync_engine::SystemClock;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

fn config_file(dir: &tempfile::TempDir, bus: &str) -> String {
    let path = dir.path().join("ledgersync.toml");
    std::fs::write(&path, bus).unwrap();
    path.to_str().unwrap().to_string()
}

fn observation(mailbox: &str, n: u128) -> BusMessage {
    BusMessage::observation(
        MailboxId::new(mailbox),
        Event::IntentSucceeded(IntentSucceeded {
            intent: EventId::from_u128(n),
            remote: None,
            etag: None,
            crm: None,
        }),
    )
}

fn queue_names(vhost: &Vhost) -> String {
    rabbitmqctl(&["list_queues", "-p", &vhost.name, "name", "messages"])
}

#[test]
fn bus_status_json_shows_the_topology_depths_and_dead_letters() {
    let vhost = Vhost::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let bus = AmqpBus::connect(
            AmqpConfig {
                url: vhost.url(),
                ..AmqpConfig::default()
            },
            Arc::new(SystemClock),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        // Three messages wait on mbx-zoe's partition; one of mbx-wash's is dead-lettered.
        let waiting: Vec<BusMessage> = (1..=3).map(|n| observation("mbx-zoe", n)).collect();
        bus.publish_all(&waiting).await.unwrap();
        let bad = observation("mbx-wash", 9);
        bus.publish(bad.clone()).await.unwrap();
        let mut consumer = bus.consume(bad.queue(64)).await.unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("a delivery within 30 s")
            .unwrap();
        delivery
            .dead_letter(DeadLetterReason {
                reason: "invalid input: mailbox `mbx-wash` is not known".into(),
                field: Some("mailbox".into()),
                line: Some(1),
                column: Some(12),
            })
            .await
            .unwrap();
        drop(consumer);
        // Closed: its consumer is surely gone before the status is read.
        bus.close().await;
    });
    let zoe = ledgersync_bus::partition_of(&MailboxId::new("mbx-zoe"), 64);
    let wash = ledgersync_bus::partition_of(&MailboxId::new("mbx-wash"), 64);
    assert_ne!(zoe, wash, "the test needs two partitions");

    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        &dir,
        &format!(
            "[bus]\nkind = \"amqp\"\nurl = \"{}\"\npublish_events = false\n",
            vhost.url()
        ),
    );
    let before = queue_names(&vhost);
    let out = ledgersync(&["--config", &config, "bus", "status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));

    assert_eq!(status["kind"], "amqp");
    assert_eq!(
        status["url"],
        format!("amqp://guest:***@127.0.0.1:5672/{}", vhost.name)
    );
    assert_eq!(status["partitions"], 64);
    assert_eq!(status["queue_type"], "quorum");
    let queues = status["queues"].as_array().unwrap();
    let queue = |name: &str| -> &Value {
        queues
            .iter()
            .find(|q| q["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    let crm = queue("ledgersync.crm");
    assert_eq!(crm["declared"], true);
    assert_eq!(crm["messages"], 0);
    assert_eq!(crm["arguments"]["x-queue-type"], "quorum");
    assert_eq!(crm["arguments"]["x-single-active-consumer"], true);
    assert_eq!(
        crm["arguments"]["x-dead-letter-exchange"],
        "ledgersync.dead-letter"
    );
    assert_eq!(crm["arguments"]["x-delivery-limit"], 100);
    let partitions: Vec<&Value> = queues.iter().filter(|q| q["role"] == "partition").collect();
    assert_eq!(partitions.len(), 64);
    let depth = queue(&format!("ledgersync.partition.{zoe}"));
    assert_eq!(depth["messages"], 3, "{depth}");
    assert_eq!(depth["consumers"], 0);
    assert_eq!(depth["partition"], zoe);
    assert_eq!(queue("ledgersync.dead-letters")["messages"], 1);
    let commands = queue("ledgersync.crm.commands");
    assert_eq!(commands["declared"], true);
    assert_eq!(commands["messages"], 0);

    let exchanges = status["exchanges"].as_array().unwrap();
    let exchange = |name: &str| exchanges.iter().find(|e| e["name"] == name).unwrap();
    assert_eq!(exchange("ledgersync.dead-letter")["kind"], "fanout");
    assert_eq!(exchange("ledgersync.dead-letter")["declared"], true);
    assert_eq!(exchange("ledgersync.events")["declared"], false);

    let summary = &status["partition_summary"];
    assert_eq!(summary["partitions"], 64);
    assert_eq!(summary["declared"], 64);
    assert_eq!(summary["with_consumer"], 0);
    assert_eq!(summary["messages_waiting"], 3);
    assert_eq!(summary["without_consumer"].as_array().unwrap().len(), 64);

    let dead = &status["dead_letters"];
    assert_eq!(dead["count"], 1);
    assert_eq!(dead["limit"], 20);
    assert_eq!(dead["listed"], 1);
    let newest = dead["newest"].as_array().unwrap();
    assert_eq!(newest.len(), 1, "{dead}");
    assert_eq!(
        newest[0]["reason"],
        "invalid input: mailbox `mbx-wash` is not known"
    );
    assert_eq!(newest[0]["field"], "mailbox");
    assert_eq!(newest[0]["line"], 1);
    assert_eq!(newest[0]["column"], 12);
    assert_eq!(newest[0]["queue"], format!("ledgersync.partition.{wash}"));
    assert!(newest[0]["at"].as_str().unwrap().ends_with('Z'), "{dead}");

    // The text form says the same, in words.
    let out = ledgersync(&["--config", &config, "bus", "status", "--limit", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("partitions: 64 partitions, 0 with an active consumer, 3 messages waiting"),
        "{text}"
    );
    assert!(text.contains("without a consumer: 0..63"), "{text}");
    assert!(text.contains("ledgersync.crm.commands  "), "{text}");
    assert!(text.contains("not declared"), "{text}");
    assert!(
        text.contains("reason: invalid input: mailbox `mbx-wash` is not known"),
        "{text}"
    );
    assert!(!text.contains("guest:guest"), "{text}");

    // Nothing changed: the same queues with the same messages; the dead letter is still there.
    let mut after = queue_names(&vhost);
    for _ in 0..50 {
        if after == before {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        after = queue_names(&vhost);
    }
    assert_eq!(after, before);
}

#[test]
fn bus_status_on_an_empty_vhost_shows_nothing_declared_and_declares_nothing() {
    let vhost = Vhost::new();
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        &dir,
        &format!("[bus]\nkind = \"amqp\"\nurl = \"{}\"\n", vhost.url()),
    );
    let out = ledgersync(&["--config", &config, "--json", "bus", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        status["queues"]
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["declared"] == false),
        "{status}"
    );
    assert_eq!(status["partition_summary"]["declared"], 0);
    assert_eq!(status["dead_letters"]["declared"], false);
    assert_eq!(queue_names(&vhost).trim(), "");
}

#[test]
fn bus_status_with_the_in_process_bus_says_there_is_nothing_to_show() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&dir, "[bus]\nkind = \"in-process\"\n");
    let out = ledgersync(&["--config", &config, "bus", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("lives inside `ledgersync serve`"),
        "{}",
        stdout(&out)
    );
    let out = ledgersync(&["bus", "status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["kind"], "in-process");
}

#[test]
fn bus_status_without_a_broker_says_how_to_start_one_and_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        &dir,
        "[bus]\nkind = \"amqp\"\nurl = \"amqp://ops:s3cret-pw@127.0.0.1:1/%2f\"\n",
    );
    let out = ledgersync(&["--config", &config, "bus", "status", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("scripts/services.sh start"), "{err}");
    assert!(err.contains("amqp://ops:***@127.0.0.1:1/%2f"), "{err}");
    assert!(
        !err.contains("s3cret") && !stdout(&out).contains("s3cret"),
        "{err}"
    );
}
