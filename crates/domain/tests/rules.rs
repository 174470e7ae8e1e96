//! One test per rule of "Rules an engine must implement" (`sss-behavior.md`), named after its
//! id. Each test drives mailboxes through observations only (see `support`) and checks what a
//! user would check: the decisions `decide` returns, the rule each names, and the payload
//! fields that matter (target side, attendees, notification, Free/Busy, reminder, completion,
//! disable reason, retry time).

mod support;

use ledgersync_domain::decide::classify;
use ledgersync_domain::event::*;
use ledgersync_domain::records::*;
use ledgersync_domain::settings::TaskDeletionMode;
use ledgersync_domain::state::LinkStatus;
use ledgersync_domain::{
    Duration, Event, MailboxId, OrgId, ProfileId, RemoteId, Timestamp, UserId,
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

#[test]
fn r1_remapping_stops_first_users_workloads_before_second_mapping_starts() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);

    let ds = mb.feed(mb.mapping("paul"));

    assert_eq!(
        summary(&ds),
        [
            (1, "workload_disabled"),
            (1, "workload_disabled"),
            (1, "workload_disabled"),
            (1, "mapping_ended"),
            (1, "mapping_started"),
        ],
        "every workload stops, then the old mapping ends, then the new one starts"
    );
    let stopped: Vec<Workload> = disables(&ds).iter().map(|(_, d)| d.workload).collect();
    assert_eq!(stopped, Workload::ALL);
    assert!(
        disables(&ds)
            .iter()
            .all(|(_, d)| d.reason == DisableReason::Remapped)
    );
    assert_eq!(one(mappings_ended(&ds), &ds).1.user, UserId::new("jayne"));
    assert_eq!(one(mappings_started(&ds), &ds).1.user, UserId::new("paul"));

    assert_eq!(mb.state.owner, Some(UserId::new("paul")));
    assert!(Workload::ALL.iter().all(|w| !mb.state.workload(*w).enabled));
    assert_eq!(
        mb.link(&a.id).status,
        LinkStatus::Unlinked,
        "jayne's links end with her mapping"
    );
    // Paul's ACT sync waits for Test & Enable: jayne's meeting changing now does nothing.
    let a2 = changed_appointment(&a, |a| a.location = "Room 2".into());
    assert!(mb.feed(upsert(&a2)).is_empty());
}

#[test]
fn r1_mapping_the_user_to_another_mailbox_ends_the_mapping_here() {
    let mut mb = Mailbox::ready("jayne");
    let obs = Event::MailboxMapped(MailboxMapped {
        mailbox: MailboxId::new("mbx-jayne-new"),
        user: UserId::new("jayne"),
    });

    let ds = mb.feed(obs);

    assert_eq!(
        summary(&ds),
        [
            (1, "workload_disabled"),
            (1, "workload_disabled"),
            (1, "workload_disabled"),
            (1, "mapping_ended"),
        ]
    );
    assert!(
        disables(&ds)
            .iter()
            .all(|(_, d)| d.reason == DisableReason::Remapped)
    );
    assert_eq!(mb.state.owner, None);
}

// ───────────── R2: another organization's ACT marker ─────────────

#[test]
fn r2_act_marker_of_another_organization_blocks_act_sync_with_alert() {
    let mut mb = Mailbox::mapped("jayne");
    mb.approve(true);

    let ds = mb.feed(tested_with_marker(&mb, "org-other", false));

    assert_eq!(
        summary(&ds),
        [
            (6, "workload_enabled"),
            (6, "workload_enabled"),
            (2, "workload_disabled"),
            (2, "alert_raised")
        ],
        "email workloads enable; ACT does not"
    );
    let (_, d) = one(disables(&ds), &ds);
    assert_eq!(
        (d.workload, &d.reason),
        (Workload::Act, &DisableReason::OtherOrganization)
    );
    let (_, alert) = one(alerts(&ds), &ds);
    assert_eq!(alert.level, AlertLevel::Error);
    assert!(
        alert.text.contains("configured with another organization"),
        "{}",
        alert.text
    );
    assert!(!mb.state.workload(Workload::Act).enabled);

    // No appointment, contact or task is synced for this mailbox.
    assert!(
        mb.feed(upsert(&team_meeting("a1", "jayne", mb.now)))
            .is_empty()
    );
    assert!(mb.feed(upsert(&contact("c1", "jayne"))).is_empty());
    assert!(mb.feed(upsert(&task("t1", "jayne", mb.now))).is_empty());
}

#[test]
fn r2_administrator_override_claims_act_sync_for_this_organization() {
    let mut mb = Mailbox::mapped("jayne");
    mb.approve(true);

    let ds = mb.feed(tested_with_marker(&mb, "org-other", true));

    assert_eq!(
        summary(&ds),
        [
            (6, "workload_enabled"),
            (6, "workload_enabled"),
            (2, "organization_claimed"),
            (6, "workload_enabled"),
        ]
    );
    assert_eq!(one(claims(&ds), &ds).1.org, OrgId::new(ORG));
    assert!(alerts(&ds).is_empty());
    assert_eq!(mb.state.act_org_marker, Some(OrgId::new(ORG)));
    let ds = mb.feed(upsert(&team_meeting("a1", "jayne", mb.now)));
    assert_eq!(summary(&ds), [(17, "create_intent")]);
}

// ───────────── R5: address approval ─────────────

#[test]
fn r5_unapproved_address_disables_email_workloads_with_alert() {
    let mut mb = Mailbox::mapped("jayne"); // never approved

    let ds = mb.feed(mb.test_all(TestResult::Success));

    assert_eq!(
        summary(&ds),
        [
            (5, "workload_disabled"),
            (5, "alert_raised"),
            (5, "workload_disabled"),
            (5, "alert_raised"),
            (6, "workload_enabled"),
        ]
    );
    let off: Vec<(Workload, DisableReason)> = disables(&ds)
        .iter()
        .map(|(_, d)| (d.workload, d.reason.clone()))
        .collect();
    assert_eq!(
        off,
        [
            (Workload::Incoming, DisableReason::NotApproved),
            (Workload::Outgoing, DisableReason::NotApproved)
        ]
    );
    for (_, a) in alerts(&ds) {
        assert_eq!(a.level, AlertLevel::Error);
        assert!(a.text.contains("has not been approved"), "{}", a.text);
    }
    assert_eq!(
        one(enables(&ds), &ds).1.workload,
        Workload::Act,
        "ACT does not need approval"
    );
    assert!(!mb.state.workload(Workload::Incoming).enabled);
    assert!(!mb.state.workload(Workload::Outgoing).enabled);
}

#[test]
fn r5_without_required_approval_email_workloads_enable() {
    let mut mb = Mailbox::mapped("jayne");
    mb.settings.require_approved_address = false;

    let ds = mb.feed(mb.test_all(TestResult::Success));

    assert_eq!(
        summary(&ds),
        [
            (6, "workload_enabled"),
            (6, "workload_enabled"),
            (6, "workload_enabled")
        ]
    );
}

#[test]
fn r5_withdrawing_approval_disables_email_workloads() {
    let mut mb = Mailbox::ready("jayne");

    let ds = mb.approve(false);

    // The address is no longer approved and approval is required: email must stop.
    let off: Vec<(u8, Workload, DisableReason)> = disables(&ds)
        .iter()
        .map(|(r, d)| (*r, d.workload, d.reason.clone()))
        .collect();
    assert_eq!(
        off,
        [
            (5, Workload::Incoming, DisableReason::NotApproved),
            (5, Workload::Outgoing, DisableReason::NotApproved)
        ],
        "decisions: {:?}",
        summary(&ds)
    );
    assert!(
        !alerts(&ds).is_empty(),
        "an \"address not approved\" alert is raised"
    );
    assert!(
        mb.state.workload(Workload::Act).enabled,
        "ACT is not affected"
    );
}

// ───────────── R6: Test & Enable ─────────────

#[test]
fn r6_test_results_are_recorded_per_workload_and_only_successes_enable() {
    let mut mb = Mailbox::mapped("jayne");
    mb.approve(true);

    let ds = mb.feed(mb.test(TestResult::Success, TestResult::Failure, TestResult::NotRun));

    assert_eq!(
        summary(&ds),
        [
            (6, "workload_enabled"),
            (6, "workload_disabled"),
            (6, "alert_raised")
        ]
    );
    assert_eq!(one(enables(&ds), &ds).1.workload, Workload::Incoming);
    let (_, d) = one(disables(&ds), &ds);
    assert_eq!(
        (d.workload, &d.reason),
        (Workload::Outgoing, &DisableReason::TestFailed)
    );

    let incoming = mb.state.workload(Workload::Incoming);
    assert_eq!(
        (incoming.test, incoming.enabled),
        (Some(TestResult::Success), true)
    );
    let outgoing = mb.state.workload(Workload::Outgoing);
    assert_eq!(
        (outgoing.test, outgoing.enabled),
        (Some(TestResult::Failure), false)
    );
    let act = mb.state.workload(Workload::Act);
    assert_eq!((act.test, act.enabled), (None, false), "ACT was not run");

    // Testing ACT alone later enables ACT and leaves the other results as they were.
    let ds = mb.feed(mb.test(TestResult::NotRun, TestResult::NotRun, TestResult::Success));
    assert_eq!(summary(&ds), [(6, "workload_enabled")]);
    assert_eq!(one(enables(&ds), &ds).1.workload, Workload::Act);
    assert_eq!(
        mb.state.workload(Workload::Incoming).test,
        Some(TestResult::Success)
    );
    assert_eq!(
        mb.state.workload(Workload::Outgoing).test,
        Some(TestResult::Failure)
    );
}

#[test]
fn r6_failed_test_disables_an_enabled_workload() {
    let mut mb = Mailbox::ready("jayne");

    let ds = mb.feed(mb.test(TestResult::NotRun, TestResult::NotRun, TestResult::Failure));

    assert_eq!(
        summary(&ds),
        [(6, "workload_disabled"), (6, "alert_raised")]
    );
    let (_, d) = one(disables(&ds), &ds);
    assert_eq!(
        (d.workload, &d.reason),
        (Workload::Act, &DisableReason::TestFailed)
    );
    assert!(mb.state.workload(Workload::Incoming).enabled);
    assert!(!mb.state.workload(Workload::Act).enabled);
}

// ───────────── R10, R11: workload errors ─────────────

