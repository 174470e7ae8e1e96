//! Incoming email (R49–R69) decided from the facts recorded with each `email_received`
//! (`docs/decisions/0018-email-decisions-record-their-facts.md`).

use super::*;
use ledgersync_domain::email::correlate::TrackedEmail;
use ledgersync_domain::email::resolve::{Party as Row, PartyKind};
use ledgersync_domain::email::{Acceptor, IncomingFilter};
use ledgersync_domain::{Context, Decision, RecordId, decide};

const ZOE: &str = "zoe@customer.example";

fn blue_sun() -> RecordRef {
    RecordRef {
        table: "account".into(),
        id: RecordId::new("account-blue-sun"),
        name: "Blue Sun".into(),
    }
}

/// Paul's offer to Zoe, tracked earlier with its token, regarding Blue Sun.
fn the_offer() -> TrackedEmail {
    TrackedEmail {
        activity: RecordId::new("email-offer"),
        message_id: "offer-1@serenity.example".into(),
        token: Some("CRM:0001001".into()),
        conversation: vec!["ref:offer-1@serenity.example".into()],
        regarding: Some(blue_sun()),
        owner: Some(UserId::new("paul")),
        hashes: Default::default(),
        outgoing: true,
    }
}

/// An email from Zoe to paul's mailbox, with the facts the shell looks up: Zoe's contact,
/// paul's method, the offer.
fn from_zoe(mb: &Mailbox, uid: u32, subject: &str, filter: IncomingFilter) -> EmailReceived {
    EmailReceived {
        remote: RemoteId::new(format!("INBOX/1/{uid}")),
        message_id: format!("<reply-{uid}@customer.example>"),
        subject: subject.into(),
        from: ZOE.into(),
        to: vec![mb.address()],
        in_reply_to: None,
        references: vec![],
        thread_index: None,
        cc: vec![],
        bcc: vec![],
        received: mb.now,
        irm_protected: false,
        folder: EmailFolder::Inbox,
        manual: None,
        size: 2_000,
        facts: EmailFacts {
            parties: vec![(
                ZOE.into(),
                vec![Row {
                    kind: PartyKind::Contact,
                    id: RecordId::new("contact-zoe"),
                    name: "Zoe Washburne".into(),
                    owner: Some(UserId::new("paul")),
                    active: true,
                }],
            )],
            acceptors: vec![Acceptor {
                id: RecordId::new("paul"),
                kind: PartyKind::User,
                filter,
                auto_create: None,
                may_own_emails: true,
            }],
            tracked: vec![the_offer()],
            folder_regarding: None,
            process_from: None,
        },
    }
}

fn accepted(ds: &[Decision]) -> &EmailAccepted {
    match ds {
        [
            Decision {
                event: Event::EmailAccepted(a),
                ..
            },
        ] => a,
        other => panic!("expected one email_accepted, got {other:#?}"),
    }
}

fn rejected(ds: &[Decision]) -> (u8, &EmailRejected) {
    match ds {
        [
            Decision {
                rule,
                event: Event::EmailRejected(r),
            },
        ] => (rule.0, r),
        other => panic!("expected one email_rejected, got {other:#?}"),
    }
}

#[test]
fn r52_r60_r61_a_reply_carrying_the_token_is_tracked_regarding_the_offers_account() {
    let mut mb = Mailbox::ready("paul");
    let ds = mb.feed(Event::EmailReceived(from_zoe(
        &mb,
        1,
        "RE: Cargo offer CRM:0001001",
        IncomingFilter::RepliesOnly,
    )));
    assert_eq!(ds[0].rule.0, 52);
    let a = accepted(&ds);
    assert_eq!(a.accepting, RecordId::new("paul"));
    assert_eq!(a.receiving_mailbox, mb.id);
    assert_eq!(a.correlation, Some(TrackedBy::Token));
    assert_eq!(a.correlated, Some(RecordId::new("email-offer")));
    assert!(!a.parent, "R61: a token match sets no parent activity");
    assert_eq!(a.regarding, Some(blue_sun()));
    assert_eq!(a.sender, Some(RecordId::new("contact-zoe")));
    assert_eq!(a.owner, Some(RecordId::new("paul")));
    assert_eq!(a.message_id, "reply-1@customer.example");
    assert!(
        a.basis
            .reason
            .contains("R60: correlated: the subject carries the tracking token CRM:0001001"),
        "{}",
        a.basis.reason
    );
    assert!(
        a.basis
            .settings
            .iter()
            .any(|s| s.key == "email_processing_mailbox_only" && s.value == "false"),
        "{:?}",
        a.basis.settings
    );
}

