//! One test per rule of "Rules an engine must implement" (`sss-behavior.md`), named after its
//! id. Each test drives mailboxes through observations only (see `support`) and checks what a
//! user would check: the decisions `decide` returns, the rule each names, and the payload
//! fields that matter (target side, attendees, notification, Free/Busy, reminder, completion,
//! disable reason, retry time).

#[path = "../support/mod.rs"]
mod support;

mod breaker;
mod cadence_and_errors;
mod crm_commands;
mod deletes;
mod email;
mod inbound;
mod lifecycle;
mod outbound;
mod outgoing;

use ledgersync_domain::decide::{ErrorSubject, classify};
use ledgersync_domain::event::*;
use ledgersync_domain::records::*;
use ledgersync_domain::settings::TaskDeletionMode;
use ledgersync_domain::state::{IntentKind, LinkStatus};
use ledgersync_domain::{
    Duration, ErrorKind, Event, MailboxId, OrgId, ProfileId, RemoteId, Timestamp, UserId,
};
use support::*;

// ───────────── fixtures of this file ─────────────

/// The outside attendee of the team meetings.
const INARA: &str = "inara@guild.example";

/// A future meeting organized by `organizer` with zoe (a CRM user) and inara (outside) as
/// required attendees.
fn team_meeting(id: &str, organizer: &str, now: Timestamp) -> Record {
    appointment(
        id,
        crm_user(organizer),
        vec![crm_user("zoe"), outsider(INARA)],
        vec![],
        now + Duration::days(2),
    )
}

/// The attendee addresses of [`team_meeting`].
fn team_addresses() -> Vec<String> {
    vec![email_of("zoe"), INARA.to_string()]
}

fn tested_with_marker(mb: &Mailbox, marker: &str, override_other_org: bool) -> Event {
    let Event::MailboxTested(mut t) = mb.test_all(TestResult::Success) else {
        unreachable!("test_all builds a mailbox_tested")
    };
    t.act_org_marker = Some(OrgId::new(marker));
    t.override_other_org = override_other_org;
    Event::MailboxTested(t)
}

/// The snapshot a link holds is `expected` (taken by reference so it reads the same whether
/// the link owns or shares its snapshot).
fn assert_snapshot(synced: &Record, expected: &Record) {
    assert_eq!(synced, expected, "snapshot last written to the mail server");
}

fn tracked_server_task(remote: &RemoteId, percent: u8, hash: u64) -> RemoteItem {
    RemoteItem {
        tracked: Some(TrackedBy::Category),
        ..remote_item(
            remote,
            hash,
            remote_task_fields("Order spare parts", percent),
        )
    }
}

// ───────────── R1: one mailbox, one user ─────────────

// ───────────── R2: another organization's ACT marker ─────────────

// ───────────── R5: address approval ─────────────

// ───────────── R6: Test & Enable ─────────────

// ───────────── R10, R11: workload errors ─────────────

/// Feeds one transient 503 five minutes after the previous one and checks it is retried.
fn transient_failure_is_retried(mb: &mut Mailbox, attempt: u32) {
    mb.advance(Duration::minutes(5));
    let ds = mb.listing_failed(Workload::Act, "503", None);
    assert_eq!(
        summary(&ds),
        [
            (25, "no_action"),
            (11, "error_classified"),
            (11, "retry_scheduled")
        ],
        "failure {attempt}"
    );
    let (_, c) = one(classifications(&ds), &ds);
    assert_eq!(
        (c.class, c.attempt, c.limit),
        (ErrorClass::Transient, attempt, 10)
    );
    let (_, r) = one(retries(&ds), &ds);
    assert_eq!(
        (r.workload, r.at),
        (Workload::Act, mb.now + Duration::minutes(5))
    );
    assert!(
        mb.state.workload(Workload::Act).enabled,
        "still enabled after failure {attempt}"
    );
    assert_eq!(mb.state.workload(Workload::Act).consecutive_errors, attempt);
}

// ───────────── R14: profile alert ─────────────

/// An organization with one profile of `mailboxes` mailboxes, its alert option `send_alert`.
struct Org {
    state: ledgersync_domain::OrgState,
    settings: ledgersync_domain::OrgSettings,
    alerts: Vec<ledgersync_domain::Decision>,
}

