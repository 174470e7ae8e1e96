//! One mailbox's live side: its state, its place in its stream, and the step that turns an
//! observation into durable decisions. The synchronous [`Engine`](crate::Engine) and the
//! mailbox actors of the runtime share it, so the step exists once:
//!
//! 1. [`MailboxCore::prepare`]: `decide` on the state before the observation, and the batch
//!    (observation first, then its decisions) with the expected sequence = the stream head;
//! 2. the caller appends the batch — blocking (`Journal::append`) or asynchronously
//!    (`Journal::submit(..).await`);
//! 3. [`MailboxCore::commit`], only after the append succeeded: evolve with the observation
//!    and the decisions, advance the head, and say whether a snapshot is due.
//!
//! A failed append leaves the core untouched: the same observation can be prepared again.
//!
//! An observation that arrives twice under the same event id — a bus message delivered again
//! after a lost ack, a publish retried — is recorded once: the core remembers the ids of the
//! last [`RECENT_OBSERVATIONS`] observations it recorded (read back from the end of the
//! stream on recovery), and [`MailboxCore::already_observed`] answers for them.

use crate::clock::IdGen;
use crate::engine::Appended;
use crate::error::EngineError;
use crate::log::{PAGE, Stored};
use ledgersync_domain::{
    Context, Decision, Event, EventId, EventMeta, MailboxId, MailboxState, NewEvent, OrgSettings,
    StreamId, Timestamp, decide,
};
use ledgersync_journal::{ExpectedSeq, Journal, Snapshot};
use std::sync::Arc;

/// How many of a mailbox's latest observation ids its core remembers, to record an
/// observation delivered twice only once. A bus redelivers at most a consumer's unsettled
/// window (32 messages a partition by default) and a driver's retried publish one chunk
/// ([`OBSERVATION_CHUNK`]): both well inside.
pub const RECENT_OBSERVATIONS: usize = 1024;

/// The most observations a driver sends in one publish (and so may send again when the
/// publish is retried).
pub const OBSERVATION_CHUNK: usize = 128;

/// How far back recovery reads the stream for the ids of [`RECENT_OBSERVATIONS`]: an
/// observation and its decisions are rarely more than four events.
const RECENT_EVENTS: u64 = 4 * RECENT_OBSERVATIONS as u64;

/// The ids of a mailbox's latest observations, oldest first, at most [`RECENT_OBSERVATIONS`].
#[derive(Debug, Clone, Default)]
struct RecentIds {
    order: std::collections::VecDeque<EventId>,
    set: std::collections::HashSet<EventId>,
}

impl RecentIds {
    fn push(&mut self, id: EventId) {
        if !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > RECENT_OBSERVATIONS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
    }

    fn contains(&self, id: &EventId) -> bool {
        self.set.contains(id)
    }
}

/// A mailbox's state and its stream head.
#[derive(Debug, Clone)]
pub struct MailboxCore {
    id: MailboxId,
    stream: StreamId,
    /// Shared with the views taken of it (`shared_state`): an apply copies it only while a
    /// view is still held.
    state: Arc<MailboxState>,
    head: u64,
    since_snapshot: u64,
    recent: RecentIds,
}

/// An observation on its way into a mailbox, with its identity in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The observation.
    pub event: Event,
    /// Its event id.
    pub id: EventId,
    /// What caused it (the organization event it was routed from, the intent it answers).
    pub causation: Vec<EventId>,
    /// The flow it belongs to.
    pub correlation: EventId,
}

/// What [`MailboxCore::prepare`] decided, waiting for its append to be durable.
#[derive(Debug)]
pub struct Prepared {
    obs: (EventId, Event),
    decisions: Vec<(EventId, Decision)>,
    at: Timestamp,
    expected_head: u64,
}

/// The append a prepared step needs.
#[derive(Debug)]
pub struct Batch {
    /// The mailbox stream.
    pub stream: StreamId,
    /// The expected head: the stream as this core knows it.
    pub expected: ExpectedSeq,
    /// The observation, then its decisions.
    pub events: Vec<NewEvent>,
}

