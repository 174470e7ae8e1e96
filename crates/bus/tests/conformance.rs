//! The bus conformance suite: every behaviour of the `Bus` contract, written once and run
//! against the in-process bus and against RabbitMQ with classic and with quorum queues (see
//! `conformance_suite!` at the end). The RabbitMQ runs need the broker on 127.0.0.1:5672; a
//! missing broker fails them.

mod common;

use common::*;
use ledgersync_bus::{
    Bus, BusMessage, Consumer, DeadLetterReason, Delivery, PublishError, Queue, SettleError,
    WireError, WireMessage, partition_of, wire,
};
use ledgersync_domain::MailboxId;
use std::collections::BTreeMap;
use std::time::Duration;

async fn next<C: Consumer>(consumer: &mut C) -> Delivery {
    within(20, "a delivery", consumer.next())
        .await
        .expect("the bus is open")
}

fn message(d: &Delivery) -> &BusMessage {
    d.message()
        .unwrap_or_else(|e| panic!("delivery does not decode: {e}"))
}

/// Publishes a marker to `queue`'s mailbox (or the CRM queue) and checks it is the next
/// delivery: nothing settled before it comes back.
async fn next_is<C: Consumer>(consumer: &mut C, expected: &BusMessage) {
    let d = next(consumer).await;
    assert_eq!(message(&d), expected, "redelivered: {}", d.redelivered());
    d.ack().await.unwrap();
}

async fn publish_receive_ack<B: Backend>() {
    let b = B::start(Options::default()).await;
    let bus = b.bus();
    let crm = change(1);
    let mail = outcome("mbx-a", 7);
    let confirmed = bus.publish_all(&[crm.clone(), mail.clone()]).await.unwrap();
    let partition = Queue::Partition(partition_of(&MailboxId::new("mbx-a"), 4));
    assert_eq!(confirmed[0].queue, Queue::Crm);
    assert_eq!(confirmed[1].queue, partition);

    let mut crm_consumer = bus.consume(Queue::Crm).await.unwrap();
    let d = next(&mut crm_consumer).await;
    assert_eq!(
        message(&d),
        &crm,
        "a message comes back exactly as published"
    );
    assert_eq!(d.queue(), Queue::Crm);
    assert!(!d.redelivered());
    assert_eq!(d.message_id(), Some(crm.id().to_string().as_str()));
    assert_eq!(d.wire().schema.as_deref(), Some("crm-change"));
    d.ack().await.unwrap();

    let mut mail_consumer = bus.consume(partition).await.unwrap();
    let d = next(&mut mail_consumer).await;
    assert_eq!(message(&d), &mail);
    assert_eq!(d.wire().schema.as_deref(), Some("mail-observation"));
    assert_eq!(d.wire().schema_version.as_deref(), Some("1"));
    assert_eq!(d.wire().content_type.as_deref(), Some("application/json"));
    d.ack().await.unwrap();

    // Acked messages are gone: the next delivery of each queue is the next message.
    let (crm2, mail2) = (change(2), outcome("mbx-a", 8));
    bus.publish(crm2.clone()).await.unwrap();
    bus.publish(mail2.clone()).await.unwrap();
    next_is(&mut crm_consumer, &crm2).await;
    next_is(&mut mail_consumer, &mail2).await;
    assert!(bus.dead_letters().await.unwrap().is_empty());
}

async fn release_redelivers_before_the_later_messages<B: Backend>() {
    // A window larger than 32 (the broker returns more deliveries than a small Erlang map
    // keeps sorted) and more messages than the window: some are still on the broker, some
    // buffered on the consumer's side when the release comes.
    let b = B::start(Options {
        prefetch: 48,
        ..Options::default()
    })
    .await;
    let bus = b.bus();
    let messages: Vec<_> = (1..=80).map(|n| outcome("mbx-a", n)).collect();
    bus.publish_all(&messages).await.unwrap();
    let queue = messages[0].queue(bus.partitions());
    let mut consumer = bus.consume(queue).await.unwrap();
    for n in 1..=3 {
        let d = next(&mut consumer).await;
        assert_eq!(n_of(message(&d)), n);
        d.ack().await.unwrap();
    }
    let fourth = next(&mut consumer).await;
    assert_eq!(n_of(message(&fourth)), 4);
    assert!(!fourth.redelivered());
    fourth.release().await.unwrap();
    let again = next(&mut consumer).await;
    assert_eq!(n_of(message(&again)), 4, "the released message comes first");
    assert!(again.redelivered(), "marked redelivered");
    again.ack().await.unwrap();
    for n in 5..=80 {
        let d = next(&mut consumer).await;
        assert_eq!(n_of(message(&d)), n, "then the later ones, in order");
        d.ack().await.unwrap();
    }
    let marker = outcome("mbx-a", 99);
    bus.publish(marker.clone()).await.unwrap();
    next_is(&mut consumer, &marker).await;
}

