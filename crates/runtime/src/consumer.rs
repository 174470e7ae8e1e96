//! The consumer loop: how the live side takes its messages from the bus (`ledgersync-bus`).
//!
//! [`consume`] takes the deliveries of one queue: mail-side observations go to the
//! [`Registry`] (and the driver waiting for one is answered through [`Replies`]), CRM lines to
//! the [`OrgActor`], read against its state like a `crm apply` line, one at a time. The
//! observations of a partition are taken in batches, what has arrived (up to
//! [`MAX_BATCH`]): each mailbox's share goes to its actor as one [`ObserveMailboxAll`] (in
//! delivery order), all mailboxes at once, and the deliveries are then settled in delivery
//! order. The service consumes its CRM queue in batches of its own (`Service::attach_bus`).
//! Each delivery is settled once its outcome is known:
//!
//! - handled, every event it caused durable → **ack**;
//! - bad input — a message that does not decode (its [`WireError`](ledgersync_bus::WireError),
//!   with the field, line and column), a change the organization refuses, a CRM change sent as
//!   a mail observation, an observation for a mailbox the organization does not know →
//!   **dead-letter** with the reason (retrying cannot help);
//! - anything else (the journal, a conflict, an actor that did not answer) → **release**, then
//!   the loop waits [`ConsumerConfig::retry_after`] before it takes the next delivery, which
//!   is the released message again; the deliveries of its batch behind it are held, unsettled,
//!   and handled again after it (those already recorded are answered as such and acked), so
//!   a mailbox's observations are recorded in the order they were delivered.
//!
//! A message delivered twice (after a release, a lost ack, a consumer that went away) carries
//! the same event id: the organization answers it as already recorded, and it is acked again.

use crate::org::{CheckLines, CrmChange, KnownMailboxes, OrgActor};
use crate::registry::{ObserveMailboxAll, Registry};
use crate::sink::{Replies, Reply};
use actix::Addr;
use ledgersync_bus::{Bus, BusMessage, Consumer, DeadLetterReason, Delivery, Queue};
use ledgersync_domain::Limits;
use ledgersync_domain::event::EventClass;
use ledgersync_engine::EngineError;
use ledgersync_engine::mailbox::Incoming;
use std::collections::VecDeque;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

/// Settings of a consumer loop.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// After a transient failure, the queue's next delivery (the same message) is taken only
    /// after this long. Default 1 s.
    pub retry_after: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            retry_after: Duration::from_secs(1),
        }
    }
}

/// What the consumer did with one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Handled; its events are durable; acked.
    Acked,
    /// Bad input; dead-lettered with this reason.
    DeadLettered(String),
    /// A transient failure; released for redelivery.
    Released(String),
}

enum Outcome {
    Done,
    /// Every observation of the delivery durable: each id with its decisions.
    Decided(
        Vec<(
            ledgersync_domain::EventId,
            Vec<ledgersync_engine::engine::Appended>,
        )>,
    ),
    Bad(DeadLetterReason),
    Transient(String),
}

/// Where the consumer loop sends messages.
#[derive(Clone)]
pub struct Targets {
    /// CRM changes go here.
    pub org: Addr<OrgActor>,
    /// Mail-side observations go here.
    pub registry: Addr<Registry>,
    /// Mail observations for other mailboxes are dead-lettered ([`OrgActor::known_mailboxes`]).
    pub known: KnownMailboxes,
    /// Drivers waiting for their observations (empty when none publish in this process).
    pub replies: Replies,
    /// Told of every mailbox an observation reached, when something (the service's CRM
    /// command dispatcher) wants to know.
    pub touched: Option<tokio::sync::mpsc::UnboundedSender<ledgersync_domain::MailboxId>>,
}