#[test]
fn r10_permanent_error_401_disables_at_once_with_alert() {
    let mut mb = Mailbox::ready("jayne");

    let ds = mb.listing_failed(Workload::Act, "401", None);

    assert_eq!(
        summary(&ds),
        [
            (25, "no_action"),
            (10, "error_classified"),
            (10, "workload_disabled"),
            (10, "alert_raised")
        ]
    );
    let (_, c) = one(classifications(&ds), &ds);
    assert_eq!(
        (c.class, c.attempt, c.intent),
        (ErrorClass::Permanent, 1, None)
    );
    let (_, d) = one(disables(&ds), &ds);
    assert_eq!(
        (d.workload, &d.reason),
        (Workload::Act, &DisableReason::PermanentError)
    );
    let (_, alert) = one(alerts(&ds), &ds);
    assert_eq!(alert.level, AlertLevel::Error);
    assert!(alert.text.contains("401"), "{}", alert.text);
    assert_eq!(
        alert.notify,
        ["mailbox owner jayne", "server profile owner"]
    );
    assert!(retries(&ds).is_empty(), "a permanent error is not retried");
    assert!(!mb.state.workload(Workload::Act).enabled);
    assert!(
        mb.state.workload(Workload::Incoming).enabled,
        "other workloads keep running"
    );

    // Already disabled: classified again, but not disabled or alerted twice.
    let ds = mb.listing_failed(Workload::Act, "401", None);
    assert_eq!(summary(&ds), [(25, "no_action"), (10, "error_classified")]);
}

#[test]
fn r10_unapproved_address_answer_is_permanent() {
    let mut mb = Mailbox::ready("jayne");

    let ds = mb.listing_failed(Workload::Outgoing, "unapproved", None);

    let (rule, d) = one(disables(&ds), &ds);
    assert_eq!(
        (rule, d.workload, &d.reason),
        (10, Workload::Outgoing, &DisableReason::PermanentError)
    );
    assert_eq!(one(alerts(&ds), &ds).0, 10);
}

#[test]
fn r10_r11_error_classification() {
    let class = |code: &str| classify(&server_error(code, None)).0;
    for code in [
        "401",
        "403",
        "NO [AUTHENTICATIONFAILED]",
        "unapproved",
        "tls",
        "404",
        "unsupported",
        "invalid",
        "400",
    ] {
        assert_eq!(class(code), ErrorClass::Permanent, "{code}");
    }
    for code in ["503", "500", "429", "timeout", "connection reset"] {
        assert_eq!(class(code), ErrorClass::Transient, "{code}");
    }
}

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

#[test]
fn r11_ten_transient_failures_disable_the_workload_at_the_tenth_and_not_before() {
    let mut mb = Mailbox::ready("jayne");
    for attempt in 1..=9 {
        transient_failure_is_retried(&mut mb, attempt);
    }

    mb.advance(Duration::minutes(5));
    let ds = mb.listing_failed(Workload::Act, "503", None);

    assert_eq!(
        summary(&ds),
        [
            (25, "no_action"),
            (11, "error_classified"),
            (11, "workload_disabled"),
            (11, "alert_raised")
        ]
    );
    assert_eq!(one(classifications(&ds), &ds).1.attempt, 10);
    let (_, d) = one(disables(&ds), &ds);
    assert_eq!(
        (d.workload, &d.reason),
        (Workload::Act, &DisableReason::TransientLimit)
    );
    let (_, alert) = one(alerts(&ds), &ds);
    assert_eq!(alert.level, AlertLevel::Error);
    assert!(
        alert.text.contains("10 consecutive transient failures"),
        "{}",
        alert.text
    );
    assert!(retries(&ds).is_empty());
    assert!(!mb.state.workload(Workload::Act).enabled);
    assert_eq!(mb.state.workload(Workload::Act).next_run, None);
}

#[test]
fn r11_a_success_resets_the_transient_failure_count() {
    let mut mb = Mailbox::ready("jayne");
    for attempt in 1..=9 {
        transient_failure_is_retried(&mut mb, attempt);
    }

    // A successful cycle only schedules the next one (R9) and resets the count.
    assert_eq!(
        summary(&mb.listing_completed(Workload::Act)),
        [(9, "cycle_scheduled")]
    );
    assert_eq!(mb.state.workload(Workload::Act).consecutive_errors, 0);

    // Ten more are needed: nine are retried, the tenth disables.
    for attempt in 1..=9 {
        transient_failure_is_retried(&mut mb, attempt);
    }
    let ds = mb.listing_failed(Workload::Act, "503", None);
    assert_eq!(
        one(disables(&ds), &ds).1.reason,
        DisableReason::TransientLimit
    );
}

#[test]
fn r11_retry_after_from_the_server_is_honoured() {
    let mut mb = Mailbox::ready("jayne");

    let later = mb.now + Duration::minutes(20);
    let ds = mb.listing_failed(Workload::Incoming, "429", Some(later));
    let (rule, r) = one(retries(&ds), &ds);
    assert_eq!((rule, r.workload, r.at), (11, Workload::Incoming, later));
    assert_eq!(mb.state.workload(Workload::Incoming).next_run, Some(later));

    // A Retry-After already in the past falls back to the 5-minute interval.
    let past = mb.now - Duration::minutes(1);
    let ds = mb.listing_failed(Workload::Incoming, "429", Some(past));
    assert_eq!(one(retries(&ds), &ds).1.at, mb.now + Duration::minutes(5));
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

#[test]
fn r14_exactly_half_of_the_profile_failing_raises_no_alert() {
    let mut org = Org::new(4, true);
    org.failed(1, t0());
    org.failed(2, t0() + Duration::minutes(10));
    // The same mailbox failing again counts once.
    org.failed(2, t0() + Duration::minutes(20));
    assert!(org.alerts.is_empty(), "{:#?}", org.alerts);
}

#[test]
fn r14_three_of_five_mailboxes_failing_within_an_hour_alert_the_profile_owner() {
    let mut org = Org::new(5, true);
    assert!(org.failed(1, t0()).is_empty());
    assert!(org.failed(2, t0() + Duration::minutes(20)).is_empty());
    let ds = org.failed(3, t0() + Duration::minutes(59));
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!(ds[0].rule.0, 14);
    let Event::AlertRaised(a) = &ds[0].event else {
        panic!("{ds:#?}")
    };
    assert_eq!(a.level, AlertLevel::Error);
    assert_eq!(a.notify, ["server profile owner (Serenity groupware)"]);
    assert!(
        a.text.starts_with(
            "3 of the 5 mailboxes of the email server profile Serenity groupware failed within one hour (mbx-1, mbx-2, mbx-3)"
        ),
        "{}",
        a.text
    );
    assert!(
        a.basis.reason.contains("sendemailalert"),
        "{}",
        a.basis.reason
    );
}

#[test]
fn r14_failures_spread_over_more_than_an_hour_raise_no_alert() {
    let mut org = Org::new(5, true);
    org.failed(1, t0());
    org.failed(2, t0() + Duration::minutes(40));
    org.failed(3, t0() + Duration::minutes(61));
    org.failed(4, t0() + Duration::minutes(110));
    assert!(org.alerts.is_empty(), "{:#?}", org.alerts);
}

#[test]
fn r14_no_alert_when_the_profile_alert_option_is_off() {
    let mut org = Org::new(5, false);
    for i in 1..=5 {
        org.failed(i, t0() + Duration::minutes(i as i64));
    }
    assert!(org.alerts.is_empty(), "{:#?}", org.alerts);
    // The option is off by default.
    let mut state = ledgersync_domain::OrgState::new(OrgId::new(ORG));
    state.apply(&Event::ProfileRegistered(ProfileRegistered {
        profile: ProfileId::new("p"),
        name: "p".into(),
        server_type: ServerType::Groupware,
        max_connections: 10,
    }));
    assert!(!state.profiles[&ProfileId::new("p")].send_alert);
}

#[test]
fn r14_a_second_burst_within_the_hour_raises_no_second_alert() {
    let mut org = Org::new(3, true);
    org.failed(1, t0());
    assert_eq!(org.failed(2, t0() + Duration::minutes(5)).len(), 1);
    // The same mailboxes and the third fail again within the hour: no second alert.
    org.failed(3, t0() + Duration::minutes(10));
    org.failed(1, t0() + Duration::minutes(30));
    org.failed(2, t0() + Duration::minutes(50));
    assert_eq!(org.alerts.len(), 1, "{:#?}", org.alerts);
    // An hour after the alert, the failures of the last hour (mbx-1, mbx-2, mbx-3) alert again.
    org.failed(3, t0() + Duration::minutes(65));
    assert_eq!(org.alerts.len(), 2, "{:#?}", org.alerts);
}

#[test]
fn r14_a_workload_level_error_or_disable_is_a_mailbox_failure_an_item_error_is_not() {
    use ledgersync_domain::alerting::failed_workload;
    let mut mb = Mailbox::ready("jayne");
    let ds = mb.listing_failed(Workload::Incoming, "401", None);
    assert_eq!(
        failed_workload(ds.iter().map(|d| &d.event)),
        Some(Workload::Incoming)
    );
    let t = task("t1", "jayne", mb.now);
    mb.feed(upsert(&t));
    let create = mb.id_of(|e| matches!(e, Event::CreateIntent(_)));
    let ds = mb.fail(create, "503");
    assert_eq!(failed_workload(ds.iter().map(|d| &d.event)), None);
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

#[test]
fn r12_an_item_a_listing_cannot_read_is_retried_by_the_next_listings_and_never_deleted() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    for listing in 1..=3 {
        let ds = mb.feed(item_failed(&remote, None));
        assert!(ds.is_empty(), "an item failure decides nothing: {ds:#?}");
        listing_completed(&mut mb);
        assert_eq!(mb.state.failing_items[&remote].listings, listing);
        assert_eq!(mb.link(&a.id).status, LinkStatus::Linked);
        assert!(
            mb.state.remote_items.contains_key(&remote),
            "never a deletion"
        );
        let w = mb.state.workload(Workload::Act);
        assert!(
            w.enabled && w.consecutive_errors == 0,
            "the mailbox goes on"
        );
        assert_eq!(w.items_failed_last_cycle, 1);
    }

    // Readable again: the failure is over.
    let item = mb.state.remote_items[&remote].clone();
    mb.feed(seen(RemoteItem {
        etag: "\"repaired\"".into(),
        ..item
    }));
    assert!(mb.state.failing_items.is_empty());
}

#[test]
fn r79_an_item_failure_keeps_its_entity_error_time_and_consecutive_listings() {
    let mut mb = Mailbox::ready("jayne");
    let remote = RemoteId::new("contacts/broken.vcf");
    let first = mb.now;
    mb.feed(item_failed(&remote, Some(Entity::Contact)));
    // Reported twice within one listing: one listing.
    mb.feed(item_failed(&remote, Some(Entity::Contact)));
    listing_completed(&mut mb);
    mb.now = mb.now + Duration::minutes(5);
    mb.feed(item_failed(&remote, None));
    mb.feed(Event::ListingPartial(ListingPartial {
        workload: Workload::Act,
        reason: "one file could not be read".into(),
    }));

    let f = &mb.state.failing_items[&remote];
    assert_eq!(
        (f.entity, f.error.code.as_str(), f.since, f.last, f.listings),
        (Some(Entity::Contact), "unparsable", first, mb.now, 2)
    );

    // A partial listing that does not report it keeps it (it may not have been read) ...
    mb.feed(Event::ListingPartial(ListingPartial {
        workload: Workload::Act,
        reason: "one file could not be read".into(),
    }));
    assert!(mb.state.failing_items.contains_key(&remote));
    // ... a complete listing that does not report it ends it.
    listing_completed(&mut mb);
    assert!(mb.state.failing_items.is_empty());
}

// ───────────── R17–R20: filters ─────────────

#[test]
fn r17_row_entering_the_filter_union_is_created_then_linked() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);

    let ds = mb.feed(upsert(&a));

    assert_eq!(summary(&ds), [(17, "create_intent")]);
    let (_, c) = one(creates(&ds), &ds);
    assert_eq!(
        (c.target, &c.record, &c.remote),
        (Side::MailServer, &a.id, &None)
    );
    assert_eq!((c.item.title.as_str(), c.item.version), ("Meeting a1", 1));
    assert!(
        c.basis.reason.contains("My Appointments"),
        "names the filter: {}",
        c.basis.reason
    );
    assert_eq!(mb.link(&a.id).status, LinkStatus::Creating);

    let remote = mb.remote_for(&a.id);
    let ds = mb.answer_create(&a.id, &remote);
    assert_eq!(summary(&ds), [(17, "link_created")]);
    let (_, l) = one(links_created(&ds), &ds);
    assert_eq!((&l.record, &l.remote), (&a.id, &remote));
    assert_eq!(mb.link(&a.id).status, LinkStatus::Linked);
    assert_eq!(mb.state.by_remote.get(&remote), Some(&a.id));
}

