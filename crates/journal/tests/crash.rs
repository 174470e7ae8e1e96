//! The crash suite: a child process (`journal-crash-writer`) appends random batches from several
//! threads through group commit and prints every acknowledged append; the test kills it with
//! SIGKILL after a random 50–400 ms, again and again on the same data directory, and after
//! every kill reopens the journal and checks that
//!
//! - every acknowledged append is present, at the positions and seqs it was acknowledged with,
//!   with the content it was written with (checksum of the payloads) and in the item index;
//! - positions run from 1 without a gap, and every stream's seqs from 1 without a gap;
//! - every event's content matches its own header, and every append ("batch") is either whole
//!   or absent: no partial batch is visible, and none appears twice.
//!
//! Set `LEDGERSYNC_CRASH_SEED` to replay a run; the seed is printed.

#[path = "../src/bin/journal-crash-writer/payload.rs"]
#[allow(dead_code)]
mod payload;

mod common;

use common::{open_ok, read_everything};
use ledgersync_domain::{Envelope, StreamId};
use ledgersync_journal::{Backend, ExpectedSeq, Journal};
use payload::{Ack, batch_item, check, checksum, event_id, mix};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TRIALS: u64 = 24;

/// Runs the writer on `dir` for `run_for`, kills it, and returns its complete stdout lines.
fn run_and_kill(backend: Backend, dir: &Path, run: u64, run_for: Duration) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_journal-crash-writer"))
        .args(["--backend", backend.as_str(), "--run", &run.to_string()])
        .args(["--threads", "4", "--max-batch", "64", "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start journal-crash-writer");
    // Read while it runs, so that a full pipe never holds the writer up; the first line says
    // the journal is open. The kill is timed from then, so that on a loaded machine (a slow
    // start) it still lands among the appends; `run_for` near zero still kills during recovery
    // work and before the first acknowledgement.
    let stdout = child.stdout.take().unwrap();
    let (opened_tx, opened) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut stdout = std::io::BufReader::new(stdout);
        let mut first = true;
        loop {
            let mut line = Vec::new();
            match std::io::BufRead::read_until(&mut stdout, b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if first {
                        first = false;
                        let _ = opened_tx.send(());
                    }
                    text.extend_from_slice(&line);
                }
            }
        }
        text
    });
    // A writer that never opens the journal is caught below (it exits, or is killed late).
    let _ = opened.recv_timeout(Duration::from_secs(60));
    std::thread::sleep(run_for);
    if let Some(status) = child.try_wait().unwrap() {
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!("journal-crash-writer exited by itself ({status}) in trial {run}: {err}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = String::from_utf8(reader.join().unwrap()).unwrap();
    // Only lines that reached us whole count: the last one may have been cut by the kill.
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| l.trim_end().to_owned())
        .collect()
}

