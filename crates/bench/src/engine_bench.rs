//! Engine benchmarks on a realistic journal: replay (decode + evolve), `decide` latency, and
//! `explain` on a large journal.

use crate::workload::{Gen, Shape, T0, load, record};
use ledgersync_domain::event::{AccessLost, AccessReason, RecordUpserted};
use ledgersync_domain::{
    Context, Duration, Envelope, Event, MailboxState, OrgSettings, StreamId, UserId, decide,
};
use ledgersync_engine::log::Stored;
use ledgersync_journal::Journal;
use std::collections::HashMap;
use std::time::{Duration as StdDuration, Instant};

/// Replay figures.
#[derive(Debug, Clone)]
pub struct ReplayFigures {
    /// Read + decode + evolve, from the journal on disk, events/s (one thread).
    pub full_per_sec: f64,
    /// Decode + evolve only (envelopes already in memory), events/s (one thread).
    pub decode_evolve_per_sec: f64,
    /// Decode + evolve stream by stream, as a mailbox actor recovers (bytes in memory).
    pub per_stream_per_sec: f64,
}

/// Latency percentiles.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Samples.
    pub samples: usize,
    /// Median.
    pub p50: StdDuration,
    /// 99th percentile.
    pub p99: StdDuration,
    /// Slowest.
    pub max: StdDuration,
}

fn percentiles(mut v: Vec<StdDuration>) -> Latency {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    Latency {
        samples: v.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: *v.last().expect("samples"),
    }
}

/// Builds the workload journal; returns the generators (mailbox states) and events written.
pub fn build(journal: &dyn Journal, shape: Shape) -> (Vec<Gen>, u64, StdDuration) {
    let t = Instant::now();
    let (gens, n) = load(journal, shape);
    (gens, n, t.elapsed())
}

fn evolve_all(envs: Vec<Envelope>, states: &mut HashMap<StreamId, MailboxState>) -> u64 {
    let mut n = 0;
    for env in envs {
        let s = Stored::decode(env).expect("bench events decode");
        if s.envelope.stream.as_mailbox().is_some() {
            let meta = s.meta();
            states
                .entry(s.envelope.stream)
                .or_default()
                .apply_owned(meta, s.event);
        }
        n += 1;
    }
    n
}

/// Replays the whole journal twice: once reading from disk, once from envelopes held in memory.
pub fn replay(journal: &dyn Journal) -> ReplayFigures {
    let last = journal.last_position().expect("last position");
    // Full: read pages, decode, evolve.
    let t = Instant::now();
    let mut states: HashMap<StreamId, MailboxState> = HashMap::new();
    let mut next = 1;
    let mut n = 0;
    while next <= last {
        let page = journal.read_all(next, 8192).expect("read_all");
        next = page.last().map(|e| e.position + 1).unwrap_or(last + 1);
        n += evolve_all(page, &mut states);
    }
    let full = t.elapsed();
    // Decode + evolve only: the raw records are read first (not timed).
    let mut pages = Vec::new();
    let mut next = 1;
    while next <= last {
        let page = journal.read_all(next, 8192).expect("read_all");
        next = page.last().map(|e| e.position + 1).unwrap_or(last + 1);
        // Re-encode to bytes so the timed part starts from what the disk holds.
        pages.push(page.iter().map(|e| e.encode()).collect::<Vec<_>>());
    }
    let t = Instant::now();
    let mut states: HashMap<StreamId, MailboxState> = HashMap::new();
    for page in &pages {
        let envs: Vec<Envelope> = page
            .iter()
            .map(|b| Envelope::decode(b).expect("envelope"))
            .collect();
        evolve_all(envs, &mut states);
    }
    let decode_evolve = t.elapsed();
    // Stream by stream: each mailbox folds its own events, as on activation.
    let mut by_stream: HashMap<StreamId, Vec<Vec<u8>>> = HashMap::new();
    for page in &pages {
        for b in page {
            let e = Envelope::decode(b).expect("envelope");
            by_stream
                .entry(e.stream.clone())
                .or_default()
                .push(b.clone());
        }
    }
    let t = Instant::now();
    let mut folded = 0u64;
    for (stream, events) in &by_stream {
        if stream.as_mailbox().is_none() {
            continue;
        }
        let mut state = MailboxState::default();
        for b in events {
            let s = Stored::decode(Envelope::decode(b).expect("envelope")).expect("payload");
            state.apply_owned(s.meta(), s.event);
            folded += 1;
        }
        std::hint::black_box(&state);
    }
    let per_stream = t.elapsed();
    ReplayFigures {
        per_stream_per_sec: folded as f64 / per_stream.as_secs_f64(),
        full_per_sec: n as f64 / full.as_secs_f64(),
        decode_evolve_per_sec: n as f64 / decode_evolve.as_secs_f64(),
    }
}

