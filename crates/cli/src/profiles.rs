//! `[profiles.<id>]` and the server side of a `[[mailbox]]`: how ledgersync reaches the
//! servers of one of the organization's server profiles (R15, ARCHITECTURE §6) — which kind of
//! connector (vdir directories, a CalDAV/CardDAV server, or an IMAP server for the incoming
//! email of an email-only profile, R4), the endpoints, TLS, time-outs, the SMTP server — and
//! where a mailbox's credentials come from.
//!
//! A password is never written in the configuration: a mailbox names a file
//! (`password_file`, readable by its owner and group only) or an environment variable
//! (`password_env`). It is read when `serve` starts a mailbox's connector and lives in a
//! `Secret`, which prints as `[redacted]`: it reaches no journal, log or error message. The
//! number of connections a profile may hold is the organization's (`profile_registered`'s
//! `max_connections`, R15), not this file's: one place decides it.

use anyhow::{Result, anyhow};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default time-out of one request to a server.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `[profiles.<id>]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileSection {
    kind: String,
    url: Option<String>,
    timeout_seconds: Option<u64>,
    ca_file: Option<PathBuf>,
    smtp: Option<SmtpSection>,
}

/// `[profiles.<id>.smtp]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SmtpSection {
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    timeout_seconds: Option<u64>,
}

/// Which connector a mailbox of the profile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorKind {
    /// Local vdir collections and Maildirs (`docs/connectors.md`).
    Vdir,
    /// A CalDAV and CardDAV server.
    Caldav,
    /// An IMAP server: the incoming email of an email-only (IMAP/SMTP) profile (R4).
    Imap,
    /// A POP3 server: the incoming email of an email-only (POP3/SMTP) profile (R4).
    Pop3,
}

impl ConnectorKind {
    /// The mail protocol of an email-only kind: its URL schemes (plain, TLS) and default ports.
    fn mail_schemes(self) -> Option<(&'static str, &'static str, u16, u16)> {
        match self {
            ConnectorKind::Imap => Some(("imap", "imaps", 143, 993)),
            ConnectorKind::Pop3 => Some(("pop3", "pop3s", 110, 995)),
            ConnectorKind::Vdir | ConnectorKind::Caldav => None,
        }
    }
}

impl ConnectorKind {
    /// The kinds, as written in the configuration.
    pub const NAMES: &'static str = "vdir, caldav, imap, pop3";

    fn parse(text: &str) -> Option<Self> {
        match text {
            "vdir" => Some(ConnectorKind::Vdir),
            "caldav" => Some(ConnectorKind::Caldav),
            "imap" => Some(ConnectorKind::Imap),
            "pop3" => Some(ConnectorKind::Pop3),
            _ => None,
        }
    }
}

/// The mail server of an `imap` or `pop3` profile, from its `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailServer {
    /// Host name or address.
    pub host: String,
    /// Port (default 993 for `imaps://`, 143 for `imap://`, 995 for `pop3s://`, 110 for
    /// `pop3://`).
    pub port: u16,
    /// TLS from the first byte (`imaps://`, `pop3s://`); `imap://` and `pop3://` are plain
    /// text, for a server on the same machine.
    pub tls: bool,
}

