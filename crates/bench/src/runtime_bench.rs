//! Mailbox actors (issue 3): observations through the registry to durable decisions,
//! activation latency of passivated mailboxes, and resident memory per actor. Everything runs
//! in-process against a redb journal, inside an actix `System` on its own thread.

use crate::workload::{Gen, T0, record};
use actix::{Actor, Addr, System};
use ledgersync_domain::event::RecordUpserted;
use ledgersync_domain::{Duration, Event, NewEvent, OrgId, OrgSettings, StreamId, Timestamp};
use ledgersync_engine::mailbox::{Incoming, MailboxCore};
use ledgersync_engine::{IdGen, ManualClock};
use ledgersync_journal::{AppendTicket, Backend, Journal, JournalOptions, Snapshot};
use ledgersync_runtime::{
    InspectMailbox, ObserveMailbox, PassivateIdle, Registry, RegistryConfig, RuntimeStats, Shutdown,
};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, Instant};

/// Idle time of the registry in these runs; passivation happens only when a run moves the
/// manual clock past it and asks for the idle check.
const IDLE: StdDuration = StdDuration::from_secs(120);

fn open_redb(dir: &Path) -> anyhow::Result<Arc<dyn Journal>> {
    Ok(ledgersync_journal::open(
        dir,
        &JournalOptions::with_backend(Backend::Redb),
    )?)
}

fn incoming(event: Event) -> Incoming {
    let id = IdGen.next();
    Incoming {
        event,
        id,
        causation: vec![],
        correlation: id,
    }
}

/// The `k`-th appointment (with an internal and an external attendee) of user `u`.
fn appointment(k: u64, u: usize, users: usize, now: Timestamp) -> Event {
    let n = 4 * (k / 2) + (k % 2);
    Event::RecordUpserted(RecordUpserted {
        record: record(n, u, users, 1, now),
    })
}

fn config(arbiters: usize, max_recoveries: usize) -> RegistryConfig {
    RegistryConfig {
        idle_after: IDLE,
        // Only the explicit `PassivateIdle` of a run passivates.
        idle_check_every: StdDuration::from_secs(24 * 3600),
        max_recoveries,
        arbiters,
        ..RegistryConfig::default()
    }
}

fn start(
    journal: Arc<dyn Journal>,
    clock: Arc<ManualClock>,
    config: RegistryConfig,
) -> (Addr<Registry>, Arc<RuntimeStats>) {
    let settings = Arc::new(RwLock::new(OrgSettings::default()));
    let registry = Registry::new(journal, clock, settings, config);
    let stats = registry.stats();
    (registry.start(), stats)
}

/// Runs `f` inside a new actix `System` on its own thread.
pub(crate) fn in_system<T, F, Fut>(f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    std::thread::spawn(move || System::new().block_on(f()))
        .join()
        .map_err(|_| anyhow::anyhow!("the actix system thread panicked"))?
}

/// Resident set size of this process, bytes (`VmRSS` of `/proc/self/status`).
pub fn rss_bytes() -> u64 {
    proc_status("VmRSS:")
}

/// Peak resident set size of this process, bytes (`VmHWM`).
pub fn peak_rss_bytes() -> u64 {
    proc_status("VmHWM:")
}

fn proc_status(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Observations through the registry and the actors to durable decisions.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// Arbiters the actors ran on (0 = the registry's thread).
    pub arbiters: usize,
    /// Mailboxes.
    pub mailboxes: usize,
    /// Observations sent (after the lifecycle).
    pub observations: u64,
    /// Decisions answered.
    pub decisions: u64,
    /// First send to last reply.
    pub took: StdDuration,
    /// Events appended per observation (observation + decisions).
    pub events: u64,
}

impl Throughput {
    /// Observations per second.
    pub fn observations_per_sec(&self) -> f64 {
        self.observations as f64 / self.took.as_secs_f64()
    }
    /// Decisions per second.
    pub fn decisions_per_sec(&self) -> f64 {
        self.decisions as f64 / self.took.as_secs_f64()
    }
    /// Events (observations + decisions) per second.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.took.as_secs_f64()
    }
}

