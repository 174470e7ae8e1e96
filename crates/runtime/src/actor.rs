//! The mailbox actor: one actix actor per active mailbox, owning that mailbox's
//! [`MailboxCore`] (its state and its place in its stream).
//!
//! # Lifecycle
//!
//! | phase        | means                                                        | left by                                                                                     |
//! |--------------|--------------------------------------------------------------|---------------------------------------------------------------------------------------------|
//! | recovering   | started; loading the snapshot and the tail of the stream     | the recovery finishing: to *active*, or to *failed* on an error                             |
//! | active       | the core is in memory; messages are handled one at a time    | an [`Observe`] (to *busy*), the idle check (to *stopped*, a passivation)                    |
//! | busy         | an observation is in flight; its future holds the core       | the append's answer: to *active* once committed, to *stopped* on an error (after the reply) |
//! | failed       | the recovery failed; every message is answered with its error | the next idle check (to *stopped*); the registry forgot it at once                          |
//! | stopped      | `ctx.stop()` was called; no message is handled any more      | (end) — the next message for the mailbox starts a new actor, which recovers from the log    |
//!
//! Who causes each transition: the actor's own `started` runs the recovery; the journal's
//! answer ends it; an append error in [`Observe`] stops the actor after the reply; the idle
//! check ([`CheckIdle`], sent by the actor's own interval timer or by the registry's
//! `PassivateIdle`) stops an actor idle for longer than the configured time. Each stop and
//! each failed recovery tells the registry first ([`Gone`]), so the registry never hands a
//! new message to an actor that will not handle it.
//!
//! # One message at a time
//!
//! The recovery runs inside `ctx.wait`, and [`Observe`] answers with an [`AtomicResponse`]
//! (also `ctx.wait`): while either is in flight actix polls neither the mailbox nor the timers,
//! so messages that arrive meanwhile queue up and are then handled in the order they arrived.
//! An observation is prepared, submitted, awaited until durable, committed to the core and
//! (when due) snapshotted before the next message is looked at.
//!
//! # Supervision: restart from the log
//!
//! After an append error the in-memory core may disagree with the journal (another writer
//! moved the stream, or the writer failed); the actor therefore replies with the error and
//! stops. It is not restarted in place: the next message for the mailbox makes the registry
//! start a new actor, which recovers from the snapshot and the stream, exactly the path of a
//! first activation. Messages queued behind the failed one were never handled (a stopping
//! actix actor handles no more messages); the registry sends them again to the new actor.
//! A failed append writes nothing, so nothing is lost or doubled.
//!
//! A message the sender sees answered with `MailboxError::Closed` was never handled: the
//! actor stops itself only when no message is in flight, so only the shutdown of the actix
//! System can drop an observation half-way (its append, if submitted, still completes; the
//! next activation reads it from the log).

use crate::registry::{Env, Gone, Registry};
use actix::fut::{ActorFutureExt, WrapFuture, ready};
use actix::{Actor, ActorContext, Addr, AsyncContext, AtomicResponse, Context, Handler, Message};
use ledgersync_domain::{MailboxId, MailboxState, StreamId, Timestamp};
use ledgersync_engine::IdGen;
use ledgersync_engine::engine::Appended;
use ledgersync_engine::mailbox::{Incoming, MailboxCore};
use ledgersync_journal::{AppendError, Journal, Snapshot};
use std::sync::{Arc, PoisonError};

