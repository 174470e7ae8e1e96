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
//! ([`OrgCore::recover`]), which also finishes the routing of the last changes a crash left
//! half-routed ([`Unfinished`], computed by [`crate::engine::unrouted`]).
//!
//! A caller may stage several changes before one append ([`OrgCore::prepare_change`] then
//! [`OrgCore::commit_change`] for each, on the state the previous one left, their batches
//! joined), at most [`ROUTING_WINDOW`] of them, and route them together once the append is
//! durable; a failed append or routing drops the core as above. A snapshot handed back while
//! staging is saved only after every change up to it is routed.
//!
//! The same change twice is recorded once: [`OrgCore::prepare_change`] answers
//! [`Prepared::AlreadyRecorded`] — nothing to append, nothing to route — for a change whose id
//! is among the last ids of the stream (a redelivery) or that the organization already holds
//! (`OrgState::already_recorded`: same row version and content, a stale version, a setting's
//! value in force…), and refuses a row version recorded with other content.
//!
//! # Snapshots
//!
//! The organization state holds every row the CRM sent (`rows`, `routed`), so folding its
//! whole stream grows with the organization. Every [`snapshot_interval`] events — `snapshot_every`
//! (default [`DEFAULT_ORG_SNAPSHOT_EVERY`]), or an eighth of the rows when that is more, so
//! that writing snapshots costs about the same per event at every size (a snapshot costs its
//! rows) while a recovery folds at most that many events after one — [`OrgCore::commit_change`]
//! hands back a snapshot to save
//! (`Journal::save_snapshot`, after the append): the state, the id of the change at its head
//! and the mailboxes that change had to reach ([`OrgSnapshot`], one version byte then bincode).
//! [`OrgCore::recover`] starts from the latest snapshot and folds only the tail; a snapshot is
//! a cache: one that is missing, of another version, damaged, of another organization or past
//! the head is ignored and the whole stream is folded.
//!
//! [`MailboxCore`]: crate::mailbox::MailboxCore

use crate::clock::IdGen;
use crate::engine::{unrouted_of, validate_crm};
use crate::error::EngineError;
use crate::log::{PAGE, Stored};
use crate::mailbox::{Batch, new_event};
use ledgersync_domain::org::OrgSnapshot;
use ledgersync_domain::{
    Context, Decision, Event, EventId, MailboxId, OrgId, OrgState, RecentIds, Recorded, StreamId,
    Timestamp, decide_org,
};
use ledgersync_journal::{ExpectedSeq, Journal, Snapshot};

/// How often (in organization events) an organization snapshot is written by default. A
/// snapshot of a large organization costs its size in bytes (about 100 bytes a row), so it
/// is written less often than a mailbox's; recovery folds at most this many events after it.
pub const DEFAULT_ORG_SNAPSHOT_EVERY: u64 = 10_000;

/// A snapshot is due after at least one event per this many rows (see [`snapshot_interval`]).
pub const ORG_SNAPSHOT_ROWS_PER_EVENT: u64 = 8;

/// Organization events between two snapshots of an organization of `rows` rows, with the
/// configured minimum `every`: a snapshot costs about its rows to write, so a large
/// organization writes them less often — at 1M rows every 125,000 events.
pub fn snapshot_interval(rows: usize, every: u64) -> u64 {
    every.max(rows as u64 / ORG_SNAPSHOT_ROWS_PER_EVENT)
}

/// The most changes recorded in one append of the organization stream (and routed together):
/// recovery checks this many of the last changes for a routing a crash interrupted.
pub const ROUTING_WINDOW: usize = 1024;

