//! The synchronous engine: CRM changes enter through the organization stream and are routed to
//! mailboxes; mail-side observations go straight to their mailbox. For each mailbox it runs
//! `decide` on the state before the observation, then appends the observation and its decisions
//! in one atomic append (expected sequence = the mailbox's head), then evolves its state.
//!
//! Invariant: a mailbox's decisions are always in the same atomic batch as the observation that
//! caused them, directly after it. Replay relies on it.

use crate::clock::{Clock, IdGen};
use crate::error::EngineError;
use crate::log::{Stored, scan};
use crate::mailbox::{Incoming, MailboxCore};
use crate::org::{Committed, OrgCore, Prepared, Unfinished};
use ledgersync_domain::{
    Decision, Event, EventId, MailboxId, MailboxState, OrgId, OrgState, Recorded, StreamId,
    Timestamp,
};
use ledgersync_journal::Journal;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How often (in events) a mailbox snapshot is written.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;

/// A decision as appended: its event id and position.
#[derive(Clone, Debug)]
pub struct Appended {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// The event id.
    pub id: EventId,
    /// The decision.
    pub decision: Decision,
}

/// What one observation led to.
#[derive(Clone, Debug, Default)]
pub struct Processed {
    /// Id of the observation in the organization stream (CRM changes only).
    pub org_event: Option<EventId>,
    /// The mailboxes it reached.
    pub mailboxes: Vec<MailboxId>,
    /// The decisions appended, in order.
    pub decisions: Vec<Appended>,
    /// The change was already recorded (by content or message id): nothing was appended or
    /// routed for it now, and why.
    pub already_recorded: Option<Recorded>,
}

/// The engine over one organization and one journal.
pub struct Engine {
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    ids: IdGen,
    org: OrgCore,
    mailboxes: BTreeMap<MailboxId, MailboxCore>,
    snapshot_every: u64,
    /// A view opened beside a live writer: never appends (see [`Engine::open_view`]).
    read_only: bool,
}

