//! The registry: finds a mailbox's actor by mailbox id, starting it on demand (virtual
//! actors), forgets it when it passivates or fails, bounds the recoveries that run at once,
//! and counts what happens for tests and benchmarks.
//!
//! The registry is itself an actor: it owns the map from mailbox id to actor address and
//! changes it only in its handlers, one message at a time. `Addr<Registry>` is `Send`, so bus
//! consumers and HTTP handlers on other threads reach mailboxes through it. It forwards a
//! message to the mailbox actor inside its handler (so messages keep the order in which the
//! registry received them) and awaits the answer outside it (so one slow mailbox does not hold
//! up the others).
//!
//! A message that reaches an actor which stopped before handling it (passivated between the
//! lookup and the delivery, or stopped by an append error of an earlier message) was not
//! handled; the registry sends it again, which starts a new activation (at most
//! [`MAX_ATTEMPTS`] times). Several re-sent messages may reach the new activation in another
//! order than they were first sent; a caller that awaits each answer before sending the next
//! keeps its order.
//!
//! Mailbox failures (R14): when the registry is given a recipient with [`ForwardFailures`]
//! (the organization actor, by whoever builds the runtime), every observation whose recorded
//! decisions show a failure of the mailbox (`alerting::failed_workload`: a workload-level
//! `error_classified`, or a `workload_disabled` for an error) is reported to it as a
//! [`MailboxFailed`], without waiting: the organization actor may itself be waiting for this
//! mailbox's answer while it routes a CRM change. Without a recipient nothing is forwarded.

use crate::actor::{ActorError, CheckIdle, Inspect, MailboxActor, MailboxView, Observe};
use actix::Recipient;
use actix::{
    Actor, ActorContext, Addr, Arbiter, AsyncContext, Context, Handler, MailboxError, Message,
    ResponseFuture,
};
use ledgersync_domain::alerting::failed_workload;
use ledgersync_domain::event::Workload;
use ledgersync_domain::{EventId, MailboxId, OrgSettings, Timestamp};
use ledgersync_engine::Clock;
use ledgersync_engine::engine::{Appended, DEFAULT_SNAPSHOT_EVERY};
use ledgersync_engine::mailbox::Incoming;
use ledgersync_journal::Journal;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How many activations a message is offered to before [`ActorError::Unavailable`].
pub const MAX_ATTEMPTS: u32 = 5;

/// Messages an actor's queue holds before senders wait: effectively unbounded, because a
/// sender that waits for room would lose its place in the order. Back-pressure belongs to
/// the bus in front of the registry.
const QUEUE_CAPACITY: usize = 1 << 24;

/// The organization settings in force, shared by the registry with every mailbox actor. A
/// settings change is written here once it is durable in the organization stream; an
/// observation is decided with the settings it finds when its turn comes.
pub type SharedSettings = Arc<RwLock<OrgSettings>>;

/// The registry's settings.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// An actor with no message for this long (on the engine's clock) is passivated.
    /// Default 120 s.
    pub idle_after: Duration,
    /// How often each actor checks whether it is idle (on the runtime's timer). Default 10 s.
    pub idle_check_every: Duration,
    /// At most this many recoveries run at the same time. Default 50.
    pub max_recoveries: usize,
    /// A mailbox snapshot is saved every this many events. Default
    /// [`DEFAULT_SNAPSHOT_EVERY`].
    pub snapshot_every: u64,
    /// Mailbox actors are spread over this many arbiters (threads), a mailbox always on the
    /// same one (by a hash of its id), so that `decide` runs in parallel across mailboxes.
    /// 0, the default, runs them on the registry's own arbiter.
    pub arbiters: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            idle_after: Duration::from_secs(120),
            idle_check_every: Duration::from_secs(10),
            max_recoveries: 50,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            arbiters: 0,
        }
    }
}

/// Counters of the registry and its actors. Read them with [`RuntimeStats::snapshot`].
#[derive(Debug, Default)]
pub struct RuntimeStats {
    active: AtomicU64,
    activations: AtomicU64,
    passivations: AtomicU64,
    failures: AtomicU64,
    recoveries_in_flight: AtomicU64,
    recoveries_peak: AtomicU64,
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Actors alive now (recovering, active, or stopping).
    pub active: u64,
    /// Actors started since the registry started.
    pub activations: u64,
    /// Actors stopped because they were idle.
    pub passivations: u64,
    /// Activations ended by an error (a failed recovery or a failed append).
    pub failures: u64,
    /// Recoveries running now.
    pub recoveries_in_flight: u64,
    /// The most recoveries that ran at the same time.
    pub recoveries_peak: u64,
}

