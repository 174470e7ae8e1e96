//! The in-process bus against its contract: partitions by mailbox, order within a partition,
//! one delivery in flight per partition, redelivery of a released message before the later
//! ones, the dead-letter store with its reason and time.

use ledgersync_domain::event::IntentSucceeded;
use ledgersync_domain::{Event, EventId, MailboxId, Timestamp};
use ledgersync_engine::ManualClock;
use ledgersync_runtime::{Bus, BusError, BusMessage, InProcessBus, partition_of};
use std::sync::Arc;

fn bus(partitions: usize) -> InProcessBus {
    InProcessBus::new(
        partitions,
        Arc::new(ManualClock::new(Timestamp(1_800_000_000_000))),
    )
}

fn outcome(mailbox: &str, n: u128) -> BusMessage {
    BusMessage::observation(
        MailboxId::new(mailbox),
        Event::IntentSucceeded(IntentSucceeded {
            intent: EventId::from_u128(n),
            remote: None,
            etag: Some(format!("\"{n}\"")),
            crm: None,
        }),
    )
}

fn intent_of(message: &BusMessage) -> u128 {
    match message.event() {
        Event::IntentSucceeded(p) => p.intent.as_u128(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_mailbox_always_lands_on_the_same_partition_and_crm_changes_on_partition_0() {
    let crm = BusMessage::crm(Event::SettingChanged(
        ledgersync_domain::event::SettingChanged {
            key: "require_approved_address".into(),
            value: "false".into(),
        },
    ));
    assert_eq!(partition_of(&crm, 8), 0);
    let mut used = std::collections::BTreeSet::new();
    for n in 0..64 {
        let name = format!("mbx-{n}");
        let p = partition_of(&outcome(&name, 1), 8);
        assert_eq!(p, partition_of(&outcome(&name, 2), 8), "stable per mailbox");
        assert!(p < 8);
        used.insert(p);
    }
    assert!(
        used.len() > 4,
        "mailboxes spread over the partitions: {used:?}"
    );
}

#[tokio::test]
async fn a_partition_delivers_in_order_one_at_a_time() {
    let bus = bus(1);
    for n in 1..=3 {
        let confirmed = bus.publish(outcome("mbx-a", n)).await.unwrap();
        assert_eq!(confirmed.partition, 0);
    }
    let first = bus.receive(0).await.unwrap();
    assert_eq!(intent_of(&first.message), 1);
    // The next one is not delivered while the first is in flight.
    let next = bus.receive(0);
    tokio::pin!(next);
    assert!(futures_poll_once(next.as_mut()).await.is_none());
    bus.ack(first).unwrap();
    let second = next.await.unwrap();
    assert_eq!(intent_of(&second.message), 2);
    bus.ack(second).unwrap();
    let third = bus.receive(0).await.unwrap();
    assert_eq!(intent_of(&third.message), 3);
    bus.ack(third).unwrap();
    assert_eq!(bus.pending(), 0);
    bus.settled().await;
}

/// Polls a future once: `Some` if it was ready.
async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
    let mut f = f;
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn a_released_message_is_delivered_again_before_the_later_ones() {
    let bus = bus(1);
    bus.publish(outcome("mbx-a", 1)).await.unwrap();
    bus.publish(outcome("mbx-a", 2)).await.unwrap();
    let first = bus.receive(0).await.unwrap();
    assert_eq!(first.redelivered, 0);
    bus.release(first).unwrap();
    let again = bus.receive(0).await.unwrap();
    assert_eq!(intent_of(&again.message), 1);
    assert_eq!(again.redelivered, 1);
    bus.ack(again).unwrap();
    let second = bus.receive(0).await.unwrap();
    assert_eq!(intent_of(&second.message), 2);
    assert_eq!(second.redelivered, 0);
    bus.ack(second).unwrap();
    assert_eq!(bus.pending(), 0);
}

#[tokio::test]
async fn a_dead_lettered_message_is_kept_with_its_reason_and_time_and_the_next_one_flows() {
    let bus = bus(2);
    bus.publish(outcome("mbx-a", 1)).await.unwrap();
    let confirmed = bus.publish(outcome("mbx-a", 2)).await.unwrap();
    let p = confirmed.partition;
    let first = bus.receive(p).await.unwrap();
    let tag = first.tag;
    bus.dead_letter(first, "invalid input: the observation is malformed".into())
        .unwrap();
    let dead = bus.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(intent_of(&dead[0].message), 1);
    assert_eq!(
        dead[0].reason,
        "invalid input: the observation is malformed"
    );
    assert_eq!(dead[0].at, Timestamp(1_800_000_000_000));
    assert_eq!(dead[0].partition, p);
    let second = bus.receive(p).await.unwrap();
    assert_eq!(intent_of(&second.message), 2);
    // Settling a delivery that is no longer in flight is refused.
    let stale = ledgersync_runtime::Delivery {
        partition: p,
        tag,
        redelivered: 0,
        message: second.message.clone(),
    };
    assert!(matches!(
        bus.ack(stale),
        Err(BusError::UnknownDelivery { .. })
    ));
    bus.ack(second).unwrap();
    bus.settled().await;
}

#[tokio::test]
async fn a_closed_bus_takes_nothing_and_ends_its_consumers() {
    let bus = bus(2);
    let waiting = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.receive(1).await.is_none() })
    };
    tokio::task::yield_now().await;
    bus.close();
    assert!(waiting.await.unwrap(), "a waiting consumer gets None");
    assert!(matches!(
        bus.publish(outcome("mbx-a", 1)).await,
        Err(BusError::Closed)
    ));
}