/// `mailboxes` mailboxes, each enabled by its lifecycle (sent through the actors, not timed),
/// then sent `per_mailbox` appointment upserts; all observations are sent at once (each actor
/// handles its own one at a time, in the order sent) and the time runs from the first send to
/// the last reply.
pub fn observe_throughput(
    dir: &Path,
    arbiters: usize,
    mailboxes: usize,
    per_mailbox: u64,
) -> anyhow::Result<Throughput> {
    let journal = open_redb(dir)?;
    let clock = Arc::new(ManualClock::new(T0));
    in_system(move || async move {
        let (registry, _stats) = start(journal, clock, config(arbiters, 50));
        let org = OrgId::new("bench");
        let mut setup = Vec::new();
        for u in 0..mailboxes {
            let g = Gen::new(u);
            for e in g.lifecycle(&org) {
                setup.push(registry.send(ObserveMailbox::new(g.id.clone(), incoming(e))));
            }
        }
        for r in setup {
            r.await??;
        }
        let now = T0 + Duration::minutes(1);
        let mut msgs = Vec::with_capacity(mailboxes * per_mailbox as usize);
        for k in 0..per_mailbox {
            for u in 0..mailboxes {
                let id = Gen::new(u).id;
                msgs.push(ObserveMailbox::new(
                    id,
                    incoming(appointment(k, u, mailboxes, now)),
                ));
            }
        }
        let t = Instant::now();
        let requests: Vec<_> = msgs.into_iter().map(|m| registry.send(m)).collect();
        let mut decisions = 0u64;
        for r in requests {
            decisions += r.await??.len() as u64;
        }
        let took = t.elapsed();
        registry.send(Shutdown).await?;
        let observations = mailboxes as u64 * per_mailbox;
        Ok(Throughput {
            arbiters,
            mailboxes,
            observations,
            decisions,
            took,
            events: observations + decisions,
        })
    })
}

/// The same step without actors: one thread prepares an observation for every mailbox,
/// submits each batch (all in flight at once, as the actors do), waits for them, and commits.
/// Returns the throughput and the time spent in prepare, in waiting for durability, in commit.
#[derive(Debug, Clone)]
pub struct CoreBreakdown {
    /// Observations and decisions, as [`Throughput`] (arbiters = 0).
    pub throughput: Throughput,
    /// Total time in `MailboxCore::prepare` (decide + encode).
    pub prepare: StdDuration,
    /// Total time in `Journal::submit` (hand-off to the writer).
    pub submit: StdDuration,
    /// Total wall time waiting for the group commits.
    pub wait: StdDuration,
    /// Total time in `MailboxCore::commit` (evolve).
    pub commit: StdDuration,
}

/// See [`CoreBreakdown`].
pub fn core_breakdown(
    dir: &Path,
    mailboxes: usize,
    per_mailbox: u64,
) -> anyhow::Result<CoreBreakdown> {
    let journal = open_redb(dir)?;
    let settings = OrgSettings::default();
    let org = OrgId::new("bench");
    let mut cores: Vec<MailboxCore> = (0..mailboxes)
        .map(|u| MailboxCore::new(Gen::new(u).id))
        .collect();
    let step = |cores: &mut Vec<MailboxCore>,
                obs: &dyn Fn(usize) -> Event,
                now: Timestamp,
                times: &mut [StdDuration; 4]|
     -> anyhow::Result<u64> {
        let t = Instant::now();
        let prepared: Vec<_> = cores
            .iter()
            .enumerate()
            .map(|(u, c)| c.prepare(incoming(obs(u)), &settings, now, &IdGen))
            .collect();
        times[0] += t.elapsed();
        let t = Instant::now();
        let mut tickets = Vec::with_capacity(prepared.len());
        let mut pending = Vec::with_capacity(prepared.len());
        for (batch, p) in prepared {
            tickets.push(journal.submit(&batch.stream, batch.expected, batch.events));
            pending.push(p);
        }
        times[1] += t.elapsed();
        let t = Instant::now();
        for ticket in tickets {
            ticket.wait()?;
        }
        times[2] += t.elapsed();
        let t = Instant::now();
        let mut decisions = 0;
        for (core, p) in cores.iter_mut().zip(pending) {
            decisions += core.commit(p, u64::MAX).0.len() as u64;
        }
        times[3] += t.elapsed();
        Ok(decisions)
    };
    let mut setup_times = [StdDuration::ZERO; 4];
    for i in 0..4 {
        let lifecycle = |u: usize| Gen::new(u).lifecycle(&org).swap_remove(i);
        step(&mut cores, &lifecycle, T0, &mut setup_times)?;
    }
    let now = T0 + Duration::minutes(1);
    let mut times = [StdDuration::ZERO; 4];
    let mut decisions = 0;
    let t = Instant::now();
    for k in 0..per_mailbox {
        let obs = |u: usize| appointment(k, u, mailboxes, now);
        decisions += step(&mut cores, &obs, now, &mut times)?;
    }
    let took = t.elapsed();
    let observations = mailboxes as u64 * per_mailbox;
    Ok(CoreBreakdown {
        throughput: Throughput {
            arbiters: 0,
            mailboxes,
            observations,
            decisions,
            took,
            events: observations + decisions,
        },
        prepare: times[0],
        submit: times[1],
        wait: times[2],
        commit: times[3],
    })
}