/// Checks the whole journal against every ack seen so far; returns the number of events.
fn verify(j: &dyn Journal, acks: &[Ack], recent: &[Ack]) -> usize {
    let all: Vec<Envelope> = read_everything(j, 2000);
    let mut heads: BTreeMap<StreamId, u64> = BTreeMap::new();
    let mut seen_batches = HashSet::new();
    let mut i = 0;
    while i < all.len() {
        let e = &all[i];
        assert_eq!(
            e.position,
            i as u64 + 1,
            "gap before position {}",
            e.position
        );
        let (batch_id, index, len) =
            check(&e.payload).unwrap_or_else(|err| panic!("position {}: {err}", e.position));
        assert_eq!(
            index, 0,
            "position {} starts inside batch {batch_id}",
            e.position
        );
        assert!(
            seen_batches.insert(batch_id),
            "batch {batch_id} appears twice"
        );
        let end = i + len as usize;
        assert!(
            end <= all.len(),
            "partial batch {batch_id}: {} of its {len} events are visible",
            all.len() - i
        );
        for (k, e) in all[i..end].iter().enumerate() {
            let position = e.position;
            let (b, idx, l) =
                check(&e.payload).unwrap_or_else(|err| panic!("position {position}: {err}"));
            assert_eq!(
                (b, idx, l),
                (batch_id, k as u32, len),
                "partial batch {batch_id} at {position}"
            );
            assert_eq!(e.event_id, event_id(batch_id, idx));
            assert_eq!(
                e.position,
                i as u64 + 1 + k as u64,
                "gap at position {position}"
            );
            assert_eq!(
                e.stream, all[i].stream,
                "batch {batch_id} spans two streams"
            );
            let head = heads.entry(e.stream.clone()).or_default();
            assert_eq!(
                e.seq,
                *head + 1,
                "seq gap in {} at position {position}",
                e.stream
            );
            *head += 1;
        }
        i = end;
    }
    assert_eq!(j.streams().unwrap(), heads.into_iter().collect::<Vec<_>>());
    assert_eq!(j.last_position().unwrap(), all.len() as u64);

    for ack in acks {
        let range = ack.first_position as usize..=ack.last_position as usize;
        assert!(
            ack.last_position as usize <= all.len(),
            "acknowledged append of batch {} (positions {range:?}) is lost: the journal ends at {}",
            ack.batch_id,
            all.len()
        );
        let stored = &all[ack.first_position as usize - 1..ack.last_position as usize];
        assert_eq!(stored.len() as u32, ack.len);
        assert_eq!(stored[0].stream.as_str(), ack.stream);
        assert_eq!(stored[0].seq, ack.first_seq);
        assert_eq!(stored.last().unwrap().seq, ack.last_seq);
        assert_eq!(check(&stored[0].payload).unwrap().0, ack.batch_id);
        assert_eq!(
            checksum(stored.iter().map(|e| e.payload.as_slice())),
            ack.crc,
            "content of batch {} differs from what was acknowledged",
            ack.batch_id
        );
    }
    for ack in recent {
        let positions: Vec<u64> = (ack.first_position..=ack.last_position).collect();
        assert_eq!(
            j.positions_for_item(&batch_item(ack.batch_id)).unwrap(),
            positions
        );
    }
    all.len()
}

fn crash_suite(backend: Backend) {
    let seed = std::env::var("LEDGERSYNC_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{backend} crash suite: LEDGERSYNC_CRASH_SEED={seed}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let started = Instant::now();
    let mut rng = seed;
    let mut acks: Vec<Ack> = Vec::new();
    let mut trials_with_acks = 0;
    let mut slowest_reopen = Duration::ZERO;
    for run in 1..=TRIALS {
        rng = mix(rng);
        let run_for = Duration::from_millis(rng % 351);
        let lines = run_and_kill(backend, &dir, run, run_for);
        let new: Vec<Ack> = lines.iter().filter_map(|l| Ack::parse(l)).collect();
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("OPEN ") || l.starts_with("ACK ")),
            "unexpected output: {lines:?}"
        );
        if !new.is_empty() {
            trials_with_acks += 1;
        }
        acks.extend(new.iter().cloned());

        let t = Instant::now();
        let j = open_ok(&dir, backend);
        let reopen = t.elapsed();
        slowest_reopen = slowest_reopen.max(reopen);
        let events = verify(j.as_ref(), &acks, &new[new.len().saturating_sub(40)..]);
        eprintln!(
            "{backend} trial {run:2}: killed after {:3} ms, {:4} acks ({:5} in all), reopen {:7.2} ms, \
             {events} events in the journal",
            run_for.as_millis(),
            new.len(),
            acks.len(),
            reopen.as_secs_f64() * 1000.0
        );
        if run == TRIALS {
            // After the last crash the journal still takes appends, numbered on from the end.
            let s = StreamId("crash/after".into());
            let head = j.stream_head(&s).unwrap();
            let a = j
                .append(
                    &s,
                    ExpectedSeq::Exactly(head),
                    payload::batch(u64::MAX >> 1, 3),
                )
                .unwrap();
            assert_eq!(a.first_position, events as u64 + 1);
            assert_eq!(a.first_seq, head + 1);
        }
    }
    eprintln!(
        "{backend} crash suite: {TRIALS} kills, {} acknowledged appends checked, slowest reopen \
         {:.2} ms, {:.1} s in all",
        acks.len(),
        slowest_reopen.as_secs_f64() * 1000.0,
        started.elapsed().as_secs_f64()
    );
    // Kills that land while the writer is still opening the journal are useful too, but a run
    // where most trials acknowledged nothing would have tested too little.
    assert!(
        trials_with_acks >= TRIALS / 3,
        "only {trials_with_acks} of {TRIALS} trials acknowledged an append: the suite tested too little"
    );
}

#[test]
fn redb_survives_repeated_kill_9() {
    crash_suite(Backend::Redb);
}

#[test]
fn sled_survives_repeated_kill_9() {
    crash_suite(Backend::Sled);
}
