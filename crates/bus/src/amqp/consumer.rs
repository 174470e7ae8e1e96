//! A consumer of one queue on RabbitMQ, and the settlement of its deliveries.
//!
//! Each consumer has a channel of its own (`basic.qos` = the prefetch, then `basic.consume`
//! on a queue declared with single active consumer). Settlement maps onto AMQP as follows:
//!
//! - **ack** → `basic.ack` of the delivery tag. On a channel that closed meanwhile the ack
//!   cannot be sent: [`SettleError::Stale`], and the broker delivers the message again.
//! - **release** → `basic.nack` with requeue of that one delivery. The broker puts it back at
//!   the head (a classic queue at its original position, a quorum queue among the returned
//!   messages it delivers first) and sends it again; the deliveries prefetched after it, which
//!   the client already holds, are held back until it has come back, so it is handed out
//!   before them. Only the released message is returned: a quorum queue counts returns
//!   against its delivery limit, and closing the channel instead would count one against
//!   every prefetched message. When the return is the one that reaches the delivery limit
//!   (its `x-delivery-count` says so) the broker dead-letters it and nothing waits for it; if
//!   it has not come back after [`AmqpConfig::release_wait`](super::AmqpConfig::release_wait)
//!   (a policy outside ledgersync removed it), the held-back deliveries are handed out.
//! - **dead-letter** → `basic.reject` cannot carry a reason, so a copy with the reason headers
//!   is published to the dead-letter exchange and confirmed, then the original is acked. If
//!   the copy is not confirmed, the delivery is released instead.
//!
//! When the connection or the channel is lost (broker restart, a forced close, the queue
//! deleted), [`Consumer::next`] opens them again with backoff, declares the queue again and
//! subscribes again; the broker has returned the unacked deliveries meanwhile, and what the
//! old channel held back or buffered is dropped.

use super::config::QueueType;
use super::headers::{dead_letter_headers, properties, wire_of};
use super::link::{Link, Shared, declare_queue};
use super::publish::{Outgoing, publish};
use crate::contract::Consumer;
use crate::delivery::{DeadLetterReason, Delivery, Settle, SettleError};
use crate::message::Queue;
use crate::wire::WireMessage;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Acker, Channel};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::time::Instant;

/// A released message the consumer waits for before it hands out what it held back.
struct Awaited {
    wire: WireMessage,
    since: Instant,
}

type AwaitedList = Arc<Mutex<Vec<Awaited>>>;

fn lock(awaited: &AwaitedList) -> std::sync::MutexGuard<'_, Vec<Awaited>> {
    awaited.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Subscription {
    channel: Channel,
    stream: lapin::Consumer,
    /// Released messages not back yet (shared with the settlements of the deliveries).
    awaited: AwaitedList,
    /// Deliveries received while a released message was awaited, in order.
    held: VecDeque<lapin::message::Delivery>,
}

impl Drop for Subscription {
    /// Closes the channel (the broker returns its unacked deliveries and forgets the consumer),
    /// whoever still holds a handle on it.
    fn drop(&mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let channel = self.channel.clone();
            runtime.spawn(async move {
                let _ = channel.close(200, "ledgersync: consumer gone".into()).await;
            });
        }
    }
}

/// A subscription on its way (kept across a cancelled [`Consumer::next`]).
type Subscribing = BoxFuture<'static, Option<Subscription>>;

/// A consumer of one queue of an [`crate::AmqpBus`]. Dropping it closes its channel: the
/// broker delivers its unsettled deliveries again. [`Consumer::next`] is cancel-safe: a
/// subscription under way when it is dropped is taken up by the next call.
pub struct AmqpConsumer {
    shared: Arc<Shared>,
    queue: Queue,
    subscription: Option<Subscription>,
    subscribing: Option<Subscribing>,
}

impl std::fmt::Debug for AmqpConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConsumer")
            .field("queue", &self.queue)
            .field("subscribed", &self.subscription.is_some())
            .finish()
    }
}

/// How many times the broker says a message was returned before (quorum queues set
/// `x-delivery-count` on redeliveries; 0 when absent).
fn delivery_count(props: &lapin::BasicProperties) -> u64 {
    let value = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned());
    match value {
        Some(AMQPValue::LongLongInt(v)) => u64::try_from(v).unwrap_or(0),
        Some(AMQPValue::LongInt(v)) => u64::try_from(v).unwrap_or(0),
        Some(AMQPValue::LongUInt(v)) => u64::from(v),
        Some(AMQPValue::ShortInt(v)) => u64::try_from(v).unwrap_or(0),
        Some(AMQPValue::ShortUInt(v)) => u64::from(v),
        Some(AMQPValue::ShortShortInt(v)) => u64::try_from(v).unwrap_or(0),
        Some(AMQPValue::ShortShortUInt(v)) => u64::from(v),
        _ => 0,
    }
}

