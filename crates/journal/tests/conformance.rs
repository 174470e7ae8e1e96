//! The journal conformance suite: every behaviour of the `Journal` contract, written once and
//! run against each backend (see the `conformance_suite!` invocation at the end).

mod common;

use common::*;
use ledgersync_domain::{Envelope, EventId, StreamId};
use ledgersync_journal::{
    AppendError, Appended, Backend, ExpectedSeq, OpenError, ReadError, Snapshot,
};
use redb::ReadableTable;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

fn append_and_read_back(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let j = open_ok(tmp.path(), backend);
    assert_eq!(j.backend(), backend);
    assert_eq!(j.data_dir(), tmp.path());
    assert_eq!(j.last_position().unwrap(), 0);
    assert_eq!(j.stream_head(&stream("mailbox/a")).unwrap(), 0);
    assert!(j.read_all(1, 10).unwrap().is_empty());
    assert!(
        j.read_stream(&stream("mailbox/a"), 1, 10)
            .unwrap()
            .is_empty()
    );

    let (a, b, c) = (stream("mailbox/a"), stream("mailbox/b"), stream("org/o1"));
    let mut written: Vec<(StreamId, ledgersync_domain::NewEvent)> = Vec::new();
    let plan = [(&a, 3), (&b, 1), (&a, 2), (&c, 4), (&b, 2), (&a, 1)];
    let mut expected_heads = BTreeMap::new();
    let mut next_position = 1;
    for (i, (s, n)) in plan.iter().enumerate() {
        let evs = events(&format!("{s}-{i}"), *n);
        written.extend(evs.iter().cloned().map(|e| ((*s).clone(), e)));
        let head: &mut u64 = expected_heads.entry((*s).clone()).or_default();
        let got = j.append(s, ExpectedSeq::Any, evs).unwrap();
        assert_eq!(
            got,
            Appended {
                first_seq: *head + 1,
                last_seq: *head + *n as u64,
                first_position: next_position,
                last_position: next_position + *n as u64 - 1,
            }
        );
        *head += *n as u64;
        next_position += *n as u64;
    }
    let total = next_position - 1;
    assert_eq!(total, 13);
    assert_eq!(j.last_position().unwrap(), total);

    // read_all returns every event, positions 1..=total, with every field as appended.
    let all = read_everything(j.as_ref(), 4);
    assert_eq!(all.len() as u64, total);
    let mut seqs: BTreeMap<StreamId, u64> = BTreeMap::new();
    for (i, (env, (s, ev))) in all.iter().zip(&written).enumerate() {
        assert_eq!(env.position, i as u64 + 1);
        let seq = seqs.entry(s.clone()).or_default();
        *seq += 1;
        assert_eq!(
            env,
            &ev.clone().into_envelope(s.clone(), *seq, i as u64 + 1)
        );
    }
    assert_eq!(seqs, expected_heads);

    // read_all from the middle, with a limit.
    let mid = j.read_all(5, 3).unwrap();
    assert_eq!(
        mid.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
    assert!(j.read_all(total + 1, 10).unwrap().is_empty());
    assert!(j.read_all(1, 0).unwrap().is_empty());
    assert_eq!(j.read_all(0, 1).unwrap()[0].position, 1);

    // read_stream: ascending seqs, from a seq, with a limit.
    let sa = j.read_stream(&a, 1, 100).unwrap();
    assert_eq!(
        sa.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert!(sa.iter().all(|e| e.stream == a));
    assert!(sa.windows(2).all(|w| w[0].position < w[1].position));
    let sa_mid = j.read_stream(&a, 3, 2).unwrap();
    assert_eq!(sa_mid.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(sa_mid[0], sa[2]);
    assert!(j.read_stream(&a, 7, 10).unwrap().is_empty());
    assert_eq!(j.read_stream(&c, 0, 1).unwrap()[0].seq, 1);
    assert!(
        j.read_stream(&stream("mailbox/none"), 1, 10)
            .unwrap()
            .is_empty()
    );
    // A stream whose name is a prefix of another's is not mixed with it.
    j.append(&stream("mailbox/a/x"), ExpectedSeq::Any, events("x", 1))
        .unwrap();
    assert_eq!(j.read_stream(&a, 1, 100).unwrap(), sa);

    // read_positions: in the order asked.
    let picked = j.read_positions(&[7, 2, 13, 2]).unwrap();
    assert_eq!(
        picked.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![7, 2, 13, 2]
    );
    assert_eq!(picked[0], all[6]);
    match j.read_positions(&[1, 99]) {
        Err(ReadError::MissingPosition {
            position: 99,
            last_position: 14,
            ..
        }) => {}
        other => panic!("expected MissingPosition, got {other:?}"),
    }
    assert!(j.read_positions(&[]).unwrap().is_empty());

    // heads and streams.
    assert_eq!(j.stream_head(&a).unwrap(), 6);
    assert_eq!(j.stream_head(&b).unwrap(), 3);
    assert_eq!(
        j.streams().unwrap(),
        vec![
            (a.clone(), 6),
            (stream("mailbox/a/x"), 1),
            (b.clone(), 3),
            (c.clone(), 4)
        ]
    );
}

fn expected_seq_conflicts(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let j = open_ok(tmp.path(), backend);
    let s = stream("mailbox/m1");
    let first = j.append(&s, ExpectedSeq::NoStream, events("a", 2)).unwrap();
    assert_eq!((first.first_seq, first.last_seq), (1, 2));

    // NoStream on a non-empty stream.
    match j.append(&s, ExpectedSeq::NoStream, events("b", 1)) {
        Err(AppendError::Conflict {
            stream,
            expected: ExpectedSeq::NoStream,
            actual: 2,
        }) => assert_eq!(stream, s),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // A stale Exactly, and one from the future.
    for stale in [0, 1, 3] {
        let err = j
            .append(&s, ExpectedSeq::Exactly(stale), events("c", 1))
            .unwrap_err();
        assert!(
            matches!(err, AppendError::Conflict { actual: 2, expected: ExpectedSeq::Exactly(n), .. } if n == stale),
            "{err}"
        );
        assert!(err.to_string().contains("mailbox/m1"), "{err}");
    }
    // Nothing was written by the refused appends.
    assert_eq!(j.last_position().unwrap(), 2);
    assert_eq!(j.stream_head(&s).unwrap(), 2);
    // The right expectation succeeds and numbering has no gap.
    let ok = j
        .append(&s, ExpectedSeq::Exactly(2), events("d", 1))
        .unwrap();
    assert_eq!((ok.first_seq, ok.first_position), (3, 3));
    // Exactly(0) is NoStream.
    let other = stream("mailbox/m2");
    assert!(
        j.append(&other, ExpectedSeq::Exactly(0), events("e", 1))
            .is_ok()
    );
    assert_eq!(j.commit_stats().conflicts, 4);

    // Invalid appends are refused before the queue.
    assert!(matches!(
        j.append(&s, ExpectedSeq::Any, vec![]),
        Err(AppendError::Invalid { .. })
    ));
    assert!(matches!(
        j.append(&stream(""), ExpectedSeq::Any, events("f", 1)),
        Err(AppendError::Invalid { .. })
    ));
    assert_eq!(j.last_position().unwrap(), 4);
}

fn conflict_inside_a_group_commit_spoils_nothing(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let j = open_ok(tmp.path(), backend);
    let (x, y) = (stream("mailbox/x"), stream("mailbox/y"));
    let mut grouped = false;
    for attempt in 0..8 {
        let before = j.commit_stats();
        let x_head = j.stream_head(&x).unwrap();
        let y_head = j.stream_head(&y).unwrap();
        let pos = j.last_position().unwrap();
        // A large append keeps the writer busy while the mix below queues up behind it.
        let filler = j.submit(
            &stream("mailbox/filler"),
            ExpectedSeq::Any,
            events("big", 2000),
        );
        let good1 = j.submit(&x, ExpectedSeq::Exactly(x_head), events("g1", 2));
        let stale = j.submit(&x, ExpectedSeq::Exactly(x_head), events("stale", 3));
        let nostream = j.submit(&x, ExpectedSeq::NoStream, events("ns", 1));
        let good2 = j.submit(&x, ExpectedSeq::Exactly(x_head + 2), events("g2", 1));
        let good3 = j.submit(&y, ExpectedSeq::Exactly(y_head), events("g3", 2));

        let f = filler.wait().unwrap();
        let g1 = good1.wait().unwrap();
        assert_eq!((g1.first_seq, g1.last_seq), (x_head + 1, x_head + 2));
        assert_eq!(g1.first_position, f.last_position + 1);
        assert!(matches!(
            stale.wait(),
            Err(AppendError::Conflict { actual, .. }) if actual == x_head + 2
        ));
        assert!(matches!(nostream.wait(), Err(AppendError::Conflict { .. })));
        let g2 = good2.wait().unwrap();
        assert_eq!(
            (g2.first_seq, g2.first_position),
            (x_head + 3, g1.last_position + 1)
        );
        let g3 = good3.wait().unwrap();
        assert_eq!(
            (g3.first_seq, g3.first_position),
            (y_head + 1, g2.last_position + 1)
        );
        assert_eq!(j.last_position().unwrap(), pos + 2000 + 5);

        // The refused appends left no trace: x holds exactly g1 and g2.
        let xs = j.read_stream(&x, x_head + 1, 10).unwrap();
        let payloads: Vec<_> = xs.iter().map(|e| e.payload.clone()).collect();
        assert_eq!(
            payloads,
            vec![b"g1-0".to_vec(), b"g1-1".to_vec(), b"g2-0".to_vec()]
        );

        let after = j.commit_stats();
        assert_eq!(after.conflicts - before.conflicts, 2);
        // Five appends in at most two commits: the mix shared a commit with its conflicts.
        if after.commits - before.commits <= 2 {
            grouped = true;
            eprintln!("{backend}: the mix was group-committed at attempt {attempt}");
            break;
        }
    }
    assert!(grouped, "the appends were never grouped into one commit");
}

fn concurrent_appends_from_16_threads(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let j = open_ok(tmp.path(), backend);
    const THREADS: usize = 16;
    const APPENDS: usize = 40;
    let shared = stream("org/shared");
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let j = Arc::clone(&j);
            let shared = shared.clone();
            std::thread::spawn(move || {
                let own = stream(&format!("mailbox/t{t}"));
                let mut mine = Vec::new();
                let mut own_head = 0;
                for i in 0..APPENDS {
                    let n = 1 + (t * 7 + i * 3) % 5;
                    let evs = events(&format!("t{t}-a{i}"), n);
                    let ids: Vec<EventId> = evs.iter().map(|e| e.event_id).collect();
                    // Even threads share one stream; odd threads append to their own with
                    // an exact expectation, half of them through an awaited ticket.
                    let (s, got) = if t % 2 == 0 {
                        let got = j.append(&shared, ExpectedSeq::Any, evs).unwrap();
                        (shared.clone(), got)
                    } else {
                        let ticket = j.submit(&own, ExpectedSeq::Exactly(own_head), evs);
                        let got = if i % 2 == 0 {
                            block_on(ticket)
                        } else {
                            ticket.wait()
                        }
                        .unwrap();
                        own_head = got.last_seq;
                        (own.clone(), got)
                    };
                    assert_eq!(got.last_seq - got.first_seq + 1, n as u64);
                    assert_eq!(got.last_position - got.first_position + 1, n as u64);
                    mine.push((s, got, ids));
                }
                mine
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();

    let all = read_everything(j.as_ref(), 500);
    let total: u64 = results
        .iter()
        .map(|(_, a, _)| a.last_position - a.first_position + 1)
        .sum();
    assert_eq!(all.len() as u64, total);
    // Positions contiguous from 1, no duplicates.
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1);
    }
    let ids: HashSet<EventId> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), all.len(), "an event was stored twice");
    // Per-stream seqs contiguous from 1.
    let mut heads: BTreeMap<StreamId, u64> = BTreeMap::new();
    for e in &all {
        let h = heads.entry(e.stream.clone()).or_default();
        assert_eq!(
            e.seq,
            *h + 1,
            "gap in {} at position {}",
            e.stream,
            e.position
        );
        *h += 1;
    }
    assert_eq!(j.streams().unwrap(), heads.into_iter().collect::<Vec<_>>());
    // Every acknowledged append is where its ticket said, whole and in order.
    for (s, got, ids) in &results {
        let stored = &all[got.first_position as usize - 1..got.last_position as usize];
        assert!(stored.iter().all(|e| &e.stream == s));
        assert_eq!(stored.iter().map(|e| e.event_id).collect::<Vec<_>>(), *ids);
        assert_eq!(stored[0].seq, got.first_seq);
    }
    let stats = j.commit_stats();
    assert_eq!(stats.appends, (THREADS * APPENDS) as u64);
    assert_eq!(stats.events, total);
    eprintln!(
        "{backend}: {} appends in {} commits ({:.1} events per commit)",
        stats.appends,
        stats.commits,
        stats.mean_events_per_commit()
    );
}

fn item_index_and_subject_search(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let j = open_ok(tmp.path(), backend);
    let m1 = stream("mailbox/m1");
    let m2 = stream("mailbox/m2");
    j.append(
        &m1,
        ExpectedSeq::Any,
        vec![
            event(
                b"1",
                vec![
                    crm("appt-1"),
                    remote("cal/1.ics"),
                    subject("Quarterly Review"),
                ],
            ),
            event(b"2", vec![remote("cal/2.ics")]),
        ],
    )
    .unwrap();
    j.append(
        &m2,
        ExpectedSeq::Any,
        vec![
            event(b"3", vec![crm("appt-1"), subject("quarterly REVIEW")]),
            event(b"4", vec![crm("appt-1"), crm("appt-1"), subject("Lunch")]),
        ],
    )
    .unwrap();
    j.append(
        &m1,
        ExpectedSeq::Any,
        vec![event(b"5", vec![remote("cal/1.ics")])],
    )
    .unwrap();

    assert_eq!(j.positions_for_item(&crm("appt-1")).unwrap(), vec![1, 3, 4]);
    assert_eq!(
        j.positions_for_item(&remote("cal/1.ics")).unwrap(),
        vec![1, 5]
    );
    assert_eq!(j.positions_for_item(&remote("cal/2.ics")).unwrap(), vec![2]);
    assert!(j.positions_for_item(&crm("nothing")).unwrap().is_empty());
    // A key that is a prefix of another key is its own key.
    assert!(j.positions_for_item(&remote("cal/1")).unwrap().is_empty());
    // The subject key is the lowercase subject.
    assert_eq!(
        j.positions_for_item(&subject("QUARTERLY review")).unwrap(),
        vec![1, 3]
    );
    let hits = j
        .read_positions(&j.positions_for_item(&crm("appt-1")).unwrap())
        .unwrap();
    assert_eq!(
        hits.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(),
        vec![b"1".to_vec(), b"3".to_vec(), b"4".to_vec()]
    );

    assert_eq!(
        j.search_subjects("REVIEW", 10).unwrap(),
        vec!["quarterly review"]
    );
    assert_eq!(
        j.search_subjects("u", 10).unwrap(),
        vec!["lunch", "quarterly review"]
    );
    assert_eq!(j.search_subjects("u", 1).unwrap(), vec!["lunch"]);
    assert_eq!(j.search_subjects("", 10).unwrap().len(), 2);
    assert!(j.search_subjects("dinner", 10).unwrap().is_empty());
    assert!(j.search_subjects("u", 0).unwrap().is_empty());
}

/// Enough events to fold redb's item tail into its index several times (it folds every 4096
/// positions), some without items, with a reopen in between: lookups stay exact and ascending
/// whether a position is folded or still in the tail.
fn item_index_across_folds(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let key = |i: u64| crm(&format!("row-{}", i % 7));
    let mut expected: Vec<Vec<u64>> = vec![Vec::new(); 7];
    let mut position = 0u64;
    for round in 0..2 {
        let j = open_ok(tmp.path(), backend);
        for a in 0..70u64 {
            let batch: Vec<_> = (0..100u64)
                .map(|k| {
                    position += 1;
                    // Every third event has no item, one in ten has the same key twice.
                    let items = match position % 10 {
                        0 => vec![key(position), key(position)],
                        3 | 6 | 9 => vec![],
                        _ => vec![key(position), remote(&format!("r/{position}"))],
                    };
                    if !items.is_empty() {
                        expected[(position % 7) as usize].push(position);
                    }
                    event(format!("{round}-{a}-{k}").as_bytes(), items)
                })
                .collect();
            j.append(
                &stream(&format!("mailbox/{}", a % 5)),
                ExpectedSeq::Any,
                batch,
            )
            .unwrap();
        }
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(
                &j.positions_for_item(&key(i as u64)).unwrap(),
                want,
                "key {i}"
            );
        }
        assert_eq!(j.positions_for_item(&remote("r/1")).unwrap(), vec![1]);
        assert_eq!(
            j.positions_for_item(&remote(&format!("r/{}", position - 2)))
                .unwrap(),
            vec![position - 2]
        );
        assert!(j.positions_for_item(&remote("r/3")).unwrap().is_empty());
    }
    // A subject folded into the index and one still in the tail are both found by the subject
    // search, once each.
    let j = open_ok(tmp.path(), backend);
    let one = |text: &str, items| vec![event(text.as_bytes(), items)];
    let s = stream("mailbox/subjects");
    j.append(&s, ExpectedSeq::Any, one("a", vec![subject("Review A")]))
        .unwrap();
    for k in 0..45u64 {
        let batch = (0..100u64)
            .map(|i| event(b"x", vec![remote(&format!("x/{k}/{i}"))]))
            .collect();
        j.append(&s, ExpectedSeq::Any, batch).unwrap();
    }
    j.append(&s, ExpectedSeq::Any, one("b", vec![subject("Review B")]))
        .unwrap();
    j.append(&s, ExpectedSeq::Any, one("c", vec![subject("Review A")]))
        .unwrap();
    assert_eq!(
        j.search_subjects("review", 10).unwrap(),
        vec!["review a", "review b"]
    );
    assert_eq!(j.search_subjects("review", 1).unwrap(), vec!["review a"]);
}

fn snapshots(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let s = stream("mailbox/m1");
    {
        let j = open_ok(tmp.path(), backend);
        assert_eq!(j.load_snapshot(&s).unwrap(), None);
        j.append(&s, ExpectedSeq::Any, events("e", 3)).unwrap();
        let snap = Snapshot {
            seq: 2,
            bytes: b"state at 2".to_vec(),
        };
        j.save_snapshot(&s, snap.clone()).unwrap();
        assert_eq!(j.load_snapshot(&s).unwrap(), Some(snap));
        let newer = Snapshot {
            seq: 3,
            bytes: vec![],
        };
        j.save_snapshot(&s, newer.clone()).unwrap();
        assert_eq!(j.load_snapshot(&s).unwrap(), Some(newer));
        match j.save_snapshot(
            &s,
            Snapshot {
                seq: 4,
                bytes: vec![1],
            },
        ) {
            Err(AppendError::SnapshotAhead {
                seq: 4, head: 3, ..
            }) => {}
            other => panic!("expected SnapshotAhead, got {other:?}"),
        }
        assert!(matches!(
            j.save_snapshot(
                &stream("mailbox/none"),
                Snapshot {
                    seq: 1,
                    bytes: vec![]
                }
            ),
            Err(AppendError::SnapshotAhead { head: 0, .. })
        ));
        assert_eq!(j.load_snapshot(&stream("mailbox/none")).unwrap(), None);
        j.save_snapshot(
            &s,
            Snapshot {
                seq: 1,
                bytes: vec![9; 5000],
            },
        )
        .unwrap();
    }
    let j = open_ok(tmp.path(), backend);
    assert_eq!(
        j.load_snapshot(&s).unwrap(),
        Some(Snapshot {
            seq: 1,
            bytes: vec![9; 5000]
        })
    );
}

fn reopen_keeps_everything_and_continues_numbering(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (stream("mailbox/a"), stream("mailbox/b"));
    let before: Vec<Envelope>;
    {
        let j = open_ok(tmp.path(), backend);
        j.append(
            &a,
            ExpectedSeq::NoStream,
            vec![event(b"a1", vec![crm("r1")])],
        )
        .unwrap();
        j.append(&b, ExpectedSeq::NoStream, events("b", 2)).unwrap();
        j.append(&a, ExpectedSeq::Exactly(1), events("a", 2))
            .unwrap();
        before = read_everything(j.as_ref(), 2);
        // Appends still queued when the journal is dropped are finished first.
        let last = j.submit(
            &b,
            ExpectedSeq::Exactly(2),
            vec![event(b"b3", vec![subject("Hello")])],
        );
        drop(j);
        assert_eq!(last.wait().unwrap().last_position, 6);
    }
    let j = open_ok(tmp.path(), backend);
    let after = read_everything(j.as_ref(), 100);
    assert_eq!(after.len(), 6);
    assert_eq!(&after[..5], &before[..]);
    assert_eq!(j.last_position().unwrap(), 6);
    assert_eq!(j.stream_head(&a).unwrap(), 3);
    assert_eq!(j.stream_head(&b).unwrap(), 3);
    assert_eq!(j.positions_for_item(&crm("r1")).unwrap(), vec![1]);
    assert_eq!(j.search_subjects("hell", 5).unwrap(), vec!["hello"]);
    // The cached heads start from the store: stale expectations still conflict after reopen.
    assert!(matches!(
        j.append(&a, ExpectedSeq::Exactly(1), events("x", 1)),
        Err(AppendError::Conflict { actual: 3, .. })
    ));
    let next = j
        .append(
            &a,
            ExpectedSeq::Exactly(3),
            vec![event(b"a4", vec![crm("r1")])],
        )
        .unwrap();
    assert_eq!(
        next,
        Appended {
            first_seq: 4,
            last_seq: 4,
            first_position: 7,
            last_position: 7
        }
    );
    assert_eq!(j.positions_for_item(&crm("r1")).unwrap(), vec![1, 7]);
    assert_eq!(j.streams().unwrap(), vec![(a, 4), (b, 3)]);
}

fn rewrite_marker(dir: &Path, text: &str) {
    std::fs::write(dir.join("LEDGERSYNC-JOURNAL"), text).unwrap();
}

fn format_marker_mismatch(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    drop(open_ok(tmp.path(), backend));
    assert_eq!(
        ledgersync_journal::detect_backend(tmp.path()).unwrap(),
        backend
    );
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        ledgersync_journal::detect_backend(empty.path()),
        Err(OpenError::NoJournal { .. })
    ));
    let marker = std::fs::read_to_string(tmp.path().join("LEDGERSYNC-JOURNAL")).unwrap();
    assert!(marker.contains("format=3"), "{marker}");
    assert!(marker.contains(&format!("backend={backend}")), "{marker}");

    // Formats 1 and 2 differ only by redb's item index (no tail, no runs): they open, and are
    // marked 3.
    for older in ["format=1", "format=2"] {
        rewrite_marker(tmp.path(), &marker.replace("format=3", older));
        drop(open_ok(tmp.path(), backend));
        let upgraded = std::fs::read_to_string(tmp.path().join("LEDGERSYNC-JOURNAL")).unwrap();
        assert!(upgraded.contains("format=3"), "{older}: {upgraded}");
    }

    rewrite_marker(tmp.path(), &marker.replace("format=3", "format=4"));
    match open_dir(tmp.path(), backend) {
        Err(
            e @ OpenError::VersionMismatch {
                found: 4,
                expected: 3,
                ..
            },
        ) => {
            let text = e.to_string();
            assert!(text.contains(&tmp.path().display().to_string()), "{text}");
            assert!(
                text.contains("version 4") && text.contains("versions 1 to 3"),
                "{text}"
            );
        }
        other => panic!("expected VersionMismatch, got {:?}", other.err()),
    }
    rewrite_marker(tmp.path(), "this is not a marker\n");
    assert!(matches!(
        open_dir(tmp.path(), backend).err(),
        Some(OpenError::BadMarker { .. })
    ));
    // Restoring the marker restores the journal.
    rewrite_marker(tmp.path(), &marker);
    open_ok(tmp.path(), backend);
}

