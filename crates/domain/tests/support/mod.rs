//! Test harness for the rule tests: a mailbox driven only by observations, the way the shell
//! drives it.
//!
//! The shell's order, which [`Mailbox::feed`] follows: `decide` on the state *before* the
//! observation, then apply the observation, then apply each decision. Event ids are a counter
//! (`EventId::from_u128`), so a test can name the intent a decision created.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

use ledgersync_domain::event::*;
use ledgersync_domain::filter::SyncFilter;
use ledgersync_domain::records::*;
use ledgersync_domain::state::{Link, LinkStatus};
use ledgersync_domain::time::timestamp_from_civil;
use ledgersync_domain::{
    Context, Decision, Duration, Event, EventId, EventMeta, FilterId, MailboxId, MailboxState,
    OrgId, OrgSettings, ProfileId, RecordId, RemoteId, Timestamp, UserId, decide,
};

/// The organization every fixture belongs to.
pub const ORG: &str = "org-serenity";

/// A fixed "now": 2026-11-20 09:00 UTC.
pub fn t0() -> Timestamp {
    timestamp_from_civil(2026, 11, 20, 9, 0)
}

/// One mailbox: its state, the organization settings and the clock.
pub struct Mailbox {
    /// The mailbox state, changed only through [`Mailbox::feed`].
    pub state: MailboxState,
    /// Settings passed to `decide`.
    pub settings: OrgSettings,
    /// The time passed to `decide` and stamped on events.
    pub now: Timestamp,
    /// Mailbox id.
    pub id: MailboxId,
    /// The user it is mapped to (by [`Mailbox::ready`]).
    pub user: UserId,
    next_id: u128,
    /// Every decision so far with the id it was applied under.
    pub journal: Vec<(EventId, Decision)>,
}

impl Mailbox {
    /// A mailbox with nothing applied yet.
    pub fn blank(user: &str) -> Self {
        Self {
            state: MailboxState::default(),
            settings: OrgSettings::default(),
            now: t0(),
            id: MailboxId::new(format!("mbx-{user}")),
            user: UserId::new(user),
            next_id: 0,
            journal: Vec::new(),
        }
    }

    /// The mailbox's address (the user's address).
    pub fn address(&self) -> String {
        email_of(self.user.as_str())
    }

    fn meta(&mut self) -> EventMeta {
        self.next_id += 1;
        EventMeta {
            id: EventId::from_u128(self.next_id),
            at: self.now,
        }
    }

    /// Feeds one observation the way the shell does and returns the decisions.
    pub fn feed(&mut self, obs: Event) -> Vec<Decision> {
        assert!(
            obs.is_observation(),
            "feed takes observations, got {}",
            obs.name()
        );
        let ds = decide(
            &self.state,
            &obs,
            &Context {
                settings: &self.settings,
                now: self.now,
            },
        );
        let meta = self.meta();
        self.state.apply(meta, &obs);
        for d in &ds {
            let meta = self.meta();
            self.state.apply(meta, &d.event);
            self.journal.push((meta.id, d.clone()));
        }
        ds
    }

    /// Registered on a groupware profile (calendars, contacts, tasks).
    pub fn registered(user: &str) -> Self {
        Self::registered_on(user, ServerType::Groupware)
    }

    /// Registered on a profile of the given server type.
    pub fn registered_on(user: &str, server_type: ServerType) -> Self {
        let mut mb = Self::blank(user);
        let obs = Event::MailboxRegistered(MailboxRegistered {
            mailbox: mb.id.clone(),
            org: OrgId::new(ORG),
            address: mb.address(),
            profile: ProfileId::new("profile-main"),
            server_type,
        });
        assert!(mb.feed(obs).is_empty());
        mb
    }

    /// Registered and mapped to its user (the mapping starts; nothing is enabled yet).
    pub fn mapped(user: &str) -> Self {
        let mut mb = Self::registered(user);
        let ds = mb.feed(mb.mapping(user));
        assert_eq!(summary(&ds), [(1, "mapping_started")]);
        mb
    }

