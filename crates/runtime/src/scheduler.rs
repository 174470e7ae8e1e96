//! The scheduler: runs each mailbox's connector [`Driver`]s when their cycles are due.
//!
//! A mailbox has one driver per workload it runs (ACT for a CalDAV or vdir connector, the
//! incoming email for an IMAP one), each on its own workload's cadence and held back on its
//! own; "the mailbox is due" below is said of one driver and its workload.
//!
//! The scheduler decides nothing about time itself: when a workload's next cycle runs is a
//! decision of the mailbox (R7, R8, R9 after a completed listing, R11 after a failed one),
//! recorded as `cycle_scheduled` / `retry_scheduled` and kept as
//! [`WorkloadState::next_run`](ledgersync_domain::state::WorkloadState::next_run). The
//! scheduler reads it through [`InspectMailbox`] and runs the driver once it is reached.
//!
//! A mailbox is **due** when its ACT workload is enabled and
//!
//! - its `next_run` is at or before the engine clock's now (a push records `push_received`,
//!   which decides `cycle_scheduled` at now, so a push makes it due at once), or
//! - it has no `next_run` (never cycled, or re-enabled since it was disabled),
//!
//! and it is not held back. A mailbox is held back, in memory only, for
//! [`SchedulerConfig::hold_after_no_schedule`] when a run decided no later `next_run` (a
//! `listing_partial` schedules nothing) or a driver call failed: without the hold such a
//! mailbox would be due again at every tick. A push lifts the hold.
//!
//! [`Scheduler::tick`] runs every due driver once, up to `max_parallel` at a time:
//! `execute_pending`, then `cycle`. [`Scheduler::run`] ticks, then waits (tokio time) until the earliest next
//! run or a [`Signal`], until [`Signal::Stop`].

use crate::actor::ActorError;
use crate::driver::{CycleReport, Driver, DriverError, ExecuteReport};
use crate::registry::{InspectMailbox, ObserveMailbox, Registry};
use actix::{Addr, MailboxError};
use futures_util::StreamExt as _;
use ledgersync_domain::event::{PushReceived, Workload};
use ledgersync_domain::{Event, MailboxId, MailboxState, Timestamp};
use ledgersync_engine::engine::Appended;
use ledgersync_engine::mailbox::Incoming;
use ledgersync_engine::{Clock, IdGen};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How many times a `push_received` refused with an append conflict is sent again.
const CONFLICT_RETRIES: u32 = 3;

/// A driver's place: its mailbox and the workload it lists.
type Key = (MailboxId, Workload);

/// The scheduler's settings (the cadence itself is the organization's `schedule_*` settings,
/// applied by the rules).
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// A mailbox whose run decided no later next run, or whose driver failed, is not run again
    /// before this much engine-clock time has passed (unless pushed). Default 5 minutes.
    pub hold_after_no_schedule: ledgersync_domain::Duration,
    /// [`Scheduler::run`] never waits longer than this between ticks (so a mailbox enabled
    /// meanwhile, or a clock that jumped, is noticed). Default 60 s.
    pub max_wait: Duration,
    /// At most this many due mailboxes are run at the same time by one tick (each driver's
    /// connector calls still take their credential's connections from the throttle, R15).
    /// Default 16.
    pub max_parallel: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            hold_after_no_schedule: ledgersync_domain::Duration::minutes(5),
            max_wait: Duration::from_secs(60),
            max_parallel: 16,
        }
    }
}

/// Why a scheduler call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// The mailbox has no driver in this scheduler.
    #[error("mailbox `{mailbox}` is not scheduled here; add its driver first")]
    NotScheduled {
        /// The mailbox.
        mailbox: MailboxId,
    },
    /// Reading the mailbox or recording the push failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// One driver run by a tick.
#[derive(Debug)]
pub struct Ran {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// The workload of the driver that ran.
    pub workload: Workload,
    /// What `execute_pending` did.
    pub executed: ExecuteReport,
    /// What `cycle` did.
    pub cycle: CycleReport,
    /// The workload's next run after the cycle, as decided.
    pub next_run: Option<Timestamp>,
}

