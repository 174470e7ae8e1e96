//! What a command runs with: the data directory, the configuration, where its output goes, and
//! — when `ledgersync serve` holds the data directory — the running service.
//!
//! A journal (and the projection) can be open in one process only. While `serve` runs, every
//! command that reads or writes them is sent to it over its control socket
//! ([`crate::control`]) and runs inside the service with the same code: reads use the service's
//! open journal and projection, writes go to its organization actor. Without a service, the
//! command opens the data directory itself.

use crate::config::Config;
use anyhow::{Context as _, Result, anyhow, bail};
use ledgersync_domain::crm::CommandResult;
use ledgersync_domain::{Event, OrgId};
use ledgersync_engine::projection::Projection;
use ledgersync_engine::{Engine, Processed, Settled, SystemClock};
use ledgersync_journal::{Journal, JournalOptions};
use ledgersync_runtime::Service;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The journal directory inside a data directory.
pub fn journal_dir(data: &Path) -> PathBuf {
    data.join("journal")
}

/// A running service, as the control socket hands it to a command.
pub struct Live {
    /// The service.
    pub service: Arc<Service>,
    /// The runtime the service's actors run on (commands run on other threads and wait on it).
    pub runtime: tokio::runtime::Handle,
}

impl Live {
    /// Records CRM changes through the service's organization actor, recorded together in
    /// batches (`Service::crm_batch`): what each change handled did, up to the first that
    /// failed (its index and why).
    pub fn crm_batch(&self, events: Vec<Event>) -> Result<Batch> {
        let batch = self.runtime.block_on(self.service.crm_batch(events))?;
        Ok(Batch {
            processed: batch
                .routed
                .into_iter()
                .map(|routed| Processed {
                    org_event: routed.org_event,
                    mailboxes: routed.mailboxes,
                    decisions: routed.decisions,
                    already_recorded: routed.already_recorded,
                })
                .collect(),
            failed: batch.failed.map(|(i, e)| (i, anyhow::Error::new(e))),
        })
    }
}

/// What recording several changes did: one answer per change handled, in order, up to the
/// first that failed (its index among the changes, and why).
pub struct Batch {
    /// The changes handled.
    pub processed: Vec<Processed>,
    /// The first change that failed.
    pub failed: Option<(usize, anyhow::Error)>,
}

/// A command's surroundings.
pub struct Ctx<'a> {
    /// The data directory (`--data`, else the configuration's).
    pub data: Option<PathBuf>,
    /// The configuration.
    pub config: &'a Config,
    /// `--json`.
    pub json: bool,
    /// Standard output, or the control socket.
    pub out: &'a mut dyn Write,
    /// Standard error, or the control socket.
    pub err: &'a mut dyn Write,
    /// The running service, when the command runs inside it.
    pub live: Option<&'a Live>,
    /// The input a client sent along (`crm apply`: the file's name and text), read by the
    /// client because the service may not see the same files.
    pub input: Option<(String, String)>,
}

impl<'a> Ctx<'a> {
    /// The data directory, or an error saying how to give one.
    pub fn data_dir(&self) -> Result<PathBuf> {
        self.data.clone().context(
            "no data directory: pass --data DIR (or set LEDGERSYNC_DATA, or `data.dir` in the \
             configuration); `ledgersync demo` prints one to try",
        )
    }

    /// The journal of an existing data directory (the service's own when live).
    pub fn journal(&self) -> Result<Arc<dyn Journal>> {
        if let Some(live) = self.live {
            return Ok(live.service.journal().clone());
        }
        open_for_reading(&self.data_dir()?)
    }

