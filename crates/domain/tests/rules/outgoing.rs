//! Outgoing email (R75–R78): a CRM email row in Pending Send is sent by its sending mailbox,
//! once; its success marks the row Sent in the CRM; quota and throttling keep it pending.

use super::*;
use ledgersync_domain::RecordId;
use ledgersync_domain::crm;
use ledgersync_domain::decide::Decision;
use ledgersync_domain::email::outgoing;
use ledgersync_domain::event::CommandType;

/// An email from `from` to an outside customer, in `state`, version `version`.
fn email_row(id: &str, from: Party, state: EmailState, version: u64) -> Record {
    Record {
        id: RecordId::new(id),
        owner: from.user.clone().unwrap_or_else(|| UserId::new("jayne")),
        version,
        body: RecordBody::Email(Email {
            subject: "Your quote".into(),
            from,
            to: vec![outsider("zoe@customer.example")],
            message_id: String::new(),
            regarding: None,
            state,
            cc: vec![crm_user("kaylee")],
            text: Some("Zoe, the quote is attached.".into()),
            html: None,
            submitted_by: None,
            tracking_token: Some("CRM:0001004".into()),
        }),
    }
}

fn send_of(ds: &[Decision]) -> (u8, &CreateIntent) {
    one(creates(ds), ds)
}

#[test]
fn r75_a_pending_send_email_is_sent_once_by_its_senders_mailbox() {
    let mut jayne = Mailbox::ready("jayne");
    let row = email_row("eml-quote", crm_user("jayne"), EmailState::PendingSend, 1);
    let ds = jayne.feed(upsert(&row));
    let (rule, send) = send_of(&ds);
    assert_eq!(rule, 75);
    assert_eq!(send.target, Side::MailServer);
    assert_eq!(send.record, row.id);
    // R63/R64: the subject carries the row's tracking token.
    assert_eq!(send.item.title, "Your quote CRM:0001004");
    assert_eq!(send.item.attendees, 2, "one To and one Cc");
    let message_id = outgoing::message_id(&send.key, &email_of("jayne"));
    assert!(
        send.basis.reason.contains(&message_id),
        "{}",
        send.basis.reason
    );
    assert!(
        send.basis
            .settings
            .iter()
            .any(|s| s.key == "email_max_subject_length" && s.value == "255")
    );

    // A recipient's mailbox does not send it.
    let mut kaylee = Mailbox::ready("kaylee");
    assert!(kaylee.feed(upsert(&row)).is_empty());

    // A new version while it is being sent is not sent twice.
    let v2 = email_row("eml-quote", crm_user("jayne"), EmailState::PendingSend, 2);
    let ds = jayne.feed(upsert(&v2));
    let (rule, why) = one(no_actions(&ds), &ds);
    assert_eq!(rule, 75);
    assert!(
        why.basis.reason.contains("not sent twice"),
        "{}",
        why.basis.reason
    );

    // R76: sent. The row is linked to the message and the CRM is told to mark it Sent.
    let intent = jayne.id_of(|e| matches!(e, Event::CreateIntent(p) if p.record == row.id));
    let ds = jayne.feed(Event::IntentSucceeded(IntentSucceeded {
        intent,
        remote: Some(RemoteId::new(message_id.clone())),
        etag: None,
        crm: None,
    }));
    assert_eq!(summary(&ds), [(76, "link_created"), (76, "update_intent")]);
    let (_, mark) = one(updates(&ds), &ds);
    assert_eq!(mark.target, Side::Crm);
    let commands = crm::commands(&jayne.state, jayne.now);
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].command, CommandType::MarkEmailSent);
    assert_eq!(commands[0].rule.0, 76);
    assert_eq!(commands[0].entity, Entity::Email);
    assert_eq!(
        commands[0].remote.as_ref().map(|r| r.as_str()),
        Some(message_id.as_str())
    );

    // Still pending in the CRM (its answer not in yet): not sent again.
    let v3 = email_row("eml-quote", crm_user("jayne"), EmailState::PendingSend, 3);
    let ds = jayne.feed(upsert(&v3));
    let (_, why) = one(no_actions(&ds), &ds);
    assert!(
        why.basis.reason.contains("already sent"),
        "{}",
        why.basis.reason
    );
    assert!(creates(&ds).is_empty());
}