impl RuntimeStats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            active: self.active.load(Ordering::SeqCst),
            activations: self.activations.load(Ordering::SeqCst),
            passivations: self.passivations.load(Ordering::SeqCst),
            failures: self.failures.load(Ordering::SeqCst),
            recoveries_in_flight: self.recoveries_in_flight.load(Ordering::SeqCst),
            recoveries_peak: self.recoveries_peak.load(Ordering::SeqCst),
        }
    }

    fn activated(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.activations.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn actor_stopped(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn passivated(&self) {
        self.passivations.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn recovery_started(&self) {
        let now = self.recoveries_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.recoveries_peak.fetch_max(now, Ordering::SeqCst);
    }

    pub(crate) fn recovery_finished(&self) {
        self.recoveries_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What every mailbox actor shares.
pub(crate) struct Env {
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: SharedSettings,
    pub(crate) snapshot_every: u64,
    pub(crate) idle_after: Duration,
    pub(crate) idle_check_every: Duration,
    pub(crate) recoveries: Arc<Semaphore>,
    pub(crate) stats: Arc<RuntimeStats>,
}

struct Entry {
    addr: Addr<MailboxActor>,
    generation: u64,
}

/// The registry of mailbox actors. Create it with [`Registry::new`], keep
/// [`Registry::stats`], then `start()` it inside an actix `System`.
pub struct Registry {
    env: Arc<Env>,
    actors: HashMap<MailboxId, Entry>,
    next_generation: u64,
    arbiter_count: usize,
    arbiters: Vec<Arbiter>,
    /// Where mailbox failures are reported (R14), once set.
    failures: Option<Recipient<MailboxFailed>>,
}

impl Registry {
    /// A registry over `journal`; time comes from `clock`, the settings in force from
    /// `settings`.
    pub fn new(
        journal: Arc<dyn Journal>,
        clock: Arc<dyn Clock>,
        settings: SharedSettings,
        config: RegistryConfig,
    ) -> Self {
        Self {
            env: Arc::new(Env {
                journal,
                clock,
                settings,
                snapshot_every: config.snapshot_every.max(1),
                idle_after: config.idle_after,
                idle_check_every: config.idle_check_every.max(Duration::from_millis(1)),
                recoveries: Arc::new(Semaphore::new(config.max_recoveries.max(1))),
                stats: Arc::new(RuntimeStats::default()),
            }),
            actors: HashMap::new(),
            next_generation: 0,
            arbiter_count: config.arbiters,
            arbiters: Vec::new(),
            failures: None,
        }
    }

    /// Reports mailbox failures to `recipient` (see the module doc); the same as sending
    /// [`ForwardFailures`] once started.
    pub fn with_failures_to(mut self, recipient: Recipient<MailboxFailed>) -> Self {
        self.failures = Some(recipient);
        self
    }

    /// The counters (shared: they keep counting after the registry is started).
    pub fn stats(&self) -> Arc<RuntimeStats> {
        self.env.stats.clone()
    }

    /// The live actor of `mailbox`, started (and so recovering) if there is none.
    fn activate(&mut self, mailbox: &MailboxId, ctx: &mut Context<Self>) -> Addr<MailboxActor> {
        if let Some(entry) = self.actors.get(mailbox)
            && entry.addr.connected()
        {
            return entry.addr.clone();
        }
        self.next_generation += 1;
        let generation = self.next_generation;
        let actor = MailboxActor::new(mailbox.clone(), generation, self.env.clone(), ctx.address());
        let addr = self.spawn(mailbox, actor);
        self.env.stats.activated();
        self.actors.insert(
            mailbox.clone(),
            Entry {
                addr: addr.clone(),
                generation,
            },
        );
        addr
    }
}

impl Registry {
    /// Starts `actor` on its arbiter. The address exists (with its large queue) before the
    /// actor runs, so messages sent at once keep their order even on another thread.
    fn spawn(&self, mailbox: &MailboxId, actor: MailboxActor) -> Addr<MailboxActor> {
        let (tx, rx) = actix::dev::channel::channel(QUEUE_CAPACITY);
        let run = move || {
            let ctx = Context::with_receiver(rx);
            actix::spawn(ctx.into_future(actor));
        };
        if self.arbiters.is_empty() {
            run();
        } else {
            let mut hasher = DefaultHasher::new();
            mailbox.hash(&mut hasher);
            let at = (hasher.finish() % self.arbiters.len() as u64) as usize;
            if !self.arbiters[at].spawn_fn(run) {
                // Its queue is dropped: senders see `Closed`, the registry retries, then gives
                // up with `Unavailable`.
                tracing::error!(mailbox = %mailbox, arbiter = at, "the arbiter of a mailbox actor has stopped");
            }
        }
        Addr::new(tx)
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(QUEUE_CAPACITY);
        self.arbiters = (0..self.arbiter_count).map(|_| Arbiter::new()).collect();
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

/// Gives an observation to its mailbox, activating the mailbox's actor if needed; answers the
/// decisions appended.
#[derive(Debug)]
pub struct ObserveMailbox {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// The observation.
    pub incoming: Incoming,
    attempt: u32,
}

impl ObserveMailbox {
    /// The observation `incoming` for `mailbox`.
    pub fn new(mailbox: MailboxId, incoming: Incoming) -> Self {
        Self {
            mailbox,
            incoming,
            attempt: 1,
        }
    }
}

impl Message for ObserveMailbox {
    type Result = Result<Vec<Appended>, ActorError>;
}

/// Gives several observations to one mailbox, in order, recorded in one append (see
/// [`Observe`]), activating the mailbox's actor if needed; answers the decisions appended per
/// observation.
#[derive(Debug)]
pub struct ObserveMailboxAll {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// The observations, in order.
    pub incomings: Vec<Incoming>,
    attempt: u32,
}

impl ObserveMailboxAll {
    /// The observations `incomings` for `mailbox`.
    pub fn new(mailbox: MailboxId, incomings: Vec<Incoming>) -> Self {
        Self {
            mailbox,
            incomings,
            attempt: 1,
        }
    }
}

impl Message for ObserveMailboxAll {
    type Result = Result<Vec<Vec<Appended>>, ActorError>;
}

/// A mailbox's state and stream head, activating its actor if needed.
#[derive(Debug, Clone)]
pub struct InspectMailbox {
    /// The mailbox.
    pub mailbox: MailboxId,
    attempt: u32,
}

impl InspectMailbox {
    /// Asks for `mailbox`.
    pub fn new(mailbox: MailboxId) -> Self {
        Self {
            mailbox,
            attempt: 1,
        }
    }
}

impl Message for InspectMailbox {
    type Result = Result<MailboxView, ActorError>;
}

/// A mailbox failed (R14): its decisions for one observation showed a failure of `workload`.
/// Sent by the registry to the recipient of [`ForwardFailures`].
#[derive(Debug, Clone)]
pub struct MailboxFailed {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// The workload that failed.
    pub workload: Workload,
    /// The decision that shows the failure (the cause of what the recipient records).
    pub decision: EventId,
    /// When the registry saw it (the engine clock).
    pub at: Timestamp,
}

impl Message for MailboxFailed {
    type Result = ();
}

/// From now on, mailbox failures are reported to this recipient (the organization actor).
pub struct ForwardFailures(pub Recipient<MailboxFailed>);

impl Message for ForwardFailures {
    type Result = ();
}

/// Runs the idle check of every actor now (each actor also runs it on its own timer); answers
/// how many were passivated.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassivateIdle;

impl Message for PassivateIdle {
    type Result = usize;
}

/// Stops the registry and the arbiters it created. Actors on the registry's own arbiter stop
/// at their next idle check; actors on the registry's arbiters stop with them (an observation
/// in flight there is dropped; its append, if submitted, still completes).
#[derive(Debug, Clone, Copy, Default)]
pub struct Shutdown;

impl Message for Shutdown {
    type Result = ();
}

/// Sent by an actor whose activation is over (passivated, stopped on an error, or failed to
/// recover).
#[derive(Debug)]
pub(crate) struct Gone {
    pub(crate) mailbox: MailboxId,
    pub(crate) generation: u64,
}

impl Message for Gone {
    type Result = ();
}

fn not_handled<T>(reply: &Result<Result<T, ActorError>, MailboxError>) -> bool {
    matches!(
        reply,
        Err(MailboxError::Closed) | Ok(Err(ActorError::Retired { .. }))
    )
}

fn unavailable(mailbox: MailboxId, attempts: u32) -> ActorError {
    ActorError::Unavailable { mailbox, attempts }
}

impl Handler<ObserveMailboxAll> for Registry {
    type Result = ResponseFuture<Result<Vec<Vec<Appended>>, ActorError>>;

    fn handle(&mut self, msg: ObserveMailboxAll, ctx: &mut Context<Self>) -> Self::Result {
        let actor = self.activate(&msg.mailbox, ctx);
        let request = actor.send(Observe {
            incomings: msg.incomings.clone(),
        });
        let registry = ctx.address();
        let failures = self.failures.clone();
        let clock = self.env.clock.clone();
        Box::pin(async move {
            let reply = request.await;
            if !not_handled(&reply) {
                if let (Some(to), Ok(Ok(decided))) = (&failures, &reply) {
                    for decisions in decided {
                        report_failure(to, &msg.mailbox, decisions, clock.now());
                    }
                }
                return reply.unwrap_or_else(|_| Err(unavailable(msg.mailbox, msg.attempt)));
            }
            if msg.attempt >= MAX_ATTEMPTS {
                return Err(unavailable(msg.mailbox, msg.attempt));
            }
            let (mailbox, attempts) = (msg.mailbox.clone(), msg.attempt + 1);
            let again = ObserveMailboxAll {
                attempt: attempts,
                ..msg
            };
            registry
                .send(again)
                .await
                .unwrap_or_else(|_| Err(unavailable(mailbox, attempts)))
        })
    }
}

impl Handler<ObserveMailbox> for Registry {
    type Result = ResponseFuture<Result<Vec<Appended>, ActorError>>;

    fn handle(&mut self, msg: ObserveMailbox, ctx: &mut Context<Self>) -> Self::Result {
        let all = ObserveMailboxAll {
            mailbox: msg.mailbox,
            incomings: vec![msg.incoming],
            attempt: msg.attempt,
        };
        let reply = Handler::<ObserveMailboxAll>::handle(self, all, ctx);
        Box::pin(async move { reply.await.map(|mut d| d.pop().unwrap_or_default()) })
    }
}

/// Reports the failure the decisions of one observation show, if any, without waiting.
fn report_failure(
    to: &Recipient<MailboxFailed>,
    mailbox: &MailboxId,
    decisions: &[Appended],
    at: Timestamp,
) {
    let Some(workload) = failed_workload(decisions.iter().map(|a| &a.decision.event)) else {
        return;
    };
    let decision = decisions
        .iter()
        .find(|a| failed_workload([&a.decision.event]).is_some())
        .map(|a| a.id)
        .expect("a failure was found among the decisions");
    to.do_send(MailboxFailed {
        mailbox: mailbox.clone(),
        workload,
        decision,
        at,
    });
}

impl Handler<ForwardFailures> for Registry {
    type Result = ();

    fn handle(&mut self, msg: ForwardFailures, _ctx: &mut Context<Self>) {
        self.failures = Some(msg.0);
    }
}

impl Handler<InspectMailbox> for Registry {
    type Result = ResponseFuture<Result<MailboxView, ActorError>>;

    fn handle(&mut self, msg: InspectMailbox, ctx: &mut Context<Self>) -> Self::Result {
        let actor = self.activate(&msg.mailbox, ctx);
        let request = actor.send(Inspect);
        let registry = ctx.address();
        Box::pin(async move {
            let reply = request.await;
            if !not_handled(&reply) {
                return reply.unwrap_or_else(|_| Err(unavailable(msg.mailbox, msg.attempt)));
            }
            if msg.attempt >= MAX_ATTEMPTS {
                return Err(unavailable(msg.mailbox, msg.attempt));
            }
            let again = InspectMailbox {
                mailbox: msg.mailbox.clone(),
                attempt: msg.attempt + 1,
            };
            registry
                .send(again)
                .await
                .unwrap_or_else(|_| Err(unavailable(msg.mailbox, msg.attempt + 1)))
        })
    }
}

impl Handler<PassivateIdle> for Registry {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _msg: PassivateIdle, _ctx: &mut Context<Self>) -> Self::Result {
        let requests: Vec<_> = self
            .actors
            .values()
            .map(|entry| entry.addr.send(CheckIdle))
            .collect();
        Box::pin(async move {
            let mut passivated = 0;
            for request in requests {
                if let Ok(true) = request.await {
                    passivated += 1;
                }
            }
            passivated
        })
    }
}

impl Handler<Gone> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Gone, _ctx: &mut Context<Self>) {
        if self
            .actors
            .get(&msg.mailbox)
            .is_some_and(|entry| entry.generation == msg.generation)
        {
            self.actors.remove(&msg.mailbox);
        }
    }
}

impl Handler<Shutdown> for Registry {
    type Result = ();

    fn handle(&mut self, _msg: Shutdown, ctx: &mut Context<Self>) {
        self.actors.clear();
        ctx.stop();
    }
}