/// The journal record of `event`, recorded now under `id`, with its rule (a decision's) and
/// its causes; the one place an event becomes a `NewEvent`.
pub fn new_event(
    id: EventId,
    event: &Event,
    rule: Option<ledgersync_domain::RuleId>,
    causation: Vec<EventId>,
    correlation: EventId,
    now: Timestamp,
) -> NewEvent {
    NewEvent {
        event_id: id,
        recorded_at: now,
        occurred_at: now,
        event_type: event.event_type(),
        schema_version: event.schema_version(),
        causation,
        correlation: Some(correlation),
        rule,
        payload: event.encode_payload(),
        items: event.item_keys(),
    }
}

impl MailboxCore {
    /// A mailbox with an empty stream.
    pub fn new(id: MailboxId) -> Self {
        Self {
            stream: StreamId::mailbox(&id),
            id,
            state: Arc::new(MailboxState::default()),
            head: 0,
            since_snapshot: 0,
            recent: RecentIds::default(),
        }
    }

    /// Rebuilds the mailbox from its latest snapshot and the tail of its stream (the whole
    /// stream when the snapshot is missing or of another version).
    pub fn recover(journal: &dyn Journal, id: MailboxId) -> Result<Self, EngineError> {
        let mut core = Self::new(id);
        // The snapshot first, then the head: a snapshot is never past the head it is read with.
        let mut from = 1;
        if let Some(snap) = journal.load_snapshot(&core.stream)?
            && let Ok(state) = MailboxState::from_snapshot(&snap.bytes)
        {
            core.state = Arc::new(state);
            from = snap.seq + 1;
        }
        let head = journal.stream_head(&core.stream)?;
        // Events since the snapshot count towards the next one, so that a mailbox passivated
        // more often than every `snapshot_every` events still gets snapshots.
        core.since_snapshot = head.saturating_sub(from - 1);
        // The ids of the latest observations (recorded without a rule), from before the
        // snapshot too.
        let mut recent_from = head.saturating_sub(RECENT_EVENTS).max(1);
        while recent_from < from {
            let page = journal.read_stream(
                &core.stream,
                recent_from,
                (PAGE as u64).min(from - recent_from) as usize,
            )?;
            if page.is_empty() {
                break;
            }
            for env in page {
                recent_from = env.seq + 1;
                if env.rule.is_none() {
                    core.recent.push(env.event_id);
                }
            }
        }
        while from <= head {
            let page = journal.read_stream(&core.stream, from, PAGE)?;
            if page.is_empty() {
                break;
            }
            for env in page {
                from = env.seq + 1;
                if env.rule.is_none() && env.seq + RECENT_EVENTS > head {
                    core.recent.push(env.event_id);
                }
                let stored = Stored::decode(env)?;
                Arc::make_mut(&mut core.state).apply_owned(stored.meta(), stored.event);
            }
        }
        core.head = head;
        Ok(core)
    }

    /// Whether the observation `id` is among the latest this mailbox recorded
    /// ([`RECENT_OBSERVATIONS`]): delivered again, it is answered with no decision and
    /// recorded nowhere.
    pub fn already_observed(&self, id: &EventId) -> bool {
        self.recent.contains(id)
    }

    /// The mailbox id.
    pub fn id(&self) -> &MailboxId {
        &self.id
    }

    /// The state.
    pub fn state(&self) -> &MailboxState {
        &self.state
    }

    /// The state as a view to hand out without copying it (the next apply copies it only if
    /// the view is still held then).
    pub fn shared_state(&self) -> Arc<MailboxState> {
        Arc::clone(&self.state)
    }

    /// Whether this mailbox records `event` now: every observation except a CRM command's
    /// result whose command is no longer open (`ledgersync_domain::crm::admits`): another
    /// result for the same key got there first, and this one is recorded nowhere.
    pub fn admits(&self, event: &Event) -> bool {
        ledgersync_domain::crm::admits(&self.state, event)
    }