    /// Registered, mapped, approved, and Test & Enable succeeded for all three workloads.
    pub fn ready(user: &str) -> Self {
        let mut mb = Self::mapped(user);
        mb.approve(true);
        let ds = mb.feed(mb.test_all(TestResult::Success));
        assert_eq!(
            summary(&ds),
            [
                (6, "workload_enabled"),
                (6, "workload_enabled"),
                (6, "workload_enabled")
            ]
        );
        assert!(Workload::ALL.iter().all(|w| mb.state.workload(*w).enabled));
        mb
    }

    /// `mailbox_mapped` of this mailbox to `user`.
    pub fn mapping(&self, user: &str) -> Event {
        Event::MailboxMapped(MailboxMapped {
            mailbox: self.id.clone(),
            user: UserId::new(user),
        })
    }

    /// Feeds `address_approved`.
    pub fn approve(&mut self, approved: bool) -> Vec<Decision> {
        let obs = Event::AddressApproved(AddressApproved {
            mailbox: self.id.clone(),
            approved,
        });
        self.feed(obs)
    }

    /// A Test & Enable result for all three workloads, with this organization's ACT marker.
    pub fn test_all(&self, result: TestResult) -> Event {
        self.test(result, result, result)
    }

    /// A Test & Enable result per workload (incoming, outgoing, ACT).
    pub fn test(&self, incoming: TestResult, outgoing: TestResult, act: TestResult) -> Event {
        Event::MailboxTested(MailboxTested {
            mailbox: self.id.clone(),
            incoming,
            outgoing,
            act,
            act_org_marker: Some(OrgId::new(ORG)),
            override_other_org: false,
        })
    }

    /// Moves the clock.
    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
    }

    /// The id under which the most recent decision matching `pick` was applied.
    pub fn id_of(&self, pick: impl Fn(&Event) -> bool) -> EventId {
        self.journal
            .iter()
            .rev()
            .find(|(_, d)| pick(&d.event))
            .map(|(id, _)| *id)
            .expect("no such decision in the journal")
    }

    /// Answers the latest create intent for `record` with success and returns the decisions
    /// (the `link_created` that makes the row Linked).
    pub fn answer_create(&mut self, record: &RecordId, remote: &RemoteId) -> Vec<Decision> {
        let intent = self.id_of(|e| matches!(e, Event::CreateIntent(p) if &p.record == record));
        self.feed(Event::IntentSucceeded(IntentSucceeded {
            intent,
            remote: Some(remote.clone()),
            etag: Some("\"1\"".into()),
            crm: None,
        }))
    }

    /// The server id this fixture gives the item created for `record`.
    pub fn remote_for(&self, record: &RecordId) -> RemoteId {
        RemoteId::new(format!("{}/{}", self.id, record))
    }

    /// Feeds a row the mailbox owner's filters select, answers its create intent, and returns
    /// the server item id. Panics unless the row ends Linked.
    pub fn sync_new(&mut self, rec: &Record) -> RemoteId {
        let ds = self.feed(upsert(rec));
        assert_eq!(
            summary(&ds),
            [(17, "create_intent")],
            "{} should be created: {ds:#?}",
            rec.id
        );
        let remote = self.remote_for(&rec.id);
        let ds = self.answer_create(&rec.id, &remote);
        assert_eq!(summary(&ds), [(17, "link_created")]);
        assert_eq!(self.link(&rec.id).status, LinkStatus::Linked);
        // The connector's next listing shows the item as written: a baseline, not a change.
        let ds = self.feed(seen(remote_item(&remote, 1, written_fields(rec))));
        assert!(
            ds.is_empty(),
            "first sighting of a written item decides nothing: {ds:#?}"
        );
        remote
    }

    /// Answers an intent with success (no new server id).
    pub fn succeed(&mut self, intent: EventId) -> Vec<Decision> {
        self.feed(Event::IntentSucceeded(IntentSucceeded {
            intent,
            remote: None,
            etag: None,
            crm: None,
        }))
    }

    /// Answers an intent with a failure.
    pub fn fail(&mut self, intent: EventId, code: &str) -> Vec<Decision> {
        self.feed(Event::IntentFailed(IntentFailed {
            intent,
            error: server_error(code, None),
            crm: None,
        }))
    }

    /// The link of a row (panics when there is none).
    pub fn link(&self, record: &RecordId) -> &Link {
        self.state
            .links
            .get(record)
            .unwrap_or_else(|| panic!("{record} has no link"))
    }

    /// Replaces the owner's filters of one table.
    pub fn set_filters(&mut self, entity: Entity, exprs: &[&str]) -> Vec<Decision> {
        let filters = exprs
            .iter()
            .enumerate()
            .map(|(i, e)| filter(entity, &format!("{entity} filter {i}"), e, true))
            .collect();
        let obs = Event::FilterChanged(FilterChanged {
            user: self.user.clone(),
            entity,
            filters,
        });
        self.feed(obs)
    }

    /// Feeds `listing_failed` for a workload.
    pub fn listing_failed(
        &mut self,
        w: Workload,
        code: &str,
        retry_after: Option<Timestamp>,
    ) -> Vec<Decision> {
        self.feed(Event::ListingFailed(ListingFailed {
            workload: w,
            error: server_error(code, retry_after),
        }))
    }

    /// Feeds `listing_completed` for a workload.
    pub fn listing_completed(&mut self, w: Workload) -> Vec<Decision> {
        self.feed(Event::ListingCompleted(ListingCompleted {
            workload: w,
            items: 3,
        }))
    }
}

