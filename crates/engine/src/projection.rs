//! The projection: CRM timeline views folded from the journal into an embedded redb database
//! (`<data>/projections.redb`, separate from the journal). See `docs/projections.md`.
//!
//! # Views
//!
//! - **rows**: every CRM row the journal names, with its title, table, time (appointment start,
//!   task due date, else when the CRM first sent it), regarding row, owner and participants,
//!   and per mailbox its link status, server item and last decision (rules and summary);
//!   indexed by regarding row and by participating user ([`Projection::timeline_of_record`],
//!   [`Projection::timeline_of_user`]);
//! - **links**: CRM row ↔ server item per mailbox ([`Projection::links_of`]);
//! - **item failures** (R79): an `error_classified` with an intent, and a server item a
//!   listing could not read (`item_failed`, removed once the item reads fine again), kept for
//!   the retention period (default 3 days) and purged when an event recorded more than that
//!   after it is applied (R16) ([`Projection::failures_of_mailbox`]);
//! - **mailbox health** (R80): per mailbox and workload ([`Projection::health_of_mailbox`]);
//! - **alerts** (R81): every `alert_raised` of the mailbox streams and of the organization
//!   stream (R14), kept for the organization's `alert_retention_days` (default 30) in force
//!   when an event is applied, and purged when an event recorded more than that after it is
//!   applied ([`Projection::alerts`]).
//!
//! # Invariant: the checkpoint is written with the rows
//!
//! The projection is a fold over the journal in global position order. [`Projection::catch_up`]
//! reads the events after its checkpoint one page at a time and, for each page, writes the view
//! rows, the fold state of every mailbox the page touched, and the position of the page's last
//! event as the new checkpoint in **one** redb write transaction. A crash therefore leaves the
//! views exactly at their checkpoint: never ahead of it (an event applied twice) nor behind it
//! (an event skipped).
//!
//! # Durability: at most [`DEFAULT_DURABLE_EVERY`] behind
//!
//! The projection is derived from the journal, so its commits need not each reach the disk: a
//! page is committed with `Durability::None` (visible to every later read at once, no fsync)
//! unless the last durable commit is older than the durable interval, and [`Projection::sync`]
//! makes whatever is not durable yet durable (the service calls it when it is idle and when it
//! stops). A crash loses at most the pages since the last durable commit, rows and checkpoint
//! together, and the next catch-up folds those events again from the journal. This keeps the
//! cost of following a busy journal independent of the file's size (a durable redb commit
//! writes and syncs state that grows with the file).

mod error;
mod fold;
mod rows;

pub use error::ProjectionError;
pub use rows::{
    Activity, Alert, ItemFailure, ItemLink, LastDecision, MailboxSync, Regarding, WorkloadHealth,
};

use crate::log::Stored;
use fold::{
    ALERTS, BY_REGARDING, BY_USER, CHECKPOINT, FAILURES, Fold, HEALTH, LINKS, META, ROWS, STATES,
    STATES_AT, decode, prefix,
};
use ledgersync_domain::event::AlertLevel;
use ledgersync_domain::{Duration, MailboxId, MailboxState, RecordId, UserId};
use ledgersync_journal::Journal;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The file name of the projection inside a data directory.
pub const FILE_NAME: &str = "projections.redb";

/// How long item failures are kept by default (R16): 3 days.
pub const DEFAULT_RETENTION: Duration = Duration::days(3);

/// Events per page, and per write transaction, by default.
pub const DEFAULT_PAGE: usize = 1024;

/// How long a page committed without an fsync may wait for a durable commit, by default.
pub const DEFAULT_DURABLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What one catch-up did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUp {
    /// Events folded.
    pub events: u64,
    /// Write transactions committed (one per page).
    pub pages: u64,
    /// The checkpoint afterwards: the position of the last event folded.
    pub checkpoint: u64,
}

/// The timeline views and their checkpoint (see the module documentation).
pub struct Projection {
    db: Database,
    path: PathBuf,
    retention: Duration,
    page: usize,
    /// The per-mailbox fold state at the checkpoint; loaded from the file on first use.
    states: Option<BTreeMap<MailboxId, MailboxState>>,
    /// Set by a write that failed with an I/O error (a full disk): redb refuses every later
    /// transaction of that `Database` (`PreviousIo`), so the next catch-up reopens the file.
    reopen: bool,
    /// A page may be committed without an fsync while the last durable commit is younger
    /// than this (see the module documentation).
    durable_every: std::time::Duration,
    /// When the last durable commit was made (or the file opened).
    last_durable: std::time::Instant,
    /// Pages were committed since the last durable commit.
    behind: bool,
    /// Mailboxes whose fold state changed since it was last written to `STATES`.
    unsaved: BTreeSet<MailboxId>,
}

