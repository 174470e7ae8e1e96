//! The broker restarted in the middle of a 10,000-message run of `serve` with `[bus] kind =
//! "amqp"`: every message's effect is in the journal exactly once, none is lost, and the public
//! event stream is complete (counted by event id, positions without a gap).
//!
//! This restarts the local RabbitMQ (`rabbitmqctl stop_app` / `start_app`), so it is the only
//! test of its binary: cargo runs test binaries one after another.

mod common;

use common::{Serve, Site, stdout};
use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use ledgersync_bus::test_broker::{Vhost, rabbitmqctl, rabbitmqctl_command};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::Duration;

const LINES: usize = 10_000;
/// Of them, contacts of Paul (a mailbox: decisions and a card each); the rest are a user's
/// without a mailbox (recorded in the organization only).
const PAUL: usize = 200;

/// The broker is started again even if the test fails half-way.
struct BrokerStopped;

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        let _ = rabbitmqctl_command().args(["-q", "start_app"]).status();
    }
}

fn publish(site: &Site, name: &str, text: &str) -> Vec<String> {
    let file = site.root.join(name);
    fs::write(&file, text).unwrap();
    site.publish(&file)
}

fn counts(site: &Site, ids: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in site.journal() {
        let id = e["event_id"].as_str().unwrap();
        if ids.contains(id) {
            *counts.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn a_broker_restarted_mid_run_loses_nothing_doubles_nothing_and_the_stream_is_complete() {
    let vhost = Vhost::new();
    let site = Site::on_bus(&vhost.url());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A durable queue of the test's own on the event stream, bound before anything runs: it
    // keeps every message published, across the restart.
    runtime.block_on(async {
        let connection = Connection::connect(&vhost.url(), ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.unwrap();
        channel
            .exchange_declare(
                "ledgersync.events".into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_declare(
                "test.stream".into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                "test.stream".into(),
                "ledgersync.events".into(),
                "serenity.#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        connection.close(200, "bound".into()).await.unwrap();
    });

    let serve = Serve::start(&site, "serve.log");
    let example = fs::read_to_string(site.example_changes()).unwrap();
    let wash = r#"{"kind": "user_registered", "user": "wash", "name": "Hoban Washburne", "email": "wash@serenity.example"}"#;
    let setup: BTreeSet<String> = publish(&site, "setup.jsonl", &format!("{example}{wash}\n"))
        .into_iter()
        .collect();
    serve.wait_for("the example recorded", || {
        (counts(&site, &setup).len() == setup.len()).then_some(())
    });

    let batch: String = (0..LINES)
        .map(|i| {
            let owner = if i < PAUL { "paul" } else { "wash" };
            format!(
                "{{\"kind\": \"record_upserted\", \"record\": {{\"entity\": \"contact\", \"id\": \"con-{i:05}\", \"owner\": \"{owner}\", \"version\": 1, \"full_name\": \"Contact {i}\", \"email\": \"c{i}@customer.example\", \"state\": \"active\"}}}}\n"
            )
        })
        .collect();
    let ids: BTreeSet<String> = publish(&site, "batch.jsonl", &batch).into_iter().collect();
    assert_eq!(ids.len(), LINES);

    // The broker goes away while the service works through the run, and comes back.
    serve.wait_for("part of the run recorded", || {
        let n = counts(&site, &ids).len();
        (200..LINES).contains(&n).then_some(())
    });
    let stopped = BrokerStopped;
    rabbitmqctl(&["stop_app"]);
    std::thread::sleep(Duration::from_secs(3));
    rabbitmqctl(&["start_app"]);
    drop(stopped);

    let recorded = serve.wait_for("every message recorded", || {
        let c = counts(&site, &ids);
        (c.len() == LINES).then_some(c)
    });
    let twice: Vec<_> = recorded.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "recorded more than once: {twice:?}");
    // Paul's contacts each reach his address book once.
    let contacts = site.root.join("vdir/paul/contacts");
    serve.wait_for("Paul's contacts in his address book", || {
        let cards = fs::read_dir(&contacts)
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("con-00"))
            .count();
        (cards == PAUL).then_some(())
    });

    // The public stream: every event of the journal, by event id, once the publisher's
    // checkpoint has reached the journal's end.
    let checkpoint = site.data.join("event-stream.checkpoint");
    let all = serve.wait_for("the event stream caught up", || {
        std::thread::sleep(Duration::from_secs(1));
        let all = site.journal();
        let at = fs::read_to_string(&checkpoint).unwrap_or_default();
        (at.trim() == format!("position {}", all.len())).then_some(all)
    });
    let positions: Vec<u64> = all
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (1..=all.len() as u64).collect::<Vec<_>>());
    let expected: BTreeSet<String> = all
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    let (received, duplicates) = runtime.block_on(async {
        let connection = Connection::connect(&vhost.url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let mut consumer = channel
            .basic_consume(
                "test.stream".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut received = BTreeSet::new();
        let mut duplicates = 0;
        while received.len() < expected.len() {
            let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "the stream stopped after {} of {} events",
                        received.len(),
                        expected.len()
                    )
                })
                .unwrap()
                .unwrap();
            let id = delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .to_string();
            if !received.insert(id) {
                duplicates += 1;
            }
            delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        (received, duplicates)
    });
    assert_eq!(received, expected, "every event of the journal, none other");
    eprintln!(
        "{} events in the journal, {} on the stream (+{duplicates} duplicates)",
        all.len(),
        received.len()
    );
    let logged = serve.log();
    assert!(!logged.contains("guest:guest"), "{logged}");
    let replay = site.run(&["replay"]);
    assert!(replay.status.success(), "{}", stdout(&replay));
}
