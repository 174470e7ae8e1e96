//! Meeting messages sent over SMTP (the organizer's submission server), once per recipient;
//! and outgoing email (`outgoing.rs`), one message to all of its recipients
//! ([`SmtpSender::send_message_once`]), with the same transport, records and error mapping.
//!
//! Each attendee gets a message of their own (its `To:` names them), sent in an SMTP
//! transaction of its own with the attendee as the only recipient, so that a server refusing
//! one attendee (`452` mailbox full, `550` unknown) refuses only that one.
//!
//! # A retry never sends twice
//!
//! The Message-ID is derived from the intent's idempotency key and the attendee
//! (`<key hash>.<attendee hash>@ledgersync`, as for Maildir delivery), so it is the same on
//! every retry. After the server accepted a message (its `250` to the end of DATA), a record
//! `<state_dir>/sent/<key hash>.<attendee hash>` is written and fsynced; a retry skips the
//! attendees that have a record. What remains: a crash (or a failed record write) between the
//! server's `250` and the fsync of the record sends the message again on the retry, with the
//! same Message-ID, by which many mail clients recognise a duplicate (`docs/connectors.md`,
//! "Meeting messages over SMTP").
//!
//! # Errors
//!
//! A refusal is reported as an [`ErrorKind`] ([`kind_of_reply`]); the domain decides what it
//! means. The password ([`Secret`]) is handed to the SMTP client only and never appears in a
//! message: errors name the server, the port, the user name and the recipient.

use crate::fsutil;
use crate::hash::fnv1a64;
use crate::secret::Secret;
use ledgersync_domain::ErrorKind;
use lettre::Transport;
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::SmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text, no TLS at all: only for a server on the same machine (tests, a local MTA).
    None,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

/// Where and how meeting messages are sent over SMTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpConfig {
    /// The SMTP server's host name (also the name its TLS certificate must carry).
    pub host: String,
    /// The SMTP server's port (587 for STARTTLS, 465 for TLS, 25 for a local MTA).
    pub port: u16,
    /// How the connection is protected (default [`SmtpTls::StartTls`]).
    pub tls: SmtpTls,
    /// The user name to authenticate with; `None`: no authentication.
    pub username: Option<String>,
    /// The password of `username` (never printed).
    pub password: Option<Secret>,
    /// How long to wait for the connection and for each answer of the server (default 30 s).
    pub timeout: Duration,
    /// The envelope sender (`MAIL FROM`); `None`: the meeting's organizer.
    pub envelope_from: Option<String>,
    /// Where the records of the messages sent are kept (`<state_dir>/sent/`): a directory of
    /// the service's own, kept across restarts.
    pub state_dir: PathBuf,
}

impl SmtpConfig {
    /// A configuration with the defaults: STARTTLS, no authentication, a 30 s timeout, the
    /// organizer as envelope sender.
    pub fn new(host: impl Into<String>, port: u16, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            host: host.into(),
            port,
            tls: SmtpTls::StartTls,
            username: None,
            password: None,
            timeout: Duration::from_secs(30),
            envelope_from: None,
            state_dir: state_dir.into(),
        }
    }

    /// `host:port`, for messages.
    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Whether a message was sent now or had been before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Accepted by the server now.
    Now,
    /// A record says it was accepted before: not sent again.
    Before,
}

/// A message that could not be sent to one recipient: the kind and a message without secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refused {
    pub kind: ErrorKind,
    pub message: String,
}

/// An SMTP client for one delivery (several recipients, one connection each).
pub(crate) struct SmtpSender<'a> {
    config: &'a SmtpConfig,
    transport: SmtpTransport,
}

impl<'a> SmtpSender<'a> {
    /// A client for `config` (nothing is connected yet).
    pub(crate) fn new(config: &'a SmtpConfig) -> Result<Self, Refused> {
        let builder = match config.tls {
            SmtpTls::None => SmtpTransport::builder_dangerous(config.host.as_str()),
            SmtpTls::StartTls => SmtpTransport::starttls_relay(&config.host).map_err(|e| {
                refused(
                    ErrorKind::Tls,
                    format!("TLS for {} cannot be set up: {e}", config.server()),
                )
            })?,
            SmtpTls::Tls => SmtpTransport::relay(&config.host).map_err(|e| {
                refused(
                    ErrorKind::Tls,
                    format!("TLS for {} cannot be set up: {e}", config.server()),
                )
            })?,
        };
        let mut builder = builder.port(config.port).timeout(Some(config.timeout));
        if let Some(user) = &config.username {
            let password = config
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Self {
            config,
            transport: builder.build(),
        })
    }