/// Submits `batch` to the mailbox stream of `g`, keeping at most 4096 appends in flight.
fn submit_bounded(
    journal: &dyn Journal,
    g: &mut Gen,
    batch: Vec<NewEvent>,
    inflight: &mut VecDeque<AppendTicket>,
) -> anyhow::Result<()> {
    inflight.push_back(g.submit(journal, batch));
    while inflight.len() > 4096 {
        inflight.pop_front().expect("non-empty").wait()?;
    }
    Ok(())
}

/// Writes, for mailboxes `from..to`, the lifecycle (one append per mailbox) and then
/// observations until the stream holds about `events` events; saves a snapshot when the stream
/// first reaches `snapshot_at` events (0: none). Returns the events written.
fn write_streams(
    journal: &dyn Journal,
    from: usize,
    to: usize,
    users: usize,
    events: u64,
    snapshot_at: u64,
) -> anyhow::Result<u64> {
    let org = OrgId::new("bench");
    let settings = OrgSettings::default();
    let mut counter: u128 = (from as u128) << 64;
    let mut inflight = VecDeque::new();
    let mut snapshots = Vec::new();
    let mut written = 0u64;
    for u in from..to {
        let mut g = Gen::new(u);
        let mut batch = Vec::new();
        for obs in g.lifecycle(&org) {
            batch.extend(g.process(obs, &settings, T0, &mut counter));
        }
        let mut len = batch.len() as u64;
        submit_bounded(journal, &mut g, batch, &mut inflight)?;
        let mut now = T0;
        let mut snapshot_taken = snapshot_at == 0;
        while len < events {
            now = now + Duration::minutes(1);
            let obs = g.next_observation(users, now);
            let batch = g.process(obs, &settings, now, &mut counter);
            len += batch.len() as u64;
            submit_bounded(journal, &mut g, batch, &mut inflight)?;
            if !snapshot_taken && len >= snapshot_at {
                snapshot_taken = true;
                snapshots.push((
                    StreamId::mailbox(&g.id),
                    Snapshot {
                        seq: len,
                        bytes: g.state.to_snapshot(),
                    },
                ));
            }
        }
        written += len;
    }
    for t in inflight {
        t.wait()?;
    }
    for (stream, snapshot) in snapshots {
        journal.save_snapshot(&stream, snapshot)?;
    }
    Ok(written)
}

/// Latency percentiles, in the order p50, p99, max.
fn percentiles(mut v: Vec<StdDuration>) -> (StdDuration, StdDuration, StdDuration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.5), at(0.99), *v.last().expect("samples"))
}

