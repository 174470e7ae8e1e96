//! A realistic journal for the engine benchmarks, produced by the real `decide` and appended
//! through the real journal: many mailboxes, each with appointments, contacts and tasks, their
//! creates, the outcomes that link them, changes, access losses and regained access.
//!
//! The loader submits each mailbox's (observation + decisions) batch with the stream's expected
//! head and keeps many appends in flight, so group commit writes them in large durable batches.

use ledgersync_domain::event::*;
use ledgersync_domain::records::*;
use ledgersync_domain::{
    Context, Duration, Event, EventId, EventMeta, MailboxId, MailboxState, NewEvent, OrgId,
    OrgSettings, ProfileId, RecordId, RemoteId, StreamId, Timestamp, UserId, decide,
};
use ledgersync_journal::{AppendTicket, ExpectedSeq, Journal};
use std::collections::VecDeque;

/// The time the synthetic organization lives at.
pub const T0: Timestamp = Timestamp(1_795_000_000_000);

/// Shape of the workload.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Mailboxes.
    pub mailboxes: usize,
    /// Events to reach (approximately).
    pub events: u64,
}

/// Builds a random-but-deterministic appointment, contact or task for user `u`.
pub fn record(n: u64, u: usize, users: usize, version: u64, now: Timestamp) -> Record {
    let owner = UserId(format!("u{u}"));
    let id = RecordId(format!("r{u}-{n}"));
    let body = match n % 4 {
        0 | 1 => {
            let other = (u + 1 + (n as usize % 3)) % users;
            let me = Party {
                user: Some(owner.clone()),
                email: format!("u{u}@org.example"),
                name: format!("User {u}"),
            };
            RecordBody::Appointment(Appointment {
                subject: format!("Meeting {n} of user {u} v{version}"),
                organizer: Some(me),
                required: vec![
                    Party {
                        user: Some(UserId(format!("u{other}"))),
                        email: format!("u{other}@org.example"),
                        name: format!("User {other}"),
                    },
                    Party {
                        user: None,
                        email: format!("guest{n}@customer.example"),
                        name: format!("Guest {n}"),
                    },
                ],
                optional: vec![],
                start: now + Duration::days(1 + (n as i64 % 20)),
                end: now + Duration::days(1 + (n as i64 % 20)) + Duration::hours(1),
                all_day: false,
                location: "Room 4".into(),
                body: "Agenda: review the quarter, plan the next one.".into(),
                state: ActivityState::Scheduled,
                show_as: ShowAs::Busy,
                priority: Priority::Normal,
                regarding: None,
                service: false,
                recurrence: None,
            })
        }
        2 => RecordBody::Contact(Contact {
            full_name: format!("Contact {n} of {u}"),
            email: format!("c{n}@customer.example"),
            phone: "+1 555 0100".into(),
            company: "Customer Inc.".into(),
            state: ContactState::Active,
        }),
        _ => RecordBody::Task(Task {
            kind: TaskKind::Task,
            subject: format!("Task {n} of {u}"),
            body: String::new(),
            start: Some(now),
            due: Some(now + Duration::days(3)),
            actual_start: None,
            actual_end: None,
            percent_complete: 0,
            state: ActivityState::Open,
            priority: Priority::Normal,
            regarding: None,
        }),
    };
    Record {
        id,
        owner,
        version,
        body,
    }
}

/// One mailbox being generated.
pub struct Gen {
    /// The mailbox.
    pub id: MailboxId,
    /// Its state.
    pub state: MailboxState,
    head: u64,
    user: usize,
    next_record: u64,
    pending_outcomes: VecDeque<(EventId, Option<RemoteId>)>,
    step: u64,
}

fn id(counter: &mut u128) -> EventId {
    *counter += 1;
    EventId::from_u128(*counter)
}

impl Gen {
    /// A mailbox for user `u`.
    pub fn new(u: usize) -> Self {
        Self {
            id: MailboxId(format!("m{u}")),
            state: MailboxState::default(),
            head: 0,
            user: u,
            next_record: 0,
            pending_outcomes: VecDeque::new(),
            step: 0,
        }
    }

    /// The lifecycle observations that make the mailbox ready.
    pub fn lifecycle(&self, org: &OrgId) -> Vec<Event> {
        vec![
            Event::MailboxRegistered(MailboxRegistered {
                mailbox: self.id.clone(),
                org: org.clone(),
                address: format!("u{}@org.example", self.user),
                profile: ProfileId::new("p1"),
                server_type: ServerType::Groupware,
            }),
            Event::MailboxMapped(MailboxMapped {
                mailbox: self.id.clone(),
                user: UserId(format!("u{}", self.user)),
            }),
            Event::AddressApproved(AddressApproved {
                mailbox: self.id.clone(),
                approved: true,
            }),
            Event::MailboxTested(MailboxTested {
                mailbox: self.id.clone(),
                incoming: TestResult::Success,
                outgoing: TestResult::Success,
                act: TestResult::Success,
                act_org_marker: None,
                override_other_org: false,
            }),
        ]
    }