/// What one [`Scheduler::tick`] did.
#[derive(Debug, Default)]
pub struct TickReport {
    /// The drivers that ran, in mailbox order.
    pub ran: Vec<Ran>,
    /// The due mailboxes whose run (or whose state) failed; they are held back.
    pub failed: Vec<(MailboxId, DriverError)>,
}

impl TickReport {
    /// The mailboxes run, in order.
    pub fn mailboxes(&self) -> Vec<&MailboxId> {
        self.ran.iter().map(|r| &r.mailbox).collect()
    }

    /// True when nothing was run or tried.
    pub fn is_empty(&self) -> bool {
        self.ran.is_empty() && self.failed.is_empty()
    }
}

/// What one driver's run in a tick gave: its intents executed, then its listing.
type Run = Result<(ExecuteReport, CycleReport), DriverError>;

/// A message to a running [`Scheduler::run`].
pub enum Signal {
    /// The connector of this mailbox signalled a change of this workload (IDLE, a webhook, a
    /// watched directory): record it and run that driver at once.
    Push(MailboxId, Workload),
    /// Schedule this driver's mailbox (replacing a driver it had).
    Add(Box<Driver>),
    /// CRM-side changes reached these mailboxes: execute their pending intents now rather
    /// than at their next cycle (the listing keeps its cadence).
    Execute(Vec<MailboxId>),
    /// Answered once every signal sent before it is handled and the tick that followed them
    /// has run: whoever sent changes can wait until the scheduler has caught up with them.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// Stop after the current tick.
    Stop,
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signal::Push(m, w) => f.debug_tuple("Push").field(m).field(w).finish(),
            Signal::Add(d) => f.debug_tuple("Add").field(d.mailbox()).finish(),
            Signal::Execute(m) => f.debug_tuple("Execute").field(m).finish(),
            Signal::Flush(_) => f.write_str("Flush"),
            Signal::Stop => f.write_str("Stop"),
        }
    }
}

struct Entry {
    /// `None` only while a tick runs it.
    driver: Option<Driver>,
    /// Not run before this time (engine clock), unless pushed.
    held_until: Option<Timestamp>,
}

/// Runs the drivers of the enabled mailboxes when their cycle is due (see the module doc).
pub struct Scheduler {
    registry: Addr<Registry>,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
    entries: BTreeMap<Key, Entry>,
    reports: Option<mpsc::UnboundedSender<TickReport>>,
}

impl Scheduler {
    /// A scheduler with no driver; time comes from `clock` (the engine's).
    pub fn new(registry: Addr<Registry>, clock: Arc<dyn Clock>, config: SchedulerConfig) -> Self {
        Self {
            registry,
            clock,
            config,
            entries: BTreeMap::new(),
            reports: None,
        }
    }

    /// [`Scheduler::run`] sends the report of every tick here (empty ones too).
    pub fn with_reports(mut self, reports: mpsc::UnboundedSender<TickReport>) -> Self {
        self.reports = Some(reports);
        self
    }

    /// Schedules `driver` for its mailbox and workload (replacing and returning a driver it
    /// had: one driver per mailbox and workload).
    pub fn add(&mut self, driver: Driver) -> Option<Driver> {
        let key = (driver.mailbox().clone(), driver.workload());
        self.entries
            .insert(
                key,
                Entry {
                    driver: Some(driver),
                    held_until: None,
                },
            )
            .and_then(|e| e.driver)
    }

    /// Stops scheduling `mailbox`'s driver of `workload`; returns it.
    pub fn remove(&mut self, mailbox: &MailboxId, workload: Workload) -> Option<Driver> {
        self.entries
            .remove(&(mailbox.clone(), workload))
            .and_then(|e| e.driver)
    }

