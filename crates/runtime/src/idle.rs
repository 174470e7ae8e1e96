//! Push for incoming email: one IMAP IDLE session per mailbox of an IMAP profile turns a
//! message arriving in its INBOX into a [`Signal::Push`] of its incoming workload. The mailbox
//! records `push_received` and, if the workload is enabled, its incoming driver cycles at once
//! instead of at its next scheduled run (R7's cadence stays the fallback: the tracked folders
//! other than INBOX, and a server without IDLE, are read at the scheduled cycles).
//!
//! Each session runs on a thread of its own (the IMAP reader blocks), separate from the
//! connection the driver reads with. Reading is not a change: the driver opens folders with
//! `EXAMINE` and fetches with `BODY.PEEK`, which change no flag, so a listing never wakes its
//! own mailbox. A session that fails (the server restarted, the network) is opened again after
//! a pause that doubles up to a minute; a server without IDLE is logged once and left to the
//! cadence. Each session that opens pushes once: what arrived while none was open (the service
//! stopped, the server restarted) is read then, not at the next scheduled cycle. Dropping
//! [`Idlers`] stops every session within [`IDLE_WAIT`].

use crate::scheduler::Signal;
use crate::service::MailboxEndpoint;
use ledgersync_connectors::ConnectorConfig;
use ledgersync_connectors::imap::{ImapConfig, ImapReader};
use ledgersync_domain::MailboxId;
use ledgersync_domain::event::Workload;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long one IDLE lasts before it is renewed (and the stop flag looked at).
pub const IDLE_WAIT: Duration = Duration::from_secs(5);

/// The longest pause before a failed session is opened again.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// The IDLE sessions of a service; dropping it stops them.
#[derive(Debug)]
pub struct Idlers {
    stop: Arc<AtomicBool>,
    /// The mailboxes with a session.
    pub mailboxes: Vec<MailboxId>,
}

impl Drop for Idlers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts an IDLE session on the INBOX of every endpoint with an IMAP connector that asks for
/// push (`watch`); each change it reports is sent to `signals` as a push of the incoming
/// workload.
pub fn idle(endpoints: &[MailboxEndpoint], signals: mpsc::UnboundedSender<Signal>) -> Idlers {
    let stop = Arc::new(AtomicBool::new(false));
    let mut mailboxes = Vec::new();
    for endpoint in endpoints.iter().filter(|e| e.watch) {
        let ConnectorConfig::Imap(config) = &endpoint.connector else {
            continue;
        };
        let mailbox = endpoint.mailbox.clone();
        let session = Session {
            mailbox: mailbox.clone(),
            config: config.clone(),
            signals: signals.clone(),
            stop: stop.clone(),
        };
        match std::thread::Builder::new()
            .name(format!("imap-idle-{mailbox}"))
            .spawn(move || session.run())
        {
            Ok(_) => mailboxes.push(mailbox),
            Err(e) => {
                tracing::warn!(mailbox = %mailbox, error = %e, "no IDLE session (no thread); incoming email is read at the scheduled cycles");
            }
        }
    }
    Idlers { stop, mailboxes }
}

struct Session {
    mailbox: MailboxId,
    config: ImapConfig,
    signals: mpsc::UnboundedSender<Signal>,
    stop: Arc<AtomicBool>,
}

impl Session {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps `pause`, waking early when stopped.
    fn pause(&self, pause: Duration) {
        let step = Duration::from_millis(100);
        let mut slept = Duration::ZERO;
        while slept < pause && !self.stopped() {
            std::thread::sleep(step);
            slept += step;
        }
    }

    fn run(self) {
        let mut pause = Duration::from_secs(1);
        while !self.stopped() {
            let mut reader = match ImapReader::connect(&self.config) {
                Ok(reader) => reader,
                Err(e) => {
                    tracing::warn!(mailbox = %self.mailbox, server = %self.config.server(), error = %e.message, retry_in_s = pause.as_secs(), "IDLE session not opened; incoming email is read at the scheduled cycles meanwhile");
                    self.pause(pause);
                    pause = (pause * 2).min(MAX_PAUSE);
                    continue;
                }
            };
            if !reader.has_idle() {
                tracing::info!(mailbox = %self.mailbox, server = %self.config.server(), "the IMAP server has no IDLE; incoming email is read at the scheduled cycles");
                return;
            }
            pause = Duration::from_secs(1);
            tracing::debug!(mailbox = %self.mailbox, "IDLE session open on INBOX");
            // What arrived while no session was open (the service stopped, the server
            // restarted) is read now, not at the next scheduled cycle.
            if self
                .signals
                .send(Signal::Push(self.mailbox.clone(), Workload::Incoming))
                .is_err()
            {
                return;
            }
            while !self.stopped() {
                match reader.idle_once("INBOX", IDLE_WAIT) {
                    Ok(true) => {
                        tracing::debug!(mailbox = %self.mailbox, "IDLE: INBOX changed; pushing the incoming workload");
                        if self
                            .signals
                            .send(Signal::Push(self.mailbox.clone(), Workload::Incoming))
                            .is_err()
                        {
                            return; // The scheduler is gone: the service stopped.
                        }
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(mailbox = %self.mailbox, error = %e.message, "IDLE session failed; opening it again");
                        break;
                    }
                }
            }
        }
    }
}
