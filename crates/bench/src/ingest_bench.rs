//! Ingestion as the organization grows: `crm apply` batches through the running service at
//! organizations of 1k to 1M rows, restart of the organization (full fold, and snapshot plus
//! tail), and the organization's memory per row.
//!
//! The organization is built fast by writing its stream directly (`org/<id>`, appends of 4096
//! events): a profile, [`USERS`] users of which [`MAILBOXES`] have a mapped mailbox, then
//! `events` row upserts over `rows` rows (workload rows: appointments with an attendee,
//! contacts, tasks; a row's later upserts are new versions of it). The mailbox streams are not
//! written for these rows: only the organization is large. The changes measured afterwards
//! go the way `ledgersync crm apply` sends them to a running service: the file is checked by
//! the organization actor (`Service::check_changes`), then every change goes through
//! `Service::crm` (organization actor, durable append, routing to the mailbox actors, the
//! scheduler and the projection follower notified).

use crate::runtime_bench::{in_system, rss_bytes};
use crate::workload::{T0, record};
use ledgersync_domain::event::{
    MailboxMapped, MailboxRegistered, ProfileRegistered, RecordUpserted, ServerType, UserRegistered,
};
use ledgersync_domain::{Duration, Event, MailboxId, NewEvent, OrgId, StreamId, UserId};
use ledgersync_engine::ingress::render_change;
use ledgersync_engine::mailbox::new_event;
use ledgersync_engine::org::OrgCore;
use ledgersync_engine::{IdGen, SystemClock};
use ledgersync_journal::{Backend, ExpectedSeq, Journal, JournalOptions};
use ledgersync_runtime::{RegistryConfig, SchedulerConfig, Service, ServiceConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

/// CRM users in the built organization.
pub const USERS: usize = 100;
/// Users with a mapped mailbox.
pub const MAILBOXES: usize = 20;
const ORG: &str = "bench";

/// What building an organization took.
#[derive(Debug, Clone)]
pub struct Built {
    /// Rows.
    pub rows: u64,
    /// Events in the organization stream.
    pub events: u64,
    /// Time to write them.
    pub took: StdDuration,
}

/// Restart figures of one organization.
#[derive(Debug, Clone)]
pub struct Restart {
    /// The organization.
    pub built: Built,
    /// `OrgCore::recover` folding the whole stream (no snapshot: the restart before).
    pub full_fold: StdDuration,
    /// Resident memory the recovered organization added, bytes per row.
    pub rss_per_row: f64,
    /// Rows in the recovered state (check).
    pub state_rows: usize,
    /// Cloning the organization state (what every `crm apply` paid before, and more).
    pub clone: StdDuration,
    /// Encoding and saving the snapshot.
    pub snapshot_save: StdDuration,
    /// Snapshot size, bytes.
    pub snapshot_bytes: usize,
    /// Events appended after the snapshot.
    pub tail: u64,
    /// `OrgCore::recover` from the snapshot plus the tail.
    pub from_snapshot: StdDuration,
}

/// `crm apply` through the running service at one size.
#[derive(Debug, Clone)]
pub struct Apply {
    /// Rows of the organization before the batches.
    pub rows: u64,
    /// Changes per batch (one `crm apply` file).
    pub batch: usize,
    /// Seconds per batch, in order (check + every change through `Service::crm`).
    pub batches: Vec<StdDuration>,
    /// Of which the check (`Service::check_changes`), per batch.
    pub checks: Vec<StdDuration>,
    /// `Service::start` (organization recovery, projection catch-up over the whole journal).
    pub start: StdDuration,
}

impl Apply {
    /// Changes per second over the whole run: every change of every file over the sum of the
    /// files' times, so a periodic cost (an index fold, a durable projection page) counts in
    /// full, as it does for a user sending many files.
    pub fn overall_rate(&self) -> f64 {
        let total: f64 = self.batches.iter().map(|d| d.as_secs_f64()).sum();
        (self.batch * self.batches.len()) as f64 / total
    }
    /// Median changes per second over the batches (one file's rate: hides a cost paid once
    /// every few files).
    pub fn median_rate(&self) -> f64 {
        let mut v: Vec<f64> = self.batches.iter().map(|d| d.as_secs_f64()).collect();
        v.sort_by(f64::total_cmp);
        self.batch as f64 / v[v.len() / 2]
    }
    /// Median check time.
    pub fn median_check(&self) -> StdDuration {
        let mut v = self.checks.clone();
        v.sort();
        v[v.len() / 2]
    }
}

fn open_redb(dir: &Path) -> anyhow::Result<Arc<dyn Journal>> {
    std::fs::create_dir_all(dir)?;
    Ok(ledgersync_journal::open(
        &dir.join("journal"),
        &JournalOptions::with_backend(Backend::Redb),
    )?)
}

fn setup() -> Vec<Event> {
    let mut out = vec![Event::ProfileRegistered(ProfileRegistered {
        profile: "gw".into(),
        name: "Groupware".into(),
        server_type: ServerType::Groupware,
        max_connections: 10,
    })];
    for u in 0..USERS {
        out.push(Event::UserRegistered(UserRegistered {
            user: UserId(format!("u{u}")),
            name: format!("User {u}"),
            email: format!("u{u}@org.example"),
        }));
    }
    for u in 0..MAILBOXES {
        out.push(Event::MailboxRegistered(MailboxRegistered {
            mailbox: MailboxId::new(format!("mbx-u{u}")),
            org: OrgId::new(ORG),
            address: format!("u{u}@org.example"),
            profile: "gw".into(),
            server_type: ServerType::Groupware,
        }));
        out.push(Event::MailboxMapped(MailboxMapped {
            mailbox: MailboxId::new(format!("mbx-u{u}")),
            user: UserId(format!("u{u}")),
        }));
    }
    out
}

/// The `k`-th upsert of an organization of `rows` rows: row `k % rows`, version `k / rows + 1`.
fn upsert(k: u64, rows: u64) -> Event {
    let n = k % rows;
    let u = (n % USERS as u64) as usize;
    Event::RecordUpserted(RecordUpserted {
        record: record(n, u, USERS, k / rows + 1, T0 + Duration::days(0)),
    })
}

/// Appends `events` to the organization stream whose head is `head`, 4096 at a time.
fn append_all(
    journal: &dyn Journal,
    head: &mut u64,
    events: impl Iterator<Item = Event>,
) -> anyhow::Result<()> {
    let stream = StreamId::org(&OrgId::new(ORG));
    let mut batch: Vec<NewEvent> = Vec::with_capacity(4096);
    let flush = |batch: &mut Vec<NewEvent>, head: &mut u64| -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len() as u64;
        journal.append(&stream, ExpectedSeq::Exactly(*head), std::mem::take(batch))?;
        *head += n;
        Ok(())
    };
    for event in events {
        let id = IdGen.next();
        batch.push(new_event(id, &event, None, vec![], id, T0));
        if batch.len() == 4096 {
            flush(&mut batch, head)?;
        }
    }
    flush(&mut batch, head)
}

