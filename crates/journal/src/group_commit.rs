//! Group commit: the one writer thread of a journal, shared by both backends.
//!
//! Protocol (also in `docs/journal-storage.md`):
//!
//! 1. [`GroupCommit::submit`] validates the append, puts it in the queue (a `Mutex` + `Condvar`)
//!    with a one-shot reply channel and returns an [`AppendTicket`] at once.
//! 2. The writer waits until the queue is not empty, then takes appends from its front until
//!    the next one would exceed `max_batch_events` (it always takes at least one).
//! 3. For each append, in queue order: the stream's head is taken from the heads of earlier
//!    appends of this batch, else from the writer's cache, else loaded from the store (and
//!    cached). A stale expectation gets a conflict and contributes nothing to the batch;
//!    otherwise the append gets the next seqs of its stream and the next global positions, and
//!    its events are encoded, framed with their CRC and added to the batch.
//! 4. The batch is written with [`Store::commit`]: one atomic, durable transaction.
//! 5. On success the batch's heads enter the cache and the last position advances; then every
//!    ticket of the batch is answered (positions, or its conflict).
//! 6. On failure every ticket of the batch gets the commit error, the head cache is dropped and
//!    the last position is reloaded from the store, so that nothing assigned in the failed batch
//!    survives in memory. If even that reload fails, the writer stops: later appends get
//!    [`AppendError::WriterStopped`].
//!
//! Closing the journal lets the writer finish everything already queued, then stops it.

use crate::append::{Appended, CommitStats, ExpectedSeq};
use crate::error::AppendError;
use crate::record::frame_event;
use crate::store::{Batch, BatchAppend, BatchEvent, Store};
use crate::ticket::{AppendTicket, Reply};
use ledgersync_domain::{ItemKey, NewEvent, StreamId};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

/// One queued append.
struct Request {
    stream: StreamId,
    expected: ExpectedSeq,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Request>,
    /// The journal is closing: finish what is queued, accept nothing new.
    closing: bool,
    /// The writer is gone.
    stopped: bool,
    /// The writer sleeps on the condition variable (so a submit must wake it).
    writer_idle: bool,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    appends: AtomicU64,
    events: AtomicU64,
    conflicts: AtomicU64,
    failed_commits: AtomicU64,
    failing_commits: AtomicU64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    dir: Arc<Path>,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The queue and the writer thread of one journal.
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the writer thread over `store`, whose last durable position is `last_position`.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        dir: Arc<Path>,
        max_batch_events: usize,
        last_position: u64,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            dir,
            counters: Counters::default(),
        });
        let writer = Writer {
            store,
            shared: shared.clone(),
            max_batch_events: max_batch_events.max(1),
            heads: HashMap::new(),
            last_position,
        };
        let handle = std::thread::Builder::new()
            .name("ledgersync-journal-writer".into())
            .spawn(move || writer.run())?;
        Ok(Self {
            shared,
            writer: Some(handle),
        })
    }

    /// Queues an append and returns its ticket.
    pub(crate) fn submit(
        &self,
        stream: &StreamId,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> AppendTicket {
        if events.is_empty() {
            return AppendTicket::ready(Err(AppendError::Invalid {
                stream: stream.clone(),
                reason: "it has no events",
            }));
        }
        if stream.as_str().is_empty() {
            return AppendTicket::ready(Err(AppendError::Invalid {
                stream: stream.clone(),
                reason: "the stream name is empty",
            }));
        }
        let (reply, ticket) = AppendTicket::pending(self.shared.dir.clone());
        let mut queue = self.shared.lock();
        if queue.closing || queue.stopped {
            return AppendTicket::ready(Err(AppendError::WriterStopped {
                dir: self.shared.dir.to_path_buf(),
            }));
        }
        queue.pending.push_back(Request {
            stream: stream.clone(),
            expected,
            events,
            reply,
        });
        // A busy writer takes this request with its next batch without being woken.
        let wake = queue.writer_idle;
        drop(queue);
        if wake {
            self.shared.wake.notify_one();
        }
        ticket
    }

    /// The counters since the journal was opened.
    pub(crate) fn stats(&self) -> CommitStats {
        let c = &self.shared.counters;
        CommitStats {
            commits: c.commits.load(Ordering::Relaxed),
            appends: c.appends.load(Ordering::Relaxed),
            events: c.events.load(Ordering::Relaxed),
            conflicts: c.conflicts.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
            failing_commits: c.failing_commits.load(Ordering::Relaxed),
        }
    }

    /// Lets the writer finish what is queued, then stops it and waits for it.
    pub(crate) fn close(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_all();
        if let Some(handle) = self.writer.take()
            && handle.join().is_err()
        {
            tracing::error!(dir = %self.shared.dir.display(), "the journal writer thread panicked");
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.close();
    }
}

/// Marks the writer stopped and drops every queued request (their tickets then report
/// `WriterStopped`), also when the writer unwinds from a panic.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.stopped = true;
        queue.pending.clear();
    }
}