/// The organization's state and the head of its stream.
#[derive(Debug, Clone)]
pub struct OrgCore {
    stream: StreamId,
    state: OrgState,
    head: u64,
    last: Option<EventId>,
    /// The ids of the last events of the stream: a redelivered change is recognised by its id.
    recent: RecentIds,
    /// The mailboxes the last recorded change had to reach (for a snapshot at the head).
    last_targets: Vec<MailboxId>,
    /// Events recorded since the last snapshot (or since the start of the stream).
    since_snapshot: u64,
    snapshot_every: u64,
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

/// A change that a crash left routed to some of its mailboxes and not others.
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
    /// A snapshot of the organization, when one is due: save it after the routing.
    pub snapshot: Option<Snapshot>,
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
            last_targets: Vec::new(),
            since_snapshot: 0,
            snapshot_every: DEFAULT_ORG_SNAPSHOT_EVERY,
        }
    }

    /// Sets the snapshot interval (organization events).
    pub fn with_snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = n.max(1);
        self
    }

    /// A snapshot of the core as it stands: to save with `Journal::save_snapshot`.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            seq: self.head,
            bytes: OrgSnapshot::encode(&self.state, self.last, &self.last_targets),
        }
    }

    /// The latest usable snapshot of the organization's stream whose head is `head`: `None`
    /// when there is none or it is refused (the caller folds the whole stream).
    fn usable_snapshot(
        journal: &dyn Journal,
        stream: &StreamId,
        org: &OrgId,
    ) -> Result<Option<(u64, OrgSnapshot)>, EngineError> {
        let Some(snap) = journal.load_snapshot(stream)? else {
            return Ok(None);
        };
        match OrgSnapshot::decode(&snap.bytes) {
            Ok(decoded) if decoded.state.id.as_ref() == Some(org) => Ok(Some((snap.seq, decoded))),
            Ok(_) => {
                tracing::warn!(stream = %stream, "organization snapshot of another organization ignored; the whole stream is folded");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(stream = %stream, error = %e, "organization snapshot refused; the whole stream is folded");
                Ok(None)
            }
        }
    }

    /// Rebuilds the organization from its stream. With `finish`, also says which mailboxes the
    /// last changes should have reached and did not (a crash between the organization append
    /// and a mailbox append), oldest first; a read-only view passes `false` and reads no
    /// mailbox stream.
    ///
    /// The changes of one append are routed together, so any of the last
    /// [`ROUTING_WINDOW`] changes may be half-routed: the targets of each are computed on the
    /// state just before it while the stream is folded once, without keeping a copy of any
    /// earlier state. A snapshot is saved only once the changes up to it are routed.
    pub fn recover(
        journal: &dyn Journal,
        org: OrgId,
        finish: bool,
    ) -> Result<(Self, Vec<Unfinished>), EngineError> {
        let mut core = Self::new(org.clone());
        let mut from = 1;
        // The snapshot first, then the head: a snapshot is never past the head it is read with,
        // unless the stream lost events (then it is ignored).
        let snapshot = Self::usable_snapshot(journal, &core.stream, &org)?;
        let head = journal.stream_head(&core.stream)?;
        let mut at_snapshot: Option<(u64, Option<EventId>, Vec<MailboxId>)> = None;
        if let Some((seq, snap)) = snapshot {
            if seq <= head && seq > 0 {
                core.state = snap.state;
                core.head = seq;
                from = seq + 1;
                // The ids of the events before the snapshot still recognise a redelivery:
                // their envelopes only, no payload decoded.
                let window = RecentIds::CAPACITY as u64;
                let mut at = seq.saturating_sub(window) + 1;
                while at <= seq {
                    let page =
                        journal.read_stream(&core.stream, at, PAGE.min((seq - at + 1) as usize))?;
                    let Some(last) = page.last().map(|e| e.seq) else {
                        break;
                    };
                    for envelope in page {
                        core.recent.insert(envelope.event_id);
                    }
                    at = last + 1;
                }
                core.last = snap.last;
                core.last_targets = snap.last_targets.clone();
                at_snapshot = Some((seq, snap.last, snap.last_targets));
            } else {
                tracing::warn!(stream = %core.stream, seq, head, "organization snapshot past the stream head ignored; the whole stream is folded");
            }
        }
        // The changes that may be half-routed, with their targets, oldest first.
        let mut candidates: Vec<(Stored, Vec<MailboxId>)> = Vec::new();
        let window_from = head.saturating_sub(ROUTING_WINDOW as u64) + 1;
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
                let id = stored.envelope.event_id;
                if stored.envelope.seq >= window_from {
                    let targets = core.state.route(&stored.event);
                    core.state.apply_recorded(id, &stored.event);
                    core.last_targets.clone_from(&targets);
                    if finish && !targets.is_empty() {
                        candidates.push((stored, targets));
                    }
                } else {
                    core.state.apply_recorded(id, &stored.event);
                }
                core.last = Some(id);
            }
        }
        core.since_snapshot = core.head - at_snapshot.as_ref().map_or(0, |(seq, ..)| *seq);
        if !finish {
            return Ok((core, Vec::new()));
        }
        // Nothing after the snapshot: its head is the last change, already applied.
        if candidates.is_empty()
            && core.since_snapshot == 0
            && let Some((seq, Some(_), targets)) = at_snapshot
            && !targets.is_empty()
            && let Some(envelope) = journal
                .read_stream(&core.stream, seq, 1)?
                .into_iter()
                .next()
        {
            candidates.push((Stored::decode(envelope)?, targets));
        }
        let mut unfinished = Vec::new();
        for (stored, targets) in candidates {
            let missing = unrouted_of(journal, targets, &stored)?;
            if !missing.is_empty() {
                unfinished.push(Unfinished {
                    id: stored.envelope.event_id,
                    event: stored.event,
                    missing,
                });
            }
        }
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
    /// When a snapshot is due (every [`snapshot_interval`] events), it is in `snapshot`: save it
    /// with `Journal::save_snapshot` (a failed save only costs a longer recovery).
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
        self.last_targets.clone_from(&targets);
        self.since_snapshot += 1;
        let due = snapshot_interval(self.state.rows.len(), self.snapshot_every);
        let snapshot = (self.since_snapshot >= due).then(|| {
            self.since_snapshot = 0;
            self.snapshot()
        });
        Committed {
            id,
            event,
            targets,
            snapshot,
        }
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
        // The event at the head is no change any more: nothing to finish routing after it.
        self.last_targets.clear();
        self.head += 1 + decisions.len() as u64;
        self.recent.insert(id);
        self.since_snapshot += 1 + decisions.len() as u64;
        decisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgersync_domain::event::{MailboxRegistered, ProfileRegistered, ServerType};
    use ledgersync_journal::{Backend, JournalOptions, Snapshot};

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
        assert_eq!(
            unfinished.len(),
            1,
            "only the last change reached no mailbox"
        );
        assert_eq!(unfinished[0].missing, vec![MailboxId::new("mbx-jayne")]);
        let (_, view) = OrgCore::recover(journal.as_ref(), OrgId::new("serenity"), false).unwrap();
        assert!(view.is_empty(), "a read-only view does not look");
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

    fn contact(n: u64, owner: &str) -> ledgersync_domain::records::Record {
        use ledgersync_domain::records::{Contact, ContactState, Record, RecordBody};
        Record {
            id: ledgersync_domain::RecordId(format!("r{n}")),
            owner: ledgersync_domain::UserId(owner.into()),
            version: n,
            body: RecordBody::Contact(Contact {
                full_name: format!("Contact {n}"),
                email: format!("c{n}@customer.example"),
                phone: String::new(),
                company: "Blue Sun".into(),
                state: ContactState::Active,
            }),
        }
    }

    /// An organization with two mapped users, then `rows` row changes: upserts, owner
    /// changes between the two users, deletes.
    fn history(rows: u64) -> Vec<Event> {
        use ledgersync_domain::event::{
            MailboxMapped, OwnerChanged, RecordDeleted, RecordUpserted, UserRegistered,
        };
        let mut out = changes();
        out.push(Event::UserRegistered(UserRegistered {
            user: "jayne".into(),
            name: "Jayne".into(),
            email: "jayne@serenity.example".into(),
        }));
        out.push(Event::MailboxMapped(MailboxMapped {
            mailbox: "mbx-jayne".into(),
            user: "jayne".into(),
        }));
        for n in 0..rows {
            out.push(match n % 5 {
                0..=2 => Event::RecordUpserted(RecordUpserted {
                    record: contact(n / 2, if n % 2 == 0 { "jayne" } else { "kaylee" }),
                }),
                3 => {
                    let record = contact(n / 2, "kaylee");
                    // The owner the organization recorded for that row, if any.
                    Event::OwnerChanged(OwnerChanged {
                        previous_owner: "jayne".into(),
                        record,
                    })
                }
                _ => Event::RecordDeleted(RecordDeleted {
                    id: ledgersync_domain::RecordId(format!("r{}", n / 3)),
                    entity: ledgersync_domain::records::Entity::Contact,
                }),
            });
        }
        out
    }

    fn redb() -> (tempfile::TempDir, std::sync::Arc<dyn Journal>) {
        let dir = tempfile::tempdir().unwrap();
        let journal =
            ledgersync_journal::open(dir.path(), &JournalOptions::with_backend(Backend::Redb))
                .unwrap();
        (dir, journal)
    }

    /// Records `events` through a core with snapshots every `every` events, saving them;
    /// changes refused by the organization are skipped.
    fn record_all(journal: &dyn Journal, events: Vec<Event>, every: u64) -> OrgCore {
        let mut core = OrgCore::new(OrgId::new("serenity")).with_snapshot_every(every);
        for (i, event) in events.into_iter().enumerate() {
            let Ok(Prepared::Record(batch, prepared)) =
                core.prepare_change(IdGen.next(), event, Timestamp(i as i64))
            else {
                continue;
            };
            journal
                .append(&batch.stream, batch.expected, batch.events)
                .unwrap();
            let committed = core.commit_change(prepared);
            if let Some(snapshot) = committed.snapshot {
                journal.save_snapshot(core.stream(), snapshot).unwrap();
            }
        }
        core
    }

    fn same(a: &OrgCore, b: &OrgCore) {
        assert_eq!(a.state(), b.state());
        assert_eq!(a.head(), b.head());
        assert_eq!(a.last, b.last);
        assert_eq!(a.last_targets, b.last_targets);
    }

    #[test]
    fn recovery_from_a_snapshot_gives_the_state_of_the_full_fold() {
        // Every interval, and histories ending on, just after and well after a snapshot.
        for every in [1, 2, 3, 7, 1000] {
            for rows in [0, 1, 5, 12, 40] {
                let (_d1, with) = redb();
                let (_d2, without) = redb();
                let live = record_all(with.as_ref(), history(rows), every);
                let _ = record_all(without.as_ref(), history(rows), u64::MAX);
                assert!(without.load_snapshot(live.stream()).unwrap().is_none());
                let (full, _) =
                    OrgCore::recover(without.as_ref(), OrgId::new("serenity"), false).unwrap();
                let (snap, _) =
                    OrgCore::recover(with.as_ref(), OrgId::new("serenity"), true).unwrap();
                // Event ids differ between the two journals: compare with the live core.
                same(&snap, &live);
                assert_eq!(
                    snap.state().rows,
                    full.state().rows,
                    "every {every}, rows {rows}"
                );
                assert_eq!(snap.state().routed, full.state().routed);
                assert_eq!(snap.head(), full.head());
                // The count towards the next snapshot survives the restart.
                assert_eq!(
                    snap.since_snapshot, live.since_snapshot,
                    "every {every}, rows {rows}"
                );
            }
        }
    }

    #[test]
    fn a_damaged_or_old_snapshot_falls_back_to_the_full_fold() {
        let (_dir, journal) = redb();
        let live = record_all(journal.as_ref(), history(20), 4);
        let stream = live.stream().clone();
        let good = journal
            .load_snapshot(&stream)
            .unwrap()
            .expect("a snapshot was saved");
        let mut old = good.bytes.clone();
        old[0] = ledgersync_domain::org::ORG_SNAPSHOT_VERSION + 1;
        let mut truncated = good.bytes.clone();
        truncated.truncate(good.bytes.len() / 2);
        let mut trailing = good.bytes.clone();
        trailing.push(0);
        let other_org = ledgersync_domain::org::OrgSnapshot::encode(
            &OrgState::new(OrgId::new("alliance")),
            None,
            &[],
        );
        for bytes in [old, truncated, trailing, vec![], other_org] {
            journal
                .save_snapshot(
                    &stream,
                    Snapshot {
                        seq: good.seq,
                        bytes,
                    },
                )
                .unwrap();
            let (again, _) =
                OrgCore::recover(journal.as_ref(), OrgId::new("serenity"), false).unwrap();
            same(&again, &live);
            assert_eq!(
                again.since_snapshot,
                again.head(),
                "the whole stream was folded"
            );
        }
    }

    #[test]
    fn every_change_of_one_append_left_half_routed_is_finished() {
        use ledgersync_domain::event::RecordUpserted;
        let (_dir, journal) = redb();
        let mut core = record_all(journal.as_ref(), history(0), u64::MAX);
        // Three rows owned by Jayne, staged on the core and appended at once, as the
        // organization actor records a batch.
        let mut events = Vec::new();
        let mut expected = None;
        let mut ids = Vec::new();
        for n in [100, 101, 102] {
            let id = IdGen.next();
            let event = Event::RecordUpserted(RecordUpserted {
                record: contact(n, "jayne"),
            });
            let Prepared::Record(batch, prepared) =
                core.prepare_change(id, event, Timestamp(n as i64)).unwrap()
            else {
                panic!("a new row")
            };
            expected.get_or_insert(batch.expected);
            events.extend(batch.events);
            let committed = core.commit_change(prepared);
            assert_eq!(committed.targets, vec![MailboxId::new("mbx-jayne")]);
            ids.push(id);
        }
        journal
            .append(core.stream(), expected.unwrap(), events)
            .unwrap();
        // Only the middle one reached the mailbox before the crash.
        let mailbox = StreamId::mailbox(&MailboxId::new("mbx-jayne"));
        let seen = Event::MailboxMapped(ledgersync_domain::event::MailboxMapped {
            mailbox: "mbx-jayne".into(),
            user: "jayne".into(),
        });
        journal
            .append(
                &mailbox,
                ExpectedSeq::Any,
                vec![new_event(
                    IdGen.next(),
                    &seen,
                    None,
                    vec![ids[1]],
                    ids[1],
                    Timestamp(200),
                )],
            )
            .unwrap();
        let (again, unfinished) =
            OrgCore::recover(journal.as_ref(), OrgId::new("serenity"), true).unwrap();
        assert_eq!(again.state(), core.state());
        let missing: Vec<EventId> = unfinished
            .iter()
            .filter(|u| ids.contains(&u.id))
            .map(|u| u.id)
            .collect();
        assert_eq!(
            missing,
            vec![ids[0], ids[2]],
            "oldest first, the routed one left out"
        );
        for u in unfinished.iter().filter(|u| ids.contains(&u.id)) {
            assert_eq!(u.missing, vec![MailboxId::new("mbx-jayne")]);
        }
    }

    #[test]
    fn a_snapshot_at_the_head_still_finishes_a_half_routed_change() {
        let (_dir, journal) = redb();
        // The registration of mbx-jayne is routed to it and never reaches it (no mailbox
        // append here); the snapshot is taken right after it.
        let live = record_all(journal.as_ref(), changes(), 1);
        let snap = journal.load_snapshot(live.stream()).unwrap().unwrap();
        assert_eq!(snap.seq, live.head());
        let (again, unfinished) =
            OrgCore::recover(journal.as_ref(), OrgId::new("serenity"), true).unwrap();
        same(&again, &live);
        assert_eq!(
            unfinished.len(),
            1,
            "only the last change reached no mailbox"
        );
        assert_eq!(unfinished[0].missing, vec![MailboxId::new("mbx-jayne")]);
        assert!(again.is_last(unfinished[0].id));
    }
}