#[test]
fn r17_rows_outside_the_union_are_not_created() {
    let mut mb = Mailbox::ready("jayne");
    // Jayne is only an optional attendee: the default appointment filter does not select it.
    let a = appointment(
        "a1",
        crm_user("paul"),
        vec![],
        vec![crm_user("jayne")],
        mb.now + Duration::days(1),
    );
    assert!(mb.feed(upsert(&a)).is_empty());
    // Another user's contact and task.
    assert!(mb.feed(upsert(&contact("c1", "paul"))).is_empty());
    assert!(mb.feed(upsert(&task("t1", "paul", mb.now))).is_empty());
}

#[test]
fn r17_filters_of_a_table_are_unioned() {
    let mut mb = Mailbox::ready("jayne");
    let optional = appointment(
        "a1",
        crm_user("paul"),
        vec![],
        vec![crm_user("jayne")],
        mb.now + Duration::days(1),
    );
    assert!(mb.feed(upsert(&optional)).is_empty());

    // A second filter for the table: the row now matches one of them.
    let ds = mb.set_filters(
        Entity::Appointment,
        &[
            "organizer = me or required_attendee = me",
            "optional_attendee = me",
        ],
    );

    let (rule, c) = one(creates(&ds), &ds);
    assert_eq!(
        (rule, &c.record, c.target),
        (17, &optional.id, Side::MailServer)
    );
    assert!(
        c.basis.reason.contains("appointment filter 1"),
        "{}",
        c.basis.reason
    );
    // Rows of the first filter still match.
    let ds = mb.feed(upsert(&team_meeting("a2", "jayne", mb.now)));
    assert!(
        one(creates(&ds), &ds)
            .1
            .basis
            .reason
            .contains("appointment filter 0")
    );
}

#[test]
fn r17_enabling_act_creates_rows_already_in_the_union() {
    let mut mb = Mailbox::mapped("jayne");
    mb.approve(true);
    let a = team_meeting("a1", "jayne", mb.now);
    let c = contact("c1", "jayne");
    assert!(mb.feed(upsert(&a)).is_empty(), "ACT is not enabled yet");
    assert!(mb.feed(upsert(&c)).is_empty());

    let ds = mb.feed(mb.test(TestResult::NotRun, TestResult::NotRun, TestResult::Success));

    assert_eq!(
        summary(&ds),
        [
            (6, "workload_enabled"),
            (17, "create_intent"),
            (17, "create_intent")
        ]
    );
    let mut created: Vec<_> = creates(&ds).iter().map(|(_, c)| c.record.clone()).collect();
    created.sort();
    assert_eq!(created, [a.id, c.id]);
}

#[test]
fn r18_changed_linked_row_still_in_union_is_updated() {
    let mut mb = Mailbox::ready("jayne");
    let c1 = contact("c1", "jayne");
    let remote = mb.sync_new(&c1);

    let c2 = changed_contact(&c1, |c| c.full_name = "Kaylee Frye".into());
    let ds = mb.feed(upsert(&c2));

    assert_eq!(summary(&ds), [(18, "update_intent")]);
    let (_, u) = one(updates(&ds), &ds);
    assert_eq!((u.target, &u.remote), (Side::MailServer, &Some(remote)));
    assert_eq!((u.item.title.as_str(), u.item.version), ("Kaylee Frye", 2));
    assert_snapshot(&mb.link(&c1.id).synced, &c2);

    // A redelivered or older snapshot changes nothing.
    assert!(mb.feed(upsert(&c2)).is_empty());
    assert!(mb.feed(upsert(&c1)).is_empty());
}

#[test]
fn r18_changed_linked_meeting_is_updated() {
    let mut mb = Mailbox::ready("jayne");
    let a1 = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a1);

    let ds = mb.feed(upsert(&changed_appointment(&a1, |a| {
        a.subject = "Moved review".into()
    })));

    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!(
        (rule, u.target, &u.remote),
        (18, Side::MailServer, &Some(remote))
    );
    assert_eq!(u.item.title, "Moved review");
}

/// The `intent_succeeded` of the intent `pick` finds, with the version tag the connector
/// reported for what it wrote.
fn written_with(mb: &mut Mailbox, remote: &RemoteId, etag: &str, pick: impl Fn(&Event) -> bool) {
    let intent = mb.id_of(pick);
    let ds = mb.feed(Event::IntentSucceeded(IntentSucceeded {
        intent,
        remote: Some(remote.clone()),
        etag: Some(etag.into()),
    }));
    assert!(
        ds.is_empty(),
        "an update's outcome decides nothing: {ds:#?}"
    );
}

#[test]
fn r18_echo_guard_ledgersyncs_own_update_seen_again_decides_nothing() {
    let mut mb = Mailbox::ready("jayne");
    let c1 = contact("c1", "jayne");
    let remote = mb.sync_new(&c1);

    // The CRM renames the contact: ledgersync rewrites the card (R18, to the mail server).
    let c2 = changed_contact(&c1, |c| c.full_name = "Kaylee Frye".into());
    let ds = mb.feed(upsert(&c2));
    assert_eq!(summary(&ds), [(18, "update_intent")]);
    written_with(
        &mut mb,
        &remote,
        "\"2\"",
        |e| matches!(e, Event::UpdateIntent(p) if p.record == c1.id && p.target == Side::MailServer),
    );

    // The next listing shows the card as ledgersync wrote it (the tag its write reported): its
    // own write, not an edit to send back to the CRM. Seen again (a duplicate), still nothing.
    let own = remote_item(&remote, 2, written_fields(&c2));
    assert_eq!(own.etag, "\"2\"");
    assert_eq!(mb.feed(seen(own.clone())), []);
    assert_eq!(mb.feed(seen(own)), []);

    // Another program edits the card afterwards: a new version, decided by R18 as before.
    let edited = remote_item(
        &remote,
        3,
        RemoteFields::Contact {
            full_name: "Kaylee Frye (engineer)".into(),
            email: match &written_fields(&c2) {
                RemoteFields::Contact { email, .. } => email.clone(),
                other => panic!("a card, not {other:?}"),
            },
        },
    );
    let ds = mb.feed(seen(edited));
    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.target, &u.record), (18, Side::Crm, &c1.id));
    assert_eq!(
        mb.link(&c1.id).written,
        None,
        "the item moved on from the write"
    );
}

#[test]
fn r18_echo_guard_only_the_version_ledgersync_wrote_is_its_own() {
    // A created item: its first sighting with the tag the create reported is the baseline.
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let ds = mb.feed(upsert(&a));
    assert_eq!(summary(&ds), [(17, "create_intent")]);
    let remote = mb.remote_for(&a.id);
    mb.answer_create(&a.id, &remote);
    assert_eq!(mb.link(&a.id).written.as_deref(), Some("\"1\""));
    assert_eq!(
        mb.feed(seen(remote_item(&remote, 1, written_fields(&a)))),
        []
    );

    // Another meeting, edited by another program before the first listing saw ledgersync's
    // version: the listing reports another version, an edit (R18), not the write.
    let b = team_meeting("a2", "jayne", mb.now);
    mb.feed(upsert(&b));
    let remote_b = mb.remote_for(&b.id);
    mb.answer_create(&b.id, &remote_b);
    let edited = remote_item(
        &remote_b,
        9,
        remote_appointment_fields("Moved by khal", &email_of("jayne"), mb.now),
    );
    let ds = mb.feed(seen(edited));
    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.target, &u.record), (18, Side::Crm, &b.id));
}

