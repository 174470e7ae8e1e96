//! A journal written by an earlier format opens in this build and reads back exactly.
//!
//! `fixtures/format1-redb/` is a redb journal of format 1 written by the release before format
//! 2 (`make_fixture.rs.txt` beside it, run from that release): 12 events, `mailbox/a` and
//! `mailbox/b` with 6 each, items on every event, a snapshot of `mailbox/a` at seq 4.

mod common;

use common::{crm, event, open_ok, read_everything, remote, stream, subject};
use ledgersync_journal::{AppendError, Backend, ExpectedSeq};
use std::path::Path;

fn copy_fixture(name: &str, to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    for file in ["LEDGERSYNC-JOURNAL", "journal.redb"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

#[test]
fn format1_redb_journal_opens_reads_and_continues() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("format1-redb", tmp.path());
    let (a, b) = (stream("mailbox/a"), stream("mailbox/b"));
    {
        let j = open_ok(tmp.path(), Backend::Redb);
        let marker = std::fs::read_to_string(tmp.path().join("LEDGERSYNC-JOURNAL")).unwrap();
        assert!(marker.contains("format=3"), "{marker}");

        // Heads come from the stream index now; format 1's heads table is gone.
        assert_eq!(j.streams().unwrap(), vec![(a.clone(), 6), (b.clone(), 6)]);
        assert_eq!(j.stream_head(&a).unwrap(), 6);
        let all = read_everything(j.as_ref(), 5);
        assert_eq!(all.len(), 12);
        for (n, e) in (1u64..).zip(&all) {
            assert_eq!(e.position, n);
            assert_eq!(e.payload, format!("fixture-{n}").into_bytes());
        }
        let a_positions: Vec<u64> = j
            .read_stream(&a, 1, 100)
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        assert_eq!(a_positions, vec![1, 2, 6, 7, 11, 12]);

        // The format 1 item index is read as the frozen oldest part of format 3's.
        assert_eq!(
            j.positions_for_item(&crm("row-0")).unwrap(),
            vec![3, 6, 9, 12]
        );
        assert_eq!(j.positions_for_item(&remote("cal/8.ics")).unwrap(), vec![8]);
        assert_eq!(
            j.positions_for_item(&subject("Meeting 0")).unwrap(),
            vec![4, 8, 12]
        );
        assert_eq!(j.search_subjects("meet", 10).unwrap(), vec!["meeting 0"]);
        let snapshot = j.load_snapshot(&a).unwrap().unwrap();
        assert_eq!(
            (snapshot.seq, snapshot.bytes.as_slice()),
            (4, &b"state-4"[..])
        );

        // Expected sequences are checked against the derived heads.
        match j.append(&a, ExpectedSeq::Exactly(5), vec![event(b"x", vec![])]) {
            Err(AppendError::Conflict { actual: 6, .. }) => {}
            other => panic!("expected a conflict at head 6, got {other:?}"),
        }
        let appended = j
            .append(
                &a,
                ExpectedSeq::Exactly(6),
                vec![event(b"new", vec![crm("row-0")])],
            )
            .unwrap();
        assert_eq!((appended.first_seq, appended.first_position), (7, 13));
    }
    let j = open_ok(tmp.path(), Backend::Redb);
    assert_eq!(j.streams().unwrap(), vec![(a, 7), (b.clone(), 6)]);
    assert_eq!(
        j.positions_for_item(&crm("row-0")).unwrap(),
        vec![3, 6, 9, 12, 13]
    );
    // Enough new events to write the tail as runs: a lookup reads the frozen index, the runs
    // and the tail, in that order.
    let mut want = vec![3, 6, 9, 12, 13];
    for round in 0..10u64 {
        let batch = (0..1000u64)
            .map(|i| {
                let row = if i % 100 == 0 { "row-0" } else { "row-x" };
                event(
                    b"more",
                    vec![crm(row), subject(&format!("Meeting {round}"))],
                )
            })
            .collect();
        let done = j.append(&b, ExpectedSeq::Any, batch).unwrap();
        want.extend((0..10).map(|k| done.first_position + k * 100));
    }
    assert_eq!(j.positions_for_item(&crm("row-0")).unwrap(), want);
    assert_eq!(
        j.positions_for_item(&subject("Meeting 0")).unwrap()[..4],
        [4, 8, 12, 14]
    );
    assert_eq!(j.search_subjects("meeting", 20).unwrap().len(), 10);
}