async fn a_release_returns_only_that_message<B: Backend>() {
    let b = B::start(Options::default()).await;
    let bus = b.bus();
    let messages: Vec<_> = (1..=5).map(|n| outcome("mbx-a", n)).collect();
    bus.publish_all(&messages).await.unwrap();
    let mut consumer = bus.consume(messages[0].queue(4)).await.unwrap();
    let first = next(&mut consumer).await;
    let second = next(&mut consumer).await;
    assert_eq!(n_of(message(&second)), 2);
    first.release().await.unwrap();
    let again = next(&mut consumer).await;
    assert_eq!(
        n_of(message(&again)),
        1,
        "before the messages not handed out yet"
    );
    assert!(again.redelivered());
    // The second delivery was not returned: it is still this consumer's to settle.
    second.ack().await.unwrap();
    again.ack().await.unwrap();
    for n in 3..=5 {
        let d = next(&mut consumer).await;
        assert_eq!(n_of(message(&d)), n);
        d.ack().await.unwrap();
    }
    let marker = outcome("mbx-a", 9);
    bus.publish(marker.clone()).await.unwrap();
    next_is(&mut consumer, &marker).await;
}

async fn a_dead_letter_is_listed_with_its_reason<B: Backend>() {
    let b = B::start(Options::default()).await;
    let bus = b.bus();
    let bad = outcome("mbx-a", 1);
    let good = outcome("mbx-a", 2);
    bus.publish_all(&[bad.clone(), good.clone()]).await.unwrap();
    let queue = bad.queue(4);
    let mut consumer = bus.consume(queue).await.unwrap();
    let d = next(&mut consumer).await;
    let reason = DeadLetterReason {
        reason: "invalid input: mailbox `mbx-a` is not known to the organization".into(),
        field: Some("mailbox".into()),
        line: Some(1),
        column: Some(12),
    };
    d.dead_letter(reason.clone()).await.unwrap();
    next_is(&mut consumer, &good).await;
    let dead = within(20, "the dead letters", bus.dead_letters())
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason, reason);
    assert_eq!(dead[0].message.as_ref(), Some(&bad));
    assert_eq!(dead[0].queue, Some(queue));
    assert_eq!(dead[0].at, Some(NOW));
    assert_eq!(
        dead[0].wire.message_id.as_deref(),
        Some(bad.id().to_string().as_str())
    );
    // Listing does not take them away.
    assert_eq!(bus.dead_letters().await.unwrap().len(), 1);
}

async fn order_is_kept_per_partition<B: Backend>() {
    let b = B::start(Options::default()).await;
    let bus = b.bus();
    let mailboxes: Vec<String> = (0..6).map(|m| format!("mbx-{m}")).collect();
    let mut published: BTreeMap<String, Vec<u128>> = BTreeMap::new();
    let mut batch = Vec::new();
    for round in 0..10u128 {
        for (m, mailbox) in mailboxes.iter().enumerate() {
            let n = round * 100 + m as u128;
            batch.push(outcome(mailbox, n));
            published.entry(mailbox.clone()).or_default().push(n);
        }
        if round % 3 == 2 {
            bus.publish_all(&batch).await.unwrap();
            batch.clear();
        }
    }
    bus.publish_all(&batch).await.unwrap();
    let crm: Vec<_> = (0..10).map(change).collect();
    for c in &crm {
        bus.publish(c.clone()).await.unwrap();
    }
    let mut received: BTreeMap<String, Vec<u128>> = BTreeMap::new();
    for queue in Queue::all(bus.partitions()) {
        let expected: usize = match queue {
            Queue::Crm => crm.len(),
            Queue::CrmCommands => 0,
            Queue::Partition(p) => mailboxes
                .iter()
                .filter(|m| partition_of(&MailboxId::new(m.as_str()), 4) == p)
                .map(|m| published[m].len())
                .sum(),
        };
        let mut consumer = bus.consume(queue).await.unwrap();
        for _ in 0..expected {
            let d = next(&mut consumer).await;
            let m = message(&d).clone();
            assert_eq!(m.queue(4), queue, "on its own queue");
            match m.mailbox() {
                Some(mailbox) => received
                    .entry(mailbox.to_string())
                    .or_default()
                    .push(n_of(&m)),
                None => received.entry("crm".into()).or_default().push(n_of(&m)),
            }
            d.ack().await.unwrap();
        }
    }
    published.insert("crm".into(), (0..10).collect());
    assert_eq!(received, published, "every message, in order per mailbox");
}