#[test]
fn r19_table_without_enabled_filter_stops_syncing_only_that_table() {
    let mut mb = Mailbox::ready("jayne");
    let c1 = contact("c1", "jayne");
    let t1 = task("t1", "jayne", mb.now);
    let remote = mb.sync_new(&c1);
    mb.sync_new(&t1);

    // The only contact filter is disabled.
    let obs = Event::FilterChanged(FilterChanged {
        user: UserId::new("jayne"),
        entity: Entity::Contact,
        filters: vec![filter(
            Entity::Contact,
            "My Outlook Contacts",
            "owner = me and state = active",
            false,
        )],
    });
    let ds = mb.feed(obs);

    assert_eq!(summary(&ds), [(19, "unlinked")]);
    let (_, u) = one(unlinks(&ds), &ds);
    assert_eq!((&u.record, &u.remote), (&c1.id, &Some(remote)));
    assert!(deletes(&ds).is_empty(), "the item stays where it is");
    assert_eq!(
        mb.link(&t1.id).status,
        LinkStatus::Linked,
        "tasks are unaffected"
    );

    // New contacts are not synced; new tasks still are.
    assert!(mb.feed(upsert(&contact("c2", "jayne"))).is_empty());
    assert_eq!(
        summary(&mb.feed(upsert(&task("t2", "jayne", mb.now)))),
        [(17, "create_intent")]
    );
    // Removing the table's filters altogether has the same effect.
    assert!(mb.set_filters(Entity::Contact, &[]).is_empty());
    assert!(mb.feed(upsert(&contact("c3", "jayne"))).is_empty());
}

#[test]
fn r20_row_the_owner_cannot_read_is_never_created() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);

    assert!(
        mb.feed(access_lost("jayne", &[&a], AccessReason::Role))
            .is_empty()
    );
    assert!(
        mb.feed(upsert(&a)).is_empty(),
        "matches the filter but is not readable"
    );
    assert!(
        mb.set_filters(Entity::Appointment, &["organizer = me"])
            .is_empty()
    );

    let ds = mb.feed(access_regained("jayne", &[&a], AccessReason::Role));
    assert_eq!(summary(&ds), [(17, "create_intent")]);
}

#[test]
fn r20_losing_read_access_to_a_synced_row_is_a_logical_delete() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    let ds = mb.feed(access_lost("jayne", &[&a], AccessReason::Share));

    assert_eq!(
        summary(&ds),
        [
            (22, "logical_delete"),
            (22, "delete_intent"),
            (22, "cancel_intent")
        ]
    );
    let (_, ld) = one(logical_deletes(&ds), &ds);
    assert_eq!(ld.reason, LeaveReason::AccessLost(AccessReason::Share));
    assert_eq!(one(deletes(&ds), &ds).1.remote, Some(remote));

    // Once the delete is done, regaining access creates the row again.
    let del = mb.id_of(|e| matches!(e, Event::DeleteIntent(_)));
    mb.succeed(del);
    let ds = mb.feed(access_regained("jayne", &[&a], AccessReason::Share));
    let (rule, c) = one(creates(&ds), &ds);
    assert_eq!((rule, c.target), (17, Side::MailServer));
}

// ───────────── R21–R25: deletes ─────────────

#[test]
fn r21_physical_delete_applies_each_tables_delete_rule() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let c = contact("c1", "jayne");
    let t = task("t1", "jayne", mb.now);
    for r in [&a, &c, &t] {
        mb.sync_new(r);
    }

    assert_eq!(
        summary(&mb.feed(deleted(&a))),
        [(27, "delete_intent"), (27, "cancel_intent")]
    );
    assert_eq!(summary(&mb.feed(deleted(&c))), [(42, "unlinked")]);
    assert_eq!(summary(&mb.feed(deleted(&t))), [(45, "delete_intent")]);
    // A row that was never synced here has no delete rule to apply.
    assert!(mb.feed(deleted(&contact("c9", "paul"))).is_empty());
}

#[test]
fn r22_logical_delete_cancels_when_distinct_deletes_off() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    // Jayne narrows her filter: her own meeting leaves it but still exists in the CRM.
    let ds = mb.set_filters(Entity::Appointment, &["required_attendee = me"]);

    assert_eq!(
        summary(&ds),
        [
            (22, "logical_delete"),
            (22, "delete_intent"),
            (22, "cancel_intent")
        ]
    );
    let (_, ld) = one(logical_deletes(&ds), &ds);
    assert_eq!(
        (&ld.record, &ld.reason),
        (&a.id, &LeaveReason::FilterEdited)
    );
    assert!(
        ld.basis
            .settings
            .iter()
            .any(|s| s.key == "distinct_physical_logical_deletes" && s.value == "false")
    );
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!(
        (d.target, &d.remote),
        (Side::MailServer, &Some(remote.clone()))
    );
    let (_, cancel) = one(cancels(&ds), &ds);
    assert_eq!(cancel.attendees, team_addresses());
    assert_eq!((cancel.version, &cancel.remote), (1, &Some(remote)));
}

#[test]
fn r22_logical_delete_has_the_effect_of_a_physical_delete() {
    let mut logical = Mailbox::ready("jayne");
    let mut physical = Mailbox::ready("jayne");
    let t = task("t1", "jayne", logical.now);
    let a = team_meeting("a1", "jayne", logical.now);
    for mb in [&mut logical, &mut physical] {
        mb.sync_new(&t);
        mb.sync_new(&a);
    }

    // The task is reassigned in the CRM (owner filter no longer matches); the meeting leaves
    // the filter because its organizer lost access.
    let t2 = next_version(&t, |r| r.owner = UserId::new("paul"));
    let ld_task = logical.feed(upsert(&t2));
    let ld_meeting = logical.feed(access_lost("jayne", &[&a], AccessReason::Team));
    let pd_task = physical.feed(deleted(&t));
    let pd_meeting = physical.feed(deleted(&a));

    assert_eq!(
        summary(&ld_task),
        [(22, "logical_delete"), (45, "delete_intent")]
    );
    assert_eq!(summary(&pd_task), [(45, "delete_intent")]);
    assert_eq!(deletes(&ld_task)[0].1.remote, deletes(&pd_task)[0].1.remote);
    assert_eq!(
        summary(&ld_meeting)[1..],
        [(22, "delete_intent"), (22, "cancel_intent")]
    );
    assert_eq!(
        summary(&pd_meeting),
        [(27, "delete_intent"), (27, "cancel_intent")]
    );
    assert_eq!(
        cancels(&ld_meeting)[0].1.attendees,
        cancels(&pd_meeting)[0].1.attendees
    );
}

#[test]
fn r23_logical_delete_unlinks_and_sends_nothing_when_distinct_deletes_on() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.distinct_physical_logical_deletes = true;
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    let ds = mb.set_filters(Entity::Appointment, &["required_attendee = me"]);

    assert_eq!(summary(&ds), [(23, "logical_delete"), (23, "unlinked")]);
    assert_eq!(
        one(logical_deletes(&ds), &ds).1.reason,
        LeaveReason::FilterEdited
    );
    assert_eq!(one(unlinks(&ds), &ds).1.remote, Some(remote));
    assert!(deletes(&ds).is_empty() && cancels(&ds).is_empty());
    assert_eq!(mb.link(&a.id).status, LinkStatus::Unlinked);
}

#[test]
fn r24_reassigned_contact_moves_from_old_owners_mailbox_to_new_owners() {
    let mut a = Mailbox::ready("jayne");
    let mut b = Mailbox::ready("paul");
    let c1 = contact("c1", "jayne");
    let remote = a.sync_new(&c1);

    let c2 = next_version(&c1, |r| r.owner = UserId::new("paul"));
    let in_a = a.feed(owner_changed(&c2, "jayne"));
    let in_b = b.feed(owner_changed(&c2, "jayne"));

    assert_eq!(
        summary(&in_a),
        [(22, "logical_delete"), (42, "delete_intent")]
    );
    assert_eq!(
        one(logical_deletes(&in_a), &in_a).1.reason,
        LeaveReason::OwnerChanged {
            from: UserId::new("jayne"),
            to: UserId::new("paul")
        }
    );
    let (_, d) = one(deletes(&in_a), &in_a);
    assert_eq!((d.target, &d.remote), (Side::MailServer, &Some(remote)));

    assert_eq!(summary(&in_b), [(17, "create_intent")]);
    let (_, c) = one(creates(&in_b), &in_b);
    assert_eq!((&c.record, c.target), (&c1.id, Side::MailServer));
}

#[test]
fn r25_failed_listing_is_not_a_delete() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let c = contact("c1", "jayne");
    mb.sync_new(&a);
    mb.sync_new(&c);

    let ds = mb.listing_failed(Workload::Act, "timeout", None);

    assert_eq!(summary(&ds)[0], (25, "no_action"));
    assert!(deletes(&ds).is_empty() && unlinks(&ds).is_empty() && cancels(&ds).is_empty());
    assert_eq!(mb.link(&a.id).status, LinkStatus::Linked);
    assert_eq!(mb.link(&c.id).status, LinkStatus::Linked);
}

#[test]
fn r25_partial_listing_is_not_a_delete() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);

    let ds = mb.feed(Event::ListingPartial(ListingPartial {
        workload: Workload::Act,
        reason: "page 3 of 5 timed out".into(),
    }));

    assert_eq!(summary(&ds), [(25, "no_action")]);
    assert_eq!(mb.link(&a.id).status, LinkStatus::Linked);
    assert!(mb.state.workload(Workload::Act).enabled);
}

// ───────────── R26–R32, R82: appointments written to the mail server ─────────────

#[test]
fn r26_new_future_meeting_in_organizers_mailbox_invites_attendees() {
    let mut mb = Mailbox::ready("jayne");

    let ds = mb.feed(upsert(&team_meeting("a1", "jayne", mb.now)));

    let (_, c) = one(creates(&ds), &ds);
    assert!(c.item.notify_attendees);
    assert_eq!(c.item.attendees, 2);
}

#[test]
fn r26_attendees_mailbox_never_sends_invitations() {
    let mut zoe = Mailbox::ready("zoe");

    let ds = zoe.feed(upsert(&team_meeting("a1", "jayne", zoe.now)));

    let (rule, c) = one(creates(&ds), &ds);
    assert_eq!(rule, 17, "zoe still gets her copy");
    assert!(!c.item.notify_attendees);
    assert!(
        c.basis.reason.contains("not the organizer"),
        "{}",
        c.basis.reason
    );
}