// ───────────── people and filters ─────────────

/// The address of a CRM user in the fixtures.
pub fn email_of(user: &str) -> String {
    format!("{user}@serenity.example")
}

/// A party that is a CRM user.
pub fn crm_user(user: &str) -> Party {
    Party {
        user: Some(UserId::new(user)),
        email: email_of(user),
        name: user.to_string(),
    }
}

/// A party that is an outside address (no CRM user).
pub fn outsider(email: &str) -> Party {
    Party {
        user: None,
        email: email.to_string(),
        name: email.to_string(),
    }
}

/// A saved filter.
pub fn filter(entity: Entity, name: &str, expr: &str, enabled: bool) -> SyncFilter {
    SyncFilter {
        id: FilterId::new(name.replace(' ', "-")),
        name: name.to_string(),
        entity,
        enabled,
        expr: expr.to_string(),
    }
}

/// A server error as a connector reports it.
pub fn server_error(code: &str, retry_after: Option<Timestamp>) -> ServerError {
    ServerError {
        code: code.to_string(),
        message: match code {
            "401" => "Unauthorized".into(),
            "503" => "Service Unavailable".into(),
            other => format!("error {other}"),
        },
        retry_after,
    }
}

// ───────────── records ─────────────

/// A scheduled, busy, one-hour appointment at `start`, owned by its organizer's user (or
/// `"nobody"`), version 1.
pub fn appointment(
    id: &str,
    organizer: Party,
    required: Vec<Party>,
    optional: Vec<Party>,
    start: Timestamp,
) -> Record {
    let owner = organizer
        .user
        .clone()
        .unwrap_or_else(|| UserId::new("nobody"));
    Record {
        id: RecordId::new(id),
        owner,
        version: 1,
        body: RecordBody::Appointment(Appointment {
            subject: format!("Meeting {id}"),
            organizer: Some(organizer),
            required,
            optional,
            start,
            end: start + Duration::hours(1),
            all_day: false,
            location: "Room 1".into(),
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

/// An active contact owned by `owner`, version 1.
pub fn contact(id: &str, owner: &str) -> Record {
    Record {
        id: RecordId::new(id),
        owner: UserId::new(owner),
        version: 1,
        body: RecordBody::Contact(Contact {
            full_name: format!("Contact {id}"),
            email: format!("{id}@customer.example"),
            phone: "+1 555 0100".into(),
            company: "Blue Sun".into(),
            state: ContactState::Active,
        }),
    }
}

/// An open task owned by `owner`, due in three days, version 1.
pub fn task(id: &str, owner: &str, now: Timestamp) -> Record {
    task_of_kind(id, owner, TaskKind::Task, now)
}

/// An open task-like activity (task, fax, letter, phone call), version 1.
pub fn task_of_kind(id: &str, owner: &str, kind: TaskKind, now: Timestamp) -> Record {
    Record {
        id: RecordId::new(id),
        owner: UserId::new(owner),
        version: 1,
        body: RecordBody::Task(Task {
            kind,
            subject: format!("Task {id}"),
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
    }
}

/// The next version of a record, with `f` applied to the whole row.
pub fn next_version(rec: &Record, f: impl FnOnce(&mut Record)) -> Record {
    let mut r = rec.clone();
    f(&mut r);
    r.version = rec.version + 1;
    r
}

/// The next version of an appointment, with `f` applied to its fields.
pub fn changed_appointment(rec: &Record, f: impl FnOnce(&mut Appointment)) -> Record {
    next_version(rec, |r| match &mut r.body {
        RecordBody::Appointment(a) => f(a),
        _ => panic!("{} is not an appointment", rec.id),
    })
}

/// The next version of a task, with `f` applied to its fields.
pub fn changed_task(rec: &Record, f: impl FnOnce(&mut Task)) -> Record {
    next_version(rec, |r| match &mut r.body {
        RecordBody::Task(t) => f(t),
        _ => panic!("{} is not a task", rec.id),
    })
}

/// The next version of a contact, with `f` applied to its fields.
pub fn changed_contact(rec: &Record, f: impl FnOnce(&mut Contact)) -> Record {
    next_version(rec, |r| match &mut r.body {
        RecordBody::Contact(c) => f(c),
        _ => panic!("{} is not a contact", rec.id),
    })
}

/// Changes the fields of a record (fixture setup, not a new version).
pub fn with_appointment(mut rec: Record, f: impl FnOnce(&mut Appointment)) -> Record {
    match &mut rec.body {
        RecordBody::Appointment(a) => f(a),
        _ => panic!("{} is not an appointment", rec.id),
    }
    rec
}

/// Changes the fields of a task (fixture setup, not a new version).
pub fn with_task(mut rec: Record, f: impl FnOnce(&mut Task)) -> Record {
    match &mut rec.body {
        RecordBody::Task(t) => f(t),
        _ => panic!("{} is not a task", rec.id),
    }
    rec
}

// ───────────── observations ─────────────

/// `record_upserted`.
pub fn upsert(rec: &Record) -> Event {
    Event::RecordUpserted(RecordUpserted {
        record: rec.clone(),
    })
}

/// `record_deleted` (a physical delete in the CRM).
pub fn deleted(rec: &Record) -> Event {
    Event::RecordDeleted(RecordDeleted {
        id: rec.id.clone(),
        entity: rec.entity(),
    })
}

/// `owner_changed`, carrying the row after the change.
pub fn owner_changed(after: &Record, previous_owner: &str) -> Event {
    Event::OwnerChanged(OwnerChanged {
        record: after.clone(),
        previous_owner: UserId::new(previous_owner),
    })
}

/// `access_lost` for one user and some rows.
pub fn access_lost(user: &str, records: &[&Record], reason: AccessReason) -> Event {
    Event::AccessLost(AccessLost {
        user: UserId::new(user),
        records: records.iter().map(|r| r.id.clone()).collect(),
        reason,
    })
}

/// `access_regained` for one user and some rows.
pub fn access_regained(user: &str, records: &[&Record], reason: AccessReason) -> Event {
    Event::AccessRegained(AccessRegained {
        user: UserId::new(user),
        records: records.iter().map(|r| r.id.clone()).collect(),
        reason,
    })
}

/// `item_seen`.
pub fn seen(item: RemoteItem) -> Event {
    Event::ItemSeen(ItemSeen { item })
}

/// `item_gone` (a confirmed delete on the mail server).
pub fn gone(remote: &RemoteId) -> Event {
    Event::ItemGone(ItemGone {
        remote: remote.clone(),
    })
}

/// A server item with the given fields, untracked, not a copy.
pub fn remote_item(remote: &RemoteId, content_hash: u64, fields: RemoteFields) -> RemoteItem {
    RemoteItem {
        remote: remote.clone(),
        etag: format!("\"{content_hash}\""),
        content_hash,
        tracked: None,
        copy_of: None,
        fields,
    }
}

/// The server fields of a calendar event.
pub fn remote_appointment_fields(subject: &str, organizer: &str, start: Timestamp) -> RemoteFields {
    RemoteFields::Appointment {
        subject: subject.to_string(),
        organizer: Some(organizer.to_string()),
        start,
        end: start + Duration::hours(1),
        show_as: ShowAs::Busy,
    }
}

/// The server fields of a to-do.
pub fn remote_task_fields(subject: &str, percent_complete: u8) -> RemoteFields {
    RemoteFields::Task {
        subject: subject.to_string(),
        percent_complete,
        due: None,
    }
}

// ───────────── reading decisions ─────────────

/// `(rule number, event type name)` of each decision, in order.
pub fn summary(ds: &[Decision]) -> Vec<(u8, &'static str)> {
    ds.iter().map(|d| (d.rule.0, d.event.name())).collect()
}

macro_rules! picker {
    ($(#[$doc:meta])* $fn:ident, $variant:ident) => {
        $(#[$doc])*
        pub fn $fn(ds: &[Decision]) -> Vec<(u8, &$variant)> {
            ds.iter()
                .filter_map(|d| match &d.event {
                    Event::$variant(p) => Some((d.rule.0, p)),
                    _ => None,
                })
                .collect()
        }
    };
}

picker!(/// The create intents, with their rule.
    creates, CreateIntent);
picker!(/// The update intents, with their rule.
    updates, UpdateIntent);
picker!(/// The delete intents, with their rule.
    deletes, DeleteIntent);
picker!(/// The cancellation intents, with their rule.
    cancels, CancelIntent);
picker!(/// The unlink decisions, with their rule.
    unlinks, Unlinked);
picker!(/// The logical-delete decisions, with their rule.
    logical_deletes, LogicalDelete);
picker!(/// The no-action decisions, with their rule.
    no_actions, NoAction);
picker!(/// The workload-enabled decisions, with their rule.
    enables, WorkloadEnabled);
picker!(/// The workload-disabled decisions, with their rule.
    disables, WorkloadDisabled);
picker!(/// The alerts, with their rule.
    alerts, AlertRaised);
picker!(/// The retries, with their rule.
    retries, RetryScheduled);
picker!(/// The error classifications, with their rule.
    classifications, ErrorClassified);
picker!(/// The link-created decisions, with their rule.
    links_created, LinkCreated);
picker!(/// The items tracked, with their rule.
    tracked, ItemTracked);
picker!(/// The items untracked, with their rule.
    untracked, ItemUntracked);
picker!(/// The mappings ended, with their rule.
    mappings_ended, MappingEnded);
picker!(/// The mappings started, with their rule.
    mappings_started, MappingStarted);
picker!(/// The organization claims, with their rule.
    claims, OrganizationClaimed);

/// The single decision of a kind; panics (showing all decisions) when there is not exactly one.
pub fn one<'a, T>(found: Vec<(u8, &'a T)>, ds: &[Decision]) -> (u8, &'a T) {
    assert_eq!(
        found.len(),
        1,
        "expected exactly one such decision in {:#?}",
        summary(ds)
    );
    found.into_iter().next().unwrap()
}

/// The server fields of an item as the engine wrote it from `rec`.
pub fn written_fields(rec: &Record) -> RemoteFields {
    match &rec.body {
        RecordBody::Appointment(a) => RemoteFields::Appointment {
            subject: a.subject.clone(),
            organizer: a.organizer.as_ref().map(|p| p.email.clone()),
            start: a.start,
            end: a.end,
            show_as: a.show_as,
        },
        RecordBody::Contact(c) => RemoteFields::Contact {
            full_name: c.full_name.clone(),
            email: c.email.clone(),
        },
        RecordBody::Task(t) => RemoteFields::Task {
            subject: t.subject.clone(),
            percent_complete: t.percent_complete,
            due: t.due,
        },
        RecordBody::Email(e) => RemoteFields::Task {
            subject: e.subject.clone(),
            percent_complete: 0,
            due: None,
        },
    }
}
