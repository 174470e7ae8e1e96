//! The organization's live side: its state, its place in `org/<id>`, and the steps that record
//! an event there. The synchronous [`Engine`](crate::Engine) and the organization actor of the
//! runtime share it, so the organization stream has one write path, as [`MailboxCore`] is the
//! one write path of a mailbox stream:
//!
//! 1. prepare — [`OrgCore::prepare_change`] for a CRM-side or administrative change: validate it
//!    against the organization (`validate_crm`; bad input is refused here and nothing is
//!    written), and build its one-event batch with the expected sequence = the stream head;
//!    [`OrgCore::prepare_observation`] for an organization observation
//!    (`mailbox_failure_noted`): decide on it with `alerting::decide_org` on the state before
//!    it, and build the batch of the observation and its decisions;
//! 2. the caller appends the batch — blocking (`Journal::append`) or asynchronously
//!    (`Journal::submit(..).await`);
//! 3. commit, only after the append succeeded — [`OrgCore::commit_change`] computes the target
//!    mailboxes with `OrgState::route` on the state **before** the change, then applies it
//!    with `OrgState::apply_recorded` (which makes a `setting_changed` the settings version);
//!    [`OrgCore::commit_observation`] applies the observation and its decisions. Both advance
//!    the head and remember the last recorded id.
//!
//! A failed append leaves the core untouched, but the journal may hold the batch anyway (an
//! append whose answer was lost): a caller drops the core and recovers it
//! ([`OrgCore::recover`]), which also finishes the routing of a last change a crash left
//! half-routed ([`Unfinished`], computed by [`crate::engine::unrouted`]).
//!
//! The same change twice is recorded once: [`OrgCore::prepare_change`] answers
//! [`Prepared::AlreadyRecorded`] — nothing to append, nothing to route — for a change whose id
//! is among the last ids of the stream (a redelivery) or that the organization already holds
//! (`OrgState::already_recorded`: same row version and content, a stale version, a setting's
//! value in force…), and refuses a row version recorded with other content.
//!
//! [`MailboxCore`]: crate::mailbox::MailboxCore

use crate::clock::IdGen;
use crate::engine::{unrouted_of, validate_crm};
use crate::error::EngineError;
use crate::log::{PAGE, Stored};
use crate::mailbox::{Batch, new_event};
use ledgersync_domain::{
    Context, Decision, Event, EventId, MailboxId, OrgId, OrgState, RecentIds, Recorded, StreamId,
    Timestamp, decide_org,
};
use ledgersync_journal::{ExpectedSeq, Journal};

/// The organization's state and the head of its stream.
#[derive(Debug, Clone)]
pub struct OrgCore {
    stream: StreamId,
    state: OrgState,
    head: u64,
    last: Option<EventId>,
    /// The ids of the last events of the stream: a redelivered change is recognised by its id.
    recent: RecentIds,
}

/// What [`OrgCore::prepare_change`] found to do.
// One short-lived value per change, moved once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Prepared {
    /// Append the batch, then commit.
    Record(Batch, PreparedChange),
    /// Nothing: the change is already recorded (acknowledge it with the reason).
    AlreadyRecorded(Recorded),
}

/// A last change that a crash left routed to some of its mailboxes and not others.
#[derive(Debug, Clone)]
pub struct Unfinished {
    /// Its id in the organization stream.
    pub id: EventId,
    /// The change.
    pub event: Event,
    /// The mailboxes it should have reached and did not, in id order.
    pub missing: Vec<MailboxId>,
}

/// A CRM change prepared by [`OrgCore::prepare_change`], waiting for its append.
#[derive(Debug)]
pub struct PreparedChange {
    id: EventId,
    event: Event,
    expected_head: u64,
}

/// A change committed by [`OrgCore::commit_change`]: what to route, where.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Its id in the organization stream (the causation and correlation of its routing).
    pub id: EventId,
    /// The change.
    pub event: Event,
    /// The mailboxes it must reach, computed on the organization before it, in id order.
    pub targets: Vec<MailboxId>,
}

/// An organization observation and its decisions, prepared by
/// [`OrgCore::prepare_observation`], waiting for their append.
#[derive(Debug)]
pub struct PreparedObservation {
    id: EventId,
    observation: Event,
    decisions: Vec<Decision>,
    expected_head: u64,
}

impl OrgCore {
    /// An organization with an empty stream.
    pub fn new(org: OrgId) -> Self {
        Self {
            stream: StreamId::org(&org),
            state: OrgState::new(org),
            head: 0,
            last: None,
            recent: RecentIds::default(),
        }
    }