#[test]
fn r26_past_meeting_or_meeting_without_attendees_sends_no_invitation() {
    let mut mb = Mailbox::ready("jayne");
    let past = appointment(
        "a1",
        crm_user("jayne"),
        vec![crm_user("zoe")],
        vec![],
        mb.now - Duration::hours(2),
    );
    let alone = appointment(
        "a2",
        crm_user("jayne"),
        vec![],
        vec![],
        mb.now + Duration::days(1),
    );
    let only_me = appointment(
        "a3",
        crm_user("jayne"),
        vec![crm_user("jayne")],
        vec![],
        mb.now + Duration::days(1),
    );

    for rec in [&past, &alone, &only_me] {
        let ds = mb.feed(upsert(rec));
        let (_, c) = one(creates(&ds), &ds);
        assert!(!c.item.notify_attendees, "{}: {}", rec.id, c.basis.reason);
    }
}

/// A named change to one property of an appointment.
type SensitiveChange = (&'static str, fn(&mut Appointment));

#[test]
fn r26_every_sensitive_property_change_sends_an_update() {
    let mut mb = Mailbox::ready("jayne");
    let mut a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);

    let changes: [SensitiveChange; 11] = [
        ("subject", |a| a.subject = "Renamed".into()),
        ("body", |a| a.body = "Agenda attached".into()),
        ("location", |a| a.location = "Room 9".into()),
        ("all-day", |a| a.all_day = true),
        ("start", |a| a.start = a.start + Duration::hours(1)),
        ("end", |a| a.end = a.end + Duration::hours(1)),
        ("required attendees", |a| {
            a.required.push(outsider("mal@serenity.example"))
        }),
        ("optional attendees", |a| {
            a.optional.push(outsider("book@abbey.example"))
        }),
        ("status", |a| a.show_as = ShowAs::Tentative),
        ("priority", |a| a.priority = Priority::High),
        ("recurrence", |a| {
            a.recurrence = Some("FREQ=WEEKLY;COUNT=4".into())
        }),
    ];
    for (name, change) in changes {
        a = changed_appointment(&a, change);
        let ds = mb.feed(upsert(&a));
        let (rule, u) = one(updates(&ds), &ds);
        assert_eq!(rule, 18, "{name}");
        assert!(
            u.item.notify_attendees,
            "a change of {name} notifies attendees: {}",
            u.basis.reason
        );
        assert_eq!(u.item.version, a.version);
    }
}

#[test]
fn r26_change_of_no_sensitive_property_updates_without_notifying() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);

    let regarding = RecordRef {
        table: "account".into(),
        id: "acc-1".into(),
        name: "Blue Sun".into(),
    };
    let ds = mb.feed(upsert(&changed_appointment(&a, |a| {
        a.regarding = Some(regarding)
    })));

    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!(rule, 18);
    assert!(!u.item.notify_attendees, "{}", u.basis.reason);
}

#[test]
fn r26_update_in_attendees_mailbox_never_notifies() {
    let mut zoe = Mailbox::ready("zoe");
    let a = team_meeting("a1", "jayne", zoe.now);
    zoe.sync_new(&a);

    let ds = zoe.feed(upsert(&changed_appointment(&a, |a| {
        a.location = "Room 9".into()
    })));

    assert!(!one(updates(&ds), &ds).1.item.notify_attendees);
}

#[test]
fn r27_physical_delete_by_organizer_of_future_meeting_deletes_and_cancels() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    let ds = mb.feed(deleted(&a));

    assert_eq!(summary(&ds), [(27, "delete_intent"), (27, "cancel_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!((d.target, &d.remote), (Side::MailServer, &Some(remote)));
    assert_eq!(one(cancels(&ds), &ds).1.attendees, team_addresses());
    assert_eq!(mb.link(&a.id).status, LinkStatus::Deleting);
}

#[test]
fn r27_physical_delete_in_attendees_mailbox_only_unlinks() {
    let mut zoe = Mailbox::ready("zoe");
    let a = team_meeting("a1", "jayne", zoe.now);
    let remote = zoe.sync_new(&a);

    let ds = zoe.feed(deleted(&a));

    assert_eq!(summary(&ds), [(27, "unlinked")]);
    assert_eq!(one(unlinks(&ds), &ds).1.remote, Some(remote));
}

#[test]
fn r27_physical_delete_of_past_meeting_only_unlinks() {
    let mut mb = Mailbox::ready("jayne");
    let a = appointment(
        "a1",
        crm_user("jayne"),
        vec![crm_user("zoe")],
        vec![],
        mb.now - Duration::days(1),
    );
    mb.sync_new(&a);

    let ds = mb.feed(deleted(&a));

    assert_eq!(summary(&ds), [(27, "unlinked")]);
}

#[test]
fn r27_physical_delete_deletes_even_with_distinct_deletes_on() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.distinct_physical_logical_deletes = true;
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);

    let ds = mb.feed(deleted(&a));

    assert_eq!(summary(&ds), [(27, "delete_intent"), (27, "cancel_intent")]);
}

#[test]
fn r27_meeting_that_is_not_linked_is_not_deleted() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.distinct_physical_logical_deletes = true;
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);
    // It left the filter with distinct deletes on: unlinked, left in the calendar.
    assert_eq!(
        summary(&mb.set_filters(Entity::Appointment, &["required_attendee = me"]))[1],
        (23, "unlinked")
    );

    assert!(
        mb.feed(deleted(&a)).is_empty(),
        "an unlinked meeting is left alone"
    );
}

#[test]
fn r28_canceled_in_crm_leaves_meeting_unchanged_when_propagation_off() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    let ds = mb.feed(upsert(&changed_appointment(&a, |a| {
        a.state = ActivityState::Canceled
    })));

    assert_eq!(summary(&ds), [(28, "no_action")]);
    let (_, n) = one(no_actions(&ds), &ds);
    assert_eq!((&n.record, &n.remote), (&Some(a.id.clone()), &Some(remote)));
    assert!(
        n.basis
            .settings
            .iter()
            .any(|s| s.key == "propagate_appointment_cancellations" && s.value == "false")
    );
    assert_eq!(mb.link(&a.id).status, LinkStatus::Linked);
    assert_snapshot(&mb.link(&a.id).synced, &a); // nothing was written
}

#[test]
fn r28_canceled_in_crm_deletes_in_organizers_mailbox_when_propagation_on() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.propagate_appointment_cancellations = true;
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    let ds = mb.feed(upsert(&changed_appointment(&a, |a| {
        a.state = ActivityState::Canceled
    })));

    assert_eq!(summary(&ds), [(28, "delete_intent"), (28, "cancel_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!((d.target, &d.remote), (Side::MailServer, &Some(remote)));
    assert_eq!(one(cancels(&ds), &ds).1.attendees, team_addresses());
}

#[test]
fn r28_canceled_in_crm_is_not_propagated_from_an_attendees_mailbox() {
    let mut zoe = Mailbox::ready("zoe");
    zoe.settings.propagate_appointment_cancellations = true;
    let a = team_meeting("a1", "jayne", zoe.now);
    zoe.sync_new(&a);

    let ds = zoe.feed(upsert(&changed_appointment(&a, |a| {
        a.state = ActivityState::Canceled
    })));

    assert_eq!(summary(&ds), [(28, "no_action")]);
}

#[test]
fn r82_a_meeting_deleted_by_a_propagated_cancellation_is_not_created_again_by_the_same_line() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.propagate_appointment_cancellations = true;
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);
    let canceled = changed_appointment(&a, |a| a.state = ActivityState::Canceled);
    let ds = mb.feed(upsert(&canceled));
    assert_eq!(summary(&ds), [(28, "delete_intent"), (28, "cancel_intent")]);
    let delete = mb.id_of(|e| matches!(e, Event::DeleteIntent(_)));
    mb.succeed(delete);
    assert_eq!(mb.link(&a.id).status, LinkStatus::Deleted);

    let pending = mb.state.intents.clone();

    // The CRM (or a bus) delivers the same line again, and then the older version.
    assert!(
        mb.feed(upsert(&canceled)).is_empty(),
        "a re-delivered version decides nothing"
    );
    assert!(
        mb.feed(upsert(&a)).is_empty(),
        "an older version decides nothing"
    );
    assert_eq!(mb.state.records[&a.id].version, canceled.version);
    assert_eq!(mb.state.intents, pending, "no new intent");
    assert_eq!(mb.link(&a.id).remote, None);
    let _ = remote;
}

#[test]
fn r82_a_stale_version_after_an_organizer_change_decides_nothing() {
    let mut jayne = Mailbox::ready("jayne");
    let a1 = team_meeting("a1", "jayne", jayne.now);
    jayne.sync_new(&a1);
    let a2 = changed_appointment(&a1, |a| a.organizer = Some(crm_user("paul")));
    let ds = jayne.feed(upsert(&a2));
    assert!(deletes(&ds).len() == 1, "{:?}", summary(&ds));
    let delete = jayne.id_of(|e| matches!(e, Event::DeleteIntent(_)));
    jayne.succeed(delete);

    // Version 1 arrives late: Jayne is its organizer, but version 2 was already decided.
    assert!(jayne.feed(upsert(&a1)).is_empty());
    assert!(jayne.feed(owner_changed(&a1, "zoe")).is_empty());
    assert_eq!(jayne.state.records[&a1.id].version, a2.version);
    // A newer version that puts it back is decided as usual.
    let a3 = changed_appointment(&a2, |a| a.organizer = Some(crm_user("jayne")));
    assert_eq!(summary(&jayne.feed(upsert(&a3))), [(17, "create_intent")]);
}

#[test]
fn r27_a_row_that_leaves_the_union_before_its_create_is_carried_out_sends_nothing() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let created = mb.feed(upsert(&a));
    let (_, c) = one(creates(&created), &created);
    assert!(c.item.notify_attendees, "the create would invite");
    let create = mb.id_of(|e| matches!(e, Event::CreateIntent(_)));

    // Deleted in the CRM before any connector ran (crm apply without serve).
    let ds = mb.feed(deleted(&a));
    assert_eq!(
        summary(&ds),
        [(27, "unlinked")],
        "no delete, no cancellation"
    );
    assert!(
        mb.state.intents.is_empty(),
        "the create is withdrawn: {:?}",
        mb.state.intents
    );
    assert_eq!(mb.link(&a.id).status, LinkStatus::Unlinked);

    // The create was already being carried out and succeeds anyway: its item is deleted and its
    // invitation cancelled.
    let ds = mb.feed(Event::IntentSucceeded(IntentSucceeded {
        intent: create,
        remote: Some(RemoteId::new("jayne/a1.ics")),
        etag: None,
    }));
    assert_eq!(summary(&ds), [(27, "delete_intent"), (27, "cancel_intent")]);
    assert_eq!(one(cancels(&ds), &ds).1.attendees, team_addresses());
}