/// Why a message to a mailbox actor was not handled, or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActorError {
    /// The mailbox could not be rebuilt from the journal. Nothing was appended.
    #[error(
        "could not recover mailbox `{mailbox}` from the journal: {reason}; nothing was \
         recorded for this message; the next message retries the recovery — check that the \
         journal's data directory is readable"
    )]
    Recovery {
        /// The mailbox.
        mailbox: MailboxId,
        /// What failed.
        reason: String,
    },
    /// The append of the observation and its decisions failed (for a conflict: another
    /// writer moved the stream). Nothing of the observation was written; the actor stopped,
    /// and the next message re-activates the mailbox from its log.
    #[error(
        "could not record the observation for mailbox `{mailbox}`: {source}; nothing was \
         written and the mailbox restarts from its log: send the observation again"
    )]
    Append {
        /// The mailbox.
        mailbox: MailboxId,
        /// The journal's answer.
        #[source]
        source: AppendError,
    },
    /// The actor was stopping (passivated or failed) when the message reached it; the
    /// message was not handled. The registry sends it again to a new activation, so callers
    /// of the registry see this only inside [`ActorError::Unavailable`].
    #[error("the actor of mailbox `{mailbox}` was stopping; the message was not handled")]
    Retired {
        /// The mailbox.
        mailbox: MailboxId,
    },
    /// The mailbox's actor stopped again and again before it could take the message.
    #[error(
        "mailbox `{mailbox}`'s actor stopped {attempts} times before it could take the \
         message; nothing was recorded for it; look for the errors of the earlier messages \
         to this mailbox, then send it again"
    )]
    Unavailable {
        /// The mailbox.
        mailbox: MailboxId,
        /// How many activations were tried.
        attempts: u32,
    },
}

impl ActorError {
    /// True for an append refused because the stream head moved (another writer).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            ActorError::Append {
                source: AppendError::Conflict { .. },
                ..
            }
        )
    }
}

/// Observations for the mailbox (already routed to it), in order: each is decided on the state
/// the ones before it left, all are appended in **one** append, then the state keeps them.
/// Answers the decisions appended, per observation. A failed append fails them all (the actor
/// then restarts from its log).
#[derive(Debug)]
pub struct Observe {
    /// The observations and their identities.
    pub incomings: Vec<Incoming>,
}

impl Message for Observe {
    type Result = Result<Vec<Vec<Appended>>, ActorError>;
}

/// Asks for the mailbox's state and stream head as the actor holds them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inspect;

/// A mailbox as its actor holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct MailboxView {
    /// The state, shared with the actor (no copy: the actor's next change copies it if this
    /// view is still held).
    pub state: std::sync::Arc<MailboxState>,
    /// The last seq of the stream the state includes.
    pub head: u64,
    /// The engine clock when the view was taken: what "due" means for a pending intent's
    /// retry time ([`PendingIntent::due`](ledgersync_domain::state::PendingIntent::due)).
    pub now: ledgersync_domain::Timestamp,
}

impl Message for Inspect {
    type Result = Result<MailboxView, ActorError>;
}

/// Passivates the actor if it has been idle for longer than the configured idle time;
/// answers whether it did.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckIdle;

impl Message for CheckIdle {
    type Result = bool;
}

enum Phase {
    Recovering,
    Active(Box<MailboxCore>),
    /// An observation is in flight; its future holds the core.
    Busy,
    Failed(String),
    Stopped,
}

/// The actor of one mailbox. Started only by the [`Registry`](crate::Registry).
pub struct MailboxActor {
    id: MailboxId,
    stream: StreamId,
    generation: u64,
    env: Arc<Env>,
    registry: Addr<Registry>,
    phase: Phase,
    last_active: Timestamp,
}

impl MailboxActor {
    pub(crate) fn new(
        id: MailboxId,
        generation: u64,
        env: Arc<Env>,
        registry: Addr<Registry>,
    ) -> Self {
        let last_active = env.clock.now();
        Self {
            stream: StreamId::mailbox(&id),
            id,
            generation,
            env,
            registry,
            phase: Phase::Recovering,
            last_active,
        }
    }

    /// Tells the registry this activation is over, so that the next message for the mailbox
    /// starts a new one.
    fn leave(&mut self) {
        self.registry.do_send(Gone {
            mailbox: self.id.clone(),
            generation: self.generation,
        });
    }

    fn retired(&self) -> ActorError {
        ActorError::Retired {
            mailbox: self.id.clone(),
        }
    }

