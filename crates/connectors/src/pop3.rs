//! The incoming-email connector of a POP3/SMTP profile (R4): the messages of a POP3 maildrop
//! (RFC 1939), each reported once as an `email_received` of the Inbox.
//!
//! POP3 has one folder, no flags and no push: a listing logs in (`USER`/`PASS`), asks for the
//! unique id of every message (`UIDL`) and their sizes (`LIST`), and reads the header block of
//! each message it has not reported before (`TOP n 0`), which mail-parser reads
//! ([`EmailHeaders`]). Nothing is deleted or marked: ledgersync never sends `DELE`, so the
//! user's mail program sees the maildrop as it was. A message over the size limit is an item
//! failure (`too_large`, R12), its headers unread. The cursor is the set of unique ids
//! reported (`pop3-cursor 1`, one id a line); a message removed by the user's mail program
//! leaves it, and nothing is decided for it (an email has nothing to delete).
//!
//! The client is written here, blocking, over `std::net` and rustls: it needs six commands of
//! RFC 1939, and the POP3 crates bring another TLS stack (OpenSSL) or another runtime.

use crate::connector::{
    Connector, Cursor, Intent, ItemFailure, Listing, ListingEnd, Observation, Outcome,
};
use crate::imap::{EmailHeaders, Security};
use crate::secret::Secret;
use ledgersync_domain::event::{
    EmailFacts, EmailFolder, EmailReceived, ListingCompleted, ServerError, Workload,
};
use ledgersync_domain::{ErrorKind, RemoteId, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The first line of a POP3 cursor.
pub const POP3_CURSOR_HEADER: &str = "pop3-cursor 1";

/// Where and how the connector logs in.
#[derive(Clone, Debug, PartialEq)]
pub struct Pop3Config {
    /// The server's host name or address.
    pub host: String,
    /// The server's port (110, 995).
    pub port: u16,
    /// Plain or TLS from the first byte.
    pub security: Security,
    /// The login name.
    pub username: String,
    /// The password, never printed.
    pub password: Secret,
    /// The longest wait for the connection and for each answer.
    pub timeout: Duration,
    /// A message larger than this (its `LIST` size) is reported as too large, headers unread.
    pub max_message_bytes: u64,
}

impl Pop3Config {
    /// A configuration with the defaults: TLS on port 995, 30 s timeout, 150 MB.
    pub fn new(host: impl Into<String>, username: impl Into<String>, password: Secret) -> Self {
        Pop3Config {
            host: host.into(),
            port: 995,
            security: Security::Tls,
            username: username.into(),
            password,
            timeout: Duration::from_secs(30),
            max_message_bytes: crate::imap::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    /// `host:port`, as error messages name the server.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why a POP3 exchange failed: a kind, and a message naming the server (never the password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pop3Error {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// What happened and what to do about it.
    pub message: String,
}

impl Pop3Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Pop3Error {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Pop3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One logged-in POP3 session.
pub struct Pop3Session {
    stream: BufReader<Stream>,
    server: String,
}

fn io_error(server: &str, what: &str, e: std::io::Error) -> Pop3Error {
    let kind = match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
        _ if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) => ErrorKind::Tls,
        _ => ErrorKind::Network,
    };
    Pop3Error::new(kind, format!("{what} at the POP3 server {server}: {e}"))
}

impl Pop3Session {
    /// Connects, reads the greeting and logs in.
    pub fn connect(config: &Pop3Config) -> Result<Pop3Session, Pop3Error> {
        let server = config.server();
        let address = (config.host.as_str(), config.port)
            .to_socket_addrs()
            .map_err(|e| io_error(&server, "resolving the host", e))?
            .next()
            .ok_or_else(|| {
                Pop3Error::new(
                    ErrorKind::Network,
                    format!("the host of the POP3 server {server} has no address"),
                )
            })?;
        let tcp = TcpStream::connect_timeout(&address, config.timeout).map_err(|e| {
            let mut err = io_error(&server, "connecting", e);
            err.message
                .push_str("; check the host and port and that the server runs");
            err
        })?;
        tcp.set_read_timeout(Some(config.timeout))
            .and_then(|()| tcp.set_write_timeout(Some(config.timeout)))
            .map_err(|e| io_error(&server, "setting the time-out", e))?;
        let stream = match config.security {
            Security::Plain => Stream::Plain(tcp),
            Security::Tls => {
                let (tls, name) = crate::tls::client(&config.host, &server)
                    .map_err(|e| Pop3Error::new(ErrorKind::Tls, e))?;
                let connection = rustls::ClientConnection::new(tls, name).map_err(|e| {
                    Pop3Error::new(ErrorKind::Tls, format!("TLS for {server}: {e}"))
                })?;
                Stream::Tls(Box::new(rustls::StreamOwned::new(connection, tcp)))
            }
        };
        let mut session = Pop3Session {
            stream: BufReader::new(stream),
            server: server.clone(),
        };
        session.status("the greeting")?;
        session.command(&format!("USER {}", config.username), "USER")?;
        let pass = session.command(&format!("PASS {}", config.password.expose()), "PASS");
        match pass {
            Ok(_) => Ok(session),
            Err(mut e) => {
                let password = config.password.expose();
                if !password.is_empty() {
                    e.message = e.message.replace(password, "[redacted]");
                }
                if e.kind == ErrorKind::Malformed {
                    e.kind = ErrorKind::Auth;
                    e.message = format!(
                        "login of {} at {server} refused: {}; check the user name and password",
                        config.username, e.message
                    );
                }
                Err(e)
            }
        }
    }

    fn line(&mut self, what: &str) -> Result<String, Pop3Error> {
        let mut line = Vec::new();
        let n = self
            .stream
            .read_until(b'\n', &mut line)
            .map_err(|e| io_error(&self.server, what, e))?;
        if n == 0 {
            return Err(Pop3Error::new(
                ErrorKind::Network,
                format!(
                    "the POP3 server {} closed the connection ({what})",
                    self.server
                ),
            ));
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    /// Reads a status line: the text after `+OK`, or the server's `-ERR` as `Malformed` (the
    /// caller gives it a kind).
    fn status(&mut self, what: &str) -> Result<String, Pop3Error> {
        let line = self.line(what)?;
        if let Some(rest) = line.strip_prefix("+OK") {
            Ok(rest.trim().to_string())
        } else if let Some(rest) = line.strip_prefix("-ERR") {
            Err(Pop3Error::new(
                ErrorKind::Malformed,
                format!("{what}: the server answered -ERR {}", rest.trim()),
            ))
        } else {
            Err(Pop3Error::new(
                ErrorKind::Malformed,
                format!(
                    "{what}: the server at {} does not speak POP3 (it answered {:?})",
                    self.server,
                    line.chars().take(80).collect::<String>()
                ),
            ))
        }
    }

    fn command(&mut self, command: &str, what: &str) -> Result<String, Pop3Error> {
        let stream = self.stream.get_mut();
        stream
            .write_all(command.as_bytes())
            .and_then(|()| stream.write_all(b"\r\n"))
            .and_then(|()| stream.flush())
            .map_err(|e| io_error(&self.server, what, e))?;
        self.status(what)
    }

    /// The lines of a multi-line answer, dot-unstuffed, up to the terminating `.`.
    fn multiline(&mut self, what: &str) -> Result<Vec<Vec<u8>>, Pop3Error> {
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self
                .stream
                .read_until(b'\n', &mut line)
                .map_err(|e| io_error(&self.server, what, e))?;
            if n == 0 {
                return Err(Pop3Error::new(
                    ErrorKind::Network,
                    format!(
                        "the POP3 server {} closed the connection ({what})",
                        self.server
                    ),
                ));
            }
            let content = line
                .strip_suffix(b"\r\n")
                .or_else(|| line.strip_suffix(b"\n"))
                .unwrap_or(&line);
            if content == b"." {
                return Ok(lines);
            }
            let content = content.strip_prefix(b".").unwrap_or(content);
            lines.push(content.to_vec());
        }
    }

    /// Every message's number and unique id (`UIDL`).
    pub fn uidl(&mut self) -> Result<Vec<(u32, String)>, Pop3Error> {
        self.command("UIDL", "UIDL")?;
        self.multiline("UIDL")?
            .iter()
            .map(|l| {
                let text = String::from_utf8_lossy(l);
                let mut parts = text.split_whitespace();
                match (parts.next().and_then(|n| n.parse().ok()), parts.next()) {
                    (Some(n), Some(id)) => Ok((n, id.to_string())),
                    _ => Err(Pop3Error::new(
                        ErrorKind::Malformed,
                        format!(
                            "UIDL at {}: a line that is no `number id`: {text:?}",
                            self.server
                        ),
                    )),
                }
            })
            .collect()
    }

    /// Every message's number and size in octets (`LIST`).
    pub fn sizes(&mut self) -> Result<BTreeMap<u32, u64>, Pop3Error> {
        self.command("LIST", "LIST")?;
        self.multiline("LIST")?
            .iter()
            .map(|l| {
                let text = String::from_utf8_lossy(l);
                let mut parts = text.split_whitespace();
                match (
                    parts.next().and_then(|n| n.parse().ok()),
                    parts.next().and_then(|s| s.parse().ok()),
                ) {
                    (Some(n), Some(size)) => Ok((n, size)),
                    _ => Err(Pop3Error::new(
                        ErrorKind::Malformed,
                        format!(
                            "LIST at {}: a line that is no `number size`: {text:?}",
                            self.server
                        ),
                    )),
                }
            })
            .collect()
    }

    /// The header block of message `n` (`TOP n 0`).
    pub fn headers(&mut self, n: u32) -> Result<Vec<u8>, Pop3Error> {
        let what = format!("TOP {n} 0");
        self.command(&what, &what)?;
        let mut raw = Vec::new();
        for line in self.multiline(&what)? {
            raw.extend_from_slice(&line);
            raw.extend_from_slice(b"\r\n");
        }
        Ok(raw)
    }

    /// Ends the session (`QUIT`); nothing is deleted, no `DELE` was sent.
    pub fn quit(mut self) {
        let _ = self.command("QUIT", "QUIT");
    }
}

/// The unique ids reported so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pop3Cursor {
    /// The ids.
    pub seen: BTreeSet<String>,
}

impl Pop3Cursor {
    /// The cursor as stored: [`POP3_CURSOR_HEADER`], then one id a line.
    pub fn to_text(&self) -> String {
        let mut out = String::from(POP3_CURSOR_HEADER);
        for id in &self.seen {
            out.push('\n');
            out.push_str(id);
        }
        out
    }

    /// Reads a stored cursor; anything else is an error naming what is wrong.
    pub fn from_text(text: &str) -> Result<Pop3Cursor, String> {
        let mut lines = text.lines();
        match lines.next() {
            Some(POP3_CURSOR_HEADER) => {}
            Some(other) => {
                return Err(format!(
                    "not a POP3 cursor: it starts with {:?}, not `{POP3_CURSOR_HEADER}`",
                    other.chars().take(40).collect::<String>()
                ));
            }
            None => return Err("an empty POP3 cursor".into()),
        }
        let mut seen = BTreeSet::new();
        for line in lines {
            // RFC 1939 §7: a unique id is 1 to 70 characters in 0x21–0x7E.
            if line.is_empty()
                || line.len() > 70
                || !line.bytes().all(|b| (0x21..=0x7e).contains(&b))
            {
                return Err(format!("a POP3 cursor line that is no unique id: {line:?}"));
            }
            seen.insert(line.to_string());
        }
        Ok(Pop3Cursor { seen })
    }
}

/// The server id of a message of the maildrop.
pub fn pop3_remote(uid: &str) -> RemoteId {
    RemoteId::new(format!("pop3/{uid}"))
}

/// Reads the incoming email of one mailbox from its POP3 maildrop.
pub struct Pop3Connector {
    config: Pop3Config,
}

impl std::fmt::Debug for Pop3Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Connector")
            .field("server", &self.config.server())
            .field("username", &self.config.username)
            .finish()
    }
}

