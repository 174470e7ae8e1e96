//! The bus: how messages reach the live side (CRM changes for the organization, mail-side
//! observations for a mailbox), and the contract every backend keeps.
//!
//! # The contract (the in-process backend here; the AMQP backend later)
//!
//! - **Publish with confirm.** [`Bus::publish`] answers once the bus has taken the message
//!   (for AMQP: the publisher confirm); an error means it was not taken and the publisher keeps
//!   it.
//! - **Partitions.** A fixed number of partitions; a mail-side message goes to the partition of
//!   its mailbox ([`partition_of`]: a stable hash of the mailbox id), an organization-wide
//!   message (a CRM change) to partition 0. Within a partition messages are delivered in the
//!   order published, one at a time to one consumer: the next message of a partition is
//!   delivered only after the previous one was acked, dead-lettered or released. So the order of
//!   one mailbox's messages, and of the CRM changes, is kept.
//! - **Ack after durability.** A consumer calls [`Bus::ack`] only after the events the message
//!   caused are durable in the journal (ARCHITECTURE §2.5). A message delivered and never acked
//!   is not lost.
//! - **Release = redelivery.** [`Bus::release`] gives the message back (a transient failure: the
//!   journal could not append); it is delivered again, before the later messages of its
//!   partition, with its delivery count increased.
//! - **Dead letter with its reason.** [`Bus::dead_letter`] takes a message that can never
//!   succeed (bad input: retrying cannot help) out of its partition and keeps it, with the reason
//!   and the time, in a dead-letter store that [`Bus::dead_letters`] lists.
//!
//! A message carries the event id it will be recorded under, so a redelivered message is
//! recognized (see [`crate::org`]).

use ledgersync_domain::{Event, EventId, MailboxId, Timestamp};
use ledgersync_engine::Clock;
use ledgersync_engine::mailbox::Incoming;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;

/// The default number of partitions of the in-process bus.
pub const DEFAULT_PARTITIONS: usize = 8;

/// A message on the bus.
#[derive(Debug, Clone)]
pub enum BusMessage {
    /// A CRM-side or administrative change for the organization; organization-wide, so on
    /// partition 0. `id` is the id it is recorded under in `org/<id>`.
    CrmChange {
        /// The event id of the change in the organization stream.
        id: EventId,
        /// The change.
        event: Event,
    },
    /// A mail-side observation (or an intent outcome) for one mailbox.
    MailObservation {
        /// The mailbox.
        mailbox: MailboxId,
        /// The observation with its event id, causation and correlation.
        incoming: Incoming,
    },
}

impl BusMessage {
    /// A CRM change under a new event id.
    pub fn crm(event: Event) -> Self {
        BusMessage::CrmChange {
            id: ledgersync_engine::IdGen.next(),
            event,
        }
    }

    /// A mail-side observation for `mailbox` under a new event id (its own correlation; an
    /// intent outcome is caused by its intent).
    pub fn observation(mailbox: MailboxId, event: Event) -> Self {
        let id = ledgersync_engine::IdGen.next();
        let causation = match &event {
            Event::IntentSucceeded(p) => vec![p.intent],
            Event::IntentFailed(p) => vec![p.intent],
            _ => vec![],
        };
        BusMessage::MailObservation {
            mailbox,
            incoming: Incoming {
                event,
                id,
                causation,
                correlation: id,
            },
        }
    }

    /// The mailbox a message is for; `None` for organization-wide messages.
    pub fn mailbox(&self) -> Option<&MailboxId> {
        match self {
            BusMessage::CrmChange { .. } => None,
            BusMessage::MailObservation { mailbox, .. } => Some(mailbox),
        }
    }

    /// The event the message carries.
    pub fn event(&self) -> &Event {
        match self {
            BusMessage::CrmChange { event, .. } => event,
            BusMessage::MailObservation { incoming, .. } => &incoming.event,
        }
    }
}

/// The partition of a message among `partitions`: 0 for organization-wide messages, a stable
/// hash (FNV-1a) of the mailbox id otherwise. Stable across processes and versions, so every
/// node of a cluster agrees.
pub fn partition_of(message: &BusMessage, partitions: usize) -> usize {
    let partitions = partitions.max(1);
    match message.mailbox() {
        None => 0,
        Some(mailbox) => {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in mailbox.to_string().bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
            (hash % partitions as u64) as usize
        }
    }
}