    /// Rebuilds the organization from its stream. With `finish`, also says which mailboxes the
    /// last event should have reached and did not (a crash between the organization append and
    /// a mailbox append); a read-only view passes `false` and reads no mailbox stream.
    ///
    /// The stream is folded once; the targets of the last event are computed on the state
    /// just before it, without keeping a copy of any earlier state.
    pub fn recover(
        journal: &dyn Journal,
        org: OrgId,
        finish: bool,
    ) -> Result<(Self, Option<Unfinished>), EngineError> {
        let mut core = Self::new(org);
        let mut previous: Option<Stored> = None;
        let mut from = 1;
        loop {
            let page = journal.read_stream(&core.stream, from, PAGE)?;
            if page.is_empty() {
                break;
            }
            for envelope in page {
                from = envelope.seq + 1;
                core.head = envelope.seq;
                core.recent.insert(envelope.event_id);
                let stored = Stored::decode(envelope)?;
                if let Some(prev) = previous.replace(stored) {
                    core.state
                        .apply_recorded(prev.envelope.event_id, &prev.event);
                }
            }
        }
        let Some(last) = previous else {
            return Ok((core, None));
        };
        let id = last.envelope.event_id;
        let targets = core.state.route(&last.event);
        core.state.apply_recorded(id, &last.event);
        core.last = Some(id);
        if !finish || targets.is_empty() {
            return Ok((core, None));
        }
        let missing = unrouted_of(journal, targets, &last)?;
        let unfinished = (!missing.is_empty()).then_some(Unfinished {
            id,
            event: last.event,
            missing,
        });
        Ok((core, unfinished))
    }

    /// The organization state.
    pub fn state(&self) -> &OrgState {
        &self.state
    }

    /// The head of `org/<id>` the state includes.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The organization stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// Whether `id` is the last event recorded: a change delivered again after its append.
    pub fn is_last(&self, id: EventId) -> bool {
        self.last == Some(id)
    }

    /// Step 1 of a CRM-side or administrative change recorded under `id` at `now`: nothing to
    /// do when it is already recorded (by id or by content); refused when it contradicts the
    /// organization (nothing to append); else its batch.
    pub fn prepare_change(
        &self,
        id: EventId,
        event: Event,
        now: Timestamp,
    ) -> Result<Prepared, EngineError> {
        if self.recent.contains(&id) {
            return Ok(Prepared::AlreadyRecorded(Recorded::SameId));
        }
        match self.state.already_recorded(&event) {
            Ok(Some(recorded)) => return Ok(Prepared::AlreadyRecorded(recorded)),
            Ok(None) => {}
            Err(c) => {
                return Err(EngineError::InvalidField {
                    field: c.field.into(),
                    message: c.message,
                });
            }
        }
        validate_crm(&event, &self.state)?;
        let batch = Batch {
            stream: self.stream.clone(),
            expected: ExpectedSeq::Exactly(self.head),
            events: vec![new_event(id, &event, None, vec![], id, now)],
        };
        Ok(Prepared::Record(
            batch,
            PreparedChange {
                id,
                event,
                expected_head: self.head,
            },
        ))
    }

    /// Step 3 of a change whose batch is durable: its targets on the state before it, then
    /// the state after it.
    pub fn commit_change(&mut self, prepared: PreparedChange) -> Committed {
        debug_assert_eq!(
            prepared.expected_head, self.head,
            "commit of a stale prepare"
        );
        let PreparedChange { id, event, .. } = prepared;
        let targets = self.state.route(&event);
        self.state.apply_recorded(id, &event);
        self.head += 1;
        self.last = Some(id);
        self.recent.insert(id);
        Committed { id, event, targets }
    }

    /// Step 1 of an organization observation recorded under `id` at `now`, caused by
    /// `causation`: `decide_org` on the state before it, and the batch of the observation and
    /// its decisions (each caused by the observation, correlated with it).
    pub fn prepare_observation(
        &self,
        id: EventId,
        observation: Event,
        causation: Vec<EventId>,
        now: Timestamp,
        ids: &IdGen,
    ) -> (Batch, PreparedObservation) {
        let decisions = decide_org(
            &self.state,
            &observation,
            &Context {
                settings: &self.state.settings,
                now,
            },
        );
        let mut events = vec![new_event(id, &observation, None, causation, id, now)];
        for d in &decisions {
            events.push(new_event(
                ids.next(),
                &d.event,
                Some(d.rule),
                vec![id],
                id,
                now,
            ));
        }
        (
            Batch {
                stream: self.stream.clone(),
                expected: ExpectedSeq::Exactly(self.head),
                events,
            },
            PreparedObservation {
                id,
                observation,
                decisions,
                expected_head: self.head,
            },
        )
    }