    /// Where changes are recorded: the local engine (created with the journal when `create`
    /// and the data directory has none), or the running service.
    pub fn recorder(&self, create: bool) -> Result<Recorder<'a>> {
        let org = OrgId::new(self.config.org.clone());
        if let Some(live) = self.live {
            return Ok(Recorder::Live {
                view: None,
                live,
                org,
            });
        }
        let data = self.data_dir()?;
        let journal = if create {
            open_or_create(&data, self.config)?
        } else {
            open_existing(&data)?
        };
        check_org(journal.as_ref(), self.config)?;
        Ok(Recorder::Local(
            Engine::open(journal, org, Arc::new(SystemClock))?
                .with_snapshot_every(self.config.snapshot_every),
        ))
    }

    /// Runs `f` on the projection (`<data>/projections.redb`, the service's own when live)
    /// and the journal.
    pub fn projection<R>(
        &self,
        f: impl FnOnce(&mut Projection, &dyn Journal) -> Result<R>,
    ) -> Result<R> {
        let journal = self.journal()?;
        if let Some(live) = self.live {
            let mut projection =
                live.service.projection().lock().map_err(|_| {
                    anyhow!("the service's projection is unusable (a fold panicked)")
                })?;
            return f(&mut projection, journal.as_ref());
        }
        let data = self.data_dir()?;
        let file = data.join(ledgersync_engine::projection::FILE_NAME);
        let mut projection = match Projection::open_in(&data) {
            Ok(projection) => projection,
            // A read-only data directory (a backup, a read-only mount): the projection cannot
            // be cached there, so it is folded in memory from the journal for this command.
            Err(_) if read_only(&data) => {
                tracing::info!(
                    data = %data.display(),
                    "read-only data directory: the projection is folded in memory and not cached"
                );
                Projection::in_memory().context("folding the projection in memory")?
            }
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("opening the projection {}", file.display()));
            }
        };
        f(&mut projection, journal.as_ref())
    }
}

/// Where a command records CRM and administrative changes (see [`Ctx::recorder`]).
pub enum Recorder<'l> {
    /// This process holds the journal.
    Local(Engine),
    /// A running service does; `view` is a read-only engine, reopened after each change.
    Live {
        /// The view of the journal as of the last change (`None`: to be reopened).
        view: Option<Engine>,
        /// The service.
        live: &'l Live,
        /// The organization.
        org: OrgId,
    },
}

impl Recorder<'_> {
    /// The organization and mailbox states as recorded now.
    pub fn engine(&mut self) -> Result<&Engine> {
        match self {
            Recorder::Local(engine) => Ok(engine),
            Recorder::Live { view, live, org } => {
                if view.is_none() {
                    *view = Some(Engine::open_view(
                        live.service.journal().clone(),
                        org.clone(),
                        Arc::new(SystemClock),
                    )?);
                }
                Ok(view.as_ref().expect("just opened"))
            }
        }
    }

    /// Records a change in the organization stream and routes it to its mailboxes.
    pub fn crm(&mut self, event: Event) -> Result<Processed> {
        let mut batch = self.crm_batch(vec![event])?;
        match batch.failed {
            Some((_, e)) => Err(e),
            None => Ok(batch.processed.pop().unwrap_or_default()),
        }
    }

    /// Records the CRM's result of a CRM command in the mailbox its key names (once: a result
    /// for a command no longer open is acknowledged and recorded nowhere).
    pub fn settle(&mut self, result: &CommandResult) -> Result<Settled> {
        match self {
            Recorder::Local(engine) => Ok(engine.settle(result)?),
            Recorder::Live { view, live, .. } => {
                *view = None;
                Ok(live.runtime.block_on(live.service.settle(result.clone()))?)
            }
        }
    }

    /// Records changes in order, up to the first that fails: through a running service in
    /// batches recorded together, else one by one.
    pub fn crm_batch(&mut self, events: Vec<Event>) -> Result<Batch> {
        match self {
            Recorder::Local(engine) => {
                let mut out = Batch {
                    processed: Vec::with_capacity(events.len()),
                    failed: None,
                };
                for (i, event) in events.into_iter().enumerate() {
                    match engine.crm(event) {
                        Ok(p) => out.processed.push(p),
                        Err(e) => {
                            out.failed = Some((i, e.into()));
                            break;
                        }
                    }
                }
                Ok(out)
            }
            Recorder::Live { view, live, .. } => {
                *view = None;
                live.crm_batch(events)
            }
        }
    }
}