fn delivery(
    shared: &Arc<Shared>,
    queue: Queue,
    d: lapin::message::Delivery,
    awaited: &AwaitedList,
) -> Delivery {
    let returns = delivery_count(&d.properties);
    let lapin::message::Delivery {
        data,
        properties,
        acker,
        redelivered,
        ..
    } = d;
    let wire = wire_of(data, &properties);
    let settle = AmqpSettle {
        shared: shared.clone(),
        queue,
        message_id: wire.message_id.clone().unwrap_or_default(),
        acker,
        awaited: awaited.clone(),
        returns,
    };
    Delivery::new(
        queue,
        redelivered,
        wire,
        &shared.config.limits,
        Box::new(settle),
    )
}

impl AmqpConsumer {
    pub(super) fn new(shared: Arc<Shared>, queue: Queue) -> Self {
        Self {
            shared,
            queue,
            subscription: None,
            subscribing: None,
        }
    }
}

async fn open(shared: &Shared, queue: Queue, link: &Link) -> Result<Subscription, String> {
    let config = &shared.config;
    let scrub = |e: lapin::Error| shared.scrub(e);
    let channel = link.connection.create_channel().await.map_err(scrub)?;
    if shared.declares {
        declare_queue(&channel, config, queue)
            .await
            .map_err(|(name, e)| format!("declaring {name}: {}", shared.scrub(e)))?;
    }
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await
        .map_err(scrub)?;
    let stream = channel
        .basic_consume(
            config.queue_name(queue).into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(scrub)?;
    Ok(Subscription {
        channel,
        stream,
        awaited: Arc::default(),
        held: VecDeque::new(),
    })
}

/// Subscribes, retrying with backoff; `None` once the bus closes.
async fn subscribe(shared: Arc<Shared>, queue: Queue) -> Option<Subscription> {
    let mut delay = shared.config.reconnect_min;
    loop {
        let link = shared.link(None).await.ok()?;
        match open(&shared, queue, &link).await {
            Ok(subscription) => return Some(subscription),
            Err(reason) => {
                tracing::warn!(%queue, url = %shared.url, error = %reason, retry_in = ?delay, "could not subscribe; retrying");
                if !link.connection.status().connected() {
                    shared.forget(&link).await;
                }
                if !shared.sleep(delay).await {
                    return None;
                }
                delay = (delay * 2).min(shared.config.reconnect_max);
            }
        }
    }
}

/// Forgets awaited messages released longer ago than `wait`; the earliest time one of the
/// others is given up, if any is awaited.
fn awaited_until(
    queue: Queue,
    awaited: &AwaitedList,
    wait: std::time::Duration,
) -> Option<Instant> {
    let mut awaited = lock(awaited);
    let now = Instant::now();
    let before = awaited.len();
    awaited.retain(|a| now < a.since + wait);
    if awaited.len() < before {
        tracing::warn!(%queue, ?wait, "a released message did not come back in time; the deliveries held back behind it are handed out");
    }
    awaited.iter().map(|a| a.since + wait).min()
}

impl Consumer for AmqpConsumer {
    fn queue(&self) -> Queue {
        self.queue
    }

    async fn next(&mut self) -> Option<Delivery> {
        loop {
            if self.shared.is_closed() {
                self.subscription = None;
                return None;
            }
            if self.subscription.is_none() {
                let (shared, queue) = (self.shared.clone(), self.queue);
                let subscribing = self
                    .subscribing
                    .get_or_insert_with(|| Box::pin(subscribe(shared, queue)));
                let subscribed = subscribing.await;
                self.subscribing = None;
                self.subscription = Some(subscribed?);
            }
            let sub = self.subscription.as_mut().expect("subscribed above");
            let until = awaited_until(self.queue, &sub.awaited, self.shared.config.release_wait);
            if until.is_none()
                && let Some(d) = sub.held.pop_front()
            {
                return Some(delivery(&self.shared, self.queue, d, &sub.awaited));
            }
            let closing = self.shared.closing.notified();
            tokio::pin!(closing);
            closing.as_mut().enable();
            if self.shared.is_closed() {
                continue;
            }
            let give_up = tokio::time::sleep_until(until.unwrap_or_else(Instant::now));
            let next = tokio::select! {
                next = sub.stream.next() => next,
                () = closing => continue,
                () = give_up, if until.is_some() => continue,
            };
            match next {
                Some(Ok(d)) => {
                    let mut awaited = lock(&sub.awaited);
                    let wanted = awaited.is_empty()
                        || awaited
                            .iter()
                            .position(|a| a.wire == wire_of(d.data.clone(), &d.properties))
                            .map(|i| awaited.remove(i))
                            .is_some();
                    drop(awaited);
                    if wanted {
                        return Some(delivery(&self.shared, self.queue, d, &sub.awaited));
                    }
                    sub.held.push_back(d);
                }
                Some(Err(e)) => {
                    tracing::warn!(queue = %self.queue, url = %self.shared.url, error = %self.shared.scrub(e), "the consumer's channel failed; subscribing again");
                    self.subscription = None;
                }
                None => {
                    tracing::warn!(queue = %self.queue, url = %self.shared.url, "the broker cancelled the consumer or closed its channel; subscribing again");
                    self.subscription = None;
                }
            }
        }
    }
}

struct AmqpSettle {
    shared: Arc<Shared>,
    queue: Queue,
    message_id: String,
    acker: Acker,
    /// The consumer's list of released messages to wait for.
    awaited: AwaitedList,
    /// How many times the broker returned the message before this delivery.
    returns: u64,
}

impl AmqpSettle {
    fn stale(&self, reason: impl Into<String>) -> SettleError {
        SettleError::Stale {
            queue: self.queue,
            message_id: self.message_id.clone(),
            reason: reason.into(),
        }
    }

    fn answer(&self, sent: lapin::Result<bool>) -> Result<(), SettleError> {
        match sent {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.stale("its channel closed")),
            Err(e) => Err(self.stale(self.shared.scrub(e))),
        }
    }

    async fn ack(&self) -> Result<(), SettleError> {
        let sent = self
            .bounded(self.acker.ack(BasicAckOptions::default()))
            .await?;
        self.answer(sent)
    }

    /// `settling`, given up after [`AmqpConfig::publish_timeout`](super::AmqpConfig): an ack
    /// or nack written as the connection broke can stay unanswered, and a consumer must not
    /// wait on it forever (the broker delivers the message again on the next connection).
    async fn bounded<T>(
        &self,
        settling: impl std::future::Future<Output = lapin::Result<T>>,
    ) -> Result<lapin::Result<T>, SettleError> {
        let wait = self.shared.config.publish_timeout;
        tokio::time::timeout(wait, settling).await.map_err(|_| {
            self.stale(format!(
                "no answer within {wait:?}; its connection is likely gone"
            ))
        })
    }

    /// `basic.nack` with requeue; the consumer waits for the message to come back unless this
    /// return is the one a quorum queue's delivery limit dead-letters.
    async fn release(&self, wire: WireMessage) -> Result<(), SettleError> {
        let config = &self.shared.config;
        let limit = match config.queue_type {
            QueueType::Quorum => config.delivery_limit,
            QueueType::Classic => None,
        };
        let past_limit = limit.is_some_and(|l| self.returns + 1 > u64::from(l));
        if past_limit {
            tracing::warn!(queue = %self.queue, message_id = %self.message_id, returns = self.returns + 1, "released past the delivery limit: the broker dead-letters the message");
        } else {
            // Before the nack: the message may be back before the nack's answer.
            lock(&self.awaited).push(Awaited {
                wire: wire.clone(),
                since: Instant::now(),
            });
        }
        let answer = self
            .bounded(self.acker.nack(BasicNackOptions {
                multiple: false,
                requeue: true,
            }))
            .await
            .and_then(|sent| self.answer(sent));
        if answer.is_err() && !past_limit {
            let mut awaited = lock(&self.awaited);
            if let Some(i) = awaited.iter().rposition(|a| a.wire == wire) {
                awaited.remove(i);
            }
        }
        answer
    }
}

