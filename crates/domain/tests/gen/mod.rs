//! Generators of plausible observation sequences for one mailbox, for the property tests.
//!
//! A [`Scenario`] is abstract: its steps pick CRM rows from a small pool by slot, and mail-server
//! items and pending intents by index. [`World::materialize`] turns a step into a concrete
//! observation *at run time*, looking at the mailbox state as it is then (which items are
//! linked, which intents are pending) and at the CRM as the generator models it (row versions
//! only increase, a deleted row is never upserted again under the same id). A step that does not
//! fit the moment (an owner change of a row that does not exist yet, an outcome when nothing is
//! pending) yields nothing. The observations actually produced are what the tests record.

use ledgersync_domain::event::*;
use ledgersync_domain::filter::{FilterSet, SyncFilter};
use ledgersync_domain::records::{
    ActivityState, Appointment, Contact, ContactState, Entity, Party, Priority, Record, RecordBody,
    RecordRef, ShowAs, Task, TaskKind,
};
use ledgersync_domain::settings::TaskDeletionMode;
use ledgersync_domain::state::MailboxState;
use ledgersync_domain::time::timestamp_from_civil;
use ledgersync_domain::{
    Duration, EventId, FilterId, MailboxId, OrgId, OrgSettings, ProfileId, RecordId, RemoteId,
    Timestamp, UserId,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// The mailbox under test.
pub const MAILBOX: &str = "mb1";
/// Its address (the address of user u1).
pub const ADDRESS: &str = "u1@contoso.example";
/// The organization.
pub const ORG: &str = "org-contoso";
/// CRM users; u1 is mapped to the mailbox.
pub const USERS: [&str; 3] = ["u1", "u2", "u3"];
/// Outside parties (no CRM user).
pub const EXTERNALS: [(&str, &str); 2] = [
    ("dana@fabrikam.example", "Dana Ito"),
    ("eve@northwind.example", "Eve Lund"),
];
/// The pool of CRM rows: a slot's table never changes; a deleted row's slot comes back under a
/// new id (`appt-1`, then `appt-1.g2`, ...).
pub const SLOTS: [(&str, Entity); 6] = [
    ("appt-1", Entity::Appointment),
    ("appt-2", Entity::Appointment),
    ("contact-1", Entity::Contact),
    ("contact-2", Entity::Contact),
    ("task-1", Entity::Task),
    ("task-2", Entity::Task),
];
/// Valid filter expressions per table.
pub const APPOINTMENT_FILTERS: [&str; 7] = [
    "organizer = me or required_attendee = me",
    "attendee = me",
    "owner = me",
    "start >= now - 7d",
    "organizer = me and not state = canceled",
    "service = false and start > now",
    "subject contains \"review\"",
];
/// Valid contact filters.
pub const CONTACT_FILTERS: [&str; 4] = [
    "owner = me and state = active",
    "owner = me",
    "state = active",
    "owner = \"u2\"",
];
/// Valid task filters.
pub const TASK_FILTERS: [&str; 4] = [
    "owner = me",
    "owner = me and not state = completed",
    "due >= now - 1d",
    "subject contains \"report\"",
];

const SUBJECTS: [&str; 4] = [
    "Quarterly review",
    "Pipeline sync",
    "Weekly report",
    "Site visit",
];
const CONTACT_NAMES: [(&str, &str); 3] = [
    ("Dana Ito", "dana@fabrikam.example"),
    ("Eve Lund", "eve@northwind.example"),
    ("Farid Haddad", "farid@tailspin.example"),
];

/// When every scenario starts.
pub fn start_time() -> Timestamp {
    timestamp_from_civil(2026, 11, 20, 8, 0)
}

// ───────────────────────────── abstract steps ─────────────────────────────

/// A participant: a CRM user (index into [`USERS`]) or an outside address.
#[derive(Clone, Copy, Debug)]
pub enum PartySeed {
    /// A CRM user.
    User(usize),
    /// An outside address (index into [`EXTERNALS`]).
    External(usize),
}

/// The table-specific fields of an upsert, relative to the time it is materialized.
#[derive(Clone, Debug)]
pub enum BodySeed {
    /// An appointment.
    Appointment {
        subject: usize,
        organizer: Option<PartySeed>,
        required: Vec<PartySeed>,
        optional: Vec<PartySeed>,
        start_offset_min: i64,
        length_min: i64,
        all_day: bool,
        state: ActivityState,
        show_as: ShowAs,
        priority: Priority,
        service: bool,
        recurring: bool,
        location: u8,
    },
    /// A contact.
    Contact {
        name: usize,
        state: ContactState,
        phone: u8,
    },
    /// A task-like activity.
    Task {
        kind: TaskKind,
        subject: usize,
        start_offset_min: Option<i64>,
        due_offset_min: Option<i64>,
        actual_end_offset_min: Option<i64>,
        percent: u8,
        state: ActivityState,
        priority: Priority,
    },
}

/// Which mail-server item a step is about.
#[derive(Clone, Debug)]
pub enum RemotePick {
    /// One the mailbox links now (falls back to an unknown one when none is linked).
    Linked(Index),
    /// One the mailbox has seen before, linked or not.
    Known(Index),
    /// One the mailbox has never heard of.
    Unknown(u8),
}

/// The parsed fields of a server item (when not dictated by the row it links).
#[derive(Clone, Debug)]
pub struct FieldsSeed {
    kind: u8,
    organizer_is_mailbox: bool,
    start_offset_min: i64,
    percent: u8,
    subject: usize,
}

/// One abstract step of a scenario.
#[derive(Clone, Debug)]
pub enum Step {
    /// The CRM sends a new snapshot of the row in `slot`.
    Upsert {
        slot: usize,
        owner: usize,
        bump: u64,
        body: BodySeed,
    },
    /// The CRM sends the last snapshot again (redelivery).
    Redeliver { slot: usize },
    /// The row is reassigned.
    OwnerChange { slot: usize, owner: usize },
    /// The row is deleted in the CRM.
    Delete { slot: usize },
    /// A user loses read access to rows.
    AccessLost {
        user: usize,
        slots: Vec<usize>,
        reason: AccessReason,
    },
    /// A user regains read access to rows.
    AccessRegained {
        user: usize,
        slots: Vec<usize>,
        reason: AccessReason,
    },
    /// A user's filters for one table change (possibly to none, or all disabled).
    FilterChange {
        user: usize,
        entity: Entity,
        filters: Vec<(usize, bool)>,
    },
    /// A connector sees an item.
    ItemSeen {
        target: RemotePick,
        hash: u64,
        tracked: Option<TrackedBy>,
        copy_of: Option<Index>,
        fields: FieldsSeed,
        etag: u8,
    },
    /// A connector confirms an item is gone.
    ItemGone { target: RemotePick },
    /// A complete listing is about to report items gone (the delete breaker weighs them).
    DeletionsListed { targets: Vec<RemotePick> },
    /// An administrator approves the deletes the delete breaker holds.
    DeletesApproved,
    /// A listing completes.
    ListingCompleted { workload: Workload, items: u32 },
    /// A listing fails.
    ListingFailed {
        workload: Workload,
        error: ServerError,
    },
    /// A listing is partial.
    ListingPartial { workload: Workload },
    /// The sync cursor is invalidated.
    CursorReset { workload: Workload },
    /// An email arrives.
    EmailReceived { n: u8 },
    /// A pending intent is carried out (or fails).
    Outcome {
        pick: Index,
        success: bool,
        error: ServerError,
    },
    /// An outcome already recorded is delivered again.
    DuplicateOutcome { pick: Index, success: bool },
    /// An administrator disables a workload.
    DisableRequested { workload: Workload },
    /// Test & Enable runs again.
    Retest {
        incoming: TestResult,
        outgoing: TestResult,
        act: TestResult,
    },
    /// The mailbox is mapped to another user, or its user to another mailbox.
    Remap { to_user: usize, other_mailbox: bool },
}

/// The lifecycle at the start of a scenario.
#[derive(Clone, Debug)]
pub struct LifecycleSeed {
    /// Server type of the profile.
    pub server_type: ServerType,
    /// Is the address approved?
    pub approved: bool,
    /// One or more Test & Enable runs: (incoming, outgoing, act, another org's marker, override).
    pub tests: Vec<(TestResult, TestResult, TestResult, bool, bool)>,
}

/// A whole scenario: settings, lifecycle, then steps each preceded by a clock advance (minutes).
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Organization settings in force.
    pub settings: OrgSettings,
    /// Lifecycle.
    pub lifecycle: LifecycleSeed,
    /// (minutes the clock moves forward, step).
    pub steps: Vec<(i64, Step)>,
}

