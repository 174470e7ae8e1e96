//! The whole live service of one organization on one journal, as `ledgersync serve` and
//! `ledgersync demo` run it: the registry of mailbox actors, the organization actor, a
//! connector [`Driver`] per configured mailbox run by the [`Scheduler`] under the connection
//! [`Throttle`], and the projection kept current with the journal.
//!
//! ```text
//!  crm(event) ──► OrgActor ──route──► Registry ──► MailboxActor ──► journal
//!                    │                    ▲                            │
//!                    └─ Execute(mailboxes)│                            ▼
//!                         ▼               │                  projection follower
//!                     Scheduler ──► Driver ──► Connector (vdir / Maildir)
//! ```
//!
//! Start it with [`Service::start`] inside an actix `System`; stop it with
//! [`Service::stop`], which lets the scheduler finish the run in progress (every observation
//! it sent durable and answered), waits for CRM changes in flight, catches the projection up
//! a last time and stops the actors. Nothing here decides: every decision is a mailbox's or the
//! organization's, through the same `MailboxCore` as the synchronous engine.
//!
//! Drivers: one per configured mailbox that the organization has registered (a mailbox
//! registered later gets its driver once the change registering it is recorded). A driver is
//! kept whatever the mailbox's state: whether it runs is the decided state of its ACT workload
//! (enabled, next run), read at every tick, so enabling and disabling a mailbox need no
//! bookkeeping here.

use crate::driver::{Driver, DriverError};
use crate::org::{
    BatchRouted, CheckChanges, CrmChange, CrmChanges, InspectDirectory, InspectOrg, OrgActor,
    OrgDirectory, OrgError, OrgView, Routed,
};
use crate::registry::{ForwardFailures, Registry, RegistryConfig, SharedSettings, Shutdown};
use crate::scheduler::{Scheduler, SchedulerConfig, Signal, TickReport};
use crate::sink::Sink;
use crate::throttle::{ConnectionLimit, Credential, Throttle};
use actix::{Actor, Addr, MailboxError};
use ledgersync_connectors::ConnectorConfig;
use ledgersync_domain::event::Workload;
use ledgersync_domain::{Event, MailboxId, OrgId, OrgSettings};
use ledgersync_engine::ingress::{Change, LineError};
use ledgersync_engine::org::ROUTING_WINDOW;
use ledgersync_engine::projection::{Projection, ProjectionError};
use ledgersync_engine::{Clock, IdGen};
use ledgersync_journal::Journal;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

mod bus;
mod commands;
mod dispatch;

pub use bus::{BusConfig, LineOutcome};

/// One mailbox's connector, as configured.
#[derive(Debug, Clone)]
pub struct MailboxEndpoint {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// Its connector: which kind, and where its collections are (an empty owner is the
    /// mailbox's registered address).
    pub connector: ConnectorConfig,
    /// The account its connections count against (R15: per credential of the profile).
    pub account: String,
    /// Push: watch the collections for changes made by other programs (`watch.rs`), or keep
    /// an IMAP IDLE session on the INBOX (`idle.rs`).
    pub watch: bool,
    /// Begin the first listing as soon as the driver exists, while the service finishes
    /// starting ([`crate::Driver::begin_listing`]): for a run that syncs once and stops.
    pub list_at_start: bool,
}

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The organization.
    pub org: OrgId,
    /// The data directory: connector cursors go to `<dir>/cursors`, the projection is
    /// `<dir>/projections.redb`.
    pub data_dir: PathBuf,
    /// The mailbox actors.
    pub registry: RegistryConfig,
    /// The scheduler.
    pub scheduler: SchedulerConfig,
    /// The configured mailboxes.
    pub mailboxes: Vec<MailboxEndpoint>,
    /// The projection catches up at least this often (and after every scheduler run and CRM
    /// change).
    pub projection_every: Duration,
    /// A watched collection must be quiet this long before its change is pushed.
    pub push_quiet: Duration,
}