impl Settle for AmqpSettle {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), SettleError>> {
        Box::pin(async move { AmqpSettle::ack(&self).await })
    }

    fn release(self: Box<Self>, wire: WireMessage) -> BoxFuture<'static, Result<(), SettleError>> {
        Box::pin(async move { AmqpSettle::release(&self, wire).await })
    }

    fn dead_letter(
        self: Box<Self>,
        wire: WireMessage,
        reason: DeadLetterReason,
    ) -> BoxFuture<'static, Result<(), SettleError>> {
        Box::pin(async move {
            if !self.acker.usable() {
                return Err(self.stale("its channel closed"));
            }
            let config = &self.shared.config;
            let queue_name = config.queue_name(self.queue);
            let headers = dead_letter_headers(&reason, &queue_name, self.shared.clock.now());
            let copy = Outgoing {
                exchange: config.dead_letter_exchange(),
                routing_key: queue_name.clone(),
                queue: self.queue,
                message_id: self.message_id.clone(),
                properties: properties(&wire, headers),
                body: wire.body.clone(),
            };
            if let Err(e) = publish(&self.shared, std::slice::from_ref(&copy)).await {
                let released = AmqpSettle::release(&self, wire).await;
                return Err(SettleError::DeadLetterNotConfirmed {
                    queue: self.queue,
                    message_id: self.message_id.clone(),
                    reason: match released {
                        Ok(()) => format!("{e}; it was released"),
                        Err(r) => format!("{e}; {r}"),
                    },
                });
            }
            tracing::warn!(queue = %queue_name, message_id = %self.message_id, reason = %reason, "message dead-lettered");
            AmqpSettle::ack(&self).await.map_err(|_| {
                self.stale(
                    "its channel closed before the original was acked: the dead-letter copy \
                     is stored, and the original is delivered again",
                )
            })
        })
    }
}