    /// Executes the pending intents of those of `mailboxes` that are scheduled here and whose
    /// workload is enabled (a disabled workload executes nothing), without listing. A
    /// failure of one mailbox is logged and returned; the others still run.
    pub async fn execute(
        &mut self,
        mailboxes: &[MailboxId],
    ) -> Vec<(MailboxId, Result<ExecuteReport, DriverError>)> {
        let mut done = Vec::new();
        for mailbox in mailboxes {
            // Intents are carried out by the mailbox's ACT driver.
            let key = (mailbox.clone(), Workload::Act);
            if !self.entries.contains_key(&key) {
                continue;
            }
            let enabled = match self.state(mailbox).await {
                Ok(state) => state.workload(Workload::Act).enabled,
                Err(SchedulerError::Driver(e)) => {
                    done.push((mailbox.clone(), Err(e)));
                    continue;
                }
                Err(SchedulerError::NotScheduled { .. }) => continue,
            };
            let Some(driver) = self.entries.get_mut(&key).and_then(|e| e.driver.as_mut()) else {
                continue;
            };
            if !enabled {
                continue;
            }
            let result = driver.execute_pending().await;
            if let Err(e) = &result {
                tracing::warn!(mailbox = %mailbox, error = %e, "executing pending intents failed");
            }
            done.push((mailbox.clone(), result));
        }
        done
    }

    /// The scheduled mailboxes, in order (once each, whatever their number of drivers).
    pub fn mailboxes(&self) -> impl Iterator<Item = &MailboxId> {
        let mut last: Option<&MailboxId> = None;
        self.entries.keys().filter_map(move |(m, _)| {
            let new = last != Some(m);
            last = Some(m);
            new.then_some(m)
        })
    }

    /// Records a push signal of `mailbox`'s connector for `workload` (`push_received`): an
    /// enabled workload decides `cycle_scheduled` at now, so the next tick runs its driver.
    /// Answers the decisions (none when the workload is disabled).
    pub async fn push(
        &mut self,
        mailbox: &MailboxId,
        workload: Workload,
    ) -> Result<Vec<Appended>, SchedulerError> {
        let Some(entry) = self.entries.get_mut(&(mailbox.clone(), workload)) else {
            return Err(SchedulerError::NotScheduled {
                mailbox: mailbox.clone(),
            });
        };
        let id = IdGen.next();
        let incoming = Incoming {
            event: Event::PushReceived(PushReceived { workload }),
            id,
            causation: Vec::new(),
            correlation: id,
        };
        let mut attempt = 0;
        let decisions = loop {
            attempt += 1;
            let reply = self
                .registry
                .send(ObserveMailbox::new(mailbox.clone(), incoming.clone()))
                .await
                .map_err(|source| registry_error(mailbox, source))?;
            match reply {
                Ok(decisions) => break decisions,
                // The refused append wrote nothing: the same observation again.
                Err(e) if e.is_conflict() && attempt <= CONFLICT_RETRIES => {}
                Err(source) => return Err(mailbox_error(mailbox, source).into()),
            }
        };
        entry.held_until = None;
        Ok(decisions)
    }

    /// The mailboxes with a driver due now, in order (see the module doc).
    pub async fn due(&self) -> Result<Vec<MailboxId>, SchedulerError> {
        let now = self.clock.now();
        let mut due: Vec<MailboxId> = Vec::new();
        for ((mailbox, workload), entry) in &self.entries {
            let state = self.state(mailbox).await?;
            if is_due(&state, *workload, entry.held_until, now) && due.last() != Some(mailbox) {
                due.push(mailbox.clone());
            }
        }
        Ok(due)
    }

