//! `ledgersync-bench`: the figures of docs/benchmarks.md, for both embedded backends side by
//! side in one run.
//!
//! ```text
//! cargo run --release -p ledgersync-bench -- [--events N] [--mailboxes M] [--reopen-gb G] [--quick]
//! cargo run --release -p ledgersync-bench -- --only bus [--bus-observations N] [--rate R]
//! ```

/// The same allocator as the `ledgersync` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bus_bench;
mod engine_bench;
mod imap_bench;
mod ingest_bench;
mod journal_bench;
mod mail_bench;
mod runtime_bench;
mod workload;

use clap::Parser;
use ledgersync_journal::{Backend, JournalOptions};
use std::path::PathBuf;
use std::time::Duration;

/// Measures journal append, replay, decide and explain for redb and sled; with `--only
/// actors`, `ingest` or `bus`, the mailbox actors, ingestion, and the service on RabbitMQ.
///
/// `--only bus` needs RabbitMQ on 127.0.0.1:5672 (guest/guest) and `rabbitmqctl` (it works in
/// a vhost of its own, deleted afterwards): N mail observations through the partition queues
/// into the mailbox actors (throughput, every message acked and recorded once, or the run
/// fails), then a paced run for the publish → decision latency and the public event stream's
/// lag.
#[derive(Parser, Debug)]
#[command(name = "ledgersync-bench")]
struct Args {
    /// Events in the engine workload journal (replay, explain).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Mailboxes in the workload.
    #[arg(long, default_value_t = 1000)]
    mailboxes: usize,
    /// Events for the durable-append benchmark.
    #[arg(long, default_value_t = 500_000)]
    append_events: usize,
    /// Journal size, in GB, at which a writer is killed to time the reopen (0 skips).
    #[arg(long, default_value_t = 5.0)]
    reopen_gb: f64,
    /// The same for sled, which fills about 5× slower (default 1 GB keeps the run short).
    #[arg(long, default_value_t = 1.0)]
    reopen_gb_sled: f64,
    /// Small sizes for a quick check (100k events, 0.2 GB reopen).
    #[arg(long)]
    quick: bool,
    /// Where to put the journals (default: a new temp dir, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Only these measurements (append, workload, reopen, actors, ingest, bus, imap, mail);
    /// the workload runs replay, decide and explain. `actors` (mailbox actors, redb only),
    /// `ingest`, `bus` (the service on RabbitMQ), `imap` (the incoming-email pieces on
    /// Dovecot) and `mail` (incoming email end to end through the service, on Dovecot) are
    /// not in the default run.
    #[arg(long, value_delimiter = ',', default_value = "append,workload,reopen")]
    only: Vec<String>,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "redb,sled")]
    backends: Vec<String>,
    /// IMAP: messages in the folder listed (Dovecot on 127.0.0.1:1143, user bob@example.org).
    #[arg(long, default_value_t = 10_000)]
    imap_messages: usize,
    /// IMAP: IDLE wake-ups timed.
    #[arg(long, default_value_t = 20)]
    imap_idle_runs: usize,
    /// Mail: messages in Bob's INBOX when his incoming workload is enabled.
    #[arg(long, default_value_t = 10_000)]
    mail_messages: usize,
    /// Mail: deliveries timed one by one (delivery → decision, → timeline).
    #[arg(long, default_value_t = 20)]
    mail_runs: usize,
    /// Mail: messages delivered at once while the service runs.
    #[arg(long, default_value_t = 1_000)]
    mail_incremental: usize,
    /// Actors: mailboxes receiving observations in the throughput run.
    #[arg(long, default_value_t = 1000)]
    actor_mailboxes: usize,
    /// Actors: observations (appointment upserts) per mailbox in the throughput run.
    #[arg(long, default_value_t = 50)]
    actor_observations: u64,
    /// Actors: the `arbiters` settings to run the throughput with.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    actor_arbiters: Vec<usize>,
    /// Actors: mailboxes activated one at a time, then all at once, for activation latency.
    #[arg(long, value_delimiter = ',', default_value = "1000,3000")]
    actor_activations: Vec<usize>,
    /// Actors: events per mailbox stream for activation latency (snapshot at 3/4).
    #[arg(long, default_value_t = 200)]
    actor_stream_events: u64,
    /// Actors: active mailbox actors for resident memory.
    #[arg(long, default_value_t = 100_000)]
    actor_active: usize,
    /// Actors: registered mailboxes activated and passivated in waves for resident memory.
    #[arg(long, default_value_t = 1_000_000)]
    actor_registered: usize,
    /// Actors: mailboxes per activation wave.
    #[arg(long, default_value_t = 50_000)]
    actor_wave: usize,
    /// Ingest: organization sizes (rows) at which `crm apply` batches run through the service.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,10000,100000,1000000"
    )]
    ingest_rows: Vec<u64>,
    /// Ingest: `crm apply` files per size.
    #[arg(long, default_value_t = 7)]
    ingest_batches: u64,
    /// Ingest: changes per `crm apply` file.
    #[arg(long, default_value_t = 100)]
    ingest_batch: usize,
    /// Ingest: restart runs, ROWS:EVENTS each (organization stream events).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000:10000,100000:1000000,1000000:10000000"
    )]
    ingest_restart: Vec<String>,
    /// Bus: observations in the throughput run (`ItemSeen` of new tracked appointments, a
    /// `ListingCompleted` every `--bus-listing-every`).
    #[arg(long, default_value_t = 200_000)]
    bus_observations: usize,
    /// Bus: mailboxes the observations go to (round robin).
    #[arg(long, default_value_t = 1000)]
    bus_mailboxes: usize,
    /// Bus: observations per `publish_all` (confirms awaited together) in the throughput run
    /// (default: a driver's chunk, 128).
    #[arg(long, default_value_t = ledgersync_runtime::sink::OBSERVATION_CHUNK)]
    bus_batch: usize,
    /// Bus: observations of one mailbox carried by one message, as a driver publishes a
    /// listing's chunk (up to 128); 1 sends each in a message of its own.
    #[arg(long, default_value_t = 1)]
    bus_per_message: usize,
    /// Bus: publishing tasks in the throughput run, each awaiting its confirms before its next
    /// batch (as several drivers publish at once).
    #[arg(long, default_value_t = 8)]
    bus_publishers: usize,
    /// Bus: partition queues (quorum).
    #[arg(long, default_value_t = 64)]
    bus_partitions: usize,
    /// Bus: consumer prefetch per partition.
    #[arg(long, default_value_t = 32)]
    bus_prefetch: u16,
    /// Bus: a `ListingCompleted` every this many observations.
    #[arg(long, default_value_t = 20)]
    bus_listing_every: usize,
    /// Bus: the paced run's rate, observations/s [default: half the measured throughput; 0
    /// skips the paced run].
    #[arg(long)]
    rate: Option<f64>,
    /// Bus: how long the paced run publishes, seconds.
    #[arg(long, default_value_t = 20.0)]
    bus_paced_secs: f64,
    /// Bus: the paced run publishes a batch every this many ms.
    #[arg(long, default_value_t = 5)]
    bus_tick_ms: u64,
    /// Ingest: events appended after the snapshot before the timed recovery [default: the
    /// longest tail the snapshot interval leaves at that size, one event short of it].
    #[arg(long)]
    ingest_tail: Option<u64>,
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    if a.quick {
        a.events = a.events.min(100_000);
        a.append_events = a.append_events.min(100_000);
        a.reopen_gb = a.reopen_gb.min(0.2);
        a.reopen_gb_sled = a.reopen_gb_sled.min(0.2);
    }
    let tmp = tempfile::tempdir()?;
    let root = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let backends: Vec<Backend> = a
        .backends
        .iter()
        .map(|b| b.parse().map_err(anyhow::Error::from))
        .collect::<anyhow::Result<_>>()?;
    println!(
        "ledgersync-bench: {} workload events over {} mailboxes, {} append events, reopen at {} GB (sled {} GB); {} cores",
        a.events,
        a.mailboxes,
        a.append_events,
        a.reopen_gb,
        a.reopen_gb_sled,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut put = |name: &str, i: usize, v: String| {
        if let Some(r) = rows.iter_mut().find(|r| r.0 == name) {
            r.1[i] = v;
        } else {
            let mut vals = vec![String::from("-"); backends.len()];
            vals[i] = v;
            rows.push((name.to_string(), vals));
        }
    };
    let mut decide_done = None;
    for (i, &backend) in backends.iter().enumerate() {
        let wants = |what: &str| a.only.iter().any(|o| o == what);
        let append_runs: &[(usize, usize)] = if wants("append") {
            &[(64, 4), (64, 16)]
        } else {
            &[]
        };
        for &(threads, per) in append_runs {
            eprintln!("[{backend}] durable append, {threads} threads…");
            let dir = root.join(format!("append-{backend}-{threads}-{per}"));
            let f = journal_bench::durable_append(backend, &dir, a.append_events, threads, per);
            eprintln!("  {f}");
            put(
                &format!(
                    "durable append, {threads} threads × {per} events/append (target ≥ 200k events/s)"
                ),
                i,
                format!(
                    "{:.0} events/s ({:.0} events/commit, p99 {})",
                    f.events_per_sec,
                    f.mean_events_per_commit,
                    ms(f.p99_latency)
                ),
            );
            if threads == 64 {
                let r = journal_bench::raw_read_all(backend, &dir);
                eprintln!("  {r}");
                put(
                    "journal read_all + CRC + envelope decode, 1 thread",
                    i,
                    format!("{:.2} M events/s", r.events_per_sec / 1e6),
                );
            }
            let _ = std::fs::remove_dir_all(&dir);
        }

        if wants("workload") {
            eprintln!("[{backend}] building the workload journal…");
            let dir = root.join(format!("workload-{backend}"));
            let journal = ledgersync_journal::open(&dir, &JournalOptions::with_backend(backend))?;
            let shape = workload::Shape {
                mailboxes: a.mailboxes,
                events: a.events,
            };
            let (gens, n, took) = engine_bench::build(journal.as_ref(), shape);
            put(
                "workload load (decide + group-commit append)",
                i,
                format!(
                    "{n} events in {:.1} s ({:.0} events/s)",
                    took.as_secs_f64(),
                    n as f64 / took.as_secs_f64()
                ),
            );
            if wants("breakdown") {
                for (stage, rate) in engine_bench::replay_breakdown(journal.as_ref()) {
                    eprintln!("  replay stage {stage}: {:.2} M events/s", rate / 1e6);
                }
                for (name, n, ns) in engine_bench::apply_by_type(journal.as_ref()) {
                    eprintln!("  apply {name}: {n} events, {ns:.0} ns each");
                }
                for (name, n, ns, bytes) in engine_bench::decode_by_type(journal.as_ref()) {
                    eprintln!("  decode {name}: {n} events, {ns:.0} ns each, {bytes:.0} bytes");
                }
            }
            eprintln!("[{backend}] replay…");
            let r = engine_bench::replay(journal.as_ref());
            put(
                "replay: read + decode + evolve, 1 thread",
                i,
                format!("{:.2} M events/s", r.full_per_sec / 1e6),
            );
            put(
                "replay: decode + evolve stream by stream (actor recovery), 1 core",
                i,
                format!("{:.2} M events/s", r.per_stream_per_sec / 1e6),
            );
            put(
                "replay: decode + evolve, 1 core (target ≥ 2M events/s)",
                i,
                format!("{:.2} M events/s", r.decode_evolve_per_sec / 1e6),
            );
            if decide_done.is_none() {
                eprintln!("decide latency…");
                let busiest = gens
                    .iter()
                    .max_by_key(|g| g.state.records.len())
                    .expect("mailboxes");
                let l = engine_bench::decide_latency(&busiest.state, a.mailboxes, 200_000);
                decide_done = Some(format!(
                    "p50 {} / p99 {} / max {} ({} rows in state, {} samples)",
                    us(l.p50),
                    us(l.p99),
                    us(l.max),
                    busiest.state.records.len(),
                    l.samples
                ));
            }
            eprintln!("[{backend}] explain…");
            let (by_id, by_subject, by_partial) =
                engine_bench::explain_latency(journal.as_ref(), &gens, 50);
            put(
                &format!("explain by CRM id on {n} events (target ≤ 100 ms)"),
                i,
                format!("p50 {} / max {}", ms(by_id.p50), ms(by_id.max)),
            );
            put(
                &format!("explain by exact subject on {n} events"),
                i,
                format!("p50 {} / max {}", ms(by_subject.p50), ms(by_subject.max)),
            );
            put(
                &format!("explain by part of a subject (scans every subject) on {n} events"),
                i,
                format!("p50 {} / max {}", ms(by_partial.p50), ms(by_partial.max)),
            );
            drop(journal);
            let _ = std::fs::remove_dir_all(&dir);
        }

        let reopen_gb = match backend {
            Backend::Redb => a.reopen_gb,
            Backend::Sled => a.reopen_gb_sled,
        };
        if reopen_gb > 0.0 && wants("reopen") {
            match journal_bench::find_crash_writer() {
                Some(writer) => {
                    eprintln!("[{backend}] reopen after kill -9 at {reopen_gb} GB…");
                    let dir = root.join(format!("reopen-{backend}"));
                    let f = journal_bench::crash_reopen_time(
                        backend,
                        &dir,
                        (reopen_gb * 1e9) as u64,
                        &writer,
                    );
                    eprintln!("  {f}");
                    put(
                        "reopen after kill -9 mid-commit (target ≤ 1 s at 5 GB)",
                        i,
                        format!("{} at {:.2} GB", ms(f.reopen), f.journal_bytes as f64 / 1e9),
                    );
                    let _ = std::fs::remove_dir_all(&dir);
                }
                None => eprintln!(
                    "journal-crash-writer not built: run `cargo build --release -p ledgersync-journal` first"
                ),
            }
        }
    }
    if a.only.iter().any(|o| o == "actors") {
        actors(&a, &root)?;
    }
    if a.only.iter().any(|o| o == "ingest") {
        ingest(&a, &root)?;
    }
    if a.only.iter().any(|o| o == "bus") {
        bus(&a, &root)?;
    }
    if a.only.iter().any(|o| o == "imap") {
        imap(&a)?;
    }
    if a.only.iter().any(|o| o == "mail") {
        mail(&a, &root)?;
    }
    if let Some(d) = decide_done {
        rows.push((
            "decide, one observation (target p99 ≤ 20 µs; backend-independent)".into(),
            vec![d; backends.len()],
        ));
    }
    if rows.is_empty() {
        return Ok(()); // only the actors section ran
    }
    println!();
    println!(
        "| measurement | {} |",
        backends
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(backends.len()));
    for (name, vals) in rows {
        println!("| {name} | {} |", vals.join(" | "));
    }
    Ok(())
}

