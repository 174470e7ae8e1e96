//! The disappearing-appointment story (seed `000_eedfdde378f1f458.txt`): an organization whose
//! appointments are cancelled by the four causes of a logical delete, and one physical delete.
//!
//! It drives the real path: every step is an observation given to [`Engine::crm`] or
//! [`Engine::observe`]. Until the mail-server connectors exist, [`Loopback`] plays the mail
//! server: it answers every intent with the outcome a server would report (`intent_succeeded`
//! with a server item id), and that outcome goes through `decide` like any other observation.

use crate::clock::{Clock, ManualClock};
use crate::engine::{Appended, Engine, Processed};
use crate::error::EngineError;
use ledgersync_domain::event::*;
use ledgersync_domain::filter::SyncFilter;
use ledgersync_domain::records::*;
use ledgersync_domain::{
    Duration, Event, FilterId, MailboxId, OrgId, ProfileId, RecordId, RemoteId, Timestamp, UserId,
};

/// Plays the mail server for intents until real connectors answer them.
#[derive(Debug, Default)]
pub struct Loopback {
    /// Outcomes reported so far.
    pub outcomes: u64,
}

impl Loopback {
    /// Reports a successful outcome for every intent in `processed` (and for intents that the
    /// outcomes themselves lead to).
    pub fn settle(
        &mut self,
        engine: &mut Engine,
        processed: &Processed,
    ) -> Result<(), EngineError> {
        let mut queue: Vec<Appended> = processed.decisions.clone();
        while let Some(a) = queue.pop() {
            let remote = match &a.decision.event {
                Event::CreateIntent(p) if p.target == Side::MailServer => {
                    Some(RemoteId(format!("{}/{}.ics", a.mailbox, p.record)))
                }
                Event::CreateIntent(_) | Event::UpdateIntent(_) => None,
                Event::DeleteIntent(p) => p.remote.clone(),
                Event::CancelIntent(p) => p.remote.clone(),
                _ => continue,
            };
            self.outcomes += 1;
            let out = engine.observe(
                &a.mailbox,
                Event::IntentSucceeded(IntentSucceeded {
                    intent: a.id,
                    remote,
                    etag: Some(format!("\"{}\"", self.outcomes)),
                    crm: None,
                }),
            )?;
            queue.extend(out.decisions);
        }
        Ok(())
    }
}

fn user(id: &str) -> UserId {
    UserId::new(id)
}

fn party(user_id: Option<&str>, email: &str, name: &str) -> Party {
    Party {
        user: user_id.map(UserId::new),
        email: email.into(),
        name: name.into(),
    }
}

/// The people of the story.
pub const USERS: [(&str, &str, &str); 3] = [
    ("jayne", "Jayne Cobb", "jayne@serenity.example"),
    ("paul", "Paul Ortiz", "paul@serenity.example"),
    ("laura", "Laura Chen", "laura@serenity.example"),
];

/// The two enabled mailboxes: (mailbox id, user).
pub const MAILBOXES: [(&str, &str); 2] = [("mbx-jayne", "jayne"), ("mbx-paul", "paul")];

fn person(id: &str) -> Party {
    let (_, name, email) = USERS.iter().find(|u| u.0 == id).expect("known user");
    party(Some(id), email, name)
}

#[allow(clippy::too_many_arguments)]
fn appointment(
    id: &str,
    version: u64,
    owner: &str,
    subject: &str,
    organizer: Party,
    required: Vec<Party>,
    optional: Vec<Party>,
    start: Timestamp,
) -> Record {
    Record {
        id: RecordId::new(id),
        owner: user(owner),
        version,
        body: RecordBody::Appointment(Appointment {
            subject: subject.into(),
            organizer: Some(organizer),
            required,
            optional,
            start,
            end: start + Duration::hours(1),
            all_day: false,
            location: "Serenity Valley office".into(),
            body: String::new(),
            state: ActivityState::Scheduled,
            show_as: ShowAs::Busy,
            priority: Priority::Normal,
            regarding: None,
            service: false,
            recurrence: None,
        }),
    }
}

/// One step of the story, for printing.
#[derive(Debug, Clone)]
pub struct StoryStep {
    /// Heading.
    pub title: String,
    /// What the engine decided, per mailbox, summarized.
    pub results: Vec<String>,
}

