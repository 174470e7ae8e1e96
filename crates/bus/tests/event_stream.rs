//! The public event stream on RabbitMQ: every event of a journal published on
//! `ledgersync.events` and read back by a separate consumer, complete and in order per stream;
//! a publisher dropped mid-run and started again resumes from its checkpoint with no gap, and
//! one whose connection the broker closes connects again and keeps its place; a
//! consumer written in Python with pika from `docs/event-stream.md` alone reads the events.
//! Needs RabbitMQ on 127.0.0.1:5672 (guest/guest), each test in a vhost of its own, and
//! `python3` with `pika` for the last test; anything missing fails the test.

mod common;

use common::Vhost;
use futures_util::StreamExt as _;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use ledgersync_bus::events::{
    CHECKPOINT_FILE, Checkpoint, EVENTS_EXCHANGE, EventPublisher, EventPublisherConfig,
};
use ledgersync_domain::{Event, OrgId, Timestamp};
use ledgersync_engine::log::{Stored, event_json};
use ledgersync_engine::{Engine, ManualClock, scenario};
use ledgersync_journal::{Journal, JournalOptions};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const ORG: &str = "serenity";
const T0: Timestamp = Timestamp(1_800_000_000_000);

fn demo() -> Vec<Event> {
    scenario::story(&OrgId::new(ORG), T0)
        .into_iter()
        .flat_map(|step| step.events)
        .collect()
}

fn open_journal(dir: &Path) -> Arc<dyn Journal> {
    ledgersync_journal::open(&dir.join("journal"), &JournalOptions::default()).expect("journal")
}

/// Records `changes` through the engine: CRM changes on `org/serenity` and the mailboxes'
/// decisions on their own streams.
fn record(journal: &Arc<dyn Journal>, changes: &[Event]) {
    let clock = Arc::new(ManualClock::new(T0));
    let mut engine = Engine::open(journal.clone(), OrgId::new(ORG), clock).expect("engine");
    for change in changes {
        engine.crm(change.clone()).expect("recorded");
    }
}

fn journal_json(journal: &dyn Journal) -> Vec<Value> {
    journal
        .read_all(1, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|e| event_json(&Stored::decode(e).expect("decodes")))
        .collect()
}

fn config(vhost: &Vhost, dir: &Path, batch: usize) -> EventPublisherConfig {
    let mut config = EventPublisherConfig::new(vhost.url(), ORG, dir.join(CHECKPOINT_FILE));
    config.batch = batch;
    config.poll = Duration::from_millis(20);
    config
}

/// A message as the test consumer saw it.
#[derive(Debug, Clone)]
struct Seen {
    routing_key: String,
    message_id: String,
    body: Value,
    headers: BTreeMap<String, AMQPValue>,
}

