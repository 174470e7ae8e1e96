//! The organization actor and the consumer loop that feeds the live side from the bus.
//!
//! # `OrgActor`
//!
//! Owns the organization: one engine `OrgCore` (its [`OrgState`] and the head of `org/<id>`),
//! the organization stream's one write path, shared with `Engine::crm`. On start it rebuilds
//! the state from the stream and finishes the routing of the last changes that a crash left
//! half-routed (`OrgCore::recover`: a target mailbox was reached when its stream holds an event
//! correlated with the change). For a batch of CRM changes ([`CrmChanges`], at most
//! `ROUTING_WINDOW`; a single [`CrmChange`] is a batch of one), one batch at a time:
//!
//! 1. validate each against the organization as the changes before it leave it
//!    (`validate_crm`): a bad change is refused with [`OrgError::Invalid`], it and the changes
//!    after it are not recorded;
//! 2. stage each on the state: its target mailboxes computed on the state before it
//!    (`OrgState::route`), then applied;
//! 3. append them all to `org/<id>` in **one** append with the expected head, and await its
//!    durability;
//! 4. write the settings in force to [`SharedSettings`] (only now: the changes are durable);
//! 5. send one [`ObserveMailboxAll`] per target mailbox with the changes it must get, in order
//!    (each caused and correlated by its organization event), all at once — each mailbox
//!    records its share in one append, and the journal commits the appends of different
//!    mailboxes together — and answer only once every mailbox answered: every event a change
//!    answered as handled caused is durable;
//! 6. save an organization snapshot, when one is due, only now that every change up to it is
//!    routed.
//!
//! After a failed append or a failed routing the actor drops its state; the next message
//! rebuilds it from the journal first, which also finishes a routing the failure interrupted.
//! A change already recorded — its id among the last ids of the organization stream (a
//! redelivery after such a failure), or its content what the organization holds (same row
//! version and content, a stale version, a setting's value in force; `engine::org`) — is
//! answered with [`Routed::already_recorded`] and recorded nowhere again.
//!
//! # Mailbox failures and the profile alert (R14)
//!
//! The actor handles [`MailboxFailed`] (sent by the registry once given the actor's recipient
//! with [`ForwardFailures`]): for a mailbox the organization knows, it builds the observation
//! `mailbox_failure_noted` (mailbox, its profile, workload, time; caused by the failing
//! decision), decides on it with `alerting::decide_org` on the state before it, and appends the
//! observation and its decisions (an R14 `alert_raised` at most) to `org/<id>` in **one** append
//! with the expected head, then applies them. A failed append drops the state (rebuilt by the
//! next message); the failure is then not noted (it is logged).
//!
//! The consumer loop that feeds it from the bus is in [`crate::consumer`].

use crate::ActorError;
use crate::registry::{MailboxFailed, ObserveMailboxAll, Registry, SharedSettings};
use actix::fut::{ActorFutureExt, WrapFuture};
use actix::{Actor, Addr, AsyncContext, AtomicResponse, Context, Handler, MailboxError, Message};
use ledgersync_domain::email::Message as EmailMessage;
use ledgersync_domain::event::{EmailFacts, MailboxFailureNoted};
use ledgersync_domain::org::{MailboxInfo, ProfileInfo};
use ledgersync_domain::{
    Decision, Event, EventId, MailboxId, OrgId, OrgState, ProfileId, Recorded, StreamId,
};
use ledgersync_engine::engine::Appended;
use ledgersync_engine::ingress::{
    Change, LineError, ResultLine, parse_changes_within, split_results,
};
use ledgersync_engine::mailbox::Incoming;
use ledgersync_engine::org::{Committed, OrgCore, Prepared, ROUTING_WINDOW, Unfinished};
use ledgersync_engine::{Clock, EngineError, IdGen};
use ledgersync_journal::{AppendError, Journal};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock};