fn backend_mismatch(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let other = match backend {
        Backend::Redb => Backend::Sled,
        Backend::Sled => Backend::Redb,
    };
    let j = open_ok(tmp.path(), backend);
    j.append(&stream("mailbox/a"), ExpectedSeq::Any, events("a", 1))
        .unwrap();
    drop(j);
    match open_dir(tmp.path(), other) {
        Err(e @ OpenError::BackendMismatch { .. }) => {
            let OpenError::BackendMismatch {
                found, requested, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((*found, *requested), (backend, other));
            let text = e.to_string();
            assert!(
                text.contains(&format!("select the {backend} backend")),
                "{text}"
            );
        }
        other => panic!("expected BackendMismatch, got {:?}", other.err()),
    }
    // The refused open changed nothing.
    assert_eq!(open_ok(tmp.path(), backend).last_position().unwrap(), 1);
}

fn not_a_journal(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    match open_dir(tmp.path(), backend) {
        Err(e @ OpenError::NotAJournal { .. }) => {
            assert!(e.to_string().contains("notes.txt"), "{e}");
        }
        other => panic!("expected NotAJournal, got {:?}", other.err()),
    }
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec!["notes.txt"],
        "a refused open must not write into the directory"
    );
    // A missing directory is created.
    let nested = tmp.path().join("a/b/journal");
    open_ok(&nested, backend);
    assert!(nested.join("LEDGERSYNC-JOURNAL").exists());
}