/// `decide` latency on a busy mailbox state, over a mix of observations.
pub fn decide_latency(state: &MailboxState, users: usize, samples: usize) -> Latency {
    let settings = OrgSettings::default();
    let now = T0 + Duration::days(30);
    let ctx = Context {
        settings: &settings,
        now,
    };
    let user = state.owner.clone().unwrap_or_else(|| UserId::new("u0"));
    let u: usize = user.0.trim_start_matches('u').parse().unwrap_or(0);
    let linked: Vec<_> = state.links.keys().cloned().collect();
    let mut obs = Vec::with_capacity(samples);
    for i in 0..samples {
        let e = match i % 4 {
            0 => Event::RecordUpserted(RecordUpserted {
                record: record(1_000_000 + i as u64, u, users, 1, now),
            }),
            1 | 2 if !linked.is_empty() => {
                let r = &linked[i % linked.len()];
                let n: u64 =
                    r.0.rsplit('-')
                        .next()
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(0);
                let v = state.records.get(r).map(|x| x.version + 1).unwrap_or(2);
                Event::RecordUpserted(RecordUpserted {
                    record: record(n, u, users, v, now),
                })
            }
            _ if !linked.is_empty() => Event::AccessLost(AccessLost {
                user: user.clone(),
                records: vec![linked[i % linked.len()].clone()],
                reason: AccessReason::Role,
            }),
            _ => Event::RecordUpserted(RecordUpserted {
                record: record(i as u64, u, users, 1, now),
            }),
        };
        obs.push(e);
    }
    // Warm up.
    for o in obs.iter().take(1000) {
        std::hint::black_box(decide(state, o, &ctx));
    }
    let mut times = Vec::with_capacity(samples);
    for o in &obs {
        let t = Instant::now();
        let d = decide(state, o, &ctx);
        times.push(t.elapsed());
        std::hint::black_box(d);
    }
    percentiles(times)
}

/// `explain` latency for CRM ids spread over the journal, for exact subjects, and for partial
/// subjects (a scan of every indexed subject).
pub fn explain_latency(
    journal: &dyn Journal,
    gens: &[Gen],
    runs: usize,
) -> (Latency, Latency, Latency) {
    let mut by_id = Vec::new();
    let mut by_subject = Vec::new();
    let mut by_partial = Vec::new();
    for i in 0..runs {
        let g = &gens[(i * 37) % gens.len()];
        let Some(id) = g
            .state
            .links
            .keys()
            .nth(i % g.state.links.len().max(1))
            .cloned()
        else {
            continue;
        };
        let t = Instant::now();
        let e = ledgersync_engine::explain(journal, id.as_str()).expect("explain");
        by_id.push(t.elapsed());
        assert!(!e.items.is_empty(), "explain found {id}");
        let subject = g
            .state
            .records
            .get(&id)
            .map(|r| r.title().to_string())
            .unwrap_or_default();
        let t = Instant::now();
        let e = ledgersync_engine::explain(journal, &subject).expect("explain by subject");
        by_subject.push(t.elapsed());
        assert!(!e.items.is_empty(), "explain found \"{subject}\"");
        // The subject without its last word: no exact match, so every subject is scanned.
        let partial = subject
            .rsplit_once(' ')
            .map(|(head, _)| head.to_string())
            .unwrap_or(subject);
        let t = Instant::now();
        let e = ledgersync_engine::explain(journal, &partial).expect("explain by partial subject");
        by_partial.push(t.elapsed());
        assert!(!e.items.is_empty(), "explain found \"{partial}\"");
    }
    (
        percentiles(by_id),
        percentiles(by_subject),
        percentiles(by_partial),
    )
}