/// Why a CRM change was not (completely) handled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrgError {
    /// The change is not valid for the organization; nothing was recorded. Retrying cannot
    /// help: correct the change.
    #[error("CRM change refused, nothing was recorded: {0}")]
    Invalid(#[source] EngineError),
    /// The organization could not be rebuilt from the journal; nothing was recorded for this
    /// message. The next message retries.
    #[error(
        "could not rebuild organization `{org}` from the journal: {reason}; nothing was recorded \
         for this change; it is retried with the next message"
    )]
    Recovery {
        /// The organization.
        org: OrgId,
        /// What failed.
        reason: String,
    },
    /// The append to the organization stream failed; nothing was recorded.
    #[error("could not record the CRM change in {stream}: {source}; nothing was recorded")]
    Append {
        /// The organization stream.
        stream: StreamId,
        /// The journal's answer.
        #[source]
        source: AppendError,
    },
    /// The change is recorded, but a mailbox did not record it yet. The next message rebuilds
    /// the organization and finishes the routing; a redelivery of this change is not recorded
    /// twice.
    #[error(
        "the CRM change is recorded but mailbox `{mailbox}` did not record it: {source}; its \
         routing is finished before the next change"
    )]
    Routing {
        /// The mailbox.
        mailbox: MailboxId,
        /// The mailbox actor's answer.
        #[source]
        source: ActorError,
    },
    /// The registry did not answer (it stopped).
    #[error("the registry did not answer: {0}")]
    Registry(MailboxError),
}

impl OrgError {
    /// True when the change itself is bad: retrying cannot help, dead-letter it.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, OrgError::Invalid(_))
    }
}

/// A CRM-side or administrative change for the organization, recorded under `id`.
#[derive(Debug, Clone)]
pub struct CrmChange {
    /// The event id in the organization stream.
    pub id: EventId,
    /// The change.
    pub event: Event,
}

/// What a CRM change led to.
#[derive(Debug, Clone, Default)]
pub struct Routed {
    /// The organization event.
    pub org_event: Option<EventId>,
    /// The mailboxes it was routed to.
    pub mailboxes: Vec<MailboxId>,
    /// The decisions the mailboxes appended, mailbox by mailbox.
    pub decisions: Vec<Appended>,
    /// The change was already recorded (a redelivery with the same id, or the same content):
    /// nothing was appended or routed for it now, and why.
    pub already_recorded: Option<Recorded>,
}

impl Message for CrmChange {
    type Result = Result<Routed, OrgError>;
}

/// CRM changes recorded in **one** append of the organization stream and routed together, in
/// order; at most [`ROUTING_WINDOW`] (more are refused as bad input). One durable append and
/// one round of mailbox appends (which the journal commits together) serve them all.
#[derive(Debug, Clone)]
pub struct CrmChanges {
    /// The changes, in the order they are recorded.
    pub changes: Vec<CrmChange>,
}

/// What [`CrmChanges`] led to: the changes handled, in order, up to the first that failed.
#[derive(Debug, Default)]
pub struct BatchRouted {
    /// One answer per change handled, in order: every event it caused is durable.
    pub routed: Vec<Routed>,
    /// The first change that failed (its index in the batch) and why; the changes after it
    /// were not handled (a bad change records nothing, and nothing after it either; a failed
    /// append or routing may leave the changes after it recorded — a retry of them is
    /// recognised as already recorded).
    pub failed: Option<(usize, OrgError)>,
}

impl Message for CrmChanges {
    type Result = BatchRouted;
}

/// The organization as the actor holds it: its state and the head of its stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct InspectOrg;

/// The answer to [`InspectOrg`].
#[derive(Debug, Clone)]
pub struct OrgView {
    /// The state.
    pub state: OrgState,
    /// The head of `org/<id>` the state includes.
    pub head: u64,
}

impl Message for InspectOrg {
    type Result = Result<OrgView, OrgError>;
}

/// Checks a file of CRM changes (`ingress::parse_changes`) against the organization as the
/// actor holds it, without copying it; nothing is recorded.
#[derive(Debug, Clone)]
pub struct CheckChanges {
    /// The JSON-lines text.
    pub text: String,
    /// The size limits of a line and of a text field.
    pub limits: ledgersync_domain::Limits,
}

impl Message for CheckChanges {
    type Result = Result<Result<Vec<Change>, Vec<LineError>>, OrgError>;
}