    /// Sends `message` (with the Message-ID derived from `key_hash` and `recipient`) from
    /// `organizer` to `recipient` once: skipped when the record says it was sent, recorded
    /// (fsynced) after the server accepted it.
    pub(crate) fn send_once(
        &self,
        key_hash: u64,
        organizer: &str,
        recipient: &str,
        message: &[u8],
    ) -> Result<Sent, Refused> {
        let recipient = recipient.trim();
        let sent_dir = self.config.state_dir.join("sent");
        let record = sent_dir.join(record_name(key_hash, recipient));
        if fsutil::is_regular_file(&record) {
            return Ok(Sent::Before);
        }
        let from = self
            .config
            .envelope_from
            .as_deref()
            .unwrap_or(organizer)
            .trim();
        let from: Address = from.parse().map_err(|e| {
            refused(
                ErrorKind::Malformed,
                format!("the sender `{from}` is not a mail address ({e})"),
            )
        })?;
        let to: Address = recipient.parse().map_err(|e| {
            refused(
                ErrorKind::Malformed,
                format!("`{recipient}` is not a mail address ({e})"),
            )
        })?;
        let envelope = Envelope::new(Some(from), vec![to]).map_err(|e| {
            refused(
                ErrorKind::Malformed,
                format!("no envelope for `{recipient}` ({e})"),
            )
        })?;
        self.transport
            .send_raw(&envelope, message)
            .map_err(|e| self.refusal(recipient, &e))?;
        // Accepted: from here on a retry must not send it again.
        write_record(&sent_dir, &record, recipient).map_err(|e| {
            refused(
                crate::vdir::io_kind(&e),
                format!(
                    "`{recipient}`: accepted by {} but the record of it could not be written \
                     to {} ({e}); a retry sends it again, with the same Message-ID",
                    self.config.server(),
                    record.display()
                ),
            )
        })?;
        Ok(Sent::Now)
    }

    /// Connects (and logs in, when configured) and checks that the server answers.
    pub(crate) fn test(&self) -> Result<(), Refused> {
        match self.transport.test_connection() {
            Ok(true) => Ok(()),
            Ok(false) => Err(refused(
                ErrorKind::Unavailable,
                format!("{} does not answer", self.config.server()),
            )),
            Err(e) => Err(self.refusal("the connection test", &e)),
        }
    }

    /// Whether the message of the intent `key_hash` to all of its recipients (an outgoing
    /// email, [`SmtpSender::send_message_once`]) was accepted before: its record exists.
    pub(crate) fn message_recorded(&self, key_hash: u64) -> bool {
        fsutil::is_regular_file(&self.message_record(key_hash))
    }

    fn message_record(&self, key_hash: u64) -> PathBuf {
        self.config
            .state_dir
            .join("sent")
            .join(record_name(key_hash, MESSAGE_RECORD))
    }

    /// Records that the message of the intent `key_hash` was accepted (it was found in the
    /// sender's Sent folder, so an earlier attempt sent it).
    pub(crate) fn record_message(
        &self,
        key_hash: u64,
        recipients: &[String],
    ) -> Result<(), Refused> {
        let record = self.message_record(key_hash);
        let sent_dir = self.config.state_dir.join("sent");
        write_record(&sent_dir, &record, &recipients.join(", ")).map_err(|e| {
            refused(
                crate::vdir::io_kind(&e),
                format!(
                    "the record of a message sent could not be written to {} ({e})",
                    record.display()
                ),
            )
        })
    }

