//! The scheduler against a real redb journal and a real vdir calendar in a tempdir, inside an
//! actix `System`, on a `ManualClock` (the engine's time) and, for the loop, tokio's paused
//! time. The cadence is the rules' (R9, defaults: 5 minutes after a cycle with changes, one
//! minute more per quiet cycle).

use actix::{Actor, Addr, System};
use ledgersync_connectors::{VdirConfig, VdirConnector};
use ledgersync_domain::event::*;
use ledgersync_domain::records::*;
use ledgersync_domain::time::timestamp_from_civil;
use ledgersync_domain::{
    Duration as Span, Event, MailboxId, MailboxState, OrgId, OrgSettings, ProfileId, RecordId,
    RuleId, StreamId, Timestamp, UserId,
};
use ledgersync_engine::log::Stored;
use ledgersync_engine::mailbox::Incoming;
use ledgersync_engine::{Clock, IdGen, ManualClock, replay};
use ledgersync_journal::{Journal, JournalOptions};
use ledgersync_runtime::{
    Driver, InspectMailbox, ObserveMailbox, Registry, RegistryConfig, Scheduler, SchedulerConfig,
    SharedSettings, Signal,
};
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

const PAUL: &str = "mbx-paul";
const RIVER: &str = "mbx-river";
const ZOE: &str = "mbx-zoe";

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    journal: Arc<dyn Journal>,
    clock: Arc<ManualClock>,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = ledgersync_journal::open(&dir.path().join("journal"), &JournalOptions::default())
        .expect("open journal");
    World {
        root: dir.path().to_owned(),
        journal,
        clock: Arc::new(ManualClock::new(timestamp_from_civil(2026, 11, 22, 6, 0))),
        _dir: dir,
    }
}

fn registry(w: &World) -> Addr<Registry> {
    let settings: SharedSettings = Arc::new(RwLock::new(OrgSettings::default()));
    Registry::new(
        w.journal.clone(),
        w.clock.clone(),
        settings,
        RegistryConfig::default(),
    )
    .start()
}

fn calendar(w: &World, mailbox: &str) -> PathBuf {
    w.root.join("calendars").join(mailbox)
}

fn driver(w: &World, registry: &Addr<Registry>, mailbox: &str) -> Driver {
    let dir = calendar(w, mailbox);
    fs::create_dir_all(&dir).expect("calendar dir");
    let mut config = VdirConfig::new(format!("{mailbox}@serenity.example"));
    config.calendar = Some(dir);
    config.maildirs = Some(w.root.join("maildirs"));
    Driver::new(
        MailboxId::new(mailbox),
        Box::new(VdirConnector::new(config)),
        registry.clone(),
        w.journal.clone(),
        &w.root.join("data"),
    )
    .expect("driver")
}

fn scheduler(w: &World, registry: &Addr<Registry>, config: SchedulerConfig) -> Scheduler {
    let clock: Arc<dyn Clock> = w.clock.clone();
    Scheduler::new(registry.clone(), clock, config)
}

async fn observe(registry: &Addr<Registry>, mailbox: &str, event: Event) {
    let id = IdGen.next();
    let incoming = Incoming {
        event,
        id,
        causation: vec![],
        correlation: id,
    };
    registry
        .send(ObserveMailbox::new(MailboxId::new(mailbox), incoming))
        .await
        .expect("registry alive")
        .expect("observation recorded");
}

async fn state(registry: &Addr<Registry>, mailbox: &str) -> MailboxState {
    registry
        .send(InspectMailbox::new(MailboxId::new(mailbox)))
        .await
        .expect("registry alive")
        .expect("mailbox active")
        .state
        .as_ref()
        .clone()
}

async fn act_next_run(registry: &Addr<Registry>, mailbox: &str) -> Option<Timestamp> {
    state(registry, mailbox)
        .await
        .workload(Workload::Act)
        .next_run
}

/// Registers, maps, approves and tests a mailbox (ACT succeeding or not), then gives it one
/// appointment its user organizes.
async fn setup(registry: &Addr<Registry>, mailbox: &str, act: TestResult) {
    enable(registry, mailbox, act).await;
    appointment(registry, mailbox).await;
}

