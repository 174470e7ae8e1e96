//! R1–R6, R81: mapping, the organization marker, approval, Test & Enable, disabling.

use super::*;

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