/// The state only the writer thread touches.
struct Writer {
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    max_batch_events: usize,
    /// Durable heads of the streams seen so far.
    heads: HashMap<StreamId, u64>,
    /// The last durable position.
    last_position: u64,
}

/// A request's answer, sent once the batch's fate is known.
struct Outcome {
    reply: oneshot::Sender<Reply>,
    stream: StreamId,
    result: Reply,
}

impl Writer {
    fn run(mut self) {
        let _guard = StopGuard(self.shared.clone());
        while let Some(requests) = self.next_batch() {
            if !self.process(requests) {
                return;
            }
        }
    }

    /// Waits for appends and takes a batch of them; `None` once closing with nothing queued.
    fn next_batch(&self) -> Option<Vec<Request>> {
        let mut queue = self.shared.lock();
        while queue.pending.is_empty() {
            if queue.closing {
                return None;
            }
            queue.writer_idle = true;
            queue = self
                .shared
                .wake
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
            queue.writer_idle = false;
        }
        let mut taken = Vec::new();
        let mut events = 0usize;
        while let Some(front) = queue.pending.front() {
            if !taken.is_empty() && events + front.events.len() > self.max_batch_events {
                break;
            }
            events += front.events.len();
            taken.extend(queue.pending.pop_front());
        }
        Some(taken)
    }

    /// The head of a stream before this batch: from the cache, else from the store.
    fn durable_head(&mut self, stream: &StreamId) -> Result<u64, AppendError> {
        if let Some(&head) = self.heads.get(stream) {
            return Ok(head);
        }
        let head = self.store.head(stream).map_err(|e| AppendError::Read {
            stream: stream.clone(),
            source: Arc::new(e),
        })?;
        self.heads.insert(stream.clone(), head);
        Ok(head)
    }

    /// Processes one batch; `false` if the writer must stop.
    fn process(&mut self, requests: Vec<Request>) -> bool {
        let started = Instant::now();
        let mut batch = Batch::default();
        let mut batch_heads: HashMap<StreamId, u64> = HashMap::new();
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut next_position = self.last_position + 1;
        let (mut accepted, mut conflicts) = (0u64, 0u64);

        for Request {
            stream,
            expected,
            events,
            reply,
        } in requests
        {
            let head = match batch_heads.get(&stream) {
                Some(&head) => Ok(head),
                None => self.durable_head(&stream),
            };
            let head = match head {
                Ok(head) => head,
                Err(e) => {
                    outcomes.push(Outcome {
                        reply,
                        stream,
                        result: Err(e),
                    });
                    continue;
                }
            };
            if !expected.accepts(head) {
                conflicts += 1;
                outcomes.push(Outcome {
                    reply,
                    stream: stream.clone(),
                    result: Err(AppendError::Conflict {
                        stream,
                        expected,
                        actual: head,
                    }),
                });
                continue;
            }
            let count = events.len() as u64;
            let appended = Appended {
                first_seq: head + 1,
                last_seq: head + count,
                first_position: next_position,
                last_position: next_position + count - 1,
            };
            for (seq, mut event) in (head + 1..).zip(events) {
                let items = std::mem::take(&mut event.items);
                let envelope = event.into_envelope(stream.clone(), seq, next_position);
                batch.events.push(BatchEvent {
                    position: next_position,
                    record: frame_event(&envelope.encode()),
                    items: items.iter().map(ItemKey::to_key).collect(),
                    subjects: items
                        .iter()
                        .filter_map(|key| match key {
                            ItemKey::Subject(s) => Some(s.to_lowercase()),
                            _ => None,
                        })
                        .collect(),
                });
                next_position += 1;
            }
            batch.appends.push(BatchAppend {
                stream: stream.clone(),
                first_seq: appended.first_seq,
                first_position: appended.first_position,
                count,
            });
            batch_heads.insert(stream.clone(), appended.last_seq);
            accepted += 1;
            outcomes.push(Outcome {
                reply,
                stream,
                result: Ok(appended),
            });
        }

        let counters = &self.shared.counters;
        counters.conflicts.fetch_add(conflicts, Ordering::Relaxed);
        if batch.events.is_empty() {
            answer(outcomes, None);
            return true;
        }
        let event_count = batch.events.len() as u64;
        batch.heads = batch_heads.iter().map(|(s, h)| (s.clone(), *h)).collect();
        match self.store.commit(&batch) {
            Ok(()) => {
                self.heads.extend(batch_heads);
                self.last_position = next_position - 1;
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters.failing_commits.store(0, Ordering::Relaxed);
                counters.appends.fetch_add(accepted, Ordering::Relaxed);
                counters.events.fetch_add(event_count, Ordering::Relaxed);
                tracing::debug!(
                    events = event_count,
                    appends = accepted,
                    conflicts,
                    last_position = self.last_position,
                    micros = started.elapsed().as_micros() as u64,
                    "journal group commit"
                );
                answer(outcomes, None);
                true
            }
            Err(source) => {
                counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                counters.failing_commits.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    dir = %self.shared.dir.display(),
                    events = event_count,
                    error = %source,
                    "journal group commit failed"
                );
                answer(outcomes, Some((&self.shared.dir, source)));
                self.heads.clear();
                match self.store.last_position() {
                    Ok(last) => {
                        self.last_position = last;
                        true
                    }
                    Err(e) => {
                        tracing::error!(
                            dir = %self.shared.dir.display(),
                            error = %e,
                            "journal writer stops: cannot reload the last position after a failed commit"
                        );
                        false
                    }
                }
            }
        }
    }
}