#[test]
fn r29_organizer_change_deletes_old_organizers_copy_and_creates_new_organizers() {
    let mut jayne = Mailbox::ready("jayne");
    let mut paul = Mailbox::ready("paul");
    let a1 = team_meeting("a1", "jayne", jayne.now);
    let remote = jayne.sync_new(&a1);

    let a2 = changed_appointment(&a1, |a| a.organizer = Some(crm_user("paul")));
    let old = jayne.feed(upsert(&a2));
    let new = paul.feed(upsert(&a2));

    assert_eq!(
        summary(&old),
        [
            (22, "logical_delete"),
            (22, "delete_intent"),
            (22, "cancel_intent")
        ]
    );
    assert_eq!(
        one(logical_deletes(&old), &old).1.reason,
        LeaveReason::OrganizerChanged {
            from: email_of("jayne"),
            to: email_of("paul")
        }
    );
    assert_eq!(one(deletes(&old), &old).1.remote, Some(remote));
    assert_eq!(one(cancels(&old), &old).1.attendees, team_addresses());

    assert_eq!(summary(&new), [(17, "create_intent")]);
    let (_, c) = one(creates(&new), &new);
    assert!(
        c.item.notify_attendees,
        "the new organizer invites the attendees"
    );
    assert_eq!(c.item.attendees, 2);
}

#[test]
fn r29_organizer_change_with_distinct_deletes_on_only_unlinks_old_organizers_copy() {
    let mut jayne = Mailbox::ready("jayne");
    jayne.settings.distinct_physical_logical_deletes = true;
    let a1 = team_meeting("a1", "jayne", jayne.now);
    jayne.sync_new(&a1);

    let a2 = changed_appointment(&a1, |a| a.organizer = Some(crm_user("paul")));
    let ds = jayne.feed(upsert(&a2));

    assert_eq!(summary(&ds), [(23, "logical_delete"), (23, "unlinked")]);
    assert!(matches!(
        one(logical_deletes(&ds), &ds).1.reason,
        LeaveReason::OrganizerChanged { .. }
    ));
}

#[test]
fn r30_completed_canceled_or_free_appointments_are_written_free() {
    let mut mb = Mailbox::ready("jayne");
    let cases = [
        ("a1", ActivityState::Scheduled, ShowAs::Busy, ShowAs::Busy),
        ("a2", ActivityState::Completed, ShowAs::Busy, ShowAs::Free),
        ("a3", ActivityState::Canceled, ShowAs::Busy, ShowAs::Free),
        ("a4", ActivityState::Scheduled, ShowAs::Free, ShowAs::Free),
        (
            "a5",
            ActivityState::Scheduled,
            ShowAs::Tentative,
            ShowAs::Tentative,
        ),
        (
            "a6",
            ActivityState::Open,
            ShowAs::OutOfOffice,
            ShowAs::OutOfOffice,
        ),
    ];
    for (id, state, show_as, written) in cases {
        let rec = with_appointment(team_meeting(id, "jayne", mb.now), |a| {
            a.state = state;
            a.show_as = show_as;
        });
        let ds = mb.feed(upsert(&rec));
        let (_, c) = one(creates(&ds), &ds);
        assert_eq!(c.item.show_as, Some(written), "{state:?} / {show_as:?}");
    }

    // A synced meeting completed in the CRM is updated to Free.
    let a = team_meeting("a7", "jayne", mb.now);
    mb.sync_new(&a);
    let ds = mb.feed(upsert(&changed_appointment(&a, |a| {
        a.state = ActivityState::Completed
    })));
    assert_eq!(one(updates(&ds), &ds).1.item.show_as, Some(ShowAs::Free));
}

#[test]
fn r31_no_reminder_more_than_7_days_past_or_free() {
    let mut mb = Mailbox::ready("jayne");
    let now = mb.now;
    let cases = [
        ("a1", now - Duration::days(8), ShowAs::Busy, false),
        ("a2", now - Duration::days(6), ShowAs::Busy, true),
        ("a3", now + Duration::days(2), ShowAs::Free, false),
        ("a4", now + Duration::days(2), ShowAs::Busy, true),
    ];
    for (id, start, show_as, reminder) in cases {
        let rec = with_appointment(team_meeting(id, "jayne", now), |a| {
            a.start = start;
            a.end = start + Duration::hours(1);
            a.show_as = show_as;
        });
        let ds = mb.feed(upsert(&rec));
        let (_, c) = one(creates(&ds), &ds);
        assert_eq!(c.item.reminder, reminder, "{id}: {}", c.basis.reason);
    }
}

#[test]
fn r32_past_meetings_are_not_updated_when_update_past_meetings_off() {
    let mut mb = Mailbox::ready("jayne");
    let a = appointment(
        "a1",
        crm_user("jayne"),
        vec![crm_user("zoe")],
        vec![],
        mb.now - Duration::days(1),
    );
    let remote = mb.sync_new(&a);

    let ds = mb.feed(upsert(&changed_appointment(&a, |a| {
        a.body = "Minutes attached".into()
    })));

    assert_eq!(summary(&ds), [(32, "no_action")]);
    let (_, n) = one(no_actions(&ds), &ds);
    assert_eq!(n.remote, Some(remote));
    assert!(
        n.basis
            .settings
            .iter()
            .any(|s| s.key == "update_past_meetings" && s.value == "false")
    );
}

#[test]
fn r32_past_meetings_are_updated_without_notifying_when_update_past_meetings_on() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.update_past_meetings = true;
    let a = appointment(
        "a1",
        crm_user("jayne"),
        vec![crm_user("zoe")],
        vec![],
        mb.now - Duration::days(1),
    );
    mb.sync_new(&a);

    let ds = mb.feed(upsert(&changed_appointment(&a, |a| {
        a.body = "Minutes attached".into()
    })));

    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.target), (18, Side::MailServer));
    assert!(
        !u.item.notify_attendees,
        "past meetings send no update (R26)"
    );
}

// ───────────── R36–R40, R73: changes from the mail server ─────────────

#[test]
fn r36_server_delete_of_open_future_meeting_by_organizer_deletes_crm_row() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);

    let ds = mb.feed(gone(&remote));

    assert_eq!(summary(&ds), [(36, "delete_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!(
        (d.target, &d.record, &d.remote),
        (Side::Crm, &a.id, &Some(remote))
    );
}

#[test]
fn r36_server_delete_keeps_crm_row_unless_open_future_and_organizer() {
    // Not the organizer.
    let mut zoe = Mailbox::ready("zoe");
    let a = team_meeting("a1", "jayne", zoe.now);
    let remote = zoe.sync_new(&a);
    assert_eq!(summary(&zoe.feed(gone(&remote))), [(36, "unlinked")]);

    // In the past.
    let mut mb = Mailbox::ready("jayne");
    let past = appointment(
        "a2",
        crm_user("jayne"),
        vec![crm_user("zoe")],
        vec![],
        mb.now - Duration::days(1),
    );
    let remote = mb.sync_new(&past);
    assert_eq!(summary(&mb.feed(gone(&remote))), [(36, "unlinked")]);

    // Completed or canceled.
    for (id, state) in [
        ("a3", ActivityState::Completed),
        ("a4", ActivityState::Canceled),
    ] {
        let closed = with_appointment(team_meeting(id, "jayne", mb.now), |a| a.state = state);
        let remote = mb.sync_new(&closed);
        let ds = mb.feed(gone(&remote));
        assert_eq!(summary(&ds), [(36, "unlinked")], "{state:?}");
        assert!(deletes(&ds).is_empty());
    }
}

#[test]
fn r37_server_changes_to_completed_or_canceled_meeting_are_ignored() {
    let mut mb = Mailbox::ready("jayne");
    for (id, state) in [
        ("a1", ActivityState::Completed),
        ("a2", ActivityState::Canceled),
    ] {
        let a = with_appointment(team_meeting(id, "jayne", mb.now), |a| a.state = state);
        let remote = mb.sync_new(&a);
        let item = remote_item(
            &remote,
            7,
            remote_appointment_fields("Edited in the calendar", &email_of("jayne"), mb.now),
        );

        let ds = mb.feed(seen(item));

        assert_eq!(summary(&ds), [(37, "no_action")], "{state:?}");
        assert!(updates(&ds).is_empty());
    }
}

#[test]
fn r37_server_changes_to_open_meeting_update_the_crm() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);
    let item = remote_item(
        &remote,
        7,
        remote_appointment_fields("Edited in the calendar", &email_of("jayne"), mb.now),
    );

    let ds = mb.feed(seen(item));

    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.target, &u.record), (18, Side::Crm, &a.id));
}

#[test]
fn r39_copy_of_a_linked_item_is_ignored_when_ignore_copies_on() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let original = mb.sync_new(&a);
    let copy = RemoteItem {
        tracked: Some(TrackedBy::Category),
        copy_of: Some(original.clone()),
        ..remote_item(
            &RemoteId::new("copy-1"),
            11,
            remote_appointment_fields("Meeting a1", &email_of("jayne"), mb.now),
        )
    };

    let ds = mb.feed(seen(copy.clone()));
    assert_eq!(summary(&ds), [(39, "no_action")]);
    assert_eq!(
        one(no_actions(&ds), &ds).1.remote,
        Some(copy.remote.clone())
    );

    // With the setting off the copy is tracked like any item.
    let mut mb2 = Mailbox::ready("jayne");
    mb2.settings.ignore_copied_items = false;
    mb2.sync_new(&a);
    let ds = mb2.feed(seen(copy));
    assert_eq!(summary(&ds), [(33, "item_tracked"), (33, "create_intent")]);
    assert_eq!(one(creates(&ds), &ds).1.target, Side::Crm);
}

fn service_appointment(id: &str, now: Timestamp) -> Record {
    with_appointment(team_meeting(id, "jayne", now), |a| a.service = true)
}

#[test]
fn r40_service_appointment_copies_go_to_each_participant_without_invitations() {
    let mut jayne = Mailbox::ready("jayne");
    let mut zoe = Mailbox::ready("zoe");
    let s = service_appointment("s1", jayne.now);

    for mb in [&mut jayne, &mut zoe] {
        let ds = mb.feed(upsert(&s));
        let (rule, c) = one(creates(&ds), &ds);
        assert_eq!(
            (rule, c.target),
            (17, Side::MailServer),
            "{} gets its own copy",
            mb.id
        );
        assert!(!c.item.notify_attendees, "{}", c.basis.reason);
    }

    // A sensitive change notifies nobody either.
    let remote = jayne.remote_for(&s.id);
    jayne.answer_create(&s.id, &remote);
    let ds = jayne.feed(upsert(&changed_appointment(&s, |a| {
        a.location = "Room 9".into()
    })));
    assert!(!one(updates(&ds), &ds).1.item.notify_attendees);
}