// ───────────────────────────── strategies ─────────────────────────────

fn workload() -> impl Strategy<Value = Workload> {
    prop_oneof![1 => Just(Workload::Incoming), 1 => Just(Workload::Outgoing), 2 => Just(Workload::Act)]
}

fn test_result() -> impl Strategy<Value = TestResult> {
    prop_oneof![6 => Just(TestResult::Success), 2 => Just(TestResult::Failure), 1 => Just(TestResult::NotRun)]
}

fn act_test_result() -> impl Strategy<Value = TestResult> {
    prop_oneof![8 => Just(TestResult::Success), 1 => Just(TestResult::Failure), 1 => Just(TestResult::NotRun)]
}

fn access_reason() -> impl Strategy<Value = AccessReason> {
    prop_oneof![
        Just(AccessReason::Role),
        Just(AccessReason::Share),
        Just(AccessReason::Team),
        Just(AccessReason::BusinessUnit)
    ]
}

fn activity_state() -> impl Strategy<Value = ActivityState> {
    prop_oneof![
        2 => Just(ActivityState::Open),
        5 => Just(ActivityState::Scheduled),
        1 => Just(ActivityState::Completed),
        2 => Just(ActivityState::Canceled)
    ]
}

fn show_as() -> impl Strategy<Value = ShowAs> {
    prop_oneof![4 => Just(ShowAs::Busy), 1 => Just(ShowAs::Free), 1 => Just(ShowAs::Tentative), 1 => Just(ShowAs::OutOfOffice)]
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![1 => Just(Priority::Low), 2 => Just(Priority::Normal), 1 => Just(Priority::High)]
}