/// Where replay time goes: envelope decode, payload decode, evolve (events/s of each stage
/// alone, cumulative).
pub fn replay_breakdown(journal: &dyn Journal) -> [(&'static str, f64); 3] {
    let last = journal.last_position().expect("last position");
    let mut raw = Vec::new();
    let mut next = 1;
    while next <= last {
        let page = journal.read_all(next, 8192).expect("read_all");
        next = page.last().map(|e| e.position + 1).unwrap_or(last + 1);
        raw.extend(page.iter().map(|e| e.encode()));
    }
    let n = raw.len() as f64;
    let t = Instant::now();
    for b in &raw {
        std::hint::black_box(Envelope::decode(b).expect("envelope"));
    }
    let env = t.elapsed();
    let t = Instant::now();
    for b in &raw {
        let e = Envelope::decode(b).expect("envelope");
        std::hint::black_box(
            Event::decode(e.event_type, e.schema_version, &e.payload).expect("payload"),
        );
    }
    let payload = t.elapsed();
    let t = Instant::now();
    let mut states: HashMap<StreamId, MailboxState> = HashMap::new();
    for b in &raw {
        let e = Envelope::decode(b).expect("envelope");
        let s = Stored::decode(e).expect("payload");
        let meta = s.meta();
        match states.get_mut(&s.envelope.stream) {
            Some(state) => state.apply_owned(meta, s.event),
            None => states
                .entry(s.envelope.stream)
                .or_default()
                .apply_owned(meta, s.event),
        }
    }
    let all = t.elapsed();
    drop(states);
    [
        ("envelope decode", n / env.as_secs_f64()),
        ("+ payload decode", n / payload.as_secs_f64()),
        ("+ evolve", n / all.as_secs_f64()),
    ]
}

/// Mean `apply` time per event type, on events decoded beforehand (profiling aid).
pub fn apply_by_type(journal: &dyn Journal) -> Vec<(&'static str, u64, f64)> {
    let last = journal.last_position().expect("last position");
    let mut all = Vec::new();
    let mut next = 1;
    while next <= last {
        let page = journal.read_all(next, 8192).expect("read_all");
        next = page.last().map(|e| e.position + 1).unwrap_or(last + 1);
        all.extend(page.into_iter().map(|e| Stored::decode(e).expect("decode")));
    }
    let mut states: HashMap<StreamId, MailboxState> = HashMap::new();
    let mut per: HashMap<&'static str, (u64, StdDuration)> = HashMap::new();
    for s in all {
        if s.envelope.stream.as_mailbox().is_none() {
            continue;
        }
        let (meta, name) = (s.meta(), s.event.name());
        let state = match states.get_mut(&s.envelope.stream) {
            Some(st) => st,
            None => states.entry(s.envelope.stream).or_default(),
        };
        let t = Instant::now();
        state.apply_owned(meta, s.event);
        let e = per.entry(name).or_default();
        e.0 += 1;
        e.1 += t.elapsed();
    }
    let mut v: Vec<_> = per
        .into_iter()
        .map(|(k, (n, d))| (k, n, d.as_secs_f64() * 1e9 / n as f64))
        .collect();
    v.sort_by(|a, b| (b.1 as f64 * b.2).total_cmp(&(a.1 as f64 * a.2)));
    v
}

/// Mean payload decode time and size per event type (profiling aid).
pub fn decode_by_type(journal: &dyn Journal) -> Vec<(&'static str, u64, f64, f64)> {
    let last = journal.last_position().expect("last position");
    let mut per: HashMap<&'static str, (u64, StdDuration, u64)> = HashMap::new();
    let mut next = 1;
    while next <= last {
        let page = journal.read_all(next, 8192).expect("read_all");
        next = page.last().map(|e| e.position + 1).unwrap_or(last + 1);
        for e in page {
            let t = Instant::now();
            let ev = Event::decode(e.event_type, e.schema_version, &e.payload).expect("payload");
            let d = t.elapsed();
            let entry = per.entry(ev.name()).or_default();
            entry.0 += 1;
            entry.1 += d;
            entry.2 += e.payload.len() as u64;
        }
    }
    let mut v: Vec<_> = per
        .into_iter()
        .map(|(k, (n, d, b))| (k, n, d.as_secs_f64() * 1e9 / n as f64, b as f64 / n as f64))
        .collect();
    v.sort_by(|a, b| (b.1 as f64 * b.2).total_cmp(&(a.1 as f64 * a.2)));
    v
}