#[test]
fn r40_deleting_a_service_appointment_deletes_each_copy_without_cancellation() {
    let mut jayne = Mailbox::ready("jayne");
    let mut zoe = Mailbox::ready("zoe");
    let s = service_appointment("s1", jayne.now);

    for mb in [&mut jayne, &mut zoe] {
        let remote = mb.sync_new(&s);
        let ds = mb.feed(deleted(&s));
        assert_eq!(summary(&ds), [(40, "delete_intent")], "{}", mb.id);
        assert_eq!(one(deletes(&ds), &ds).1.remote, Some(remote));
    }
}

#[test]
fn r40_canceling_a_service_appointment_sends_no_cancellation() {
    let mut jayne = Mailbox::ready("jayne");
    jayne.settings.propagate_appointment_cancellations = true;
    let s = service_appointment("s1", jayne.now);
    jayne.sync_new(&s);

    let ds = jayne.feed(upsert(&changed_appointment(&s, |a| {
        a.state = ActivityState::Canceled
    })));

    assert!(
        cancels(&ds).is_empty(),
        "service appointments never send cancellations: {:?}",
        summary(&ds)
    );
}

#[test]
fn r73_removing_the_tracking_category_untracks_and_keeps_the_crm_row() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    let remote = mb.sync_new(&a);
    let fields = remote_appointment_fields(
        "Meeting a1",
        &email_of("jayne"),
        a.appointment().unwrap().start,
    );
    let tracked = RemoteItem {
        tracked: Some(TrackedBy::Category),
        ..remote_item(&remote, 1, fields)
    };
    mb.feed(seen(tracked.clone()));

    // Removing the category rewrites the item: a new version tag (the same tag would be the
    // version ledgersync wrote, its own write seen again).
    let ds = mb.feed(seen(RemoteItem {
        tracked: None,
        etag: "\"1-untracked\"".into(),
        ..tracked
    }));

    assert_eq!(summary(&ds), [(73, "item_untracked"), (73, "unlinked")]);
    assert_eq!(one(untracked(&ds), &ds).1.record, Some(a.id.clone()));
    assert!(deletes(&ds).is_empty(), "the CRM row is kept");
    assert_eq!(mb.link(&a.id).status, LinkStatus::Unlinked);
}

// ───────────── R42–R48: contacts and tasks ─────────────

#[test]
fn r42_crm_contact_delete_unlinks_in_the_owners_mailbox() {
    let mut mb = Mailbox::ready("jayne");
    let c = contact("c1", "jayne");
    let remote = mb.sync_new(&c);

    let ds = mb.feed(deleted(&c));

    assert_eq!(summary(&ds), [(42, "unlinked")]);
    assert_eq!(one(unlinks(&ds), &ds).1.remote, Some(remote));
}

#[test]
fn r42_crm_contact_delete_deletes_in_a_non_owners_mailbox() {
    let mut paul = Mailbox::ready("paul");
    paul.set_filters(Entity::Contact, &["state = active"]);
    let c = contact("c1", "jayne");
    let remote = paul.sync_new(&c);

    let ds = paul.feed(deleted(&c));

    assert_eq!(summary(&ds), [(42, "delete_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!((d.target, &d.remote), (Side::MailServer, &Some(remote)));
}

#[test]
fn r42_owners_copy_is_deleted_when_the_rule_is_configured_off() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.contact_delete_only_for_non_owner = false;
    let c = contact("c1", "jayne");
    mb.sync_new(&c);

    let ds = mb.feed(deleted(&c));

    assert_eq!(summary(&ds), [(42, "delete_intent")]);
}

#[test]
fn r43_server_contact_delete_by_owner_deletes_crm_contact() {
    let mut mb = Mailbox::ready("jayne");
    let c = contact("c1", "jayne");
    let remote = mb.sync_new(&c);

    let ds = mb.feed(gone(&remote));

    assert_eq!(summary(&ds), [(43, "delete_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!((d.target, &d.record), (Side::Crm, &c.id));
}

#[test]
fn r43_server_contact_delete_by_non_owner_keeps_crm_contact() {
    let mut paul = Mailbox::ready("paul");
    paul.set_filters(Entity::Contact, &["state = active"]);
    let c = contact("c1", "jayne");
    let remote = paul.sync_new(&c);

    let ds = paul.feed(gone(&remote));

    assert_eq!(summary(&ds), [(43, "unlinked")]);
}

#[test]
fn r44_fax_letter_and_phone_call_are_written_as_server_tasks() {
    let mut mb = Mailbox::ready("jayne");
    for (id, kind) in [
        ("t1", TaskKind::Task),
        ("t2", TaskKind::Fax),
        ("t3", TaskKind::Letter),
        ("t4", TaskKind::PhoneCall),
    ] {
        let ds = mb.feed(upsert(&task_of_kind(id, "jayne", kind, mb.now)));
        let (rule, c) = one(creates(&ds), &ds);
        assert_eq!((rule, c.target), (17, Side::MailServer), "{kind:?}");
        if kind != TaskKind::Task {
            assert!(
                c.basis.reason.contains("is written as a server task"),
                "{}",
                c.basis.reason
            );
        }
    }
}

#[test]
fn r44_tracked_server_task_becomes_a_crm_task() {
    let mut mb = Mailbox::ready("jayne");
    let remote = RemoteId::new("tasks/42.ics");

    let ds = mb.feed(seen(tracked_server_task(&remote, 0, 1)));

    assert_eq!(summary(&ds), [(44, "item_tracked"), (44, "create_intent")]);
    let (_, c) = one(creates(&ds), &ds);
    assert_eq!((c.target, &c.remote), (Side::Crm, &Some(remote)));
    assert_eq!(c.item.title, "Order spare parts");
    assert_eq!(
        remote_task_fields("x", 0).entity(),
        Entity::Task,
        "server tasks map to CRM tasks only"
    );
}

#[test]
fn r44_crm_task_created_from_a_server_task_is_not_copied_back_to_the_server() {
    let mut mb = Mailbox::ready("jayne");
    let remote = RemoteId::new("tasks/42.ics");
    let ds = mb.feed(seen(tracked_server_task(&remote, 0, 1)));
    let record = one(creates(&ds), &ds).1.record.clone();
    mb.answer_create(&record, &remote);

    // The CRM reports the row the engine created.
    let row = with_task(task(record.as_str(), "jayne", mb.now), |t| {
        t.subject = "Order spare parts".into()
    });
    let ds = mb.feed(upsert(&row));

    assert!(
        creates(&ds)
            .iter()
            .all(|(_, c)| c.target != Side::MailServer),
        "the row came from the server item; creating it there again duplicates it: {:?}",
        summary(&ds)
    );
    assert_eq!(
        mb.state.active_link(&record).and_then(|l| l.remote.clone()),
        Some(remote)
    );
}

#[test]
fn r45_crm_task_delete_deletes_the_server_task() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    let remote = mb.sync_new(&t);

    let ds = mb.feed(deleted(&t));

    assert_eq!(summary(&ds), [(45, "delete_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert_eq!((d.target, &d.remote), (Side::MailServer, &Some(remote)));
}

#[test]
fn r45_crm_task_delete_keeps_a_task_already_completed_on_the_server() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    let remote = mb.sync_new(&t);
    mb.feed(seen(remote_item(
        &remote,
        2,
        remote_task_fields("Task t1", 100),
    )));

    let ds = mb.feed(deleted(&t));

    assert_eq!(summary(&ds), [(45, "unlinked")]);
    assert_eq!(one(unlinks(&ds), &ds).1.remote, Some(remote));
}

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

#[test]
fn r46_mode_0_deletes_the_crm_task() {
    assert_eq!(
        summary(&server_task_delete(TaskDeletionMode::Delete, false)),
        [(46, "delete_intent")]
    );
    assert_eq!(
        summary(&server_task_delete(TaskDeletionMode::Delete, true)),
        [(46, "delete_intent")]
    );
}

#[test]
fn r46_mode_1_deletes_only_a_crm_task_that_is_not_completed() {
    let open = server_task_delete(TaskDeletionMode::DeleteIfNotCompleted, false);
    assert_eq!(summary(&open), [(46, "delete_intent")]);
    let done = server_task_delete(TaskDeletionMode::DeleteIfNotCompleted, true);
    assert_eq!(summary(&done), [(46, "unlinked")]);
}

#[test]
fn r46_mode_2_never_deletes_the_crm_task() {
    let ds = server_task_delete(TaskDeletionMode::Never, false);
    assert_eq!(summary(&ds), [(46, "unlinked")]);
    let (_, u) = one(unlinks(&ds), &ds);
    assert!(
        u.basis
            .settings
            .iter()
            .any(|s| s.key == "task_deletion_mode" && s.value == "2")
    );
}

#[test]
fn r47_actual_end_in_the_past_marks_the_server_task_completed() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    mb.sync_new(&t);

    let ds = mb.feed(upsert(&changed_task(&t, |t| {
        t.actual_end = Some(mb.now - Duration::hours(1))
    })));

    assert_eq!(summary(&ds), [(47, "update_intent")]);
    let (_, u) = one(updates(&ds), &ds);
    assert_eq!((u.target, u.item.completed), (Side::MailServer, true));

    // A new task already ended is created completed.
    let done = with_task(task("t2", "jayne", mb.now), |t| {
        t.actual_end = Some(mb.now - Duration::days(1))
    });
    let ds = mb.feed(upsert(&done));
    assert!(one(creates(&ds), &ds).1.item.completed);
}

#[test]
fn r47_actual_end_in_the_future_leaves_the_server_task_open() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    mb.sync_new(&t);

    let ds = mb.feed(upsert(&changed_task(&t, |t| {
        t.actual_end = Some(mb.now + Duration::days(1))
    })));

    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.item.completed), (18, false));
}

#[test]
fn r48_server_task_at_100_percent_completes_the_crm_task() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    let remote = mb.sync_new(&t);

    let ds = mb.feed(seen(remote_item(
        &remote,
        2,
        remote_task_fields("Task t1", 100),
    )));

    assert_eq!(summary(&ds), [(48, "update_intent")]);
    let (_, u) = one(updates(&ds), &ds);
    assert_eq!(
        (u.target, &u.record, u.item.completed),
        (Side::Crm, &t.id, true)
    );

    // Less than 100 % is an ordinary update that does not complete it.
    let ds = mb.feed(seen(remote_item(
        &remote,
        3,
        remote_task_fields("Task t1", 50),
    )));
    let (rule, u) = one(updates(&ds), &ds);
    assert_eq!((rule, u.item.completed), (18, false));
}

#[test]
fn r48_task_created_from_the_server_gets_actual_start_now() {
    let mut mb = Mailbox::ready("jayne");
    mb.advance(Duration::minutes(17));

    let ds = mb.feed(seen(tracked_server_task(
        &RemoteId::new("tasks/7.ics"),
        0,
        1,
    )));

    let (_, c) = one(creates(&ds), &ds);
    assert_eq!(
        (c.target, c.item.actual_start, c.item.completed),
        (Side::Crm, Some(mb.now), false)
    );

    // A server task tracked when already at 100 % is created completed.
    let ds = mb.feed(seen(tracked_server_task(
        &RemoteId::new("tasks/8.ics"),
        100,
        1,
    )));
    assert!(one(creates(&ds), &ds).1.item.completed);
}

#[test]
fn r48_task_created_from_the_server_is_completed_in_the_crm_when_it_reaches_100() {
    let mut mb = Mailbox::ready("jayne");
    let remote = RemoteId::new("tasks/42.ics");
    let ds = mb.feed(seen(tracked_server_task(&remote, 0, 1)));
    let record = one(creates(&ds), &ds).1.record.clone();
    let ds = mb.answer_create(&record, &remote);
    assert_eq!(summary(&ds), [(33, "link_created")]);

    let ds = mb.feed(seen(tracked_server_task(&remote, 100, 2)));

    assert_eq!(summary(&ds), [(48, "update_intent")]);
    let (_, u) = one(updates(&ds), &ds);
    assert_eq!(
        (u.target, &u.record, u.item.completed),
        (Side::Crm, &record, true)
    );
}

// ───────────── R82: no duplicate notifications ─────────────

#[test]
fn r82_cancellation_is_not_sent_twice_when_the_delete_is_redelivered() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);
    assert_eq!(
        summary(&mb.feed(deleted(&a))),
        [(27, "delete_intent"), (27, "cancel_intent")]
    );
    let cancel = mb.id_of(|e| matches!(e, Event::CancelIntent(_)));
    let delete = mb.id_of(|e| matches!(e, Event::DeleteIntent(_)));
    mb.succeed(cancel);
    // The delete failed transiently: it stays pending and is retried with its key (R12).
    assert_eq!(summary(&mb.fail(delete, "503")), [(12, "error_classified")]);
    assert!(mb.state.intents.contains_key(&delete));

    let ds = mb.feed(deleted(&a));

    assert!(
        ds.is_empty(),
        "a redelivered delete decides nothing: {ds:#?}"
    );
}

