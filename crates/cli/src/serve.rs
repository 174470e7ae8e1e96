//! `ledgersync serve`: the whole service on the embedded default — the redb (or sled) journal
//! in the data directory, the mailbox and organization actors, a vdir/Maildir connector per
//! configured mailbox run on the decided cadence, the projection kept current, and the
//! control socket through which the other commands reach it. Stops gracefully on SIGINT or
//! SIGTERM (docs/serve.md).

use crate::bus_config::BusKind;
use crate::config::{Config, LogFormat, MailboxConfig};
use crate::control::ControlSocket;
use crate::ctx::{Live, check_org, open_or_create};
use crate::profiles::ConnectorKind;
use anyhow::{Context as _, Result};
use ledgersync_bus::AmqpBus;
use ledgersync_bus::events::{
    CHECKPOINT_FILE, EVENTS_EXCHANGE, EventPublisher, EventPublisherConfig, EventPublisherHandle,
};
use ledgersync_connectors::imap::{ImapConfig, Security as ImapSecurity};
use ledgersync_connectors::pop3::Pop3Config;
use ledgersync_connectors::{
    ConnectorConfig, DavConfig, OutgoingConfig, Secret, SmtpConfig, SmtpTls, VdirConfig,
};
use ledgersync_domain::event::Workload;
use ledgersync_domain::{Event, MailboxId, OrgId};
use ledgersync_engine::SystemClock;
use ledgersync_runtime::sink::REPLY_TIMEOUT;
use ledgersync_runtime::{
    BusSink, MailboxEndpoint, RegistryConfig, Replies, SchedulerConfig, Service, ServiceConfig,
    Sink,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Sets up logging: `RUST_LOG` wins over the configured level.
pub fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second initialisation (tests, the demo after serve) keeps the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The service configuration of `config` on `data`. Fails when a mailbox's password cannot be
/// read (naming the mailbox and where it was looked for).
pub fn service_config(data: &Path, config: &Config) -> Result<ServiceConfig> {
    Ok(ServiceConfig {
        org: OrgId::new(config.org.clone()),
        data_dir: data.to_path_buf(),
        registry: RegistryConfig {
            idle_after: config.idle_after,
            max_recoveries: config.max_recoveries,
            snapshot_every: config.snapshot_every,
            ..RegistryConfig::default()
        },
        scheduler: SchedulerConfig {
            max_parallel: config.max_parallel_cycles,
            ..SchedulerConfig::default()
        },
        mailboxes: config
            .mailboxes
            .iter()
            .map(|m| endpoints(m, config, data))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect(),
        projection_every: config.projection_every,
        push_quiet: std::time::Duration::from_millis(500),
    })
}

/// Every connector a configured mailbox runs (its main one first, then its outgoing email's,
/// when its profile has an SMTP server), as `serve` builds them.
pub fn connector_configs(
    m: &MailboxConfig,
    config: &Config,
    data: &Path,
) -> Result<Vec<ConnectorConfig>> {
    Ok(endpoints(m, config, data)?
        .into_iter()
        .map(|e| e.connector)
        .collect())
}

/// The workload a configured mailbox's connector lists: the incoming email for a mailbox of
/// an `imap` profile, ACT for the others.
pub fn workload_of(m: &MailboxConfig, config: &Config) -> Workload {
    match &m.server {
        Some(server)
            if config
                .profiles
                .get(&server.profile)
                .is_some_and(|p| matches!(p.kind, ConnectorKind::Imap | ConnectorKind::Pop3)) =>
        {
            Workload::Incoming
        }
        _ => Workload::Act,
    }
}

/// Where the SMTP delivery of meeting messages records what the server accepted (one file per
/// message), so that a retry sends only what is missing.
const MEETING_MAIL_DIR: &str = "meeting-mail";

/// Where the outgoing email records what the SMTP server accepted (one file per email sent),
/// so that a retry never sends it twice.
const OUTGOING_MAIL_DIR: &str = "outgoing-mail";

/// The endpoints of a configured mailbox: its connector, and for a mailbox of an `imap`
/// profile with an `[profiles.<id>.smtp]` section the outgoing email's too (R75–R78): the SMTP
/// server sends, the mailbox's IMAP login finds and saves the copy in its Sent folder.
fn endpoints(m: &MailboxConfig, config: &Config, data: &Path) -> Result<Vec<MailboxEndpoint>> {
    let main = endpoint(m, config, data)?;
    // The Sent copy goes to the IMAP server; a POP3/SMTP profile has none to keep it in.
    let sent = match &main.connector {
        ConnectorConfig::Imap(imap) => Some(Some(ImapConfig {
            folders: Vec::new(),
            ..imap.clone()
        })),
        ConnectorConfig::Pop3(_) => Some(None),
        _ => None,
    };
    let outgoing = match (sent, &m.server) {
        (Some(imap), Some(server)) => {
            match &config.profiles[&server.profile].smtp {
                Some(smtp) => {
                    let mut smtp = smtp_config(smtp, &server.profile, data)?;
                    smtp.state_dir = data.join(OUTGOING_MAIL_DIR);
                    Some(MailboxEndpoint {
                        mailbox: main.mailbox.clone(),
                        connector: ConnectorConfig::Outgoing(OutgoingConfig {
                            // The mailbox's registered address (`ConnectorConfig::with_owner`).
                            address: String::new(),
                            smtp,
                            save_sent_copy: imap.is_some(),
                            imap,
                        }),
                        account: main.account.clone(),
                        watch: false,
                        list_at_start: false,
                    })
                }
                None => None,
            }
        }
        _ => None,
    };
    Ok(std::iter::once(main).chain(outgoing).collect())
}

/// The SMTP server of a profile, its password read.
fn smtp_config(
    smtp: &crate::profiles::SmtpProfile,
    profile: &str,
    data: &Path,
) -> Result<SmtpConfig> {
    let mut c = SmtpConfig::new(smtp.host.clone(), smtp.port, data.join(MEETING_MAIL_DIR));
    c.tls = match smtp.tls {
        crate::profiles::SmtpTls::None => SmtpTls::None,
        crate::profiles::SmtpTls::Starttls => SmtpTls::StartTls,
        crate::profiles::SmtpTls::Tls => SmtpTls::Tls,
    };
    c.timeout = smtp.timeout;
    c.username = smtp.username.clone();
    if let Some(source) = &smtp.password {
        let password = source
            .read()
            .with_context(|| format!("profile `{profile}`: the SMTP server's password"))?;
        c.password = Some(Secret::new(password));
    }
    Ok(c)
}

fn endpoint(m: &MailboxConfig, config: &Config, data: &Path) -> Result<MailboxEndpoint> {
    // Checked when the configuration was read.
    let timezone = m
        .timezone
        .as_deref()
        .and_then(|z| ledgersync_connectors::time_zone(z).ok());
    let owner = m.owner.clone().unwrap_or_default();
    let connector = match &m.server {
        Some(server) if config.profiles[&server.profile].kind == ConnectorKind::Pop3 => {
            let profile = &config.profiles[&server.profile];
            let pop3 = profile
                .mail
                .as_ref()
                .expect("a pop3 profile has its server (checked when read)");
            let password = server.password.read().with_context(|| {
                format!(
                    "mailbox `{}`: its password (profile `{}`, login `{}`)",
                    m.id, server.profile, server.username
                )
            })?;
            let mut c = Pop3Config::new(
                pop3.host.clone(),
                server.username.clone(),
                Secret::new(password),
            );
            c.port = pop3.port;
            c.security = if pop3.tls {
                ImapSecurity::Tls
            } else {
                ImapSecurity::Plain
            };
            c.timeout = profile.timeout;
            ConnectorConfig::Pop3(c)
        }
        Some(server) if config.profiles[&server.profile].kind == ConnectorKind::Imap => {
            let profile = &config.profiles[&server.profile];
            let imap = profile
                .mail
                .as_ref()
                .expect("an imap profile has its server (checked when read)");
            let password = server.password.read().with_context(|| {
                format!(
                    "mailbox `{}`: its password (profile `{}`, login `{}`)",
                    m.id, server.profile, server.username
                )
            })?;
            let mut c = ImapConfig::new(
                imap.host.clone(),
                server.username.clone(),
                Secret::new(password),
            );
            c.port = imap.port;
            c.security = if imap.tls {
                ImapSecurity::Tls
            } else {
                ImapSecurity::Plain
            };
            c.timeout = profile.timeout;
            c.folders = server.folders.clone();
            ConnectorConfig::Imap(c)
        }
        Some(dav) => {
            let profile = &config.profiles[&dav.profile];
            let password = dav.password.read().with_context(|| {
                format!(
                    "mailbox `{}`: its password (profile `{}`, login `{}`)",
                    m.id, dav.profile, dav.username
                )
            })?;
            let mut c = DavConfig::new(
                owner,
                profile.url.clone().unwrap_or_default(),
                dav.username.clone(),
                Secret::new(password),
            );
            c.calendar = dav.calendar.clone();
            c.tasks = dav.tasks.clone();
            c.address_book = dav.address_book.clone();
            c.timezone = timezone;
            c.max_item_bytes = config.limits.max_item_bytes;
            c.timeout = profile.timeout;
            c.ca_file = profile.ca_file.clone();
            c.smtp = profile
                .smtp
                .as_ref()
                .map(|smtp| smtp_config(smtp, &dav.profile, data))
                .transpose()?;
            if let Some(t) = &m.tracking_category {
                c.tracking_category = t.clone();
            }
            ConnectorConfig::Dav(c)
        }
        None => {
            let mut vdir = VdirConfig::new(owner);
            vdir.max_item_bytes = config.limits.max_item_bytes;
            vdir.calendar = m.calendar.clone();
            vdir.address_book = m.address_book.clone();
            vdir.maildirs = m.maildirs.clone();
            if let Some(c) = &m.tracking_category {
                vdir.tracking_category = c.clone();
            }
            vdir.timezone = timezone;
            ConnectorConfig::Vdir(vdir)
        }
    };
    // A vdir mailbox is watched when asked; an IMAP one is always pushed by IDLE.
    let watch = m.watch || matches!(connector, ConnectorConfig::Imap(_));
    Ok(MailboxEndpoint {
        mailbox: MailboxId::new(m.id.clone()),
        connector,
        account: m.account.clone(),
        watch,
        list_at_start: false,
    })
}

/// Runs the service until SIGINT or SIGTERM.
pub fn run(data: Option<PathBuf>, config: &Config, format: Option<LogFormat>) -> Result<ExitCode> {
    init_tracing(format.unwrap_or(config.log_format), &config.log_level);
    let data = data.context(
        "no data directory: pass --data DIR, set LEDGERSYNC_DATA, or set `data.dir` in the \
         configuration (config/ledgersync.toml)",
    )?;
    // 0700 (02750 with `data.group`), tightened if it was more open (access.rs).
    crate::access::secure_data_dir(&data, &crate::access::Policy::of(config)?)?;
    let journal = open_waiting_for_the_lock(&data, config)?;
    check_org(journal.as_ref(), config)?;
    create_collections(config)?;
    let system = actix::System::new();
    system.block_on(async {
        let events = start_event_stream(&data, config, &journal)?;
        let bus = connect_bus(config).await?;
        let replies = Replies::default();
        let sink = match &bus {
            Some(bus) => Sink::Bus(BusSink {
                publish: Arc::new(bus.clone()),
                replies: replies.clone(),
                timeout: REPLY_TIMEOUT,
            }),
            None => Sink::Direct,
        };
        let service = Service::start_with(
            journal,
            Arc::new(SystemClock),
            service_config(&data, config)?,
            None,
            sink,
        )
        .await
        .context("starting the service")?;
        let service = Arc::new(service);
        if let Some(bus) = bus {
            let settings = ledgersync_runtime::BusConfig {
                limits: config.limits,
                ..ledgersync_runtime::BusConfig::default()
            };
            service.attach_bus(bus, replies, settings);
            tracing::info!(
                url = %ledgersync_bus::redact_url(&config.bus.url),
                partitions = config.bus.partitions,
                "consuming CRM lines from the CRM queue and observations from the partitions"
            );
        }
        let live = Arc::new(Live {
            service: service.clone(),
            runtime: tokio::runtime::Handle::current(),
        });
        let mut control = ControlSocket::bind(&data, live, config.clone())?;
        tracing::info!(
            data = %data.display(),
            socket = %control.path().display(),
            organization = %config.org,
            "ready: `ledgersync --data {} crm apply FILE.jsonl`, `mailbox list`, `timeline ROW` reach this service; stop with Ctrl-C or SIGTERM",
            data.display()
        );
        let signal = stop_signal().await?;
        tracing::info!(signal, "stopping: finishing the run in progress");
        control.close();
        let checkpoint = service.stop().await?;
        if let Some(events) = events {
            let confirmed = events.confirmed();
            match events.stop().await {
                Ok(()) => tracing::info!(confirmed, "event stream stopped"),
                Err(e) => tracing::error!(confirmed, error = %e, "the event stream had stopped"),
            }
        }
        tracing::info!(checkpoint, "stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// With `bus.kind = "amqp"` and `bus.publish_events` (its default there), starts the
/// publisher of the public event stream: the journal on `ledgersync.events` from the
/// checkpoint in `<data>/event-stream.checkpoint` (docs/event-stream.md). It connects in the
/// background, retrying with backoff, so a broker that is down delays the stream, not `serve`.
fn start_event_stream(
    data: &Path,
    config: &Config,
    journal: &Arc<dyn ledgersync_journal::Journal>,
) -> Result<Option<EventPublisherHandle>> {
    if config.bus.kind != BusKind::Amqp || !config.bus.publish_events {
        return Ok(None);
    }
    let settings = EventPublisherConfig::new(
        config.bus.url.clone(),
        config.org.clone(),
        data.join(CHECKPOINT_FILE),
    );
    let publisher = EventPublisher::new(journal.clone(), settings)
        .and_then(EventPublisher::spawn)
        .context("starting the public event stream (`[bus]` in the configuration)")?;
    tracing::info!(
        url = %ledgersync_bus::redact_url(&config.bus.url),
        exchange = EVENTS_EXCHANGE,
        after = publisher.confirmed(),
        "publishing the journal on the event stream"
    );
    Ok(Some(publisher))
}

/// With `bus.kind = "amqp"`: the broker, its topology declared. A broker that cannot be
/// reached stops `serve` here, saying how to start one.
async fn connect_bus(config: &Config) -> Result<Option<Arc<AmqpBus>>> {
    if config.bus.kind != BusKind::Amqp {
        return Ok(None);
    }
    let bus = AmqpBus::connect(config.bus.amqp(), Arc::new(SystemClock))
        .await
        .with_context(|| {
            format!(
                "connecting to the bus at {} (`[bus]` in the configuration)",
                ledgersync_bus::redact_url(&config.bus.url)
            )
        })?;
    Ok(Some(Arc::new(bus)))
}

/// How long `serve` waits for another process (a command run a moment before) to release the
/// journal before giving up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens (or creates) the journal; while another process holds it — typically a command that
/// ran on the data directory just before `serve` started — waits up to [`LOCK_WAIT`].
fn open_waiting_for_the_lock(
    data: &Path,
    config: &Config,
) -> Result<Arc<dyn ledgersync_journal::Journal>> {
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        match open_or_create(data, config) {
            Ok(journal) => return Ok(journal),
            Err(e)
                if started.elapsed() < LOCK_WAIT
                    && matches!(
                        e.downcast_ref::<ledgersync_journal::OpenError>(),
                        Some(ledgersync_journal::OpenError::Locked { .. })
                    ) =>
            {
                if !told {
                    tracing::info!(error = %format!("{e:#}"), "waiting up to {} s for the journal", LOCK_WAIT.as_secs());
                    told = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates the missing collection directories of the configured mailboxes (a collection that
/// cannot be listed is a permanent error that disables the mailbox's ACT workload, R10).
pub fn create_collections(config: &Config) -> Result<()> {
    for m in &config.mailboxes {
        for dir in [&m.calendar, &m.address_book].into_iter().flatten() {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "creating the collection {} of mailbox `{}` (check its [[mailbox]] table)",
                    dir.display(),
                    m.id
                )
            })?;
        }
    }
    Ok(())
}

/// Waits for SIGINT or SIGTERM; answers its name.
async fn stop_signal() -> Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// What one `mailbox sync` run did.
#[derive(Debug)]
pub struct SyncReport {
    /// The terminal event of the listing (`listing_completed`, `listing_partial`,
    /// `listing_failed`).
    pub terminal: &'static str,
    /// `item_seen` observations recorded.
    pub seen: usize,
    /// `item_gone` observations recorded.
    pub gone: usize,
    /// Items the connector could not read.
    pub failures: Vec<String>,
    /// Decisions recorded (listing and intent outcomes).
    pub decisions: usize,
    /// Intents carried out, and how many succeeded.
    pub executed: usize,
    /// Of them, succeeded.
    pub succeeded: usize,
    /// The terminal event's reason, for a partial or failed listing.
    pub reason: Option<String>,
}

/// How long `mailbox sync` waits for the mailbox's cycle.
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// `mailbox sync M` without a running service: starts the service for `mailbox` alone, runs
/// its pending intents and one listing cycle through the real driver, records what it saw,
/// and stops. The workload of its connector (ACT, or the incoming email of an IMAP profile)
/// must be enabled (Test & Enable).
pub fn sync_once(data: &Path, config: &Config, mailbox: &str) -> Result<SyncReport> {
    let Some(m) = config.mailboxes.iter().find(|m| m.id == mailbox) else {
        let names: Vec<&str> = config.mailboxes.iter().map(|m| m.id.as_str()).collect();
        anyhow::bail!(
            "mailbox `{mailbox}` has no [[mailbox]] table in the configuration (configured: {}); \
             `mailbox sync` runs the connector the configuration gives it",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
    };
    crate::access::secure_data_dir(data, &crate::access::Policy::of(config)?)?;
    let journal = open_waiting_for_the_lock(data, config)?;
    check_org(journal.as_ref(), config)?;
    let mut only = config.clone();
    only.mailboxes = vec![m.clone()];
    create_collections(&only)?;
    let mut service_config = service_config(data, &only)?;
    for endpoint in &mut service_config.mailboxes {
        endpoint.watch = false;
        // The server answers while the journal, the organization and the mailbox recover.
        endpoint.list_at_start = true;
    }
    let id = MailboxId::new(mailbox);
    let workload = service_config
        .mailboxes
        .first()
        .map_or(Workload::Act, |e| e.connector.workload());
    // The service's warnings (an unreadable item, a failed listing) reach the terminal;
    // `RUST_LOG` shows more.
    init_tracing(config.log_format, "warn");
    actix::System::new().block_on(async {
        let (reports, mut ticks) = tokio::sync::mpsc::unbounded_channel();
        let service = Service::start(
            journal,
            Arc::new(SystemClock),
            service_config,
            Some(reports),
        )
        .await
        .context("starting the service")?;
        let org = service.org().await?;
        if !org.state.mailboxes.contains_key(&id) {
            service.stop().await?;
            anyhow::bail!(
                "mailbox `{mailbox}` is not registered in the organization: record its \
                 `mailbox_registered` with `ledgersync crm apply` first"
            );
        }
        let view = service
            .registry()
            .send(ledgersync_runtime::InspectMailbox::new(id.clone()))
            .await
            .context("the mailbox registry")??;
        if !view.state.workload(workload).enabled {
            service.stop().await?;
            anyhow::bail!(
                "the {workload} workload of `{mailbox}` is not enabled: run `ledgersync mailbox \
                 test-enable {mailbox}` first (R6)"
            );
        }
        // A mailbox already due runs at the scheduler's first tick; a push would run it a
        // second time. One that is not due yet is pushed.
        let due = view
            .state
            .workload(workload)
            .next_run
            .is_none_or(|at| at <= view.now);
        if !due {
            service.push(id.clone(), workload);
        }
        let ran = tokio::time::timeout(SYNC_WAIT, async {
            while let Some(mut tick) = ticks.recv().await {
                if let Some(i) = tick.ran.iter().position(|r| r.mailbox == id) {
                    return Ok(tick.ran.swap_remove(i));
                }
                if let Some((_, e)) = tick.failed.into_iter().find(|(m, _)| *m == id) {
                    return Err(anyhow::Error::new(e));
                }
            }
            Err(anyhow::anyhow!(
                "the scheduler stopped before `{mailbox}` ran"
            ))
        })
        .await;
        service.stop().await?;
        let ran = ran.map_err(|_| {
            anyhow::anyhow!("`{mailbox}` did not run within {} s", SYNC_WAIT.as_secs())
        })??;
        let reason = ran.cycle.observations.last().and_then(|(_, e)| match e {
            Event::ListingPartial(p) => Some(p.reason.clone()),
            Event::ListingFailed(f) => Some(format!("{}: {}", f.error.code, f.error.message)),
            _ => None,
        });
        Ok(SyncReport {
            terminal: ran.cycle.terminal,
            seen: ran.cycle.count("item_seen") + ran.cycle.count("email_received"),
            gone: ran.cycle.count("item_gone"),
            failures: ran.cycle.failures.iter().map(|f| f.to_string()).collect(),
            decisions: ran.cycle.decisions.len() + ran.executed.decisions.len(),
            executed: ran.executed.outcomes.len(),
            succeeded: ran.executed.succeeded(),
            reason,
        })
    })
}