/// Why the service could not start or a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The organization actor refused or failed.
    #[error(transparent)]
    Org(#[from] OrgError),
    /// An actor did not answer (stopped).
    #[error("the {what} did not answer: {source}")]
    Unavailable {
        /// Which actor.
        what: &'static str,
        /// Why.
        source: MailboxError,
    },
    /// A driver could not be created.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The projection could not be opened or caught up.
    #[error("the projection: {0}")]
    Projection(#[from] ProjectionError),
    /// The service is stopping and takes no new change.
    #[error("the service is stopping; the change was not recorded")]
    Stopping,
    /// A mailbox actor could not recover or record (nothing was recorded; send it again).
    #[error(transparent)]
    Mailbox(#[from] crate::actor::ActorError),
    /// A CRM command's result contradicts its command (the field at fault is named); nothing
    /// was recorded.
    #[error(transparent)]
    Refused(#[from] ledgersync_engine::EngineError),
}

/// The live service (see the module doc).
pub struct Service {
    journal: Arc<dyn Journal>,
    org: Addr<OrgActor>,
    registry: Addr<Registry>,
    signals: mpsc::UnboundedSender<Signal>,
    projection: Arc<Mutex<Projection>>,
    follow: Arc<Notify>,
    stop: watch::Sender<bool>,
    /// Held (read) by every CRM change in flight; taken (write) by `stop`.
    gate: tokio::sync::RwLock<bool>,
    drivers: Mutex<DriverFactory>,
    /// The file-system watchers of the collections (push); dropped by `stop`.
    watchers: Mutex<Option<crate::watch::Watchers>>,
    /// The IMAP IDLE sessions (push of the incoming email); dropped by `stop`.
    idlers: Mutex<Option<crate::idle::Idlers>>,
    /// The scheduler, the tick reporter and the projection follower; taken by `stop`.
    tasks: Mutex<Option<[JoinHandle<()>; 3]>>,
    /// The bus the service consumes from, when it has one (`attach_bus`); closed by `stop`.
    bus: Mutex<Option<bus::Attached>>,
    /// The mailboxes the organization has registered, for the partition consumers.
    known: crate::org::KnownMailboxes,
    /// With a bus: mailboxes reached by something, for the CRM command dispatcher.
    touched: std::sync::OnceLock<mpsc::UnboundedSender<MailboxId>>,
    /// The engine clock (retry times of CRM commands).
    clock: Arc<dyn Clock>,
}

/// What makes drivers: the configuration, and which mailboxes already have one.
struct DriverFactory {
    endpoints: Vec<MailboxEndpoint>,
    /// The drivers made, by mailbox and workload.
    started: BTreeSet<(MailboxId, Workload)>,
    throttle: Arc<Throttle>,
    cursors: PathBuf,
    sink: Sink,
}

impl Service {
    /// Starts everything (inside an actix `System`): the organization is recovered from its
    /// stream before this returns, drivers are created for the configured mailboxes it knows,
    /// the projection is opened and caught up. `reports` receives every scheduler tick.
    pub async fn start(
        journal: Arc<dyn Journal>,
        clock: Arc<dyn Clock>,
        config: ServiceConfig,
        reports: Option<mpsc::UnboundedSender<TickReport>>,
    ) -> Result<Self, ServiceError> {
        Self::start_with(journal, clock, config, reports, Sink::Direct).await
    }

    /// [`Service::start`], with the drivers' observations going to `sink` (through the bus:
    /// then [`Service::attach_bus`] starts the consumers that answer them).
    pub async fn start_with(
        journal: Arc<dyn Journal>,
        clock: Arc<dyn Clock>,
        config: ServiceConfig,
        reports: Option<mpsc::UnboundedSender<TickReport>>,
        sink: Sink,
    ) -> Result<Self, ServiceError> {
        let settings: SharedSettings = Arc::new(RwLock::new(OrgSettings::default()));
        let registry = Registry::new(
            journal.clone(),
            clock.clone(),
            settings.clone(),
            config.registry.clone(),
        )
        .start();
        let org = OrgActor::new(
            config.org.clone(),
            journal.clone(),
            clock.clone(),
            settings,
            registry.clone(),
        );
        let known = org.known_mailboxes();
        let org = org.start();
        // Mailbox failures reach the organization for the R14 profile alert.
        registry
            .send(ForwardFailures(org.clone().recipient()))
            .await
            .map_err(|source| ServiceError::Unavailable {
                what: "registry",
                source,
            })?;
        let view = directory(&org).await?;

        // The drivers first: a listing begun at start overlaps the projection's catch-up.
        let mut drivers = DriverFactory {
            endpoints: config.mailboxes.clone(),
            started: BTreeSet::new(),
            throttle: Arc::new(Throttle::new()),
            cursors: config.data_dir.join("cursors"),
            sink,
        };
        let mut scheduler = Scheduler::new(registry.clone(), clock.clone(), config.scheduler);
        for driver in drivers.new_drivers(&view, &registry, &journal, &org)? {
            scheduler.add(driver);
        }
        let mut projection = Projection::open_in(&config.data_dir)?;
        let journal_for_catch_up = journal.clone();
        let caught = tokio::task::spawn_blocking(move || {
            let done = projection.catch_up(journal_for_catch_up.as_ref());
            (projection, done)
        })
        .await
        .expect("the projection catch-up does not panic");
        let (projection, done) = caught;
        let done = done?;
        tracing::info!(
            checkpoint = done.checkpoint,
            folded = done.events,
            "projection caught up"
        );
        let projection = Arc::new(Mutex::new(projection));

        for endpoint in &config.mailboxes {
            if !view.mailboxes.contains_key(&endpoint.mailbox) {
                tracing::warn!(mailbox = %endpoint.mailbox, "configured mailbox is not registered in the organization yet; it gets its driver once `mailbox_registered` is recorded");
            }
        }

        let follow = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let (tick_tx, mut tick_rx) = mpsc::unbounded_channel::<TickReport>();
        let scheduler = scheduler.with_reports(tick_tx);
        let (signals, signal_rx) = mpsc::unbounded_channel();
        // Intents decided before a stop (or a crash) and not carried out yet are executed now,
        // with their idempotency keys, not at each mailbox's next cycle.
        let _ = signals.send(Signal::Execute(drivers.mailboxes()));
        let scheduler = actix::spawn(run_scheduler(scheduler, signal_rx));
        let watchers = crate::watch::watch(&config.mailboxes, config.push_quiet, signals.clone());
        let idlers = crate::idle::idle(&config.mailboxes, signals.clone());
        let reporter = {
            let follow = follow.clone();
            actix::spawn(async move {
                while let Some(report) = tick_rx.recv().await {
                    log_tick(&report);
                    if let Some(reports) = &reports {
                        let _ = reports.send(report);
                    }
                    follow.notify_one();
                }
            })
        };
        let follower = actix::spawn(follow_journal(
            journal.clone(),
            projection.clone(),
            follow.clone(),
            config.projection_every,
            stopped,
        ));
        tracing::info!(
            organization = %config.org,
            mailboxes = view.mailboxes.len(),
            drivers = drivers.started.len(),
            "service started"
        );
        Ok(Self {
            journal,
            org,
            registry,
            signals,
            projection,
            follow,
            stop,
            gate: tokio::sync::RwLock::new(true),
            drivers: Mutex::new(drivers),
            watchers: Mutex::new(Some(watchers)),
            idlers: Mutex::new(Some(idlers)),
            tasks: Mutex::new(Some([scheduler, reporter, follower])),
            bus: Mutex::new(None),
            known,
            touched: std::sync::OnceLock::new(),
            clock,
        })
    }

    /// Records a CRM-side or administrative change in the organization stream and routes it
    /// (the organization actor, as for a change consumed from the bus); the mailboxes it
    /// reached execute their pending intents at once. A change that registers a configured
    /// mailbox starts its driver. An `Ok` means every event it caused is durable.
    pub async fn crm(&self, event: Event) -> Result<Routed, ServiceError> {
        let mut batch = self.crm_batch(vec![event]).await?;
        match batch.failed {
            Some((_, e)) => Err(e.into()),
            None => Ok(batch.routed.pop().unwrap_or_default()),
        }
    }

    /// Records CRM changes in order, at most `ROUTING_WINDOW` of them in one append of the
    /// organization stream, routed together (see [`crate::org`]): the answer holds one
    /// [`Routed`] per change handled, up to the first that failed. More changes are sent in
    /// several batches, stopping at the first failure.
    pub async fn crm_batch(&self, events: Vec<Event>) -> Result<BatchRouted, ServiceError> {
        let changes = events
            .into_iter()
            .map(|event| CrmChange {
                id: IdGen.next(),
                event,
            })
            .collect();
        self.crm_changes(changes).await
    }

    /// [`Service::crm_batch`] of changes with their ids (a change whose id the organization
    /// recorded lately is answered as already recorded, and recorded nowhere).
    pub async fn crm_changes(&self, changes: Vec<CrmChange>) -> Result<BatchRouted, ServiceError> {
        let open = self.gate.read().await;
        if !*open {
            return Err(ServiceError::Stopping);
        }
        let mut out = BatchRouted::default();
        let mut all = changes.into_iter().peekable();
        while all.peek().is_some() {
            let changes: Vec<CrmChange> = all.by_ref().take(ROUTING_WINDOW).collect();
            // Only an administrative change can register a mailbox or change a profile; row
            // changes do not look at the organization again (it grows with the rows).
            let administrative = changes.iter().any(|c| !is_row_change(&c.event));
            let done = out.routed.len();
            let batch = self
                .org
                .send(CrmChanges { changes })
                .await
                .map_err(|source| ServiceError::Unavailable {
                    what: "organization actor",
                    source,
                })?;
            let mut reached = BTreeSet::new();
            for routed in &batch.routed {
                reached.extend(routed.mailboxes.iter().cloned());
            }
            let redelivered = batch.routed.iter().any(|r| r.already_recorded.is_some());
            out.routed.extend(batch.routed);
            if administrative || redelivered {
                let view = directory(&self.org).await?;
                let new = {
                    let mut drivers = self.drivers.lock().expect("driver factory lock");
                    drivers.new_drivers(&view, &self.registry, &self.journal, &self.org)?
                };
                for driver in new {
                    tracing::info!(mailbox = %driver.mailbox(), "driver started for a newly registered mailbox");
                    let _ = self.signals.send(Signal::Add(Box::new(driver)));
                }
            }
            if let Some(touched) = self.touched.get() {
                for mailbox in &reached {
                    let _ = touched.send(mailbox.clone());
                }
            }
            if !reached.is_empty() {
                let _ = self
                    .signals
                    .send(Signal::Execute(reached.into_iter().collect()));
            }
            self.follow.notify_one();
            if let Some((i, e)) = batch.failed {
                out.failed = Some((done + i, e));
                break;
            }
        }
        drop(open);
        Ok(out)
    }

    /// Waits until the scheduler has handled everything sent to it so far — the pending
    /// intents of the mailboxes earlier changes reached, drivers of newly registered
    /// mailboxes — and run the tick that follows. Outcomes are then durable.
    pub async fn idle(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.signals.send(Signal::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Checks a file of CRM changes (`ingress::parse_changes`) against the organization as
    /// recorded now, without copying it; nothing is recorded. The inner `Err` is the bad lines.
    pub async fn check_changes(
        &self,
        text: String,
        limits: ledgersync_domain::Limits,
    ) -> Result<Result<Vec<Change>, Vec<LineError>>, ServiceError> {
        Ok(self
            .org
            .send(CheckChanges { text, limits })
            .await
            .map_err(|source| ServiceError::Unavailable {
                what: "organization actor",
                source,
            })??)
    }

    /// The organization as recorded now (a copy of its whole state: for inspection, not for
    /// every change).
    pub async fn org(&self) -> Result<OrgView, ServiceError> {
        inspect(&self.org).await
    }

    /// Records a push of `mailbox`'s connector for `workload`: that driver's cycle runs at once
    /// if the workload is enabled.
    pub fn push(&self, mailbox: MailboxId, workload: Workload) {
        let _ = self.signals.send(Signal::Push(mailbox, workload));
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// The projection, kept current (lock it briefly: the follower folds into it).
    pub fn projection(&self) -> &Arc<Mutex<Projection>> {
        &self.projection
    }

    /// Catches the projection up with the journal now and returns its checkpoint.
    pub async fn catch_up(&self) -> Result<u64, ServiceError> {
        catch_up(self.journal.clone(), self.projection.clone()).await
    }

    /// The registry of mailbox actors.
    pub fn registry(&self) -> &Addr<Registry> {
        &self.registry
    }

    /// Stops gracefully: no new CRM change is taken, the changes in flight finish, the
    /// scheduler finishes its run in progress, the projection catches up, the actors stop.
    /// Every observation answered before is durable (answers come after the group commit).
    /// Calling it again does nothing more than the final catch-up.
    pub async fn stop(&self) -> Result<u64, ServiceError> {
        *self.gate.write().await = false;
        drop(self.watchers.lock().expect("watcher lock").take());
        drop(self.idlers.lock().expect("idle lock").take());
        let _ = self.signals.send(Signal::Stop);
        let tasks = self.tasks.lock().expect("task lock").take();
        if let Some([scheduler, reporter, follower]) = tasks {
            if let Err(e) = scheduler.await {
                tracing::error!(error = %e, "the scheduler task ended abnormally");
            }
            // The drivers are done (their observations answered): the consumers and the CRM
            // command dispatcher can stop; what the consumers hold unsettled goes back to the
            // broker.
            let _ = self.stop.send(true);
            let attached = self.bus.lock().expect("bus lock").take();
            if let Some(attached) = attached {
                attached.close().await;
            }
            let _ = reporter.await;
            let _ = follower.await;
        }
        let checkpoint = catch_up_then(self.journal.clone(), self.projection.clone(), true).await?;
        let _ = self.registry.send(Shutdown).await;
        tracing::info!(checkpoint, "service stopped");
        Ok(checkpoint)
    }
}

impl DriverFactory {
    /// The mailboxes that have a driver, once each.
    fn mailboxes(&self) -> Vec<MailboxId> {
        let mut out: Vec<MailboxId> = self.started.iter().map(|(m, _)| m.clone()).collect();
        out.dedup();
        out
    }

    /// Drivers for the configured mailboxes the organization has registered and that have
    /// none yet for the endpoint's workload; sets the throttle limit of every profile first.
    /// Each looks the facts of its incoming emails up through `org`.
    fn new_drivers(
        &mut self,
        view: &OrgDirectory,
        registry: &Addr<Registry>,
        journal: &Arc<dyn Journal>,
        org: &Addr<OrgActor>,
    ) -> Result<Vec<Driver>, ServiceError> {
        for (profile, info) in &view.profiles {
            match ConnectionLimit::new(info.max_connections) {
                Ok(limit) => self.throttle.set_limit(profile, limit),
                Err(e) => {
                    tracing::warn!(profile = %profile, error = %e, "keeping the default connection limit")
                }
            }
        }
        let mut drivers = Vec::new();
        for endpoint in &self.endpoints {
            let key = (endpoint.mailbox.clone(), endpoint.connector.workload());
            if self.started.contains(&key) {
                continue;
            }
            let Some(info) = view.mailboxes.get(&endpoint.mailbox) else {
                continue;
            };
            let credential = Credential {
                profile: info.profile.clone(),
                account: endpoint.account.clone(),
            };
            let connector = endpoint.connector.clone().with_owner(&info.address);
            let driver = Driver::new(
                endpoint.mailbox.clone(),
                connector.build(),
                registry.clone(),
                journal.clone(),
                &self.cursors,
            )?
            .with_throttle(self.throttle.clone(), credential)
            .with_sink(self.sink.clone())
            .with_facts(org.clone().recipient());
            let mut driver = driver;
            if endpoint.list_at_start {
                driver.begin_listing();
            }
            self.started.insert(key);
            drivers.push(driver);
        }
        Ok(drivers)
    }
}

fn is_row_change(event: &Event) -> bool {
    matches!(
        event,
        Event::RecordUpserted(_) | Event::OwnerChanged(_) | Event::RecordDeleted(_)
    )
}

async fn directory(org: &Addr<OrgActor>) -> Result<OrgDirectory, ServiceError> {
    Ok(org
        .send(InspectDirectory)
        .await
        .map_err(|source| ServiceError::Unavailable {
            what: "organization actor",
            source,
        })??)
}

async fn inspect(org: &Addr<OrgActor>) -> Result<OrgView, ServiceError> {
    Ok(org
        .send(InspectOrg)
        .await
        .map_err(|source| ServiceError::Unavailable {
            what: "organization actor",
            source,
        })??)
}

async fn run_scheduler(mut scheduler: Scheduler, signals: mpsc::UnboundedReceiver<Signal>) {
    scheduler.run(signals).await;
}

fn log_tick(report: &TickReport) {
    for ran in &report.ran {
        tracing::info!(
            mailbox = %ran.mailbox,
            listing = ran.cycle.terminal,
            observations = ran.cycle.observations.len(),
            decisions = ran.cycle.decisions.len() + ran.executed.decisions.len(),
            executed = ran.executed.outcomes.len(),
            item_failures = ran.cycle.failures.len(),
            next_run = ?ran.next_run.map(|t| t.to_string()),
            "cycle ran"
        );
    }
    for (mailbox, error) in &report.failed {
        tracing::warn!(mailbox = %mailbox, error = %error, "cycle failed");
    }
}

/// How long the projection follower lets changes gather after a notification before it folds
/// them: one page for a burst instead of one per change.
const FOLLOW_GATHER: Duration = Duration::from_millis(250);

/// The projection follower: catches the projection up [`FOLLOW_GATHER`] after a notification
/// and at least every `every`, until `stopped`.
async fn follow_journal(
    journal: Arc<dyn Journal>,
    projection: Arc<Mutex<Projection>>,
    follow: Arc<Notify>,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        // A quiet interval makes the pages committed without an fsync durable.
        let sync = tokio::select! {
            () = follow.notified() => false,
            () = tokio::time::sleep(every) => true,
            _ = stopped.changed() => return,
        };
        if !sync {
            tokio::select! {
                () = tokio::time::sleep(FOLLOW_GATHER) => {}
                _ = stopped.changed() => return,
            }
        }
        if let Err(e) = catch_up_then(journal.clone(), projection.clone(), sync).await {
            tracing::warn!(error = %e, "the projection could not catch up; trying again");
        }
    }
}

async fn catch_up(
    journal: Arc<dyn Journal>,
    projection: Arc<Mutex<Projection>>,
) -> Result<u64, ServiceError> {
    catch_up_then(journal, projection, false).await
}

/// Catches the projection up; with `sync`, then makes every page durable.
async fn catch_up_then(
    journal: Arc<dyn Journal>,
    projection: Arc<Mutex<Projection>>,
    sync: bool,
) -> Result<u64, ServiceError> {
    let done = tokio::task::spawn_blocking(move || {
        let mut projection = projection.lock().expect("projection lock");
        let done = projection.catch_up(journal.as_ref())?;
        if sync {
            projection.sync()?;
        }
        Ok::<_, ProjectionError>(done)
    })
    .await
    .expect("the projection catch-up does not panic")?;
    if done.events > 0 {
        tracing::debug!(
            folded = done.events,
            checkpoint = done.checkpoint,
            "projection caught up"
        );
    }
    Ok(done.checkpoint)
}
