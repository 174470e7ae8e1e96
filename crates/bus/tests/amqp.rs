//! What only the RabbitMQ backend has: the topology as the broker shows it, declared again
//! without change, a refused redeclaration; the delivery limit of quorum queues (and its
//! absence on classic ones); reconnecting after the broker closes the connection or loses a
//! queue; connection errors that say what to do and never show the password. Needs RabbitMQ
//! on 127.0.0.1:5672 (guest/guest); each test works in a vhost of its own.

mod common;

use common::*;
use ledgersync_bus::{
    AmqpBus, AmqpConfig, Bus, ConnectError, Consumer, Delivery, Queue, QueueType,
};
use ledgersync_engine::ManualClock;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

async fn next<C: Consumer>(consumer: &mut C) -> Delivery {
    within(30, "a delivery", consumer.next())
        .await
        .expect("the bus is open")
}

fn n(d: &Delivery) -> u128 {
    n_of(d.message().expect("decodes"))
}

/// The vhost's queues as the broker lists them, by name.
fn queues(vhost: &Vhost) -> Vec<Value> {
    let out = rabbitmqctl(&[
        "list_queues",
        "-p",
        &vhost.name,
        "name",
        "type",
        "durable",
        "arguments",
        "--formatter",
        "json",
    ]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A queue argument's value (`rabbitmqctl` lists them as `[key, type, value]`).
fn argument<'a>(queue: &'a Value, key: &str) -> Option<&'a Value> {
    queue["arguments"]
        .as_array()?
        .iter()
        .find(|a| a[0] == key)
        .map(|a| &a[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topology_is_declared_with_its_arguments_and_again_without_change() {
    let vhost = Vhost::new();
    let config = AmqpConfig {
        delivery_limit: Some(7),
        ..amqp_config(&vhost, Options::default(), QueueType::Quorum)
    };
    let bus = connect(config.clone()).await;
    let listed = queues(&vhost);
    let mut names: Vec<&str> = listed.iter().map(|q| q["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "ledgersync.crm",
            "ledgersync.crm.commands",
            "ledgersync.dead-letters",
            "ledgersync.partition.0",
            "ledgersync.partition.1",
            "ledgersync.partition.2",
            "ledgersync.partition.3",
        ]
    );
    for q in &listed {
        assert_eq!(q["durable"], true, "{q}");
        if q["name"] == "ledgersync.dead-letters" {
            assert_eq!(q["type"], "classic", "{q}");
            continue;
        }
        assert_eq!(q["type"], "quorum", "{q}");
        assert_eq!(
            argument(q, "x-single-active-consumer"),
            Some(&Value::Bool(true)),
            "{q}"
        );
        assert_eq!(
            argument(q, "x-dead-letter-exchange"),
            Some(&Value::from("ledgersync.dead-letter")),
            "{q}"
        );
        assert_eq!(
            argument(q, "x-delivery-limit"),
            Some(&Value::from(7)),
            "{q}"
        );
    }
    let exchanges = rabbitmqctl(&[
        "list_exchanges",
        "-p",
        &vhost.name,
        "name",
        "type",
        "durable",
    ]);
    assert!(
        exchanges
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["ledgersync.dead-letter", "fanout", "true"]),
        "{exchanges}"
    );
    // A second node (or a restart) declares the same: nothing changes, nothing fails.
    let again = connect(config.clone()).await;
    assert_eq!(queues(&vhost).len(), listed.len());
    // Another queue type on the same names is refused with what to do.
    let other = AmqpBus::connect(
        AmqpConfig {
            queue_type: QueueType::Classic,
            ..config
        },
        Arc::new(ManualClock::new(NOW)),
    )
    .await;
    match other {
        Err(e @ ConnectError::Topology { .. }) => {
            let text = e.to_string();
            assert!(text.contains("ledgersync.crm"), "{text}");
            assert!(text.contains("delete_queue"), "{text}");
            assert!(!text.contains(":guest@"), "{text}");
        }
        other => panic!("expected a topology error, got {other:?}"),
    }
    drop((bus, again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_dead_letters_a_message_released_past_its_delivery_limit() {
    let vhost = Vhost::new();
    let bus = connect(AmqpConfig {
        delivery_limit: Some(2),
        ..amqp_config(&vhost, Options::default(), QueueType::Quorum)
    })
    .await;
    let poison = outcome("mbx-a", 1);
    let after = outcome("mbx-a", 2);
    bus.publish_all(&[poison.clone(), after.clone()])
        .await
        .unwrap();
    let mut consumer = bus.consume(poison.queue(4)).await.unwrap();
    let mut releases = 0;
    loop {
        let d = next(&mut consumer).await;
        if d.message().unwrap() == &after {
            d.ack().await.unwrap();
            break;
        }
        assert!(releases < 10, "still delivered after {releases} releases");
        d.release().await.unwrap();
        releases += 1;
    }
    assert!(
        releases >= 2,
        "released {releases} times before the limit took it"
    );
    let dead = within(30, "the broker's dead letter", async {
        loop {
            let dead = bus.dead_letters().await.unwrap();
            if !dead.is_empty() {
                return dead;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].message.as_ref(), Some(&poison));
    assert_eq!(dead[0].queue, Some(poison.queue(4)));
    assert!(
        dead[0].reason.reason.contains("delivery limit"),
        "{:?}",
        dead[0].reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_queue_has_no_delivery_limit() {
    let vhost = Vhost::new();
    let bus = connect(AmqpConfig {
        delivery_limit: Some(2),
        ..amqp_config(&vhost, Options::default(), QueueType::Classic)
    })
    .await;
    let m = change(1);
    bus.publish(m.clone()).await.unwrap();
    let mut consumer = bus.consume(Queue::Crm).await.unwrap();
    for _ in 0..6 {
        let d = next(&mut consumer).await;
        assert_eq!(d.message().unwrap(), &m);
        d.release().await.unwrap();
    }
    let d = next(&mut consumer).await;
    assert_eq!(d.message().unwrap(), &m, "still delivered after 6 releases");
    d.ack().await.unwrap();
    assert!(bus.dead_letters().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_consuming_resume_after_the_broker_closes_every_connection() {
    let vhost = Vhost::new();
    let bus = connect(amqp_config(&vhost, Options::default(), QueueType::Quorum)).await;
    let mut consumer = bus.consume(Queue::Crm).await.unwrap();
    bus.publish(change(1)).await.unwrap();
    let d = next(&mut consumer).await;
    assert_eq!(n(&d), 1);
    d.ack().await.unwrap();
    bus.publish(change(2)).await.unwrap();
    let held = next(&mut consumer).await;
    assert_eq!(n(&held), 2);
    // What a broker restart does to a client: every connection closed under it.
    rabbitmqctl(&[
        "close_all_connections",
        "-p",
        &vhost.name,
        "test: broker restart",
    ]);
    // The unacked delivery comes back; publishing goes through on a new connection.
    bus.publish(change(3)).await.unwrap();
    let again = next(&mut consumer).await;
    assert_eq!(n(&again), 2);
    assert!(again.redelivered());
    again.ack().await.unwrap();
    let d = next(&mut consumer).await;
    assert_eq!(n(&d), 3);
    d.ack().await.unwrap();
    assert!(held.ack().await.is_err(), "the old channel is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_is_declared_again_by_its_consumer_and_its_publisher() {
    let vhost = Vhost::new();
    let bus = connect(amqp_config(&vhost, Options::default(), QueueType::Classic)).await;
    let m = outcome("mbx-a", 1);
    let queue = m.queue(4);
    let mut consumer = bus.consume(queue).await.unwrap();
    bus.publish(m.clone()).await.unwrap();
    let d = next(&mut consumer).await;
    d.ack().await.unwrap();
    rabbitmqctl(&[
        "delete_queue",
        "-p",
        &vhost.name,
        &format!(
            "ledgersync.partition.{}",
            match queue {
                Queue::Partition(p) => p,
                Queue::Crm | Queue::CrmCommands => unreachable!(),
            }
        ),
    ]);
    let m2 = outcome("mbx-a", 2);
    bus.publish(m2.clone()).await.unwrap();
    let d = next(&mut consumer).await;
    assert_eq!(d.message().unwrap(), &m2);
    d.ack().await.unwrap();
}

#[tokio::test]
async fn a_missing_broker_fails_loudly_and_never_shows_the_password() {
    let connect = |url: &str| {
        AmqpBus::connect(
            AmqpConfig {
                url: url.into(),
                ..AmqpConfig::default()
            },
            Arc::new(ManualClock::new(NOW)),
        )
    };
    let e = connect("amqp://app:hunter2-secret@127.0.0.1:1/%2f")
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectError::Unreachable { .. }), "{e:?}");
    let text = format!("{e} {e:?}");
    assert!(text.contains("scripts/services.sh start"), "{text}");
    assert!(text.contains("amqp://app:***@127.0.0.1:1/%2f"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // amqps:// is taken (TLS through rustls): nothing listens on 5671 here.
    let e = connect("amqps://app:hunter2-secret@127.0.0.1:5671/%2f")
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectError::Unreachable { .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
    // A URL that does not parse is named, redacted.
    let e = connect("amqp://app:hunter2-secret@[::1/%2f")
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectError::BadUrl { .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_never_shown() {
    require_broker();
    let e = AmqpBus::connect(
        AmqpConfig {
            url: "amqp://guest:not-the-Password-42@127.0.0.1:5672/%2f".into(),
            ..AmqpConfig::default()
        },
        Arc::new(ManualClock::new(NOW)),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ConnectError::Refused { .. }), "{e:?}");
    let text = format!("{e} {e:?}");
    assert!(!text.contains("not-the-Password-42"), "{text}");
    assert!(text.contains("guest:***@"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_message_that_never_comes_back_holds_the_later_ones_only_for_release_wait() {
    let vhost = Vhost::new();
    let bus = connect(AmqpConfig {
        release_wait: Duration::from_secs(1),
        ..amqp_config(&vhost, Options::default(), QueueType::Classic)
    })
    .await;
    // A policy outside ledgersync: messages expire 2 s after they were queued.
    rabbitmqctl(&[
        "set_policy",
        "-p",
        &vhost.name,
        "--apply-to",
        "queues",
        "expire",
        "^ledgersync\\.crm$",
        r#"{"message-ttl": 2000}"#,
    ]);
    bus.publish_all(&[change(1), change(2)]).await.unwrap();
    let mut consumer = bus.consume(Queue::Crm).await.unwrap();
    let first = next(&mut consumer).await;
    assert_eq!(n(&first), 1);
    // The second is on its way to the consumer (prefetch 8); the first expires meanwhile and
    // its release puts it back only to be dropped.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let released = std::time::Instant::now();
    first.release().await.unwrap();
    let second = next(&mut consumer).await;
    assert_eq!(
        n(&second),
        2,
        "handed out once the released one is given up"
    );
    assert!(
        released.elapsed() >= Duration::from_millis(900),
        "held back while the released message could still come back: {:?}",
        released.elapsed()
    );
    second.ack().await.unwrap();
}
