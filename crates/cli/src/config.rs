//! The configuration file (`config/ledgersync.toml`): data directory, journal backend,
//! organization, and what `serve` runs — logging, the actors, and the connector of each
//! mailbox. Unknown keys and bad values are errors that name the file, the key and the allowed
//! values.

use anyhow::{Context as _, Result, anyhow};
use ledgersync_domain::Limits;
use ledgersync_journal::Backend;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    data: DataSection,
    #[serde(default)]
    journal: JournalSection,
    #[serde(default)]
    organization: OrgSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    runtime: RuntimeSection,
    #[serde(default)]
    mailbox: Vec<MailboxSection>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    bus: crate::bus_config::BusSection,
    #[serde(default)]
    profiles: std::collections::BTreeMap<String, crate::profiles::ProfileSection>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogSection {
    format: Option<String>,
    level: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RuntimeSection {
    idle_after_seconds: Option<u64>,
    max_recoveries: Option<usize>,
    projection_every_seconds: Option<u64>,
    max_parallel_cycles: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MailboxSection {
    id: String,
    account: Option<String>,
    owner: Option<String>,
    calendar: Option<PathBuf>,
    address_book: Option<PathBuf>,
    maildirs: Option<PathBuf>,
    tracking_category: Option<String>,
    /// Removed (the delete breaker's organization settings replace it): read only to refuse
    /// it with a message naming them.
    mass_delete_percent: Option<serde::de::IgnoredAny>,
    watch: Option<bool>,
    timezone: Option<String>,
    profile: Option<String>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    tasks: Option<String>,
    folders: Option<Vec<String>>,
}

/// How `serve` logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// One mailbox's connector, as configured in a `[[mailbox]]` table.
#[derive(Debug, Clone)]
pub struct MailboxConfig {
    /// Mailbox id (as registered in the organization).
    pub id: String,
    /// Account its connections count against (default: the mailbox id).
    pub account: String,
    /// The owner's address (default: the registered address).
    pub owner: Option<String>,
    /// vdir calendar directory (`None` for a CalDAV or IMAP mailbox: see `server`).
    pub calendar: Option<PathBuf>,
    /// vdir address-book directory (`None` for a CalDAV mailbox).
    pub address_book: Option<PathBuf>,
    /// The server side of a mailbox of a `caldav` or `imap` profile; `None`: a vdir mailbox.
    pub server: Option<crate::profiles::ServerMailbox>,
    /// Directory of attendee Maildirs (meeting cancellations).
    pub maildirs: Option<PathBuf>,
    /// Tracking category.
    pub tracking_category: Option<String>,
    /// Watch the collections and push changes made by other programs (default true).
    pub watch: bool,
    /// The owner's IANA time zone (floating times, all-day dates); `None`: UTC.
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DataSection {
    dir: Option<PathBuf>,
    /// A group given read access to the data directory and use of the control socket.
    group: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct JournalSection {
    backend: Option<String>,
    max_batch_events: Option<usize>,
    snapshot_every: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OrgSection {
    id: Option<String>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory, if configured.
    pub data: Option<PathBuf>,
    /// Journal backend for new journals.
    pub backend: Backend,
    /// Group commit batch limit.
    pub max_batch_events: usize,
    /// Snapshot interval.
    pub snapshot_every: u64,
    /// Organization id.
    pub org: String,
    /// Log format of `serve`.
    pub log_format: LogFormat,
    /// Log filter of `serve` (`RUST_LOG` wins).
    pub log_level: String,
    /// Idle time before a mailbox actor is passivated.
    pub idle_after: std::time::Duration,
    /// Recoveries at once.
    pub max_recoveries: usize,
    /// The projection catches up at least this often.
    pub projection_every: std::time::Duration,
    /// Mailbox cycles run at the same time.
    pub max_parallel_cycles: usize,
    /// The mailboxes `serve` connects.
    pub mailboxes: Vec<MailboxConfig>,
    /// `data.group`: the group (name or number) that may read the data directory and use the
    /// control socket besides its owner and root (`access.rs`); `None`: the owner alone.
    pub data_group: Option<String>,
    /// Size limits (`[limits]`): a CRM change file, line and field, a connector item.
    pub limits: Limits,
    /// `[bus]`: the bus and the public event stream.
    pub bus: crate::bus_config::BusConfig,
    /// `[profiles.<id>]`: how the servers of each server profile are reached.
    pub profiles: std::collections::BTreeMap<String, crate::profiles::Profile>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data: None,
            backend: Backend::Redb,
            max_batch_events: 4096,
            snapshot_every: ledgersync_engine::engine::DEFAULT_SNAPSHOT_EVERY,
            org: "serenity".into(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            idle_after: std::time::Duration::from_secs(120),
            max_recoveries: 50,
            projection_every: std::time::Duration::from_secs(1),
            max_parallel_cycles: 16,
            mailboxes: Vec::new(),
            data_group: None,
            limits: Limits::default(),
            bus: crate::bus_config::BusConfig::default(),
            profiles: std::collections::BTreeMap::new(),
        }
    }
}

impl Config {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let file: File = toml::from_str(text)
            .map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let mut c = Config {
            data: file.data.dir,
            limits: checked_limits(file.limits, path)?,
            ..Config::default()
        };
        if let Some(group) = file.data.group {
            crate::access::Group::resolve(&group).map_err(|e| {
                anyhow!(
                    "{}: key `data.group` cannot be `{group}`: {e:#}",
                    path.display()
                )
            })?;
            c.data_group = Some(group);
        }
        if let Some(b) = file.journal.backend {
            c.backend = b.parse().map_err(|_| {
                anyhow!(
                    "{}: key `journal.backend` cannot be `{b}`; allowed values: redb, sled",
                    path.display()
                )
            })?;
        }
        if let Some(n) = file.journal.max_batch_events {
            if !(1..=1_000_000).contains(&n) {
                return Err(anyhow!(
                    "{}: key `journal.max_batch_events` must be between 1 and 1000000, got {n}",
                    path.display()
                ));
            }
            c.max_batch_events = n;
        }
        if let Some(n) = file.journal.snapshot_every {
            if n == 0 {
                return Err(anyhow!(
                    "{}: key `journal.snapshot_every` must be at least 1",
                    path.display()
                ));
            }
            c.snapshot_every = n;
        }
        if let Some(id) = file.organization.id {
            if id.is_empty() || id.contains('/') {
                return Err(anyhow!(
                    "{}: key `organization.id` must be a non-empty name without `/`, got `{id}`",
                    path.display()
                ));
            }
            c.org = id;
        }
        let file_name = path.display();
        c.bus = file.bus.check(&file_name.to_string())?;
        c.profiles = crate::profiles::check(file.profiles, &file_name.to_string())?;
        if let Some(f) = file.log.format {
            c.log_format = match f.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(anyhow!(
                        "{file_name}: key `log.format` cannot be `{f}`; allowed values: text, json"
                    ));
                }
            };
        }
        if let Some(level) = file.log.level {
            check_log_level(&level).map_err(|e| anyhow!("{file_name}: {e}"))?;
            tracing_subscriber::EnvFilter::try_new(&level).map_err(|e| {
                anyhow!(
                    "{file_name}: key `log.level` cannot be `{level}` ({e}); allowed values: \
                     error, warn, info, debug, trace, or a filter such as \
                     `info,ledgersync_runtime=debug`"
                )
            })?;
            c.log_level = level;
        }
        if let Some(s) = file.runtime.idle_after_seconds {
            if !(1..=86_400).contains(&s) {
                return Err(anyhow!(
                    "{file_name}: key `runtime.idle_after_seconds` must be between 1 and 86400, got {s}"
                ));
            }
            c.idle_after = std::time::Duration::from_secs(s);
        }
        if let Some(n) = file.runtime.max_recoveries {
            if !(1..=10_000).contains(&n) {
                return Err(anyhow!(
                    "{file_name}: key `runtime.max_recoveries` must be between 1 and 10000, got {n}"
                ));
            }
            c.max_recoveries = n;
        }
        if let Some(s) = file.runtime.projection_every_seconds {
            if !(1..=3_600).contains(&s) {
                return Err(anyhow!(
                    "{file_name}: key `runtime.projection_every_seconds` must be between 1 and 3600, got {s}"
                ));
            }
            c.projection_every = std::time::Duration::from_secs(s);
        }
        if let Some(n) = file.runtime.max_parallel_cycles {
            if !(1..=1_000).contains(&n) {
                return Err(anyhow!(
                    "{file_name}: key `runtime.max_parallel_cycles` must be between 1 and 1000, got {n}"
                ));
            }
            c.max_parallel_cycles = n;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, m) in file.mailbox.into_iter().enumerate() {
            let at = format!("{file_name}: [[mailbox]] #{} (`{}`)", i + 1, m.id);
            if m.id.is_empty() || m.id.contains('/') {
                return Err(anyhow!(
                    "{at}: key `id` must be a non-empty mailbox id without `/`"
                ));
            }
            if !seen.insert(m.id.clone()) {
                return Err(anyhow!(
                    "{at}: mailbox `{}` is configured twice; one [[mailbox]] table per mailbox",
                    m.id
                ));
            }
            let server = crate::profiles::server_mailbox(
                crate::profiles::MailboxServerKeys {
                    profile: m.profile,
                    username: m.username,
                    password_file: m.password_file,
                    password_env: m.password_env,
                    tasks: m.tasks,
                    folders: m.folders,
                },
                (m.calendar.as_deref(), m.address_book.as_deref()),
                &[
                    ("maildirs", m.maildirs.is_some()),
                    ("watch", m.watch.is_some()),
                ],
                &c.profiles,
                &at,
            )?;
            if server.is_none() && m.calendar.is_none() && m.address_book.is_none() {
                return Err(anyhow!(
                    "{at}: give at least one of the keys `calendar`, `address_book` (vdir directories)"
                ));
            }
            let (calendar, address_book) = if server.is_some() {
                (None, None)
            } else {
                (m.calendar, m.address_book)
            };
            if m.mass_delete_percent.is_some() {
                return Err(anyhow!(
                    "{at}: key `mass_delete_percent` was removed: how many deletes one cycle may make is \
                     decided by the delete breaker on the organization settings `delete_breaker_percent` \
                     (default 20) and `delete_breaker_items` (default 50); record them with \
                     `ledgersync crm apply` (a `setting_changed` line) and remove this key"
                ));
            }
            if let Some(zone) = &m.timezone {
                ledgersync_connectors::time_zone(zone)
                    .map_err(|e| anyhow!("{at}: key `timezone`: {e}"))?;
            }
            c.mailboxes.push(MailboxConfig {
                account: m.account.unwrap_or_else(|| m.id.clone()),
                id: m.id,
                owner: m.owner,
                calendar,
                address_book,
                server,
                maildirs: m.maildirs,
                tracking_category: m.tracking_category,
                watch: m.watch.unwrap_or(true),
                timezone: m.timezone,
            });
        }
        check_collections(&c.mailboxes, &file_name.to_string())?;
        Ok(c)
    }
}

/// The levels `log.level` takes, alone or after `target=`.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Refuses a `log.level` that `EnvFilter` would take as something else than meant: a bare word
/// that is not a level (`verbose`) parses as a target name, which logs nothing of ledgersync.
fn check_log_level(level: &str) -> Result<()> {
    let allowed = "allowed values: off, error, warn, info, debug, trace, or comma-separated \
                   directives `target=level` such as `info,ledgersync_runtime=debug`";
    if level.trim().is_empty() {
        return Err(anyhow!("key `log.level` is empty; {allowed}"));
    }
    for directive in level.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        let bare = !directive.contains('=') && !directive.contains('[');
        if bare && !LOG_LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(anyhow!(
                "key `log.level` cannot be `{level}`: `{directive}` is not a level (to name a \
                 target, write `{directive}=debug`); {allowed}"
            ));
        }
        if let Some((_, lvl)) = directive.rsplit_once('=')
            && !LOG_LEVELS.contains(&lvl.trim().to_ascii_lowercase().as_str())
        {
            return Err(anyhow!(
                "key `log.level` cannot be `{level}`: `{}` in `{directive}` is not a level; \
                 {allowed}",
                lvl.trim()
            ));
        }
    }
    Ok(())
}

