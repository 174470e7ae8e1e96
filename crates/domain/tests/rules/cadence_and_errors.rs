//! R7–R12, R14, R79, R80: the cadence of cycles, server errors and retries, the profile alert.

use super::*;

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
fn r10_r11_r12_error_classification_reads_the_kind_not_the_text() {
    use ErrorClass::{Permanent, Transient};
    use ErrorScope::{Item, Mailbox, Server};
    let workload = |code: &str| classify(&server_error(code, None), ErrorSubject::Workload);
    let item = |code: &str| classify(&server_error(code, None), ErrorSubject::Item);
    // Canonical codes and the legacy codes of earlier releases, each by exact match.
    for (code, expected) in [
        ("auth", (Permanent, Mailbox)),
        ("401", (Permanent, Mailbox)),
        ("NO [AUTHENTICATIONFAILED]", (Permanent, Mailbox)),
        ("forbidden", (Permanent, Mailbox)),
        ("403", (Permanent, Mailbox)),
        ("not_approved", (Permanent, Mailbox)),
        ("unapproved", (Permanent, Mailbox)),
        ("tls", (Permanent, Server)),
        ("unsupported", (Permanent, Server)),
        ("malformed", (Permanent, Server)),
        ("invalid", (Permanent, Server)),
        ("400", (Permanent, Server)),
        ("too_large", (Permanent, Server)),
        ("gone", (Permanent, Server)),
        ("410", (Permanent, Server)),
        // A collection not found may come back (R11).
        ("not_found", (Transient, Server)),
        ("404", (Transient, Server)),
        ("quota", (Transient, Mailbox)),
        ("conflict", (Transient, Server)),
        ("412", (Transient, Server)),
        ("rate_limited", (Transient, Server)),
        ("429", (Transient, Server)),
        ("unavailable", (Transient, Server)),
        ("503", (Transient, Server)),
        ("500", (Transient, Server)),
        ("timeout", (Transient, Server)),
        ("network", (Transient, Server)),
        ("io", (Transient, Server)),
        ("cursor", (Transient, Server)),
        // Outside the vocabulary: transient, bounded by the retry limit.
        ("connection reset", (Transient, Server)),
    ] {
        assert_eq!(workload(code), expected, "{code}");
    }
    // No substring matching any more: a text that merely contains a code is unknown.
    assert_eq!(workload("HTTP 401 maybe"), (Transient, Server));
    // An item's error concerns the item (R12); an item not found or gone is permanent.
    for code in ["not_found", "404", "gone", "410", "malformed", "auth"] {
        assert_eq!(item(code), (Permanent, Item), "{code}");
    }
    for code in ["conflict", "412", "unavailable", "timeout", "quota"] {
        assert_eq!(item(code), (Transient, Item), "{code}");
    }
    // A connector reports a kind; the code it writes reads back as that kind.
    for kind in ErrorKind::ALL {
        assert_eq!(ServerError::of_kind(kind, "m").kind(), kind);
    }
}

#[test]
fn r11_a_missing_collection_is_transient_retried_and_disables_only_at_the_limit() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.set("transient_retry_limit", "3").unwrap();
    for attempt in 1..=2 {
        let ds = mb.listing_failed(Workload::Act, "not_found", None);
        assert_eq!(
            summary(&ds),
            [
                (25, "no_action"),
                (11, "error_classified"),
                (11, "retry_scheduled")
            ],
            "attempt {attempt}"
        );
        let (_, c) = one(classifications(&ds), &ds);
        assert_eq!(
            (c.class, c.attempt, c.limit),
            (ErrorClass::Transient, attempt, 3)
        );
        assert!(
            c.basis.reason.contains("the collection was not found")
                && c.basis.reason.contains("retried"),
            "{}",
            c.basis.reason
        );
        assert!(mb.state.workload(Workload::Act).enabled);
        mb.advance(Duration::minutes(5));
    }
    // The legacy code of the same condition reaches the limit: disabled by R11, not R10.
    let ds = mb.listing_failed(Workload::Act, "404", None);
    let (rule, d) = one(disables(&ds), &ds);
    assert_eq!((rule, &d.reason), (11, &DisableReason::TransientLimit));
    let (_, alert) = one(alerts(&ds), &ds);
    assert!(
        alert.text.contains("3 consecutive transient failures")
            && alert.text.contains("the collection was not found"),
        "{}",
        alert.text
    );
}

#[test]
fn r12_an_item_gone_from_the_server_is_permanent_and_not_retried() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    mb.feed(upsert(&t));
    let create = mb.id_of(|e| matches!(e, Event::CreateIntent(_)));

    let ds = mb.fail(create, "gone");

    let (rule, c) = one(classifications(&ds), &ds);
    assert_eq!(
        (rule, c.class, c.scope, c.intent),
        (12, ErrorClass::Permanent, ErrorScope::Item, Some(create))
    );
    assert!(c.basis.reason.contains("not retried"), "{}", c.basis.reason);
    assert!(
        !mb.state.intents.contains_key(&create),
        "a permanent item error closes the intent"
    );
    assert!(
        mb.state.workload(Workload::Act).enabled,
        "only the item is affected"
    );
}