impl Engine {
    /// Opens the engine on a journal, rebuilding the organization and mailbox states from it
    /// (mailboxes from their latest snapshot plus the tail of their stream).
    pub fn open(
        journal: Arc<dyn Journal>,
        org: OrgId,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EngineError> {
        let mut engine = Self {
            journal,
            clock,
            ids: IdGen,
            org: OrgCore::new(org),
            mailboxes: BTreeMap::new(),
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            read_only: false,
        };
        engine.recover()?;
        Ok(engine)
    }

    /// Opens a read-only view of a journal that a live service (`ledgersync serve`) writes
    /// at the same time: the states are rebuilt as by [`Engine::open`], but a last CRM change
    /// that looks half-routed is left to the service (it is most likely being routed right
    /// now), and [`Engine::crm`] / [`Engine::observe`] refuse to append.
    pub fn open_view(
        journal: Arc<dyn Journal>,
        org: OrgId,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EngineError> {
        let mut engine = Self {
            journal,
            clock,
            ids: IdGen,
            org: OrgCore::new(org),
            mailboxes: BTreeMap::new(),
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            read_only: true,
        };
        engine.recover()?;
        Ok(engine)
    }

    fn refuse_if_read_only(&self) -> Result<(), EngineError> {
        if self.read_only {
            return Err(EngineError::Invalid(
                "this engine is a read-only view of a journal a live service writes; send the \
                 change to the service"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Sets the snapshot interval (events per mailbox).
    pub fn with_snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = n.max(1);
        self
    }

    fn recover(&mut self) -> Result<(), EngineError> {
        let journal = self.journal.clone();
        let org = self
            .org
            .state()
            .id
            .clone()
            .unwrap_or_else(|| OrgId::new(""));
        // A read-only view leaves a half-routed last change to the live service.
        let (core, unfinished) = OrgCore::recover(journal.as_ref(), org, !self.read_only)?;
        self.org = core;
        for (stream, _) in journal.streams()? {
            let Some(id) = stream.as_mailbox() else {
                continue;
            };
            let core = MailboxCore::recover(journal.as_ref(), id.clone())?;
            self.mailboxes.insert(id, core);
        }
        for unfinished in unfinished {
            self.finish_routing(unfinished)?;
        }
        Ok(())
    }

    /// Routes an organization event to the mailboxes that did not receive it: a crash between
    /// the organization append and a mailbox append leaves it half-routed.
    fn finish_routing(&mut self, unfinished: Unfinished) -> Result<(), EngineError> {
        let id = unfinished.id;
        for mailbox in unfinished.missing {
            tracing::warn!(mailbox = %mailbox, event = %id, "finishing the routing of a CRM change interrupted by a crash");
            let now = self.clock.now();
            self.process(&mailbox, unfinished.event.clone(), vec![id], id, now)?;
        }
        Ok(())
    }

    /// The organization state.
    pub fn org(&self) -> &OrgState {
        self.org.state()
    }

    /// A mailbox's state.
    pub fn mailbox(&self, id: &MailboxId) -> Option<&MailboxState> {
        self.mailboxes.get(id).map(|m| m.state())
    }

    /// Every mailbox id.
    pub fn mailbox_ids(&self) -> impl Iterator<Item = &MailboxId> {
        self.mailboxes.keys()
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// Records a CRM-side or administrative observation in the organization stream, then routes
    /// it to every mailbox it concerns. A change already recorded is answered with
    /// [`Processed::already_recorded`] and nothing else.
    pub fn crm(&mut self, event: Event) -> Result<Processed, EngineError> {
        self.refuse_if_read_only()?;
        let now = self.clock.now();
        let id = self.ids.next();
        let (batch, prepared) = match self.org.prepare_change(id, event, now)? {
            Prepared::Record(batch, prepared) => (batch, prepared),
            Prepared::AlreadyRecorded(recorded) => {
                return Ok(Processed {
                    already_recorded: Some(recorded),
                    ..Processed::default()
                });
            }
        };
        self.journal
            .append(&batch.stream, batch.expected, batch.events)
            .map_err(|source| EngineError::Append {
                stream: batch.stream.clone(),
                source,
            })?;
        let Committed {
            id,
            event,
            targets,
            snapshot,
        } = self.org.commit_change(prepared);
        let mut out = Processed {
            org_event: Some(id),
            mailboxes: targets.clone(),
            decisions: Vec::new(),
            already_recorded: None,
        };
        for mailbox in targets {
            let decided = self.process(&mailbox, event.clone(), vec![id], id, now)?;
            out.decisions.extend(decided);
        }
        if let Some(snapshot) = snapshot {
            // A cache: a failed save only costs a longer recovery.
            let stream = self.org.stream().clone();
            if let Err(e) = self.journal.save_snapshot(&stream, snapshot) {
                tracing::warn!(stream = %stream, error = %e, "organization snapshot not saved; the next open folds more of the stream");
            }
        }
        Ok(out)
    }

    /// Records a mail-side observation or an intent outcome for one mailbox.
    pub fn observe(&mut self, mailbox: &MailboxId, event: Event) -> Result<Processed, EngineError> {
        self.refuse_if_read_only()?;
        if !self.mailboxes.contains_key(mailbox) {
            return Err(EngineError::UnknownMailbox(mailbox.clone()));
        }
        use ledgersync_domain::event::EventClass;
        if !matches!(
            event.class(),
            EventClass::MailObservation | EventClass::Outcome
        ) {
            return Err(EngineError::Invalid(format!(
                "`{}` is not a mail-server observation or an intent outcome; CRM changes and \
                 administrative events go through the organization (Engine::crm)",
                event.name()
            )));
        }
        // A CRM command's result for a command no longer open is acknowledged and recorded
        // nowhere (the domain's once-only rule).
        if !self.mailboxes[mailbox].admits(&event) {
            return Ok(Processed::default());
        }
        // An outcome is caused by its intent.
        let causation = match &event {
            Event::IntentSucceeded(p) => vec![p.intent],
            Event::IntentFailed(p) => vec![p.intent],
            _ => vec![],
        };
        let now = self.clock.now();
        let id = self.ids.next();
        let decisions = self.process_with_id(mailbox, event, causation, id, id, now)?;
        Ok(Processed {
            org_event: None,
            mailboxes: vec![mailbox.clone()],
            decisions,
            already_recorded: None,
        })
    }

    fn process(
        &mut self,
        mailbox: &MailboxId,
        obs: Event,
        causation: Vec<EventId>,
        correlation: EventId,
        now: Timestamp,
    ) -> Result<Vec<Appended>, EngineError> {
        let id = self.ids.next();
        self.process_with_id(mailbox, obs, causation, correlation, id, now)
    }

    fn process_with_id(
        &mut self,
        mailbox: &MailboxId,
        obs: Event,
        causation: Vec<EventId>,
        correlation: EventId,
        obs_id: EventId,
        now: Timestamp,
    ) -> Result<Vec<Appended>, EngineError> {
        let core = self
            .mailboxes
            .entry(mailbox.clone())
            .or_insert_with(|| MailboxCore::new(mailbox.clone()));
        let incoming = Incoming {
            event: obs,
            id: obs_id,
            causation,
            correlation,
        };
        let (batch, prepared) = core.prepare(incoming, &self.org.state().settings, now, &self.ids);
        self.journal
            .append(&batch.stream, batch.expected, batch.events)
            .map_err(|source| EngineError::Append {
                stream: batch.stream.clone(),
                source,
            })?;
        let (appended, snapshot) = core.commit(prepared, self.snapshot_every);
        if let Some(snapshot) = snapshot {
            // The batch is durable and applied: a failed snapshot only costs a longer refold
            // on the next open, so it is logged, not returned (a caller must not retry).
            if let Err(e) = self.journal.save_snapshot(&batch.stream, snapshot) {
                tracing::warn!(stream = %batch.stream, error = %e, "mailbox snapshot not saved; the next open refolds the stream");
            }
        }
        Ok(appended)
    }
}

/// The mailboxes that `change` — the last event of the organization stream, with `before` the
/// organization just before it — should have reached and did not: empty unless a crash
/// interrupted its routing.
///
/// Every event of a change's routing carries the change's id as correlation. A target mailbox
/// was reached when its stream holds such an event after the change's position. Other events
/// may be interleaved (a live service appends mail-side observations of other mailboxes, and
/// of the same mailbox, while a change is routed), so each target's stream is searched: a
/// binary search finds its first event after the change, then it is read forward until an
/// event of the change is found. A routed target answers within a few events; only a target
/// the crash cut off is read to its end, once.
pub fn unrouted(
    journal: &dyn Journal,
    before: &OrgState,
    change: &Stored,
) -> Result<Vec<MailboxId>, EngineError> {
    unrouted_of(journal, before.route(&change.event), change)
}

/// [`unrouted`] with the change's targets already computed (`OrgState::route` on the
/// organization before it): the ones whose stream holds no event of the change.
pub fn unrouted_of(
    journal: &dyn Journal,
    targets: Vec<MailboxId>,
    change: &Stored,
) -> Result<Vec<MailboxId>, EngineError> {
    let mut missing = Vec::new();
    for mailbox in targets {
        if !reached(journal, &mailbox, change)? {
            missing.push(mailbox);
        }
    }
    Ok(missing)
}

/// Events read first after a change when looking for its routed copy ([`reached`]).
const FIRST_LOOK: usize = 8;

/// Whether `mailbox`'s stream holds an event of `change`'s routing.
fn reached(
    journal: &dyn Journal,
    mailbox: &MailboxId,
    change: &Stored,
) -> Result<bool, EngineError> {
    let stream = StreamId::mailbox(mailbox);
    let head = journal.stream_head(&stream)?;
    let after = change.envelope.position;
    // The first seq whose position is after the change (positions grow with seq).
    let (mut lo, mut hi) = (1u64, head + 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let position = journal
            .read_stream(&stream, mid, 1)?
            .first()
            .map_or(u64::MAX, |e| e.position);
        if position > after {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let id = change.envelope.event_id;
    let mut seq = lo;
    // The routed copy is normally the first event after the change (the mailbox records it
    // with its decisions in one append): a few events are read first, whole pages only if
    // other events came in between. A mailbox with a long listing after its last CRM change
    // is then not read through at every start.
    let mut page_size = FIRST_LOOK;
    while seq <= head {
        let page = journal.read_stream(&stream, seq, page_size)?;
        page_size = crate::log::PAGE;
        let Some(last) = page.last() else { break };
        seq = last.seq + 1;
        if page.iter().any(|e| e.correlation == Some(id)) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn invalid_field(field: &str, message: String) -> EngineError {
    EngineError::InvalidField {
        field: field.to_string(),
        message,
    }
}

/// Refuses a change about a user the organization does not know.
fn known_user(org: &OrgState, user: &ledgersync_domain::UserId) -> Result<(), EngineError> {
    if org.users.contains_key(user) {
        return Ok(());
    }
    Err(invalid_field(
        "user",
        format!(
            "unknown user `{user}`: the organization has no such CRM user; register it first \
             (a user_registered line) or correct the id"
        ),
    ))
}

/// Checks a CRM-side observation against the organization before it is recorded: unknown
/// settings or values, invalid filters, unknown mailboxes and users, a deleted row's table or a
/// reassigned row's previous owner that contradict what the organization recorded are refused
/// with a clear reason (and the field, where one is at fault).
///
/// A row the organization has never seen (or has seen deleted) cannot be checked: a
/// `record_deleted` or `owner_changed` for it is accepted as the CRM sends it (the CRM may
/// delete or reassign rows that were created before ledgersync was connected and never sent).
pub fn validate_crm(event: &Event, org: &OrgState) -> Result<(), EngineError> {
    use ledgersync_domain::filter::CompiledFilter;
    match event {
        Event::AccessLost(p) => known_user(org, &p.user)?,
        Event::AccessRegained(p) => known_user(org, &p.user)?,
        Event::RecordDeleted(p) => {
            if let Some(row) = org.rows.get(&p.id)
                && row.entity != p.entity
            {
                return Err(invalid_field(
                    "entity",
                    format!(
                        "row `{}` is {} {} (as the CRM last sent it), not {} {}; send \
                         \"entity\": \"{}\" or correct the id",
                        p.id,
                        article(row.entity),
                        row.entity,
                        article(p.entity),
                        p.entity,
                        row.entity.name()
                    ),
                ));
            }
        }
        Event::OwnerChanged(p) => {
            if let Some(row) = org.rows.get(&p.record.id)
                && row.owner != p.previous_owner
            {
                return Err(invalid_field(
                    "previous_owner",
                    format!(
                        "row `{}` is owned by `{}` as last recorded, not by `{}`; give \
                         \"previous_owner\": \"{}\" (or send the missing change first)",
                        p.record.id, row.owner, p.previous_owner, row.owner
                    ),
                ));
            }
        }
        Event::SettingChanged(p) => {
            let mut s = org.settings.clone();
            s.set(&p.key, &p.value)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
        }
        Event::FilterChanged(p) => {
            known_user(org, &p.user)?;
            for f in &p.filters {
                if f.entity != p.entity {
                    return Err(EngineError::Invalid(format!(
                        "filter `{}` is for {} but the change is for {}",
                        f.name, f.entity, p.entity
                    )));
                }
                CompiledFilter::parse(f.entity, &f.expr)
                    .map_err(|e| EngineError::Invalid(e.to_string()))?;
            }
        }
        Event::MailboxMapped(p) => {
            if !org.mailboxes.contains_key(&p.mailbox) {
                return Err(EngineError::UnknownMailbox(p.mailbox.clone()));
            }
        }
        Event::AddressApproved(p) => {
            if !org.mailboxes.contains_key(&p.mailbox) {
                return Err(EngineError::UnknownMailbox(p.mailbox.clone()));
            }
        }
        Event::MailboxTested(p) => {
            if !org.mailboxes.contains_key(&p.mailbox) {
                return Err(EngineError::UnknownMailbox(p.mailbox.clone()));
            }
        }
        Event::DisableRequested(p) => {
            if !org.mailboxes.contains_key(&p.mailbox) {
                return Err(EngineError::UnknownMailbox(p.mailbox.clone()));
            }
        }
        Event::DeletesApproved(p) => {
            if !org.mailboxes.contains_key(&p.mailbox) {
                return Err(EngineError::UnknownMailbox(p.mailbox.clone()));
            }
        }
        Event::ProfileAlertingSet(p) => {
            if !org.profiles.contains_key(&p.profile) {
                return Err(EngineError::Invalid(format!(
                    "unknown server profile `{}`; register it first (profile_registered)",
                    p.profile
                )));
            }
        }
        Event::ProfileRegistered(p) => {
            if let Err(e) =
                ledgersync_domain::policy::connections::check_max_connections(p.max_connections)
            {
                return Err(EngineError::Invalid(format!(
                    "profile `{}`: {e}",
                    p.profile
                )));
            }
        }
        e => {
            use ledgersync_domain::event::EventClass;
            match e.class() {
                EventClass::Decision => {
                    return Err(EngineError::Invalid(format!(
                        "`{}` is a decision; the CRM can only send observations",
                        e.name()
                    )));
                }
                EventClass::MailObservation | EventClass::Outcome => {
                    return Err(EngineError::Invalid(format!(
                        "`{}` comes from a mail server; it is given to its mailbox, not sent by the CRM",
                        e.name()
                    )));
                }
                EventClass::OrgObservation => {
                    return Err(EngineError::Invalid(format!(
                        "`{}` is noted by the runtime when a mailbox fails, not sent by the CRM",
                        e.name()
                    )));
                }
                EventClass::Organization | EventClass::Lifecycle | EventClass::CrmObservation => {}
            }
        }
    }
    Ok(())
}

fn article(entity: ledgersync_domain::records::Entity) -> &'static str {
    match entity {
        ledgersync_domain::records::Entity::Appointment
        | ledgersync_domain::records::Entity::Email => "an",
        _ => "a",
    }
}

/// Rebuilds every mailbox state by folding the whole journal (used by tests to compare with the
/// live states).
pub fn rebuild_states(
    journal: &dyn Journal,
) -> Result<BTreeMap<MailboxId, MailboxState>, EngineError> {
    let mut states: BTreeMap<MailboxId, MailboxState> = BTreeMap::new();
    scan(
        journal,
        1,
        |_, _| {},
        |s| {
            if let Some(m) = s.envelope.stream.as_mailbox() {
                states.entry(m).or_default().apply_owned(s.meta(), s.event);
            }
            Ok(())
        },
    )?;
    Ok(states)
}