#[test]
fn r82_a_cancellation_that_failed_transiently_is_retried_not_decided_again() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);
    mb.feed(deleted(&a));
    let cancel = mb.id_of(|e| matches!(e, Event::CancelIntent(_)));
    let delete = mb.id_of(|e| matches!(e, Event::DeleteIntent(_)));
    mb.fail(cancel, "503");
    mb.fail(delete, "503");
    // Both stay pending: the connector retries them with the same idempotency keys.
    assert!(mb.state.intents.contains_key(&cancel) && mb.state.intents.contains_key(&delete));

    let ds = mb.feed(deleted(&a));

    assert!(cancels(&ds).is_empty(), "{ds:#?}");
}

#[test]
fn r82_a_meeting_invited_again_after_its_cancellation_can_be_cancelled_again() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);
    let lost = mb.feed(access_lost("jayne", &[&a], AccessReason::Role));
    assert_eq!(cancels(&lost).len(), 1);
    for id in [
        mb.id_of(|e| matches!(e, Event::CancelIntent(_))),
        mb.id_of(|e| matches!(e, Event::DeleteIntent(_))),
    ] {
        mb.succeed(id);
    }
    // Access comes back: the meeting is created again, with invitations.
    let back = mb.feed(access_regained("jayne", &[&a], AccessReason::Role));
    let (_, create) = one(creates(&back), &back);
    assert!(create.item.notify_attendees);
    let remote = mb.remote_for(&a.id);
    mb.answer_create(&a.id, &remote);

    let lost_again = mb.feed(access_lost("jayne", &[&a], AccessReason::Role));

    assert_eq!(cancels(&lost_again).len(), 1, "{lost_again:#?}");
}

#[test]
fn r82_update_is_not_sent_twice_for_the_same_version() {
    let mut mb = Mailbox::ready("jayne");
    let a = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&a);
    let a2 = changed_appointment(&a, |a| a.location = "Room 9".into());
    let ds = mb.feed(upsert(&a2));
    let (_, u) = one(updates(&ds), &ds);
    assert!(
        u.item.notify_attendees,
        "the first update of version 2 notifies"
    );

    assert!(
        mb.feed(upsert(&a2)).is_empty(),
        "a redelivered version sends nothing"
    );
    // Re-evaluating the row (access regained) finds nothing new to send either.
    assert!(
        mb.feed(access_regained("jayne", &[&a2], AccessReason::Role))
            .is_empty()
    );
}

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

#[test]
fn r7_incoming_runs_5_minutes_after_an_ordinary_cycle_and_2_after_a_busy_one() {
    let mut mb = Mailbox::ready("jayne");
    assert_eq!(
        cycle(&mut mb, Workload::Incoming, 3),
        (7, mb.now + Duration::minutes(5))
    );
    assert_eq!(
        cycle(&mut mb, Workload::Incoming, 25),
        (7, mb.now + Duration::minutes(2))
    );
}

#[test]
fn r7_a_quiet_mailbox_waits_longer_up_to_12_minutes() {
    let mut mb = Mailbox::ready("jayne");
    let waits: Vec<i64> = (0..10)
        .map(|_| (cycle(&mut mb, Workload::Incoming, 0).1 - mb.now).as_minutes())
        .collect();
    assert_eq!(waits, [6, 7, 8, 9, 10, 11, 12, 12, 12, 12]);
    // One cycle with mail brings it back to the ordinary cadence.
    assert_eq!(
        cycle(&mut mb, Workload::Incoming, 1).1,
        mb.now + Duration::minutes(5)
    );
}

#[test]
fn r8_outgoing_email_is_scanned_every_5_minutes() {
    let mut mb = Mailbox::ready("jayne");
    for items in [0, 0, 40, 0] {
        assert_eq!(
            cycle(&mut mb, Workload::Outgoing, items),
            (8, mb.now + Duration::minutes(5))
        );
    }
}

#[test]
fn r9_act_runs_5_minutes_after_changes_and_up_to_15_when_incoming_is_enabled() {
    let mut mb = Mailbox::ready("jayne");
    assert_eq!(
        cycle(&mut mb, Workload::Act, 2),
        (9, mb.now + Duration::minutes(5))
    );
    let waits: Vec<i64> = (0..12)
        .map(|_| (cycle(&mut mb, Workload::Act, 0).1 - mb.now).as_minutes())
        .collect();
    assert_eq!(*waits.first().unwrap(), 6);
    assert_eq!(*waits.last().unwrap(), 15);
    assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
}

#[test]
fn r9_act_waits_at_most_12_minutes_without_incoming_email() {
    let mut mb = Mailbox::ready("jayne");
    mb.feed(Event::DisableRequested(DisableRequested {
        mailbox: mb.id.clone(),
        workload: Workload::Incoming,
        by: "admin".into(),
    }));
    let last = (0..12)
        .map(|_| cycle(&mut mb, Workload::Act, 0).1)
        .last()
        .unwrap();
    assert_eq!(last - mb.now, Duration::minutes(12));
}

#[test]
fn r7_a_push_signal_runs_the_next_cycle_now() {
    let mut mb = Mailbox::ready("jayne");
    let ds = mb.feed(Event::PushReceived(PushReceived {
        workload: Workload::Incoming,
    }));
    assert_eq!(summary(&ds), [(7, "cycle_scheduled")]);
    assert_eq!(mb.state.workload(Workload::Incoming).next_run, Some(mb.now));
}

#[test]
fn r7_cadence_is_a_setting_in_seconds_and_a_disabled_workload_is_not_scheduled() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.set("schedule_incoming_seconds", "30").unwrap();
    assert_eq!(
        cycle(&mut mb, Workload::Incoming, 1).1,
        mb.now + Duration(30_000)
    );
    let ds = mb.feed(Event::ListingCompleted(ListingCompleted {
        workload: Workload::Act,
        items: 0,
    }));
    assert_eq!(summary(&ds), [(9, "cycle_scheduled")]);
    mb.feed(Event::DisableRequested(DisableRequested {
        mailbox: mb.id.clone(),
        workload: Workload::Act,
        by: "admin".into(),
    }));
    let ds = mb.feed(Event::ListingCompleted(ListingCompleted {
        workload: Workload::Act,
        items: 0,
    }));
    assert!(ds.is_empty(), "{ds:#?}");
    let e = mb
        .settings
        .set("schedule_act_max_seconds", "0")
        .unwrap_err();
    assert!(e.to_string().contains("from 1 to 86400"), "{e}");
}

// ───────────── R80: health counters ─────────────

#[test]
fn r80_a_cycle_reports_the_items_it_processed_and_the_items_that_failed() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    mb.feed(upsert(&t));
    let create = mb.id_of(|e| matches!(e, Event::CreateIntent(_)));
    mb.fail(create, "503");
    mb.feed(Event::ListingCompleted(ListingCompleted {
        workload: Workload::Act,
        items: 7,
    }));
    let w = mb.state.workload(Workload::Act);
    assert_eq!(
        (w.items_processed_last_cycle, w.items_failed_last_cycle),
        (7, 1)
    );
    assert_eq!(
        w.consecutive_errors, 0,
        "an item failure is not a workload failure"
    );
    mb.feed(Event::ListingCompleted(ListingCompleted {
        workload: Workload::Act,
        items: 0,
    }));
    let w = mb.state.workload(Workload::Act);
    assert_eq!(
        (w.items_processed_last_cycle, w.items_failed_last_cycle),
        (0, 0)
    );
}