/// Activation latency of mailboxes known only to the journal.
#[derive(Debug, Clone)]
pub struct Activation {
    /// Events per mailbox stream.
    pub events_per_stream: u64,
    /// Seq of the snapshot in each stream.
    pub snapshot_at: u64,
    /// One activation at a time: samples, p50, p99, max.
    pub one_at_a_time: (usize, StdDuration, StdDuration, StdDuration),
    /// All activations sent at once: samples, p50, p99, max.
    pub burst: (usize, StdDuration, StdDuration, StdDuration),
    /// The burst from first send to last reply.
    pub burst_took: StdDuration,
    /// Most recoveries at once during the burst.
    pub recoveries_peak: u64,
    /// Writing the streams took.
    pub write_took: StdDuration,
}

/// Writes `sequential + burst` mailbox streams of about `events` events with a snapshot at
/// three quarters, then times, through a fresh registry (`max_recoveries` = 50), the first
/// observation (a new appointment) to each: first `sequential` mailboxes one at a time, then
/// `burst` mailboxes all sent at once.
pub fn activation_latency(
    dir: &Path,
    sequential: usize,
    burst: usize,
    events: u64,
) -> anyhow::Result<Activation> {
    let journal = open_redb(dir)?;
    let users = sequential + burst;
    let snapshot_at = events * 3 / 4;
    let t = Instant::now();
    write_streams(journal.as_ref(), 0, users, users, events, snapshot_at)?;
    let write_took = t.elapsed();
    let clock = Arc::new(ManualClock::new(T0 + Duration::days(1)));
    in_system(move || async move {
        let (registry, stats) = start(journal, clock, config(0, 50));
        let now = T0 + Duration::days(1);
        let first = |u: usize| {
            ObserveMailbox::new(
                Gen::new(u).id,
                incoming(appointment(1_000_000, u, users, now)),
            )
        };
        let mut one = Vec::with_capacity(sequential);
        for u in 0..sequential {
            let msg = first(u);
            let t = Instant::now();
            registry.send(msg).await??;
            one.push(t.elapsed());
        }
        let peak_before = stats.snapshot().recoveries_peak;
        let msgs: Vec<_> = (sequential..users).map(first).collect();
        let t0 = Instant::now();
        let mut tasks = Vec::with_capacity(burst);
        for msg in msgs {
            let request = registry.send(msg);
            tasks.push(actix::spawn(async move {
                request.await.map(|r| r.map(|_| t0.elapsed()))
            }));
        }
        let mut all = Vec::with_capacity(burst);
        for task in tasks {
            all.push(task.await???);
        }
        let burst_took = t0.elapsed();
        let recoveries_peak = stats.snapshot().recoveries_peak.max(peak_before);
        registry.send(Shutdown).await?;
        let (a50, a99, amax) = percentiles(one);
        let (b50, b99, bmax) = percentiles(all);
        Ok(Activation {
            events_per_stream: events,
            snapshot_at,
            one_at_a_time: (sequential, a50, a99, amax),
            burst: (burst, b50, b99, bmax),
            burst_took,
            recoveries_peak,
            write_took,
        })
    })
}

/// Resident memory of active and registered mailboxes.
#[derive(Debug, Clone)]
pub struct Memory {
    /// Active actors measured.
    pub active: usize,
    /// RSS with the journal open and its streams written, before anything read them.
    pub rss_cold: u64,
    /// RSS after every stream was read once outside the actors (`MailboxCore::recover`, the
    /// cores dropped), so that the journal's page cache holds what the activations read.
    pub rss_before_active: u64,
    /// RSS with all of them active.
    pub rss_active: u64,
    /// Activating them took.
    pub activate_took: StdDuration,
    /// Registered mailboxes (streams written) in the second run.
    pub registered: usize,
    /// Writing their lifecycle streams took.
    pub register_took: StdDuration,
    /// Mailboxes activated per wave.
    pub wave: usize,
    /// The waves (activate, then passivate) took.
    pub waves_took: StdDuration,
    /// RSS after writing and before any actor.
    pub rss_before_waves: u64,
    /// RSS after each wave was passivated.
    pub rss_after_waves: Vec<u64>,
    /// Mailboxes left active at the end.
    pub kept_active: usize,
    /// RSS at the end (kept_active active, the rest passivated).
    pub rss_end: u64,
    /// Actors alive at the end (from the registry's counters).
    pub alive_end: u64,
    /// Activations and passivations counted.
    pub activations: u64,
    /// Passivations counted.
    pub passivations: u64,
}