    fn recovery_error(&self, reason: &str) -> ActorError {
        ActorError::Recovery {
            mailbox: self.id.clone(),
            reason: reason.to_owned(),
        }
    }
}

impl Actor for MailboxActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let env = self.env.clone();
        let id = self.id.clone();
        let recovery = async move {
            // Closed never: the registry owns the semaphore and never closes it.
            let _permit = env.recoveries.clone().acquire_owned().await.ok();
            env.stats.recovery_started();
            let journal = env.journal.clone();
            let result =
                tokio::task::spawn_blocking(move || MailboxCore::recover(journal.as_ref(), id))
                    .await;
            env.stats.recovery_finished();
            match result {
                Ok(Ok(core)) => Ok(core),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("the recovery task failed: {e}")),
            }
        };
        ctx.wait(
            recovery
                .into_actor(self)
                .map(|result, act, _ctx| match result {
                    Ok(core) => {
                        tracing::debug!(mailbox = %act.id, head = core.head(), "mailbox recovered");
                        act.last_active = act.env.clock.now();
                        act.phase = Phase::Active(Box::new(core));
                    }
                    Err(reason) => {
                        tracing::warn!(mailbox = %act.id, error = %reason, "mailbox recovery failed");
                        act.env.stats.failed();
                        act.phase = Phase::Failed(reason);
                        // The registry forgets this activation; the messages already queued
                        // are answered with the error, and the next idle check stops it.
                        act.leave();
                    }
                }),
        );
        ctx.run_interval(self.env.idle_check_every, |act, ctx| {
            act.check_idle(ctx);
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.env.stats.actor_stopped();
    }
}

impl MailboxActor {
    fn check_idle(&mut self, ctx: &mut Context<Self>) -> bool {
        match self.phase {
            Phase::Active(_) => {}
            Phase::Failed(_) => {
                // The registry forgot this activation when the recovery failed; the messages
                // queued then have been answered with the error.
                self.phase = Phase::Stopped;
                ctx.stop();
                return false;
            }
            Phase::Recovering | Phase::Busy | Phase::Stopped => return false,
        }
        let idle_ms = self.env.clock.now().0.saturating_sub(self.last_active.0);
        if u128::try_from(idle_ms).unwrap_or(0) < self.env.idle_after.as_millis() {
            return false;
        }
        tracing::debug!(mailbox = %self.id, idle_ms, "mailbox passivated");
        self.env.stats.passivated();
        self.phase = Phase::Stopped;
        self.leave();
        ctx.stop();
        true
    }

    /// After the append of observations staged on `core`: keep the core, or give up the
    /// activation (the core may disagree with the journal).
    fn after_append(
        &mut self,
        core: Box<MailboxCore>,
        appended: Result<ledgersync_journal::Appended, AppendError>,
        decisions: Vec<Vec<Appended>>,
    ) -> Result<Vec<Vec<Appended>>, ActorError> {
        match appended {
            Ok(_) => {
                self.last_active = self.env.clock.now();
                self.phase = Phase::Active(core);
                Ok(decisions)
            }
            Err(source) => {
                tracing::warn!(mailbox = %self.id, error = %source, "append failed; the mailbox restarts from its log");
                self.env.stats.failed();
                self.phase = Phase::Stopped;
                self.leave();
                Err(ActorError::Append {
                    mailbox: self.id.clone(),
                    source,
                })
            }
        }
    }
}

/// Saves a snapshot on the blocking pool; a failure costs only a longer refold at the next
/// activation, so it is logged and never fails the message.
async fn save_snapshot(journal: Arc<dyn Journal>, stream: StreamId, snapshot: Snapshot) {
    let seq = snapshot.seq;
    let shown = stream.clone();
    let saved = tokio::task::spawn_blocking(move || journal.save_snapshot(&stream, snapshot)).await;
    match saved {
        Ok(Ok(())) => tracing::debug!(stream = %shown, seq, "mailbox snapshot saved"),
        Ok(Err(e)) => {
            tracing::warn!(stream = %shown, seq, error = %e, "mailbox snapshot not saved; the next activation refolds the stream")
        }
        Err(e) => {
            tracing::warn!(stream = %shown, seq, error = %e, "mailbox snapshot task failed; the next activation refolds the stream")
        }
    }
}

