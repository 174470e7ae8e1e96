//! The in-process backend: the embedded default (`serve` without a broker, `demo`, tests). It
//! keeps the contract the way RabbitMQ does — messages travel in wire form, one active consumer
//! per queue with the others waiting in line, a prefetch window, a release that puts the message
//! back ahead of what was not handed out yet, redelivery in order when a consumer goes away —
//! but holds
//! everything in memory: nothing survives the process.

use crate::contract::{Bus, Confirmation, ConsumeError, Consumer, ListError, PublishError};
use crate::delivery::{DeadLetter, DeadLetterReason, Delivery, Settle, SettleError};
use crate::message::{BusMessage, DEFAULT_PARTITIONS, Queue};
use crate::wire::{WireLimits, WireMessage, decode, encode};
use futures_util::future::BoxFuture;
use ledgersync_engine::Clock;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// The default prefetch of a consumer: with [`DEFAULT_PARTITIONS`] queues, 32 messages each is
/// about one group commit of the journal (4096 events) in flight on a node.
pub const DEFAULT_PREFETCH: u16 = 32;

/// Settings of an [`InProcessBus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InProcessConfig {
    /// Partitions (at least 1). Default [`DEFAULT_PARTITIONS`].
    pub partitions: usize,
    /// Deliveries a consumer may hold unsettled. Default [`DEFAULT_PREFETCH`].
    pub prefetch: u16,
    /// Size limits. Default 1 MiB a body.
    pub limits: WireLimits,
}

impl Default for InProcessConfig {
    fn default() -> Self {
        Self {
            partitions: DEFAULT_PARTITIONS,
            prefetch: DEFAULT_PREFETCH,
            limits: WireLimits::default(),
        }
    }
}

struct Stored {
    seq: u64,
    wire: WireMessage,
    redelivered: bool,
}

#[derive(Default)]
struct QueueState {
    /// Waiting to be delivered, in order (sorted by `seq`: a returned message was delivered
    /// before every message still waiting).
    ready: VecDeque<Stored>,
    /// Delivered to the active consumer and not settled, by `seq`.
    unsettled: BTreeMap<u64, Stored>,
    /// Consumers in line; the first is the active one.
    consumers: VecDeque<u64>,
    /// Changes whenever the unsettled deliveries are returned because their consumer went
    /// away: deliveries of an older epoch are stale.
    epoch: u64,
}

struct QueueSlot {
    state: Mutex<QueueState>,
    /// Woken on every change of the queue.
    changed: Notify,
}

struct Inner {
    config: InProcessConfig,
    queues: Vec<QueueSlot>,
    dead: Mutex<Vec<DeadLetter>>,
    next_seq: AtomicU64,
    next_consumer: AtomicU64,
    closed: Mutex<bool>,
    /// Woken whenever a message is settled or returned.
    settled: Notify,
    clock: Arc<dyn Clock>,
}

/// The in-process bus. Cheap to clone: clones share the queues (a clone is another
/// connection to the same bus).
#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
    /// This handle's limits (another node may have others: [`InProcessBus::with_limits`]).
    limits: WireLimits,
}