/// A message read: its id, number, size, and headers (`None` when over the limit).
struct Read1 {
    uid: String,
    size: u64,
    headers: Option<EmailHeaders>,
}

impl Pop3Connector {
    /// A connector for `config`; each listing opens its own session.
    pub fn new(config: Pop3Config) -> Self {
        Self { config }
    }

    fn read(&self, known: &Pop3Cursor) -> Result<(Vec<Read1>, Pop3Cursor), Pop3Error> {
        let mut session = Pop3Session::connect(&self.config)?;
        let ids = session.uidl()?;
        let sizes = session.sizes()?;
        let mut out = Vec::new();
        for (n, uid) in &ids {
            if known.seen.contains(uid) {
                continue;
            }
            let size = sizes.get(n).copied().unwrap_or(0);
            let headers = if size > self.config.max_message_bytes {
                None
            } else {
                let raw = session.headers(*n)?;
                Some(EmailHeaders::parse(&raw).unwrap_or_default())
            };
            out.push(Read1 {
                uid: uid.clone(),
                size,
                headers,
            });
        }
        session.quit();
        let seen = ids.into_iter().map(|(_, uid)| uid).collect();
        Ok((out, Pop3Cursor { seen }))
    }
}

fn failed(cursor: &Cursor, kind: ErrorKind, message: String) -> Listing {
    Listing::failed(
        Workload::Incoming,
        cursor,
        ServerError::of_kind(kind, message),
    )
}