/// Registers, maps, approves and tests a mailbox (ACT succeeding or not).
async fn enable(registry: &Addr<Registry>, mailbox: &str, act: TestResult) {
    let user = UserId::new(mailbox.trim_start_matches("mbx-"));
    let address = format!("{mailbox}@serenity.example");
    let lifecycle = vec![
        Event::MailboxRegistered(MailboxRegistered {
            mailbox: MailboxId::new(mailbox),
            org: OrgId::new("org"),
            address: address.clone(),
            profile: ProfileId::new("vdir"),
            server_type: ServerType::Groupware,
        }),
        Event::MailboxMapped(MailboxMapped {
            mailbox: MailboxId::new(mailbox),
            user: user.clone(),
        }),
        Event::AddressApproved(AddressApproved {
            mailbox: MailboxId::new(mailbox),
            approved: true,
        }),
        Event::MailboxTested(MailboxTested {
            mailbox: MailboxId::new(mailbox),
            incoming: TestResult::Success,
            outgoing: TestResult::Success,
            act,
            act_org_marker: None,
            override_other_org: false,
        }),
    ];
    for e in lifecycle {
        observe(registry, mailbox, e).await;
    }
}

/// One appointment the mailbox's user organizes.
async fn appointment(registry: &Addr<Registry>, mailbox: &str) {
    let user = UserId::new(mailbox.trim_start_matches("mbx-"));
    let address = format!("{mailbox}@serenity.example");
    let organizer = Party {
        user: Some(user.clone()),
        email: address,
        name: user.to_string(),
    };
    let record = Record {
        id: RecordId::new(format!("apt-{mailbox}")),
        owner: user,
        version: 1,
        body: RecordBody::Appointment(Appointment {
            subject: "Cargo audit".into(),
            organizer: Some(organizer),
            required: vec![],
            optional: vec![],
            start: timestamp_from_civil(2026, 11, 24, 9, 0),
            end: timestamp_from_civil(2026, 11, 24, 10, 0),
            all_day: false,
            location: "Serenity, galley".into(),
            body: String::new(),
            state: ActivityState::Scheduled,
            show_as: ShowAs::Busy,
            priority: Priority::Normal,
            regarding: None,
            service: false,
            recurrence: None,
        }),
    };
    observe(
        registry,
        mailbox,
        Event::RecordUpserted(RecordUpserted { record }),
    )
    .await;
}

/// The decoded events of a mailbox stream.
fn stream(w: &World, mailbox: &str) -> Vec<Stored> {
    w.journal
        .read_stream(&StreamId::mailbox(&MailboxId::new(mailbox)), 1, 1_000_000)
        .expect("read")
        .into_iter()
        .map(|e| Stored::decode(e).expect("decode"))
        .collect()
}

/// The ACT `cycle_scheduled` decisions of a stream: (rule, at).
fn act_schedules(w: &World, mailbox: &str) -> Vec<(Option<RuleId>, Timestamp)> {
    stream(w, mailbox)
        .into_iter()
        .filter_map(|s| match s.event {
            Event::CycleScheduled(p) if p.workload == Workload::Act => {
                Some((s.envelope.rule, p.at))
            }
            _ => None,
        })
        .collect()
}

fn listings(w: &World, mailbox: &str) -> usize {
    stream(w, mailbox)
        .iter()
        .filter(|s| s.event.name().starts_with("listing_"))
        .count()
}

fn replay_reproduces_everything(journal: &dyn Journal) {
    let report = replay(journal, None, |_, _| {}).expect("replay");
    assert!(report.ok(), "replay mismatches: {:#?}", report.mismatches);
    assert!(report.decisions > 0);
    assert_eq!(report.reproduced, report.decisions);
}