/// Incoming email on Dovecot, as its own table.
fn imap(a: &Args) -> anyhow::Result<()> {
    eprintln!(
        "[imap] {} messages into a folder of bob@example.org, then listing, decide and IDLE…",
        a.imap_messages
    );
    let f = imap_bench::run(a.imap_messages, a.imap_idle_runs)?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let mut idle: Vec<f64> = f.idle.iter().map(|d| ms(*d)).collect();
    idle.sort_by(f64::total_cmp);
    let pick = |q: f64| idle[((idle.len() - 1) as f64 * q).round() as usize];
    let mut inc: Vec<f64> = f.incremental.iter().map(|d| ms(*d)).collect();
    inc.sort_by(f64::total_cmp);
    println!();
    println!("| incoming email on Dovecot (IMAP 127.0.0.1:1143) | figure |");
    println!("|---|---|");
    println!(
        "| load: {} messages appended by Python's imaplib (one connection) | {:.1} s |",
        f.messages,
        f.load.as_secs_f64()
    );
    println!(
        "| initial listing: `ImapConnector::list_changes` from the initial cursor, {} messages \
         (headers parsed, one `email_received` each) | {:.2} s, **{:.0} messages/s** |",
        f.messages,
        f.initial.as_secs_f64(),
        f.messages as f64 / f.initial.as_secs_f64()
    );
    println!(
        "| decide: facts looked up in a directory of 1,000 contacts and 2,000 CRM emails, then \
         `decide` and `apply` ({} tracked, {} rejected) | {:.2} s, **{:.0} emails/s** |",
        f.tracked,
        f.rejected,
        f.decide.as_secs_f64(),
        f.messages as f64 / f.decide.as_secs_f64()
    );
    println!("| a decision of it (the second email) | {} |", f.sample);
    println!(
        "| incremental listing: one new message, from the cursor ({} runs) | median {:.0} ms, max {:.0} ms |",
        inc.len(),
        inc[inc.len() / 2],
        inc[inc.len() - 1]
    );
    println!(
        "| IDLE: another client's APPEND done → `idle_once` returns ({} runs) | p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms |",
        idle.len(),
        pick(0.5),
        pick(0.95),
        idle[idle.len() - 1]
    );
    Ok(())
}