    /// The stream head this core has applied.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Step 1: decides on the state before `obs` and builds the batch to append. The
    /// observation's causation gets the version of `settings` as its last id.
    pub fn prepare(
        &self,
        incoming: Incoming,
        settings: &OrgSettings,
        now: Timestamp,
        ids: &IdGen,
    ) -> (Batch, Prepared) {
        let Incoming {
            event: obs,
            id: obs_id,
            causation,
            correlation,
        } = incoming;
        let decisions = decide(&self.state, &obs, &Context { settings, now });
        let mut events = Vec::with_capacity(1 + decisions.len());
        // The settings the decisions were made under close the observation's causes: replay,
        // what-if and explain re-decide with exactly them (crate::settings_history).
        let mut causation = causation;
        causation.push(settings.version.0);
        events.push(new_event(obs_id, &obs, None, causation, correlation, now));
        let decisions: Vec<(EventId, Decision)> =
            decisions.into_iter().map(|d| (ids.next(), d)).collect();
        for (id, d) in &decisions {
            events.push(new_event(
                *id,
                &d.event,
                Some(d.rule),
                vec![obs_id],
                correlation,
                now,
            ));
        }
        (
            Batch {
                stream: self.stream.clone(),
                expected: ExpectedSeq::Exactly(self.head),
                events,
            },
            Prepared {
                obs: (obs_id, obs),
                decisions,
                at: now,
                expected_head: self.head,
            },
        )
    }

    /// Step 3: applies a prepared step whose batch is durable; returns its decisions and a
    /// snapshot to save when one is due (see [`snapshot_interval`]).
    pub fn commit(
        &mut self,
        prepared: Prepared,
        snapshot_every: u64,
    ) -> (Vec<Appended>, Option<Snapshot>) {
        debug_assert_eq!(
            prepared.expected_head, self.head,
            "commit of a stale prepare"
        );
        let at = prepared.at;
        let (obs_id, obs) = prepared.obs;
        self.recent.push(obs_id);
        let state = Arc::make_mut(&mut self.state);
        state.apply(EventMeta { id: obs_id, at }, &obs);
        for (id, d) in &prepared.decisions {
            state.apply(EventMeta { id: *id, at }, &d.event);
        }
        let n = 1 + prepared.decisions.len() as u64;
        self.head += n;
        self.since_snapshot += n;
        // Due by the interval, or at the end of a listing cycle that appended at least
        // `snapshot_every` events: the next recovery then starts where the cycle ended.
        let cycle_end = matches!(
            obs,
            Event::ListingCompleted(_) | Event::ListingPartial(_) | Event::ListingFailed(_)
        ) && self.since_snapshot >= snapshot_every;
        let snapshot = (cycle_end
            || self.since_snapshot >= snapshot_interval(snapshot_every, &self.state))
        .then(|| {
            self.since_snapshot = 0;
            Snapshot {
                seq: self.head,
                bytes: self.state.to_snapshot(),
            }
        });
        let appended = prepared
            .decisions
            .into_iter()
            .map(|(id, decision)| Appended {
                mailbox: self.id.clone(),
                id,
                decision,
            })
            .collect();
        (appended, snapshot)
    }
}

/// Events between two snapshots of a mailbox within a listing cycle: `snapshot_every`, or twice
/// the rows and links the state holds when that is more (a cycle that appended at least
/// `snapshot_every` events is also snapshotted at its end). A snapshot costs its size, so the interval grows with it
/// and the cost per event stays flat (a mailbox syncing 10,000 items at once writes a handful
/// of snapshots, not one per thousand events); recovery folds at most that many events after
/// the snapshot, the same order of work as decoding it.
pub fn snapshot_interval(snapshot_every: u64, state: &ledgersync_domain::MailboxState) -> u64 {
    snapshot_every.max(2 * (state.links.len() + state.records.len()) as u64)
}