/// Reads lines taken from the bus's CRM queue (`crm apply` lines: changes and command
/// results, `ingress::split_results`) against the organization as the actor holds it, without
/// copying it; nothing is recorded.
#[derive(Debug, Clone)]
pub struct CheckLines {
    /// The lines, one per message, joined by newlines.
    pub text: String,
    /// The size limits of a line and of a text field.
    pub limits: ledgersync_domain::Limits,
}

/// The answer to [`CheckLines`]: what the lines are, or what is wrong with them.
#[derive(Debug, Clone, Default)]
pub struct CheckedLines {
    /// The change lines, when every change line is good.
    pub changes: Vec<Change>,
    /// The good result lines.
    pub results: Vec<ResultLine>,
    /// The bad lines, changes and results.
    pub errors: Vec<LineError>,
}

impl Message for CheckLines {
    type Result = Result<CheckedLines, OrgError>;
}

/// The parts of the organization that say which mailboxes exist and on which profiles, for
/// the service's drivers: a copy that does not grow with the rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct InspectDirectory;

/// The answer to [`InspectDirectory`].
#[derive(Debug, Clone, Default)]
pub struct OrgDirectory {
    /// Server profiles.
    pub profiles: BTreeMap<ProfileId, ProfileInfo>,
    /// Mailboxes.
    pub mailboxes: BTreeMap<MailboxId, MailboxInfo>,
}

impl Message for InspectDirectory {
    type Result = Result<OrgDirectory, OrgError>;
}

/// The facts the incoming emails a mailbox found are decided from (decision 0018), looked up
/// in the organization's email directory before each `email_received` is recorded: the rows
/// of their addresses, the acceptance of the users and queues among them, the tracked emails
/// they can refer to. One answer per message, in order; empty facts when the mailbox is not
/// mapped to a user (its emails are then rejected under R1).
#[derive(Debug, Clone)]
pub struct LookupEmailFacts {
    /// The mailbox that found them.
    pub mailbox: MailboxId,
    /// The messages.
    pub messages: Vec<EmailMessage>,
}

impl Message for LookupEmailFacts {
    type Result = Result<Vec<EmailFacts>, OrgError>;
}

struct OrgEnv {
    org: OrgId,
    stream: StreamId,
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    settings: SharedSettings,
    known: KnownMailboxes,
    registry: Addr<Registry>,
    /// The seq of the newest organization snapshot saved; held while one is being saved, so
    /// that saves run one at a time and an older snapshot never replaces a newer one.
    snapshot_saved: std::sync::Mutex<u64>,
}

/// The organization actor. Create it with [`OrgActor::new`] and `start()` it inside an actix
/// `System`.
pub struct OrgActor {
    env: Arc<OrgEnv>,
    /// `None` before the recovery, and after a failure (rebuilt by the next message).
    core: Option<OrgCore>,
}

impl OrgActor {
    /// The actor of organization `org` over `journal`; it writes the settings in force to
    /// `settings` (shared with the `registry`'s mailbox actors) and routes through `registry`.
    pub fn new(
        org: OrgId,
        journal: Arc<dyn Journal>,
        clock: Arc<dyn Clock>,
        settings: SharedSettings,
        registry: Addr<Registry>,
    ) -> Self {
        Self {
            env: Arc::new(OrgEnv {
                snapshot_saved: std::sync::Mutex::default(),
                stream: StreamId::org(&org),
                org,
                journal,
                clock,
                settings,
                known: KnownMailboxes::default(),
                registry,
            }),
            core: None,
        }
    }

    /// The mailboxes the organization knows (registered), kept up to date by the actor once
    /// each change is durable; the consumer loop refuses mail observations for other ids.
    /// Take it before `start()`.
    pub fn known_mailboxes(&self) -> KnownMailboxes {
        self.env.known.clone()
    }
}

/// The mailbox ids the organization knows, shared by the [`OrgActor`] with the consumer loop.
pub type KnownMailboxes = Arc<RwLock<BTreeSet<MailboxId>>>;

