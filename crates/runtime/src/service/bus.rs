//! The service on a bus (`[bus] kind = "amqp"`): [`Service::attach_bus`] starts a consumer of
//! the CRM queue and one of each partition.
//!
//! - **The CRM queue** carries `crm apply` lines, one per message: CRM changes and CRM
//!   command results. The consumer takes what has arrived (up to [`MAX_LINES`], at least
//!   one), reads the lines against the organization as it holds it ([`Service::take_lines`]),
//!   records the changes as one batch (decision 0011) under their message ids, settles the
//!   results, and settles each delivery: **ack** once what it caused is durable,
//!   **dead-letter** a bad line with its reason and field, **release** on a transient failure
//!   (that delivery, and the ones after it wait in the consumer, so the order is kept).
//! - **Each partition** carries the observations of its mailboxes, published by the drivers
//!   ([`crate::sink`]); [`crate::consumer`] hands each to its mailbox actor and answers the
//!   waiting driver once its events are durable.
//!
//! A message delivered again carries the same event id: a change is answered as already
//! recorded, a result's outcome and an observation are recorded once (the mailbox remembers
//! its latest observation ids), and the delivery is acked again.

use super::{Service, ServiceError};
use crate::consumer::{Backlog, ConsumerConfig, Targets, consume};
use crate::org::{CheckLines, CheckedLines, CrmChange};
use crate::sink::Replies;
use ledgersync_bus::{Bus, BusMessage, DeadLetterReason, Queue};
use ledgersync_domain::{EventId, Limits};
use ledgersync_engine::ingress::LineError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The most CRM lines read and recorded together.
pub const MAX_LINES: usize = ledgersync_engine::org::ROUTING_WINDOW;

/// How the service consumes from its bus.
#[derive(Debug, Clone, Default)]
pub struct BusConfig {
    /// The consumer loops' settings (the wait after a release).
    pub consumer: ConsumerConfig,
    /// The limits a CRM line is read under (`[limits]`).
    pub limits: Limits,
}

/// What became of one CRM line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    /// Recorded (or recorded before), durable.
    Done,
    /// Bad input: the reason, and the field when one is at fault.
    Bad {
        /// What is wrong and what to do.
        reason: String,
        /// The field at fault.
        field: Option<String>,
    },
    /// Not taken now: try again.
    Transient(String),
}

type Closing = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The consumers of an attached bus, and how to close it.
pub(super) struct Attached {
    tasks: Vec<JoinHandle<()>>,
    close: Box<dyn FnOnce() -> Closing + Send>,
}

