//! The mailbox actors and the registry against a real redb journal, on a manual clock.
//!
//! Every test runs inside an actix `System` (actors panic outside one). Idle times are measured
//! on the `ManualClock`, so passivation happens exactly when a test moves the clock and asks for
//! the idle check; nothing waits on wall-clock time.

use actix::{Actor, Addr, System};
use ledgersync_domain::event::*;
use ledgersync_domain::records::*;
use ledgersync_domain::{
    Duration, Event, EventId, MailboxId, OrgId, OrgSettings, ProfileId, RecordId, StreamId,
    Timestamp, UserId,
};
use ledgersync_engine::mailbox::{Incoming, MailboxCore};
use ledgersync_engine::{Clock, IdGen, ManualClock, replay};
use ledgersync_journal::{ExpectedSeq, Journal, JournalOptions};
use ledgersync_runtime::{
    InspectMailbox, ObserveMailbox, PassivateIdle, Registry, RegistryConfig, RuntimeStats,
    SharedSettings,
};
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

const IDLE: std::time::Duration = std::time::Duration::from_secs(120);

struct World {
    _dir: tempfile::TempDir,
    journal: Arc<dyn Journal>,
    clock: Arc<ManualClock>,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = ledgersync_journal::open(&dir.path().join("journal"), &JournalOptions::default())
        .expect("open journal");
    World {
        _dir: dir,
        journal,
        clock: Arc::new(ManualClock::new(Timestamp(1_800_000_000_000))),
    }
}

fn start(w: &World, config: RegistryConfig) -> (Addr<Registry>, Arc<RuntimeStats>) {
    start_with(w, config, Arc::new(RwLock::new(OrgSettings::default())))
}

fn start_with(
    w: &World,
    config: RegistryConfig,
    settings: SharedSettings,
) -> (Addr<Registry>, Arc<RuntimeStats>) {
    let registry = Registry::new(w.journal.clone(), w.clock.clone(), settings, config);
    let stats = registry.stats();
    (registry.start(), stats)
}

fn incoming(event: Event) -> Incoming {
    let id = IdGen.next();
    Incoming {
        event,
        id,
        causation: vec![],
        correlation: id,
    }
}

fn mailbox(n: usize) -> MailboxId {
    MailboxId::new(format!("mbx-{n}"))
}

fn user(n: usize) -> UserId {
    UserId::new(format!("user-{n}"))
}

/// The lifecycle of an enabled mailbox, as the organization routes it.
fn setup(n: usize) -> Vec<Event> {
    let m = mailbox(n);
    vec![
        Event::MailboxRegistered(MailboxRegistered {
            mailbox: m.clone(),
            org: OrgId::new("org"),
            address: format!("user-{n}@example.org"),
            profile: ProfileId::new("groupware"),
            server_type: ServerType::Groupware,
        }),
        Event::MailboxMapped(MailboxMapped {
            mailbox: m.clone(),
            user: user(n),
        }),
        Event::AddressApproved(AddressApproved {
            mailbox: m.clone(),
            approved: true,
        }),
        Event::MailboxTested(MailboxTested {
            mailbox: m,
            incoming: TestResult::Success,
            outgoing: TestResult::Success,
            act: TestResult::Success,
            act_org_marker: None,
            override_other_org: false,
        }),
    ]
}

/// A contact owned by mailbox `n`'s user.
fn contact(n: usize, k: usize, version: u64) -> Event {
    Event::RecordUpserted(RecordUpserted {
        record: Record {
            id: RecordId::new(format!("con-{n}-{k}")),
            owner: user(n),
            version,
            body: RecordBody::Contact(Contact {
                full_name: format!("Contact {k} of {n}"),
                email: format!("c{k}@customer.example"),
                phone: "+1 555 0100".into(),
                company: "Customer Inc.".into(),
                state: ContactState::Active,
            }),
        },
    })
}

async fn observe(registry: &Addr<Registry>, n: usize, event: Event) -> usize {
    registry
        .send(ObserveMailbox::new(mailbox(n), incoming(event)))
        .await
        .expect("registry alive")
        .expect("observation recorded")
        .len()
}

/// Sets a mailbox up and gives it `records` contacts; returns the decisions appended.
async fn populate(registry: &Addr<Registry>, n: usize, records: usize) -> usize {
    let mut decisions = 0;
    for e in setup(n) {
        decisions += observe(registry, n, e).await;
    }
    for k in 0..records {
        decisions += observe(registry, n, contact(n, k, 1)).await;
    }
    decisions
}