/// A queue of the test's own, bound to the exchange with `#` before anything is published;
/// its messages arrive on the returned receiver.
async fn bind(
    vhost: &Vhost,
    name: &str,
) -> (Connection, tokio::sync::mpsc::UnboundedReceiver<Seen>) {
    let connection = Connection::connect(&vhost.url(), ConnectionProperties::default())
        .await
        .expect("test consumer connects");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .exchange_declare(
            EVENTS_EXCHANGE.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange");
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue");
    channel
        .queue_bind(
            name.into(),
            EVENTS_EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let mut consumer = channel
        .basic_consume(
            name.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let props = &d.properties;
            assert_eq!(
                props.content_type().as_ref().map(|t| t.as_str()),
                Some("application/json")
            );
            let headers = props
                .headers()
                .as_ref()
                .map(|h| {
                    h.inner()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let seen = Seen {
                routing_key: d.routing_key.as_str().to_string(),
                message_id: props
                    .message_id()
                    .as_ref()
                    .expect("message id")
                    .as_str()
                    .into(),
                body: serde_json::from_slice(&d.data).expect("a JSON body"),
                headers,
            };
            if tx.send(seen).is_err() {
                break;
            }
        }
    });
    (connection, rx)
}

/// Receives until every position up to `last` has been seen (duplicates kept).
async fn receive_through(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    last: u64,
) -> Vec<Seen> {
    let mut all = Vec::new();
    let mut positions = HashSet::new();
    while (1..=last).any(|p| !positions.contains(&p)) {
        let seen = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no message for 30 s; positions seen: {}", positions.len()))
            .expect("consumer open");
        positions.insert(seen.body["position"].as_u64().expect("position"));
        all.push(seen);
    }
    all
}

/// The first occurrence of each event id, in arrival order, grouped by stream: each stream's
/// `seq` must be 1, 2, 3 … (complete, in order).
fn assert_complete_in_order_per_stream(seen: &[Seen], expected: &[Value]) {
    let mut ids = HashSet::new();
    let mut by_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in seen {
        if ids.insert(s.message_id.clone()) {
            by_stream
                .entry(s.body["stream"].as_str().unwrap().to_string())
                .or_default()
                .push(s.body["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(
        ids.len(),
        expected.len(),
        "every event once after de-duplication"
    );
    assert!(
        by_stream.len() > 2,
        "events of several streams: {by_stream:?}"
    );
    for (stream, seqs) in &by_stream {
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, &want, "stream {stream} complete and in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_journal_event_is_published_in_order_with_its_id_key_and_headers() {
    let vhost = Vhost::new();
    let dir = tempfile::tempdir().unwrap();
    let journal = open_journal(dir.path());
    record(&journal, &demo());
    let expected = journal_json(journal.as_ref());
    let last = expected.len() as u64;
    let (_consumer, mut rx) = bind(&vhost, "test.all").await;

    let publisher = EventPublisher::new(journal.clone(), config(&vhost, dir.path(), 16))
        .unwrap()
        .spawn()
        .unwrap();
    let seen = receive_through(&mut rx, last).await;
    assert_complete_in_order_per_stream(&seen, &expected);

    for s in &seen {
        let position = s.body["position"].as_u64().unwrap();
        let want = &expected[(position - 1) as usize];
        assert_eq!(&s.body, want, "the body is the `events --json` object");
        assert_eq!(s.message_id, want["event_id"].as_str().unwrap());
        let stream = want["stream"].as_str().unwrap();
        let who = stream.strip_prefix("mailbox/").unwrap_or("_org");
        assert_eq!(
            s.routing_key,
            format!("{ORG}.{who}.{}", want["event_type"].as_str().unwrap())
        );
        assert_eq!(
            s.headers.get("ledgersync-schema"),
            Some(&AMQPValue::LongString("sync-event".into()))
        );
        assert_eq!(
            s.headers.get("ledgersync-schema-version"),
            Some(&AMQPValue::LongInt(1))
        );
        assert_eq!(
            s.headers.get("ledgersync-position"),
            Some(&AMQPValue::LongLongInt(position as i64))
        );
    }
    // The checkpoint reaches the last position once its batch is confirmed.
    tokio::time::timeout(Duration::from_secs(30), async {
        while publisher.confirmed() < last {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("checkpoint reaches the end");
    publisher.stop().await.expect("stops cleanly");
    assert_eq!(
        Checkpoint::at(dir.path().join(CHECKPOINT_FILE))
            .load()
            .unwrap(),
        last
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_dropped_mid_run_resumes_from_its_checkpoint_with_no_gap() {
    let vhost = Vhost::new();
    let dir = tempfile::tempdir().unwrap();
    let journal = open_journal(dir.path());
    let changes = demo();
    let (first, second) = changes.split_at(changes.len() / 2);
    record(&journal, first);
    let (_all, mut all_rx) = bind(&vhost, "test.all").await;

    let publisher = EventPublisher::new(journal.clone(), config(&vhost, dir.path(), 2))
        .unwrap()
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while publisher.confirmed() < 4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("a first batch confirmed");
    drop(publisher); // aborted between batches or in the middle of one

    // Events appended while no publisher runs, then a new queue that sees only the next run.
    record(&journal, second);
    let expected = journal_json(journal.as_ref());
    let last = expected.len() as u64;
    let (_resumed, mut resumed_rx) = bind(&vhost, "test.resumed").await;

    let publisher = EventPublisher::new(journal.clone(), config(&vhost, dir.path(), 2)).unwrap();
    let checkpoint = publisher.resumes_after();
    assert!(
        checkpoint >= 4,
        "the first run's checkpoint is kept: {checkpoint}"
    );
    assert_eq!(
        checkpoint,
        Checkpoint::at(dir.path().join(CHECKPOINT_FILE))
            .load()
            .unwrap()
    );
    assert!(last > checkpoint);
    let publisher = publisher.spawn().unwrap();
    let resumed = receive_through_from(&mut resumed_rx, checkpoint + 1, last).await;
    let positions: Vec<u64> = resumed
        .iter()
        .map(|s| s.body["position"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (checkpoint + 1..=last).collect();
    assert_eq!(
        positions, want,
        "the second run starts after the checkpoint, in order"
    );

    let all = receive_through(&mut all_rx, last).await;
    assert_complete_in_order_per_stream(&all, &expected);
    publisher.stop().await.expect("stops cleanly");
}

/// Receives `from..=last` exactly: the restarted publisher sends nothing before `from`.
async fn receive_through_from(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    from: u64,
    last: u64,
) -> Vec<Seen> {
    let mut out = Vec::new();
    while out.len() < (last - from + 1) as usize {
        let seen = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("a message within 30 s")
            .expect("consumer open");
        out.push(seen);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_pika_consumer_written_from_the_docs_reads_the_stream() {
    let vhost = Vhost::new();
    let dir = tempfile::tempdir().unwrap();
    let journal = open_journal(dir.path());
    record(&journal, &demo());
    let expected = journal_json(journal.as_ref());
    // What the consumer must find: the events of the first mailbox stream (binding
    // `serenity.<mailbox>.#`).
    let stream = expected
        .iter()
        .map(|e| e["stream"].as_str().unwrap())
        .find(|s| s.starts_with("mailbox/"))
        .expect("the demo records mailbox events")
        .to_string();
    let mailbox = stream.strip_prefix("mailbox/").unwrap().to_string();
    let mine: Vec<Value> = expected
        .iter()
        .filter(|e| e["stream"] == stream.as_str())
        .map(|e| {
            serde_json::json!({"position": e["position"], "event_id": e["event_id"],
                               "event_type": e["event_type"]})
        })
        .collect();
    assert!(mine.len() > 1, "the demo records events of {mailbox}");
    let expected_file = dir.path().join("expected.json");
    std::fs::write(&expected_file, serde_json::to_vec(&mine).unwrap()).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/event_stream_consumer.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(vhost.url())
        .arg(format!("{ORG}.{mailbox}.#"))
        .arg(&expected_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 must be installed: the event stream test runs a pika consumer");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines
        .next()
        .unwrap_or_else(|| {
            panic!(
                "the pika consumer ended before binding its queue (its error is above): is pika \
                 installed? `python3 -m pip install pika==1.3.2` (scripts/test installs it)"
            )
        })
        .unwrap();
    assert_eq!(
        ready, "READY",
        "the consumer bound its queue (is pika installed?)"
    );

    let publisher = EventPublisher::new(journal.clone(), config(&vhost, dir.path(), 8))
        .unwrap()
        .spawn()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "the pika consumer failed: {rest:?}");
    assert_eq!(
        rest.last().map(String::as_str),
        Some(format!("OK {}", mine.len()).as_str())
    );
    publisher.stop().await.expect("stops cleanly");
}

/// Declares `name` (durable enough to outlive the connection) and binds it with `#`, then
/// closes the connection: messages wait in the queue.
async fn bind_only(vhost: &Vhost, name: &str) {
    let (connection, _rx) = bind(vhost, name).await;
    connection.close(200, "bound".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_reconnects_when_the_broker_closes_its_connection_and_keeps_its_place() {
    let vhost = Vhost::new();
    let dir = tempfile::tempdir().unwrap();
    let journal = open_journal(dir.path());
    let changes = demo();
    let (first, second) = changes.split_at(changes.len() / 2);
    record(&journal, first);
    bind_only(&vhost, "test.kept").await;

    let mut settings = config(&vhost, dir.path(), 2);
    settings.reconnect_max = Duration::from_millis(500);
    let publisher = EventPublisher::new(journal.clone(), settings)
        .unwrap()
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while publisher.confirmed() < 4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("a first batch confirmed");
    // What a broker restart does to a client: its connection closed under it.
    common::rabbitmqctl(&[
        "close_all_connections",
        "-p",
        &vhost.name,
        "test: broker restart",
    ]);
    record(&journal, second);
    let expected = journal_json(journal.as_ref());
    let last = expected.len() as u64;
    tokio::time::timeout(Duration::from_secs(30), async {
        while publisher.confirmed() < last {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the publisher connects again and publishes through the end");

    let (_consumer, mut rx) = bind(&vhost, "test.kept").await;
    let all = receive_through(&mut rx, last).await;
    assert_complete_in_order_per_stream(&all, &expected);
    publisher.stop().await.expect("stops cleanly");
}