/// A user (u1 weighted: it is the mailbox's owner) or an outside party.
fn party() -> impl Strategy<Value = PartySeed> {
    prop_oneof![
        3 => Just(PartySeed::User(0)),
        2 => (1..3usize).prop_map(PartySeed::User),
        2 => (0..EXTERNALS.len()).prop_map(PartySeed::External)
    ]
}

fn user_index() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 2 => 1..3usize]
}

/// Minutes relative to now: mostly the coming two weeks, sometimes well in the past.
fn offset_min() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => 10i64..(14 * 24 * 60),
        1 => -(3 * 24 * 60i64)..10i64,
        1 => -(15 * 24 * 60i64)..-(3 * 24 * 60i64)
    ]
}

fn body(entity: Entity) -> BoxedStrategy<BodySeed> {
    match entity {
        Entity::Appointment => (
            (0..SUBJECTS.len(), proptest::option::weighted(0.9, party())),
            proptest::collection::vec(party(), 0..3),
            proptest::collection::vec(party(), 0..2),
            (offset_min(), 15i64..240, proptest::bool::weighted(0.1)),
            (activity_state(), show_as(), priority()),
            (proptest::bool::weighted(0.15), proptest::bool::weighted(0.2), 0..3u8),
        )
            .prop_map(
                |((subject, organizer), required, optional, (start_offset_min, length_min, all_day), (state, show_as, priority), (service, recurring, location))| {
                    BodySeed::Appointment {
                        subject,
                        organizer,
                        required,
                        optional,
                        start_offset_min,
                        length_min,
                        all_day,
                        state,
                        show_as,
                        priority,
                        service,
                        recurring,
                        location,
                    }
                },
            )
            .boxed(),
        Entity::Contact => (
            0..CONTACT_NAMES.len(),
            prop_oneof![3 => Just(ContactState::Active), 1 => Just(ContactState::Inactive)],
            0..4u8,
        )
            .prop_map(|(name, state, phone)| BodySeed::Contact { name, state, phone })
            .boxed(),
        _ => (
            prop_oneof![3 => Just(TaskKind::Task), 1 => Just(TaskKind::Fax), 1 => Just(TaskKind::Letter), 1 => Just(TaskKind::PhoneCall)],
            0..SUBJECTS.len(),
            proptest::option::of(offset_min()),
            proptest::option::weighted(0.8, offset_min()),
            proptest::option::weighted(0.2, offset_min()),
            prop_oneof![Just(0u8), Just(50), Just(100)],
            activity_state(),
            priority(),
        )
            .prop_map(
                |(kind, subject, start_offset_min, due_offset_min, actual_end_offset_min, percent, state, priority)| {
                    BodySeed::Task {
                        kind,
                        subject,
                        start_offset_min,
                        due_offset_min,
                        actual_end_offset_min,
                        percent,
                        state,
                        priority,
                    }
                },
            )
            .boxed(),
    }
}

fn slot() -> impl Strategy<Value = usize> {
    0..SLOTS.len()
}

fn server_error() -> impl Strategy<Value = ServerError> {
    (
        prop_oneof![1 => Just("401"), 5 => Just("503"), 3 => Just("timeout")],
        proptest::option::weighted(0.3, 1i64..120),
    )
        .prop_map(|(code, retry_min)| ServerError {
            code: code.into(),
            message: match code {
                "401" => "Unauthorized".into(),
                "503" => "Service Unavailable".into(),
                _ => "no answer within 30 s".into(),
            },
            // Relative retry-after is not expressible without `now`; use a fixed early time
            // plus minutes, so that some are already past and some are ahead.
            retry_after: retry_min.map(|m| start_time() + Duration::minutes(m * 20)),
        })
}

fn remote_pick() -> impl Strategy<Value = RemotePick> {
    prop_oneof![
        5 => any::<Index>().prop_map(RemotePick::Linked),
        2 => any::<Index>().prop_map(RemotePick::Known),
        2 => (0..3u8).prop_map(RemotePick::Unknown)
    ]
}

fn tracked_by() -> impl Strategy<Value = Option<TrackedBy>> {
    prop_oneof![
        5 => Just(None),
        2 => Just(Some(TrackedBy::Category)),
        1 => Just(Some(TrackedBy::Folder)),
        1 => Just(Some(TrackedBy::Token))
    ]
}