fn stream_of(journal: &dyn Journal, n: usize) -> Vec<ledgersync_domain::Envelope> {
    journal
        .read_stream(&StreamId::mailbox(&mailbox(n)), 1, 1_000_000)
        .expect("read stream")
}

/// Every observation in the stream is directly followed by exactly its decisions; returns the
/// observation ids in stream order and the number of decisions.
fn check_contiguous(journal: &dyn Journal, n: usize) -> (Vec<EventId>, usize) {
    let mut observations = Vec::new();
    let mut decisions = 0;
    let mut current: Option<EventId> = None;
    let mut ids = BTreeSet::new();
    for env in stream_of(journal, n) {
        assert!(
            ids.insert(env.event_id),
            "event {:?} recorded twice",
            env.event_id
        );
        if env.rule.is_none() {
            current = Some(env.event_id);
            observations.push(env.event_id);
        } else {
            decisions += 1;
            assert_eq!(
                env.causation,
                vec![current.expect("a decision after its observation")],
                "a decision at seq {} is not caused by the observation before it",
                env.seq
            );
        }
    }
    (observations, decisions)
}

fn replay_reproduces_everything(journal: &dyn Journal) -> u64 {
    let report = replay(journal, None, |_, _| {}).expect("replay");
    assert!(report.ok(), "replay mismatches: {:#?}", report.mismatches);
    assert_eq!(report.reproduced, report.decisions);
    report.decisions
}

async fn passivate_all(w: &World, registry: &Addr<Registry>) -> usize {
    w.clock.advance(Duration(IDLE.as_millis() as i64 + 1));
    registry.send(PassivateIdle).await.expect("registry alive")
}

