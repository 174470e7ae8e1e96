//! `ledgersync-bench`: the figures of docs/benchmarks.md, for both embedded backends side by
//! side in one run.
//!
//! ```text
//! cargo run --release -p ledgersync-bench -- [--events N] [--mailboxes M] [--reopen-gb G] [--quick]
//! ```

/// The same allocator as the `ledgersync` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod engine_bench;
mod journal_bench;
mod workload;

use clap::Parser;
use ledgersync_journal::{Backend, JournalOptions};
use std::path::PathBuf;
use std::time::Duration;

/// Measures journal append, replay, decide and explain for redb and sled.
#[derive(Parser, Debug)]
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
    /// Only these measurements (append, workload, reopen); the workload runs replay, decide
    /// and explain.
    #[arg(long, value_delimiter = ',', default_value = "append,workload,reopen")]
    only: Vec<String>,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "redb,sled")]
    backends: Vec<String>,
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
    if let Some(d) = decide_done {
        rows.push((
            "decide, one observation (target p99 ≤ 20 µs; backend-independent)".into(),
            vec![d; backends.len()],
        ));
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