#[test]
fn r54_a_mail_answering_nothing_is_not_tracked_and_a_delivery_again_decides_nothing() {
    let mut mb = Mailbox::ready("paul");
    let mail = from_zoe(&mb, 2, "A new question", IncomingFilter::RepliesOnly);
    let ds = mb.feed(Event::EmailReceived(mail.clone()));
    let (rule, r) = rejected(&ds);
    assert_eq!(rule, 54);
    assert!(
        r.basis.reason.contains("it answers no email in the CRM"),
        "{}",
        r.basis.reason
    );
    // The same message delivered again (a re-listed folder, a redelivered bus message).
    assert!(mb.feed(Event::EmailReceived(mail)).is_empty());
    // With "all email messages", a new one is tracked, regarding nothing.
    let ds = mb.feed(Event::EmailReceived(from_zoe(
        &mb,
        3,
        "A new question",
        IncomingFilter::All,
    )));
    let a = accepted(&ds);
    assert_eq!(a.correlation, None);
    assert_eq!(a.regarding, None);
}

#[test]
fn r56_the_tracking_keyword_tracks_whatever_the_method() {
    let mut mb = Mailbox::ready("paul");
    let mut mail = from_zoe(&mb, 4, "Photos from the dock", IncomingFilter::None);
    mail.manual = Some(ledgersync_domain::email::Manual::Category);
    let ds = mb.feed(Event::EmailReceived(mail));
    assert_eq!(ds[0].rule.0, 56);
    assert_eq!(accepted(&ds).correlation, Some(TrackedBy::Category));
}

#[test]
fn r5_r6_no_email_is_processed_before_the_incoming_workload_is_enabled() {
    let mut mb = Mailbox::mapped("paul");
    let ds = mb.feed(Event::EmailReceived(from_zoe(
        &mb,
        5,
        "RE: Cargo offer CRM:0001001",
        IncomingFilter::All,
    )));
    let (rule, r) = rejected(&ds);
    assert_eq!(rule, 5);
    assert!(
        r.basis.reason.contains("is not approved"),
        "{}",
        r.basis.reason
    );
    mb.approve(true);
    let ds = mb.feed(Event::EmailReceived(from_zoe(
        &mb,
        6,
        "RE: Cargo offer CRM:0001001",
        IncomingFilter::All,
    )));
    assert_eq!(rejected(&ds).0, 6);
}

#[test]
fn a_changed_email_setting_re_decides_the_same_observation() {
    // What `what-if` does: the same observation, the same state, other settings.
    let mut mb = Mailbox::ready("paul");
    let mut mail = from_zoe(&mb, 7, "FW: Cargo offer", IncomingFilter::RepliesOnly);
    mail.in_reply_to = Some("<offer-1@serenity.example>".into());
    let obs = Event::EmailReceived(mail);
    let before = decide(
        &mb.state,
        &obs,
        &Context {
            settings: &mb.settings,
            now: mb.now,
        },
    );
    assert_eq!(accepted(&before).correlation, Some(TrackedBy::InReplyTo));
    assert!(
        accepted(&before).parent,
        "R61: an In-Reply-To match is the parent"
    );
    mb.settings
        .set("email_do_not_correlate_forwards", "true")
        .unwrap();
    let after = decide(
        &mb.state,
        &obs,
        &Context {
            settings: &mb.settings,
            now: mb.now,
        },
    );
    let (rule, r) = rejected(&after);
    assert_eq!(rule, 54);
    assert!(r.basis.reason.contains("(R62)"), "{}", r.basis.reason);
}