#[test]
fn a_cycle_is_scheduled_five_minutes_after_a_listing_with_items() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        setup(&registry, PAUL, TestResult::Success).await;
        let mut s = scheduler(&w, &registry, SchedulerConfig::default());
        s.add(driver(&w, &registry, PAUL));
        let t0 = w.clock.now();

        // Never cycled: due at once.
        assert_eq!(s.due().await.expect("due"), vec![MailboxId::new(PAUL)]);
        let first = s.tick().await;
        assert!(first.failed.is_empty(), "{:?}", first.failed);
        assert_eq!(first.mailboxes(), vec![&MailboxId::new(PAUL)]);
        let ran = &first.ran[0];
        assert_eq!(ran.executed.succeeded(), 1, "the create executed first");
        assert_eq!(ran.cycle.count("item_seen"), 1, "then listed");
        assert_eq!(ran.cycle.terminal, "listing_completed");
        let five = t0 + Span::minutes(5);
        assert_eq!(ran.next_run, Some(five));
        assert_eq!(
            act_next_run(&registry, PAUL).await,
            Some(five),
            "visible in the state"
        );
        assert_eq!(
            act_schedules(&w, PAUL),
            vec![(Some(RuleId(9)), five)],
            "an R9 decision in the journal"
        );

        // Before that time nothing runs.
        assert!(s.tick().await.is_empty());
        w.clock.advance(Span::minutes(4));
        assert!(s.due().await.expect("due").is_empty());
        assert!(s.tick().await.is_empty());
        assert_eq!(listings(&w, PAUL), 1);

        // At it, the cycle runs and the next one is decided again by R9.
        w.clock.advance(Span::minutes(1));
        let second = s.tick().await;
        assert_eq!(second.mailboxes(), vec![&MailboxId::new(PAUL)]);
        assert_eq!(second.ran[0].cycle.count("item_seen"), 0);
        assert_eq!(second.ran[0].cycle.terminal, "listing_completed");
        let next = second.ran[0].next_run.expect("scheduled");
        assert!(next >= five + Span::minutes(5), "{next:?}");
        assert_eq!(act_next_run(&registry, PAUL).await, Some(next));
        assert_eq!(
            act_schedules(&w, PAUL),
            vec![(Some(RuleId(9)), five), (Some(RuleId(9)), next)]
        );
        assert_eq!(listings(&w, PAUL), 2);
        assert_eq!(s.next_due().await.expect("next due"), Some(next));
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn a_quiet_mailbox_waits_longer_after_each_quiet_cycle() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        // Enabled, nothing to sync: every listing finds no item.
        enable(&registry, ZOE, TestResult::Success).await;
        let mut s = scheduler(&w, &registry, SchedulerConfig::default());
        s.add(driver(&w, &registry, ZOE));
        let t0 = w.clock.now();
        let first = s.tick().await;
        assert_eq!(first.mailboxes(), vec![&MailboxId::new(ZOE)]);
        assert_eq!(first.ran[0].cycle.terminal, "listing_completed");
        let six = t0 + Span::minutes(6);
        assert_eq!(
            first.ran[0].next_run,
            Some(six),
            "one quiet cycle: 5 + 1 minutes"
        );
        w.clock.set(six);
        let second = s.tick().await;
        let thirteen = six + Span::minutes(7);
        assert_eq!(
            second.ran[0].next_run,
            Some(thirteen),
            "two quiet cycles: 5 + 2"
        );
        assert_eq!(act_next_run(&registry, ZOE).await, Some(thirteen));
        assert_eq!(
            act_schedules(&w, ZOE),
            vec![(Some(RuleId(9)), six), (Some(RuleId(9)), thirteen)]
        );
        w.clock.set(thirteen - Span::minutes(1));
        assert!(s.tick().await.is_empty());
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn a_push_makes_the_next_tick_run_at_once() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        setup(&registry, PAUL, TestResult::Success).await;
        let mut s = scheduler(&w, &registry, SchedulerConfig::default());
        s.add(driver(&w, &registry, PAUL));
        assert_eq!(s.tick().await.ran.len(), 1);
        w.clock.advance(Span::minutes(1));
        assert!(s.tick().await.is_empty(), "not due for 4 more minutes");

        let now = w.clock.now();
        let decisions = s.push(&MailboxId::new(PAUL), Workload::Act).await.expect("push");
        assert!(
            matches!(&decisions[..], [a] if matches!(&a.decision.event, Event::CycleScheduled(c) if c.at == now)),
            "{decisions:#?}"
        );
        assert_eq!(act_next_run(&registry, PAUL).await, Some(now));
        let ran = s.tick().await;
        assert_eq!(ran.mailboxes(), vec![&MailboxId::new(PAUL)]);
        assert!(ran.ran[0].next_run.is_some_and(|t| t >= now + Span::minutes(5)));
        assert!(s.tick().await.is_empty(), "once");

        // In the stream: push_received, then cycle_scheduled at now (R9) caused by it, then
        // the listing the tick ran.
        let events = stream(&w, PAUL);
        let at = events
            .iter()
            .position(|e| e.event.name() == "push_received")
            .expect("push recorded");
        let push = &events[at];
        let scheduled = &events[at + 1];
        assert!(matches!(&scheduled.event, Event::CycleScheduled(c) if c.at == now && c.workload == Workload::Act));
        assert_eq!(scheduled.envelope.rule, Some(RuleId(9)));
        assert_eq!(scheduled.envelope.causation, vec![push.envelope.event_id]);
        assert!(events[at + 2].event.name().starts_with("listing_"));

        // A push for a mailbox this scheduler does not run is refused, not recorded.
        assert!(s.push(&MailboxId::new("mbx-unknown"), Workload::Act).await.is_err());
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn a_mailbox_whose_act_workload_is_disabled_is_never_cycled() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        setup(&registry, PAUL, TestResult::Success).await;
        setup(&registry, RIVER, TestResult::Failure).await;
        assert!(
            !state(&registry, RIVER)
                .await
                .workload(Workload::Act)
                .enabled
        );
        let mut s = scheduler(&w, &registry, SchedulerConfig::default());
        s.add(driver(&w, &registry, PAUL));
        s.add(driver(&w, &registry, RIVER));

        assert_eq!(s.due().await.expect("due"), vec![MailboxId::new(PAUL)]);
        assert_eq!(s.tick().await.mailboxes(), vec![&MailboxId::new(PAUL)]);
        // A push decides nothing for a disabled workload, and does not make it due.
        let decisions = s
            .push(&MailboxId::new(RIVER), Workload::Act)
            .await
            .expect("push");
        assert!(decisions.is_empty(), "{decisions:#?}");
        for _ in 0..3 {
            w.clock.advance(Span::minutes(15));
            let report = s.tick().await;
            assert_eq!(report.mailboxes(), vec![&MailboxId::new(PAUL)]);
        }
        assert_eq!(listings(&w, RIVER), 0, "never listed");
        assert!(act_schedules(&w, RIVER).is_empty());
        assert_eq!(
            fs::read_dir(calendar(&w, RIVER)).expect("dir").count(),
            0,
            "nothing executed"
        );
        assert_eq!(listings(&w, PAUL), 4);
        replay_reproduces_everything(w.journal.as_ref());
    });
}

