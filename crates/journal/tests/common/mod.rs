//! Helpers shared by the journal's integration tests.
#![allow(dead_code)]

use ledgersync_domain::{
    EventId, EventType, ItemKey, NewEvent, RecordId, RemoteId, RuleId, StreamId, Timestamp,
};
use ledgersync_journal::{Backend, Journal, JournalOptions, OpenError, open};
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh event id, unique in this test process.
pub fn fresh_id() -> EventId {
    EventId::from_u128(u128::from(NEXT_ID.fetch_add(1, Ordering::Relaxed)) | (7 << 100))
}

/// An event with the given payload and index keys, and every envelope field set.
pub fn event(payload: &[u8], items: Vec<ItemKey>) -> NewEvent {
    let id = fresh_id();
    NewEvent {
        event_id: id,
        recorded_at: Timestamp(1_700_000_000_000),
        occurred_at: Timestamp(1_699_999_999_000),
        event_type: EventType(12),
        schema_version: 3,
        causation: vec![EventId::from_u128(99)],
        correlation: Some(EventId::from_u128(98)),
        rule: Some(RuleId(22)),
        payload: payload.to_vec(),
        items,
    }
}

/// `n` events whose payloads are `tag-0`, `tag-1`, ...
pub fn events(tag: &str, n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| event(format!("{tag}-{i}").as_bytes(), vec![]))
        .collect()
}

pub fn stream(name: &str) -> StreamId {
    StreamId(name.to_owned())
}

pub fn crm(id: &str) -> ItemKey {
    ItemKey::Crm(RecordId(id.to_owned()))
}

pub fn remote(id: &str) -> ItemKey {
    ItemKey::Remote(RemoteId(id.to_owned()))
}

pub fn subject(s: &str) -> ItemKey {
    ItemKey::Subject(s.to_owned())
}

pub fn open_dir(dir: &Path, backend: Backend) -> Result<Arc<dyn Journal>, OpenError> {
    open(dir, &JournalOptions::with_backend(backend))
}

pub fn open_ok(dir: &Path, backend: Backend) -> Arc<dyn Journal> {
    open_dir(dir, backend).unwrap_or_else(|e| panic!("opening {}: {e}", dir.display()))
}

/// Reads every event of the journal, in pages of `page`.
pub fn read_everything(j: &dyn Journal, page: usize) -> Vec<ledgersync_domain::Envelope> {
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        let batch = j.read_all(from, page).expect("read_all");
        if batch.is_empty() {
            return out;
        }
        from = batch.last().unwrap().position + 1;
        out.extend(batch);
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread (enough to await append tickets).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