/// What the blocking part of the recovery found: the organization, and a last change left
/// half-routed (the mailboxes still to reach).
fn read_org(env: &OrgEnv) -> Result<(OrgCore, Vec<Unfinished>), EngineError> {
    OrgCore::recover(env.journal.as_ref(), env.org.clone(), true)
}

fn publish_settings(env: &OrgEnv, state: &OrgState) {
    let mut settings = env.settings.write().unwrap_or_else(PoisonError::into_inner);
    if *settings != state.settings {
        *settings = state.settings.clone();
    }
    drop(settings);
    let mut known = env.known.write().unwrap_or_else(PoisonError::into_inner);
    if known.len() != state.mailboxes.len() || !state.mailboxes.keys().eq(known.iter()) {
        *known = state.mailboxes.keys().cloned().collect();
    }
}

/// A change to route: its organization event id, the change, and the mailboxes it must reach.
type ToRoute<'a> = (EventId, &'a Event, &'a [MailboxId]);

/// Routes `changes` (in order) to their mailboxes: one [`ObserveMailboxAll`] per mailbox with
/// the changes it must get, in order, all sent at once — each mailbox records its share in one
/// append, and the journal commits the appends of different mailboxes together. Answers the
/// decisions per change (those the mailboxes recorded), and the first change (its index in
/// `changes`) a mailbox did not record and why; every answer is awaited first.
async fn route(
    env: &OrgEnv,
    changes: &[ToRoute<'_>],
) -> (Vec<Vec<Appended>>, Option<(usize, OrgError)>) {
    let mut per_mailbox: BTreeMap<&MailboxId, Vec<usize>> = BTreeMap::new();
    for (i, (_, _, targets)) in changes.iter().enumerate() {
        for mailbox in *targets {
            per_mailbox.entry(mailbox).or_default().push(i);
        }
    }
    let requests: Vec<_> = per_mailbox
        .into_iter()
        .map(|(mailbox, indices)| {
            let incomings = indices
                .iter()
                .map(|&i| {
                    let (org_event, event, _) = changes[i];
                    Incoming {
                        event: event.clone(),
                        id: IdGen.next(),
                        causation: vec![org_event],
                        correlation: org_event,
                    }
                })
                .collect();
            let request = env
                .registry
                .send(ObserveMailboxAll::new(mailbox.clone(), incomings));
            (mailbox.clone(), indices, request)
        })
        .collect();
    let mut decisions: Vec<Vec<Appended>> = vec![Vec::new(); changes.len()];
    let mut first_error: Option<(usize, OrgError)> = None;
    for (mailbox, indices, request) in requests {
        let failed = match request.await {
            Ok(Ok(decided)) => {
                for (i, d) in indices.iter().zip(decided) {
                    decisions[*i].extend(d);
                }
                None
            }
            Ok(Err(source)) => Some(OrgError::Routing { mailbox, source }),
            Err(e) => Some(OrgError::Registry(e)),
        };
        if let Some(e) = failed {
            let at = indices[0];
            if first_error.as_ref().is_none_or(|(i, _)| at < *i) {
                first_error = Some((at, e));
            }
        }
    }
    (decisions, first_error)
}

/// Rebuilds the organization from its stream, publishes its settings, and finishes the
/// routing of a half-routed last change.
async fn recover(env: Arc<OrgEnv>) -> Result<OrgCore, OrgError> {
    let reader = env.clone();
    let read = tokio::task::spawn_blocking(move || read_org(&reader))
        .await
        .map_err(|e| format!("the recovery task failed: {e}"))
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|reason| OrgError::Recovery {
            org: env.org.clone(),
            reason,
        })?;
    let (core, unfinished) = read;
    publish_settings(&env, core.state());
    for change in &unfinished {
        for mailbox in &change.missing {
            tracing::warn!(mailbox = %mailbox, event = %change.id, "finishing the routing of a CRM change interrupted by a crash");
        }
    }
    let changes: Vec<ToRoute<'_>> = unfinished
        .iter()
        .map(|c| (c.id, &c.event, c.missing.as_slice()))
        .collect();
    if let (_, Some((_, e))) = route(&env, &changes).await {
        return Err(e);
    }
    Ok(core)
}