impl std::fmt::Debug for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projection")
            .field("path", &self.path)
            .field("retention", &self.retention)
            .field("page", &self.page)
            .finish_non_exhaustive()
    }
}

impl Projection {
    /// Opens (or creates) the projection database at `path`.
    pub fn open(path: &Path) -> Result<Self, ProjectionError> {
        let db = Database::create(path).map_err(|source| ProjectionError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Self::with_tables(db, path.to_path_buf())
    }

    /// A projection held in memory only, for a data directory that cannot be written (a
    /// backup, a read-only mount): folded from the journal by `catch_up`, gone when dropped.
    pub fn in_memory() -> Result<Self, ProjectionError> {
        let path = PathBuf::from("(in memory)");
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|source| ProjectionError::Open {
                path: path.clone(),
                source,
            })?;
        Self::with_tables(db, path)
    }

    /// The projection over `db` (at `path`), its tables created if missing.
    fn with_tables(db: Database, path: PathBuf) -> Result<Self, ProjectionError> {
        let txn = db.begin_write()?;
        fold::create_tables(&txn, false)?;
        txn.commit()?;
        Ok(Self {
            db,
            path,
            retention: DEFAULT_RETENTION,
            page: DEFAULT_PAGE,
            states: None,
            reopen: false,
            durable_every: DEFAULT_DURABLE_EVERY,
            last_durable: std::time::Instant::now(),
            behind: false,
            unsaved: BTreeSet::new(),
        })
    }

    /// Opens the projection of a data directory (`<data>/projections.redb`).
    pub fn open_in(data: &Path) -> Result<Self, ProjectionError> {
        Self::open(&data.join(FILE_NAME))
    }

    /// Sets how long item failures are kept (R16).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the number of events per page (one write transaction each); at least 1.
    pub fn with_page(mut self, page: usize) -> Self {
        self.page = page.max(1);
        self
    }

    /// Sets how long a page may be committed without an fsync before a durable commit (zero:
    /// every page durable).
    pub fn with_durable_every(mut self, every: std::time::Duration) -> Self {
        self.durable_every = every;
        self
    }

    /// Makes every page committed so far durable, with the fold states (one fsync if some
    /// are not yet).
    pub fn sync(&mut self) -> Result<(), ProjectionError> {
        if (!self.behind && self.unsaved.is_empty()) || self.reopen {
            return Ok(());
        }
        let result = self.commit_states();
        self.note_write(&result);
        result?;
        self.behind = false;
        self.last_durable = std::time::Instant::now();
        Ok(())
    }

    /// One durable transaction writing the unsaved fold states at the checkpoint.
    fn commit_states(&mut self) -> Result<(), ProjectionError> {
        let txn = self.db.begin_write()?;
        let checkpoint = txn
            .open_table(META)?
            .get(CHECKPOINT)?
            .map(|v| v.value())
            .unwrap_or(0);
        // Without states in memory (a failed page dropped them) the saved ones stay as they
        // are, with their position: the next load refolds from there.
        if let Some(states) = &self.states {
            save_states(&txn, states, &self.unsaved, checkpoint)?;
        }
        txn.commit()?;
        self.unsaved.clear();
        Ok(())
    }