impl Handler<Observe> for MailboxActor {
    type Result = AtomicResponse<Self, Result<Vec<Vec<Appended>>, ActorError>>;

    fn handle(&mut self, msg: Observe, _ctx: &mut Context<Self>) -> Self::Result {
        // The core travels with the message until the append is answered: nothing else can
        // use it meanwhile (and nothing else runs: this is an atomic response).
        let mut core = match std::mem::replace(&mut self.phase, Phase::Busy) {
            Phase::Active(core) => core,
            other => {
                let err = match &other {
                    Phase::Failed(reason) => self.recovery_error(reason),
                    _ => self.retired(),
                };
                self.phase = other;
                return AtomicResponse::new(Box::pin(ready(Err(err))));
            }
        };
        let now = self.env.clock.now();
        // Each observation is prepared on the state the ones before it left, then staged on
        // the core: a failed append drops the core.
        let mut expected = None;
        let mut events = Vec::new();
        let mut decisions = Vec::with_capacity(msg.incomings.len());
        let mut snapshot = None;
        {
            let settings = self
                .env
                .settings
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for incoming in msg.incomings {
                // A CRM command's result whose command another result settled first is
                // acknowledged and recorded nowhere (the domain's once-only rule).
                // An observation delivered again (same event id: a bus redelivery, a publish
                // retried) is recorded once.
                if !core.admits(&incoming.event) || core.already_observed(&incoming.id) {
                    decisions.push(Vec::new());
                    continue;
                }
                let (batch, prepared) = core.prepare(incoming, &settings, now, &IdGen);
                expected.get_or_insert(batch.expected);
                events.extend(batch.events);
                let (appended, due) = core.commit(prepared, self.env.snapshot_every);
                decisions.push(appended);
                if due.is_some() {
                    snapshot = due;
                }
            }
        }
        let Some(expected) = expected else {
            self.phase = Phase::Active(core);
            return AtomicResponse::new(Box::pin(ready(Ok(decisions))));
        };
        let ticket = self.env.journal.submit(&self.stream, expected, events);
        let fut = ticket.into_actor(self).then(move |appended, act, _ctx| {
            let saved = appended.is_ok();
            let reply = act.after_append(core, appended, decisions);
            let journal = act.env.journal.clone();
            let stream = act.stream.clone();
            async move {
                if let (true, Some(snapshot)) = (saved, snapshot) {
                    save_snapshot(journal, stream, snapshot).await;
                }
                reply
            }
            .into_actor(act)
            .map(|reply, act, ctx| {
                // Stopped only once the reply is computed; actix sends it right after this
                // closure, in the same poll, before the stopping actor is torn down.
                if matches!(act.phase, Phase::Stopped) {
                    ctx.stop();
                }
                reply
            })
        });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<Inspect> for MailboxActor {
    type Result = Result<MailboxView, ActorError>;

    fn handle(&mut self, _msg: Inspect, _ctx: &mut Context<Self>) -> Self::Result {
        match &self.phase {
            Phase::Active(core) => Ok(MailboxView {
                state: core.shared_state(),
                head: core.head(),
                now: self.env.clock.now(),
            }),
            Phase::Failed(reason) => Err(self.recovery_error(reason)),
            Phase::Recovering | Phase::Busy | Phase::Stopped => Err(self.retired()),
        }
    }
}

impl Handler<CheckIdle> for MailboxActor {
    type Result = bool;

    fn handle(&mut self, _msg: CheckIdle, ctx: &mut Context<Self>) -> bool {
        self.check_idle(ctx)
    }
}
