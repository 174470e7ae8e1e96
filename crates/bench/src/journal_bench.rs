//! Journal benchmarks: durable append through group commit, raw replay of the whole journal,
//! and the time to reopen a journal after `kill -9` in the middle of a commit.
//!
//! Each function takes the backend and a data directory, so that the bench binary can run the
//! same measurement on redb and sled side by side. They panic with a message naming the
//! directory when the journal fails: a benchmark has nothing to recover.

use ledgersync_domain::{
    Envelope, EventId, EventType, ItemKey, NewEvent, RemoteId, StreamId, Timestamp,
};
use ledgersync_journal::{Backend, ExpectedSeq, Journal, JournalOptions, open};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes of every benchmark payload.
pub const PAYLOAD_BYTES: usize = 200;

/// Streams each appending thread rotates over (a thread plays several mailbox actors).
const STREAMS_PER_THREAD: usize = 16;

/// What [`durable_append`] measured.
#[derive(Clone, Debug)]
pub struct AppendFigures {
    /// Backend measured.
    pub backend: Backend,
    /// Appending threads.
    pub threads: usize,
    /// Events per append.
    pub events_per_append: usize,
    /// Events appended.
    pub events: u64,
    /// Appends made.
    pub appends: u64,
    /// Wall time from the first append to the last acknowledgement.
    pub elapsed: Duration,
    /// Durable events per second.
    pub events_per_sec: f64,
    /// Durable appends per second.
    pub appends_per_sec: f64,
    /// Group commits that carried them.
    pub commits: u64,
    /// Mean events per group commit.
    pub mean_events_per_commit: f64,
    /// Median time from `append` to its acknowledgement.
    pub p50_latency: Duration,
    /// 99th percentile of that time.
    pub p99_latency: Duration,
    /// Slowest append.
    pub max_latency: Duration,
}

impl fmt::Display for AppendFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} durable append: {} threads × {} events/append: {:.0} events/s, {:.0} appends/s, \
             {:.1} events/commit ({} commits), latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
             ({} events in {} appends, {:.2} s)",
            self.backend,
            self.threads,
            self.events_per_append,
            self.events_per_sec,
            self.appends_per_sec,
            self.mean_events_per_commit,
            self.commits,
            ms(self.p50_latency),
            ms(self.p99_latency),
            ms(self.max_latency),
            self.events,
            self.appends,
            self.elapsed.as_secs_f64()
        )
    }
}

/// What [`raw_read_all`] measured.
#[derive(Clone, Debug)]
pub struct ReadFigures {
    /// Backend measured.
    pub backend: Backend,
    /// Time to open the journal.
    pub open: Duration,
    /// Events read (CRC-checked and decoded).
    pub events: u64,
    /// Payload bytes read.
    pub payload_bytes: u64,
    /// Time of the full scan.
    pub elapsed: Duration,
    /// Events per second.
    pub events_per_sec: f64,
}

impl fmt::Display for ReadFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} read_all + CRC + decode: {:.0} events/s ({} events, {:.1} MB of payload in \
             {:.2} s; open {:.1} ms)",
            self.backend,
            self.events_per_sec,
            self.events,
            self.payload_bytes as f64 / 1e6,
            self.elapsed.as_secs_f64(),
            ms(self.open)
        )
    }
}

/// What [`crash_reopen_time`] measured.
#[derive(Clone, Debug)]
pub struct ReopenFigures {
    /// Backend measured.
    pub backend: Backend,
    /// Apparent size of the data directory when the writer was killed.
    pub journal_bytes: u64,
    /// Disk blocks the data directory occupies, in bytes (redb files are partly sparse).
    pub allocated_bytes: u64,
    /// Events in the journal after the reopen.
    pub events: u64,
    /// Time spent filling the journal up to the target size (zero if it was already there).
    pub fill: Duration,
    /// Appends the killed writer had acknowledged.
    pub acked_before_kill: u64,
    /// Time `open` took after the kill: the crash recovery.
    pub reopen: Duration,
}

impl fmt::Display for ReopenFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} reopen after kill -9 mid-commit: {:.1} ms at {:.2} GB ({:.2} GB allocated, {} \
             events; filled in {:.1} s; the writer had acknowledged {} appends)",
            self.backend,
            ms(self.reopen),
            self.journal_bytes as f64 / 1e9,
            self.allocated_bytes as f64 / 1e9,
            self.events,
            self.fill.as_secs_f64(),
            self.acked_before_kill
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn open_journal(backend: Backend, dir: &Path) -> Arc<dyn Journal> {
    open(dir, &JournalOptions::with_backend(backend)).unwrap_or_else(|e| {
        panic!(
            "cannot open the {backend} journal in {}: {e}",
            dir.display()
        )
    })
}

