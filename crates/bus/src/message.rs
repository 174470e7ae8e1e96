//! What travels on the bus, and where it goes: [`BusMessage`], [`Queue`], [`partition_of`].

use ledgersync_domain::{Event, EventId, MailboxId};
use ledgersync_engine::IdGen;
use ledgersync_engine::ingress::render_change;
use ledgersync_engine::mailbox::Incoming;
use std::fmt;

/// The default number of partitions (mailbox queues). Every node of a deployment must use the
/// same number: it decides which queue a mailbox's messages go to.
pub const DEFAULT_PARTITIONS: usize = 64;

/// A message on the bus.
// A message is built once and moved into a publish batch or out of a delivery; boxing the
// observation would cost an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    /// A line for the organization, on the CRM queue: a CRM-side or administrative change, or
    /// a CRM command's result, in the `crm apply` format (`docs/crm-changes.md`,
    /// `docs/crm-commands.md`). `id` is the id a change is recorded under in `org/<id>`.
    ///
    /// The bus checks only that the line is a JSON object with a `"kind"`; the organization
    /// reads it against its state (a mailbox a mapping names must be registered, …), as it
    /// reads a line of `crm apply`.
    CrmChange {
        /// The event id of the change in the organization stream.
        id: EventId,
        /// One `crm apply` line: a JSON object on one line, without the newline.
        line: String,
    },
    /// A mail-side observation (or an intent outcome) for one mailbox, on its partition.
    MailObservation {
        /// The mailbox.
        mailbox: MailboxId,
        /// The observation with its event id, causation and correlation.
        incoming: Incoming,
    },
    /// Several mail-side observations of one mailbox, in order, in one message (a driver's
    /// chunk of a listing): recorded in one append, each under its own event id. The message
    /// id is the first one's.
    MailObservations {
        /// The mailbox.
        mailbox: MailboxId,
        /// The observations, at least one, in order.
        incomings: Vec<Incoming>,
    },
}

impl BusMessage {
    /// A CRM change under a new event id, written as its `crm apply` line.
    ///
    /// # Panics
    /// When `event` is not a CRM change (a mail observation, a decision, an outcome): those
    /// have no `crm apply` line.
    pub fn crm(event: Event) -> Self {
        let line = render_change(&event)
            .unwrap_or_else(|| panic!("`{}` is not a CRM change", event.name()));
        BusMessage::CrmChange {
            id: IdGen.next(),
            line,
        }
    }

    /// A `crm apply` line (a change or a command result) under a new event id.
    pub fn crm_line(line: impl Into<String>) -> Self {
        BusMessage::CrmChange {
            id: IdGen.next(),
            line: line.into(),
        }
    }

    /// A mail-side observation for `mailbox` under a new event id (its own correlation; an
    /// intent outcome is caused by its intent).
    pub fn observation(mailbox: MailboxId, event: Event) -> Self {
        let id = IdGen.next();
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

    /// The event id the message will be recorded under: the wire's message id.
    pub fn id(&self) -> EventId {
        match self {
            BusMessage::CrmChange { id, .. } => *id,
            BusMessage::MailObservation { incoming, .. } => incoming.id,
            BusMessage::MailObservations { incomings, .. } => {
                incomings
                    .first()
                    .expect("a batch holds at least one observation")
                    .id
            }
        }
    }

    /// The observations a mail-side message carries, in order (none for a CRM line).
    pub fn incomings(&self) -> &[Incoming] {
        match self {
            BusMessage::CrmChange { .. } => &[],
            BusMessage::MailObservation { incoming, .. } => std::slice::from_ref(incoming),
            BusMessage::MailObservations { incomings, .. } => incomings,
        }
    }

    /// The mailbox a message is for; `None` for organization-wide messages.
    pub fn mailbox(&self) -> Option<&MailboxId> {
        match self {
            BusMessage::CrmChange { .. } => None,
            BusMessage::MailObservation { mailbox, .. }
            | BusMessage::MailObservations { mailbox, .. } => Some(mailbox),
        }
    }

    /// The `crm apply` line of a CRM message; `None` for a mail observation.
    pub fn line(&self) -> Option<&str> {
        match self {
            BusMessage::CrmChange { line, .. } => Some(line),
            BusMessage::MailObservation { .. } | BusMessage::MailObservations { .. } => None,
        }
    }

    /// The queue the message goes to on a bus of `partitions` partitions: CRM changes to
    /// [`Queue::Crm`], a mailbox's messages to its partition ([`partition_of`]).
    pub fn queue(&self, partitions: usize) -> Queue {
        match self.mailbox() {
            None => Queue::Crm,
            Some(mailbox) => Queue::Partition(partition_of(mailbox, partitions)),
        }
    }
}

/// A queue of the bus. Each is consumed by one active consumer at a time, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Queue {
    /// The CRM ingress: every CRM change of the organization, in the order published.
    Crm,
    /// A partition of the mailboxes: the mail-side messages of the mailboxes that hash to it.
    Partition(usize),
    /// The CRM commands ledgersync asks the CRM's adapter to carry out
    /// (`<prefix>crm.commands`): published by ledgersync, consumed by the adapter, never by
    /// ledgersync (not among [`Queue::all`]).
    CrmCommands,
}