/// The bus took a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    /// The partition it went to.
    pub partition: usize,
    /// Its delivery tag (unique in the bus).
    pub tag: u64,
}

/// A message handed to a consumer, to be acked, released or dead-lettered.
#[derive(Debug)]
pub struct Delivery {
    /// Its partition.
    pub partition: usize,
    /// Its delivery tag.
    pub tag: u64,
    /// How many times it was delivered before (0 the first time).
    pub redelivered: u32,
    /// The message.
    pub message: BusMessage,
}

/// A message taken out of its partition because it can never succeed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message.
    pub message: BusMessage,
    /// Why it was rejected.
    pub reason: String,
    /// When (on the bus's clock).
    pub at: Timestamp,
    /// Its partition.
    pub partition: usize,
}

/// Why the bus refused an operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The bus is closed: nothing more is taken.
    #[error("the bus is closed; the message was not taken: publish it again once the bus runs")]
    Closed,
    /// An ack, release or dead-letter named a delivery the bus does not have in flight.
    #[error(
        "delivery {tag} on partition {partition} is not in flight (already acked, released or \
         dead-lettered)"
    )]
    UnknownDelivery {
        /// The partition.
        partition: usize,
        /// The delivery tag.
        tag: u64,
    },
}

/// The message side of the runtime. Implemented in process by [`InProcessBus`]; the AMQP
/// backend implements the same contract (module documentation).
pub trait Bus: Send + Sync + 'static {
    /// The number of partitions (fixed for the life of the bus).
    fn partitions(&self) -> usize;

    /// Publishes a message; the answer is the confirmation that the bus took it.
    fn publish(
        &self,
        message: BusMessage,
    ) -> impl Future<Output = Result<Confirmation, BusError>> + Send;

    /// The next message of `partition`, once the previous one is settled (acked, released or
    /// dead-lettered); `None` once the bus is closed.
    fn receive(&self, partition: usize) -> impl Future<Output = Option<Delivery>> + Send;

    /// The message's events are durable: it is done.
    fn ack(&self, delivery: Delivery) -> Result<(), BusError>;

    /// The message could not be handled now (a transient failure): deliver it again, before
    /// the later messages of its partition.
    fn release(&self, delivery: Delivery) -> Result<(), BusError>;

    /// The message can never succeed: keep it in the dead-letter store with `reason`.
    fn dead_letter(&self, delivery: Delivery, reason: String) -> Result<(), BusError>;

    /// The dead-letter store, oldest first.
    fn dead_letters(&self) -> Vec<DeadLetter>;
}

struct Queued {
    tag: u64,
    redelivered: u32,
    message: BusMessage,
}

#[derive(Default)]
struct PartitionState {
    queue: VecDeque<Queued>,
    /// The message delivered and not yet settled (at most one: per-partition order).
    in_flight: Option<u64>,
}

struct Partition {
    state: Mutex<PartitionState>,
    /// Woken when a message can be delivered (published, released) or the bus closes.
    ready: Notify,
}

struct Inner {
    partitions: Vec<Partition>,
    dead: Mutex<Vec<DeadLetter>>,
    next_tag: Mutex<u64>,
    closed: Mutex<bool>,
    /// Woken whenever a message is settled.
    settled: Notify,
    clock: Arc<dyn Clock>,
}

