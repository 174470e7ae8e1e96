//! The IMAP session: connecting, logging in, listing the tracked folders and reading them.

use super::{
    EmailHeaders, FetchedMessage, FolderCursor, FolderState, ImapConfig, ImapCursor, ImapError,
    ImapRead, KeywordChange, MAX_TRACKED_FOLDERS, Security,
};
use async_imap::error::Error as ImapLibError;
use async_imap::extensions::idle::IdleResponse;
use async_imap::types::{Fetch, Flag, NameAttribute};
use futures_util::TryStreamExt;
use ledgersync_domain::ErrorKind;
use std::fmt;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::runtime::Runtime;

/// A byte stream the IMAP client can run on: plain TCP or TLS over TCP.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Transport for T {}

pub(super) type Session = async_imap::Session<Box<dyn Transport>>;

/// How many UIDs one `UID FETCH` of headers names.
const HEADER_BATCH: usize = 200;

/// A logged-in IMAP session that reads the tracked folders (see the module doc of `imap`).
///
/// Folders are opened read-only (`EXAMINE`); when the server has CONDSTORE it is enabled once
/// (`ENABLE CONDSTORE`), so that every `EXAMINE` answers HIGHESTMODSEQ. The MAILBOXID of
/// RFC 8474 is not read yet: the IMAP parser used (imap-proto 0.17) does not know the
/// `MAILBOXID` response code, and Dovecot 2.3 does not offer OBJECTID; a deleted and
/// recreated folder is recognised by its new UIDVALIDITY.
pub struct ImapReader {
    /// `None` only while the reader is dropped.
    runtime: Option<Runtime>,
    session: Option<Session>,
    config: ImapConfig,
    condstore: bool,
    idle: bool,
    /// The state of each folder [`ImapReader::idle_once`] last saw: a change between two
    /// IDLEs is reported by the next call.
    watched: std::collections::BTreeMap<String, (u32, u32, Option<u64>)>,
}

impl fmt::Debug for ImapReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapReader")
            .field("server", &self.config.server())
            .field("username", &self.config.username)
            .field("connected", &self.session.is_some())
            .field("condstore", &self.condstore)
            .finish()
    }
}

/// Runs `fut` to its end on `runtime`, or fails with a timeout after `timeout`.
fn block<T>(
    runtime: &Runtime,
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, ImapError>>,
) -> Result<T, ImapError> {
    runtime.block_on(async {
        match tokio::time::timeout(timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(ImapError::new(
                ErrorKind::Timeout,
                format!("{what}: no answer within {timeout:?}"),
            )),
        }
    })
}

/// An error of the IMAP library as an [`ImapError`]. `no` is the kind of a `NO` answer
/// (`Auth` for a login, `NotFound` for a folder).
pub(super) fn lib_error(what: &str, no: ErrorKind, err: ImapLibError) -> ImapError {
    let (kind, detail) = match err {
        ImapLibError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            (ErrorKind::Timeout, e.to_string())
        }
        // The client reports an answer it cannot parse as an `Other` I/O error.
        ImapLibError::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::Other | std::io::ErrorKind::InvalidData
            ) =>
        {
            (ErrorKind::Malformed, format!("unreadable answer: {e}"))
        }
        ImapLibError::Io(e) => (ErrorKind::Network, e.to_string()),
        ImapLibError::ConnectionLost => (ErrorKind::Network, "the connection was closed".into()),
        ImapLibError::No(text) => (no, format!("the server answered NO: {text}")),
        ImapLibError::Bad(text) if no == ErrorKind::Auth => {
            (ErrorKind::Auth, format!("the server answered BAD: {text}"))
        }
        ImapLibError::Bad(text) => (
            ErrorKind::Malformed,
            format!("the server answered BAD: {text}"),
        ),
        other => (ErrorKind::Malformed, format!("unexpected answer: {other}")),
    };
    ImapError::new(kind, format!("{what}: {detail}"))
}

fn flag_text(flag: &Flag<'_>) -> Option<String> {
    Some(match flag {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => return None,
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(text) => text.to_string(),
    })
}

