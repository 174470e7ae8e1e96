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
//!   itself and sends the text: the service may not see the same files);
//! - the service answers with frames `{"out": text}` (standard output), `{"err": text}`
//!   (standard error), and last `{"exit": code}`.
//!
//! The socket file is created with the data directory's permissions: whoever may read the
//! journal may use it. It is removed when `serve` stops; a leftover one (after a kill -9) is
//! detected — nobody accepts on it — and replaced by the next `serve`, and ignored by commands.

use crate::config::Config;
use crate::ctx::{Ctx, Live};
use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::{BufRead as _, BufReader, Read as _, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The socket's file name inside the data directory.
pub const SOCKET: &str = "control.sock";

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
    let stream = UnixStream::connect(&path).ok()?;
    Some(talk(stream, args, input).with_context(|| {
        format!(
            "talking to the ledgersync serve running on {} (socket {})",
            data.display(),
            path.display()
        )
    }))
}

fn talk(
    mut stream: UnixStream,
    args: Vec<String>,
    input: Option<(String, String)>,
) -> Result<ExitCode> {
    let request = Request {
        args,
        input: input.map(|(name, text)| Input { name, text }),
    };
    serde_json::to_writer(&mut stream, &request)?;
    stream.write_all(b"\n")?;
    let reader = BufReader::new(stream);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    for line in reader.lines() {
        let line = line?;
        match serde_json::from_str::<Frame>(&line)
            .with_context(|| format!("an answer that is not a frame: {line}"))?
        {
            Frame::Out(text) => stdout.lock().write_all(text.as_bytes())?,
            Frame::Err(text) => stderr.lock().write_all(text.as_bytes())?,
            Frame::Exit(code) => return Ok(ExitCode::from(code)),
        }
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
        let closing = Arc::new(AtomicBool::new(false));
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
                        let live = live.clone();
                        let config = config.clone();
                        let data = data.clone();
                        let _ = std::thread::Builder::new()
                            .name("control-command".into())
                            .spawn(move || answer(stream, &live, &config, data));
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

fn answer(stream: UnixStream, live: &Live, config: &Config, data: PathBuf) {
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    // The request carries a `crm apply` input: at most [limits] max_file_bytes of it (JSON
    // escaping may double it), never read unbounded.
    let cap = config.limits.max_file_bytes.saturating_mul(2) + 1024 * 1024;
    let mut line = String::new();
    if BufReader::new(reader.take(cap))
        .read_line(&mut line)
        .is_err()
        || line.trim().is_empty()
    {
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
            tracing::info!(command = %request.args.join(" "), "control command");
            run(request, live, config, data, &mut out, &mut err)
        }
        Err(e) => {
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