impl std::fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBus")
            .field("config", &self.inner.config)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InProcessBus {
    /// A bus of `partitions` partitions (at least 1) with the default prefetch and limits;
    /// dead letters are timed with `clock`.
    pub fn new(partitions: usize, clock: Arc<dyn Clock>) -> Self {
        Self::with_config(
            InProcessConfig {
                partitions,
                ..InProcessConfig::default()
            },
            clock,
        )
    }

    /// A bus with `config`.
    pub fn with_config(config: InProcessConfig, clock: Arc<dyn Clock>) -> Self {
        let config = InProcessConfig {
            partitions: config.partitions.max(1),
            prefetch: config.prefetch.max(1),
            ..config
        };
        let queues = Queue::all(config.partitions)
            .chain([Queue::CrmCommands])
            .map(|_| QueueSlot {
                state: Mutex::new(QueueState::default()),
                changed: Notify::new(),
            })
            .collect();
        Self {
            limits: config.limits,
            inner: Arc::new(Inner {
                config,
                queues,
                dead: Mutex::new(Vec::new()),
                next_seq: AtomicU64::new(0),
                next_consumer: AtomicU64::new(0),
                closed: Mutex::new(false),
                settled: Notify::new(),
                clock,
            }),
        }
    }

    /// Another handle on the same queues that publishes and decodes under `limits`, as a node
    /// configured otherwise would.
    pub fn with_limits(&self, limits: WireLimits) -> Self {
        Self {
            inner: self.inner.clone(),
            limits,
        }
    }

    /// Closes the bus: publishing fails with [`PublishError::Closed`] and consumers get `None`.
    /// Messages still queued or unsettled stay where they are.
    pub fn close(&self) {
        *lock(&self.inner.closed) = true;
        for q in &self.inner.queues {
            q.changed.notify_waiters();
        }
    }

    /// Messages queued or delivered and not settled, over all queues.
    pub fn pending(&self) -> usize {
        self.inner
            .queues
            .iter()
            .map(|q| {
                let s = lock(&q.state);
                s.ready.len() + s.unsettled.len()
            })
            .sum()
    }

    /// Waits until every message published so far is settled (acked or dead-lettered). Tests
    /// and a graceful stop use it.
    pub async fn settled(&self) {
        loop {
            let notified = self.inner.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn slot(&self, queue: Queue) -> Option<&QueueSlot> {
        self.inner.slot(queue)
    }
}

impl Inner {
    fn index(&self, queue: Queue) -> Option<usize> {
        match queue {
            Queue::Crm => Some(0),
            Queue::Partition(p) if p < self.config.partitions => Some(p + 1),
            Queue::Partition(_) => None,
            Queue::CrmCommands => Some(self.config.partitions + 1),
        }
    }

    fn slot(&self, queue: Queue) -> Option<&QueueSlot> {
        self.index(queue).map(|i| &self.queues[i])
    }

    fn is_closed(&self) -> bool {
        *lock(&self.closed)
    }

    /// Puts every unsettled delivery of `queue` back in front of it, in order, marked
    /// redelivered (its consumer went away); their handles become stale.
    fn return_unsettled(&self, slot: &QueueSlot, state: &mut QueueState) {
        let returned = std::mem::take(&mut state.unsettled);
        for (_, mut stored) in returned.into_iter().rev() {
            stored.redelivered = true;
            state.ready.push_front(stored);
        }
        state.epoch += 1;
        slot.changed.notify_waiters();
        self.settled.notify_waiters();
    }

    fn enqueue(&self, queue: Queue, wires: Vec<WireMessage>) -> Result<(), PublishError> {
        if self.is_closed() {
            return Err(PublishError::Closed);
        }
        let slot = self.slot(queue).ok_or(PublishError::UnknownQueue {
            queue,
            partitions: self.config.partitions,
        })?;
        let mut state = lock(&slot.state);
        for wire in wires {
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            state.ready.push_back(Stored {
                seq,
                wire,
                redelivered: false,
            });
        }
        drop(state);
        slot.changed.notify_waiters();
        Ok(())
    }

    fn check_sizes<'a>(
        limits: &WireLimits,
        wires: impl IntoIterator<Item = &'a WireMessage>,
    ) -> Result<(), PublishError> {
        let limit = limits.max_body;
        match wires.into_iter().find(|w| w.body.len() > limit) {
            Some(w) => Err(PublishError::TooLarge {
                message_id: w.message_id.clone().unwrap_or_default(),
                size: w.body.len(),
                limit,
            }),
            None => Ok(()),
        }
    }
}

impl Bus for InProcessBus {
    type Consumer = InProcessConsumer;

    fn partitions(&self) -> usize {
        self.inner.config.partitions
    }

    fn limits(&self) -> WireLimits {
        self.limits
    }

    fn publish_all(
        &self,
        messages: &[BusMessage],
    ) -> impl Future<Output = Result<Vec<Confirmation>, PublishError>> + Send {
        let partitions = self.partitions();
        let encoded: Vec<(Queue, WireMessage)> = messages
            .iter()
            .map(|m| (m.queue(partitions), encode(m)))
            .collect();
        let result =
            Inner::check_sizes(&self.limits, encoded.iter().map(|(_, w)| w)).and_then(|()| {
                let mut confirmed = Vec::with_capacity(encoded.len());
                for (queue, wire) in encoded {
                    self.inner.enqueue(queue, vec![wire])?;
                    confirmed.push(Confirmation { queue });
                }
                Ok(confirmed)
            });
        std::future::ready(result)
    }

    fn publish_wire(
        &self,
        queue: Queue,
        messages: Vec<WireMessage>,
    ) -> impl Future<Output = Result<(), PublishError>> + Send {
        let result = Inner::check_sizes(&self.limits, &messages)
            .and_then(|()| self.inner.enqueue(queue, messages));
        std::future::ready(result)
    }

    fn consume(
        &self,
        queue: Queue,
    ) -> impl Future<Output = Result<InProcessConsumer, ConsumeError>> + Send {
        let result = if self.inner.is_closed() {
            Err(ConsumeError::Closed)
        } else {
            match self.slot(queue) {
                None => Err(ConsumeError::UnknownQueue {
                    queue,
                    partitions: self.partitions(),
                }),
                Some(slot) => {
                    let id = self.inner.next_consumer.fetch_add(1, Ordering::Relaxed);
                    lock(&slot.state).consumers.push_back(id);
                    Ok(InProcessConsumer {
                        bus: self.clone(),
                        queue,
                        id,
                    })
                }
            }
        };
        std::future::ready(result)
    }

    fn dead_letters(&self) -> impl Future<Output = Result<Vec<DeadLetter>, ListError>> + Send {
        std::future::ready(Ok(lock(&self.inner.dead).clone()))
    }

    fn close(&self) -> impl Future<Output = ()> + Send {
        InProcessBus::close(self);
        std::future::ready(())
    }
}

/// A consumer of one queue of an [`InProcessBus`].
pub struct InProcessConsumer {
    bus: InProcessBus,
    queue: Queue,
    id: u64,
}

impl std::fmt::Debug for InProcessConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessConsumer")
            .field("queue", &self.queue)
            .field("id", &self.id)
            .finish()
    }
}