async fn activate(registry: &Addr<Registry>, from: usize, to: usize) -> anyhow::Result<()> {
    // At most 20,000 requests outstanding, so the caller's queue stays small.
    let mut at = from;
    while at < to {
        let end = (at + 20_000).min(to);
        let requests: Vec<_> = (at..end)
            .map(|u| registry.send(InspectMailbox::new(Gen::new(u).id)))
            .collect();
        for r in requests {
            r.await??;
        }
        at = end;
    }
    Ok(())
}

/// (1) `active` mailboxes with their lifecycle written in bulk, all activated (each actor
/// holds its recovered core); RSS before and after. (2) `registered` mailboxes with their
/// lifecycle written in bulk through `Journal::submit`, activated and passivated in waves of
/// `wave`, then `keep` of them left active; RSS along the way. Both in one process, (1) first
/// and its registry shut down before (2).
pub fn memory(
    dir: &Path,
    active: usize,
    registered: usize,
    wave: usize,
    keep: usize,
) -> anyhow::Result<Memory> {
    let journal_a = open_redb(&dir.join("active"))?;
    write_streams(journal_a.as_ref(), 0, active, active, 0, 0)?;
    let rss_cold = rss_bytes();
    for u in 0..active {
        drop(MailboxCore::recover(journal_a.as_ref(), Gen::new(u).id)?);
    }
    let clock_a = Arc::new(ManualClock::new(T0 + Duration::days(1)));
    let (rss_before_active, rss_active, activate_took) = in_system(move || async move {
        let (registry, stats) = start(journal_a, clock_a, config(0, 50));
        let before = rss_bytes();
        let t = Instant::now();
        activate(&registry, 0, active).await?;
        let took = t.elapsed();
        let after = rss_bytes();
        anyhow::ensure!(
            stats.snapshot().active == active as u64,
            "not all actors active"
        );
        registry.send(Shutdown).await?;
        Ok((before, after, took))
    })?;

    let journal = open_redb(&dir.join("registered"))?;
    let t = Instant::now();
    write_streams(journal.as_ref(), 0, registered, registered, 0, 0)?;
    let register_took = t.elapsed();
    let clock = Arc::new(ManualClock::new(T0 + Duration::days(1)));
    let wave = wave.max(1);
    in_system(move || async move {
        let (registry, stats) = start(journal, clock.clone(), config(0, 50));
        let rss_before_waves = rss_bytes();
        let mut rss_after_waves = Vec::new();
        let t = Instant::now();
        let mut at = 0;
        while at < registered {
            let end = (at + wave).min(registered);
            activate(&registry, at, end).await?;
            clock.advance(Duration(IDLE.as_millis() as i64 + 1));
            let passivated = registry.send(PassivateIdle).await?;
            anyhow::ensure!(passivated == end - at, "a wave did not passivate");
            rss_after_waves.push(rss_bytes());
            eprintln!(
                "  wave {}..{end}: RSS {:.0} MiB",
                at,
                rss_bytes() as f64 / 1048576.0
            );
            at = end;
        }
        let waves_took = t.elapsed();
        let keep = keep.min(registered);
        // Spread over the whole range, so they come from every wave.
        let step = (registered / keep.max(1)).max(1);
        let mut requests = Vec::with_capacity(keep);
        for u in (0..registered).step_by(step).take(keep) {
            requests.push(registry.send(InspectMailbox::new(Gen::new(u).id)));
        }
        for r in requests {
            r.await??;
        }
        let s = stats.snapshot();
        let rss_end = rss_bytes();
        registry.send(Shutdown).await?;
        Ok(Memory {
            active,
            rss_cold,
            rss_before_active,
            rss_active,
            activate_took,
            registered,
            register_took,
            wave,
            waves_took,
            rss_before_waves,
            rss_after_waves,
            kept_active: keep,
            rss_end,
            alive_end: s.active,
            activations: s.activations,
            passivations: s.passivations,
        })
    })
}
