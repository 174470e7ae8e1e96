//! A consumer of one queue on RabbitMQ, and the settlement of its deliveries.
//!
//! Each consumer has a channel of its own (`basic.qos` = the prefetch, then `basic.consume`
//! on a queue declared with single active consumer). Settlement maps onto AMQP as follows:
//!
//! - **ack** → `basic.ack` of the delivery tag. On a channel that closed meanwhile the ack
//!   cannot be sent: [`SettleError::Stale`], and the broker delivers the message again.
//! - **release** → the consumer's channel is closed, which returns every unacked delivery of
//!   the channel to the queue, ahead of the messages never delivered (classic queues put them
//!   back at their original positions; quorum queues deliver returned messages first), and
//!   the consumer subscribes again on a new channel, dropping what its old one had buffered.
//!   A `basic.nack` with requeue of the one delivery would let the deliveries prefetched
//!   after it overtake it.
//! - **dead-letter** → `basic.reject` cannot carry a reason, so a copy with the reason headers
//!   is published to the dead-letter exchange and confirmed, then the original is acked. If
//!   the copy is not confirmed, the delivery is released instead (it comes back in order).
//!
//! When the connection or the channel is lost (broker restart, a forced close, the queue
//! deleted), [`Consumer::next`] opens them again with backoff, declares the queue again and
//! subscribes again; the broker has returned the unacked deliveries meanwhile.

use super::headers::{dead_letter_headers, properties, wire_of};
use super::link::{Link, Shared, declare_queue};
use super::publish::{Outgoing, publish};
use crate::contract::Consumer;
use crate::delivery::{DeadLetterReason, Delivery, Settle, SettleError};
use crate::message::Queue;
use crate::wire::WireMessage;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

struct Subscription {
    channel: Channel,
    stream: lapin::Consumer,
    /// Set by a release: the channel is (being) closed; what it buffered is stale.
    released: Arc<AtomicBool>,
}

/// A consumer of one queue of an [`crate::AmqpBus`]. Dropping it closes its channel: the
/// broker delivers its unsettled deliveries again.
pub struct AmqpConsumer {
    shared: Arc<Shared>,
    queue: Queue,
    subscription: Option<Subscription>,
}

impl std::fmt::Debug for AmqpConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConsumer")
            .field("queue", &self.queue)
            .field("subscribed", &self.subscription.is_some())
            .finish()
    }
}

impl AmqpConsumer {
    pub(super) fn new(shared: Arc<Shared>, queue: Queue) -> Self {
        Self {
            shared,
            queue,
            subscription: None,
        }
    }