    /// The earliest time a scheduled mailbox becomes due: `None` when none is enabled. A time
    /// at or before now means a tick would run something.
    pub async fn next_due(&self) -> Result<Option<Timestamp>, SchedulerError> {
        let now = self.clock.now();
        let mut earliest: Option<Timestamp> = None;
        for ((mailbox, workload), entry) in &self.entries {
            let state = self.state(mailbox).await?;
            if let Some(at) = due_at(&state, *workload, entry.held_until, now) {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        Ok(earliest)
    }

    /// Runs every due driver once — `execute_pending`, then `cycle` — up to
    /// [`SchedulerConfig::max_parallel`] mailboxes at a time. A failure of one mailbox is
    /// reported and holds that mailbox back; the others still run. The report lists the runs in
    /// mailbox order.
    pub async fn tick(&mut self) -> TickReport {
        let mut report = TickReport::default();
        let now = self.clock.now();
        // Which mailboxes are due, and their drivers taken out for the run.
        let mut runs = Vec::new();
        let keys: Vec<Key> = self.entries.keys().cloned().collect();
        for key in keys {
            let (mailbox, workload) = &key;
            let state = match self.state(mailbox).await {
                Ok(state) => state,
                Err(SchedulerError::Driver(e)) => {
                    tracing::warn!(mailbox = %mailbox, error = %e, "cannot read the mailbox to schedule it");
                    report.failed.push((mailbox.clone(), e));
                    continue;
                }
                Err(SchedulerError::NotScheduled { .. }) => continue,
            };
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            if !is_due(&state, *workload, entry.held_until, now) {
                continue;
            }
            if let Some(driver) = entry.driver.take() {
                runs.push(driver);
            }
        }
        let done: Vec<(Driver, Run)> =
            futures_util::stream::iter(runs.into_iter().map(|mut driver| async move {
                let run = async {
                    let executed = driver.execute_pending().await?;
                    let cycle = driver.cycle().await?;
                    Ok::<_, DriverError>((executed, cycle))
                }
                .await;
                (driver, run)
            }))
            .buffer_unordered(self.config.max_parallel.max(1))
            .collect()
            .await;
        for (driver, run) in done {
            let mailbox = driver.mailbox().clone();
            let workload = driver.workload();
            let next_run = match &run {
                Ok(_) => match self.state(&mailbox).await {
                    Ok(after) => after.workload(workload).next_run,
                    Err(_) => None,
                },
                Err(_) => None,
            };
            let Some(entry) = self.entries.get_mut(&(mailbox.clone(), workload)) else {
                continue;
            };
            entry.driver = Some(driver);
            match run {
                Ok((executed, cycle)) => {
                    // Nothing later decided (a partial listing, a disabled workload): hold the
                    // mailbox back rather than running it at every tick.
                    let rescheduled = next_run.is_some_and(|t| t > now);
                    entry.held_until =
                        (!rescheduled).then(|| now + self.config.hold_after_no_schedule);
                    tracing::debug!(mailbox = %mailbox, workload = ?workload, terminal = cycle.terminal, next_run = ?next_run, "cycle ran");
                    report.ran.push(Ran {
                        mailbox,
                        workload,
                        executed,
                        cycle,
                        next_run,
                    });
                }
                Err(e) => {
                    tracing::warn!(mailbox = %mailbox, error = %e, "scheduled run failed; held back");
                    entry.held_until = Some(now + self.config.hold_after_no_schedule);
                    report.failed.push((mailbox, e));
                }
            }
        }
        report
            .ran
            .sort_by(|a, b| (&a.mailbox, a.workload).cmp(&(&b.mailbox, b.workload)));
        report.failed.sort_by(|a, b| a.0.cmp(&b.0));
        report
    }

    /// Ticks, then waits until the earliest next run (at most
    /// [`SchedulerConfig::max_wait`], on tokio's timer) or a [`Signal`]; a push is recorded
    /// and ticked at once, an added driver is ticked at once (it is due when never cycled),
    /// `Execute` runs the pending intents of its mailboxes, then ticks. Returns on
    /// [`Signal::Stop`] or when every sender is dropped; a tick in progress always finishes
    /// first, so every observation it sent is durable and answered.
    pub async fn run(&mut self, mut signals: mpsc::UnboundedReceiver<Signal>) {
        loop {
            let report = self.tick().await;
            if let Some(reports) = &self.reports {
                // A dropped receiver only means nobody listens.
                let _ = reports.send(report);
            }
            let wait = match self.next_due().await {
                Ok(Some(at)) => {
                    let ms = (at - self.clock.now()).0.max(0) as u64;
                    Duration::from_millis(ms).min(self.config.max_wait)
                }
                Ok(None) => self.config.max_wait,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot compute the next run");
                    self.config.max_wait
                }
            };
            tokio::select! {
                signal = signals.recv() => match signal {
                    Some(Signal::Push(mailbox, workload)) => {
                        match self.push(&mailbox, workload).await {
                            Ok(_) => {}
                            // A mailbox not registered yet has no driver: its push waits for
                            // the driver's first cycle.
                            Err(e @ SchedulerError::NotScheduled { .. }) => {
                                tracing::debug!(mailbox = %mailbox, error = %e, "push of a mailbox with no driver");
                            }
                            Err(e) => {
                                tracing::warn!(mailbox = %mailbox, error = %e, "push not recorded");
                            }
                        }
                    }
                    Some(Signal::Add(driver)) => {
                        self.add(*driver);
                    }
                    Some(Signal::Execute(mailboxes)) => {
                        for (mailbox, result) in self.execute(&mailboxes).await {
                            if let Ok(done) = result
                                && !done.outcomes.is_empty()
                            {
                                tracing::info!(mailbox = %mailbox, executed = done.outcomes.len(), succeeded = done.succeeded(), "pending intents executed");
                            }
                        }
                    }
                    Some(Signal::Flush(done)) => {
                        let _ = done.send(());
                    }
                    Some(Signal::Stop) | None => return,
                },
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn state(
        &self,
        mailbox: &MailboxId,
    ) -> Result<std::sync::Arc<MailboxState>, SchedulerError> {
        let view = self
            .registry
            .send(InspectMailbox::new(mailbox.clone()))
            .await
            .map_err(|source| registry_error(mailbox, source))?
            .map_err(|source| mailbox_error(mailbox, source))?;
        Ok(view.state)
    }
}

/// When the mailbox's driver of `workload` becomes due: `None` when the workload is disabled.
fn due_at(
    state: &MailboxState,
    workload: Workload,
    held_until: Option<Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    let w = state.workload(workload);
    if !w.enabled {
        return None;
    }
    let at = w.next_run.unwrap_or(now);
    Some(held_until.map_or(at, |h| at.max(h)))
}

fn is_due(
    state: &MailboxState,
    workload: Workload,
    held_until: Option<Timestamp>,
    now: Timestamp,
) -> bool {
    due_at(state, workload, held_until, now).is_some_and(|at| at <= now)
}

fn registry_error(mailbox: &MailboxId, source: MailboxError) -> SchedulerError {
    SchedulerError::Driver(DriverError::Registry {
        mailbox: mailbox.clone(),
        source,
    })
}

fn mailbox_error(mailbox: &MailboxId, source: ActorError) -> DriverError {
    DriverError::Mailbox {
        mailbox: mailbox.clone(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgersync_domain::Duration as Span;

    fn act(enabled: bool, next_run: Option<Timestamp>) -> MailboxState {
        let mut s = MailboxState::default();
        s.workloads[Workload::Act.index()].enabled = enabled;
        s.workloads[Workload::Act.index()].next_run = next_run;
        s
    }

    #[test]
    fn due_follows_next_run_enabled_and_the_hold() {
        let now = Timestamp(1_000_000);
        let later = now + Span::minutes(5);
        let a = Workload::Act;
        assert!(is_due(&act(true, None), a, None, now), "never cycled");
        assert!(is_due(&act(true, Some(now)), a, None, now));
        assert!(!is_due(&act(true, Some(later)), a, None, now));
        assert!(!is_due(&act(false, None), a, None, now), "disabled");
        assert_eq!(due_at(&act(false, Some(now)), a, None, now), None);
        assert!(!is_due(&act(true, Some(now)), a, Some(later), now), "held");
        assert_eq!(
            due_at(&act(true, Some(now)), a, Some(later), now),
            Some(later)
        );
        // Each workload is due on its own: an enabled ACT says nothing of the incoming email.
        assert!(!is_due(&act(true, None), Workload::Incoming, None, now));
    }
}
