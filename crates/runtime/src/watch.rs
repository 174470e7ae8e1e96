//! Push for local collections: a file-system watcher on each mailbox's vdir calendar and
//! address book turns a change made by another program (khal, khard, vdirsyncer, an editor)
//! into a [`Signal::Push`], the local equivalent of IMAP IDLE or a CalDAV webhook. The mailbox
//! then records `push_received` and, if its workload is enabled, cycles at once (R9) instead of
//! at its next scheduled run.
//!
//! Changes are debounced per mailbox: a push is sent once the mailbox's collections have been
//! quiet for `quiet` (an editor saving a file, or a sync tool writing many, makes one push).
//! ledgersync's own files under `.ledgersync/` are ignored; its final renames into the
//! collection do cause a push, whose listing records the first sighting of what it wrote.

use crate::scheduler::Signal;
use crate::service::MailboxEndpoint;
use ledgersync_connectors::OWN_DIR;
use ledgersync_domain::MailboxId;
use notify::{RecursiveMode, Watcher as _};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The watchers of a service; dropping them stops the watching.
pub struct Watchers {
    _watchers: Vec<notify::RecommendedWatcher>,
}

/// Watches the collections of every endpoint that asks for it and sends a debounced
/// [`Signal::Push`] to `signals` (spawned on the current actix/tokio runtime). A collection that
/// cannot be watched is logged and left to the scheduled cadence.
pub fn watch(
    endpoints: &[MailboxEndpoint],
    quiet: Duration,
    signals: mpsc::UnboundedSender<Signal>,
) -> Watchers {
    let (changed, mut changes) = mpsc::unbounded_channel::<MailboxId>();
    let mut watchers = Vec::new();
    for endpoint in endpoints.iter().filter(|e| e.watch) {
        let mailbox = endpoint.mailbox.clone();
        let changed = changed.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.paths.iter().any(|p| !is_own(p)) {
                let _ = changed.send(mailbox.clone());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(mailbox = %endpoint.mailbox, error = %e, "cannot watch the collections; changes are seen at the scheduled cycles");
                continue;
            }
        };
        let dirs = [&endpoint.vdir.calendar, &endpoint.vdir.address_book];
        for dir in dirs.into_iter().flatten() {
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(mailbox = %endpoint.mailbox, dir = %dir.display(), error = %e, "cannot watch the collection; its changes are seen at the scheduled cycles");
            }
        }
        watchers.push(watcher);
    }
    actix::spawn(async move {
        let mut pending: BTreeMap<MailboxId, Instant> = BTreeMap::new();
        loop {
            let next = pending.values().min().copied();
            tokio::select! {
                m = changes.recv() => match m {
                    Some(m) => {
                        pending.insert(m, Instant::now() + quiet);
                    }
                    None => return,
                },
                () = sleep_until(next) => {
                    let now = Instant::now();
                    let due: Vec<MailboxId> = pending
                        .iter()
                        .filter(|(_, at)| **at <= now)
                        .map(|(m, _)| m.clone())
                        .collect();
                    for m in due {
                        pending.remove(&m);
                        tracing::debug!(mailbox = %m, "collection changed: push");
                        if signals.send(Signal::Push(m)).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    Watchers {
        _watchers: watchers,
    }
}

/// ledgersync's own working files (`.ledgersync/tmp`, `.ledgersync/deleted`).
fn is_own(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == OWN_DIR)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connectors_own_files_are_not_changes() {
        assert!(is_own(Path::new("/c/calendar/.ledgersync/tmp/x.ics")));
        assert!(!is_own(Path::new("/c/calendar/meeting.ics")));
    }
}