    async fn open(&self, link: &Link) -> Result<Subscription, String> {
        let config = &self.shared.config;
        let scrub = |e: lapin::Error| self.shared.scrub(e);
        let channel = link.connection.create_channel().await.map_err(scrub)?;
        declare_queue(&channel, config, self.queue)
            .await
            .map_err(|(name, e)| format!("declaring {name}: {}", self.shared.scrub(e)))?;
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(scrub)?;
        let stream = channel
            .basic_consume(
                config.queue_name(self.queue).into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(scrub)?;
        Ok(Subscription {
            channel,
            stream,
            released: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Subscribes, retrying with backoff; `None` once the bus closes.
    async fn subscribe(&self) -> Option<Subscription> {
        let mut delay = self.shared.config.reconnect_min;
        loop {
            let link = self.shared.link(None).await.ok()?;
            match self.open(&link).await {
                Ok(subscription) => return Some(subscription),
                Err(reason) => {
                    tracing::warn!(queue = %self.queue, url = %self.shared.url, error = %reason, retry_in = ?delay, "could not subscribe; retrying");
                    if !link.connection.status().connected() {
                        self.shared.forget(&link).await;
                    }
                    if !self.shared.sleep(delay).await {
                        return None;
                    }
                    delay = (delay * 2).min(self.shared.config.reconnect_max);
                }
            }
        }
    }

    fn delivery(&self, d: lapin::message::Delivery, subscription: &Subscription) -> Delivery {
        let lapin::message::Delivery {
            data,
            properties,
            acker,
            redelivered,
            ..
        } = d;
        let wire = wire_of(data, &properties);
        let settle = AmqpSettle {
            shared: self.shared.clone(),
            queue: self.queue,
            message_id: wire.message_id.clone().unwrap_or_default(),
            acker,
            channel: subscription.channel.clone(),
            released: subscription.released.clone(),
        };
        Delivery::new(
            self.queue,
            redelivered,
            wire,
            &self.shared.config.limits,
            Box::new(settle),
        )
    }
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
            if self
                .subscription
                .as_ref()
                .is_some_and(|s| s.released.load(Ordering::Acquire))
            {
                // Released: the broker has the deliveries back; what the old channel
                // buffered is stale.
                self.subscription = None;
            }
            if self.subscription.is_none() {
                self.subscription = Some(self.subscribe().await?);
            }
            let closing = self.shared.closing.notified();
            tokio::pin!(closing);
            closing.as_mut().enable();
            if self.shared.is_closed() {
                continue;
            }
            let subscription = self.subscription.as_mut().expect("subscribed above");
            let next = tokio::select! {
                next = subscription.stream.next() => next,
                () = closing => continue,
            };
            let subscription = self.subscription.as_ref().expect("subscribed above");
            match next {
                Some(Ok(_)) if subscription.released.load(Ordering::Acquire) => {}
                Some(Ok(d)) => return Some(self.delivery(d, subscription)),
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

impl Drop for AmqpConsumer {
    fn drop(&mut self) {
        if let Some(subscription) = self.subscription.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let channel = subscription.channel.clone();
                drop(subscription);
                let _ = channel.close(200, "ledgersync: consumer gone".into()).await;
            });
        }
    }
}

struct AmqpSettle {
    shared: Arc<Shared>,
    queue: Queue,
    message_id: String,
    acker: Acker,
    channel: Channel,
    released: Arc<AtomicBool>,
}

impl AmqpSettle {
    fn stale(&self, reason: impl Into<String>) -> SettleError {
        SettleError::Stale {
            queue: self.queue,
            message_id: self.message_id.clone(),
            reason: reason.into(),
        }
    }

    /// Closes the consumer's channel: every unacked delivery of it goes back to the queue.
    async fn return_all(&self) {
        self.released.store(true, Ordering::Release);
        let _ = self
            .channel
            .close(200, "ledgersync: deliveries released".into())
            .await;
    }

    async fn ack(&self) -> Result<(), SettleError> {
        if self.released.load(Ordering::Acquire) {
            return Err(self.stale("its consumer released its deliveries"));
        }
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.stale("its channel closed")),
            Err(e) => Err(self.stale(self.shared.scrub(e))),
        }
    }
}

impl Settle for AmqpSettle {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), SettleError>> {
        Box::pin(async move { AmqpSettle::ack(&self).await })
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), SettleError>> {
        Box::pin(async move {
            if self.released.load(Ordering::Acquire) || !self.acker.usable() {
                return Err(self.stale("its channel closed or released its deliveries"));
            }
            self.return_all().await;
            Ok(())
        })
    }

    fn dead_letter(
        self: Box<Self>,
        wire: WireMessage,
        reason: DeadLetterReason,
    ) -> BoxFuture<'static, Result<(), SettleError>> {
        Box::pin(async move {
            if self.released.load(Ordering::Acquire) || !self.acker.usable() {
                return Err(self.stale("its channel closed or released its deliveries"));
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
                body: wire.body,
            };
            if let Err(e) = publish(&self.shared, std::slice::from_ref(&copy)).await {
                self.return_all().await;
                return Err(SettleError::DeadLetterNotConfirmed {
                    queue: self.queue,
                    message_id: self.message_id.clone(),
                    reason: e.to_string(),
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