impl Attached {
    /// Closes the bus (the consumers end; what they hold unsettled goes back to the broker)
    /// and waits for the consumer loops.
    pub(super) async fn close(self) {
        (self.close)().await;
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

impl Service {
    /// Starts consuming from `bus` (inside the actix `System`): the CRM queue into this
    /// service, each partition into its mailbox actors, answering the drivers waiting in
    /// `replies` (the [`crate::sink::BusSink`] the service was started with). [`Service::stop`]
    /// closes the bus.
    pub fn attach_bus<B: Bus>(self: &Arc<Self>, bus: Arc<B>, replies: Replies, config: BusConfig) {
        let (touched, touches) = tokio::sync::mpsc::unbounded_channel();
        let _ = self.touched.set(touched.clone());
        let targets = Targets {
            org: self.org.clone(),
            registry: self.registry.clone(),
            known: self.known.clone(),
            replies,
            touched: Some(touched),
        };
        let mut tasks = Vec::new();
        let initial: Vec<_> = self
            .known
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        tasks.push(actix::spawn(super::dispatch::dispatch_commands(
            self.registry.clone(),
            self.clock.clone(),
            Arc::new(bus.clone()),
            touches,
            initial,
            self.stop.subscribe(),
        )));
        tasks.push(actix::spawn(consume_crm(
            bus.clone(),
            self.clone(),
            config.clone(),
        )));
        for partition in 0..bus.partitions().max(1) {
            tasks.push(actix::spawn(consume(
                bus.clone(),
                Queue::Partition(partition),
                targets.clone(),
                config.consumer.clone(),
            )));
        }
        let closing = bus.clone();
        *self.bus.lock().expect("bus lock") = Some(Attached {
            tasks,
            close: Box::new(move || Box::pin(async move { closing.close().await })),
        });
    }

    /// Reads `lines` (each a `crm apply` line under the id it is recorded with) against the
    /// organization, records the good changes in order as batches and settles the good
    /// results; answers what became of each line, in order. A bad line does not stop the
    /// others (a line that depends on a bad one, say the mapping of a mailbox whose
    /// registration was refused, is bad too). After the first transient failure nothing more
    /// is taken: that line and every later one are [`LineOutcome::Transient`].
    pub async fn take_lines(
        &self,
        lines: &[(EventId, String)],
        limits: Limits,
    ) -> Vec<LineOutcome> {
        let mut out: Vec<Option<LineOutcome>> = vec![None; lines.len()];
        let transient_from = |out: &mut Vec<Option<LineOutcome>>, from: usize, why: &str| {
            for slot in out.iter_mut().skip(from) {
                if slot.is_none() {
                    *slot = Some(LineOutcome::Transient(why.to_string()));
                }
            }
        };
        // Bad lines are blanked and the rest read again, until what is left reads clean.
        let checked = loop {
            let text = lines
                .iter()
                .zip(&out)
                .map(|((_, line), o)| if o.is_some() { "" } else { line.as_str() })
                .collect::<Vec<_>>()
                .join("\n");
            let checked = match self.org.send(CheckLines { text, limits }).await {
                Ok(Ok(checked)) => checked,
                Ok(Err(e)) => {
                    transient_from(&mut out, 0, &e.to_string());
                    return out.into_iter().map(Option::unwrap).collect();
                }
                Err(e) => {
                    let why = format!("the organization actor did not answer: {e}");
                    transient_from(&mut out, 0, &why);
                    return out.into_iter().map(Option::unwrap).collect();
                }
            };
            if checked.errors.is_empty() {
                break checked;
            }
            for e in &checked.errors {
                out[e.line - 1] = Some(bad_line(e));
            }
        };
        let CheckedLines {
            changes, results, ..
        } = checked;
        // The changes first, as batches, in order.
        let mut stopped_at = usize::MAX;
        let change_lines: Vec<usize> = changes.iter().map(|c| c.line - 1).collect();
        let crm: Vec<CrmChange> = changes
            .into_iter()
            .map(|c| CrmChange {
                id: lines[c.line - 1].0,
                event: c.event,
            })
            .collect();
        if !crm.is_empty() {
            match self.crm_changes(crm).await {
                Ok(batch) => {
                    for &line in change_lines.iter().take(batch.routed.len()) {
                        out[line] = Some(LineOutcome::Done);
                    }
                    if let Some((i, e)) = batch.failed {
                        let line = change_lines[i];
                        if e.is_bad_input() {
                            out[line] = Some(LineOutcome::Bad {
                                reason: e.to_string(),
                                field: None,
                            });
                            // The changes after it were not sent: taken again next time.
                            if let Some(&next) = change_lines.get(i + 1) {
                                stopped_at = next;
                            }
                        } else {
                            out[line] = Some(LineOutcome::Transient(e.to_string()));
                            stopped_at = line;
                        }
                    }
                }
                Err(e) => {
                    transient_from(&mut out, 0, &e.to_string());
                    return out.into_iter().map(Option::unwrap).collect();
                }
            }
        }
        // Then the results before any failure.
        for r in results {
            let line = r.line - 1;
            if line >= stopped_at {
                continue;
            }
            out[line] = Some(match self.settle_as(r.result, lines[line].0).await {
                Ok(_) => LineOutcome::Done,
                Err(ServiceError::Refused(e)) => LineOutcome::Bad {
                    reason: e.to_string(),
                    field: None,
                },
                Err(e) => {
                    stopped_at = line;
                    LineOutcome::Transient(e.to_string())
                }
            });
        }
        transient_from(
            &mut out,
            stopped_at.min(lines.len()),
            "not taken: a line before it could not be recorded now",
        );
        out.into_iter()
            .map(|o| o.unwrap_or(LineOutcome::Transient("not taken".into())))
            .collect()
    }
}

fn bad_line(e: &LineError) -> LineOutcome {
    LineOutcome::Bad {
        reason: format!(
            "{}; the format is in docs/crm-changes.md (results: docs/crm-commands.md)",
            e.message
        ),
        field: e.field.clone(),
    }
}

/// The consumer of the CRM queue (module doc).
async fn consume_crm<B: Bus>(bus: Arc<B>, service: Arc<Service>, config: BusConfig) {
    let mut consumer = match bus.consume(Queue::Crm).await {
        Ok(consumer) => consumer,
        Err(e) => {
            tracing::error!(queue = %Queue::Crm, error = %e, "the consumer did not start");
            return;
        }
    };
    let mut backlog = Backlog::default();
    while let Some(batch) = backlog.next_batch(&mut consumer, MAX_LINES).await {
        let mut lines = Vec::with_capacity(batch.len());
        let mut readable = Vec::with_capacity(batch.len());
        for delivery in batch {
            let line = match delivery.message() {
                Ok(BusMessage::CrmChange { id, line }) => Ok((*id, line.clone())),
                Ok(BusMessage::MailObservation { .. } | BusMessage::MailObservations { .. }) => {
                    Err(DeadLetterReason::new(
                        "invalid input: a mail observation on the CRM queue; observations go to \
                     their mailbox's partition",
                    ))
                }
                Err(e) => Err(DeadLetterReason::from(e)),
            };
            match line {
                Ok(line) => {
                    lines.push(line);
                    readable.push(delivery);
                }
                Err(reason) => settle(delivery.dead_letter(reason).await),
            }
        }
        if lines.is_empty() {
            continue;
        }
        let outcomes = service.take_lines(&lines, config.limits).await;
        let mut deliveries = readable.into_iter();
        let mut released = None;
        for (delivery, outcome) in deliveries.by_ref().zip(outcomes) {
            match outcome {
                LineOutcome::Done => settle(delivery.ack().await),
                LineOutcome::Bad { reason, field } => {
                    let reason = DeadLetterReason {
                        reason,
                        field,
                        ..DeadLetterReason::default()
                    };
                    settle(delivery.dead_letter(reason).await);
                }
                LineOutcome::Transient(reason) => {
                    tracing::warn!(queue = %Queue::Crm, message_id = delivery.message_id().unwrap_or_default(), %reason, "message left for redelivery");
                    released = Some(delivery.message_id().map(str::to_string));
                    settle(delivery.release().await);
                    break;
                }
            }
        }
        let wait = released.is_some();
        backlog.hold(released.flatten(), deliveries);
        if wait {
            tokio::time::sleep(config.consumer.retry_after).await;
        }
    }
}

fn settle(result: Result<(), ledgersync_bus::SettleError>) {
    if let Err(e) = result {
        // The bus delivers the message again; its event id makes the second time harmless.
        tracing::warn!(error = %e, "a delivery could not be settled");
    }
}