fn keywords(fetch: &Fetch) -> Vec<String> {
    fetch.flags().filter_map(|f| flag_text(&f)).collect()
}

/// A UID set (`3,5,9`) for one command.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

async fn open(config: &ImapConfig) -> Result<Box<dyn Transport>, ImapError> {
    let server = config.server();
    let tcp = tokio::net::TcpStream::connect((config.host.as_str(), config.port))
        .await
        .map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::TimedOut {
                ErrorKind::Timeout
            } else {
                ErrorKind::Network
            };
            ImapError::new(
                kind,
                format!("cannot connect to the IMAP server {server}: {e}; check the host and port and that the server runs"),
            )
        })?;
    match config.security {
        Security::Plain => Ok(Box::new(tcp)),
        Security::Tls => {
            let (tls, name) = crate::tls::client(&config.host, &server)
                .map_err(|e| ImapError::new(ErrorKind::Tls, e))?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| {
                    ImapError::new(
                        ErrorKind::Tls,
                        format!("TLS handshake with the IMAP server {server} failed: {e}"),
                    )
                })?;
            Ok(Box::new(stream))
        }
    }
}

async fn login(config: &ImapConfig) -> Result<Session, ImapError> {
    let server = config.server();
    let mut client = async_imap::Client::new(open(config).await?);
    match client.read_response().await {
        Ok(Some(_greeting)) => {}
        Ok(None) => {
            return Err(ImapError::new(
                ErrorKind::Network,
                format!("the IMAP server {server} closed the connection before its greeting"),
            ));
        }
        Err(e) => {
            return Err(lib_error(
                &format!("greeting of {server}"),
                ErrorKind::Network,
                e.into(),
            ));
        }
    }
    client
        .login(&config.username, config.password.expose())
        .await
        .map_err(|(e, _)| {
            let mut err = lib_error(
                &format!("login of {} at {server}", config.username),
                ErrorKind::Auth,
                e,
            );
            if err.kind == ErrorKind::Auth {
                err.message.push_str("; check the user name and password");
            }
            // A server that echoes the command must not carry the password into a log.
            let password = config.password.expose();
            if !password.is_empty() {
                err.message = err.message.replace(password, "[redacted]");
            }
            err
        })
}