/// Handles a batch of changes on `core` (recovered first if `None`): each is prepared and
/// staged on the state the previous one left, all are appended at once, then routed at once.
/// Answers the core to keep (`None` after a failure that may leave it behind the journal) and
/// the result.
async fn handle_changes(
    env: Arc<OrgEnv>,
    core: Option<OrgCore>,
    changes: Vec<CrmChange>,
) -> (Option<OrgCore>, BatchRouted) {
    let mut out = BatchRouted::default();
    if changes.len() > ROUTING_WINDOW {
        let e = EngineError::Invalid(format!(
            "{} CRM changes in one batch; at most {ROUTING_WINDOW} are recorded together",
            changes.len()
        ));
        out.failed = Some((0, OrgError::Invalid(e)));
        return (core, out);
    }
    let mut core = match core {
        Some(core) => core,
        None => match recover(env.clone()).await {
            Ok(core) => core,
            Err(e) => {
                out.failed = Some((0, e));
                return (None, out);
            }
        },
    };
    let now = env.clock.now();
    let mut expected = None;
    let mut events = Vec::new();
    // (index in the batch, what to route) of every change staged for the append.
    let mut staged: Vec<(usize, Committed)> = Vec::new();
    let mut snapshot = None;
    let mut administrative = false;
    for (i, msg) in changes.into_iter().enumerate() {
        match core.prepare_change(msg.id, msg.event, now) {
            Ok(Prepared::Record(batch, prepared)) => {
                expected.get_or_insert(batch.expected);
                events.extend(batch.events);
                // Staged on the core before the append: a failed append drops the core.
                let mut committed = core.commit_change(prepared);
                if let Some(s) = committed.snapshot.take() {
                    snapshot = Some(s);
                }
                administrative |= !matches!(
                    committed.event,
                    Event::RecordUpserted(_) | Event::OwnerChanged(_) | Event::RecordDeleted(_)
                );
                out.routed.push(Routed {
                    org_event: Some(committed.id),
                    mailboxes: committed.targets.clone(),
                    ..Routed::default()
                });
                staged.push((i, committed));
            }
            Ok(Prepared::AlreadyRecorded(recorded)) => out.routed.push(Routed {
                org_event: (recorded == Recorded::SameId).then_some(msg.id),
                already_recorded: Some(recorded),
                ..Routed::default()
            }),
            Err(e) => {
                out.failed = Some((i, OrgError::Invalid(e)));
                break;
            }
        }
    }
    let Some(expected) = expected else {
        return (Some(core), out);
    };
    if let Err(source) = env.journal.submit(&env.stream, expected, events).await {
        tracing::warn!(org = %env.org, error = %source, "CRM changes not recorded; the organization is rebuilt from its stream");
        let first = staged.first().map_or(0, |(i, _)| *i);
        out.routed.truncate(first);
        out.failed = Some((
            first,
            OrgError::Append {
                stream: env.stream.clone(),
                source,
            },
        ));
        return (None, out);
    }
    // Durable now: the mailboxes may decide with them. Only an administrative change can
    // change the settings or the mailboxes; row changes leave them as published.
    if administrative {
        publish_settings(&env, core.state());
    }
    let changes: Vec<ToRoute<'_>> = staged
        .iter()
        .map(|(_, c)| (c.id, &c.event, c.targets.as_slice()))
        .collect();
    // The changes before a failed one keep the decisions their mailboxes recorded.
    let (decided, failed) = route(&env, &changes).await;
    for ((i, _), decisions) in staged.iter().zip(decided) {
        out.routed[*i].decisions = decisions;
    }
    let routing_failed = failed.map(|(at, e)| (staged[at].0, e));
    if let Some((i, e)) = routing_failed {
        tracing::warn!(org = %env.org, error = %e, "CRM change recorded but not routed everywhere; the routing is finished before the next change");
        out.routed.truncate(i);
        if out.failed.as_ref().is_none_or(|(at, _)| i < *at) {
            out.failed = Some((i, e));
        }
        return (None, out);
    }
    // Every change up to the snapshot is routed: only now may a recovery start from it.
    if let Some(snapshot) = snapshot {
        save_snapshot(&env, snapshot);
    }
    (Some(core), out)
}