fn fields_seed() -> impl Strategy<Value = FieldsSeed> {
    (
        0..3u8,
        any::<bool>(),
        offset_min(),
        prop_oneof![Just(0u8), Just(50), Just(100)],
        0..SUBJECTS.len(),
    )
        .prop_map(
            |(kind, organizer_is_mailbox, start_offset_min, percent, subject)| FieldsSeed {
                kind,
                organizer_is_mailbox,
                start_offset_min,
                percent,
                subject,
            },
        )
}

fn filter_entity() -> impl Strategy<Value = Entity> {
    prop_oneof![2 => Just(Entity::Appointment), 1 => Just(Entity::Contact), 1 => Just(Entity::Task)]
}

fn filter_change() -> impl Strategy<Value = Step> {
    (
        prop_oneof![5 => Just(0usize), 1 => 1..3usize],
        filter_entity(),
        prop_oneof![
            1 => Just(Vec::new()),
            5 => proptest::collection::vec((0..7usize, proptest::bool::weighted(0.8)), 1..3)
        ],
    )
        .prop_map(|(user, entity, filters)| Step::FilterChange {
            user,
            entity,
            filters,
        })
}

fn upsert() -> impl Strategy<Value = Step> {
    (slot(), user_index(), 1u64..4).prop_flat_map(|(slot, owner, bump)| {
        body(SLOTS[slot].1).prop_map(move |body| Step::Upsert {
            slot,
            owner,
            bump,
            body,
        })
    })
}

/// One step of the mix.
pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        24 => upsert(),
        2 => slot().prop_map(|slot| Step::Redeliver { slot }),
        4 => (slot(), 0..3usize).prop_map(|(slot, owner)| Step::OwnerChange { slot, owner }),
        5 => slot().prop_map(|slot| Step::Delete { slot }),
        4 => (user_index(), proptest::collection::vec(slot(), 1..4), access_reason())
            .prop_map(|(user, slots, reason)| Step::AccessLost { user, slots, reason }),
        3 => (user_index(), proptest::collection::vec(slot(), 1..4), access_reason())
            .prop_map(|(user, slots, reason)| Step::AccessRegained { user, slots, reason }),
        5 => filter_change(),
        12 => (remote_pick(), 0..3u64, tracked_by(), proptest::option::weighted(0.15, any::<Index>()), fields_seed(), any::<u8>())
            .prop_map(|(target, hash, tracked, copy_of, fields, etag)| Step::ItemSeen { target, hash, tracked, copy_of, fields, etag }),
        4 => remote_pick().prop_map(|target| Step::ItemGone { target }),
        2 => proptest::collection::vec(remote_pick(), 1..6).prop_map(|targets| Step::DeletionsListed { targets }),
        1 => Just(Step::DeletesApproved),
        3 => (workload(), 0..500u32).prop_map(|(workload, items)| Step::ListingCompleted { workload, items }),
        3 => (workload(), server_error()).prop_map(|(workload, error)| Step::ListingFailed { workload, error }),
        2 => workload().prop_map(|workload| Step::ListingPartial { workload }),
        1 => workload().prop_map(|workload| Step::CursorReset { workload }),
        1 => (0..4u8).prop_map(|n| Step::EmailReceived { n }),
        16 => (any::<Index>(), proptest::bool::weighted(0.8), server_error())
            .prop_map(|(pick, success, error)| Step::Outcome { pick, success, error }),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(pick, success)| Step::DuplicateOutcome { pick, success }),
        1 => workload().prop_map(|workload| Step::DisableRequested { workload }),
        3 => (test_result(), test_result(), act_test_result())
            .prop_map(|(incoming, outgoing, act)| Step::Retest { incoming, outgoing, act }),
        1 => (1..3usize, proptest::bool::weighted(0.3)).prop_map(|(to_user, other_mailbox)| Step::Remap { to_user, other_mailbox }),
    ]
}

/// Minutes the clock moves forward before a step.
fn advance() -> impl Strategy<Value = i64> {
    prop_oneof![2 => Just(0i64), 5 => 1i64..60, 2 => 60i64..(24 * 60), 1 => (24 * 60i64)..(5 * 24 * 60i64)]
}