impl MailServer {
    /// Reads `<tls scheme>://host[:port]` or `<plain scheme>://host[:port]` of `kind`.
    fn parse(kind: ConnectorKind, url: &str) -> Option<Self> {
        let (plain, secure, plain_port, tls_port) = kind.mail_schemes()?;
        let (tls, rest) = if let Some(r) = url.strip_prefix(&format!("{secure}://")) {
            (true, r)
        } else {
            (false, url.strip_prefix(&format!("{plain}://"))?)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (rest, if tls { tls_port } else { plain_port }),
        };
        if host.is_empty() || host.contains('/') || port == 0 {
            return None;
        }
        Some(MailServer {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (loopback test servers only).
    None,
    /// STARTTLS on a plain connection (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Where a password is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The first line of a file readable by its owner and group only.
    File(PathBuf),
    /// An environment variable of the `serve` process.
    Env(String),
}

impl PasswordSource {
    fn of(
        file: Option<PathBuf>,
        env: Option<String>,
        at: &str,
        prefix: &str,
    ) -> Result<Option<Self>> {
        match (file, env) {
            (Some(_), Some(_)) => Err(anyhow!(
                "{at}: give one of the keys `{prefix}password_file` and `{prefix}password_env`, \
                 not both"
            )),
            (Some(f), None) => Ok(Some(PasswordSource::File(f))),
            (None, Some(v)) if v.is_empty() => Err(anyhow!(
                "{at}: key `{prefix}password_env` is empty: name the environment variable that \
                 holds the password"
            )),
            (None, Some(v)) => Ok(Some(PasswordSource::Env(v))),
            (None, None) => Ok(None),
        }
    }

    /// Reads the password. Errors name the file or the variable, never what it holds.
    pub fn read(&self) -> Result<String> {
        match self {
            PasswordSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(v),
                Ok(_) => Err(anyhow!("the environment variable `{name}` is empty")),
                Err(std::env::VarError::NotPresent) => Err(anyhow!(
                    "the environment variable `{name}` is not set: export it before starting \
                     `ledgersync serve`, or name a file with `password_file`"
                )),
                Err(std::env::VarError::NotUnicode(_)) => Err(anyhow!(
                    "the environment variable `{name}` is not UTF-8 text"
                )),
            },
            PasswordSource::File(path) => {
                use std::os::unix::fs::PermissionsExt as _;
                let meta = std::fs::metadata(path).map_err(|e| {
                    anyhow!("cannot read the password file {}: {e}", path.display())
                })?;
                if !meta.is_file() {
                    return Err(anyhow!(
                        "the password file {} is not a regular file",
                        path.display()
                    ));
                }
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o007 != 0 {
                    return Err(anyhow!(
                        "the password file {} can be read by every user (mode {mode:03o}): \
                         `chmod o-rwx {}` (owner and group only)",
                        path.display(),
                        path.display()
                    ));
                }
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow!("cannot read the password file {}: {e}", path.display())
                })?;
                let line = text.lines().next().unwrap_or_default();
                if line.is_empty() {
                    return Err(anyhow!(
                        "the password file {} is empty: write the password on its first line",
                        path.display()
                    ));
                }
                Ok(line.to_owned())
            }
        }
    }
}

/// The SMTP server a profile sends meeting messages through (RFC 6047 iMIP) when its
/// calendar server does not schedule by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpProfile {
    /// Host name or address.
    pub host: String,
    /// Port (default 587 with STARTTLS, 465 with TLS, 25 without).
    pub port: u16,
    /// How the connection is protected.
    pub tls: SmtpTls,
    /// The login, when the server asks for one.
    pub username: Option<String>,
    /// Where its password is read from.
    pub password: Option<PasswordSource>,
    /// Time-out of one exchange.
    pub timeout: Duration,
}

/// One `[profiles.<id>]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The organization's server profile id.
    pub id: String,
    /// Which connector its mailboxes run.
    pub kind: ConnectorKind,
    /// The server URL: where discovery starts (`caldav`), the IMAP server (`imap`).
    pub url: Option<String>,
    /// The mail server (`imap`, `pop3`).
    pub mail: Option<MailServer>,
    /// Time-out of one request.
    pub timeout: Duration,
    /// A PEM file of certificate authorities trusted besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    /// The SMTP server for meeting messages, if any.
    pub smtp: Option<SmtpProfile>,
}

fn timeout(seconds: Option<u64>, at: &str, key: &str) -> Result<Duration> {
    match seconds {
        None => Ok(DEFAULT_TIMEOUT),
        Some(s) if (1..=600).contains(&s) => Ok(Duration::from_secs(s)),
        Some(s) => Err(anyhow!(
            "{at}: key `{key}` must be between 1 and 600, got {s}"
        )),
    }
}

