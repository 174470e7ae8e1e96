//! Push for local collections: a file-system watcher on each mailbox's vdir calendar and
//! address book turns a change made by another program (khal, khard, vdirsyncer, an editor)
//! into a [`Signal::Push`], the local equivalent of IMAP IDLE or a CalDAV webhook. The mailbox
//! then records `push_received` and, if its workload is enabled, cycles at once (R9) instead of
//! at its next scheduled run.
//!
//! Only a change of the collection's content wakes a mailbox: a file created, written (data
//! written, or closed after writing), renamed or removed, or a lost-events overflow of the
//! kernel queue. Reading is not a change: the open, access and close-without-write events that
//! every listing causes (ledgersync's own, and any reader's), and metadata changes (times,
//! permissions, the link count that ledgersync's atomic create touches) are ignored, so an
//! idle mailbox is never woken by its own listing.
//!
//! Changes are debounced per mailbox: a push is sent once the mailbox's collections have been
//! quiet for `quiet` (an editor saving a file, or a sync tool writing many, makes one push).
//! ledgersync's own files under `.ledgersync/` are ignored; its final renames into the
//! collection do cause one push, whose listing records the first sighting of what it wrote
//! (the domain's echo guard decides nothing about it) and then stays quiet.

use crate::scheduler::Signal;
use crate::service::MailboxEndpoint;
use ledgersync_connectors::OWN_DIR;
use ledgersync_domain::MailboxId;
use ledgersync_domain::event::Workload;
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
            if is_change(&event) && event.paths.iter().any(|p| !is_own(p)) {
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
        for dir in endpoint.connector.watched_dirs() {
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
                        if signals.send(Signal::Push(m, Workload::Act)).is_err() {
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

/// True for an event that says the content of a collection changed (see the module doc):
/// create, remove, rename, data written, closed after writing, or events lost (rescan). Reads
/// and metadata changes are not changes.
fn is_change(event: &notify::Event) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    match &event.kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        // The kernel queue overflowed: changes may have been lost, list again.
        EventKind::Other => event.need_rescan(),
        EventKind::Any => true,
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
    fn reading_a_collection_is_not_a_change_writing_renaming_and_removing_are() {
        use notify::event::{
            AccessKind, AccessMode, CreateKind, DataChange, EventKind, Flag, MetadataKind,
            ModifyKind, RemoveKind, RenameMode,
        };
        let event = |kind| notify::Event::new(kind).add_path("/c/calendar/meeting.ics".into());
        for read in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            EventKind::Other,
        ] {
            assert!(!is_change(&event(read)), "{read:?} is not a change");
        }
        for change in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(is_change(&event(change)), "{change:?} is a change");
        }
        assert!(is_change(&event(EventKind::Other).set_flag(Flag::Rescan)));
    }

    #[test]
    fn the_connectors_own_files_are_not_changes() {
        assert!(is_own(Path::new("/c/calendar/.ledgersync/tmp/x.ics")));
        assert!(!is_own(Path::new("/c/calendar/meeting.ics")));
    }
}