impl Connector for Pop3Connector {
    fn list_changes(&mut self, cursor: &Cursor) -> Listing {
        let known = if cursor.is_initial() {
            Pop3Cursor::default()
        } else {
            match Pop3Cursor::from_text(cursor.as_str()) {
                Ok(c) => c,
                Err(e) => {
                    return failed(
                        cursor,
                        ErrorKind::CursorInvalid,
                        format!("the stored POP3 cursor cannot be read ({e})"),
                    );
                }
            }
        };
        let (read, next) = match self.read(&known) {
            Ok(r) => r,
            Err(e) => return failed(cursor, e.kind, e.message),
        };
        let mut observations = Vec::new();
        let mut failures = Vec::new();
        for m in read {
            let Some(h) = m.headers else {
                failures.push(ItemFailure {
                    item: pop3_remote(&m.uid).to_string(),
                    entity: None,
                    kind: ErrorKind::TooLarge,
                    error: format!(
                        "the message of {} bytes in the POP3 maildrop is larger than the limit of \
                         {} bytes (email_max_message_mib); it is not read, the other messages are",
                        m.size, self.config.max_message_bytes
                    ),
                });
                continue;
            };
            observations.push(Observation::Email(Box::new(EmailReceived {
                remote: pop3_remote(&m.uid),
                message_id: h.message_id.unwrap_or_default(),
                subject: h.subject.unwrap_or_default(),
                from: h.from.unwrap_or_default(),
                to: h.to,
                in_reply_to: h.in_reply_to,
                references: h.references,
                thread_index: h.thread_index,
                cc: h.cc,
                bcc: h.bcc,
                // POP3 keeps no arrival time: the Date the sender wrote stands in.
                received: Timestamp(h.date.unwrap_or(0)),
                irm_protected: false,
                folder: EmailFolder::Inbox,
                manual: None,
                size: m.size,
                facts: EmailFacts::default(),
            })));
        }
        let items = observations.len() as u32;
        Listing {
            observations,
            end: ListingEnd::Completed(ListingCompleted {
                workload: Workload::Incoming,
                items,
            }),
            failures,
            cursor: Cursor::from_text(next.to_text()),
        }
    }

    fn execute(&mut self, intent: Intent<'_>) -> Outcome {
        Outcome::unsupported(
            intent.id,
            "the POP3 connector reads incoming email; it carries out no intent",
        )
    }

    fn workload(&self) -> Workload {
        Workload::Incoming
    }

    /// Test & Enable of the incoming workload: logs in and counts the maildrop (`STAT`).
    fn test_connection(&mut self) -> Result<String, ServerError> {
        let mut session = Pop3Session::connect(&self.config)
            .map_err(|e| ServerError::of_kind(e.kind, e.message))?;
        let stat = session
            .command("STAT", "STAT")
            .map_err(|e| ServerError::of_kind(e.kind, e.message))?;
        session.quit();
        Ok(format!(
            "logged in at {}; the maildrop holds {} (messages, octets)",
            self.config.server(),
            stat
        ))
    }
}
