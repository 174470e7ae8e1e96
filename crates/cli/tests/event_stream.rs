//! The public event stream from the command line: `events --follow --json` prints the history
//! then each new event as the running service records it, the same objects as `events --json`;
//! `serve` with `[bus] kind = "amqp"` publishes the journal on `ledgersync.events` (RabbitMQ on
//! 127.0.0.1:5672, a vhost of the test's own; a missing broker fails the test); a wrong key of
//! `[bus]` is refused by name.

mod common;

use common::{Site, stderr, stdout};
use futures_util::StreamExt as _;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use ledgersync_bus::test_broker::Vhost;
use serde_json::Value;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// A child process killed when the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &Path, log: &Path) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_ledgersync"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env_remove("LEDGERSYNC_DATA")
            .env_remove("LEDGERSYNC_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .expect("start ledgersync serve"),
    )
}

fn wait_for(what: &str, log: &Path, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting for {what}; serve log:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn apply(site: &Site, name: &str, lines: &str) {
    let file = site.root.join(name);
    fs::write(&file, lines).unwrap();
    let out = site.run(&["crm", "apply", file.to_str().unwrap()]);
    assert!(out.status.success(), "crm apply: {}", stderr(&out));
}

const USER_KAYLEE: &str = r#"{"kind": "user_registered", "user": "kaylee", "name": "Kaylee Frye", "email": "kaylee@serenity.example"}
"#;
const USER_INARA: &str = r#"{"kind": "user_registered", "user": "inara", "name": "Inara Serra", "email": "inara@serenity.example"}
"#;

fn journal_json(site: &Site) -> Vec<Value> {
    let out = site.run(&["--json", "events"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn events_follow_prints_the_history_then_each_new_event_as_it_is_recorded() {
    let site = Site::new();
    let log = site.root.join("serve.log");
    let _serve = serve(&site.config, &log);
    let socket = site.data.join("control.sock");
    wait_for("the control socket", &log, || socket.exists());
    apply(&site, "first.jsonl", USER_KAYLEE);
    let history = journal_json(&site);
    assert!(!history.is_empty());

    let mut follower = Running(
        Command::new(env!("CARGO_BIN_EXE_ledgersync"))
            .args(["--data", site.data.to_str().unwrap()])
            .args(["--json", "events", "--follow", "--from", "1"])
            .env_remove("LEDGERSYNC_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start events --follow"),
    );
    let (tx, rx) = mpsc::channel();
    let out = follower.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed: Vec<Value> = Vec::new();
    let take = |n: usize, printed: &mut Vec<Value>| {
        while printed.len() < n {
            let line = rx
                .recv_timeout(DEADLINE)
                .expect("events --follow printed the next event");
            printed.push(serde_json::from_str(&line).expect("one JSON object per line"));
        }
    };
    take(history.len(), &mut printed);
    assert_eq!(
        printed, history,
        "the history, as `events --json` prints it"
    );

    apply(&site, "second.jsonl", USER_INARA);
    let now = journal_json(&site);
    assert!(now.len() > history.len());
    take(now.len(), &mut printed);
    assert_eq!(printed, now, "then each new event, in position order");
    assert!(
        printed
            .iter()
            .any(|e| e["payload"].to_string().contains("inara")),
        "the new change is among them"
    );
    let positions: Vec<u64> = printed
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (1..=now.len() as u64).collect::<Vec<_>>());
}

#[test]
fn serve_with_an_amqp_bus_publishes_the_journal_on_the_event_stream() {
    let vhost = Vhost::new();
    let site = Site::on_bus(&vhost.url());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_connection, mut consumer) = runtime.block_on(bind(&vhost));

    let log = site.root.join("serve.log");
    let _serve = serve(&site.config, &log);
    let socket = site.data.join("control.sock");
    wait_for("the control socket", &log, || socket.exists());
    apply(&site, "first.jsonl", USER_KAYLEE);
    apply(&site, "second.jsonl", USER_INARA);
    let expected = journal_json(&site);

    let received: Vec<Value> = runtime.block_on(async {
        let mut out = Vec::new();
        while out.len() < expected.len() {
            let delivery = tokio::time::timeout(DEADLINE, consumer.next())
                .await
                .expect("a message of the event stream within the deadline")
                .expect("consumer open")
                .expect("a delivery");
            let body: Value = serde_json::from_slice(&delivery.data).unwrap();
            assert_eq!(
                delivery.properties.message_id().as_ref().unwrap().as_str(),
                body["event_id"].as_str().unwrap()
            );
            assert_eq!(
                delivery.routing_key.as_str(),
                format!("serenity._org.{}", body["event_type"].as_str().unwrap())
            );
            out.push(body);
        }
        out
    });
    assert_eq!(
        received, expected,
        "every event, in order, as `events --json` prints it"
    );
    let logged = fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("publishing the journal on the event stream"),
        "{logged}"
    );
    assert!(
        !logged.contains("guest:guest"),
        "the password is never logged: {logged}"
    );
}

async fn bind(vhost: &Vhost) -> (Connection, lapin::Consumer) {
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
            "test.events".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            "test.events".into(),
            "ledgersync.events".into(),
            "serenity.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let consumer = channel
        .basic_consume(
            "test.events".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    (connection, consumer)
}

#[test]
fn an_unknown_key_of_the_bus_table_is_refused_by_name() {
    let site = Site::new();
    let text = fs::read_to_string(&site.config).unwrap();
    fs::write(
        &site.config,
        format!("[bus]\nkind = \"amqp\"\nexchange = \"x\"\n\n{text}"),
    )
    .unwrap();
    let out = common::ledgersync(&["--config", site.config.to_str().unwrap(), "events"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("exchange"), "{}", stderr(&out));
}