/// Saves an organization snapshot on a blocking thread while the actor goes on with the next
/// changes (a snapshot of a million rows is tens of MB to write). A cache: a failed save is
/// logged and only costs a longer recovery. Saves run one at a time, and one older than the
/// newest saved is dropped.
fn save_snapshot(env: &Arc<OrgEnv>, snapshot: ledgersync_journal::Snapshot) {
    let env = env.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut saved = env
            .snapshot_saved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if snapshot.seq <= *saved {
            return;
        }
        let seq = snapshot.seq;
        match env.journal.save_snapshot(&env.stream, snapshot) {
            Ok(()) => *saved = seq,
            Err(e) => {
                tracing::warn!(org = %env.org, error = %e, "organization snapshot not saved; the next recovery folds more of the stream")
            }
        }
    });
    drop(task);
}

/// Notes one mailbox failure (R14): observation and decisions in one append, then applied.
async fn note_failure(
    env: Arc<OrgEnv>,
    core: Option<OrgCore>,
    msg: MailboxFailed,
) -> (Option<OrgCore>, Result<Vec<Decision>, OrgError>) {
    let mut core = match core {
        Some(core) => core,
        None => match recover(env.clone()).await {
            Ok(core) => core,
            Err(e) => return (None, Err(e)),
        },
    };
    let Some(profile) = core
        .state()
        .mailboxes
        .get(&msg.mailbox)
        .map(|m| m.profile.clone())
    else {
        return (Some(core), Ok(Vec::new()));
    };
    let observation = Event::MailboxFailureNoted(MailboxFailureNoted {
        mailbox: msg.mailbox.clone(),
        profile,
        workload: msg.workload,
        at: msg.at,
    });
    let now = env.clock.now();
    let (batch, prepared) =
        core.prepare_observation(IdGen.next(), observation, vec![msg.decision], now, &IdGen);
    let ticket = env
        .journal
        .submit(&batch.stream, batch.expected, batch.events);
    if let Err(source) = ticket.await {
        tracing::warn!(org = %env.org, mailbox = %msg.mailbox, error = %source, "mailbox failure not noted; the organization is rebuilt from its stream");
        return (
            None,
            Err(OrgError::Append {
                stream: env.stream.clone(),
                source,
            }),
        );
    }
    let decisions = core.commit_observation(prepared);
    (Some(core), Ok(decisions))
}

impl Actor for OrgActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Messages wait until the recovery is done (ctx.wait).
        ctx.wait(
            recover(self.env.clone())
                .into_actor(self)
                .map(|result, act, _ctx| match result {
                    Ok(core) => act.core = Some(core),
                    Err(e) => {
                        tracing::warn!(org = %act.env.org, error = %e, "organization recovery failed; the next message retries it");
                        act.core = None;
                    }
                }),
        );
    }
}

impl Handler<CrmChanges> for OrgActor {
    type Result = AtomicResponse<Self, BatchRouted>;