fn lock_held_in_this_process(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let j = open_ok(tmp.path(), backend);
    for requested in [Backend::Redb, Backend::Sled] {
        match open_dir(tmp.path(), requested) {
            Err(OpenError::Locked { holder_pid, .. }) if requested == backend => {
                assert_eq!(holder_pid, Some(std::process::id()));
            }
            // Asking for the other backend is refused before the lock is tried.
            Err(OpenError::BackendMismatch { .. }) if requested != backend => {}
            other => panic!("expected Locked, got {:?}", other.err()),
        }
    }
    j.append(&stream("mailbox/a"), ExpectedSeq::Any, events("a", 1))
        .unwrap();
    drop(j);
    assert_eq!(open_ok(tmp.path(), backend).last_position().unwrap(), 1);
}

fn lock_held_by_another_process(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_journal-crash-writer"))
        .args([
            "--backend",
            backend.as_str(),
            "--run",
            "1",
            "--threads",
            "1",
            "--dir",
        ])
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("OPEN "), "{first}");
    // Wait for one acknowledged append, so that the child is busy writing.
    let ack = lines.next().unwrap().unwrap();
    assert!(ack.starts_with("ACK "), "{ack}");
    let result = open_dir(tmp.path(), backend);
    child.kill().unwrap();
    child.wait().unwrap();
    match result {
        Err(e @ OpenError::Locked { .. }) => {
            let OpenError::Locked { holder_pid, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*holder_pid, Some(child.id()));
            let text = e.to_string();
            assert!(text.contains(&format!("process {}", child.id())), "{text}");
            assert!(text.contains("stop the other ledgersync process"), "{text}");
        }
        other => panic!("expected Locked, got {:?}", other.err()),
    }
    // Once the holder is dead the lock is free (the kernel releases it with the process).
    let j = open_ok(tmp.path(), backend);
    assert!(j.last_position().unwrap() > 0);
}