/// Sends every outcome, or the commit error to all of them if the commit failed.
fn answer(outcomes: Vec<Outcome>, failure: Option<(&Path, crate::error::StorageError)>) {
    for outcome in outcomes {
        let result = match &failure {
            None => outcome.result,
            Some((dir, source)) => Err(AppendError::Commit {
                dir: dir.to_path_buf(),
                stream: outcome.stream,
                source: source.clone(),
            }),
        };
        // A caller that dropped its ticket no longer wants the answer.
        let _ = outcome.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ReadError, StorageError};
    use crate::record::decode_event;
    use crate::store::Visit;
    use ledgersync_domain::{EventId, EventType, Timestamp};
    use std::collections::BTreeMap;

    /// An in-memory store whose commits can be held at a gate or made to fail.
    #[derive(Default)]
    struct MemStore {
        data: Mutex<MemData>,
        gate: Mutex<bool>,
        gate_changed: Condvar,
    }

    #[derive(Default)]
    struct MemData {
        events: BTreeMap<u64, Vec<u8>>,
        heads: BTreeMap<StreamId, u64>,
        batch_sizes: Vec<usize>,
        fail_on: Option<usize>,
        entered_commit: usize,
    }

    impl MemStore {
        fn close_gate(&self) {
            *self.gate.lock().unwrap() = true;
        }
        fn open_gate(&self) {
            *self.gate.lock().unwrap() = false;
            self.gate_changed.notify_all();
        }
        fn wait_entered(&self, n: usize) {
            while self.data.lock().unwrap().entered_commit < n {
                std::thread::yield_now();
            }
        }
    }

    impl Store for MemStore {
        fn path(&self) -> &Path {
            Path::new("/mem")
        }
        fn head(&self, stream: &StreamId) -> Result<u64, ReadError> {
            Ok(self
                .data
                .lock()
                .unwrap()
                .heads
                .get(stream)
                .copied()
                .unwrap_or(0))
        }
        fn last_position(&self) -> Result<u64, ReadError> {
            Ok(self
                .data
                .lock()
                .unwrap()
                .events
                .keys()
                .next_back()
                .copied()
                .unwrap_or(0))
        }
        fn commit(&self, batch: &Batch) -> Result<(), StorageError> {
            let number = {
                let mut data = self.data.lock().unwrap();
                data.entered_commit += 1;
                data.entered_commit
            };
            let mut closed = self.gate.lock().unwrap();
            while *closed {
                closed = self.gate_changed.wait(closed).unwrap();
            }
            drop(closed);
            let mut data = self.data.lock().unwrap();
            if data.fail_on == Some(number) {
                return Err(Arc::new(std::io::Error::other("disk full")));
            }
            data.batch_sizes.push(batch.events.len());
            for e in &batch.events {
                data.events.insert(e.position, e.record.clone());
            }
            for (s, h) in &batch.heads {
                data.heads.insert(s.clone(), *h);
            }
            Ok(())
        }
        fn records_from(&self, _: u64, _: usize, _: Visit<'_>) -> Result<(), ReadError> {
            unreachable!("the group commit never reads records")
        }
        fn records_at(&self, _: &[u64]) -> Result<Vec<Option<Vec<u8>>>, ReadError> {
            unreachable!("the group commit never reads records")
        }
        fn stream_records(
            &self,
            _: &StreamId,
            _: u64,
            _: usize,
            _: Visit<'_>,
        ) -> Result<(), ReadError> {
            unreachable!("the group commit never reads records")
        }
        fn item_positions(&self, _: &str) -> Result<Vec<u64>, ReadError> {
            unreachable!("the group commit never reads the index")
        }
        fn subjects_containing(&self, _: &str, _: usize) -> Result<Vec<String>, ReadError> {
            unreachable!("the group commit never reads the index")
        }
        fn heads(&self) -> Result<Vec<(StreamId, u64)>, ReadError> {
            unreachable!("the group commit loads heads one by one")
        }
        fn put_snapshot(&self, _: &StreamId, _: &[u8]) -> Result<(), StorageError> {
            unreachable!("snapshots do not go through the group commit")
        }
        fn get_snapshot(&self, _: &StreamId) -> Result<Option<Vec<u8>>, ReadError> {
            unreachable!("snapshots do not go through the group commit")
        }
        fn verify_storage(&self) -> Result<String, String> {
            Ok("in memory".into())
        }
    }

    fn events(n: usize) -> Vec<NewEvent> {
        (0..n)
            .map(|i| NewEvent {
                event_id: EventId::from_u128(i as u128),
                recorded_at: Timestamp(0),
                occurred_at: Timestamp(0),
                event_type: EventType(1),
                schema_version: 1,
                causation: vec![],
                correlation: None,
                rule: None,
                payload: vec![i as u8],
                items: vec![],
            })
            .collect()
    }

    fn start(store: &Arc<MemStore>) -> GroupCommit {
        GroupCommit::start(store.clone(), Path::new("/mem").into(), 4096, 0).unwrap()
    }

    fn s(name: &str) -> StreamId {
        StreamId(name.into())
    }

    #[test]
    fn a_conflict_inside_a_batch_spoils_nothing_else() {
        let store = Arc::new(MemStore::default());
        let gc = start(&store);
        store.close_gate();
        let first = gc.submit(&s("a"), ExpectedSeq::NoStream, events(2));
        store.wait_entered(1);
        // All of these queue up behind the held commit and form the second batch.
        let t_ok = gc.submit(&s("a"), ExpectedSeq::Exactly(2), events(1));
        let t_stale = gc.submit(&s("a"), ExpectedSeq::Exactly(2), events(1));
        let t_nostream = gc.submit(&s("a"), ExpectedSeq::NoStream, events(1));
        let t_chain = gc.submit(&s("a"), ExpectedSeq::Exactly(3), events(2));
        let t_other = gc.submit(&s("b"), ExpectedSeq::NoStream, events(1));
        store.open_gate();
        assert_eq!(first.wait().unwrap().last_position, 2);
        let ok = t_ok.wait().unwrap();
        assert_eq!((ok.first_seq, ok.first_position), (3, 3));
        match t_stale.wait() {
            Err(AppendError::Conflict { actual, .. }) => assert_eq!(actual, 3),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(matches!(
            t_nostream.wait(),
            Err(AppendError::Conflict { actual: 3, .. })
        ));
        let chain = t_chain.wait().unwrap();
        assert_eq!(
            (
                chain.first_seq,
                chain.last_seq,
                chain.first_position,
                chain.last_position
            ),
            (4, 5, 4, 5)
        );
        let other = t_other.wait().unwrap();
        assert_eq!((other.first_seq, other.first_position), (1, 6));
        assert_eq!(store.data.lock().unwrap().batch_sizes, vec![2, 4]);
        let stats = gc.stats();
        assert_eq!((stats.commits, stats.appends, stats.conflicts), (2, 4, 2));
        let data = store.data.lock().unwrap();
        for (pos, rec) in &data.events {
            assert_eq!(
                decode_event(*pos, rec, Path::new("/mem")).unwrap().position,
                *pos
            );
        }
        assert_eq!(data.heads.get(&s("a")), Some(&5));
    }

    #[test]
    fn a_failed_commit_fails_every_ticket_and_rolls_the_heads_back() {
        let store = Arc::new(MemStore::default());
        let gc = start(&store);
        gc.submit(&s("a"), ExpectedSeq::Any, events(3))
            .wait()
            .unwrap();
        // Commit 2 (a single append, held at the gate) fails.
        store.data.lock().unwrap().fail_on = Some(2);
        store.close_gate();
        let held = gc.submit(&s("z"), ExpectedSeq::Any, events(1));
        store.wait_entered(2);
        let t1 = gc.submit(&s("a"), ExpectedSeq::Exactly(3), events(2));
        let t2 = gc.submit(&s("b"), ExpectedSeq::NoStream, events(1));
        let t3 = gc.submit(&s("a"), ExpectedSeq::Exactly(0), events(1));
        store.open_gate();
        assert!(matches!(held.wait(), Err(AppendError::Commit { .. })));
        // The queued appends form commit 3, which succeeds from the durable state.
        let a1 = t1.wait().unwrap();
        assert_eq!((a1.first_seq, a1.first_position), (4, 4));
        assert_eq!(t2.wait().unwrap().first_position, 6);
        assert!(matches!(
            t3.wait(),
            Err(AppendError::Conflict { actual: 5, .. })
        ));

        // Commit 5 holds three appends, one of them stale, and fails: all three get the error.
        store.data.lock().unwrap().fail_on = Some(5);
        store.close_gate();
        let held = gc.submit(&s("d"), ExpectedSeq::Any, events(1));
        store.wait_entered(4);
        let f1 = gc.submit(&s("a"), ExpectedSeq::Exactly(5), events(1));
        let f2 = gc.submit(&s("a"), ExpectedSeq::Exactly(9), events(1));
        let f3 = gc.submit(&s("e"), ExpectedSeq::NoStream, events(2));
        store.open_gate();
        assert_eq!(held.wait().unwrap().first_position, 7);
        for t in [f1, f2, f3] {
            let err = t.wait().unwrap_err();
            assert!(matches!(err, AppendError::Commit { .. }), "{err}");
            assert!(err.to_string().contains("disk full"), "{err}");
        }
        // Nothing of the failed batch is remembered: seqs and positions continue from the store.
        let again = gc
            .submit(&s("a"), ExpectedSeq::Exactly(5), events(1))
            .wait()
            .unwrap();
        assert_eq!((again.first_seq, again.first_position), (6, 8));
        let e = gc
            .submit(&s("e"), ExpectedSeq::NoStream, events(1))
            .wait()
            .unwrap();
        assert_eq!((e.first_seq, e.first_position), (1, 9));
        assert_eq!(gc.stats().failed_commits, 2);
        assert_eq!(store.data.lock().unwrap().batch_sizes, vec![3, 3, 1, 1, 1]);
    }

    #[test]
    fn closing_finishes_the_queue_then_refuses() {
        let store = Arc::new(MemStore::default());
        let mut gc = start(&store);
        store.close_gate();
        let tickets: Vec<_> = (0..5)
            .map(|_| gc.submit(&s("a"), ExpectedSeq::Any, events(1)))
            .collect();
        store.wait_entered(1);
        let opener = {
            let store = store.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                store.open_gate();
            })
        };
        gc.close();
        opener.join().unwrap();
        let last: Vec<u64> = tickets
            .into_iter()
            .map(|t| t.wait().unwrap().last_seq)
            .collect();
        assert_eq!(last, vec![1, 2, 3, 4, 5]);
        assert!(matches!(
            gc.submit(&s("a"), ExpectedSeq::Any, events(1)).wait(),
            Err(AppendError::WriterStopped { .. })
        ));
        assert!(matches!(
            gc.submit(&s("a"), ExpectedSeq::Any, vec![]).wait(),
            Err(AppendError::Invalid { .. })
        ));
    }

    #[test]
    fn batches_respect_max_batch_events_but_take_an_oversized_append_alone() {
        let store = Arc::new(MemStore::default());
        let gc = GroupCommit::start(store.clone(), Path::new("/mem").into(), 4, 0).unwrap();
        store.close_gate();
        let first = gc.submit(&s("a"), ExpectedSeq::Any, events(1));
        store.wait_entered(1);
        let tickets = [
            gc.submit(&s("a"), ExpectedSeq::Any, events(3)),
            gc.submit(&s("a"), ExpectedSeq::Any, events(2)),
            gc.submit(&s("a"), ExpectedSeq::Any, events(9)),
            gc.submit(&s("a"), ExpectedSeq::Any, events(1)),
        ];
        store.open_gate();
        first.wait().unwrap();
        for t in tickets {
            t.wait().unwrap();
        }
        assert_eq!(store.data.lock().unwrap().batch_sizes, vec![1, 3, 2, 9, 1]);
    }
}
