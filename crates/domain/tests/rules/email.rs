//! Incoming email (R49–R69) decided from the facts recorded with each `email_received`
//! (`docs/decisions/0018-email-decisions-record-their-facts.md`).

use super::*;
use ledgersync_domain::crm::{
    CommandKey, CommandResult, EmailCommand, ResultStatus, Settlement, admits, commands, settle,
};
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

/// The `email_accepted` of an accepted email, followed by its `track_email` intent (R52).
fn accepted(ds: &[Decision]) -> &EmailAccepted {
    accepted_and_tracked(ds).0
}

/// An accepted email's two decisions: `email_accepted`, then the create intent of its
/// `track_email` command, decided by R52.
fn accepted_and_tracked(ds: &[Decision]) -> (&EmailAccepted, &CreateIntent) {
    match ds {
        [
            Decision {
                event: Event::EmailAccepted(a),
                ..
            },
            Decision {
                rule,
                event: Event::CreateIntent(c),
            },
        ] => {
            assert_eq!(rule.0, 52, "the track_email intent is R52's");
            (a, c)
        }
        other => panic!("expected email_accepted and its create_intent, got {other:#?}"),
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
fn r56_r73_the_keyword_set_later_tracks_a_rejected_email_and_its_removal_untracks_it() {
    let mut mb = Mailbox::ready("paul");
    let mail = from_zoe(&mb, 5, "Engine noise", IncomingFilter::RepliesOnly);
    let (rule, _) = rejected(&mb.feed(Event::EmailReceived(mail.clone())));
    assert_eq!(rule, 54);
    // The user sets the tracking keyword: the same message, observed again with it.
    let mut kept = mail.clone();
    kept.manual = Some(ledgersync_domain::email::Manual::Category);
    let ds = mb.feed(Event::EmailReceived(kept.clone()));
    assert_eq!(ds[0].rule.0, 56, "{ds:#?}");
    assert_eq!(accepted(&ds).correlation, Some(TrackedBy::Category));
    // Observed again with it: nothing new.
    assert!(mb.feed(Event::EmailReceived(kept)).is_empty());
    // The keyword removed: untracked in the mailbox, the CRM email kept (no delete).
    let ds = mb.feed(Event::EmailReceived(mail.clone()));
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!(ds[0].rule.0, 73);
    match &ds[0].event {
        Event::ItemUntracked(u) => {
            assert_eq!(u.remote, mail.remote);
            assert_eq!(
                u.record,
                Some(EmailCommand::proposed_record(
                    &mail.message_id,
                    &mail.remote
                ))
            );
            assert!(
                u.basis.reason.contains("the CRM email activity is kept"),
                "{}",
                u.basis.reason
            );
        }
        other => panic!("{other:?}"),
    }
    // Removed again (another flag changed): nothing.
    assert!(mb.feed(Event::EmailReceived(mail.clone())).is_empty());
    // Set again: the message was tracked once already; no second activity.
    let mut again = mail;
    again.manual = Some(ledgersync_domain::email::Manual::Category);
    assert!(mb.feed(Event::EmailReceived(again)).is_empty());
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

/// Settles `result` as the shell does: the outcome it comes to is fed to the mailbox.
fn answer(mb: &mut Mailbox, result: CommandResult) -> Vec<Decision> {
    match settle(&mb.state, &result) {
        Ok(Settlement::Record(event)) => {
            assert!(admits(&mb.state, &event));
            mb.feed(*event)
        }
        other => panic!("the result should be recorded, got {other:?}"),
    }
}

#[test]
fn r52_an_accepted_email_leaves_as_a_track_email_command_with_what_was_decided() {
    let mut mb = Mailbox::ready("paul");
    let mut mail = from_zoe(
        &mb,
        8,
        "RE: Cargo offer CRM:0001001",
        IncomingFilter::RepliesOnly,
    );
    mail.cc = vec!["kaylee@serenity.example".into()];
    mail.received = mb.now - Duration::minutes(3);
    let ds = mb.feed(Event::EmailReceived(mail.clone()));
    let (a, intent) = accepted_and_tracked(&ds);
    assert_eq!(intent.target, Side::Crm);
    assert_eq!(intent.remote, Some(mail.remote.clone()));
    assert_eq!(intent.item.title, "RE: Cargo offer CRM:0001001");
    // The proposed row is derived from the normalised Message-ID alone.
    let proposed = EmailCommand::proposed_record("<REPLY-8@customer.example>", &mail.remote);
    assert_eq!(intent.record, proposed);
    assert_eq!(
        proposed,
        EmailCommand::proposed_record(" reply-8@customer.example ", &RemoteId::new("other/9"))
    );
    assert!(proposed.as_str().starts_with("email-"));
    assert_eq!(proposed.as_str().len(), "email-".len() + 16);
    assert!(
        intent.basis.reason.contains("was accepted (R52)")
            && intent
                .basis
                .reason
                .contains("regarding account account-blue-sun (Blue Sun)")
            && intent.basis.reason.contains("track_email"),
        "{}",
        intent.basis.reason
    );

    let open = commands(&mb.state, mb.now);
    assert_eq!(open.len(), 1, "{open:#?}");
    let c = &open[0];
    let intent_id = mb.id_of(|e| matches!(e, Event::CreateIntent(_)));
    assert_eq!(c.key, CommandKey::new(mb.id.clone(), intent_id));
    assert_eq!(c.command.name(), "track_email");
    assert_eq!(c.rule.to_string(), "R52");
    assert_eq!(c.entity, Entity::Email);
    assert_eq!(c.record, proposed);
    assert_eq!(c.version, None);
    assert_eq!(c.remote, Some(mail.remote.clone()));
    assert_eq!(c.title, "RE: Cargo offer CRM:0001001");
    assert_eq!(c.fields, None);
    let e = c
        .email
        .as_ref()
        .expect("a track_email command carries the email");
    assert_eq!(e.message_id, "reply-8@customer.example");
    assert_eq!(e.subject, "RE: Cargo offer CRM:0001001");
    assert_eq!(e.from, ZOE);
    assert_eq!(e.to, vec![mb.address()]);
    assert_eq!(e.cc, vec!["kaylee@serenity.example".to_string()]);
    assert_eq!(e.received, mb.now - Duration::minutes(3));
    assert_eq!(e.accepting, a.accepting);
    assert_eq!(e.receiving_mailbox, mb.id);
    assert_eq!(e.regarding, Some(blue_sun()));
    assert_eq!(e.correlated, Some(RecordId::new("email-offer")));
    assert_eq!(e.correlation, Some(TrackedBy::Token));
    assert!(!e.parent);
    assert_eq!(e.sender, Some(RecordId::new("contact-zoe")));
    assert_eq!(e.recipients, a.recipients);
    assert_eq!(e.create, None);
    assert_eq!(e.owner, Some(RecordId::new("paul")));
    assert!(
        mb.state.incoming_email.is_none(),
        "the intent took the email"
    );
}

#[test]
fn r52_two_mailboxes_tracking_the_same_message_propose_the_same_row() {
    let mut paul = Mailbox::ready("paul");
    let mut jayne = Mailbox::ready("jayne");
    let mut to_paul = from_zoe(&paul, 9, "Both of you", IncomingFilter::All);
    to_paul.to = vec![paul.address(), jayne.address()];
    let mut to_jayne = from_zoe(&jayne, 41, "Both of you", IncomingFilter::All);
    to_jayne.message_id = to_paul.message_id.clone();
    to_jayne.to = to_paul.to.clone();
    to_jayne.facts.acceptors[0].id = RecordId::new("jayne");
    let p = paul.feed(Event::EmailReceived(to_paul));
    let j = jayne.feed(Event::EmailReceived(to_jayne));
    let (_, from_paul) = accepted_and_tracked(&p);
    let (_, from_jayne) = accepted_and_tracked(&j);
    assert_eq!(from_paul.record, from_jayne.record);
    assert_ne!(
        from_paul.key, from_jayne.key,
        "each mailbox has its own command"
    );
}

#[test]
fn r52_the_crms_done_result_settles_the_command_without_a_link() {
    let mut mb = Mailbox::ready("paul");
    let mail = from_zoe(&mb, 10, "RE: Cargo offer CRM:0001001", IncomingFilter::All);
    mb.feed(Event::EmailReceived(mail.clone()));
    let c = commands(&mb.state, mb.now).remove(0);
    let ds = answer(
        &mut mb,
        CommandResult {
            key: c.key.clone(),
            status: ResultStatus::Done {
                record: RecordId::new("email-activity-7"),
                version: 1,
            },
        },
    );
    assert!(
        ds.is_empty(),
        "an email has no mail-server item to link: nothing more is decided, got {ds:#?}"
    );
    assert!(commands(&mb.state, mb.now).is_empty());
    assert!(mb.state.links.is_empty(), "{:#?}", mb.state.links);
    assert!(!mb.state.by_remote.contains_key(&mail.remote));
    assert!(mb.state.intents.is_empty());
    // The same result again is acknowledged and recorded nowhere.
    assert!(matches!(
        settle(
            &mb.state,
            &CommandResult {
                key: c.key,
                status: ResultStatus::Done {
                    record: RecordId::new("email-activity-7"),
                    version: 1,
                },
            }
        ),
        Ok(Settlement::Acknowledged(_))
    ));
}

#[test]
fn r12_a_failed_track_email_is_retried_with_the_same_key_in_the_incoming_workload() {
    let mut mb = Mailbox::ready("paul");
    mb.feed(Event::EmailReceived(from_zoe(
        &mb,
        11,
        "RE: Cargo offer CRM:0001001",
        IncomingFilter::All,
    )));
    let c = commands(&mb.state, mb.now).remove(0);
    let ds = answer(
        &mut mb,
        CommandResult {
            key: c.key.clone(),
            status: ResultStatus::Failed {
                reason: "the CRM is in maintenance".into(),
                code: Some("503".into()),
                retryable: true,
                retry_after: None,
            },
        },
    );
    let (rule, classified) = one(classifications(&ds), &ds);
    assert_eq!(rule, 12);
    assert_eq!(classified.workload, Workload::Incoming);
    assert_eq!(classified.class, ErrorClass::Transient);
    assert!(
        classified.basis.reason.contains("track_email command"),
        "{}",
        classified.basis.reason
    );
    let again = commands(&mb.state, mb.now);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].key, c.key);
    assert_eq!(again[0].attempts, 1);
    assert!(!again[0].due);
    assert_eq!(again[0].email, c.email, "a retry sends the same email");
}

#[test]
fn a_rejected_email_leaves_no_command() {
    let mut mb = Mailbox::ready("paul");
    let ds = mb.feed(Event::EmailReceived(from_zoe(
        &mb,
        12,
        "A new question",
        IncomingFilter::RepliesOnly,
    )));
    rejected(&ds);
    assert!(commands(&mb.state, mb.now).is_empty());
    assert!(mb.state.incoming_email.is_none());
}

#[test]
fn r56_r61_r68_the_command_carries_the_parent_the_folders_row_and_the_row_to_create() {
    use ledgersync_domain::email::resolve::AutoCreate;
    // A forward answering the offer: In-Reply-To makes it the offer's child (R61).
    let mut mb = Mailbox::ready("paul");
    let mut mail = from_zoe(&mb, 13, "FW: Cargo offer", IncomingFilter::RepliesOnly);
    mail.in_reply_to = Some("<offer-1@serenity.example>".into());
    mb.feed(Event::EmailReceived(mail));
    let e = commands(&mb.state, mb.now).remove(0).email.unwrap();
    assert_eq!(e.correlation, Some(TrackedBy::InReplyTo));
    assert_eq!(e.correlated, Some(RecordId::new("email-offer")));
    assert!(e.parent);
    assert_eq!(e.regarding, Some(blue_sun()));

    // An unknown sender's mail in a tracked folder: tracked by hand (R56), regarding the
    // folder's row (R72), the sender to be created as a contact (R68).
    let mut mb = Mailbox::ready("paul");
    let mut mail = from_zoe(&mb, 14, "Crates for Persephone", IncomingFilter::None);
    mail.from = "river@customer.example".into();
    mail.folder = EmailFolder::Tracked("folder-freight".into());
    let freight = RecordRef {
        table: "opportunity".into(),
        id: RecordId::new("opp-freight"),
        name: "Freight".into(),
    };
    mail.facts.folder_regarding = Some(freight.clone());
    mail.facts.acceptors[0].auto_create = Some(AutoCreate::Contact);
    let ds = mb.feed(Event::EmailReceived(mail));
    let (a, intent) = accepted_and_tracked(&ds);
    assert_eq!(ds[0].rule.0, 56);
    assert!(
        intent.basis.reason.contains("was accepted (R56)")
            && intent
                .basis
                .reason
                .contains("regarding opportunity opp-freight (Freight)"),
        "{}",
        intent.basis.reason
    );
    let e = commands(&mb.state, mb.now).remove(0).email.unwrap();
    assert_eq!(e.correlation, Some(TrackedBy::Folder));
    assert_eq!(e.correlation, a.correlation);
    assert_eq!(e.regarding, Some(freight));
    assert_eq!(e.sender, None);
    assert_eq!(e.create, Some(AutoCreate::Contact));
    assert_eq!(e.from, "river@customer.example");
}