/// A 200-byte payload that does not compress: 25 mixed words seeded by `n`.
fn payload(n: u64) -> Vec<u8> {
    (0..(PAYLOAD_BYTES / 8) as u64)
        .flat_map(|i| mix(n.wrapping_mul(31).wrapping_add(i)).to_le_bytes())
        .collect()
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One benchmark event: a 200-byte payload indexed under one mail-server item, as an
/// observation of one item would be.
fn bench_event(id: u128) -> NewEvent {
    NewEvent {
        event_id: EventId::from_u128(id),
        recorded_at: Timestamp(1_700_000_000_000),
        occurred_at: Timestamp(1_700_000_000_000),
        event_type: EventType(1),
        schema_version: 1,
        causation: vec![],
        correlation: None,
        rule: None,
        payload: payload(id as u64),
        items: vec![ItemKey::Remote(RemoteId(format!("bench/{id:x}")))],
    }
}

/// A run id distinct between runs on the same directory, for event ids and stream names.
fn run_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        & 0xffff_ffff_ffff
}

/// Appends `total` events of 200 bytes into the journal in `dir` from `threads` threads, each
/// calling the blocking `append` with `events_per_append` events at a time, so that group
/// commit forms batches of up to `threads` appends. Each thread rotates over 16 streams of its
/// own with exact expectations, like mailbox actors; every event carries one item key.
pub fn durable_append(
    backend: Backend,
    dir: &Path,
    total: usize,
    threads: usize,
    events_per_append: usize,
) -> AppendFigures {
    let threads = threads.max(1);
    let events_per_append = events_per_append.max(1);
    let journal = open_journal(backend, dir);
    let run = run_id();
    let appends_per_thread = total.div_ceil(threads * events_per_append);
    let before = journal.commit_stats();
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let journal = Arc::clone(&journal);
            std::thread::spawn(move || {
                let streams: Vec<StreamId> = (0..STREAMS_PER_THREAD)
                    .map(|k| StreamId(format!("mailbox/bench-{run:x}-{t}-{k}")))
                    .collect();
                let mut heads = [0u64; STREAMS_PER_THREAD];
                let mut latencies = Vec::with_capacity(appends_per_thread);
                let mut id = (u128::from(run) << 64) | ((t as u128) << 40);
                for i in 0..appends_per_thread {
                    let k = i % STREAMS_PER_THREAD;
                    let events: Vec<NewEvent> = (0..events_per_append)
                        .map(|_| {
                            id += 1;
                            bench_event(id)
                        })
                        .collect();
                    let sent = Instant::now();
                    let appended = journal
                        .append(&streams[k], ExpectedSeq::Exactly(heads[k]), events)
                        .unwrap_or_else(|e| panic!("benchmark append failed: {e}"));
                    latencies.push(sent.elapsed());
                    heads[k] = appended.last_seq;
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("a benchmark thread panicked"))
        .collect();
    let elapsed = started.elapsed();
    let after = journal.commit_stats();
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let appends = latencies.len() as u64;
    let events = appends * events_per_append as u64;
    let commits = after.commits - before.commits;
    AppendFigures {
        backend,
        threads,
        events_per_append,
        events,
        appends,
        elapsed,
        events_per_sec: events as f64 / elapsed.as_secs_f64(),
        appends_per_sec: appends as f64 / elapsed.as_secs_f64(),
        commits,
        mean_events_per_commit: if commits == 0 {
            0.0
        } else {
            (after.events - before.events) as f64 / commits as f64
        },
        p50_latency: pick(0.50),
        p99_latency: pick(0.99),
        max_latency: latencies.last().copied().unwrap_or_default(),
    }
}

/// Opens the journal in `dir` and reads it whole with `read_all` in pages of 4096 events
/// (every record's CRC is checked and its envelope decoded with `Envelope::decode` by the
/// journal), checking that positions are contiguous.
pub fn raw_read_all(backend: Backend, dir: &Path) -> ReadFigures {
    let t = Instant::now();
    let journal = open_journal(backend, dir);
    let open = t.elapsed();
    let started = Instant::now();
    let mut from = 1;
    let mut events = 0u64;
    let mut payload_bytes = 0u64;
    loop {
        let page: Vec<Envelope> = journal
            .read_all(from, 4096)
            .unwrap_or_else(|e| panic!("benchmark read failed: {e}"));
        let Some(last) = page.last() else { break };
        assert_eq!(
            last.position,
            from + page.len() as u64 - 1,
            "gap in the journal"
        );
        from = last.position + 1;
        events += page.len() as u64;
        payload_bytes += page.iter().map(|e| e.payload.len() as u64).sum::<u64>();
    }
    let elapsed = started.elapsed();
    ReadFigures {
        backend,
        open,
        events,
        payload_bytes,
        elapsed,
        events_per_sec: events as f64 / elapsed.as_secs_f64(),
    }
}

/// The `journal-crash-writer` binary next to the running executable (cargo puts the binaries
/// of a workspace in one directory; build it with
/// `cargo build --release -p ledgersync-journal --bin journal-crash-writer`).
pub fn find_crash_writer() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.to_path_buf(), dir.parent()?.to_path_buf()]
        .into_iter()
        .map(|d| d.join("journal-crash-writer"))
        .find(|p| p.is_file())
}