/// Incoming email end to end through the service, as its own table.
fn mail(a: &Args, root: &std::path::Path) -> anyhow::Result<()> {
    eprintln!(
        "[mail] the service with bob@example.org's INBOX of {} messages, then {} deliveries one \
         by one, then {} at once…",
        a.mail_messages, a.mail_runs, a.mail_incremental
    );
    let f = mail_bench::run(
        &root.join("mail"),
        a.mail_messages,
        a.mail_runs,
        a.mail_incremental,
    )?;
    let ms = |d: &std::time::Duration| d.as_secs_f64() * 1000.0;
    let spread = |v: &[std::time::Duration]| {
        let mut v: Vec<f64> = v.iter().map(ms).collect();
        v.sort_by(f64::total_cmp);
        let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        format!(
            "p50 {:.0} ms, p95 **{:.0} ms**, max {:.0} ms",
            pick(0.5),
            pick(0.95),
            v[v.len() - 1]
        )
    };
    println!();
    println!(
        "| incoming email end to end: `Service`, Dovecot 127.0.0.1:1143 (IMAP) and 2424 (LMTP) | figure |"
    );
    println!("|---|---|");
    println!(
        "| initial: the incoming workload enabled with {} messages in the INBOX → all decided \
         and durable (listing, facts looked up through the organization actor, decide, group \
         commits) | {:.2} s, **{:.0} messages/s** |",
        f.initial_messages,
        f.initial.as_secs_f64(),
        f.initial_messages as f64 / f.initial.as_secs_f64()
    );
    println!(
        "| freshness: delivered over LMTP → decision durable in the journal (IDLE push, {} runs) | {} |",
        f.decided.len(),
        spread(&f.decided)
    );
    println!(
        "| freshness: delivered over LMTP → row on the account's timeline (projection, {} runs) | {} |",
        f.timeline.len(),
        spread(&f.timeline)
    );
    println!(
        "| while running: {} messages delivered over one LMTP connection ({:.2} s, Dovecot's \
         delivery) → the last decided after the delivery ended | {:.0} ms |",
        f.incremental_messages,
        f.incremental_delivery.as_secs_f64(),
        f.running_lag.as_secs_f64() * 1000.0
    );
    println!(
        "| incremental: {} messages delivered while the service was stopped, INBOX of {} → the \
         service started again → all decided | {:.2} s, **{:.0} messages/s** |",
        f.incremental_messages,
        f.initial_messages + f.decided.len() + 2 * f.incremental_messages,
        f.incremental.as_secs_f64(),
        f.incremental_messages as f64 / f.incremental.as_secs_f64()
    );
    println!(
        "| peak resident set of the benchmark process | {} |",
        mib(f.peak_rss)
    );
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1048576.0)
}

