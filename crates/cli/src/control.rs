//! The control socket of a running `ledgersync serve`: `<data>/control.sock`.
//!
//! The journal and the projection can be open in one process only, so while `serve` runs the
//! other `ledgersync` commands on its data directory (`crm apply`, `mailbox …`, `timeline`,
//! `explain`, `replay`, …) are sent to it and run inside it with the same code ([`crate::ctx`]).
//!
//! Protocol, one connection per command, JSON lines:
//!
//! - the client sends one request: `{"args": [the arguments after the program name],
//!   "input": {"name": …, "text": …} | null}` (`crm apply` reads its file or standard input
//!   itself and sends the text: the service never opens a file for a client, and refuses a
//!   `crm apply` whose request carries no input);
//! - the service answers with frames `{"out": text}` (standard output), `{"err": text}`
//!   (standard error), and last `{"exit": code}` — or `{"busy": text}` alone when it already
//!   holds [`MAX_CONNECTIONS`] connections (the client tries again for a while).
//!
//! Who may connect (`access.rs`): the socket is 0600 (0660 with `data.group`), inside a data
//! directory that is 0700 (02750); every connection's peer is checked with `SO_PEERCRED` — the
//! service's own uid, root, or the configured group — and refused otherwise. Every command is
//! logged with the peer's uid and pid. A connection must send its request within
//! [`REQUEST_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are served at once: idle connections
//! cannot exhaust the service's descriptors.
//!
//! The socket is removed when `serve` stops; a leftover one (after a kill -9) is
//! detected — nobody accepts on it — and replaced by the next `serve`, and ignored by commands.

use crate::access::{self, Policy};
use crate::config::Config;
use crate::ctx::{Ctx, Live};
use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::{BufRead as _, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The socket's file name inside the data directory.
pub const SOCKET: &str = "control.sock";

/// Connections served at once; more are answered `busy` and closed at once.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection may take to send its request.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a client that does not read its answer may block one of the service's writes.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a client tries again while the service is busy.
const BUSY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// What a client sends.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    args: Vec<String>,
    input: Option<Input>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Input {
    name: String,
    text: String,
}

/// What the service answers, frame by frame.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Frame {
    Out(String),
    Err(String),
    Exit(u8),
    Busy(String),
}

/// The socket path of a data directory.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join(SOCKET)
}

// ───────────────────────────────── client ─────────────────────────────────

/// Sends the command to the `serve` running on `data`, if one answers there; prints its output
/// and returns its exit code. `None`: no service answers (run the command here).
pub fn forward(
    data: &Path,
    args: Vec<String>,
    input: Option<(String, String)>,
) -> Option<Result<ExitCode>> {
    let path = socket_path(data);
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(50);
    loop {
        let stream = match UnixStream::connect(&path) {
            Ok(stream) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Some(Err(anyhow::anyhow!(
                    "permission denied on {} ({e}): only the owner of the data directory {}, \
                     root and its configured group (`data.group`) may use it and the ledgersync \
                     service running on it",
                    path.display(),
                    data.display()
                )));
            }
            Err(_) => return None,
        };
        match talk(stream, &args, &input) {
            // Busy: nothing was run; the same request is sent again.
            Ok(Answer::Busy(_)) if started.elapsed() < BUSY_PATIENCE => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
            Ok(Answer::Busy(message)) => {
                return Some(Err(anyhow::anyhow!(
                    "the ledgersync serve running on {} stayed busy for {} s: {message}",
                    data.display(),
                    BUSY_PATIENCE.as_secs()
                )));
            }
            Ok(Answer::Exit(code)) => return Some(Ok(code)),
            Err(e) => {
                return Some(Err(e.context(format!(
                    "talking to the ledgersync serve running on {} (socket {})",
                    data.display(),
                    path.display()
                ))));
            }
        }
    }
}

/// How a conversation ended.
enum Answer {
    Exit(ExitCode),
    Busy(String),
}