impl ImapReader {
    /// Connects, logs in and learns the server's capabilities.
    pub fn connect(config: &ImapConfig) -> Result<ImapReader, ImapError> {
        if config.folders.len() > MAX_TRACKED_FOLDERS {
            return Err(ImapError::new(
                ErrorKind::Unsupported,
                format!(
                    "{} tracked folders are configured for {}; at most {MAX_TRACKED_FOLDERS} are read",
                    config.folders.len(),
                    config.username
                ),
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                ImapError::new(ErrorKind::Unavailable, format!("no runtime for IMAP: {e}"))
            })?;
        let server = config.server();
        let timeout = config.timeout;
        let (session, condstore, idle) = block(
            &runtime,
            timeout,
            &format!("connecting to {server}"),
            async {
                let mut session = login(config).await?;
                let caps = session.capabilities().await.map_err(|e| {
                    lib_error(&format!("CAPABILITY at {server}"), ErrorKind::Malformed, e)
                })?;
                let condstore = caps.has_str("CONDSTORE");
                if condstore {
                    session
                        .run_command_and_check_ok("ENABLE CONDSTORE")
                        .await
                        .map_err(|e| {
                            lib_error(
                                &format!("ENABLE CONDSTORE at {server}"),
                                ErrorKind::Malformed,
                                e,
                            )
                        })?;
                }
                Ok((session, condstore, caps.has_str("IDLE")))
            },
        )?;
        Ok(ImapReader {
            runtime: Some(runtime),
            session: Some(session),
            config: config.clone(),
            condstore,
            idle,
            watched: std::collections::BTreeMap::new(),
        })
    }

    /// The configuration it logged in with.
    pub(super) fn config(&self) -> &ImapConfig {
        &self.config
    }

    /// Whether the server has IDLE (and so can push).
    pub fn has_idle(&self) -> bool {
        self.idle
    }

    /// Whether the server has CONDSTORE (and so reports keyword changes).
    pub fn has_condstore(&self) -> bool {
        self.condstore
    }

    /// Runs one exchange with the server; a failure that leaves the connection in doubt
    /// (timeout, network, a garbled answer) drops the session.
    pub(super) fn exchange<T>(
        &mut self,
        what: &str,
        work: impl AsyncFnOnce(&mut Session) -> Result<T, ImapError>,
    ) -> Result<T, ImapError> {
        let Some(session) = self.session.as_mut() else {
            return Err(ImapError::new(
                ErrorKind::Network,
                format!(
                    "the connection to {} was dropped after an earlier failure; connect again",
                    self.config.server()
                ),
            ));
        };
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime is taken only when the reader is dropped");
        let result = block(runtime, self.config.timeout, what, work(session));
        if let Err(e) = &result
            && matches!(
                e.kind,
                ErrorKind::Timeout | ErrorKind::Network | ErrorKind::Malformed
            )
        {
            self.session = None;
        }
        result
    }

    /// INBOX, every configured tracked folder and the `\Sent` folder (when the server marks
    /// one), each with its state now. A configured folder outside INBOX is `Unsupported`, one
    /// that does not exist `NotFound`.
    pub fn folders(&mut self) -> Result<Vec<FolderState>, ImapError> {
        let mut states = Vec::new();
        for (name, special_use) in self.tracked()? {
            let mailbox = self.examine(&name)?;
            states.push(FolderState {
                name,
                special_use,
                ..mailbox
            });
        }
        Ok(states)
    }

    /// The names of the folders [`ImapReader::folders`] describes, with their special use,
    /// from one LIST.
    pub(super) fn tracked(&mut self) -> Result<Vec<(String, Option<String>)>, ImapError> {
        let server = self.config.server();
        let listed = self.exchange(&format!("LIST at {server}"), async |s| {
            let names: Vec<_> = s
                .list(Some(""), Some("*"))
                .await
                .map_err(|e| lib_error(&format!("LIST at {server}"), ErrorKind::Malformed, e))?
                .try_collect()
                .await
                .map_err(|e| lib_error(&format!("LIST at {server}"), ErrorKind::Malformed, e))?;
            Ok(names
                .iter()
                .map(|n| {
                    let sent = n
                        .attributes()
                        .iter()
                        .any(|a| matches!(a, NameAttribute::Sent));
                    (
                        n.name().to_string(),
                        n.delimiter().map(str::to_string),
                        sent,
                    )
                })
                .collect::<Vec<_>>())
        })?;
        let delimiter = listed
            .iter()
            .find_map(|(_, d, _)| d.clone())
            .unwrap_or_else(|| "/".to_string());

        let mut wanted: Vec<(String, Option<String>)> = vec![("INBOX".to_string(), None)];
        let prefix = format!("INBOX{delimiter}");
        for name in &self.config.folders {
            if name.eq_ignore_ascii_case("INBOX") {
                continue;
            }
            if !name.starts_with(&prefix) || name.len() == prefix.len() {
                return Err(ImapError::new(
                    ErrorKind::Unsupported,
                    format!(
                        "the tracked folder `{name}` of {} is not under INBOX; only INBOX and \
                         folders named `{prefix}…` are read",
                        self.config.username
                    ),
                ));
            }
            if !listed.iter().any(|(n, _, _)| n == name) {
                return Err(ImapError::new(
                    ErrorKind::NotFound,
                    format!(
                        "the tracked folder `{name}` does not exist for {} at {server}; create it \
                         or remove it from the configuration",
                        self.config.username
                    ),
                ));
            }
            if !wanted.iter().any(|(n, _)| n == name) {
                wanted.push((name.clone(), None));
            }
        }
        if let Some((sent, _, _)) = listed.iter().find(|(_, _, sent)| *sent) {
            match wanted.iter_mut().find(|(n, _)| n == sent) {
                Some((_, special_use)) => *special_use = Some("\\Sent".to_string()),
                None => wanted.push((sent.clone(), Some("\\Sent".to_string()))),
            }
        }

        Ok(wanted)
    }

    /// Opens `name` read-only and returns its state (without special use).
    fn examine(&mut self, name: &str) -> Result<FolderState, ImapError> {
        let server = self.config.server();
        let what = format!("EXAMINE `{name}` at {server}");
        let mailbox = self.exchange(&what, async |s| {
            s.examine(name)
                .await
                .map_err(|e| lib_error(&what, ErrorKind::NotFound, e))
        })?;
        let missing = |field: &str| {
            ImapError::new(
                ErrorKind::Malformed,
                format!("{what}: the server gave no {field}"),
            )
        };
        Ok(FolderState {
            name: name.to_string(),
            mailbox_id: None,
            uidvalidity: mailbox.uid_validity.ok_or_else(|| missing("UIDVALIDITY"))?,
            uidnext: mailbox.uid_next.ok_or_else(|| missing("UIDNEXT"))?,
            highestmodseq: if self.condstore {
                mailbox.highest_modseq
            } else {
                None
            },
            special_use: None,
        })
    }

    /// Reads every folder of [`ImapReader::folders`] from where `cursor` stands: new messages
    /// (every message of a folder new to the cursor or reset), keyword changes of known
    /// messages, and the cursor for the next read. Folders no longer tracked leave the cursor.
    pub fn read(&mut self, cursor: &ImapCursor) -> Result<ImapRead, ImapError> {
        let mut out = ImapRead::default();
        for (name, special_use) in self.tracked()? {
            if special_use.as_deref() == Some("\\Sent") {
                out.sent = Some(name.clone());
            }
            let before = cursor.folders.get(&name);
            self.read_folder(&name, before, &mut out)?;
        }
        Ok(out)
    }

    fn read_folder(
        &mut self,
        name: &str,
        before: Option<&FolderCursor>,
        out: &mut ImapRead,
    ) -> Result<(), ImapError> {
        let server = self.config.server();
        // The state at the moment the folder is open for the fetches below.
        let now = self.examine(name)?;
        let start = match before {
            None => 1,
            Some(b)
                if b.uidvalidity != now.uidvalidity
                    || (b.mailbox_id.is_some()
                        && now.mailbox_id.is_some()
                        && b.mailbox_id != now.mailbox_id) =>
            {
                out.resets.push(name.to_string());
                1
            }
            Some(b) => b.uidnext.max(1),
        };
        let incremental = before.filter(|_| start > 1);

        // New messages: UIDs from `start`. `N:*` names the last message even below N.
        let what = format!("UID FETCH in `{name}` at {server}");
        let mut fresh: Vec<(u32, i64, u64, Vec<String>)> = Vec::new();
        if start < now.uidnext {
            let range = format!("{start}:*");
            fresh = self.exchange(&what, async |s| {
                let fetches: Vec<Fetch> = s
                    .uid_fetch(&range, "(UID FLAGS INTERNALDATE RFC822.SIZE)")
                    .await
                    .map_err(|e| lib_error(&what, ErrorKind::Malformed, e))?
                    .try_collect()
                    .await
                    .map_err(|e| lib_error(&what, ErrorKind::Malformed, e))?;
                let mut fresh = Vec::new();
                for f in &fetches {
                    let Some(uid) = f.uid.filter(|uid| *uid >= start) else {
                        continue;
                    };
                    let (Some(date), Some(size)) = (f.internal_date(), f.size) else {
                        continue; // an unsolicited FLAGS update, not an answer
                    };
                    fresh.push((uid, date.timestamp_millis(), u64::from(size), keywords(f)));
                }
                Ok(fresh)
            })?;
            fresh.sort_by_key(|m| m.0);
            fresh.dedup_by_key(|m| m.0);
        }

        // Headers of the messages within the size limit, by batches of UIDs.
        let limit = self.config.max_message_bytes;
        let wanted: Vec<u32> = fresh.iter().filter(|m| m.2 <= limit).map(|m| m.0).collect();
        let mut headers = std::collections::HashMap::new();
        for batch in wanted.chunks(HEADER_BATCH) {
            let set = uid_set(batch);
            let got = self.exchange(&what, async |s| {
                let fetches: Vec<Fetch> = s
                    .uid_fetch(&set, "(UID BODY.PEEK[HEADER])")
                    .await
                    .map_err(|e| lib_error(&what, ErrorKind::Malformed, e))?
                    .try_collect()
                    .await
                    .map_err(|e| lib_error(&what, ErrorKind::Malformed, e))?;
                Ok(fetches
                    .iter()
                    .filter_map(|f| Some((f.uid?, EmailHeaders::parse(f.header()?))))
                    .collect::<Vec<_>>())
            })?;
            headers.extend(got);
        }
        // Never backwards, even if the server's UIDNEXT is (that would read messages again).
        let mut uidnext = now.uidnext.max(start);
        let keyword = self.config.tracking_keyword.clone();
        let carries =
            |keywords: &[String]| keywords.iter().any(|k| k.eq_ignore_ascii_case(&keyword));
        let mut tracked = incremental.map(|b| b.tracked.clone()).unwrap_or_default();
        for (uid, internal_date_ms, size, keywords) in fresh {
            if carries(&keywords) {
                tracked.insert(uid);
            }
            uidnext = uidnext.max(uid.saturating_add(1));
            out.messages.push(FetchedMessage {
                folder: name.to_string(),
                uid,
                uidvalidity: now.uidvalidity,
                internal_date_ms,
                size,
                keywords,
                headers: headers.remove(&uid).flatten(),
                too_large: size > limit,
            });
        }

        // Keyword changes of the messages read before (CONDSTORE).
        if let Some(b) = incremental
            && let (Some(then), Some(modseq)) = (b.highestmodseq, now.highestmodseq)
            && modseq != then
            && b.uidnext > 1
        {
            let command = format!("(UID FLAGS) (CHANGEDSINCE {then})");
            let range = format!("1:{}", b.uidnext - 1);
            let changed = self.exchange(&what, async |s| {
                let fetches: Vec<Fetch> = s
                    .uid_fetch(&range, &command)
                    .await
                    .map_err(|e| lib_error(&what, ErrorKind::Malformed, e))?
                    .try_collect()
                    .await
                    .map_err(|e| lib_error(&what, ErrorKind::Malformed, e))?;
                Ok(fetches
                    .iter()
                    .filter_map(|f| Some((f.uid.filter(|uid| *uid < b.uidnext)?, keywords(f))))
                    .collect::<Vec<_>>())
            })?;
            let mut changed = changed;
            changed.sort_by_key(|c| c.0);
            changed.dedup_by_key(|c| c.0);
            // The tracking keyword added or removed: those messages are read again, headers
            // included (a change of another flag, `\Seen`, reads nothing more).
            let mut retrack = Vec::new();
            for (uid, keywords) in &changed {
                let has = carries(keywords);
                if has != tracked.contains(uid) {
                    retrack.push(*uid);
                    if has {
                        tracked.insert(*uid);
                    } else {
                        tracked.remove(uid);
                    }
                }
            }
            for batch in retrack.chunks(HEADER_BATCH) {
                let set = uid_set(batch);
                let again = self.exchange(&what, async |s| {
                    let fetches: Vec<Fetch> = s
                        .uid_fetch(
                            &set,
                            "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])",
                        )
                        .await
                        .map_err(|e| lib_error(&what, ErrorKind::Malformed, e))?
                        .try_collect()
                        .await
                        .map_err(|e| lib_error(&what, ErrorKind::Malformed, e))?;
                    Ok(fetches
                        .iter()
                        .filter_map(|f| {
                            let size = u64::from(f.size?);
                            Some(FetchedMessage {
                                folder: name.to_string(),
                                uid: f.uid?,
                                uidvalidity: now.uidvalidity,
                                internal_date_ms: f.internal_date()?.timestamp_millis(),
                                size,
                                keywords: keywords(f),
                                headers: f.header().and_then(EmailHeaders::parse),
                                too_large: size > limit,
                            })
                        })
                        .collect::<Vec<_>>())
                })?;
                out.retracked.extend(again);
            }
            out.keyword_changes
                .extend(changed.into_iter().map(|(uid, keywords)| KeywordChange {
                    folder: name.to_string(),
                    uid,
                    keywords,
                }));
        }

        out.cursor.folders.insert(
            name.to_string(),
            FolderCursor {
                mailbox_id: now.mailbox_id.clone(),
                uidvalidity: now.uidvalidity,
                uidnext,
                highestmodseq: now.highestmodseq,
                tracked,
            },
        );
        Ok(())
    }
}

impl ImapReader {
    /// Waits, with IMAP IDLE, until the server reports a change in `folder` (a message
    /// arrived, left or had its flags changed) or `wait` passes: `true` when something
    /// changed. The folder is opened read-only first; [`ImapReader::read`] then says what
    /// changed. `Unsupported` when the server has no IDLE.
    ///
    /// Called in a loop, it misses nothing between two calls: the folder's UIDVALIDITY,
    /// UIDNEXT and HIGHESTMODSEQ when the last call ended are compared with the ones the next
    /// `EXAMINE` answers, and a difference is a change, reported at once.
    pub fn idle_once(&mut self, folder: &str, wait: Duration) -> Result<bool, ImapError> {
        let server = self.config.server();
        if !self.idle {
            return Err(ImapError::new(
                ErrorKind::Unsupported,
                format!("the IMAP server {server} has no IDLE; read it at intervals instead"),
            ));
        }
        let now = self.examine(folder)?;
        let now = (now.uidvalidity, now.uidnext, now.highestmodseq);
        if self
            .watched
            .insert(folder.to_string(), now)
            .is_some_and(|before| before != now)
        {
            return Ok(true);
        }
        let what = format!("IDLE on `{folder}` at {server}");
        let Some(session) = self.session.take() else {
            return Err(ImapError::new(
                ErrorKind::Network,
                format!("{what}: the connection was dropped after an earlier failure"),
            ));
        };
        // On failure the session stays dropped: the connection's state is unknown.
        let (session, changed) = block(
            self.runtime(),
            wait.saturating_add(self.config.timeout),
            &what,
            async {
                let mut handle = session.idle();
                handle
                    .init()
                    .await
                    .map_err(|e| lib_error(&what, ErrorKind::Malformed, e))?;
                let answer = {
                    let (answer, _stop) = handle.wait_with_timeout(wait);
                    answer
                        .await
                        .map_err(|e| lib_error(&what, ErrorKind::Malformed, e))?
                };
                let session = handle
                    .done()
                    .await
                    .map_err(|e| lib_error(&what, ErrorKind::Malformed, e))?;
                Ok((session, matches!(answer, IdleResponse::NewData(_))))
            },
        )?;
        self.session = Some(session);
        if changed {
            // What the change left is the state the next call compares with.
            let after = self.examine(folder)?;
            self.watched.insert(
                folder.to_string(),
                (after.uidvalidity, after.uidnext, after.highestmodseq),
            );
        }
        Ok(changed)
    }
}

impl Drop for ImapReader {
    /// Logs out (at most 2 s) and ends the reader's runtime. A runtime can be neither blocked on
    /// nor dropped inside another one, and a reader is dropped by an async task when the
    /// service stops: there, both happen on a thread of their own.
    fn drop(&mut self) {
        let session = self.session.take();
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        let timeout = self.config.timeout.min(Duration::from_secs(2));
        let end = move || {
            if let Some(mut session) = session {
                let _ = runtime
                    .block_on(async { tokio::time::timeout(timeout, session.logout()).await });
            }
            drop(runtime);
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("imap-logout".into())
                .spawn(end);
        } else {
            end();
        }
    }
}

impl ImapReader {
    fn runtime(&self) -> &Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime is taken only when the reader is dropped")
    }
}