impl Org {
    fn new(mailboxes: usize, send_alert: bool) -> Self {
        let mut state = ledgersync_domain::OrgState::new(OrgId::new(ORG));
        state.apply(&Event::ProfileRegistered(ProfileRegistered {
            profile: ProfileId::new("profile-main"),
            name: "Serenity groupware".into(),
            server_type: ServerType::Groupware,
            max_connections: 10,
        }));
        state.apply(&Event::ProfileAlertingSet(ProfileAlertingSet {
            profile: ProfileId::new("profile-main"),
            send_alert,
        }));
        for i in 1..=mailboxes {
            state.apply(&Event::MailboxRegistered(MailboxRegistered {
                mailbox: MailboxId::new(format!("mbx-{i}")),
                org: OrgId::new(ORG),
                address: format!("u{i}@serenity.example"),
                profile: ProfileId::new("profile-main"),
                server_type: ServerType::Groupware,
            }));
        }
        Self {
            state,
            settings: ledgersync_domain::OrgSettings::default(),
            alerts: Vec::new(),
        }
    }

    /// Mailbox `i` failed at `at`: decided on the state before, then applied with its
    /// decisions, as the organization actor does.
    fn failed(&mut self, i: usize, at: Timestamp) -> Vec<ledgersync_domain::Decision> {
        let obs = Event::MailboxFailureNoted(MailboxFailureNoted {
            mailbox: MailboxId::new(format!("mbx-{i}")),
            profile: ProfileId::new("profile-main"),
            workload: Workload::Act,
            at,
        });
        let ds = ledgersync_domain::decide_org(
            &self.state,
            &obs,
            &ledgersync_domain::Context {
                settings: &self.settings,
                now: at,
            },
        );
        self.state.apply(&obs);
        for d in &ds {
            self.state.apply(&d.event);
        }
        self.alerts.extend(ds.clone());
        ds
    }
}

// ───────────── R12, R79: an item a listing could not read ─────────────

fn item_failed(remote: &RemoteId, entity: Option<Entity>) -> Event {
    Event::ItemFailed(ItemFailed {
        workload: Workload::Act,
        remote: remote.clone(),
        entity,
        error: ServerError {
            code: "unparsable".into(),
            message: "missing DTSTART; fix or remove the file".into(),
            retry_after: None,
        },
    })
}

fn listing_completed(mb: &mut Mailbox) -> Vec<ledgersync_domain::Decision> {
    mb.feed(Event::ListingCompleted(ListingCompleted {
        workload: Workload::Act,
        items: 1,
    }))
}

// ───────────── R17–R20: filters ─────────────

/// The `intent_succeeded` of the intent `pick` finds, with the version tag the connector
/// reported for what it wrote.
fn written_with(mb: &mut Mailbox, remote: &RemoteId, etag: &str, pick: impl Fn(&Event) -> bool) {
    let intent = mb.id_of(pick);
    let ds = mb.feed(Event::IntentSucceeded(IntentSucceeded {
        intent,
        remote: Some(remote.clone()),
        etag: Some(etag.into()),
        crm: None,
    }));
    assert!(
        ds.is_empty(),
        "an update's outcome decides nothing: {ds:#?}"
    );
}

// ───────────── R21–R25: deletes ─────────────

// ───────────── R26–R32, R82: appointments written to the mail server ─────────────

/// A named change to one property of an appointment.
type SensitiveChange = (&'static str, fn(&mut Appointment));

// ───────────── R36–R40, R73: changes from the mail server ─────────────

fn service_appointment(id: &str, now: Timestamp) -> Record {
    with_appointment(team_meeting(id, "jayne", now), |a| a.service = true)
}

// ───────────── R42–R48: contacts and tasks ─────────────

/// A linked task of jayne's (completed in the CRM or not), deleted on the mail server under
/// `mode`.
fn server_task_delete(mode: TaskDeletionMode, completed: bool) -> Vec<ledgersync_domain::Decision> {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.task_deletion_mode = mode;
    let t = with_task(task("t1", "jayne", mb.now), |t| {
        if completed {
            t.state = ActivityState::Completed;
        }
    });
    let remote = mb.sync_new(&t);
    let ds = mb.feed(gone(&remote));
    for (_, d) in deletes(&ds) {
        assert_eq!((d.target, &d.record), (Side::Crm, &t.id));
    }
    ds
}

// ───────────── R82: no duplicate notifications ─────────────

// ───────────── R7, R8, R9: cycle cadence ─────────────

fn cycle(mb: &mut Mailbox, workload: Workload, items: u32) -> (u8, Timestamp) {
    let ds = mb.feed(Event::ListingCompleted(ListingCompleted {
        workload,
        items,
    }));
    assert_eq!(ds.len(), 1, "{ds:#?}");
    match &ds[0].event {
        Event::CycleScheduled(p) => {
            assert_eq!(p.workload, workload);
            assert_eq!(mb.state.workload(workload).next_run, Some(p.at));
            (ds[0].rule.0, p.at)
        }
        other => panic!("expected cycle_scheduled, got {other:?}"),
    }
}

// ───────────── R80: health counters ─────────────