/// Builds an organization of `rows` rows and `events` row upserts (≥ `rows`) in `dir`.
pub fn build(dir: &Path, rows: u64, events: u64) -> anyhow::Result<(Arc<dyn Journal>, Built)> {
    let journal = open_redb(dir)?;
    let t = Instant::now();
    let mut head = 0;
    append_all(journal.as_ref(), &mut head, setup().into_iter())?;
    append_all(
        journal.as_ref(),
        &mut head,
        (0..events.max(rows)).map(|k| upsert(k, rows)),
    )?;
    Ok((
        journal,
        Built {
            rows,
            events: head,
            took: t.elapsed(),
        },
    ))
}

/// Restart figures: full fold, memory, clone, snapshot, recovery from the snapshot plus a
/// `tail` of row upserts.
pub fn restart(dir: &Path, rows: u64, events: u64, tail: u64) -> anyhow::Result<Restart> {
    let (journal, built) = build(dir, rows, events)?;
    let org = OrgId::new(ORG);
    let rss_before = rss_bytes();
    let t = Instant::now();
    let (core, _) = OrgCore::recover(journal.as_ref(), org.clone(), false)?;
    let full_fold = t.elapsed();
    let rss_after = rss_bytes();
    let state_rows = core.state().rows.len();
    let t = Instant::now();
    let copy = core.state().clone();
    let clone = t.elapsed();
    drop(copy);
    let t = Instant::now();
    let snapshot = core.snapshot();
    let snapshot_bytes = snapshot.bytes.len();
    journal.save_snapshot(core.stream(), snapshot)?;
    let snapshot_save = t.elapsed();
    let mut head = core.head();
    drop(core);
    let total = events.max(rows);
    append_all(
        journal.as_ref(),
        &mut head,
        (total..total + tail).map(|k| upsert(k, rows)),
    )?;
    let t = Instant::now();
    let (again, _) = OrgCore::recover(journal.as_ref(), org, true)?;
    let from_snapshot = t.elapsed();
    anyhow::ensure!(
        again.head() == head,
        "recovered head {} ≠ {head}",
        again.head()
    );
    Ok(Restart {
        built,
        full_fold,
        rss_per_row: rss_after.saturating_sub(rss_before) as f64 / rows.max(1) as f64,
        state_rows,
        clone,
        snapshot_save,
        snapshot_bytes,
        tail,
        from_snapshot,
    })
}