impl Queue {
    /// Every queue of a bus of `partitions` partitions: the CRM queue, then the partitions in
    /// order.
    pub fn all(partitions: usize) -> impl Iterator<Item = Queue> {
        std::iter::once(Queue::Crm).chain((0..partitions.max(1)).map(Queue::Partition))
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Queue::Crm => f.write_str("crm"),
            Queue::CrmCommands => f.write_str("crm.commands"),
            Queue::Partition(p) => write!(f, "partition.{p}"),
        }
    }
}

/// The partition of `mailbox` among `partitions`: FNV-1a (64 bit) of the mailbox id's UTF-8
/// bytes, modulo the number of partitions. Stable across processes, machines and versions, so
/// every node of a cluster agrees; changing it moves mailboxes between queues and breaks their
/// order while old messages drain.
pub fn partition_of(mailbox: &MailboxId, partitions: usize) -> usize {
    let partitions = partitions.max(1);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in mailbox.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % partitions as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_of_the_id_and_never_changes() {
        // FNV-1a 64 of "" is the offset basis; of "a" the published test vector.
        assert_eq!(
            partition_of(&MailboxId::new(""), 64),
            (0xcbf2_9ce4_8422_2325u64 % 64) as usize
        );
        let a = 0xaf63_dc4c_8601_ec8cu64;
        assert_eq!(partition_of(&MailboxId::new("a"), 64), (a % 64) as usize);
        assert_eq!(partition_of(&MailboxId::new("a"), 1), 0);
        assert_eq!(partition_of(&MailboxId::new("a"), 0), 0);
    }

    #[test]
    fn a_mailbox_always_lands_on_one_partition_and_mailboxes_spread() {
        let mut used = std::collections::BTreeSet::new();
        for n in 0..256 {
            let mailbox = MailboxId::new(format!("mbx-{n}"));
            let p = partition_of(&mailbox, DEFAULT_PARTITIONS);
            assert!(p < DEFAULT_PARTITIONS);
            let message = BusMessage::observation(mailbox.clone(), crm_event());
            assert_eq!(message.queue(DEFAULT_PARTITIONS), Queue::Partition(p));
            used.insert(p);
        }
        assert!(
            used.len() > 48,
            "256 mailboxes spread over the 64 partitions: {used:?}"
        );
        assert_eq!(
            BusMessage::crm(crm_event()).queue(DEFAULT_PARTITIONS),
            Queue::Crm
        );
    }

    fn crm_event() -> Event {
        Event::SettingChanged(ledgersync_domain::event::SettingChanged {
            key: "k".into(),
            value: "v".into(),
        })
    }

    #[test]
    fn queues_are_the_crm_queue_then_the_partitions() {
        let all: Vec<_> = Queue::all(3).collect();
        assert_eq!(
            all,
            vec![
                Queue::Crm,
                Queue::Partition(0),
                Queue::Partition(1),
                Queue::Partition(2)
            ]
        );
        assert_eq!(Queue::Partition(7).to_string(), "partition.7");
    }
}