async fn an_unacked_message_is_delivered_again_when_its_consumer_goes_away<B: Backend>() {
    let b = B::start(Options::default()).await;
    let bus = b.bus();
    let messages: Vec<_> = (1..=3).map(|n| outcome("mbx-a", n)).collect();
    bus.publish_all(&messages).await.unwrap();
    let queue = messages[0].queue(4);
    let mut first = bus.consume(queue).await.unwrap();
    let held = next(&mut first).await;
    assert_eq!(n_of(message(&held)), 1);
    drop(first);
    // Another node takes over the queue.
    let other = b.open(MAX_BODY).await;
    let mut second = other.consume(queue).await.unwrap();
    let again = next(&mut second).await;
    assert_eq!(n_of(message(&again)), 1);
    assert!(again.redelivered());
    again.ack().await.unwrap();
    // The first consumer's delivery can no longer be settled.
    assert!(matches!(held.ack().await, Err(SettleError::Stale { .. })));
    for n in 2..=3 {
        let d = next(&mut second).await;
        assert_eq!(n_of(message(&d)), n);
        d.ack().await.unwrap();
    }
}

async fn one_consumer_of_a_queue_is_active_at_a_time<B: Backend>() {
    let b = B::start(Options::default()).await;
    let bus = b.bus();
    let other = b.open(MAX_BODY).await;
    let messages: Vec<_> = (1..=3).map(change).collect();
    bus.publish_all(&messages).await.unwrap();
    let mut active = bus.consume(Queue::Crm).await.unwrap();
    let d = next(&mut active).await;
    assert_eq!(n_of(message(&d)), 1);
    let mut waiting = other.consume(Queue::Crm).await.unwrap();
    let got = tokio::time::timeout(Duration::from_millis(500), waiting.next()).await;
    assert!(
        got.is_err(),
        "a second consumer receives nothing while the first is active"
    );
    d.ack().await.unwrap();
    drop(active);
    for n in 2..=3 {
        let d = next(&mut waiting).await;
        assert_eq!(n_of(message(&d)), n);
        d.ack().await.unwrap();
    }
}

fn raw(id: &str, schema: &str, version: &str, body: &str) -> WireMessage {
    WireMessage {
        body: body.as_bytes().to_vec(),
        content_type: Some("application/json".into()),
        message_id: Some(id.into()),
        schema: Some(schema.into()),
        schema_version: Some(version.into()),
    }
}