/// Checks the `[profiles]` tables.
pub(crate) fn check(
    sections: BTreeMap<String, ProfileSection>,
    file_name: &str,
) -> Result<BTreeMap<String, Profile>> {
    let mut out = BTreeMap::new();
    for (id, s) in sections {
        let at = format!("{file_name}: [profiles.{id}]");
        let kind = ConnectorKind::parse(&s.kind).ok_or_else(|| {
            anyhow!(
                "{at}: key `kind` cannot be `{}`; allowed values: {}",
                s.kind,
                ConnectorKind::NAMES
            )
        })?;
        let url = match (kind, s.url) {
            (ConnectorKind::Caldav, None) => {
                return Err(anyhow!(
                    "{at}: key `url` is missing: give the CalDAV/CardDAV server's URL, e.g. \
                     `https://dav.example.org/` (discovery starts there)"
                ));
            }
            (ConnectorKind::Imap | ConnectorKind::Pop3, None) => {
                let (_, secure, _, port) = kind.mail_schemes().unwrap_or_default();
                return Err(anyhow!(
                    "{at}: key `url` is missing: give the mail server, e.g. \
                     `{secure}://mail.example.org` (TLS, port {port})"
                ));
            }
            (ConnectorKind::Vdir, Some(_)) => {
                return Err(anyhow!(
                    "{at}: key `url` applies to `kind = \"caldav\"`, `\"imap\"` and `\"pop3\"` \
                     only; a vdir mailbox names its directories in its [[mailbox]] table"
                ));
            }
            (ConnectorKind::Imap | ConnectorKind::Pop3, Some(u))
                if MailServer::parse(kind, &u).is_none() =>
            {
                let (plain, secure, _, port) = kind.mail_schemes().unwrap_or_default();
                return Err(anyhow!(
                    "{at}: key `url` is `{u}`: give `{secure}://host` (TLS, port {port}), \
                     `{secure}://host:port`, or `{plain}://host:port` (plain text, a server on \
                     this machine)"
                ));
            }
            (ConnectorKind::Caldav, Some(u))
                if !(u.starts_with("http://") || u.starts_with("https://")) =>
            {
                return Err(anyhow!(
                    "{at}: key `url` is `{u}`: give an http:// or https:// URL"
                ));
            }
            (_, u) => u,
        };
        let mail = url.as_deref().and_then(|u| MailServer::parse(kind, u));
        if let Some(ca) = &s.ca_file
            && !ca.is_file()
        {
            return Err(anyhow!(
                "{at}: key `ca_file` is `{}`, which is not a readable file (a PEM file of \
                 certificate authorities)",
                ca.display()
            ));
        }
        let smtp = match s.smtp {
            None => None,
            Some(m) => {
                let at = format!("{file_name}: [profiles.{id}.smtp]");
                let tls = match m.tls.as_deref().unwrap_or("starttls") {
                    "none" => SmtpTls::None,
                    "starttls" => SmtpTls::Starttls,
                    "tls" => SmtpTls::Tls,
                    other => {
                        return Err(anyhow!(
                            "{at}: key `tls` cannot be `{other}`; allowed values: starttls \
                             (default), tls, none"
                        ));
                    }
                };
                let port = m.port.unwrap_or(match tls {
                    SmtpTls::None => 25,
                    SmtpTls::Starttls => 587,
                    SmtpTls::Tls => 465,
                });
                let password = PasswordSource::of(m.password_file, m.password_env, &at, "")?;
                if password.is_some() != m.username.is_some() {
                    return Err(anyhow!(
                        "{at}: give `username` together with `password_file` or `password_env` \
                         (or neither, for a server that takes mail without a login)"
                    ));
                }
                Some(SmtpProfile {
                    host: m.host,
                    port,
                    tls,
                    username: m.username,
                    password,
                    timeout: timeout(m.timeout_seconds, &at, "timeout_seconds")?,
                })
            }
        };
        out.insert(
            id.clone(),
            Profile {
                id,
                kind,
                url,
                mail,
                timeout: timeout(s.timeout_seconds, &at, "timeout_seconds")?,
                ca_file: s.ca_file,
                smtp,
            },
        );
    }
    Ok(out)
}

/// The server side of a mailbox of a `caldav` or `imap` profile: the login, and what it reads
/// there (collections by path or display name; tracked IMAP folders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMailbox {
    /// The profile it belongs to.
    pub profile: String,
    /// The login.
    pub username: String,
    /// Where its password is read from.
    pub password: PasswordSource,
    /// The calendar (appointments): a path on the server or a display name; `None`: the
    /// first calendar discovery finds.
    pub calendar: Option<String>,
    /// The task list (`None`: the calendar, when it holds tasks).
    pub tasks: Option<String>,
    /// The address book (`None`: the first one discovery finds).
    pub address_book: Option<String>,
    /// The tracked IMAP folders besides INBOX (`imap`), by their full name.
    pub folders: Vec<String>,
}

/// What a `[[mailbox]]` table says about its server, as written.
pub(crate) struct MailboxServerKeys {
    pub profile: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub tasks: Option<String>,
    pub folders: Option<Vec<String>>,
}