/// Whether `data` cannot be written (permissions or a read-only mount).
fn read_only(data: &Path) -> bool {
    let probe = data.join(format!(".ledgersync-write-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            false
        }
        Err(_) => true,
    }
}

/// Opens the journal of an existing data directory for a command that only reads it: read-only
/// and without the lock (redb; a backup or a read-only copy works), else as
/// [`open_existing`] does (sled, or a redb file that needs the repair only a writer does).
pub fn open_for_reading(data: &Path) -> Result<Arc<dyn Journal>> {
    let dir = journal_dir(data);
    if let Ok(backend) = ledgersync_journal::detect_backend(&dir)
        && backend == ledgersync_journal::Backend::Redb
    {
        let opened =
            ledgersync_journal::open_read_only(&dir, &JournalOptions::with_backend(backend));
        match opened {
            Ok(journal) => return Ok(journal),
            Err(e) if read_only(&dir) => {
                return Err(anyhow::Error::new(e)).with_context(|| {
                    format!("opening the journal in {} read-only", dir.display())
                });
            }
            Err(_) => {}
        }
    }
    open_existing(data)
}

/// Opens the journal of an existing data directory, with the backend it was created with.
pub fn open_existing(data: &Path) -> Result<Arc<dyn Journal>> {
    let dir = journal_dir(data);
    if !dir.exists() {
        bail!(
            "{} holds no journal (expected {}); pass the --data directory that `ledgersync demo`, \
             `serve` or `crm apply` created",
            data.display(),
            dir.display()
        );
    }
    let backend = ledgersync_journal::detect_backend(&dir)
        .with_context(|| format!("reading the journal marker in {}", dir.display()))?;
    let journal = ledgersync_journal::open(&dir, &JournalOptions::with_backend(backend))
        .with_context(|| format!("opening the journal in {}", dir.display()))?;
    Ok(journal)
}

/// Opens the journal of `data`, creating it (and the directory) when there is none; refuses a
/// non-empty directory that is not a ledgersync data directory.
pub fn open_or_create(data: &Path, config: &Config) -> Result<Arc<dyn Journal>> {
    if journal_dir(data).exists() {
        return open_existing(data);
    }
    if data.exists()
        && data
            .read_dir()
            .map(|mut r| r.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} is neither empty nor a ledgersync data directory (no journal/ inside); pass an \
             empty directory or one that `demo`, `serve` or `crm apply` created",
            data.display()
        );
    }
    crate::access::secure_data_dir(data, &crate::access::Policy::of(config)?)?;
    let mut options = JournalOptions::with_backend(config.backend);
    options.max_batch_events = config.max_batch_events;
    ledgersync_journal::open(&journal_dir(data), &options)
        .with_context(|| format!("creating the journal in {}", data.display()))
}

/// Refuses a journal that belongs to another organization than the configured one.
pub fn check_org(journal: &dyn Journal, config: &Config) -> Result<()> {
    let ours = format!("org/{}", config.org);
    let streams = journal.streams()?;
    let others: Vec<String> = streams
        .iter()
        .filter_map(|(s, _)| {
            s.as_str()
                .strip_prefix("org/")
                .filter(|_| s.as_str() != ours)
                .map(str::to_string)
        })
        .collect();
    if !others.is_empty() && !streams.iter().any(|(s, _)| s.as_str() == ours) {
        bail!(
            "this journal belongs to organization `{}`, not `{}`; pass a --config whose \
             `organization.id` is `{}`",
            others.join("`, `"),
            config.org,
            others[0]
        );
    }
    Ok(())
}