#[test]
fn the_loop_sleeps_until_the_next_run_and_wakes_for_a_push() {
    let w = world();
    System::new().block_on(async {
        tokio::time::pause();
        let registry = registry(&w);
        setup(&registry, PAUL, TestResult::Success).await;
        let (reports_tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let config = SchedulerConfig {
            max_wait: Duration::from_secs(3600),
            ..SchedulerConfig::default()
        };
        let mut s = scheduler(&w, &registry, config).with_reports(reports_tx);
        s.add(driver(&w, &registry, PAUL));
        let (signals, signals_rx) = tokio::sync::mpsc::unbounded_channel();
        let running = actix::spawn(async move {
            s.run(signals_rx).await;
            s
        });

        let first = reports.recv().await.expect("first tick");
        assert_eq!(first.mailboxes(), vec![&MailboxId::new(PAUL)]);
        let slept_from = tokio::time::Instant::now();
        // The loop sleeps until the decided next run (5 minutes); the engine clock has not
        // moved, so that tick finds nothing due.
        let second = reports.recv().await.expect("second tick");
        assert!(second.is_empty());
        let slept = slept_from.elapsed();
        assert!(
            slept >= Duration::from_secs(300) && slept < Duration::from_secs(360),
            "{slept:?}"
        );
        // Once the engine clock reaches the next run, the loop runs the cycle.
        w.clock.advance(Span::minutes(5));
        let third = reports.recv().await.expect("third tick");
        assert_eq!(third.mailboxes(), vec![&MailboxId::new(PAUL)]);

        // A push wakes the loop, which records it and runs the mailbox at once.
        let before = tokio::time::Instant::now();
        signals
            .send(Signal::Push(MailboxId::new(PAUL), Workload::Act))
            .expect("loop alive");
        let pushed = loop {
            let report = reports.recv().await.expect("tick after the push");
            if !report.is_empty() {
                break report;
            }
        };
        assert_eq!(pushed.mailboxes(), vec![&MailboxId::new(PAUL)]);
        assert!(
            before.elapsed() < Duration::from_secs(60),
            "{:?}",
            before.elapsed()
        );
        assert!(
            stream(&w, PAUL)
                .iter()
                .any(|e| e.event.name() == "push_received")
        );

        signals.send(Signal::Stop).expect("loop alive");
        let s = running.await.expect("loop ended");
        assert_eq!(s.mailboxes().count(), 1);
        assert_eq!(listings(&w, PAUL), 3);
        replay_reproduces_everything(w.journal.as_ref());
    });
}

/// A server that takes a while to list (a real one takes seconds) and counts how many of its
/// listings run at the same time, across every mailbox that shares the counters.
struct Slow {
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    peak: Arc<std::sync::atomic::AtomicUsize>,
}

impl ledgersync_connectors::Connector for Slow {
    fn list_changes(
        &mut self,
        _cursor: &ledgersync_connectors::Cursor,
    ) -> ledgersync_connectors::Listing {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        self.in_flight.fetch_sub(1, SeqCst);
        ledgersync_connectors::Listing {
            observations: vec![],
            end: ledgersync_connectors::ListingEnd::Completed(ListingCompleted {
                workload: Workload::Act,
                items: 0,
            }),
            failures: vec![],
            cursor: ledgersync_connectors::Cursor::initial(),
        }
    }

    fn execute(
        &mut self,
        intent: ledgersync_connectors::Intent<'_>,
    ) -> ledgersync_connectors::Outcome {
        panic!("nothing to execute: {:?}", intent.id)
    }
}

#[test]
fn due_mailboxes_are_run_in_parallel_up_to_the_limit() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let config = SchedulerConfig {
            max_parallel: 3,
            ..SchedulerConfig::default()
        };
        let mut s = scheduler(&w, &registry, config);
        let mailboxes: Vec<String> = (0..8).map(|i| format!("mbx-{i}")).collect();
        for m in &mailboxes {
            enable(&registry, m, TestResult::Success).await;
            let d = Driver::new(
                MailboxId::new(m.as_str()),
                Box::new(Slow {
                    in_flight: in_flight.clone(),
                    peak: peak.clone(),
                }),
                registry.clone(),
                w.journal.clone(),
                &w.root.join("data"),
            )
            .expect("driver");
            s.add(d);
        }
        let report = s.tick().await;
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert_eq!(report.ran.len(), 8, "every due mailbox ran once");
        let order: Vec<&str> = report.ran.iter().map(|r| r.mailbox.as_str()).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "reported in mailbox order");
        let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
        assert!(peak >= 2, "listings overlapped (peak {peak})");
        assert!(
            peak <= 3,
            "never more than max_parallel at once (peak {peak})"
        );
        // Each got its next run decided; none is due again now.
        assert!(s.tick().await.is_empty());
        replay_reproduces_everything(w.journal.as_ref());
    });
}