#[test]
fn r75_an_email_not_pending_send_or_a_mailbox_not_enabled_for_outgoing_sends_nothing() {
    let mut jayne = Mailbox::ready("jayne");
    let draft = email_row("eml-draft", crm_user("jayne"), EmailState::Draft, 1);
    let ds = jayne.feed(upsert(&draft));
    let (rule, why) = one(no_actions(&ds), &ds);
    assert_eq!(rule, 75);
    assert!(
        why.basis.reason.contains("is draft, not pending send"),
        "{}",
        why.basis.reason
    );
    // A received or sent row decides nothing at all.
    for state in [EmailState::Received, EmailState::Sent] {
        let row = email_row("eml-other", crm_user("jayne"), state, 1);
        assert!(jayne.feed(upsert(&row)).is_empty(), "{state}");
    }

    // Outgoing failed its test: the email stays pending.
    let mut mal = Mailbox::mapped("mal");
    mal.approve(true);
    mal.feed(mal.test(
        TestResult::Success,
        TestResult::Failure,
        TestResult::Success,
    ));
    assert!(!mal.state.workload(Workload::Outgoing).enabled);
    let row = email_row("eml-mal", crm_user("mal"), EmailState::PendingSend, 1);
    let ds = mal.feed(upsert(&row));
    let (rule, why) = one(no_actions(&ds), &ds);
    assert_eq!(rule, 75);
    assert!(
        why.basis
            .reason
            .contains("outgoing email is not tested and enabled"),
        "{}",
        why.basis.reason
    );
    assert!(creates(&ds).is_empty());

    // The approval withdrawn: the email stays pending, the approval named.
    let mut jayne = Mailbox::ready("jayne");
    jayne.approve(false);
    let row = email_row(
        "eml-unapproved",
        crm_user("jayne"),
        EmailState::PendingSend,
        1,
    );
    let ds = jayne.feed(upsert(&row));
    let (rule, why) = one(no_actions(&ds), &ds);
    assert_eq!(rule, 75);
    assert!(
        why.basis.reason.contains("not approved"),
        "{}",
        why.basis.reason
    );
}

#[test]
fn r77_quota_and_throttling_keep_the_email_pending_and_never_disable_the_mailbox() {
    let mut jayne = Mailbox::ready("jayne");
    let row = email_row("eml-quote", crm_user("jayne"), EmailState::PendingSend, 1);
    jayne.feed(upsert(&row));
    let intent = jayne.id_of(|e| matches!(e, Event::CreateIntent(p) if p.record == row.id));
    let limit = jayne.settings.transient_retry_limit;
    for attempt in 1..=limit + 2 {
        let code = if attempt % 2 == 0 {
            "quota"
        } else {
            "rate_limited"
        };
        let ds = jayne.fail(intent, code);
        let (rule, c) = one(classifications(&ds), &ds);
        assert_eq!(rule, 77, "attempt {attempt}: {}", c.basis.reason);
        assert_eq!(c.class, ErrorClass::Transient);
        assert_eq!(c.workload, Workload::Outgoing);
        assert!(
            c.basis.reason.contains("stays pending"),
            "{}",
            c.basis.reason
        );
        assert!(disables(&ds).is_empty() && alerts(&ds).is_empty());
        assert!(jayne.state.intents.contains_key(&intent), "still pending");
        // Not retried before the retry interval has passed.
        assert!(!jayne.state.intents[&intent].due(jayne.now));
        jayne.advance(Duration::minutes(10));
        assert!(jayne.state.intents[&intent].due(jayne.now));
    }
    assert!(jayne.state.workload(Workload::Outgoing).enabled);

    // Another transient failure (a 4xx that is not quota or throttling) is R12's: retried up
    // to the limit, then given up.
    let mut mal = Mailbox::ready("mal");
    let row = email_row("eml-busy", crm_user("mal"), EmailState::PendingSend, 1);
    mal.feed(upsert(&row));
    let intent = mal.id_of(|e| matches!(e, Event::CreateIntent(p) if p.record == row.id));
    for attempt in 1..=limit {
        let ds = mal.fail(intent, "unavailable");
        let (rule, _) = one(classifications(&ds), &ds);
        assert_eq!(rule, 12, "attempt {attempt}");
        mal.advance(Duration::minutes(10));
    }
    assert!(
        !mal.state.intents.contains_key(&intent),
        "given up at the limit"
    );

    // A permanent refusal fails it with its reason (R12), and it is not retried.
    let mut kaylee = Mailbox::ready("kaylee");
    let row = email_row(
        "eml-refused",
        crm_user("kaylee"),
        EmailState::PendingSend,
        1,
    );
    kaylee.feed(upsert(&row));
    let intent = kaylee.id_of(|e| matches!(e, Event::CreateIntent(p) if p.record == row.id));
    let ds = kaylee.fail(intent, "forbidden");
    let (rule, c) = one(classifications(&ds), &ds);
    assert_eq!(rule, 12);
    assert_eq!(c.class, ErrorClass::Permanent);
    assert!(
        c.basis.reason.contains("refused the email for good"),
        "{}",
        c.basis.reason
    );
    assert!(!kaylee.state.intents.contains_key(&intent));
    assert!(disables(&ds).is_empty());
}

#[test]
fn r78_with_delegation_the_submitters_mailbox_sends_on_behalf_of_the_queue() {
    let queue = outsider("sales@serenity.example");
    let mut row = email_row("eml-queue", queue, EmailState::PendingSend, 1);
    if let RecordBody::Email(e) = &mut row.body {
        e.submitted_by = Some(UserId::new("jayne"));
    }
    let mut jayne = Mailbox::ready("jayne");
    let ds = jayne.feed(upsert(&row));
    let (rule, send) = send_of(&ds);
    assert_eq!(rule, 75);
    assert!(
        send.basis
            .reason
            .contains("on behalf of sales@serenity.example (R78)")
    );

    // Delegation off: the submitter's mailbox does not send it (the queue's would).
    let mut jayne = Mailbox::ready("jayne");
    jayne.settings.email.outgoing_delegation = false;
    assert!(jayne.feed(upsert(&row)).is_empty());
}