/// The server side of a `[[mailbox]]` of a `caldav` or `imap` profile; `None` for a vdir
/// mailbox. `vdir_keys` are the keys of the table that only a vdir mailbox takes, with whether
/// each was given.
pub(crate) fn server_mailbox(
    keys: MailboxServerKeys,
    collections: (Option<&Path>, Option<&Path>),
    vdir_keys: &[(&str, bool)],
    profiles: &BTreeMap<String, Profile>,
    at: &str,
) -> Result<Option<ServerMailbox>> {
    let profile = match &keys.profile {
        None => None,
        Some(p) => Some(profiles.get(p).ok_or_else(|| {
            let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
            anyhow!(
                "{at}: key `profile` names `{p}`, which has no [profiles.{p}] table (defined: \
                 {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })?),
    };
    let kind = profile.map_or(ConnectorKind::Vdir, |p| p.kind);
    let password = PasswordSource::of(keys.password_file, keys.password_env, at, "")?;
    if kind == ConnectorKind::Vdir {
        for (key, given) in [
            ("username", keys.username.is_some()),
            ("password_file / password_env", password.is_some()),
            ("tasks", keys.tasks.is_some()),
            ("folders", keys.folders.is_some()),
        ] {
            if given {
                return Err(anyhow!(
                    "{at}: key `{key}` applies to mailboxes of a `caldav` or `imap` profile \
                     only; this mailbox syncs vdir directories"
                ));
            }
        }
        return Ok(None);
    }
    let server = match kind {
        ConnectorKind::Imap => "an IMAP server",
        ConnectorKind::Pop3 => "a POP3 server",
        _ => "a CalDAV/CardDAV server",
    };
    for (key, given) in vdir_keys {
        if *given {
            return Err(anyhow!(
                "{at}: key `{key}` applies to vdir mailboxes only; this mailbox's profile `{}` \
                 is {server}",
                keys.profile.as_deref().unwrap_or_default()
            ));
        }
    }
    let (wrong, given) = match kind {
        ConnectorKind::Imap => (
            "calendar / address_book / tasks",
            collections.0.is_some() || collections.1.is_some() || keys.tasks.is_some(),
        ),
        // A POP3 maildrop is one folder.
        ConnectorKind::Pop3 => (
            "calendar / address_book / tasks / folders",
            collections.0.is_some()
                || collections.1.is_some()
                || keys.tasks.is_some()
                || keys.folders.is_some(),
        ),
        _ => ("folders", keys.folders.is_some()),
    };
    if given {
        return Err(anyhow!(
            "{at}: key `{wrong}` does not apply to a mailbox of profile `{}`, which is {server}",
            keys.profile.as_deref().unwrap_or_default()
        ));
    }
    let folders = keys.folders.unwrap_or_default();
    if folders.len() > ledgersync_connectors::imap::MAX_TRACKED_FOLDERS {
        return Err(anyhow!(
            "{at}: key `folders` names {} folders; at most {} are tracked besides INBOX",
            folders.len(),
            ledgersync_connectors::imap::MAX_TRACKED_FOLDERS
        ));
    }
    if let Some(f) = folders.iter().find(|f| f.trim().is_empty()) {
        return Err(anyhow!(
            "{at}: key `folders` holds an empty name ({f:?}): give each folder's full name \
             under INBOX, e.g. `INBOX/Customers`"
        ));
    }
    let username = keys.username.ok_or_else(|| {
        anyhow!("{at}: key `username` is missing: the login of this mailbox on its server")
    })?;
    let password = password.ok_or_else(|| {
        anyhow!(
            "{at}: give `password_file` (a file readable by its owner and group only) or \
             `password_env` (an environment variable): a password is never written in the \
             configuration"
        )
    })?;
    let text = |p: Option<&Path>| p.map(|p| p.to_string_lossy().into_owned());
    Ok(Some(ServerMailbox {
        profile: keys.profile.unwrap_or_default(),
        username,
        password,
        calendar: text(collections.0),
        tasks: keys.tasks,
        address_book: text(collections.1),
        folders,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_password_file_readable_by_everyone_is_refused_and_its_content_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let open = write(dir.path(), "open", "hunter2\n", 0o644);
        let e = PasswordSource::File(open.clone()).read().unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("chmod o-rwx"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let closed = write(dir.path(), "closed", "hunter2\nignored\n", 0o640);
        assert_eq!(PasswordSource::File(closed).read().unwrap(), "hunter2");
        let empty = write(dir.path(), "empty", "", 0o600);
        assert!(format!("{:#}", PasswordSource::File(empty).read().unwrap_err()).contains("empty"));
    }

    #[test]
    fn a_missing_environment_variable_is_named() {
        let e = PasswordSource::Env("LEDGERSYNC_TEST_NO_SUCH_VARIABLE".into())
            .read()
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("`LEDGERSYNC_TEST_NO_SUCH_VARIABLE` is not set"),
            "{e:#}"
        );
    }
}