async fn handle_message(message: &BusMessage, targets: &Targets) -> Outcome {
    let (org, registry) = (&targets.org, &targets.registry);
    let bad = |text: String| Outcome::Bad(DeadLetterReason::new(text));
    match message {
        BusMessage::CrmChange { id, line } => {
            let checked = match org
                .send(CheckLines {
                    text: line.clone(),
                    limits: Limits::default(),
                })
                .await
            {
                Ok(Ok(checked)) => checked,
                Ok(Err(e)) => return Outcome::Transient(e.to_string()),
                Err(e) => {
                    return Outcome::Transient(format!(
                        "the organization actor did not answer: {e}"
                    ));
                }
            };
            if let Some(e) = checked.errors.first() {
                return Outcome::Bad(DeadLetterReason {
                    reason: e.message.clone(),
                    field: e.field.clone(),
                    ..DeadLetterReason::default()
                });
            }
            let Some(change) = checked.changes.into_iter().next() else {
                return bad(
                    "invalid input: a command result reaches the CRM queue of a running \
                     service, not this consumer"
                        .into(),
                );
            };
            let change = CrmChange {
                id: *id,
                event: change.event,
            };
            match org.send(change).await {
                Ok(Ok(_)) => Outcome::Done,
                Ok(Err(e)) if e.is_bad_input() => bad(e.to_string()),
                Ok(Err(e)) => Outcome::Transient(e.to_string()),
                Err(e) => Outcome::Transient(format!("the organization actor did not answer: {e}")),
            }
        }
        BusMessage::MailObservation { mailbox, .. }
        | BusMessage::MailObservations { mailbox, .. } => {
            let incomings = message.incomings();
            for incoming in incomings {
                if let Err(bad) = check_observation(mailbox, incoming, targets) {
                    return bad;
                }
            }
            let observe = ObserveMailboxAll::new(mailbox.clone(), incomings.to_vec());
            match registry.send(observe).await {
                Ok(Ok(decided)) => {
                    Outcome::Decided(incomings.iter().map(|i| i.id).zip(decided).collect())
                }
                Ok(Err(e)) => Outcome::Transient(e.to_string()),
                Err(e) => Outcome::Transient(format!("the registry did not answer: {e}")),
            }
        }
    }
}

/// Refuses an observation the partitions' consumer must not record: not a mail-server
/// observation or outcome, or for a mailbox the organization does not know.
fn check_observation(
    mailbox: &ledgersync_domain::MailboxId,
    incoming: &ledgersync_engine::mailbox::Incoming,
    targets: &Targets,
) -> Result<(), Outcome> {
    if !matches!(
        incoming.event.class(),
        EventClass::MailObservation | EventClass::Outcome
    ) {
        return Err(Outcome::Bad(DeadLetterReason::new(format!(
            "invalid input: `{}` is not a mail-server observation or an intent outcome; \
             CRM changes and administrative events go to the organization",
            incoming.event.name()
        ))));
    }
    let known = targets
        .known
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(mailbox);
    if !known {
        return Err(Outcome::Bad(DeadLetterReason::new(
            EngineError::UnknownMailbox(mailbox.clone()).to_string(),
        )));
    }
    Ok(())
}