impl InProcessConsumer {
    fn slot(&self) -> &QueueSlot {
        self.bus
            .slot(self.queue)
            .expect("a consumer is made for a queue of its bus")
    }

    /// The next delivery if one can be handed out now.
    fn try_take(&self) -> Option<Delivery> {
        let inner = &self.bus.inner;
        let mut state = lock(&self.slot().state);
        if state.consumers.front() != Some(&self.id)
            || state.unsettled.len() >= usize::from(inner.config.prefetch)
        {
            return None;
        }
        let stored = state.ready.pop_front()?;
        let settle = InProcessSettle {
            bus: self.bus.clone(),
            queue: self.queue,
            seq: stored.seq,
            epoch: state.epoch,
            message_id: stored.wire.message_id.clone().unwrap_or_default(),
        };
        let delivery = Delivery::new(
            self.queue,
            stored.redelivered,
            stored.wire.clone(),
            &self.bus.limits,
            Box::new(settle),
        );
        state.unsettled.insert(stored.seq, stored);
        Some(delivery)
    }
}

impl Consumer for InProcessConsumer {
    fn queue(&self) -> Queue {
        self.queue
    }

    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let notified = self.slot().changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.bus.inner.is_closed() {
                return None;
            }
            if let Some(delivery) = self.try_take() {
                return Some(delivery);
            }
            notified.await;
        }
    }
}

impl Drop for InProcessConsumer {
    fn drop(&mut self) {
        let inner = &self.bus.inner;
        let slot = self.slot();
        let mut state = lock(&slot.state);
        let was_active = state.consumers.front() == Some(&self.id);
        state.consumers.retain(|c| *c != self.id);
        if was_active {
            inner.return_unsettled(slot, &mut state);
        }
    }
}

struct InProcessSettle {
    bus: InProcessBus,
    queue: Queue,
    seq: u64,
    epoch: u64,
    message_id: String,
}

impl InProcessSettle {
    /// Takes the delivery out of the unsettled set and hands it to `then` under the queue's
    /// lock, or says why it is stale.
    fn settle_with(
        &self,
        then: impl FnOnce(&Inner, &QueueSlot, &mut QueueState, Stored),
    ) -> Result<(), SettleError> {
        let inner = &self.bus.inner;
        let slot = self.bus.slot(self.queue).expect("a queue of the bus");
        let mut state = lock(&slot.state);
        let stale = |reason: &str| SettleError::Stale {
            queue: self.queue,
            message_id: self.message_id.clone(),
            reason: reason.into(),
        };
        if state.epoch != self.epoch {
            return Err(stale("its consumer went away"));
        }
        let stored = state
            .unsettled
            .remove(&self.seq)
            .ok_or_else(|| stale("it was settled already"))?;
        then(inner, slot, &mut state, stored);
        drop(state);
        slot.changed.notify_waiters();
        inner.settled.notify_waiters();
        Ok(())
    }
}

impl Settle for InProcessSettle {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), SettleError>> {
        let result = self.settle_with(|_, _, _, _| {});
        Box::pin(std::future::ready(result))
    }

    fn release(self: Box<Self>, _: WireMessage) -> BoxFuture<'static, Result<(), SettleError>> {
        let result = self.settle_with(|_, _, state, mut stored| {
            // Ahead of every message not handed out yet: those still waiting all came after
            // it (a returned message was delivered before every message still waiting).
            stored.redelivered = true;
            let at = state.ready.partition_point(|s| s.seq < stored.seq);
            state.ready.insert(at, stored);
        });
        Box::pin(std::future::ready(result))
    }

    fn dead_letter(
        self: Box<Self>,
        wire: WireMessage,
        reason: DeadLetterReason,
    ) -> BoxFuture<'static, Result<(), SettleError>> {
        let queue = self.queue;
        let limits = self.bus.limits;
        let result = self.settle_with(|inner, _, _, _| {
            tracing::warn!(%queue, message_id = wire.message_id.as_deref().unwrap_or(""), %reason, "message dead-lettered");
            let message = decode(&wire, &limits).ok();
            lock(&inner.dead).push(DeadLetter {
                wire,
                message,
                reason,
                queue: Some(queue),
                at: Some(inner.clock.now()),
            });
        });
        Box::pin(std::future::ready(result))
    }
}