fn talk(
    mut stream: UnixStream,
    args: &[String],
    input: &Option<(String, String)>,
) -> Result<Answer> {
    let request = Request {
        args: args.to_vec(),
        input: input.clone().map(|(name, text)| Input { name, text }),
    };
    let mut line = serde_json::to_vec(&request)?;
    line.push(b'\n');
    // A service that refuses the connection (busy, or not for this user) answers and closes
    // without reading the request: its answer is read all the same.
    let sent = stream.write_all(&line);
    let reader = BufReader::new(stream);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    for line in reader.lines() {
        let line = match (line, &sent) {
            (Ok(line), _) => line,
            (Err(_), Err(e)) => bail!("sending the request: {e}"),
            (Err(e), Ok(())) => return Err(e.into()),
        };
        match serde_json::from_str::<Frame>(&line)
            .with_context(|| format!("an answer that is not a frame: {line}"))?
        {
            Frame::Out(text) => stdout.lock().write_all(text.as_bytes())?,
            Frame::Err(text) => stderr.lock().write_all(text.as_bytes())?,
            Frame::Exit(code) => return Ok(Answer::Exit(ExitCode::from(code))),
            Frame::Busy(message) => return Ok(Answer::Busy(message)),
        }
    }
    if let Err(e) = sent {
        bail!("sending the request: {e}");
    }
    bail!("the service closed the connection before the command finished (was it stopped?)")
}

// ───────────────────────────────── server ─────────────────────────────────