fn summarize_processed(engine: &Engine, p: &Processed) -> Vec<String> {
    use ledgersync_domain::records::Entity;
    use std::collections::BTreeMap;
    type Group = (Option<Entity>, Vec<(ledgersync_domain::RuleId, Event)>);
    let mut by: BTreeMap<(MailboxId, String), Group> = BTreeMap::new();
    for a in &p.decisions {
        let record = a
            .decision
            .event
            .record()
            .and_then(|r| engine.mailbox(&a.mailbox).and_then(|s| s.records.get(r)));
        let title = record
            .map(|r| r.title().to_string())
            .unwrap_or_else(|| "mailbox".to_string());
        let group = by.entry((a.mailbox.clone(), title)).or_default();
        group.0 = record.map(|r| r.entity());
        group.1.push((a.decision.rule, a.decision.event.clone()));
    }
    by.into_iter()
        .map(|((m, title), (entity, ds))| {
            let mut rules: Vec<String> = ds.iter().map(|(r, _)| r.to_string()).collect();
            rules.dedup();
            let what = crate::describe::summarize(&ds, entity);
            if title == "mailbox" {
                format!("{m}: {what} ({})", rules.join(", "))
            } else {
                format!("{m}: \"{title}\" {what} ({})", rules.join(", "))
            }
        })
        .collect()
}

/// Minutes between two steps of the story.
pub const STEP_MINUTES: i64 = 7;

/// One step of the story as CRM changes: a heading and the observations the CRM sends.
#[derive(Debug, Clone)]
pub struct StoryChanges {
    /// Heading.
    pub title: &'static str,
    /// The changes, in order (each goes to `Engine::crm`, or onto the bus).
    pub events: Vec<Event>,
}

/// The organization's server profile and its three users.
pub fn organization_events() -> Vec<Event> {
    let mut events = vec![Event::ProfileRegistered(ProfileRegistered {
        profile: ProfileId::new("groupware"),
        name: "Serenity groupware (CalDAV/CardDAV + IMAP)".into(),
        server_type: ServerType::Groupware,
        max_connections: 10,
    })];
    for (id, name, email) in USERS {
        events.push(Event::UserRegistered(UserRegistered {
            user: user(id),
            name: name.into(),
            email: email.into(),
        }));
    }
    events
}

/// A mailbox of one of the story's users: registered, mapped, approved when `approve`, and
/// tested with every workload succeeding.
pub fn mailbox_events(org: &OrgId, mailbox: &str, user_id: &str, approve: bool) -> Vec<Event> {
    let address = USERS.iter().find(|x| x.0 == user_id).expect("known user").2;
    let mailbox = MailboxId::new(mailbox);
    let mut events = vec![
        Event::MailboxRegistered(MailboxRegistered {
            mailbox: mailbox.clone(),
            org: org.clone(),
            address: address.into(),
            profile: ProfileId::new("groupware"),
            server_type: ServerType::Groupware,
        }),
        Event::MailboxMapped(MailboxMapped {
            mailbox: mailbox.clone(),
            user: user(user_id),
        }),
    ];
    if approve {
        events.push(Event::AddressApproved(AddressApproved {
            mailbox: mailbox.clone(),
            approved: true,
        }));
    }
    events.push(Event::MailboxTested(MailboxTested {
        mailbox,
        incoming: TestResult::Success,
        outgoing: TestResult::Success,
        act: TestResult::Success,
        act_org_marker: None,
        override_other_org: false,
    }));
    events
}

