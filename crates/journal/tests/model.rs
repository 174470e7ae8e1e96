//! Property test: a random sequence of appends (blocking and pipelined), reads, index lookups,
//! snapshots and reopens gives the same answers as a simple in-memory model, on each backend.

mod common;

use common::{crm, event, open_ok, subject};
use ledgersync_domain::{ItemKey, StreamId};
use ledgersync_journal::{AppendError, Backend, ExpectedSeq, Journal, Snapshot};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

const STREAMS: [&str; 3] = ["mailbox/a", "mailbox/b", "org/o"];
const SUBJECTS: [&str; 3] = ["Weekly Sync", "weekly review", "Budget"];

#[derive(Clone, Debug)]
enum Expect {
    Any,
    NoStream,
    Right,
    Stale,
}

#[derive(Clone, Debug)]
struct AppendSpec {
    stream: usize,
    expect: Expect,
    sizes: Vec<(Option<usize>, Option<usize>)>,
}

#[derive(Clone, Debug)]
enum Op {
    Append(AppendSpec),
    /// Several appends submitted back to back, then waited for in order.
    Pipeline(Vec<AppendSpec>),
    ReadStream {
        stream: usize,
        from: u64,
        max: usize,
    },
    ReadAll {
        from: u64,
        max: usize,
    },
    Item(usize),
    Search(&'static str),
    Snapshot {
        stream: usize,
        back: u64,
    },
    Reopen,
}

fn append_spec() -> impl Strategy<Value = AppendSpec> {
    (
        0..STREAMS.len(),
        prop_oneof![
            Just(Expect::Any),
            Just(Expect::NoStream),
            Just(Expect::Right),
            Just(Expect::Stale)
        ],
        prop::collection::vec(
            (
                prop::option::of(0..3usize),
                prop::option::of(0..SUBJECTS.len()),
            ),
            1..4,
        ),
    )
        .prop_map(|(stream, expect, sizes)| AppendSpec {
            stream,
            expect,
            sizes,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => append_spec().prop_map(Op::Append),
        2 => prop::collection::vec(append_spec(), 2..5).prop_map(Op::Pipeline),
        2 => (0..STREAMS.len(), 0..8u64, 0..5usize)
            .prop_map(|(stream, from, max)| Op::ReadStream { stream, from, max }),
        2 => (0..20u64, 0..6usize).prop_map(|(from, max)| Op::ReadAll { from, max }),
        1 => (0..3usize).prop_map(Op::Item),
        1 => prop_oneof![Just("WEEKLY"), Just("re"), Just("x")].prop_map(Op::Search),
        1 => (0..STREAMS.len(), 0..3u64).prop_map(|(stream, back)| Op::Snapshot { stream, back }),
        1 => Just(Op::Reopen),
    ]
}

/// What the model remembers of each event.
#[derive(Clone, Debug, PartialEq)]
struct ModelEvent {
    stream: usize,
    seq: u64,
    payload: Vec<u8>,
    items: Vec<ItemKey>,
}

#[derive(Default)]
struct Model {
    events: Vec<ModelEvent>,
    heads: [u64; 3],
    snapshots: BTreeMap<usize, Snapshot>,
    counter: u64,
}

impl Model {
    fn expected(&self, spec: &AppendSpec) -> ExpectedSeq {
        let head = self.heads[spec.stream];
        match spec.expect {
            Expect::Any => ExpectedSeq::Any,
            Expect::NoStream => ExpectedSeq::NoStream,
            Expect::Right => ExpectedSeq::Exactly(head),
            Expect::Stale => ExpectedSeq::Exactly(head + 1),
        }
    }

    /// The events of an append, with the model's view of them.
    fn build(&mut self, spec: &AppendSpec) -> (Vec<ledgersync_domain::NewEvent>, Vec<ModelEvent>) {
        spec.sizes
            .iter()
            .map(|(item, subj)| {
                self.counter += 1;
                let payload = format!("p{}", self.counter).into_bytes();
                let mut items = Vec::new();
                if let Some(i) = item {
                    items.push(crm(&format!("r{i}")));
                }
                if let Some(s) = subj {
                    items.push(subject(SUBJECTS[*s]));
                }
                let model = ModelEvent {
                    stream: spec.stream,
                    seq: 0,
                    payload: payload.clone(),
                    items: items.clone(),
                };
                (event(&payload, items), model)
            })
            .unzip()
    }

    /// Applies an append the way the journal must; returns the expected outcome.
    fn apply(
        &mut self,
        spec: &AppendSpec,
        expected: ExpectedSeq,
        mut evs: Vec<ModelEvent>,
    ) -> Result<(u64, u64, u64, u64), u64> {
        let head = self.heads[spec.stream];
        if !expected.accepts(head) {
            return Err(head);
        }
        let first_position = self.events.len() as u64 + 1;
        for (i, e) in evs.iter_mut().enumerate() {
            e.seq = head + 1 + i as u64;
        }
        let n = evs.len() as u64;
        self.events.extend(evs);
        self.heads[spec.stream] = head + n;
        Ok((head + 1, head + n, first_position, first_position + n - 1))
    }
}

fn check_outcome(
    got: Result<ledgersync_journal::Appended, AppendError>,
    want: Result<(u64, u64, u64, u64), u64>,
) -> Result<(), TestCaseError> {
    match (got, want) {
        (Ok(a), Ok(w)) => {
            prop_assert_eq!(
                (a.first_seq, a.last_seq, a.first_position, a.last_position),
                w
            )
        }
        (Err(AppendError::Conflict { actual, .. }), Err(head)) => prop_assert_eq!(actual, head),
        (got, want) => prop_assert!(false, "journal said {:?}, model says {:?}", got, want),
    }
    Ok(())
}

fn same_events(
    got: &[ledgersync_domain::Envelope],
    want: &[(u64, &ModelEvent)],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (g, (position, w)) in got.iter().zip(want) {
        prop_assert_eq!(g.position, *position);
        prop_assert_eq!(g.stream.as_str(), STREAMS[w.stream]);
        prop_assert_eq!(g.seq, w.seq);
        prop_assert_eq!(&g.payload, &w.payload);
    }
    Ok(())
}

fn run(backend: Backend, dir: &Path, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut j: Arc<dyn Journal> = open_ok(dir, backend);
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Append(spec) => {
                let expected = m.expected(&spec);
                let (evs, model) = m.build(&spec);
                let got = j.append(&StreamId(STREAMS[spec.stream].into()), expected, evs);
                check_outcome(got, m.apply(&spec, expected, model))?;
            }
            Op::Pipeline(specs) => {
                // Expectations are computed from the model *before* the pipeline, as a caller
                // that does not wait would; the journal must process them in queue order.
                let mut tickets = Vec::new();
                let mut planned = Vec::new();
                for spec in &specs {
                    let expected = m.expected(spec);
                    let (evs, model) = m.build(spec);
                    tickets.push(j.submit(&StreamId(STREAMS[spec.stream].into()), expected, evs));
                    planned.push((expected, model));
                }
                for ((spec, (expected, model)), ticket) in specs.iter().zip(planned).zip(tickets) {
                    check_outcome(ticket.wait(), m.apply(spec, expected, model))?;
                }
            }
            Op::ReadStream { stream, from, max } => {
                let got = j
                    .read_stream(&StreamId(STREAMS[stream].into()), from, max)
                    .unwrap();
                let want: Vec<(u64, &ModelEvent)> = m
                    .events
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.stream == stream && e.seq >= from)
                    .map(|(i, e)| (i as u64 + 1, e))
                    .take(max)
                    .collect();
                same_events(&got, &want)?;
                prop_assert_eq!(
                    j.stream_head(&StreamId(STREAMS[stream].into())).unwrap(),
                    m.heads[stream]
                );
            }
            Op::ReadAll { from, max } => {
                let got = j.read_all(from, max).unwrap();
                let want: Vec<(u64, &ModelEvent)> = m
                    .events
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (i as u64 + 1, e))
                    .filter(|(p, _)| *p >= from)
                    .take(max)
                    .collect();
                same_events(&got, &want)?;
                prop_assert_eq!(j.last_position().unwrap(), m.events.len() as u64);
            }
            Op::Item(i) => {
                let key = crm(&format!("r{i}"));
                let want: Vec<u64> = m
                    .events
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.items.contains(&key))
                    .map(|(p, _)| p as u64 + 1)
                    .collect();
                prop_assert_eq!(j.positions_for_item(&key).unwrap(), want);
            }
            Op::Search(needle) => {
                let mut want: Vec<String> = m
                    .events
                    .iter()
                    .flat_map(|e| e.items.iter())
                    .filter_map(|k| match k {
                        ItemKey::Subject(s) => Some(s.to_lowercase()),
                        _ => None,
                    })
                    .filter(|s| s.contains(&needle.to_lowercase()))
                    .collect();
                want.sort();
                want.dedup();
                prop_assert_eq!(j.search_subjects(needle, 10).unwrap(), want);
            }
            Op::Snapshot { stream, back } => {
                let s = StreamId(STREAMS[stream].into());
                let seq = m.heads[stream].saturating_sub(back);
                let snap = Snapshot {
                    seq,
                    bytes: format!("state {seq}").into_bytes(),
                };
                j.save_snapshot(&s, snap.clone()).unwrap();
                m.snapshots.insert(stream, snap);
                for (k, name) in STREAMS.iter().enumerate() {
                    prop_assert_eq!(
                        j.load_snapshot(&StreamId((*name).into())).unwrap(),
                        m.snapshots.get(&k).cloned()
                    );
                }
            }
            Op::Reopen => {
                drop(j);
                j = open_ok(dir, backend);
            }
        }
    }
    let heads: Vec<(StreamId, u64)> = (0..STREAMS.len())
        .filter(|&k| m.heads[k] > 0)
        .map(|k| (StreamId(STREAMS[k].into()), m.heads[k]))
        .collect();
    prop_assert_eq!(j.streams().unwrap(), heads);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn redb_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let tmp = tempfile::tempdir().unwrap();
        run(Backend::Redb, tmp.path(), ops)?;
    }

    #[test]
    fn sled_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let tmp = tempfile::tempdir().unwrap();
        run(Backend::Sled, tmp.path(), ops)?;
    }
}