#[test]
fn messages_sent_during_recovery_are_handled_in_order_after_it() {
    let w = world();
    System::new().block_on(async {
        let (registry, stats) = start(&w, RegistryConfig::default());
        populate(&registry, 1, 60).await;
        assert_eq!(passivate_all(&w, &registry).await, 1);
        let head_before = stream_of(w.journal.as_ref(), 1).len();

        // Five observations sent at once: the first activates the mailbox; the registry hands
        // all five to the new actor before the actor's recovery (60+ events) has even begun,
        // so they wait in its queue until the recovery is done.
        let sent: Vec<Incoming> = (100..105).map(|k| incoming(contact(1, k, 1))).collect();
        let requests: Vec<_> = sent
            .iter()
            .map(|i| registry.send(ObserveMailbox::new(mailbox(1), i.clone())))
            .collect();
        let mut replies = Vec::new();
        for r in requests {
            replies.push(r.await.expect("registry alive").expect("recorded"));
        }
        assert_eq!(
            stats.snapshot().activations,
            2,
            "one re-activation for all five"
        );

        let stream = stream_of(w.journal.as_ref(), 1);
        let (observations, _) = check_contiguous(w.journal.as_ref(), 1);
        let new_observations: Vec<EventId> = stream[head_before..]
            .iter()
            .filter(|e| e.rule.is_none())
            .map(|e| e.event_id)
            .collect();
        let expected: Vec<EventId> = sent.iter().map(|i| i.id).collect();
        assert_eq!(new_observations, expected, "handled in the order sent");
        assert_eq!(&observations[observations.len() - 5..], &expected[..]);
        let decided: usize = replies.iter().map(Vec::len).sum();
        assert_eq!(stream.len() - head_before, 5 + decided);
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn two_messages_to_one_mailbox_never_interleave() {
    let w = world();
    System::new().block_on(async {
        let (registry, stats) = start(&w, RegistryConfig::default());
        populate(&registry, 1, 3).await;

        // Ten observations in flight at once for one mailbox: were two handled together,
        // both would be prepared on the same head and the second append would conflict.
        let sent: Vec<Incoming> = (0..10).map(|k| incoming(contact(1, k, 2))).collect();
        let requests: Vec<_> = sent
            .iter()
            .map(|i| registry.send(ObserveMailbox::new(mailbox(1), i.clone())))
            .collect();
        let mut replies = Vec::new();
        for r in requests {
            replies.push(r.await.expect("registry alive").expect("no conflict"));
        }
        assert_eq!(stats.snapshot().failures, 0);

        // In the stream, each observation is followed by exactly the decisions its reply
        // returned, in that order, and nothing else.
        let stream = stream_of(w.journal.as_ref(), 1);
        for (incoming, decisions) in sent.iter().zip(&replies) {
            let at = stream
                .iter()
                .position(|e| e.event_id == incoming.id)
                .expect("observation recorded");
            let following: Vec<EventId> = stream[at + 1..at + 1 + decisions.len()]
                .iter()
                .map(|e| e.event_id)
                .collect();
            let replied: Vec<EventId> = decisions.iter().map(|a| a.id).collect();
            assert_eq!(following, replied);
            if let Some(next) = stream.get(at + 1 + decisions.len()) {
                assert!(next.rule.is_none(), "the next event is another observation");
            }
        }
        check_contiguous(w.journal.as_ref(), 1);
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn passivate_then_reactivate_yields_the_live_state() {
    let w = world();
    System::new().block_on(async {
        // Snapshots every 7 events, so the reactivation reads a snapshot and a tail.
        let config = RegistryConfig {
            snapshot_every: 7,
            ..RegistryConfig::default()
        };
        let (registry, stats) = start(&w, config);
        populate(&registry, 1, 12).await;
        let live = registry
            .send(InspectMailbox::new(mailbox(1)))
            .await
            .expect("registry alive")
            .expect("active");
        assert!(live.state.approved && !live.state.records.is_empty());

        // Not idle yet: nothing is passivated.
        assert_eq!(registry.send(PassivateIdle).await.unwrap(), 0);
        assert_eq!(passivate_all(&w, &registry).await, 1);
        assert_eq!(stats.snapshot().passivations, 1);
        let snapshot = w
            .journal
            .load_snapshot(&StreamId::mailbox(&mailbox(1)))
            .expect("read snapshot")
            .expect("a snapshot was saved");
        assert!(snapshot.seq > 0 && snapshot.seq <= live.head);

        let again = registry
            .send(InspectMailbox::new(mailbox(1)))
            .await
            .expect("registry alive")
            .expect("reactivated");
        assert_eq!(stats.snapshot().activations, 2);
        assert_eq!((&again.state, again.head), (&live.state, live.head));
        let folded = ledgersync_engine::engine::rebuild_states(w.journal.as_ref())
            .expect("fold the journal");
        assert_eq!(folded[&mailbox(1)], *live.state);

        // And it carries on from there.
        assert!(observe(&registry, 1, contact(1, 50, 1)).await > 0);
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn an_idle_actor_passivates_on_its_own_timer() {
    let w = world();
    System::new().block_on(async {
        tokio::time::pause();
        let config = RegistryConfig {
            idle_check_every: std::time::Duration::from_secs(1),
            ..RegistryConfig::default()
        };
        let (registry, stats) = start(&w, config);
        populate(&registry, 1, 2).await;
        // The timer fires, but the mailbox is not idle on the engine's clock.
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        assert_eq!(stats.snapshot().passivations, 0);

        w.clock.advance(Duration(IDLE.as_millis() as i64));
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let s = stats.snapshot();
        assert_eq!((s.passivations, s.active), (1, 0));

        // Removed from the registry: the next message activates it again.
        observe(&registry, 1, contact(1, 9, 1)).await;
        assert_eq!(stats.snapshot().activations, 2);
    });
}

#[test]
fn an_actor_stopped_by_a_conflict_restarts_from_its_log() {
    let w = world();
    System::new().block_on(async {
        let (registry, stats) = start(&w, RegistryConfig::default());
        let mut decided = populate(&registry, 1, 5).await;

        // Another writer moves the stream behind the actor's back, with a proper step.
        let mut other = MailboxCore::recover(w.journal.as_ref(), mailbox(1)).expect("recover");
        let (batch, prepared) = other.prepare(
            incoming(contact(1, 70, 1)),
            &OrgSettings::default(),
            w.clock.now(),
            &IdGen,
        );
        assert!(matches!(batch.expected, ExpectedSeq::Exactly(_)));
        w.journal
            .append(&batch.stream, batch.expected, batch.events)
            .expect("the other writer appends");
        let (by_other, _) = other.commit(prepared, u64::MAX);
        decided += by_other.len();

        // The actor's next append conflicts: it answers with the error and stops.
        let late = incoming(contact(1, 71, 1));
        let failed = registry
            .send(ObserveMailbox::new(mailbox(1), late.clone()))
            .await
            .expect("registry alive")
            .expect_err("the stream moved");
        assert!(failed.is_conflict(), "{failed}");
        assert_eq!(stats.snapshot().failures, 1);
        assert!(
            stream_of(w.journal.as_ref(), 1)
                .iter()
                .all(|e| e.event_id != late.id),
            "a refused append writes nothing"
        );

        // Sent again, it reaches a new activation rebuilt from the log.
        let replied = registry
            .send(ObserveMailbox::new(mailbox(1), late.clone()))
            .await
            .expect("registry alive")
            .expect("recorded after the restart");
        decided += replied.len();
        assert_eq!(stats.snapshot().activations, 2);

        let view = registry
            .send(InspectMailbox::new(mailbox(1)))
            .await
            .unwrap()
            .unwrap();
        let stream = stream_of(w.journal.as_ref(), 1);
        assert_eq!(view.head, stream.len() as u64);
        assert!(view.state.records.contains_key(&RecordId::new("con-1-70")));
        let folded = ledgersync_engine::engine::rebuild_states(w.journal.as_ref()).unwrap();
        assert_eq!(folded[&mailbox(1)], *view.state);

        // No decision lost or doubled: the stream holds exactly the decisions answered (ours
        // and the other writer's), each observation once, and replay reproduces them all.
        let (observations, in_stream) = check_contiguous(w.journal.as_ref(), 1);
        assert_eq!(in_stream, decided);
        assert_eq!(observations.iter().filter(|id| **id == late.id).count(), 1);
        assert_eq!(
            replay_reproduces_everything(w.journal.as_ref()),
            decided as u64
        );
    });
}

#[test]
fn at_most_k_recoveries_run_at_once() {
    const MAILBOXES: usize = 20;
    let w = world();
    System::new().block_on(async {
        let mut decided = 0;
        let (first, _) = start(&w, RegistryConfig::default());
        for n in 0..MAILBOXES {
            decided += populate(&first, n, 15).await;
        }
        assert_eq!(passivate_all(&w, &first).await, MAILBOXES);

        let (registry, stats) = start(
            &w,
            RegistryConfig {
                max_recoveries: 2,
                ..RegistryConfig::default()
            },
        );
        // Twenty mailboxes activated at once.
        let requests: Vec<_> = (0..MAILBOXES)
            .map(|n| registry.send(ObserveMailbox::new(mailbox(n), incoming(contact(n, 99, 1)))))
            .collect();
        for r in requests {
            decided += r.await.expect("registry alive").expect("recorded").len();
        }
        let s = stats.snapshot();
        assert_eq!(s.activations, MAILBOXES as u64);
        assert_eq!(
            s.recoveries_peak, 2,
            "at most 2 recoveries at the same time"
        );
        assert_eq!(s.recoveries_in_flight, 0);

        let recorded: usize = (0..MAILBOXES)
            .map(|n| check_contiguous(w.journal.as_ref(), n).1)
            .sum();
        assert_eq!(recorded, decided);
        assert_eq!(
            replay_reproduces_everything(w.journal.as_ref()),
            decided as u64
        );
        assert!(decided > 0);
    });
}

#[test]
fn a_mailbox_whose_log_does_not_decode_answers_with_the_recovery_error() {
    let w = world();
    System::new().block_on(async {
        tokio::time::pause();
        // A stream whose only event has a payload that does not decode.
        let e = contact(1, 0, 1);
        let garbage = ledgersync_domain::NewEvent {
            event_id: IdGen.next(),
            recorded_at: w.clock.now(),
            occurred_at: w.clock.now(),
            event_type: e.event_type(),
            schema_version: e.schema_version(),
            causation: vec![],
            correlation: None,
            rule: None,
            payload: vec![0xff, 0xfe, 0xfd],
            items: vec![],
        };
        w.journal
            .append(
                &StreamId::mailbox(&mailbox(1)),
                ExpectedSeq::NoStream,
                vec![garbage],
            )
            .expect("append");

        let (registry, stats) = start(&w, RegistryConfig::default());
        // Both wait in the queue of the recovering actor and get the recovery's error.
        let requests: Vec<_> = (1..3)
            .map(|k| registry.send(ObserveMailbox::new(mailbox(1), incoming(contact(1, k, 1)))))
            .collect();
        for r in requests {
            let err = r
                .await
                .expect("registry alive")
                .expect_err("cannot recover");
            assert!(
                matches!(err, ledgersync_runtime::ActorError::Recovery { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("mbx-1"), "{err}");
        }
        let s = stats.snapshot();
        assert_eq!(
            (s.activations, s.failures, s.recoveries_in_flight),
            (1, 1, 0)
        );

        // The registry forgot the failed activation: the next message tries a new recovery.
        let err = registry
            .send(InspectMailbox::new(mailbox(1)))
            .await
            .expect("registry alive")
            .expect_err("still cannot recover");
        assert!(matches!(
            err,
            ledgersync_runtime::ActorError::Recovery { .. }
        ));
        assert_eq!(stats.snapshot().activations, 2);
        assert_eq!(
            stream_of(w.journal.as_ref(), 1).len(),
            1,
            "nothing appended"
        );

        // The failed activations stop at their next idle check (tokio's paused time).
        tokio::time::sleep(std::time::Duration::from_secs(11)).await;
        let s = stats.snapshot();
        assert_eq!((s.active, s.passivations), (0, 0));
    });
}

#[test]
fn observations_are_decided_with_the_shared_settings_in_force() {
    let w = world();
    System::new().block_on(async {
        let settings: SharedSettings = Arc::new(RwLock::new(OrgSettings::default()));
        let (registry, _) = start_with(&w, RegistryConfig::default(), settings.clone());
        // Two mailboxes registered and mapped but not approved, then tested: with the
        // default `require_approved_address = true` the email workloads are refused (R5).
        let tested = |n: usize| -> Vec<Event> {
            setup(n)
                .into_iter()
                .filter(|e| !matches!(e, Event::AddressApproved(_)))
                .collect()
        };
        let not_approved = |decisions: &[ledgersync_engine::engine::Appended]| {
            decisions
                .iter()
                .filter(|a| matches!(a.decision.event, Event::WorkloadDisabled(_)))
                .count()
        };
        let mut refused = [0, 0];
        for (i, n) in [1, 2].into_iter().enumerate() {
            if n == 2 {
                settings.write().unwrap().require_approved_address = false;
            }
            for e in tested(n) {
                let decisions = registry
                    .send(ObserveMailbox::new(mailbox(n), incoming(e)))
                    .await
                    .unwrap()
                    .unwrap();
                refused[i] += not_approved(&decisions);
            }
        }
        assert!(refused[0] > 0, "the default refuses unapproved addresses");
        assert_eq!(
            refused[1], 0,
            "the changed setting is in force for the next observation"
        );
    });
}

#[test]
fn actors_spread_over_arbiters_keep_order_and_replay() {
    const MAILBOXES: usize = 8;
    let w = world();
    System::new().block_on(async {
        let (registry, stats) = start(
            &w,
            RegistryConfig {
                arbiters: 2,
                ..RegistryConfig::default()
            },
        );
        // Every mailbox's observations sent at once, interleaved across mailboxes, more per
        // mailbox than an actix queue holds by default (16), to actors on two other threads.
        let mut sent: Vec<Vec<EventId>> = vec![Vec::new(); MAILBOXES];
        let mut requests = Vec::new();
        for round in 0..24 {
            for (n, ids) in sent.iter_mut().enumerate() {
                let event = match setup(n).into_iter().nth(round) {
                    Some(e) => e,
                    None => contact(n, round, 1),
                };
                let i = incoming(event);
                ids.push(i.id);
                requests.push(registry.send(ObserveMailbox::new(mailbox(n), i)));
            }
        }
        let mut decided = 0;
        for r in requests {
            decided += r.await.expect("registry alive").expect("recorded").len();
        }
        assert_eq!(stats.snapshot().activations, MAILBOXES as u64);
        let mut recorded = 0;
        for (n, ids) in sent.iter().enumerate() {
            let (observations, decisions) = check_contiguous(w.journal.as_ref(), n);
            assert_eq!(&observations, ids, "mailbox {n}: handled in the order sent");
            recorded += decisions;
        }
        assert_eq!(recorded, decided);
        assert!(decided > 0);
        assert_eq!(
            replay_reproduces_everything(w.journal.as_ref()),
            decided as u64
        );
        registry
            .send(ledgersync_runtime::Shutdown)
            .await
            .expect("registry alive");
    });
}