    /// Sends an outgoing email `message` from `sender` (the envelope sender unless the
    /// configuration names one) to all `recipients` in one SMTP transaction, once: skipped when
    /// the record of the intent `key_hash` says it was accepted, recorded (fsynced) after the
    /// server accepted it. A refusal of any recipient refuses the message: nothing is sent.
    pub(crate) fn send_message_once(
        &self,
        key_hash: u64,
        sender: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<Sent, Refused> {
        if self.message_recorded(key_hash) {
            return Ok(Sent::Before);
        }
        let all = recipients.join(", ");
        let from = self
            .config
            .envelope_from
            .as_deref()
            .unwrap_or(sender)
            .trim();
        let from: Address = from.parse().map_err(|e| {
            refused(
                ErrorKind::Malformed,
                format!("the sender `{from}` is not a mail address ({e})"),
            )
        })?;
        let mut to = Vec::new();
        for r in recipients {
            let r = r.trim();
            to.push(r.parse::<Address>().map_err(|e| {
                refused(
                    ErrorKind::Malformed,
                    format!("`{r}` is not a mail address ({e})"),
                )
            })?);
        }
        let envelope = Envelope::new(Some(from), to).map_err(|e| {
            refused(
                ErrorKind::Malformed,
                format!("no envelope for `{all}` ({e})"),
            )
        })?;
        self.transport
            .send_raw(&envelope, message)
            .map_err(|e| self.refusal(&all, &e))?;
        // Accepted: from here on a retry must not send it again.
        self.record_message(key_hash, recipients)
            .map_err(|r| Refused {
                kind: r.kind,
                message: format!(
                    "`{all}`: accepted by {} but {}; a retry looks for it in the Sent folder, then \
                 sends it again with the same Message-ID",
                    self.config.server(),
                    r.message
                ),
            })?;
        Ok(Sent::Now)
    }

    fn refusal(&self, recipient: &str, e: &lettre::transport::smtp::Error) -> Refused {
        let kind = kind_of(e);
        let who = match &self.config.username {
            Some(user) => format!("{} as `{user}`", self.config.server()),
            None => self.config.server(),
        };
        let hint = match kind {
            ErrorKind::Auth => ": check the SMTP user name and password",
            ErrorKind::Tls => ": check the SMTP TLS mode and the server's certificate",
            ErrorKind::Network | ErrorKind::Timeout => ": is the SMTP server reachable?",
            _ => "",
        };
        refused(
            kind,
            format!(
                "`{recipient}` via {who}: {}{hint}",
                one_line(&e.to_string())
            ),
        )
    }
}

fn refused(kind: ErrorKind, message: String) -> Refused {
    Refused { kind, message }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The "recipient" naming the record of an outgoing email: one message to all recipients.
const MESSAGE_RECORD: &str = "*";

/// The file name of the record of the message for `recipient` of the intent `key_hash`.
pub(crate) fn record_name(key_hash: u64, recipient: &str) -> String {
    format!(
        "{key_hash:016x}.{:016x}",
        fnv1a64(recipient.trim().to_lowercase().as_bytes())
    )
}

/// Writes the record atomically and durably (file and directory fsynced).
fn write_record(sent_dir: &Path, record: &Path, recipient: &str) -> io::Result<()> {
    if fsutil::is_link(sent_dir) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} {}", sent_dir.display(), fsutil::LINK_REFUSED),
        ));
    }
    fsutil::create_dir_all(sent_dir)?;
    let text = format!(
        "{recipient}\n{}\n",
        crate::compose::utc(crate::compose::now())
    );
    fsutil::replace(&sent_dir.join(".tmp"), record, text.as_bytes())
}

/// The kind of a failed SMTP exchange.
pub(crate) fn kind_of(e: &lettre::transport::smtp::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    if e.is_tls() || tls_underneath(e) {
        return ErrorKind::Tls;
    }
    if let Some(code) = e.status() {
        let code: u16 = code.to_string().parse().unwrap_or(0);
        return kind_of_reply(code, &e.to_string());
    }
    if e.is_client() {
        // What the client refused to do with this server (lettre's own words).
        let text = e.to_string().to_ascii_lowercase();
        return if text.contains("starttls") {
            // STARTTLS required and not offered: never downgraded to plain text.
            ErrorKind::Tls
        } else if text.contains("authentication mechanism") {
            ErrorKind::Auth
        } else {
            ErrorKind::Malformed
        };
    }
    // Connection refused, reset, an unreadable answer.
    ErrorKind::Network
}