/// The mailbox-actor figures (issue 3), redb only, as their own table.
fn actors(a: &Args, root: &std::path::Path) -> anyhow::Result<()> {
    let mut rows: Vec<(String, String)> = Vec::new();
    for &arbiters in &a.actor_arbiters {
        eprintln!("[actors] observations through actors, arbiters = {arbiters}…");
        let dir = root.join(format!("actors-throughput-{arbiters}"));
        let t = runtime_bench::observe_throughput(
            &dir,
            arbiters,
            a.actor_mailboxes,
            a.actor_observations,
        )?;
        eprintln!("  {t:?}");
        rows.push((
            format!(
                "observations through actors to durable decisions, {} mailboxes × {}, arbiters = {} (target ≥ 50k obs/s)",
                t.mailboxes,
                t.observations / t.mailboxes.max(1) as u64,
                t.arbiters
            ),
            format!(
                "{:.0} obs/s, {:.0} decisions/s, {:.0} events/s ({:.2} s)",
                t.observations_per_sec(),
                t.decisions_per_sec(),
                t.events_per_sec(),
                t.took.as_secs_f64()
            ),
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!("[actors] the same step without actors (prepare / submit / wait / commit)…");
    let dir = root.join("actors-core");
    let b = runtime_bench::core_breakdown(&dir, a.actor_mailboxes, a.actor_observations)?;
    eprintln!("  {b:?}");
    rows.push((
        "the same step without actors, one thread, all mailboxes in flight".into(),
        format!(
            "{:.0} obs/s, {:.0} decisions/s; prepare {} / submit {} / wait for commit {} / commit {}",
            b.throughput.observations_per_sec(),
            b.throughput.decisions_per_sec(),
            ms(b.prepare),
            ms(b.submit),
            ms(b.wait),
            ms(b.commit)
        ),
    ));
    let _ = std::fs::remove_dir_all(&dir);

    let (sequential, burst) = (
        a.actor_activations.first().copied().unwrap_or(1000),
        a.actor_activations.get(1).copied().unwrap_or(3000),
    );
    if sequential.min(burst) > 0 {
        eprintln!("[actors] activation latency…");
        let dir = root.join("actors-activation");
        let l = runtime_bench::activation_latency(&dir, sequential, burst, a.actor_stream_events)?;
        eprintln!("  {l:?}");
        rows.push((
        format!(
            "activation, one at a time: first observation to a passivated mailbox ({} events, snapshot at {}; streams written in {}), {} mailboxes",
            l.events_per_stream, l.snapshot_at, ms(l.write_took), l.one_at_a_time.0
        ),
        format!(
            "p50 {} / p99 {} / max {}",
            ms(l.one_at_a_time.1),
            ms(l.one_at_a_time.2),
            ms(l.one_at_a_time.3)
        ),
    ));
        rows.push((
            format!(
                "activation, {} mailboxes at once, max_recoveries 50",
                l.burst.0
            ),
            format!(
                "p50 {} / p99 {} / max {}; all in {} ({:.0} activations/s), recoveries peak {}",
                ms(l.burst.1),
                ms(l.burst.2),
                ms(l.burst.3),
                ms(l.burst_took),
                l.burst.0 as f64 / l.burst_took.as_secs_f64(),
                l.recoveries_peak
            ),
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    if a.actor_active > 0 && a.actor_registered > 0 {
        eprintln!("[actors] resident memory…");
        let dir = root.join("actors-memory");
        let m = runtime_bench::memory(
            &dir,
            a.actor_active,
            a.actor_registered,
            a.actor_wave,
            a.actor_registered / 100,
        )?;
        eprintln!("  {m:?}");
        let delta = m.rss_active.saturating_sub(m.rss_before_active);
        rows.push((
        format!(
            "resident memory, {} active mailbox actors (target ≤ 1 GiB)",
            m.active
        ),
        format!(
            "VmRSS {} with the streams written, {} after reading every stream once (journal cache warm), {} with all active (+{}, {:.1} KiB per actor); activated in {}",
            mib(m.rss_cold),
            mib(m.rss_before_active),
            mib(m.rss_active),
            mib(delta),
            delta as f64 / 1024.0 / m.active.max(1) as f64,
            ms(m.activate_took)
        ),
    ));
        let max_wave = m.rss_after_waves.iter().copied().max().unwrap_or(0);
        rows.push((
        format!(
            "resident memory, {} registered mailboxes, activated and passivated in waves of {}, {} left active",
            m.registered, m.wave, m.kept_active
        ),
        format!(
            "VmRSS {} before the waves, at most {} after a wave, {} at the end ({} alive, {} activations, {} passivations); lifecycle written in {}, waves {}",
            mib(m.rss_before_waves),
            mib(max_wave),
            mib(m.rss_end),
            m.alive_end,
            m.activations,
            m.passivations,
            ms(m.register_took),
            ms(m.waves_took)
        ),
    ));
        rows.push((
            "peak resident memory of the whole run (VmHWM)".into(),
            mib(runtime_bench::peak_rss_bytes()),
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    println!();
    println!("| mailbox actors (redb) | figure |");
    println!("|---|---|");
    for (name, v) in rows {
        println!("| {name} | {v} |");
    }
    Ok(())
}

/// Ingestion as the organization grows (redb only), as its own tables.
fn ingest(a: &Args, root: &std::path::Path) -> anyhow::Result<()> {
    let mut rows: Vec<(String, String)> = Vec::new();
    for spec in &a.ingest_restart {
        let (r, e) = spec
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--ingest-restart takes ROWS:EVENTS, not `{spec}`"))?;
        let (r, e): (u64, u64) = (r.parse()?, e.parse()?);
        eprintln!("[ingest] restart, {r} rows, {e} events…");
        let dir = root.join(format!("ingest-restart-{r}"));
        let tail = a.ingest_tail.unwrap_or_else(|| {
            ledgersync_engine::org::snapshot_interval(
                r as usize,
                ledgersync_engine::org::DEFAULT_ORG_SNAPSHOT_EVERY,
            ) - 1
        });
        let f = ingest_bench::restart(&dir, r, e, tail)?;
        eprintln!("  {f:?}");
        rows.push((
            format!(
                "organization of {} rows, {} events (written in {})",
                f.built.rows,
                f.built.events,
                ms(f.built.took)
            ),
            format!(
                "restart: full fold {} / snapshot + {}-event tail **{}**; snapshot {:.1} MB ({:.0} B/row) saved in {}; state clone {}; RSS {:.0} B/row ({} rows)",
                ms(f.full_fold),
                f.tail,
                ms(f.from_snapshot),
                f.snapshot_bytes as f64 / 1e6,
                f.snapshot_bytes as f64 / f.built.rows.max(1) as f64,
                ms(f.snapshot_save),
                ms(f.clone),
                f.rss_per_row,
                f.state_rows
            ),
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut base = None;
    for &r in &a.ingest_rows {
        eprintln!("[ingest] crm apply through the service, {r} rows…");
        let dir = root.join(format!("ingest-apply-{r}"));
        let f = ingest_bench::apply(&dir, r, a.ingest_batches, a.ingest_batch)?;
        eprintln!("  {f:?}");
        let rate = f.overall_rate();
        let base = *base.get_or_insert(rate);
        rows.push((
            format!(
                "crm apply through the service, {} rows, {} files × {} changes",
                f.rows,
                f.batches.len(),
                f.batch
            ),
            format!(
                "{:.0} changes/s over the run ({:+.0}% vs the first size; median file {:.0}/s), check {} per file; per file {}; service start {}",
                rate,
                (rate / base - 1.0) * 100.0,
                f.median_rate(),
                ms(f.median_check()),
                f.batches
                    .iter()
                    .map(|d| format!("{:.2}", d.as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join(" / "),
                ms(f.start)
            ),
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!();
    println!("| ingestion (redb) | figure |");
    println!("|---|---|");
    for (name, v) in rows {
        println!("| {name} | {v} |");
    }
    Ok(())
}

/// The service on RabbitMQ (redb), as its own table.
fn bus(a: &Args, root: &std::path::Path) -> anyhow::Result<()> {
    let args = bus_bench::BusArgs {
        observations: a.bus_observations,
        mailboxes: a.bus_mailboxes.max(1),
        batch: a.bus_batch.max(1),
        per_message: a.bus_per_message.max(1),
        publishers: a.bus_publishers.max(1),
        partitions: a.bus_partitions.max(1),
        prefetch: a.bus_prefetch.max(1),
        listing_every: a.bus_listing_every,
        rate: a.rate,
        paced_secs: a.bus_paced_secs,
        tick_ms: a.bus_tick_ms,
    };
    let f = bus_bench::run(&root.join("bus"), args.clone())?;
    let mut rows: Vec<(String, String)> = vec![(
        format!(
            "observations through RabbitMQ to durable decisions, acked: {} over {} mailboxes, \
             {} partitions (quorum), batches of {}, {} publisher(s), prefetch {}, ~{} B each \
             (target ≥ 20k obs/s)",
            f.observations,
            f.mailboxes,
            args.partitions,
            args.batch,
            args.publishers,
            args.prefetch,
            f.body_bytes
        ),
        format!(
            "**{:.0} obs/s**, {:.0} events/s ({} decisions; {:.2} s first publish → last answer, \
             publishing done at {:.2} s); queues empty, journal exact",
            f.observations_per_sec(),
            f.events_per_sec(),
            f.decisions,
            f.took.as_secs_f64(),
            f.publish_took.as_secs_f64()
        ),
    )];
    if let Some(p) = &f.paced {
        rows.push((
            format!(
                "publish → decision latency, paced at {:.0} obs/s, a batch every {} ms, {:.0} s",
                p.rate,
                args.tick_ms,
                p.took.as_secs_f64()
            ),
            format!(
                "p50 {} / p99 {} / max {} ({} observations); of which publish → confirm of its batch p50 {} / p99 {}",
                ms(p.latency.0),
                ms(p.latency.1),
                ms(p.latency.2),
                p.observations,
                ms(p.confirm.0),
                ms(p.confirm.1)
            ),
        ));
        rows.push((
            "public event stream lag under that load (receive time − `recorded_at`; publisher polls every 100 ms when idle)".into(),
            format!(
                "p50 {} ms / p99 {} ms / max {} ms ({} events)",
                p.stream.1, p.stream.2, p.stream.3, p.stream.0
            ),
        ));
    }
    println!();
    println!("| the service on RabbitMQ (redb) | figure |");
    println!("|---|---|");
    for (name, v) in rows {
        println!("| {name} | {v} |");
    }
    Ok(())
}