/// Apparent size and allocated bytes of everything under `dir`.
fn dir_size(dir: &Path) -> (u64, u64) {
    let mut apparent = 0;
    let mut allocated = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (a, b) = dir_size(&entry.path());
            apparent += a;
            allocated += b;
        } else {
            apparent += meta.len();
            #[cfg(unix)]
            {
                allocated += std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
            }
            #[cfg(not(unix))]
            {
                allocated += meta.len();
            }
        }
    }
    (apparent, allocated)
}

/// Fills the journal in `dir` with 200-byte events until the directory holds `target_bytes`,
/// then starts `writer` (the `journal-crash-writer` binary, see [`find_crash_writer`]) on it,
/// lets it acknowledge appends of up to 1024 events from 4 threads, kills it with SIGKILL while
/// it commits, and measures how long `open` takes to recover. The target is under 1 s for a
/// 5 GB journal; pass a smaller size for a quick run.
pub fn crash_reopen_time(
    backend: Backend,
    dir: &Path,
    target_bytes: u64,
    writer: &Path,
) -> ReopenFigures {
    let fill_started = Instant::now();
    if dir_size(dir).0 < target_bytes {
        let journal = open_journal(backend, dir);
        let run = run_id();
        let full = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let journal = Arc::clone(&journal);
                let full = Arc::clone(&full);
                let dir = dir.to_owned();
                std::thread::spawn(move || {
                    let stream = StreamId(format!("org/fill-{run:x}-{t}"));
                    let mut id = (u128::from(run) << 64) | (u128::from(t) << 48);
                    let mut n = 0u64;
                    while !full.load(Ordering::Relaxed) {
                        let events = (0..1024)
                            .map(|_| {
                                id += 1;
                                bench_event(id)
                            })
                            .collect();
                        journal
                            .append(&stream, ExpectedSeq::Any, events)
                            .unwrap_or_else(|e| panic!("filling the journal failed: {e}"));
                        n += 1;
                        if t == 0 && n.is_multiple_of(16) && dir_size(&dir).0 >= target_bytes {
                            full.store(true, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("a fill thread panicked");
        }
    }
    let fill = fill_started.elapsed();
    let (journal_bytes, allocated_bytes) = dir_size(dir);

    let mut child = Command::new(writer)
        .args([
            "--backend",
            backend.as_str(),
            "--threads",
            "4",
            "--max-batch",
            "1024",
        ])
        .args(["--run", &(run_id() >> 8).to_string(), "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", writer.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("ACK ") && tx.send(()).is_err() {
                break;
            }
        }
    });
    // Let it commit steadily for a while, then kill it: with commits back to back, the kill
    // lands inside one.
    let mut acked = 0u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while acked < 50 && Instant::now() < deadline {
        if rx.recv_timeout(Duration::from_secs(1)).is_ok() {
            acked += 1;
        } else if child.try_wait().ok().flatten().is_some() {
            panic!("{} exited before it was killed", writer.display());
        }
    }
    std::thread::sleep(Duration::from_millis(u64::from(run_id() as u32 % 20)));
    child.kill().expect("kill the crash writer");
    child.wait().expect("reap the crash writer");
    acked += rx.try_iter().count() as u64;
    drop(rx);
    let _ = reader.join();

    let t = Instant::now();
    let journal = open_journal(backend, dir);
    let reopen = t.elapsed();
    let events = journal
        .last_position()
        .unwrap_or_else(|e| panic!("reading the reopened journal failed: {e}"));
    ReopenFigures {
        backend,
        journal_bytes,
        allocated_bytes,
        events,
        fill,
        acked_before_kill: acked,
        reopen,
    }
}