    /// After an I/O error (a full disk) redb refuses every later transaction of the handle:
    /// the next call reopens the file and folds again from its last durable checkpoint.
    fn note_write<T>(&mut self, result: &Result<T, ProjectionError>) {
        if let Err(ProjectionError::Store(redb::Error::Io(_) | redb::Error::PreviousIo)) = result {
            self.reopen = true;
            self.states = None;
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The position of the last event folded (0 before any).
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(CHECKPOINT)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Folds every event after the checkpoint, one write transaction per page.
    pub fn catch_up(&mut self, journal: &dyn Journal) -> Result<CatchUp, ProjectionError> {
        let last = journal.last_position()?;
        self.catch_up_to(journal, last)
    }

    /// Folds the events after the checkpoint up to position `until` (inclusive). After an I/O
    /// error (a full disk) the file is reopened by the next call, which then folds from the
    /// last committed checkpoint: the projection recovers once space is back, without a restart.
    pub fn catch_up_to(
        &mut self,
        journal: &dyn Journal,
        until: u64,
    ) -> Result<CatchUp, ProjectionError> {
        if self.reopen {
            self.reopen_file()?;
        }
        let result = self.fold_to(journal, until);
        self.note_write(&result);
        result
    }

    /// Drops the database handle and opens the file again (redb allows one handle per file).
    fn reopen_file(&mut self) -> Result<(), ProjectionError> {
        let placeholder = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|source| ProjectionError::Open {
                path: self.path.clone(),
                source,
            })?;
        drop(std::mem::replace(&mut self.db, placeholder));
        self.db = Database::create(&self.path).map_err(|source| ProjectionError::Open {
            path: self.path.clone(),
            source,
        })?;
        self.reopen = false;
        self.behind = false;
        self.last_durable = std::time::Instant::now();
        tracing::info!(path = %self.path.display(), "projection reopened after a failed write");
        Ok(())
    }

    fn fold_to(&mut self, journal: &dyn Journal, until: u64) -> Result<CatchUp, ProjectionError> {
        let mut done = CatchUp {
            events: 0,
            pages: 0,
            checkpoint: self.checkpoint()?,
        };
        let mut states = match self.states.take() {
            Some(s) => s,
            None => self.load_states(journal, done.checkpoint)?,
        };
        while done.checkpoint < until {
            let want = usize::try_from(until - done.checkpoint)
                .unwrap_or(usize::MAX)
                .min(self.page);
            let page = journal.read_all(done.checkpoint + 1, want)?;
            if page.is_empty() {
                break;
            }
            // A failed page leaves `self.states` unset: the next call reloads the fold state
            // of the last committed checkpoint from the file.
            let mut txn = self.db.begin_write()?;
            let durable = self.last_durable.elapsed() >= self.durable_every;
            if !durable {
                txn.set_durability(redb::Durability::None)?;
            }
            let mut fold = Fold::new(&txn, &mut states, self.retention)?;
            let mut position = done.checkpoint;
            for envelope in page {
                position = envelope.position;
                fold.apply(&Stored::decode(envelope)?)?;
                done.events += 1;
            }
            self.unsaved.extend(fold.finish()?);
            // The fold states (a mailbox's grows with its items) are written with the durable
            // pages only; a page without them is refolded from the states on the next load.
            if durable {
                save_states(&txn, &states, &self.unsaved, position)?;
            }
            txn.open_table(META)?.insert(CHECKPOINT, position)?;
            txn.commit()?;
            if durable {
                self.unsaved.clear();
            }
            if durable {
                self.last_durable = std::time::Instant::now();
                self.behind = false;
            } else {
                self.behind = true;
            }
            tracing::debug!(
                from = done.checkpoint + 1,
                to = position,
                path = %self.path.display(),
                "projection page committed"
            );
            done.checkpoint = position;
            done.pages += 1;
        }
        self.states = Some(states);
        Ok(done)
    }

    /// Drops every view and the checkpoint, then folds the journal from position 1.
    pub fn rebuild(&mut self, journal: &dyn Journal) -> Result<CatchUp, ProjectionError> {
        let txn = self.db.begin_write()?;
        fold::create_tables(&txn, true)?;
        txn.commit()?;
        self.states = Some(BTreeMap::new());
        self.unsaved.clear();
        self.catch_up(journal)
    }

    /// The fold states at `checkpoint`: the saved ones, then the mailbox events after them up
    /// to the checkpoint folded again from `journal` (those mailboxes are unsaved again).
    fn load_states(
        &mut self,
        journal: &dyn Journal,
        checkpoint: u64,
    ) -> Result<BTreeMap<MailboxId, MailboxState>, ProjectionError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(STATES)?;
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let state = MailboxState::from_snapshot(v.value()).map_err(|source| {
                ProjectionError::State {
                    mailbox: k.value().to_string(),
                    source,
                }
            })?;
            out.insert(MailboxId::new(k.value()), state);
        }
        let states_at = txn
            .open_table(META)?
            .get(STATES_AT)?
            .map_or(checkpoint, |v| v.value());
        drop(table);
        drop(txn);
        self.unsaved.clear();
        let mut at = states_at;
        while at < checkpoint {
            let want = usize::try_from(checkpoint - at)
                .unwrap_or(usize::MAX)
                .min(self.page);
            let page = journal.read_all(at + 1, want)?;
            let Some(last) = page.last().map(|e| e.position) else {
                break;
            };
            for envelope in page {
                if envelope.position > checkpoint {
                    break;
                }
                let Some(mailbox) = envelope.stream.as_mailbox() else {
                    continue;
                };
                let stored = Stored::decode(envelope)?;
                out.entry(mailbox.clone())
                    .or_default()
                    .apply(stored.meta(), &stored.event);
                self.unsaved.insert(mailbox);
            }
            at = last;
        }
        Ok(out)
    }

    /// The activities regarding `record`, and the row itself when it is an activity, in time
    /// order.
    pub fn timeline_of_record(&self, record: &RecordId) -> Result<Vec<Activity>, ProjectionError> {
        let mut ids = self.keys_under(BY_REGARDING, record.as_str())?;
        ids.push(record.as_str().to_string());
        self.activities(ids)
    }

    /// The activities a user owns, organizes or attends, in time order.
    pub fn timeline_of_user(&self, user: &UserId) -> Result<Vec<Activity>, ProjectionError> {
        let ids = self.keys_under(BY_USER, user.as_str())?;
        self.activities(ids)
    }

    /// One row, activity or not.
    pub fn row(&self, record: &RecordId) -> Result<Option<Activity>, ProjectionError> {
        let txn = self.db.begin_read()?;
        let rows = txn.open_table(ROWS)?;
        rows.get(record.as_str())?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// The links of a CRM row, one per mailbox, in mailbox order.
    pub fn links_of(&self, record: &RecordId) -> Result<Vec<ItemLink>, ProjectionError> {
        self.values_under(LINKS, record.as_str())
    }

    /// The item failures of a mailbox still within the retention, oldest first.
    pub fn failures_of_mailbox(
        &self,
        mailbox: &MailboxId,
    ) -> Result<Vec<ItemFailure>, ProjectionError> {
        let mut out: Vec<ItemFailure> = self.values_under(FAILURES, mailbox.as_str())?;
        out.sort_by(|a, b| (a.at, &a.intent, &a.remote).cmp(&(b.at, &b.intent, &b.remote)));
        Ok(out)
    }

    /// The health of each workload of a mailbox (incoming, outgoing, ACT); empty for a mailbox
    /// the journal does not know.
    pub fn health_of_mailbox(
        &self,
        mailbox: &MailboxId,
    ) -> Result<Vec<WorkloadHealth>, ProjectionError> {
        let mut out: Vec<WorkloadHealth> = self.values_under(HEALTH, mailbox.as_str())?;
        out.sort_by_key(|h| h.workload);
        Ok(out)
    }

    /// The alerts still within their retention, oldest first: every one, or those of one
    /// mailbox, or of one level.
    pub fn alerts(
        &self,
        mailbox: Option<&MailboxId>,
        level: Option<AlertLevel>,
    ) -> Result<Vec<Alert>, ProjectionError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ALERTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            let alert: Alert = decode(v.value())?;
            if mailbox.is_none_or(|m| alert.mailbox.as_ref() == Some(m))
                && level.is_none_or(|l| alert.level == l)
            {
                out.push(alert);
            }
        }
        Ok(out)
    }

    fn keys_under(
        &self,
        def: TableDefinition<&str, ()>,
        under: &str,
    ) -> Result<Vec<String>, ProjectionError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(def)?;
        let (from, to) = prefix(under);
        let mut out = Vec::new();
        for entry in table.range(from.as_str()..to.as_str())? {
            let (k, _) = entry?;
            if let Some((_, id)) = k.value().split_once('\0') {
                out.push(id.to_string());
            }
        }
        Ok(out)
    }

    fn values_under<T: serde::de::DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        under: &str,
    ) -> Result<Vec<T>, ProjectionError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(def)?;
        let (from, to) = prefix(under);
        let mut out = Vec::new();
        for entry in table.range(from.as_str()..to.as_str())? {
            let (_, v) = entry?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn activities(&self, mut ids: Vec<String>) -> Result<Vec<Activity>, ProjectionError> {
        ids.sort();
        ids.dedup();
        let txn = self.db.begin_read()?;
        let rows = txn.open_table(ROWS)?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(v) = rows.get(id.as_str())? {
                let row: Activity = decode(v.value())?;
                if row.is_activity() {
                    out.push(row);
                }
            }
        }
        out.sort_by(|a, b| (a.at, &a.record).cmp(&(b.at, &b.record)));
        Ok(out)
    }
}

/// Writes the fold states of `mailboxes` and the position they stand at.
fn save_states(
    txn: &redb::WriteTransaction,
    states: &BTreeMap<MailboxId, MailboxState>,
    mailboxes: &BTreeSet<MailboxId>,
    position: u64,
) -> Result<(), ProjectionError> {
    let mut table = txn.open_table(STATES)?;
    for mailbox in mailboxes {
        if let Some(state) = states.get(mailbox) {
            table.insert(mailbox.as_str(), state.to_snapshot().as_slice())?;
        }
    }
    txn.open_table(META)?.insert(STATES_AT, position)?;
    Ok(())
}