/// A mailbox's incoming email, from a connector that reports one message at its first listing
/// and carries out no intent (the IMAP connector's part, without a server).
struct Inbox {
    listed: bool,
}

impl ledgersync_connectors::Connector for Inbox {
    fn list_changes(
        &mut self,
        cursor: &ledgersync_connectors::Cursor,
    ) -> ledgersync_connectors::Listing {
        let mut observations = Vec::new();
        if !self.listed {
            self.listed = true;
            observations.push(ledgersync_connectors::Observation::Email(Box::new(
                EmailReceived {
                    remote: ledgersync_domain::RemoteId::new("INBOX/7/1"),
                    message_id: "question-1@customer.example".into(),
                    subject: "A question".into(),
                    from: "zoe@customer.example".into(),
                    to: vec!["mbx-paul@serenity.example".into()],
                    in_reply_to: None,
                    references: vec![],
                    thread_index: None,
                    cc: vec![],
                    bcc: vec![],
                    received: timestamp_from_civil(2026, 11, 22, 5, 0),
                    irm_protected: false,
                    folder: EmailFolder::Inbox,
                    manual: None,
                    size: 1_000,
                    facts: EmailFacts::default(),
                },
            )));
        }
        let items = observations.len() as u32;
        ledgersync_connectors::Listing {
            observations,
            end: ledgersync_connectors::ListingEnd::Completed(ListingCompleted {
                workload: Workload::Incoming,
                items,
            }),
            failures: vec![],
            cursor: ledgersync_connectors::Cursor::from_text(format!("{}+", cursor.as_str())),
        }
    }