/// Random organization settings: every boolean flipped at random, a random task deletion mode,
/// random delete breaker limits.
pub fn settings() -> impl Strategy<Value = OrgSettings> {
    (
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop_oneof![
            Just(TaskDeletionMode::Delete),
            Just(TaskDeletionMode::DeleteIfNotCompleted),
            Just(TaskDeletionMode::Never)
        ],
        (3u32..12, 1i64..30, 0i64..10),
        (1u8..=100, 1u32..60),
    )
        .prop_map(
            |((a, b, c, d), (e, f, g), mode, (limit, interval, cutoff), (percent, items))| {
                OrgSettings {
                    distinct_physical_logical_deletes: a,
                    propagate_appointment_cancellations: b,
                    update_past_meetings: c,
                    track_appointments_from_non_organizer: d,
                    task_deletion_mode: mode,
                    ignore_copied_items: e,
                    contact_delete_only_for_non_owner: f,
                    require_approved_address: g,
                    transient_retry_limit: limit,
                    transient_retry_interval: Duration::minutes(interval),
                    reminder_cutoff: Duration::days(cutoff),
                    schedule: Default::default(),
                    alert_retention_days: OrgSettings::default().alert_retention_days,
                    delete_breaker_percent: percent,
                    delete_breaker_items: items,
                    email: Default::default(),
                    version: ledgersync_domain::SettingsVersion::DEFAULTS,
                }
            },
        )
}

fn lifecycle() -> impl Strategy<Value = LifecycleSeed> {
    let test = (
        test_result(),
        test_result(),
        prop_oneof![9 => Just(TestResult::Success), 1 => Just(TestResult::Failure)],
        proptest::bool::weighted(0.15),
        any::<bool>(),
    );
    (
        prop_oneof![18 => Just(ServerType::Groupware), 1 => Just(ServerType::ImapSmtp), 1 => Just(ServerType::Pop3Smtp)],
        proptest::bool::weighted(0.8),
        proptest::collection::vec(test, 1..3),
    )
        .prop_map(|(server_type, approved, tests)| LifecycleSeed { server_type, approved, tests })
}

/// A whole scenario of `len` steps.
pub fn scenario(len: std::ops::Range<usize>) -> impl Strategy<Value = Scenario> {
    (
        settings(),
        lifecycle(),
        proptest::collection::vec((advance(), step()), len),
    )
        .prop_map(|(settings, lifecycle, steps)| Scenario {
            settings,
            lifecycle,
            steps,
        })
}

// ───────────────────────────── materialization ─────────────────────────────

/// The generator's model of the CRM and of the connectors, to turn abstract steps into
/// observations that could really happen.
#[derive(Clone, Debug)]
pub struct World {
    /// The clock.
    pub now: Timestamp,
    /// Latest snapshot of each row, by slot.
    rows: [Option<Record>; SLOTS.len()],
    /// How many times each slot's row was deleted (its id suffix).
    generation: [u32; SLOTS.len()],
    /// Ids of server items created by intents.
    next_remote: u32,
    /// Outcomes already delivered, for redelivery.
    delivered: Vec<Event>,
}

fn party_of(seed: PartySeed) -> Party {
    match seed {
        PartySeed::User(i) => Party {
            user: Some(UserId::new(USERS[i])),
            email: format!("{}@contoso.example", USERS[i]),
            name: format!("User {}", USERS[i]),
        },
        PartySeed::External(i) => Party {
            user: None,
            email: EXTERNALS[i].0.into(),
            name: EXTERNALS[i].1.into(),
        },
    }
}

fn pick<T: Clone>(items: &[T], i: &Index) -> Option<T> {
    (!items.is_empty()).then(|| items[i.index(items.len())].clone())
}

fn filters_for(entity: Entity) -> &'static [&'static str] {
    match entity {
        Entity::Appointment => &APPOINTMENT_FILTERS,
        Entity::Contact => &CONTACT_FILTERS,
        _ => &TASK_FILTERS,
    }
}

impl World {
    /// A world at the start time with no rows.
    pub fn new() -> Self {
        Self {
            now: start_time(),
            rows: Default::default(),
            generation: [0; SLOTS.len()],
            next_remote: 0,
            delivered: Vec::new(),
        }
    }

    /// The lifecycle observations of a scenario.
    pub fn lifecycle(&self, seed: &LifecycleSeed) -> Vec<Event> {
        let mailbox = MailboxId::new(MAILBOX);
        let mut out = vec![
            Event::MailboxRegistered(MailboxRegistered {
                mailbox: mailbox.clone(),
                org: OrgId::new(ORG),
                address: ADDRESS.into(),
                profile: ProfileId::new("profile-1"),
                server_type: seed.server_type,
            }),
            Event::MailboxMapped(MailboxMapped {
                mailbox: mailbox.clone(),
                user: UserId::new(USERS[0]),
            }),
            Event::AddressApproved(AddressApproved {
                mailbox: mailbox.clone(),
                approved: seed.approved,
            }),
        ];
        for (incoming, outgoing, act, other_org, override_other_org) in &seed.tests {
            out.push(Event::MailboxTested(MailboxTested {
                mailbox: mailbox.clone(),
                incoming: *incoming,
                outgoing: *outgoing,
                act: *act,
                act_org_marker: other_org.then(|| OrgId::new("org-fabrikam")),
                override_other_org: *override_other_org,
            }));
        }
        out
    }