/// The in-process bus: a queue per partition, one message in flight per partition, a
/// dead-letter store in memory. Cheap to clone (shared).
#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBus")
            .field("partitions", &self.inner.partitions.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InProcessBus {
    /// A bus with `partitions` partitions (at least 1); dead letters are timed with `clock`.
    pub fn new(partitions: usize, clock: Arc<dyn Clock>) -> Self {
        let partitions = (0..partitions.max(1))
            .map(|_| Partition {
                state: Mutex::new(PartitionState::default()),
                ready: Notify::new(),
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                partitions,
                dead: Mutex::new(Vec::new()),
                next_tag: Mutex::new(0),
                closed: Mutex::new(false),
                settled: Notify::new(),
                clock,
            }),
        }
    }

    /// Closes the bus: publishing fails with [`BusError::Closed`] and consumers get `None`
    /// from [`Bus::receive`]. Messages still queued stay unacked.
    pub fn close(&self) {
        *lock(&self.inner.closed) = true;
        for p in &self.inner.partitions {
            p.ready.notify_waiters();
            p.ready.notify_one();
        }
    }

    /// Messages queued or in flight, over all partitions.
    pub fn pending(&self) -> usize {
        self.inner
            .partitions
            .iter()
            .map(|p| {
                let s = lock(&p.state);
                s.queue.len() + usize::from(s.in_flight.is_some())
            })
            .sum()
    }

    /// Waits until every message published so far is settled (acked or dead-lettered): no
    /// message queued or in flight. Tests and a graceful stop use it.
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

    fn partition(&self, partition: usize) -> &Partition {
        &self.inner.partitions[partition % self.inner.partitions.len()]
    }

    /// Takes the delivery out of flight, checking it is the one in flight.
    fn settle(&self, delivery: &Delivery) -> Result<(), BusError> {
        let mut state = lock(&self.partition(delivery.partition).state);
        match &state.in_flight {
            Some(tag) if *tag == delivery.tag => {
                state.in_flight = None;
                Ok(())
            }
            _ => Err(BusError::UnknownDelivery {
                partition: delivery.partition,
                tag: delivery.tag,
            }),
        }
    }

    fn enqueue(&self, message: BusMessage) -> Result<Confirmation, BusError> {
        if *lock(&self.inner.closed) {
            return Err(BusError::Closed);
        }
        let partition = partition_of(&message, self.partitions());
        let tag = {
            let mut next = lock(&self.inner.next_tag);
            *next += 1;
            *next
        };
        let p = self.partition(partition);
        lock(&p.state).queue.push_back(Queued {
            tag,
            redelivered: 0,
            message,
        });
        p.ready.notify_one();
        Ok(Confirmation { partition, tag })
    }

    fn settled_one(&self, partition: usize) {
        self.partition(partition).ready.notify_one();
        self.inner.settled.notify_waiters();
    }
}

impl Bus for InProcessBus {
    fn partitions(&self) -> usize {
        self.inner.partitions.len()
    }

    fn publish(
        &self,
        message: BusMessage,
    ) -> impl Future<Output = Result<Confirmation, BusError>> + Send {
        std::future::ready(self.enqueue(message))
    }

    fn receive(&self, partition: usize) -> impl Future<Output = Option<Delivery>> + Send {
        let bus = self.clone();
        async move {
            let partition = partition % bus.partitions();
            let p = bus.partition(partition);
            loop {
                let notified = p.ready.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if *lock(&bus.inner.closed) {
                    return None;
                }
                {
                    let mut state = lock(&p.state);
                    if state.in_flight.is_none()
                        && let Some(next) = state.queue.pop_front()
                    {
                        state.in_flight = Some(next.tag);
                        return Some(Delivery {
                            partition,
                            tag: next.tag,
                            redelivered: next.redelivered,
                            message: next.message,
                        });
                    }
                }
                notified.await;
            }
        }
    }

    fn ack(&self, delivery: Delivery) -> Result<(), BusError> {
        self.settle(&delivery)?;
        self.settled_one(delivery.partition);
        Ok(())
    }

    fn release(&self, delivery: Delivery) -> Result<(), BusError> {
        self.settle(&delivery)?;
        let p = self.partition(delivery.partition);
        lock(&p.state).queue.push_front(Queued {
            tag: delivery.tag,
            redelivered: delivery.redelivered + 1,
            message: delivery.message,
        });
        p.ready.notify_one();
        Ok(())
    }

    fn dead_letter(&self, delivery: Delivery, reason: String) -> Result<(), BusError> {
        self.settle(&delivery)?;
        tracing::warn!(partition = delivery.partition, tag = delivery.tag, %reason, "message dead-lettered");
        lock(&self.inner.dead).push(DeadLetter {
            message: delivery.message,
            reason,
            at: self.inner.clock.now(),
            partition: delivery.partition,
        });
        self.settled_one(delivery.partition);
        Ok(())
    }

    fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.inner.dead).clone()
    }
}