    fn execute(
        &mut self,
        _intent: ledgersync_connectors::Intent<'_>,
    ) -> ledgersync_connectors::Outcome {
        panic!("the incoming driver carries out no intent")
    }

    fn workload(&self) -> Workload {
        Workload::Incoming
    }
}

#[test]
fn a_mailbox_runs_its_act_and_incoming_drivers_each_on_its_own_workload() {
    let w = world();
    System::new().block_on(async {
        let registry = registry(&w);
        setup(&registry, PAUL, TestResult::Success).await;
        let mut s = scheduler(&w, &registry, SchedulerConfig::default());
        assert!(s.add(driver(&w, &registry, PAUL)).is_none());
        let incoming = Driver::new(
            MailboxId::new(PAUL),
            Box::new(Inbox { listed: false }),
            registry.clone(),
            w.journal.clone(),
            &w.root.join("data"),
        )
        .expect("driver");
        assert_eq!(incoming.workload(), Workload::Incoming);
        assert!(
            incoming.cursor_path().ends_with("mbx-paul.incoming.cursor"),
            "{}",
            incoming.cursor_path().display()
        );
        assert!(
            s.add(incoming).is_none(),
            "a second workload, not a replacement"
        );
        assert_eq!(s.mailboxes().count(), 1);

        // Both never cycled: both run; only ACT carries out the appointment's create.
        let first = s.tick().await;
        let ran: Vec<(&MailboxId, Workload)> =
            first.ran.iter().map(|r| (&r.mailbox, r.workload)).collect();
        assert_eq!(
            ran,
            vec![
                (&MailboxId::new(PAUL), Workload::Incoming),
                (&MailboxId::new(PAUL), Workload::Act)
            ]
        );
        let inbox = &first.ran[0];
        assert!(inbox.executed.outcomes.is_empty());
        assert_eq!(inbox.cycle.count("email_received"), 1);
        assert!(
            inbox
                .cycle
                .decisions
                .iter()
                .any(|d| d.decision.event.name() == "email_rejected"),
            "a question that answers nothing is decided (R54)"
        );
        assert!(
            !first.ran[1].executed.outcomes.is_empty(),
            "ACT created the appointment"
        );
        let incoming_next = state(&registry, PAUL)
            .await
            .workload(Workload::Incoming)
            .next_run
            .expect("R7 scheduled the next incoming cycle");
        assert!(incoming_next > w.clock.now());

        // A push of the incoming workload runs its driver alone.
        w.clock.advance(Span::minutes(1));
        assert!(s.tick().await.is_empty());
        s.push(&MailboxId::new(PAUL), Workload::Incoming)
            .await
            .expect("push");
        let pushed = s.tick().await;
        let ran: Vec<Workload> = pushed.ran.iter().map(|r| r.workload).collect();
        assert_eq!(ran, vec![Workload::Incoming]);
        assert_eq!(act_next_run(&registry, PAUL).await, first.ran[1].next_run);
        replay_reproduces_everything(w.journal.as_ref());
    });
}