/// Opens the sled database of a closed journal directly. Like the journal's own open, waits for
/// sled's file lock, which sled releases a little after the journal that held it was dropped.
fn open_sled_raw(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(dir.join("sled")) {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            other => return other.unwrap(),
        }
    }
}

/// Flips one byte of the stored value of `position`, through the backend's own API, with the
/// journal closed. The table layout is the one in docs/journal-storage.md.
fn damage_record(dir: &Path, backend: Backend, position: u64, byte: usize) {
    match backend {
        Backend::Redb => {
            const EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
            let db = redb::Database::open(dir.join("journal.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut events = tx.open_table(EVENTS).unwrap();
                let mut value = events.get(position).unwrap().unwrap().value().to_vec();
                value[byte] ^= 0x40;
                events.insert(position, value.as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        Backend::Sled => {
            let db = open_sled_raw(dir);
            let events = db.open_tree("events").unwrap();
            let key = position.to_be_bytes();
            let mut value = events.get(key).unwrap().unwrap().to_vec();
            value[byte] ^= 0x40;
            events.insert(key, value).unwrap();
            db.flush().unwrap();
        }
    }
}

fn damage_snapshot(dir: &Path, backend: Backend, stream: &str) {
    match backend {
        Backend::Redb => {
            const SNAPSHOTS: redb::TableDefinition<&str, &[u8]> =
                redb::TableDefinition::new("snapshots");
            let db = redb::Database::open(dir.join("journal.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(SNAPSHOTS).unwrap();
                let mut value = t.get(stream).unwrap().unwrap().value().to_vec();
                *value.last_mut().unwrap() ^= 1;
                t.insert(stream, value.as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        Backend::Sled => {
            let db = open_sled_raw(dir);
            let t = db.open_tree("snapshots").unwrap();
            let mut value = t.get(stream).unwrap().unwrap().to_vec();
            *value.last_mut().unwrap() ^= 1;
            t.insert(stream, value).unwrap();
            db.flush().unwrap();
        }
    }
}

fn corruption_is_detected(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let s = stream("mailbox/a");
    {
        let j = open_ok(tmp.path(), backend);
        j.append(&s, ExpectedSeq::Any, events("e", 4)).unwrap();
        j.save_snapshot(
            &s,
            Snapshot {
                seq: 2,
                bytes: b"state".to_vec(),
            },
        )
        .unwrap();
    }
    // Byte 12 is inside the envelope; byte 1 is inside the CRC.
    damage_record(tmp.path(), backend, 2, 12);
    damage_record(tmp.path(), backend, 4, 1);
    damage_snapshot(tmp.path(), backend, "mailbox/a");

    let j = open_ok(tmp.path(), backend);
    let file = match backend {
        Backend::Redb => "journal.redb",
        Backend::Sled => "sled",
    };
    let check = |r: Result<Vec<Envelope>, ReadError>, position: u64| match r {
        Err(e @ ReadError::Corrupt { .. }) => {
            let ReadError::Corrupt {
                position: p,
                path,
                detail,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(*p, position);
            assert!(path.ends_with(file), "{}", path.display());
            assert!(detail.contains("CRC32"), "{detail}");
            let text = e.to_string();
            assert!(text.contains(&format!("position {position}")), "{text}");
            assert!(text.contains("restore it from your last backup"), "{text}");
        }
        other => panic!("expected Corrupt at {position}, got {other:?}"),
    };
    check(j.read_all(1, 10), 2);
    check(j.read_positions(&[1, 2]), 2);
    check(j.read_stream(&s, 1, 10), 2);
    check(j.read_positions(&[4]), 4);
    check(j.read_all(3, 10), 4);
    // The intact records around them still read.
    assert_eq!(j.read_all(1, 1).unwrap()[0].payload, b"e-0");
    assert_eq!(j.read_positions(&[3]).unwrap()[0].payload, b"e-2");
    match j.load_snapshot(&s) {
        Err(e @ ReadError::CorruptSnapshot { .. }) => {
            assert!(e.to_string().contains("replay the stream"), "{e}")
        }
        other => panic!("expected CorruptSnapshot, got {other:?}"),
    }
}

macro_rules! conformance_suite {
    ($($case:ident),* $(,)?) => {
        mod redb_backend {
            $(#[test] fn $case() { super::$case(super::Backend::Redb) })*
        }
        mod sled_backend {
            $(#[test] fn $case() { super::$case(super::Backend::Sled) })*
        }
    };
}

conformance_suite!(
    append_and_read_back,
    expected_seq_conflicts,
    conflict_inside_a_group_commit_spoils_nothing,
    concurrent_appends_from_16_threads,
    item_index_and_subject_search,
    item_index_across_folds,
    snapshots,
    reopen_keeps_everything_and_continues_numbering,
    format_marker_mismatch,
    backend_mismatch,
    not_a_journal,
    lock_held_in_this_process,
    lock_held_by_another_process,
    corruption_is_detected,
);