#[test]
fn r11_r15_a_retry_after_is_honoured_up_to_an_hour_by_the_workload_and_the_credential() {
    use ledgersync_domain::policy::retry_after::{
        MAX_RETRY_AFTER, credential_hold, honoured_retry_after, next_retry,
    };
    let now = t0();
    let interval = Duration::minutes(5);
    let at = |ra: Option<Timestamp>| ServerError::rate_limited("slow down", ra);
    // No Retry-After: the interval, and no hold of the credential.
    assert_eq!(next_retry(now, interval, &at(None)), now + interval);
    assert_eq!(credential_hold(now, &at(None)), None);
    // Within the hour: honoured by both.
    let later = now + Duration::minutes(20);
    assert_eq!(next_retry(now, interval, &at(Some(later))), later);
    assert_eq!(
        credential_hold(now, &at(Some(later))),
        Some(Duration::minutes(20))
    );
    // Sooner than the interval: the interval wins for the workload, the hold is short.
    let soon = now + Duration::minutes(1);
    assert_eq!(next_retry(now, interval, &at(Some(soon))), now + interval);
    // Past: no hold.
    let past = now - Duration::minutes(1);
    assert_eq!(credential_hold(now, &at(Some(past))), Some(Duration(0)));
    // Days away: capped at an hour for both.
    let far = now + Duration::days(3);
    assert_eq!(
        honoured_retry_after(now, &at(Some(far))),
        Some(now + MAX_RETRY_AFTER)
    );
    assert_eq!(
        next_retry(now, interval, &at(Some(far))),
        now + Duration::hours(1)
    );
    assert_eq!(
        credential_hold(now, &at(Some(far))),
        Some(Duration::hours(1))
    );

    // The decision uses the same policy.
    let mut mb = Mailbox::ready("jayne");
    let far = mb.now + Duration::days(3);
    let ds = mb.feed(Event::ListingFailed(ListingFailed {
        workload: Workload::Incoming,
        error: ServerError::rate_limited("Too Many Requests", Some(far)),
    }));
    let (rule, r) = one(retries(&ds), &ds);
    assert_eq!((rule, r.at), (11, mb.now + Duration::hours(1)));
}