    /// Step 3 of an observation whose batch is durable: applies it and its decisions; returns
    /// the decisions.
    pub fn commit_observation(&mut self, prepared: PreparedObservation) -> Vec<Decision> {
        debug_assert_eq!(
            prepared.expected_head, self.head,
            "commit of a stale prepare"
        );
        let PreparedObservation {
            id,
            observation,
            decisions,
            ..
        } = prepared;
        self.state.apply_recorded(id, &observation);
        for d in &decisions {
            self.state.apply(&d.event);
        }
        // `last` stays the last CRM change: an observation is never redelivered as a change.
        self.head += 1 + decisions.len() as u64;
        self.recent.insert(id);
        decisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgersync_domain::event::{MailboxRegistered, ProfileRegistered, ServerType};
    use ledgersync_journal::{Backend, JournalOptions};

    fn changes() -> Vec<Event> {
        vec![
            Event::ProfileRegistered(ProfileRegistered {
                profile: "gw".into(),
                name: "GW".into(),
                server_type: ServerType::Groupware,
                max_connections: 10,
            }),
            Event::MailboxRegistered(MailboxRegistered {
                mailbox: "mbx-jayne".into(),
                org: OrgId::new("serenity"),
                address: "jayne@serenity.example".into(),
                profile: "gw".into(),
                server_type: ServerType::Groupware,
            }),
        ]
    }

    #[test]
    fn prepare_append_commit_then_recover_gives_the_same_core() {
        let dir = tempfile::tempdir().unwrap();
        let journal =
            ledgersync_journal::open(dir.path(), &JournalOptions::with_backend(Backend::Redb))
                .unwrap();
        let mut core = OrgCore::new(OrgId::new("serenity"));
        let mut last = None;
        for (i, event) in changes().into_iter().enumerate() {
            let id = IdGen.next();
            let Prepared::Record(batch, prepared) =
                core.prepare_change(id, event, Timestamp(i as i64)).unwrap()
            else {
                panic!("a new change")
            };
            journal
                .append(&batch.stream, batch.expected, batch.events)
                .unwrap();
            let committed = core.commit_change(prepared);
            // Routed on the state before: the registration reaches the mailbox it registers.
            assert_eq!(committed.targets.len(), i);
            last = Some(id);
        }
        assert!(core.is_last(last.unwrap()));
        assert_eq!(core.head(), 2);
        let (again, unfinished) =
            OrgCore::recover(journal.as_ref(), OrgId::new("serenity"), true).unwrap();
        assert_eq!(again.state(), core.state());
        assert_eq!(again.head(), core.head());
        assert!(again.is_last(last.unwrap()));
        // The same id again, or the same content under another id: already recorded.
        for (i, event) in changes().into_iter().enumerate() {
            let again_id = if i == 0 { IdGen.next() } else { last.unwrap() };
            assert!(matches!(
                again.prepare_change(again_id, event, Timestamp(9)).unwrap(),
                Prepared::AlreadyRecorded(_)
            ));
        }
        // The registration was never routed to its mailbox: it is the unfinished routing.
        let unfinished = unfinished.expect("the last change reached no mailbox");
        assert_eq!(unfinished.missing, vec![MailboxId::new("mbx-jayne")]);
        let (_, view) = OrgCore::recover(journal.as_ref(), OrgId::new("serenity"), false).unwrap();
        assert!(view.is_none(), "a read-only view does not look");
    }

    #[test]
    fn a_refused_change_prepares_nothing() {
        let core = OrgCore::new(OrgId::new("serenity"));
        let bad = Event::MailboxRegistered(MailboxRegistered {
            mailbox: "mbx-jayne".into(),
            org: OrgId::new("serenity"),
            address: "jayne@serenity.example".into(),
            profile: "gw".into(),
            server_type: ServerType::Groupware,
        });
        let mapped = Event::MailboxMapped(ledgersync_domain::event::MailboxMapped {
            mailbox: "mbx-nobody".into(),
            user: "jayne".into(),
        });
        assert!(core.prepare_change(IdGen.next(), bad, Timestamp(0)).is_ok());
        assert!(
            core.prepare_change(IdGen.next(), mapped, Timestamp(0))
                .is_err()
        );
        assert_eq!(core.head(), 0);
    }
}