/// The outcomes of `batch`, in its order. Mail observations are checked one by one, then each
/// mailbox's share is sent to its actor as one [`ObserveMailboxAll`] (in delivery order), all
/// mailboxes at once. A batch holding a CRM change is handled one delivery at a time.
async fn handle_batch(batch: &[Delivery], targets: &Targets) -> Vec<Outcome> {
    let crm = batch
        .iter()
        .any(|d| matches!(d.message(), Ok(BusMessage::CrmChange { .. })));
    if crm || batch.len() == 1 {
        let mut outcomes = Vec::with_capacity(batch.len());
        for delivery in batch {
            outcomes.push(match delivery.message() {
                Ok(message) => handle_message(message, targets).await,
                Err(e) => Outcome::Bad(DeadLetterReason::from(e)),
            });
        }
        return outcomes;
    }
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
    // Each mailbox's observations, in delivery order, with their places in the batch.
    let mut groups: Vec<(ledgersync_domain::MailboxId, Vec<usize>, Vec<Incoming>)> = Vec::new();
    for (i, delivery) in batch.iter().enumerate() {
        match delivery.message() {
            Err(e) => outcomes.push(Some(Outcome::Bad(DeadLetterReason::from(e)))),
            Ok(BusMessage::CrmChange { .. }) => unreachable!("handled one at a time above"),
            Ok(
                message @ (BusMessage::MailObservation { mailbox, .. }
                | BusMessage::MailObservations { mailbox, .. }),
            ) => {
                let incomings = message.incomings();
                match incomings
                    .iter()
                    .try_for_each(|incoming| check_observation(mailbox, incoming, targets))
                {
                    Err(bad) => outcomes.push(Some(bad)),
                    Ok(()) => {
                        outcomes.push(None);
                        // One place per observation: a delivery may carry several.
                        let places = std::iter::repeat_n(i, incomings.len());
                        match groups.iter_mut().find(|g| &g.0 == mailbox) {
                            Some(g) => {
                                g.1.extend(places);
                                g.2.extend(incomings.iter().cloned());
                            }
                            None => {
                                groups.push((mailbox.clone(), places.collect(), incomings.to_vec()))
                            }
                        }
                    }
                }
            }
        }
    }
    let requests: Vec<_> = groups
        .iter_mut()
        .map(|(mailbox, _, incomings)| {
            let incomings = std::mem::take(incomings);
            targets
                .registry
                .send(ObserveMailboxAll::new(mailbox.clone(), incomings))
        })
        .collect();
    let answers = futures_util::future::join_all(requests).await;
    let ids: Vec<Vec<ledgersync_domain::EventId>> = groups
        .iter()
        .map(|(_, places, _)| {
            // The ids in the order the group holds them: each delivery's, in its order.
            let mut ids = Vec::with_capacity(places.len());
            let mut last = None;
            for &i in places {
                if last != Some(i) {
                    ids.extend(
                        batch[i]
                            .message()
                            .map_or(&[][..], |m| m.incomings())
                            .iter()
                            .map(|o| o.id),
                    );
                    last = Some(i);
                }
            }
            ids
        })
        .collect();
    for (((_, places, _), answer), ids) in groups.into_iter().zip(answers).zip(ids) {
        match answer {
            Ok(Ok(decided)) => {
                for ((i, id), decisions) in places.into_iter().zip(ids).zip(decided) {
                    match &mut outcomes[i] {
                        Some(Outcome::Decided(all)) => all.push((id, decisions)),
                        slot => *slot = Some(Outcome::Decided(vec![(id, decisions)])),
                    }
                }
            }
            Ok(Err(e)) => {
                for i in places {
                    outcomes[i] = Some(Outcome::Transient(e.to_string()));
                }
            }
            Err(e) => {
                for i in places {
                    outcomes[i] = Some(Outcome::Transient(format!(
                        "the registry did not answer: {e}"
                    )));
                }
            }
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every delivery has an outcome"))
        .collect()
}

/// Answers the drivers waiting for the observations of `delivery`, which are durable, and
/// tells the CRM command dispatcher of a mailbox they decided something for.
fn answer(
    delivery: &Delivery,
    decided: Vec<(
        ledgersync_domain::EventId,
        Vec<ledgersync_engine::engine::Appended>,
    )>,
    targets: &Targets,
) {
    if let (Some(touched), Some(mailbox)) = (
        &targets.touched,
        delivery.message().ok().and_then(BusMessage::mailbox),
    ) && decided.iter().any(|(_, d)| !d.is_empty())
    {
        let _ = touched.send(mailbox.clone());
    }
    for (id, decisions) in decided {
        targets.replies.answer(id, Reply::Decided(decisions));
    }
}

/// Handles one delivery and settles it: ack, dead-letter or release.
pub async fn settle_one(delivery: Delivery, targets: &Targets) -> Settled {
    let outcome = match delivery.message() {
        Ok(message) => handle_message(message, targets).await,
        Err(e) => Outcome::Bad(DeadLetterReason::from(e)),
    };
    settle(delivery, outcome, targets).await
}

/// Settles `delivery` by its `outcome`, answering a waiting driver first.
async fn settle(delivery: Delivery, outcome: Outcome, targets: &Targets) -> Settled {
    let queue = delivery.queue();
    let message_id = delivery.message_id().unwrap_or_default().to_string();
    let (settled, result) = match outcome {
        Outcome::Done => (Settled::Acked, delivery.ack().await),
        Outcome::Decided(decided) => {
            // Durable: the waiting driver may go on (before the ack, which only tells the
            // broker).
            answer(&delivery, decided, targets);
            (Settled::Acked, delivery.ack().await)
        }
        Outcome::Bad(reason) => {
            if let Ok(message) = delivery.message() {
                for incoming in message.incomings() {
                    targets
                        .replies
                        .answer(incoming.id, Reply::Refused(reason.reason.clone()));
                }
            }
            (
                Settled::DeadLettered(reason.reason.clone()),
                delivery.dead_letter(reason).await,
            )
        }
        Outcome::Transient(reason) => {
            tracing::warn!(%queue, %message_id, %reason, "message left for redelivery");
            (Settled::Released(reason), delivery.release().await)
        }
    };
    if let Err(e) = result {
        // The bus delivers the message again; its event id makes the second time harmless.
        tracing::warn!(%queue, %message_id, error = %e, "the delivery could not be settled");
    }
    settled
}

/// The deliveries of a consumer's batch that stayed behind one it released, and that one's
/// message id: the next batch hands out the released message first (it comes back first),
/// then them, so the queue's order holds.
#[derive(Default)]
pub(crate) struct Backlog {
    held: VecDeque<Delivery>,
    released: Option<String>,
}

impl Backlog {
    /// The next batch: at least one delivery (awaited), then what has already arrived, up to
    /// `max`; `None` once the bus closes.
    pub(crate) async fn next_batch<C: Consumer>(
        &mut self,
        consumer: &mut C,
        max: usize,
    ) -> Option<Vec<Delivery>> {
        let first = consumer.next().await?;
        let mut batch: Vec<Delivery> = Vec::with_capacity(self.held.len() + 1);
        if self
            .released
            .take()
            .is_some_and(|id| first.message_id() == Some(id.as_str()))
        {
            batch.push(first);
            batch.extend(self.held.drain(..));
        } else {
            batch.extend(self.held.drain(..));
            batch.push(first);
        }
        while batch.len() < max {
            match tokio::time::timeout(Duration::ZERO, consumer.next()).await {
                Ok(Some(delivery)) => batch.push(delivery),
                _ => break,
            }
        }
        Some(batch)
    }

    /// `released` was released (its message id); `behind` were taken after it and wait for
    /// the next batch, unsettled.
    pub(crate) fn hold(
        &mut self,
        released: Option<String>,
        behind: impl IntoIterator<Item = Delivery>,
    ) {
        self.released = released;
        self.held.extend(behind);
    }
}

/// Most deliveries of a partition handled together (at most the consumer's prefetch arrive).
pub const MAX_BATCH: usize = 256;

/// The consumer loop of one queue until the bus closes: the CRM queue's deliveries one at a
/// time, a partition's in batches of what has arrived (module documentation). Run one per
/// queue (e.g. `actix::spawn`) inside the actix `System`.
pub async fn consume<B: Bus>(bus: Arc<B>, queue: Queue, targets: Targets, config: ConsumerConfig) {
    let mut consumer = match bus.consume(queue).await {
        Ok(consumer) => consumer,
        Err(e) => {
            tracing::error!(%queue, error = %e, "the consumer did not start");
            return;
        }
    };
    let max = if queue == Queue::Crm { 1 } else { MAX_BATCH };
    let mut backlog = Backlog::default();
    while let Some(batch) = backlog.next_batch(&mut consumer, max).await {
        let outcomes = handle_batch(&batch, &targets).await;
        let mut settling = batch.into_iter().zip(outcomes);
        let mut released = None;
        for (delivery, outcome) in settling.by_ref() {
            let message_id = delivery.message_id().map(str::to_string);
            if let Settled::Released(_) = settle(delivery, outcome, &targets).await {
                released = Some(message_id);
                break;
            }
        }
        let wait = released.is_some();
        let mut behind = Vec::new();
        for (delivery, outcome) in settling {
            // Durable already: the waiting driver may go on; the delivery is handled again
            // after the released one (then answered as already recorded, and acked).
            if let Outcome::Decided(decided) = outcome {
                answer(&delivery, decided, &targets);
            }
            behind.push(delivery);
        }
        backlog.hold(released.flatten(), behind);
        if wait {
            tokio::time::sleep(config.retry_after).await;
        }
    }
}

/// Starts [`consume`] on every queue of `bus` (the CRM queue and each partition), on the
/// current actix arbiter.
pub fn spawn_consumers<B: Bus>(bus: Arc<B>, targets: &Targets, config: &ConsumerConfig) {
    for queue in Queue::all(bus.partitions()) {
        actix::spawn(consume(bus.clone(), queue, targets.clone(), config.clone()));
    }
}