/// True when a TLS error (a refused certificate, a handshake with a server that speaks no
/// TLS) lies under `e`: lettre reports those met while reading as network errors.
fn tls_underneath(e: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// The kind of an SMTP reply `code` (RFC 5321 §4.2) with its text, read for an enhanced
/// status code (RFC 3463, e.g. `4.2.2`) where the basic code is ambiguous.
///
/// | reply | kind |
/// |---|---|
/// | 452, or any 4xx/5xx with x.2.2 (mailbox full) | quota |
/// | 421, 450, 451 (service busy, try later, greylisting) | rate_limited |
/// | other 4xx | unavailable |
/// | 530, 534, 535, 538 (authentication) | auth |
/// | 5xx with 5.7.x (policy, relaying denied) | forbidden |
/// | 550, 551, 553 (no such mailbox) | not_found |
/// | 552 (too large), or x.3.4 | too_large |
/// | 500-504 (syntax, not implemented) | malformed |
/// | 554 and other 5xx (transaction refused) | forbidden |
pub fn kind_of_reply(code: u16, text: &str) -> ErrorKind {
    let enhanced = enhanced_code(text);
    let subject_detail = enhanced.as_ref().map(|(_, s, d)| (*s, *d));
    if subject_detail == Some((2, 2)) || code == 452 {
        return ErrorKind::Quota;
    }
    if subject_detail == Some((3, 4)) || code == 552 {
        return ErrorKind::TooLarge;
    }
    match code {
        421 | 450 | 451 => ErrorKind::RateLimited,
        400..=499 => ErrorKind::Unavailable,
        530 | 534 | 535 | 538 => ErrorKind::Auth,
        _ if enhanced.as_ref().is_some_and(|(_, s, _)| *s == 7) => ErrorKind::Forbidden,
        550 | 551 | 553 => ErrorKind::NotFound,
        500..=504 => ErrorKind::Malformed,
        _ => ErrorKind::Forbidden,
    }
}

/// The first enhanced status code (`class.subject.detail`, RFC 3463) in `text`.
fn enhanced_code(text: &str) -> Option<(u16, u16, u16)> {
    text.split(|c: char| c.is_whitespace() || c == ':' || c == ',' || c == '(' || c == ')')
        .find_map(|word| {
            let mut parts = word.split('.');
            let class: u16 = parts.next()?.parse().ok()?;
            let subject: u16 = parts.next()?.parse().ok()?;
            let detail: u16 = parts.next()?.parse().ok()?;
            (parts.next().is_none() && matches!(class, 2 | 4 | 5) && subject < 1000)
                .then_some((class, subject, detail))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_kinds() {
        for (code, text, kind) in [
            (452, "4.2.2 Mailbox full", ErrorKind::Quota),
            (452, "Too many recipients", ErrorKind::Quota),
            (552, "5.2.2 Mailbox full", ErrorKind::Quota),
            (421, "4.7.0 Try again later", ErrorKind::RateLimited),
            (450, "4.2.1 Greylisted", ErrorKind::RateLimited),
            (451, "4.3.0 Local error", ErrorKind::RateLimited),
            (454, "4.7.0 TLS not available", ErrorKind::Unavailable),
            (535, "5.7.8 Authentication failed.", ErrorKind::Auth),
            (
                550,
                "5.1.1 <x@example.org>: User unknown",
                ErrorKind::NotFound,
            ),
            (553, "5.1.3 Bad address", ErrorKind::NotFound),
            (550, "5.7.1 Relaying denied", ErrorKind::Forbidden),
            (552, "5.3.4 Message too big", ErrorKind::TooLarge),
            (554, "5.3.4 Message too big for system", ErrorKind::TooLarge),
            (554, "Transaction failed", ErrorKind::Forbidden),
            (501, "5.5.4 Syntax error", ErrorKind::Malformed),
        ] {
            assert_eq!(kind_of_reply(code, text), kind, "{code} {text}");
        }
    }

    #[test]
    fn enhanced_codes_are_found_in_the_text() {
        assert_eq!(
            enhanced_code("permanent error (550): 5.1.1 <a@b>: no"),
            Some((5, 1, 1))
        );
        assert_eq!(enhanced_code("version 1.2 of 3.4.5.6"), None);
    }

    #[test]
    fn a_configuration_never_prints_its_password() {
        let mut c = SmtpConfig::new("smtp.example.org", 587, "/var/lib/ledgersync");
        c.username = Some("paul".into());
        c.password = Some(Secret::new("hunter2"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