/// The control socket of a running service (see the module doc). Dropping it, or
/// [`ControlSocket::close`], stops accepting and removes the socket file.
pub struct ControlSocket {
    path: PathBuf,
    closing: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl ControlSocket {
    /// Binds `<data>/control.sock` (replacing a leftover nobody accepts on) and answers each
    /// connection on its own thread, running the command against `live`.
    pub fn bind(data: &Path, live: Arc<Live>, config: Config) -> Result<Self> {
        let policy = Policy::of(&config)?;
        let path = socket_path(data);
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                bail!(
                    "{} answers: another ledgersync serve runs on this data directory",
                    path.display()
                );
            }
            std::fs::remove_file(&path)
                .with_context(|| format!("removing the leftover socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("creating the control socket {}", path.display()))?;
        access::secure_socket(&path, &policy)?;
        let closing = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let acceptor = {
            let closing = closing.clone();
            let data = data.to_path_buf();
            std::thread::Builder::new()
                .name("control".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if closing.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let peer = match access::peer(&stream) {
                            Ok(peer) => peer,
                            Err(e) => {
                                tracing::warn!(error = %e, "control connection without peer credentials refused");
                                continue;
                            }
                        };
                        if let Err(why) = policy.admit(&peer) {
                            tracing::warn!(uid = peer.uid, gid = peer.gid, pid = peer.pid, "control connection refused");
                            refuse(stream, Frame::Err(format!("error: {why}\n")));
                            continue;
                        }
                        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                            open.fetch_sub(1, Ordering::SeqCst);
                            refuse(
                                stream,
                                Frame::Busy(format!(
                                    "{MAX_CONNECTIONS} control connections are open; try again"
                                )),
                            );
                            continue;
                        }
                        let live = live.clone();
                        let config = config.clone();
                        let data = data.clone();
                        let slot = Slot(open.clone());
                        let spawned = std::thread::Builder::new()
                            .name("control-command".into())
                            .spawn(move || {
                                let _slot = slot;
                                answer(stream, peer, &live, &config, data)
                            });
                        if let Err(e) = spawned {
                            tracing::warn!(error = %e, "no thread for a control connection");
                        }
                    }
                })
                .context("starting the control thread")?
        };
        Ok(Self {
            path,
            closing,
            acceptor: Some(acceptor),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting commands (those running finish) and removes the socket file.
    pub fn close(&mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            self.closing.store(true, Ordering::SeqCst);
            // Wake the blocking accept.
            let _ = UnixStream::connect(&self.path);
            let _ = acceptor.join();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.close();
    }
}

/// Writes what a command prints as frames on the connection.
struct Frames {
    stream: Arc<Mutex<UnixStream>>,
    err: bool,
}

impl Write for Frames {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf).into_owned();
        let frame = if self.err {
            Frame::Err(text)
        } else {
            Frame::Out(text)
        };
        send(&self.stream, &frame)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn send(stream: &Mutex<UnixStream>, frame: &Frame) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(frame).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut stream = stream.lock().unwrap_or_else(|p| p.into_inner());
    stream.write_all(&line)
}

/// One served connection: frees its place when its thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers a connection that is not served with one frame, without waiting for it.
fn refuse(stream: UnixStream, frame: Frame) {
    let _ = stream.set_nonblocking(true);
    let stream = Mutex::new(stream);
    let _ = send(&stream, &frame);
    if !matches!(frame, Frame::Busy(_)) {
        let _ = send(&stream, &Frame::Exit(2));
    }
    // Closing a Unix socket with unread data resets it for the client, which might lose the
    // answer: read what already arrived (without waiting), then close.
    let mut stream = stream.into_inner().unwrap_or_else(|p| p.into_inner());
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 16 << 10];
    for _ in 0..16 {
        match std::io::Read::read(&mut stream, &mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

fn answer(stream: UnixStream, peer: access::Peer, live: &Live, config: &Config, data: PathBuf) {
    // An idle connection is dropped after REQUEST_TIMEOUT; a client that stops reading its
    // answer, after WRITE_TIMEOUT.
    if stream.set_read_timeout(Some(REQUEST_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
    {
        return;
    }
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    // The request carries a `crm apply` input: at most [limits] max_file_bytes of it (JSON
    // escaping may double it), never read unbounded.
    let cap = config.limits.max_file_bytes.saturating_mul(2) + 1024 * 1024;
    let mut line = String::new();
    // One request line, bounded by the limit above.
    let mut reader = std::io::Read::take(BufReader::new(reader), cap);
    if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
        tracing::debug!(
            uid = peer.uid,
            pid = peer.pid,
            "control connection closed without a request"
        );
        return;
    }
    let too_large = !line.ends_with('\n') && line.len() as u64 >= cap;
    let stream = Arc::new(Mutex::new(stream));
    let mut out = Frames {
        stream: stream.clone(),
        err: false,
    };
    let mut err = Frames {
        stream: stream.clone(),
        err: true,
    };
    let code = match serde_json::from_str::<Request>(&line) {
        _ if too_large => {
            let _ = writeln!(
                err,
                "error: the request is larger than {cap} bytes: its input exceeds max_file_bytes \
                 ({}) in the [limits] table of the service's configuration; nothing was applied",
                config.limits.max_file_bytes
            );
            2
        }
        Ok(request) => {
            tracing::info!(
                uid = peer.uid,
                gid = peer.gid,
                pid = peer.pid,
                command = %request.args.join(" "),
                input = request.input.as_ref().map(|i| i.name.as_str()),
                "control command"
            );
            run(request, live, config, data, &mut out, &mut err)
        }
        Err(e) => {
            tracing::warn!(
                uid = peer.uid,
                pid = peer.pid,
                "control request refused: not a request"
            );
            let _ = writeln!(err, "error: not a ledgersync control request ({e})");
            2
        }
    };
    let _ = send(&stream, &Frame::Exit(code));
}

fn run(
    request: Request,
    live: &Live,
    config: &Config,
    data: PathBuf,
    out: &mut Frames,
    err: &mut Frames,
) -> u8 {
    let argv = std::iter::once("ledgersync".to_string()).chain(request.args);
    let cli = match <crate::Cli as clap::Parser>::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = write!(err, "{e}");
            return 2;
        }
    };
    // The service never opens a file for a client: `crm apply` carries its text.
    if let crate::Command::Crm {
        command: crate::CrmCommand::Apply { file },
    } = &cli.command
        && request.input.is_none()
    {
        let _ = writeln!(
            err,
            "error: refused: the request carries no input; the client reads {} itself and \
             sends its text (`input`), the service never opens a file for a client",
            file.display()
        );
        return 2;
    }
    let mut ctx = Ctx {
        data: Some(data),
        config,
        json: cli.json,
        out,
        err,
        live: Some(live),
        input: request.input.map(|i| (i.name, i.text)),
    };
    match crate::dispatch(cli.command, &mut ctx) {
        Ok(code) => crate::exit_number(code),
        Err(e) => {
            let _ = writeln!(ctx.err, "error: {e:#}");
            2
        }
    }
}