    fn handle(&mut self, msg: CrmChanges, _ctx: &mut Context<Self>) -> Self::Result {
        let core = self.core.take();
        let fut = handle_changes(self.env.clone(), core, msg.changes)
            .into_actor(self)
            .map(|(core, result), act, _ctx| {
                act.core = core;
                result
            });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<CrmChange> for OrgActor {
    type Result = AtomicResponse<Self, Result<Routed, OrgError>>;

    fn handle(&mut self, msg: CrmChange, _ctx: &mut Context<Self>) -> Self::Result {
        let core = self.core.take();
        let fut = handle_changes(self.env.clone(), core, vec![msg])
            .into_actor(self)
            .map(|(core, mut result), act, _ctx| {
                act.core = core;
                match result.failed {
                    Some((_, e)) => Err(e),
                    None => Ok(result.routed.pop().unwrap_or_default()),
                }
            });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<MailboxFailed> for OrgActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: MailboxFailed, _ctx: &mut Context<Self>) -> Self::Result {
        let core = self.core.take();
        let fut = note_failure(self.env.clone(), core, msg)
            .into_actor(self)
            .map(|(core, result), act, _ctx| {
                act.core = core;
                match result {
                    Ok(decisions) => {
                        for d in decisions {
                            tracing::warn!(org = %act.env.org, rule = %d.rule, event = d.event.name(), "organization decision");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(org = %act.env.org, error = %e, "a mailbox failure was not noted")
                    }
                }
            });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<InspectOrg> for OrgActor {
    type Result = AtomicResponse<Self, Result<OrgView, OrgError>>;

    fn handle(&mut self, _msg: InspectOrg, _ctx: &mut Context<Self>) -> Self::Result {
        let core = self.core.take();
        let env = self.env.clone();
        let fut = async move {
            match core {
                Some(core) => Ok(core),
                None => recover(env).await,
            }
        }
        .into_actor(self)
        .map(|result, act, _ctx| match result {
            Ok(core) => {
                let view = OrgView {
                    state: core.state().clone(),
                    head: core.head(),
                };
                act.core = Some(core);
                Ok(view)
            }
            Err(e) => Err(e),
        });
        AtomicResponse::new(Box::pin(fut))
    }
}

/// Runs `f` on the organization as the actor holds it (recovered first when it has none).
fn with_core<R: 'static>(
    actor: &mut OrgActor,
    f: impl FnOnce(&OrgCore) -> R + 'static,
) -> AtomicResponse<OrgActor, Result<R, OrgError>> {
    let core = actor.core.take();
    let env = actor.env.clone();
    let fut = async move {
        match core {
            Some(core) => Ok(core),
            None => recover(env).await,
        }
    }
    .into_actor(actor)
    .map(move |result, act, _ctx| match result {
        Ok(core) => {
            let answer = f(&core);
            act.core = Some(core);
            Ok(answer)
        }
        Err(e) => Err(e),
    });
    AtomicResponse::new(Box::pin(fut))
}

impl Handler<CheckChanges> for OrgActor {
    type Result = AtomicResponse<Self, Result<Result<Vec<Change>, Vec<LineError>>, OrgError>>;

    fn handle(&mut self, msg: CheckChanges, _ctx: &mut Context<Self>) -> Self::Result {
        with_core(self, move |core| {
            parse_changes_within(&msg.text, core.state(), &msg.limits)
        })
    }
}

impl Handler<CheckLines> for OrgActor {
    type Result = AtomicResponse<Self, Result<CheckedLines, OrgError>>;

    fn handle(&mut self, msg: CheckLines, _ctx: &mut Context<Self>) -> Self::Result {
        with_core(self, move |core| {
            let split = split_results(&msg.text, core.state(), &msg.limits);
            let mut errors = split.errors;
            let changes = match parse_changes_within(&split.changes, core.state(), &msg.limits) {
                Ok(changes) => changes,
                Err(bad) => {
                    errors.extend(bad);
                    Vec::new()
                }
            };
            errors.sort_by_key(|e| e.line);
            CheckedLines {
                changes,
                results: split.results,
                errors,
            }
        })
    }
}

impl Handler<InspectDirectory> for OrgActor {
    type Result = AtomicResponse<Self, Result<OrgDirectory, OrgError>>;

    fn handle(&mut self, _msg: InspectDirectory, _ctx: &mut Context<Self>) -> Self::Result {
        with_core(self, |core| OrgDirectory {
            profiles: core.state().profiles.clone(),
            mailboxes: core.state().mailboxes.clone(),
        })
    }
}

impl Handler<LookupEmailFacts> for OrgActor {
    type Result = AtomicResponse<Self, Result<Vec<EmailFacts>, OrgError>>;

    fn handle(&mut self, msg: LookupEmailFacts, _ctx: &mut Context<Self>) -> Self::Result {
        with_core(self, move |core| {
            let state = core.state();
            match state
                .mailboxes
                .get(&msg.mailbox)
                .and_then(|m| m.owner.as_ref())
            {
                Some(user) => msg
                    .messages
                    .iter()
                    .map(|m| state.email_directory.facts(m, user, &state.settings))
                    .collect(),
                None => vec![EmailFacts::default(); msg.messages.len()],
            }
        })
    }
}