#[test]
fn r15_the_connection_limit_is_1_to_300_default_10() {
    use ledgersync_domain::policy::connections::*;
    assert_eq!(
        (MIN_CONNECTIONS, DEFAULT_CONNECTIONS, MAX_CONNECTIONS),
        (1, 10, 300)
    );
    assert_eq!(check_max_connections(1), Ok(1));
    assert_eq!(check_max_connections(300), Ok(300));
    for n in [0, 301, u16::MAX] {
        let e = check_max_connections(n).unwrap_err();
        assert!(
            e.to_string().contains("between 1 and 300") && e.to_string().contains(&n.to_string()),
            "{e}"
        );
    }
    assert_eq!(RULE.to_string(), "R15");
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

#[test]
fn r12_a_transient_item_failure_counts_its_attempts_waits_the_interval_and_is_given_up_at_the_limit()
 {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.set("transient_retry_limit", "3").unwrap();
    let a = team_meeting("a1", "jayne", mb.now);
    mb.feed(upsert(&a));
    let create = mb.id_of(|e| matches!(e, Event::CreateIntent(_)));
    let interval = mb.settings.transient_retry_interval;

    for attempt in 1..=2 {
        let ds = mb.fail(create, "unavailable");
        assert_eq!(
            summary(&ds),
            [(12, "error_classified")],
            "attempt {attempt}"
        );
        let (_, c) = one(classifications(&ds), &ds);
        assert_eq!(
            (c.class, c.scope, c.attempt, c.limit, c.intent),
            (
                ErrorClass::Transient,
                ErrorScope::Item,
                attempt,
                3,
                Some(create)
            )
        );
        assert!(
            c.basis.reason.contains(&format!("attempt {attempt} of 3")),
            "{}",
            c.basis.reason
        );
        let pending = &mb.state.intents[&create];
        assert_eq!(pending.failures, attempt);
        assert_eq!(pending.last_failed, Some(mb.now));
        assert_eq!(pending.retry_at, Some(mb.now + interval));
        assert!(!pending.due(mb.now), "not again before the interval");
        assert!(!pending.due(mb.now + interval - Duration(1)));
        assert!(pending.due(mb.now + interval));
        assert_eq!(mb.link(&a.id).status, LinkStatus::Creating);
        mb.advance(interval);
    }

    // The third failure reaches the limit: the item is given up and the owner told.
    let ds = mb.fail(create, "unavailable");
    assert_eq!(
        summary(&ds),
        [(12, "error_classified"), (79, "alert_raised")]
    );
    let (_, c) = one(classifications(&ds), &ds);
    assert_eq!((c.class, c.attempt, c.limit), (ErrorClass::Transient, 3, 3));
    assert!(c.basis.reason.contains("given up"), "{}", c.basis.reason);
    let (_, alert) = one(alerts(&ds), &ds);
    assert_eq!(alert.level, AlertLevel::Warning);
    assert!(
        alert.text.contains("failed 3 times") && alert.text.contains("no longer retried"),
        "{}",
        alert.text
    );
    assert!(
        !mb.state.intents.contains_key(&create),
        "never executed again"
    );
    assert!(!mb.state.links.contains_key(&a.id), "the row is not linked");
    let w = mb.state.workload(Workload::Act);
    assert!(
        w.enabled && w.consecutive_errors == 0,
        "an item never disables the mailbox (R12)"
    );
    // A failure arriving for the closed intent (a late outcome) decides nothing.
    assert!(mb.fail(create, "unavailable").is_empty());
}

#[test]
fn r11_r12_an_item_retry_waits_for_the_servers_retry_after() {
    let mut mb = Mailbox::ready("jayne");
    let t = task("t1", "jayne", mb.now);
    mb.feed(upsert(&t));
    let create = mb.id_of(|e| matches!(e, Event::CreateIntent(_)));
    let later = mb.now + Duration::minutes(20);
    mb.feed(Event::IntentFailed(IntentFailed {
        intent: create,
        error: ServerError::rate_limited("slow down", Some(later)),
        crm: None,
    }));
    assert_eq!(mb.state.intents[&create].retry_at, Some(later));
    // A success after retries clears the count with the intent.
    mb.now = later;
    mb.answer_create(&t.id, &RemoteId::new("tasks/t1"));
    assert!(mb.state.intents.is_empty());
    assert_eq!(mb.link(&t.id).status, LinkStatus::Linked);
}

#[test]
fn r79_a_given_up_item_keeps_its_row_change_error_time_and_retry_count() {
    let mut mb = Mailbox::ready("jayne");
    mb.settings.set("transient_retry_limit", "2").unwrap();
    let t = task("t1", "jayne", mb.now);
    mb.feed(upsert(&t));
    let create = mb.id_of(|e| matches!(e, Event::CreateIntent(_)));
    mb.fail(create, "timeout");
    mb.advance(Duration::minutes(5));
    mb.fail(create, "timeout");
    let f = &mb.state.failed_intents[&create];
    assert_eq!(
        (
            &f.record,
            f.kind,
            f.to_crm,
            f.class,
            f.attempts,
            f.at,
            f.error.code.as_str()
        ),
        (
            &t.id,
            IntentKind::Create,
            false,
            ErrorClass::Transient,
            2,
            mb.now,
            "timeout"
        )
    );
    // A permanent failure is recorded too, after one attempt.
    let c = contact("c1", "jayne");
    mb.feed(upsert(&c));
    let create_c = mb.id_of(|e| matches!(e, Event::CreateIntent(p) if p.record == c.id));
    let ds = mb.fail(create_c, "malformed");
    assert!(
        alerts(&ds).is_empty(),
        "a permanent item error is no retry to end"
    );
    let f = &mb.state.failed_intents[&create_c];
    assert_eq!((f.class, f.attempts), (ErrorClass::Permanent, 1));
    // The row synced again later: its given-up intent is history.
    let t2 = next_version(&t, |_| {});
    mb.feed(upsert(&t2));
    mb.answer_create(&t.id, &RemoteId::new("tasks/t1"));
    assert!(!mb.state.failed_intents.contains_key(&create));
}

#[test]
fn r77_r12_a_full_mailbox_or_throttling_answer_to_an_intent_leaves_it_pending_and_the_mailbox_enabled()
 {
    // An SMTP 452 4.2.2 (mailbox full) is reported `quota`, a 421/450/451 `rate_limited`: for
    // an intent both are transient item errors, retried later, never disabling the mailbox.
    for code in ["quota", "rate_limited"] {
        let mut mb = Mailbox::ready("jayne");
        let a = team_meeting("a1", "jayne", mb.now);
        mb.feed(upsert(&a));
        let create = mb.id_of(|e| matches!(e, Event::CreateIntent(_)));
        let interval = mb.settings.transient_retry_interval;
        let ds = mb.fail(create, code);
        assert_eq!(summary(&ds), [(12, "error_classified")], "{code}");
        let (_, c) = one(classifications(&ds), &ds);
        assert_eq!(
            (c.class, c.scope, c.attempt, c.intent),
            (ErrorClass::Transient, ErrorScope::Item, 1, Some(create)),
            "{code}"
        );
        let pending = &mb.state.intents[&create];
        assert_eq!(pending.failures, 1, "{code}");
        assert!(!pending.due(mb.now), "{code}: not again at once");
        assert!(
            pending.due(mb.now + interval),
            "{code}: again after the interval"
        );
        for w in [Workload::Act, Workload::Incoming, Workload::Outgoing] {
            let w = mb.state.workload(w);
            assert!(
                w.enabled && w.consecutive_errors == 0,
                "{code}: an item error never touches the mailbox"
            );
        }
        assert_eq!(mb.link(&a.id).status, LinkStatus::Creating, "{code}");
    }
}