/// The path a collection is compared under: absolute, `.` and `..` resolved, symlinks resolved
/// when it exists.
fn normalised(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Refuses collections two mailboxes share, and collections that are not directories (a
/// file, a socket, a device) or live under `/dev`, `/proc` or `/sys`.
fn check_collections(mailboxes: &[MailboxConfig], file_name: &str) -> Result<()> {
    let mut owners: std::collections::BTreeMap<PathBuf, (usize, String, &str)> =
        std::collections::BTreeMap::new();
    for (i, m) in mailboxes.iter().enumerate() {
        let at = format!("{file_name}: [[mailbox]] #{} (`{}`)", i + 1, m.id);
        for (key, path) in [
            ("calendar", &m.calendar),
            ("address_book", &m.address_book),
            ("maildirs", &m.maildirs),
        ] {
            let Some(path) = path else { continue };
            let real = normalised(path);
            if ["/dev", "/proc", "/sys"]
                .iter()
                .any(|special| real.starts_with(special))
            {
                return Err(anyhow!(
                    "{at}: key `{key}` is `{}`, a system path ({}): give the directory of a \
                     vdir collection (one file per item)",
                    path.display(),
                    real.display()
                ));
            }
            if let Ok(meta) = std::fs::metadata(&real)
                && !meta.is_dir()
            {
                let what = file_kind(&meta);
                return Err(anyhow!(
                    "{at}: key `{key}` is `{}`, which is {what}, not a directory: give the \
                     directory of the collection (one file per item)",
                    path.display()
                ));
            }
            if key == "maildirs" {
                continue;
            }
            if let Some((j, other_id, other_key)) = owners.get(&real) {
                return Err(anyhow!(
                    "{at}: key `{key}` is `{}`, the same collection as `{other_key}` of \
                     [[mailbox]] #{} (`{other_id}`) ({}); two mailboxes syncing one collection \
                     would act on each other's items: give each mailbox its own collection",
                    path.display(),
                    j + 1,
                    real.display()
                ));
            }
            owners.insert(real, (i, m.id.clone(), key));
        }
    }
    Ok(())
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_socket() {
        "a socket"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "a file"
    }
}

/// The `[limits]` table: every limit at least 1 KiB, a line within a file, a field within a line.
fn checked_limits(l: Limits, path: &Path) -> Result<Limits> {
    let file = path.display();
    for (key, v) in [
        ("max_file_bytes", l.max_file_bytes),
        ("max_line_bytes", l.max_line_bytes),
        ("max_body_bytes", l.max_body_bytes),
        ("max_field_bytes", l.max_field_bytes),
        ("max_item_bytes", l.max_item_bytes),
    ] {
        if v < 1024 {
            return Err(anyhow!(
                "{file}: key `limits.{key}` must be at least 1024 (bytes), got {v}"
            ));
        }
    }
    if l.max_line_bytes > l.max_file_bytes {
        return Err(anyhow!(
            "{file}: key `limits.max_line_bytes` ({}) cannot exceed `limits.max_file_bytes` ({})",
            l.max_line_bytes,
            l.max_file_bytes
        ));
    }
    if l.max_body_bytes.max(l.max_field_bytes) > l.max_line_bytes {
        return Err(anyhow!(
            "{file}: keys `limits.max_body_bytes` and `limits.max_field_bytes` cannot exceed \
             `limits.max_line_bytes` ({}): a field is part of a line",
            l.max_line_bytes
        ));
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/ledgersync.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.backend, Backend::Redb);
        assert_eq!(c.org, "serenity");
    }

    #[test]
    fn the_shipped_caldav_config_parses_into_caldav_mailboxes_with_an_smtp_server() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/radicale.toml");
        let c = Config::load(&path).unwrap();
        let groupware = &c.profiles["groupware"];
        assert_eq!(groupware.kind, crate::profiles::ConnectorKind::Caldav);
        assert_eq!(groupware.url.as_deref(), Some("http://127.0.0.1:5232/"));
        let smtp = groupware.smtp.as_ref().unwrap();
        assert_eq!(
            (smtp.port, smtp.tls),
            (2525, crate::profiles::SmtpTls::None)
        );
        assert_eq!(c.mailboxes.len(), 2);
        for m in &c.mailboxes {
            let dav = m.server.as_ref().expect("a caldav mailbox");
            assert_eq!(dav.profile, "groupware");
            assert!(matches!(
                dav.password,
                crate::profiles::PasswordSource::Env(_)
            ));
            assert!(m.calendar.is_none() && m.address_book.is_none());
        }
    }

    #[test]
    fn profile_and_mailbox_server_keys_are_checked_with_their_table() {
        let at = |text: &str| {
            Config::parse(text, Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        let caldav = "[profiles.g]\nkind = \"caldav\"\nurl = \"http://h/\"\n";
        assert!(at("[profiles.g]\nkind = \"exchange\"\n").contains(
            "[profiles.g]: key `kind` cannot be `exchange`; allowed values: vdir, caldav, imap, pop3"
        ));
        assert!(at("[profiles.g]\nkind = \"caldav\"\n").contains("key `url` is missing"));
        assert!(
            at("[profiles.g]\nkind = \"caldav\"\nurl = \"ftp://h/\"\n")
                .contains("give an http:// or https:// URL")
        );
        assert!(
            at(&format!(
                "{caldav}[profiles.g.smtp]\nhost = \"h\"\ntls = \"ssl\"\n"
            ))
            .contains("key `tls` cannot be `ssl`")
        );
        let mailbox = "[[mailbox]]\nid = \"ana\"\n";
        assert!(
            at(&format!("{caldav}{mailbox}profile = \"other\"\n"))
                .contains("names `other`, which has no [profiles.other] table (defined: g)")
        );
        assert!(
            at(&format!(
                "{caldav}{mailbox}profile = \"g\"\npassword_env = \"P\"\n"
            ))
            .contains("key `username` is missing")
        );
        assert!(
            at(&format!(
                "{caldav}{mailbox}profile = \"g\"\nusername = \"ana\"\n"
            ))
            .contains("a password is never written in the configuration")
        );
        assert!(
            at(&format!(
                "{caldav}{mailbox}profile = \"g\"\nusername = \"ana\"\npassword_env = \"P\"\nwatch = true\n"
            ))
            .contains("key `watch` applies to vdir mailboxes only")
        );
        assert!(
            at(&format!("{mailbox}calendar = \"c\"\nusername = \"ana\"\n")).contains(
                "key `username` applies to mailboxes of a `caldav` or `imap` profile only"
            )
        );
        assert!(
            at(&format!(
                "{mailbox}calendar = \"c\"\npassword_file = \"f\"\npassword_env = \"P\"\n"
            ))
            .contains("not both")
        );
    }

    #[test]
    fn a_pop3_profile_reads_its_server_and_its_mailboxes_take_no_folders() {
        let pop3 = "[profiles.mail]\nkind = \"pop3\"\nurl = \"pop3s://mail.example.org\"\n";
        let mailbox = "[[mailbox]]\nid = \"ana\"\nprofile = \"mail\"\nusername = \"ana\"\npassword_env = \"P\"\n";
        let c = Config::parse(&format!("{pop3}{mailbox}"), Path::new("c.toml")).unwrap();
        let server = c.profiles["mail"].mail.as_ref().unwrap();
        assert_eq!((server.port, server.tls), (995, true));
        assert_eq!(
            crate::serve::workload_of(&c.mailboxes[0], &c),
            ledgersync_domain::event::Workload::Incoming
        );
        let e = Config::parse(
            &format!("{pop3}{mailbox}folders = [\"INBOX/A\"]\n"),
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("does not apply") && e.contains("a POP3 server"),
            "{e}"
        );
        let e = Config::parse(
            "[profiles.mail]\nkind = \"pop3\"\nurl = \"imap://h\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("give `pop3s://host`"), "{e}");
    }

    #[test]
    fn the_shipped_mail_config_parses_into_an_imap_mailbox() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/mail.toml");
        let c = Config::load(&path).unwrap();
        let mail = &c.profiles["mail"];
        assert_eq!(mail.kind, crate::profiles::ConnectorKind::Imap);
        let server = mail.mail.as_ref().unwrap();
        assert_eq!(
            (server.host.as_str(), server.port, server.tls),
            ("127.0.0.1", 1143, false)
        );
        let kaylee = c.mailboxes[0].server.as_ref().expect("an imap mailbox");
        assert_eq!(kaylee.username, "kaylee@serenity.example");
        assert!(kaylee.folders.is_empty());
    }

    #[test]
    fn an_imap_profile_reads_its_server_from_the_url_and_its_mailboxes_name_folders() {
        let imap = "[profiles.mail]\nkind = \"imap\"\nurl = \"imap://127.0.0.1:1143\"\n";
        let mailbox = "[[mailbox]]\nid = \"ana\"\nprofile = \"mail\"\nusername = \"ana\"\npassword_env = \"P\"\n";
        let c = Config::parse(
            &format!("{imap}{mailbox}folders = [\"INBOX/Customers\"]\n"),
            Path::new("c.toml"),
        )
        .unwrap();
        let server = c.profiles["mail"].mail.as_ref().unwrap();
        assert_eq!(
            (server.host.as_str(), server.port, server.tls),
            ("127.0.0.1", 1143, false)
        );
        assert_eq!(
            c.mailboxes[0].server.as_ref().unwrap().folders,
            ["INBOX/Customers"]
        );
        let tls = Config::parse(
            "[profiles.mail]\nkind = \"imap\"\nurl = \"imaps://mail.example.org\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let server = tls.profiles["mail"].mail.as_ref().unwrap();
        assert_eq!((server.port, server.tls), (993, true));
        let at = |text: &str| {
            Config::parse(text, Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        assert!(
            at("[profiles.mail]\nkind = \"imap\"\n")
                .contains("key `url` is missing: give the mail server")
        );
        assert!(
            at("[profiles.mail]\nkind = \"imap\"\nurl = \"https://h/\"\n")
                .contains("give `imaps://host`")
        );
        assert!(
            at(&format!("{imap}{mailbox}calendar = \"Work\"\n"))
                .contains("key `calendar / address_book / tasks` does not apply")
        );
        let caldav = "[profiles.mail]\nkind = \"caldav\"\nurl = \"http://h/\"\n";
        assert!(
            at(&format!("{caldav}{mailbox}folders = [\"INBOX/A\"]\n"))
                .contains("key `folders` does not apply")
        );
        let many: Vec<String> = (0..26).map(|i| format!("\"INBOX/F{i}\"")).collect();
        assert!(
            at(&format!("{imap}{mailbox}folders = [{}]\n", many.join(", ")))
                .contains("at most 25 are tracked besides INBOX")
        );
    }

    #[test]
    fn unknown_key_names_file_key_and_allowed_keys() {
        let e = Config::parse("[journal]\nbacknd = \"sled\"\n", Path::new("my.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("my.toml"), "{e}");
        assert!(e.contains("backnd"), "{e}");
        assert!(e.contains("backend"), "{e}");
    }

    #[test]
    fn a_mailbox_without_a_collection_is_refused_with_its_table() {
        let e = Config::parse("[[mailbox]]\nid = \"ana\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml") && e.contains("#1 (`ana`)"), "{e}");
        assert!(e.contains("calendar") && e.contains("address_book"), "{e}");
    }

    #[test]
    fn the_removed_mass_delete_percent_names_the_delete_breaker_settings() {
        let e = Config::parse(
            "[[mailbox]]\nid = \"ana\"\ncalendar = \"c\"\nmass_delete_percent = 50\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("c.toml") && e.contains("#1 (`ana`)"), "{e}");
        assert!(
            e.contains("`mass_delete_percent` was removed")
                && e.contains("delete_breaker_percent")
                && e.contains("delete_breaker_items"),
            "{e}"
        );
    }

    #[test]
    fn a_mailbox_time_zone_is_an_iana_name() {
        let ok = Config::parse(
            "[[mailbox]]\nid = \"ana\"\ncalendar = \"c\"\ntimezone = \"Europe/Berlin\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(ok.mailboxes[0].timezone.as_deref(), Some("Europe/Berlin"));
        let e = Config::parse(
            "[[mailbox]]\nid = \"ana\"\ncalendar = \"c\"\ntimezone = \"Mars/Olympus\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("timezone") && e.contains("Mars/Olympus"), "{e}");
    }

    #[test]
    fn a_bad_log_format_names_the_allowed_values() {
        let e = Config::parse("[log]\nformat = \"xml\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.format") && e.contains("text, json"), "{e}");
    }

    #[test]
    fn limits_have_defaults_and_are_checked() {
        let c = Config::parse("", Path::new("c.toml")).unwrap();
        assert_eq!(c.limits, Limits::default());
        let c = Config::parse("[limits]\nmax_line_bytes = 2097152\n", Path::new("c.toml")).unwrap();
        assert_eq!(c.limits.max_line_bytes, 2097152);
        let e = Config::parse("[limits]\nmax_line_bytes = 4096\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot exceed `limits.max_line_bytes`"), "{e}");
        let e = Config::parse("[limits]\nmax_field_bytes = 0\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_field_bytes"), "{e}");
        let e = Config::parse("[limits]\nmax_lines = 3\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("max_lines") && e.contains("max_line_bytes"),
            "{e}"
        );
    }

    #[test]
    fn bad_backend_names_allowed_values() {
        let e = Config::parse("[journal]\nbackend = \"rocks\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("journal.backend") && e.contains("redb, sled"),
            "{e}"
        );
    }

    #[test]
    fn log_level_takes_levels_and_directives_only() {
        for ok in [
            "info",
            "DEBUG",
            "warn,ledgersync_runtime=debug",
            "off",
            "a::b=trace",
        ] {
            let level = format!("[log]\nlevel = \"{ok}\"\n");
            Config::parse(&level, Path::new("c.toml")).unwrap();
        }
        for bad in ["verbose", "info,chatty", "ledgersync=loud", ""] {
            let level = format!("[log]\nlevel = \"{bad}\"\n");
            let e = Config::parse(&level, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("c.toml") && e.contains("log.level") && e.contains("trace"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn two_mailboxes_on_one_collection_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let cal = tmp.path().join("cal");
        std::fs::create_dir(&cal).unwrap();
        let text = format!(
            "[[mailbox]]\nid = \"ana\"\ncalendar = \"{0}\"\n\
             [[mailbox]]\nid = \"bo\"\ncalendar = \"{0}/./\"\n",
            cal.display()
        );
        let e = Config::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("#2 (`bo`)") && e.contains("#1 (`ana`)") && e.contains("calendar"),
            "{e}"
        );
    }

    #[test]
    fn a_collection_that_is_a_file_or_a_system_path_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("cal.ics");
        std::fs::write(&file, "BEGIN:VCALENDAR").unwrap();
        for (path, what) in [
            (file.display().to_string(), "a file"),
            ("/dev/null".to_string(), "system path"),
            ("/proc/self".to_string(), "system path"),
        ] {
            let text = format!("[[mailbox]]\nid = \"ana\"\naddress_book = \"{path}\"\n");
            let e = Config::parse(&text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("#1 (`ana`)") && e.contains("address_book") && e.contains(what),
                "{path}: {e}"
            );
        }
    }
}