    /// The next observation of a busy mailbox.
    pub fn next_observation(&mut self, users: usize, now: Timestamp) -> Event {
        self.step += 1;
        if let Some((intent, remote)) = self.pending_outcomes.pop_front() {
            return Event::IntentSucceeded(IntentSucceeded {
                intent,
                remote,
                etag: Some(format!("\"{}\"", self.step)),
                crm: None,
            });
        }
        let linked: Vec<RecordId> = self.state.links.keys().cloned().collect();
        match self.step % 10 {
            // mostly new rows and changes to known rows
            0..=4 => {
                self.next_record += 1;
                let n = self.next_record;
                Event::RecordUpserted(RecordUpserted {
                    record: record(n, self.user, users, 1, now),
                })
            }
            5..=7 if !linked.is_empty() => {
                let r = &linked[(self.step as usize * 7) % linked.len()];
                let n: u64 =
                    r.0.rsplit('-')
                        .next()
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(0);
                let v = self
                    .state
                    .records
                    .get(r)
                    .map(|x| x.version + 1)
                    .unwrap_or(2);
                Event::RecordUpserted(RecordUpserted {
                    record: record(n, self.user, users, v, now),
                })
            }
            8 if !linked.is_empty() => {
                let r = &linked[(self.step as usize * 13) % linked.len()];
                Event::AccessLost(AccessLost {
                    user: UserId(format!("u{}", self.user)),
                    records: vec![r.clone()],
                    reason: AccessReason::Share,
                })
            }
            _ => {
                let denied: Vec<RecordId> = self.state.denied.keys().cloned().collect();
                Event::AccessRegained(AccessRegained {
                    user: UserId(format!("u{}", self.user)),
                    records: denied.into_iter().take(3).collect(),
                    reason: AccessReason::Share,
                })
            }
        }
    }

    /// Decides `obs`, evolves the state and returns the batch to append.
    pub fn process(
        &mut self,
        obs: Event,
        settings: &OrgSettings,
        now: Timestamp,
        counter: &mut u128,
    ) -> Vec<NewEvent> {
        let ds = decide(&self.state, &obs, &Context { settings, now });
        let obs_id = id(counter);
        self.state.apply(
            EventMeta {
                id: obs_id,
                at: now,
            },
            &obs,
        );
        let mut batch = vec![new_event(obs_id, &obs, None, vec![], now)];
        for d in ds {
            let did = id(counter);
            self.state.apply(EventMeta { id: did, at: now }, &d.event);
            match &d.event {
                Event::CreateIntent(p) if p.target == Side::MailServer => self
                    .pending_outcomes
                    .push_back((did, Some(RemoteId(format!("{}/{}.ics", self.id, p.record))))),
                Event::DeleteIntent(p) => self.pending_outcomes.push_back((did, p.remote.clone())),
                Event::CancelIntent(p) => self.pending_outcomes.push_back((did, p.remote.clone())),
                _ => {}
            }
            batch.push(new_event(did, &d.event, Some(d.rule), vec![obs_id], now));
        }
        batch
    }

    /// Submits a batch with the expected head.
    pub fn submit(&mut self, journal: &dyn Journal, batch: Vec<NewEvent>) -> AppendTicket {
        let expected = if self.head == 0 {
            ExpectedSeq::NoStream
        } else {
            ExpectedSeq::Exactly(self.head)
        };
        self.head += batch.len() as u64;
        journal.submit(&StreamId::mailbox(&self.id), expected, batch)
    }
}

fn new_event(
    id: EventId,
    e: &Event,
    rule: Option<ledgersync_domain::RuleId>,
    causation: Vec<EventId>,
    now: Timestamp,
) -> NewEvent {
    NewEvent {
        event_id: id,
        recorded_at: now,
        occurred_at: now,
        event_type: e.event_type(),
        schema_version: e.schema_version(),
        causation,
        correlation: None,
        rule,
        payload: e.encode_payload(),
        items: e.item_keys(),
    }
}

/// Fills `journal` with about `shape.events` events; returns the mailbox states reached and the
/// number of events written.
pub fn load(journal: &dyn Journal, shape: Shape) -> (Vec<Gen>, u64) {
    let org = OrgId::new("bench");
    let settings = OrgSettings::default();
    let mut counter: u128 = 0;
    let mut gens: Vec<Gen> = (0..shape.mailboxes).map(Gen::new).collect();
    let mut inflight: VecDeque<AppendTicket> = VecDeque::new();
    let mut written = 0u64;
    let mut now = T0;
    for g in gens.iter_mut() {
        for obs in g.lifecycle(&org) {
            let batch = g.process(obs, &settings, now, &mut counter);
            written += batch.len() as u64;
            inflight.push_back(g.submit(journal, batch));
        }
    }
    let users = shape.mailboxes;
    'fill: loop {
        now = now + Duration::minutes(1);
        for g in gens.iter_mut() {
            let obs = g.next_observation(users, now);
            let batch = g.process(obs, &settings, now, &mut counter);
            written += batch.len() as u64;
            inflight.push_back(g.submit(journal, batch));
            while inflight.len() > 4096 {
                inflight
                    .pop_front()
                    .expect("non-empty")
                    .wait()
                    .expect("bench append");
            }
            if written >= shape.events {
                break 'fill;
            }
        }
    }
    for t in inflight {
        t.wait().expect("bench append");
    }
    (gens, written)
}