/// The `i`-th line of batch `b`: half updates of rows spread over the organization, half new
/// rows, owned by users with and without mailboxes.
fn batch_text(b: u64, size: usize, rows: u64) -> String {
    let mut text = String::new();
    for i in 0..size as u64 {
        let k = b * size as u64 + i;
        let event = if i % 2 == 0 {
            let n = (k.wrapping_mul(7919) + 13) % rows;
            let u = (n % USERS as u64) as usize;
            Event::RecordUpserted(RecordUpserted {
                record: record(n, u, USERS, 1_000 + k, T0),
            })
        } else {
            let n = rows + k;
            let u = (n % USERS as u64) as usize;
            Event::RecordUpserted(RecordUpserted {
                record: record(n, u, USERS, 1, T0),
            })
        };
        text.push_str(&render_change(&event).expect("a row change renders"));
        text.push('\n');
    }
    text
}

/// `batches` `crm apply` files of `batch` changes through a running service over an
/// organization of `rows` rows.
pub fn apply(dir: &Path, rows: u64, batches: u64, batch: usize) -> anyhow::Result<Apply> {
    let (journal, _) = build(dir, rows, rows)?;
    // A service that grew to this size took organization snapshots on the way: leave one at the
    // head, as the last of them, so that the first file measured does not pay for the snapshot
    // the direct build skipped. The next one falls due after `snapshot_interval` more events,
    // inside the run when it is long enough (every 125,000 changes at 1M rows).
    let (core, _) = OrgCore::recover(journal.as_ref(), OrgId::new(ORG), false)?;
    journal.save_snapshot(core.stream(), core.snapshot())?;
    drop(core);
    let config = ServiceConfig {
        org: OrgId::new(ORG),
        data_dir: dir.to_path_buf(),
        registry: RegistryConfig::default(),
        scheduler: SchedulerConfig::default(),
        mailboxes: Vec::new(),
        projection_every: StdDuration::from_secs(1),
        push_quiet: StdDuration::from_millis(500),
    };
    in_system(move || async move {
        let t = Instant::now();
        let service = Service::start(journal, Arc::new(SystemClock), config, None).await?;
        let start = t.elapsed();
        let mut out = Apply {
            rows,
            batch,
            batches: Vec::new(),
            checks: Vec::new(),
            start,
        };
        for b in 0..batches {
            let text = batch_text(b, batch, rows);
            let t = Instant::now();
            let changes = service
                .check_changes(text, ledgersync_domain::Limits::default())
                .await?
                .map_err(|e| anyhow::anyhow!("bad lines: {e:?}"))?;
            out.checks.push(t.elapsed());
            let batch = service
                .crm_batch(changes.into_iter().map(|c| c.event).collect())
                .await?;
            if let Some((i, e)) = batch.failed {
                anyhow::bail!("change {i} of batch {b} failed: {e}");
            }
            out.batches.push(t.elapsed());
        }
        service.stop().await?;
        Ok(out)
    })
}