async fn malformed_messages_are_typed_decode_errors<B: Backend>() {
    let b = B::start(Options::default()).await;
    let bus = b.bus();
    let id = "0190c0de-0000-7000-8000-000000000001";
    let good = wire::encode(&change(5));
    let good_body = String::from_utf8(good.body.clone()).unwrap();
    let cases = vec![
        raw(
            id,
            "crm-change",
            "1",
            "{\"kind\": \"setting_changed\",\n \"keys\": {",
        ),
        raw(
            id,
            "crm-change",
            "1",
            "{\"kind\": 5, \"key\": \"k\", \"value\": \"1\"}",
        ),
        raw(id, "crm-change", "2", &good_body),
        raw(id, "ticket", "1", &good_body),
        WireMessage {
            message_id: None,
            ..good.clone()
        },
        WireMessage {
            content_type: Some("text/plain".into()),
            ..good.clone()
        },
        raw(id, "crm-change", "1", &" ".repeat(MAX_BODY + 1)),
    ];
    // A node with a larger limit publishes what this one refuses.
    let lenient = b.open(MAX_BODY * 4).await;
    lenient.publish_wire(Queue::Crm, cases).await.unwrap();
    let mut consumer = bus.consume(Queue::Crm).await.unwrap();
    let mut errors = Vec::new();
    for _ in 0..7 {
        let d = next(&mut consumer).await;
        let e = d.message().expect_err("does not decode").clone();
        d.dead_letter(DeadLetterReason::from(&e)).await.unwrap();
        errors.push(e);
    }
    match &errors[0] {
        WireError::Malformed {
            message_id,
            line,
            column,
            ..
        } => {
            assert_eq!(message_id, id);
            assert_eq!((*line, *column), (2, 10), "where the body ends unfinished");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert_eq!(errors[1].field(), Some("kind"), "{}", errors[1]);
    assert!(errors[1].to_string().contains("kind"), "{}", errors[1]);
    assert!(
        matches!(&errors[2], WireError::UnknownSchemaVersion { found: Some(v), .. } if v == "2"),
        "{:?}",
        errors[2]
    );
    assert!(
        matches!(&errors[3], WireError::UnknownSchema { found, .. } if found == "ticket"),
        "{:?}",
        errors[3]
    );
    assert_eq!(errors[4], WireError::MissingMessageId);
    assert!(
        matches!(&errors[5], WireError::ContentType { found: Some(t), .. } if t == "text/plain"),
        "{:?}",
        errors[5]
    );
    assert_eq!(
        errors[6],
        WireError::TooLarge {
            message_id: Some(id.into()),
            size: MAX_BODY + 1,
            limit: MAX_BODY
        }
    );
    // Dead-lettered with their reasons, the position kept.
    let dead = bus.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 7);
    assert_eq!(dead[0].reason.line, Some(2));
    assert_eq!(dead[0].reason.column, Some(10));
    assert_eq!(dead[1].reason.field.as_deref(), Some("kind"));
    for (d, e) in dead.iter().zip(&errors) {
        assert_eq!(d.reason.reason, e.to_string());
        assert_eq!(d.message, None);
    }
    // The queue flows on.
    let next_change = change(6);
    bus.publish(next_change.clone()).await.unwrap();
    next_is(&mut consumer, &next_change).await;
}

async fn an_oversized_message_is_not_published<B: Backend>() {
    let b = B::start(Options::default()).await;
    let bus = b.bus();
    let mut big = change(1);
    if let BusMessage::CrmChange { line, .. } = &mut big {
        *line = line.replace(
            "\"value\":\"1\"",
            &format!("\"value\":\"{}\"", "9".repeat(MAX_BODY)),
        );
        assert!(line.len() > MAX_BODY, "{}", &line[..80]);
    }
    match bus.publish_all(&[change(2), big.clone()]).await {
        Err(PublishError::TooLarge {
            message_id, limit, ..
        }) => {
            assert_eq!(message_id, big.id().to_string());
            assert_eq!(limit, MAX_BODY);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let marker = change(3);
    bus.publish(marker.clone()).await.unwrap();
    let mut consumer = bus.consume(Queue::Crm).await.unwrap();
    next_is(&mut consumer, &marker).await;
}

async fn a_closed_bus_takes_nothing_and_ends_its_consumers<B: Backend>() {
    let b = B::start(Options::default()).await;
    let bus = b.bus();
    let mut consumer = bus.consume(Queue::Partition(1)).await.unwrap();
    let waiting = tokio::spawn(async move { consumer.next().await.is_none() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    bus.close().await;
    assert!(
        within(20, "the consumer to end", waiting).await.unwrap(),
        "a waiting consumer gets None"
    );
    assert!(matches!(
        bus.publish(change(1)).await,
        Err(PublishError::Closed)
    ));
    assert!(bus.consume(Queue::Crm).await.is_err());
    assert!(matches!(
        bus.publish_wire(Queue::Partition(9), vec![]).await,
        Err(PublishError::Closed | PublishError::UnknownQueue { .. })
    ));
}

async fn next_can_be_cancelled_without_losing_a_message<B: Backend>() {
    let b = B::start(Options::default()).await;
    let bus = b.bus();
    let mut consumer = bus.consume(Queue::Crm).await.unwrap();
    // Waits cut short, again and again (as a `select!` or a timeout does), from before the
    // consumer is even subscribed.
    for _ in 0..5 {
        let cut = tokio::time::timeout(Duration::from_micros(1), consumer.next()).await;
        assert!(cut.is_err(), "nothing published yet");
    }
    let messages: Vec<_> = (1..=30).map(change).collect();
    bus.publish_all(&messages).await.unwrap();
    let mut got = Vec::new();
    within(30, "every message through cut-short waits", async {
        while got.len() < messages.len() {
            if let Ok(Some(d)) =
                tokio::time::timeout(Duration::from_micros(200), consumer.next()).await
            {
                got.push(n_of(message(&d)));
                d.ack().await.unwrap();
            }
        }
    })
    .await;
    assert_eq!(got, (1..=30).collect::<Vec<u128>>());
}

macro_rules! conformance_suite {
    ($($case:ident),* $(,)?) => {
        mod in_process {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $case() { super::$case::<super::Memory>().await })*
        }
        mod amqp_classic {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $case() { super::$case::<super::Amqp<super::Classic>>().await })*
        }
        mod amqp_quorum {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $case() { super::$case::<super::Amqp<super::Quorum>>().await })*
        }
    };
}

conformance_suite!(
    publish_receive_ack,
    release_redelivers_before_the_later_messages,
    a_release_returns_only_that_message,
    a_dead_letter_is_listed_with_its_reason,
    order_is_kept_per_partition,
    an_unacked_message_is_delivered_again_when_its_consumer_goes_away,
    one_consumer_of_a_queue_is_active_at_a_time,
    malformed_messages_are_typed_decode_errors,
    an_oversized_message_is_not_published,
    a_closed_bus_takes_nothing_and_ends_its_consumers,
    next_can_be_cancelled_without_losing_a_message,
);
