//! The child process of the journal crash suite and of the crash-reopen benchmark.
//!
//! ```text
//! journal-crash-writer --backend redb|sled --dir DIR --run N [--threads T] [--max-batch M]
//! ```
//!
//! Opens the journal in DIR, prints `OPEN <open_ms> <last_position>`, then appends from T
//! threads (default 4) until killed. Each append is one batch of 1..=M events (default 64,
//! random) built by `payload.rs`; thread `t` alternates between its own stream `crash/t<t>`
//! (appended with `ExpectedSeq::Exactly`) and the shared streams `crash/s0..s7`
//! (`ExpectedSeq::Any`), so group commits mix both kinds. After every acknowledged append it
//! prints one `ACK …` line (see `payload::Ack`) and flushes stdout: a line that reached the
//! parent is a promise that the append is durable.

// `check` and `Ack::parse` are the reading half, used by tests/crash.rs, which includes this file.
#[allow(dead_code)]
mod payload;

use ledgersync_domain::StreamId;
use ledgersync_journal::{Backend, ExpectedSeq, JournalOptions, open};
use payload::{Ack, batch, checksum, mix};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Args {
    backend: Backend,
    dir: PathBuf,
    run: u64,
    threads: u64,
    max_batch: u64,
}

const USAGE: &str = "usage: journal-crash-writer --backend redb|sled --dir DIR --run N \
                     [--threads T] [--max-batch M]";

fn parse_args() -> Result<Args, String> {
    let mut backend = None;
    let mut dir = None;
    let mut run = None;
    let mut threads = 4;
    let mut max_batch = 64;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: '{value}' is not a number\n{USAGE}"))
        };
        match flag.as_str() {
            "--backend" => backend = Some(value.parse::<Backend>().map_err(|e| e.to_string())?),
            "--dir" => dir = Some(PathBuf::from(&value)),
            "--run" => run = Some(number()?),
            "--threads" => threads = number()?.max(1),
            "--max-batch" => max_batch = number()?.clamp(1, 4096),
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok(Args {
        backend: backend.ok_or_else(|| format!("--backend is required\n{USAGE}"))?,
        dir: dir.ok_or_else(|| format!("--dir is required\n{USAGE}"))?,
        run: run.ok_or_else(|| format!("--run is required\n{USAGE}"))?,
        threads,
        max_batch,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let journal = match open(&args.dir, &JournalOptions::with_backend(args.backend)) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("journal-crash-writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let last = journal.last_position().unwrap_or(0);
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "OPEN {:.3} {last}",
            started.elapsed().as_secs_f64() * 1000.0
        );
        let _ = out.flush();
    }
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ args.run.rotate_left(17);
    let handles: Vec<_> = (0..args.threads)
        .map(|t| {
            let journal = Arc::clone(&journal);
            let (run, max_batch) = (args.run, args.max_batch);
            std::thread::spawn(move || -> Result<(), String> {
                let own = StreamId(format!("crash/t{t}"));
                let mut own_head = journal.stream_head(&own).map_err(|e| e.to_string())?;
                let mut rng = mix(seed ^ t);
                for counter in 0u64.. {
                    rng = mix(rng);
                    let len = 1 + (rng % max_batch) as u32;
                    let batch_id = (run << 40) | (t << 32) | counter;
                    let events = batch(batch_id, len);
                    let crc = checksum(events.iter().map(|e| e.payload.as_slice()));
                    let (stream, expected) = if counter % 2 == 0 {
                        (own.clone(), ExpectedSeq::Exactly(own_head))
                    } else {
                        (
                            StreamId(format!("crash/s{}", (rng >> 8) % 8)),
                            ExpectedSeq::Any,
                        )
                    };
                    let a = journal
                        .append(&stream, expected, events)
                        .map_err(|e| e.to_string())?;
                    if stream == own {
                        own_head = a.last_seq;
                    }
                    let ack = Ack {
                        stream: stream.0,
                        first_seq: a.first_seq,
                        last_seq: a.last_seq,
                        first_position: a.first_position,
                        last_position: a.last_position,
                        batch_id,
                        len,
                        crc,
                    };
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{}", ack.line())
                        .and_then(|()| out.flush())
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .collect();
    let mut failed = false;
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("journal-crash-writer: {e}");
                failed = true;
            }
            Err(_) => failed = true,
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