/// The whole story as CRM changes for organization `org`, starting at `start` (steps are
/// `STEP_MINUTES` apart; meetings are dated from the second step).
pub fn story(org: &OrgId, start: Timestamp) -> Vec<StoryChanges> {
    let mut steps = Vec::new();
    let mut setup = organization_events();
    for (mbx, u) in MAILBOXES {
        setup.extend(mailbox_events(org, mbx, u, true));
    }
    steps.push(StoryChanges {
        title: "Organization: 3 users, 2 mailboxes approved, tested and enabled",
        events: setup,
    });
    // 2. CRM records reach the mailboxes through the default filters.
    let now = start + Duration::minutes(STEP_MINUTES);
    let zoe = party(None, "zoe@customer.example", "Zoe Washburne");
    let kaylee = party(None, "kaylee@garage.example", "Kaylee Frye");
    let inara = party(None, "inara@partner.example", "Inara Serra");
    let mal = party(None, "mal@supplier.example", "Mal Reynolds");
    let wash = party(None, "wash@site.example", "Hoban Washburne");
    let bike = appointment(
        "apt-bike-repair",
        1,
        "laura",
        "Bike repair",
        person("jayne"),
        vec![person("paul"), zoe.clone()],
        vec![kaylee],
        now + Duration::days(2),
    );
    let review = appointment(
        "apt-quarterly-review",
        1,
        "paul",
        "Quarterly review",
        person("paul"),
        vec![person("jayne"), inara],
        vec![],
        now + Duration::days(5),
    );
    let supplier = appointment(
        "apt-supplier-call",
        1,
        "jayne",
        "Supplier call",
        person("jayne"),
        vec![mal],
        vec![],
        now + Duration::days(3),
    );
    let site = appointment(
        "apt-site-visit",
        1,
        "jayne",
        "Site visit",
        person("jayne"),
        vec![person("paul"), wash],
        vec![],
        now + Duration::days(4),
    );
    let linda = Record {
        id: RecordId::new("con-linda-park"),
        owner: user("paul"),
        version: 1,
        body: RecordBody::Contact(Contact {
            full_name: "Linda Park".into(),
            email: "linda@customer.example".into(),
            phone: "+1 555 0100".into(),
            company: "Customer Inc.".into(),
            state: ContactState::Active,
        }),
    };
    let quote = Record {
        id: RecordId::new("tsk-send-quote"),
        owner: user("jayne"),
        version: 1,
        body: RecordBody::Task(Task {
            kind: TaskKind::Task,
            subject: "Send quote to Zoe".into(),
            body: String::new(),
            start: Some(now),
            due: Some(now + Duration::days(1)),
            actual_start: None,
            actual_end: None,
            percent_complete: 0,
            state: ActivityState::Open,
            priority: Priority::High,
            regarding: None,
        }),
    };
    steps.push(StoryChanges {
        title: "CRM records created: 4 appointments, a contact, a task",
        events: [&bike, &review, &supplier, &site, &linda, &quote]
            .into_iter()
            .map(|r| Event::RecordUpserted(RecordUpserted { record: r.clone() }))
            .collect(),
    });

    // 3. The four causes of a logical delete.
    let mut review2 = review.clone();
    review2.version = 2;
    if let RecordBody::Appointment(a) = &mut review2.body {
        a.organizer = Some(person("laura"));
    }
    steps.push(StoryChanges {
        title: "Cause 1, organizer change: \"Quarterly review\" is handed from Paul to Laura",
        events: vec![Event::RecordUpserted(RecordUpserted { record: review2 })],
    });
    steps.push(StoryChanges { title: "Cause 2, filter edit: Jayne narrows her appointment filter to meetings she organizes", events: vec![Event::FilterChanged(FilterChanged {
            user: user("jayne"),
            entity: Entity::Appointment,
            filters: vec![SyncFilter {
                id: FilterId::new("jayne-organized"),
                name: "Meetings I organize".into(),
                entity: Entity::Appointment,
                enabled: true,
                expr: "organizer = me".into(),
            }],
        })],
     });
    steps.push(StoryChanges {
        title: "Cause 3, security-role removal: Jayne loses read access to \"Bike repair\"",
        events: vec![Event::AccessLost(AccessLost {
            user: user("jayne"),
            records: vec![bike.id.clone()],
            reason: AccessReason::Role,
        })],
    });
    let mut linda2 = linda.clone();
    linda2.version = 2;
    linda2.owner = user("jayne");
    steps.push(StoryChanges {
        title: "Cause 4, owner reassignment: contact \"Linda Park\" moves from Paul to Jayne",
        events: vec![Event::OwnerChanged(OwnerChanged {
            record: linda2,
            previous_owner: user("paul"),
        })],
    });
    steps.push(StoryChanges {
        title: "Physical delete: \"Site visit\" is deleted in the CRM",
        events: vec![Event::RecordDeleted(RecordDeleted {
            id: site.id.clone(),
            entity: Entity::Appointment,
        })],
    });
    steps
}

/// Runs the story against `engine`, through `Engine::crm`, with the loopback answering every
/// intent; the clock moves `STEP_MINUTES` between steps so the journal reads like a working
/// morning. Returns what each step decided, for printing.
pub fn disappearing_appointment(
    engine: &mut Engine,
    clock: &ManualClock,
) -> Result<Vec<StoryStep>, EngineError> {
    let org = engine.org().id.clone().expect("engine has an org");
    let mut lb = Loopback::default();
    let mut steps = Vec::new();
    for step in story(&org, clock.now()) {
        let mut results = Vec::new();
        for e in step.events {
            let p = engine.crm(e)?;
            results.extend(summarize_processed(engine, &p));
            lb.settle(engine, &p)?;
        }
        steps.push(StoryStep {
            title: step.title.to_string(),
            results,
        });
        clock.advance(Duration::minutes(STEP_MINUTES));
    }
    Ok(steps)
}