    fn row_id(&self, slot: usize) -> RecordId {
        match self.generation[slot] {
            0 => RecordId::new(SLOTS[slot].0),
            g => RecordId::new(format!("{}.g{}", SLOTS[slot].0, g + 1)),
        }
    }

    fn at(&self, offset_min: i64) -> Timestamp {
        self.now + Duration::minutes(offset_min)
    }

    fn make_body(&self, seed: &BodySeed) -> RecordBody {
        match seed {
            BodySeed::Appointment {
                subject,
                organizer,
                required,
                optional,
                start_offset_min,
                length_min,
                all_day,
                state,
                show_as,
                priority,
                service,
                recurring,
                location,
            } => RecordBody::Appointment(Appointment {
                subject: SUBJECTS[*subject].into(),
                organizer: organizer.map(party_of),
                required: required.iter().copied().map(party_of).collect(),
                optional: optional.iter().copied().map(party_of).collect(),
                start: self.at(*start_offset_min),
                end: self.at(start_offset_min + length_min),
                all_day: *all_day,
                location: format!("Room {location}"),
                body: format!("Agenda for {}", SUBJECTS[*subject]),
                state: *state,
                show_as: *show_as,
                priority: *priority,
                regarding: Some(RecordRef {
                    table: "account".into(),
                    id: RecordId::new("acc-1"),
                    name: "Fabrikam".into(),
                }),
                service: *service,
                recurrence: recurring.then(|| "FREQ=WEEKLY;COUNT=4".into()),
            }),
            BodySeed::Contact { name, state, phone } => RecordBody::Contact(Contact {
                full_name: CONTACT_NAMES[*name].0.into(),
                email: CONTACT_NAMES[*name].1.into(),
                phone: format!("+1 555 010{phone}"),
                company: "Fabrikam".into(),
                state: *state,
            }),
            BodySeed::Task {
                kind,
                subject,
                start_offset_min,
                due_offset_min,
                actual_end_offset_min,
                percent,
                state,
                priority,
            } => RecordBody::Task(Task {
                kind: *kind,
                subject: SUBJECTS[*subject].into(),
                body: "Follow up".into(),
                start: start_offset_min.map(|m| self.at(m)),
                due: due_offset_min.map(|m| self.at(m)),
                actual_start: None,
                actual_end: actual_end_offset_min.map(|m| self.at(m)),
                percent_complete: *percent,
                state: *state,
                priority: *priority,
                regarding: None,
            }),
        }
    }

    fn fresh_remote(&mut self) -> RemoteId {
        self.next_remote += 1;
        RemoteId::new(format!("srv-{}", self.next_remote))
    }

    fn remote_of(&self, pick_: &RemotePick, state: &MailboxState) -> RemoteId {
        let linked: Vec<RemoteId> = state.by_remote.keys().cloned().collect();
        let known: Vec<RemoteId> = state
            .remote_items
            .keys()
            .chain(state.by_remote.keys())
            .cloned()
            .collect();
        match pick_ {
            RemotePick::Linked(i) => {
                pick(&linked, i).unwrap_or_else(|| RemoteId::new("srv-unknown-0"))
            }
            RemotePick::Known(i) => {
                pick(&known, i).unwrap_or_else(|| RemoteId::new("srv-unknown-1"))
            }
            RemotePick::Unknown(n) => RemoteId::new(format!("srv-unknown-{n}")),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, minutes: i64) {
        self.now = self.now + Duration::minutes(minutes);
    }

    /// The concrete observation for `step` given the mailbox `state` now, if the step fits.
    pub fn materialize(&mut self, step: &Step, state: &MailboxState) -> Option<Event> {
        let mailbox = MailboxId::new(MAILBOX);
        Some(match step {
            Step::Upsert {
                slot,
                owner,
                bump,
                body,
            } => {
                let version = self.rows[*slot].as_ref().map_or(0, |r| r.version) + bump;
                let record = Record {
                    id: self.row_id(*slot),
                    owner: UserId::new(USERS[*owner]),
                    version,
                    body: self.make_body(body),
                };
                self.rows[*slot] = Some(record.clone());
                Event::RecordUpserted(RecordUpserted { record })
            }
            Step::Redeliver { slot } => Event::RecordUpserted(RecordUpserted {
                record: self.rows[*slot].clone()?,
            }),
            Step::OwnerChange { slot, owner } => {
                let row = self.rows[*slot].as_mut()?;
                let new_owner = UserId::new(USERS[*owner]);
                if row.owner == new_owner {
                    return None;
                }
                let previous_owner = std::mem::replace(&mut row.owner, new_owner);
                row.version += 1;
                Event::OwnerChanged(OwnerChanged {
                    record: row.clone(),
                    previous_owner,
                })
            }
            Step::Delete { slot } => {
                let row = self.rows[*slot].take()?;
                self.generation[*slot] += 1;
                Event::RecordDeleted(RecordDeleted {
                    id: row.id.clone(),
                    entity: row.entity(),
                })
            }
            Step::AccessLost {
                user,
                slots,
                reason,
            } => Event::AccessLost(AccessLost {
                user: UserId::new(USERS[*user]),
                records: self.ids(slots),
                reason: *reason,
            }),
            Step::AccessRegained {
                user,
                slots,
                reason,
            } => Event::AccessRegained(AccessRegained {
                user: UserId::new(USERS[*user]),
                records: self.ids(slots),
                reason: *reason,
            }),
            Step::FilterChange {
                user,
                entity,
                filters,
            } => {
                let pool = filters_for(*entity);
                Event::FilterChanged(FilterChanged {
                    user: UserId::new(USERS[*user]),
                    entity: *entity,
                    filters: filters
                        .iter()
                        .enumerate()
                        .map(|(n, (i, enabled))| SyncFilter {
                            id: FilterId::new(format!("f-{}-{n}", entity.name())),
                            name: format!("{} filter {n}", entity.name()),
                            entity: *entity,
                            enabled: *enabled,
                            expr: pool[i % pool.len()].into(),
                        })
                        .collect(),
                })
            }
            Step::ItemSeen {
                target,
                hash,
                tracked,
                copy_of,
                fields,
                etag,
            } => {
                let remote = self.remote_of(target, state);
                let linked_row = state
                    .by_remote
                    .get(&remote)
                    .and_then(|id| state.records.get(id));
                let kind = match linked_row.map(|r| r.entity()) {
                    Some(Entity::Appointment) => 0,
                    Some(Entity::Contact) => 1,
                    Some(_) => 2,
                    None => fields.kind,
                };
                let title = linked_row.map_or_else(
                    || SUBJECTS[fields.subject].to_string(),
                    |r| r.title().to_string(),
                );
                let fields = match kind {
                    0 => RemoteFields::Appointment {
                        subject: title,
                        organizer: Some(if fields.organizer_is_mailbox {
                            ADDRESS.to_string()
                        } else {
                            "u2@contoso.example".to_string()
                        }),
                        start: self.at(fields.start_offset_min),
                        end: self.at(fields.start_offset_min + 60),
                        show_as: ShowAs::Busy,
                    },
                    1 => RemoteFields::Contact {
                        full_name: title,
                        email: "someone@fabrikam.example".into(),
                    },
                    _ => RemoteFields::Task {
                        subject: title,
                        percent_complete: fields.percent,
                        due: Some(self.at(fields.start_offset_min)),
                    },
                };
                let linked: Vec<RemoteId> = state
                    .by_remote
                    .keys()
                    .filter(|r| **r != remote)
                    .cloned()
                    .collect();
                Event::ItemSeen(ItemSeen {
                    item: RemoteItem {
                        remote,
                        etag: format!("\"e{etag}\""),
                        content_hash: *hash,
                        tracked: *tracked,
                        copy_of: copy_of.as_ref().and_then(|i| pick(&linked, i)),
                        fields,
                    },
                })
            }
            Step::ItemGone { target } => Event::ItemGone(ItemGone {
                remote: self.remote_of(target, state),
            }),
            Step::DeletionsListed { targets } => Event::DeletionsListed(DeletionsListed {
                workload: Workload::Act,
                remotes: targets.iter().map(|t| self.remote_of(t, state)).collect(),
            }),
            Step::ListingCompleted { workload, items } => {
                Event::ListingCompleted(ListingCompleted {
                    workload: *workload,
                    items: *items,
                })
            }
            Step::ListingFailed { workload, error } => Event::ListingFailed(ListingFailed {
                workload: *workload,
                error: error.clone(),
            }),
            Step::ListingPartial { workload } => Event::ListingPartial(ListingPartial {
                workload: *workload,
                reason: "the server stopped answering after 200 items".into(),
            }),
            Step::CursorReset { workload } => Event::CursorReset(CursorReset {
                workload: *workload,
                reason: "sync-token expired".into(),
            }),
            // An even one answers a tracked email through its token; an odd one answers
            // nothing, so the default method (replies only) rejects it (R54).
            Step::EmailReceived { n } => Event::EmailReceived(EmailReceived {
                remote: RemoteId::new(format!("INBOX/7/{n}")),
                message_id: format!("<{n}@fabrikam.example>"),
                subject: if n % 2 == 0 {
                    "RE: renewal CRM:0001001".into()
                } else {
                    "RE: renewal".into()
                },
                from: EXTERNALS[0].0.into(),
                to: vec![ADDRESS.into()],
                in_reply_to: None,
                references: vec![],
                thread_index: None,
                cc: vec![],
                bcc: vec![],
                received: Timestamp(0),
                irm_protected: false,
                folder: EmailFolder::Inbox,
                manual: None,
                size: 1_000,
                facts: EmailFacts {
                    tracked: vec![ledgersync_domain::email::correlate::TrackedEmail {
                        activity: RecordId::new("email-renewal"),
                        message_id: "renewal@contoso.example".into(),
                        token: Some("CRM:0001001".into()),
                        conversation: vec![],
                        regarding: None,
                        owner: None,
                        hashes: Default::default(),
                        outgoing: true,
                    }],
                    ..EmailFacts::default()
                },
            }),
            Step::Outcome {
                pick: i,
                success,
                error,
            } => {
                let pending: Vec<EventId> = state.intents.keys().copied().collect();
                let intent = pick(&pending, i)?;
                let p = &state.intents[&intent];
                // A CRM command is answered by the CRM: its result, as the shell records it
                // (a track command's row under a new CRM id; a retryable failure or not).
                if let Some(c) = &p.command {
                    let status = if *success {
                        ledgersync_domain::crm::ResultStatus::Done {
                            record: if c.command.creates() {
                                RecordId::new(format!("crm-{}", self.fresh_remote()))
                            } else {
                                p.record.clone()
                            },
                            version: c.version + 1,
                        }
                    } else {
                        ledgersync_domain::crm::ResultStatus::Failed {
                            reason: error.message.clone(),
                            code: Some(error.code.clone()),
                            retryable: error.code.len() % 2 == 0,
                            retry_after: error.retry_after,
                        }
                    };
                    let result = ledgersync_domain::crm::CommandResult {
                        key: ledgersync_domain::crm::CommandKey::new(state.id.clone()?, intent),
                        status,
                    };
                    if let Ok(ledgersync_domain::crm::Settlement::Record(event)) =
                        ledgersync_domain::crm::settle(state, &result)
                    {
                        self.delivered.push((*event).clone());
                        return Some(*event);
                    }
                }
                let event = if *success {
                    let remote = match (p.kind, p.to_crm) {
                        (ledgersync_domain::state::IntentKind::Create, false) => {
                            Some(self.fresh_remote())
                        }
                        _ => p.remote.clone(),
                    };
                    Event::IntentSucceeded(IntentSucceeded {
                        intent,
                        remote,
                        etag: Some(format!("\"o{}\"", self.next_remote)),
                        crm: None,
                    })
                } else {
                    Event::IntentFailed(IntentFailed {
                        intent,
                        error: error.clone(),
                        crm: None,
                    })
                };
                self.delivered.push(event.clone());
                event
            }
            Step::DuplicateOutcome { pick: i, success } => {
                let again = pick(&self.delivered, i)?;
                match (again, success) {
                    (Event::IntentSucceeded(p), false) => Event::IntentFailed(IntentFailed {
                        intent: p.intent,
                        error: ServerError {
                            code: "timeout".into(),
                            message: "late duplicate".into(),
                            retry_after: None,
                        },
                        crm: None,
                    }),
                    (e, _) => e,
                }
            }
            Step::DisableRequested { workload } => Event::DisableRequested(DisableRequested {
                mailbox,
                workload: *workload,
                by: "admin@contoso.example".into(),
            }),
            Step::DeletesApproved => Event::DeletesApproved(DeletesApproved {
                mailbox,
                by: "admin@contoso.example".into(),
            }),
            Step::Retest {
                incoming,
                outgoing,
                act,
            } => Event::MailboxTested(MailboxTested {
                mailbox,
                incoming: *incoming,
                outgoing: *outgoing,
                act: *act,
                act_org_marker: None,
                override_other_org: false,
            }),
            Step::Remap {
                to_user,
                other_mailbox,
            } => {
                if *other_mailbox {
                    Event::MailboxMapped(MailboxMapped {
                        mailbox: MailboxId::new("mb2"),
                        user: state.owner.clone()?,
                    })
                } else {
                    Event::MailboxMapped(MailboxMapped {
                        mailbox,
                        user: UserId::new(USERS[*to_user]),
                    })
                }
            }
        })
    }

    fn ids(&self, slots: &[usize]) -> Vec<RecordId> {
        let mut ids: Vec<RecordId> = slots.iter().map(|s| self.row_id(*s)).collect();
        ids.dedup();
        ids
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// Every filter expression of the pools compiles (a generator bug otherwise).
pub fn check_filter_pools() {
    for (entity, pool) in [
        (Entity::Appointment, &APPOINTMENT_FILTERS[..]),
        (Entity::Contact, &CONTACT_FILTERS[..]),
        (Entity::Task, &TASK_FILTERS[..]),
    ] {
        for expr in pool {
            let f = SyncFilter {
                id: FilterId::new("check"),
                name: "check".into(),
                entity,
                enabled: true,
                expr: (*expr).into(),
            };
            if let Err(e) = FilterSet::compile(&[f]) {
                panic!("generator filter pool: {e}");
            }
        }
    }
}
