//! Golden fixtures for every released event payload and for the envelope.
//!
//! For each entry of [`Event::CATALOGUE`] a canonical sample value is written out below, and
//! `tests/fixtures/v1/<event name>.hex` holds its payload bytes (`.json` beside it shows the same
//! value for people). The test checks, for every type:
//!
//! 1. the samples cover exactly the catalogue;
//! 2. the released bytes still decode to the sample (old journals stay readable forever);
//! 3. the sample still encodes to the released bytes (a layout change is caught here, before it
//!    is released: a change must become a new schema version with an upcaster instead);
//! 4. the type code of every released name is unchanged (`fixtures/v1/catalogue.txt`).
//!
//! A missing fixture is written and the test fails, asking for it to be committed. With
//! `LEDGERSYNC_BLESS=1` every fixture is (re)written and the test passes; only do that for a
//! payload that has never been released.

use ledgersync_domain::event::*;
use ledgersync_domain::filter::SyncFilter;
use ledgersync_domain::records::{
    ActivityState, Appointment, Contact, ContactState, Email, EmailState, Entity, Party, Priority,
    Record, RecordBody, RecordRef, ShowAs, Task, TaskKind,
};
use ledgersync_domain::settings::SettingUsed;
use ledgersync_domain::time::timestamp_from_civil;
use ledgersync_domain::{
    DecodeError, Duration, Envelope, EventId, EventType, FilterId, MailboxId, OrgId, ProfileId,
    RecordId, RemoteId, RuleId, StreamId, Timestamp, UserId,
};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

// ───────────────────────────── sample building blocks ─────────────────────────────

fn at(d: u32, hh: u32, mm: u32) -> Timestamp {
    timestamp_from_civil(2026, 11, d, hh, mm)
}

fn user(id: &str, name: &str) -> Party {
    Party {
        user: Some(UserId::new(id)),
        email: format!("{id}@contoso.example"),
        name: name.into(),
    }
}

fn external(email: &str, name: &str) -> Party {
    Party {
        user: None,
        email: email.into(),
        name: name.into(),
    }
}

fn regarding() -> Option<RecordRef> {
    Some(RecordRef {
        table: "opportunity".into(),
        id: RecordId::new("opp-4711"),
        name: "Fabrikam renewal 2027".into(),
    })
}

fn appointment_record() -> Record {
    Record {
        id: RecordId::new("appt-20261124-review"),
        owner: UserId::new("u2"),
        version: 7,
        body: RecordBody::Appointment(Appointment {
            subject: "Quarterly review with Fabrikam".into(),
            organizer: Some(user("u2", "Bob Kim")),
            required: vec![
                user("u1", "Alice Moreau"),
                external("dana@fabrikam.example", "Dana Ito"),
            ],
            optional: vec![user("u3", "Chen Wu")],
            start: at(24, 9, 30),
            end: at(24, 11, 0),
            all_day: false,
            location: "Room 4.12 / Teams".into(),
            body: "Agenda: pipeline, renewal terms, open cases.".into(),
            state: ActivityState::Scheduled,
            show_as: ShowAs::Tentative,
            priority: Priority::High,
            regarding: regarding(),
            service: false,
            recurrence: Some("FREQ=MONTHLY;BYDAY=4TU;COUNT=6".into()),
        }),
    }
}

fn contact_record() -> Record {
    Record {
        id: RecordId::new("contact-dana-ito"),
        owner: UserId::new("u3"),
        version: 12,
        body: RecordBody::Contact(Contact {
            full_name: "Dana Ito".into(),
            email: "dana@fabrikam.example".into(),
            phone: "+81 3 5555 0142".into(),
            company: "Fabrikam K.K.".into(),
            state: ContactState::Inactive,
        }),
    }
}

fn task_record() -> Record {
    Record {
        id: RecordId::new("task-call-back-dana"),
        owner: UserId::new("u1"),
        version: 3,
        body: RecordBody::Task(Task {
            kind: TaskKind::PhoneCall,
            subject: "Call Dana back about the renewal".into(),
            body: "She asked for the revised price list first.".into(),
            start: Some(at(20, 8, 0)),
            due: Some(at(21, 17, 0)),
            actual_start: Some(at(20, 8, 15)),
            actual_end: Some(at(20, 8, 40)),
            percent_complete: 75,
            state: ActivityState::Completed,
            priority: Priority::Low,
            regarding: regarding(),
        }),
    }
}

fn email_record() -> Record {
    Record {
        id: RecordId::new("email-0c1f"),
        owner: UserId::new("u1"),
        version: 2,
        body: RecordBody::Email(Email {
            subject: "RE: Renewal terms".into(),
            from: external("dana@fabrikam.example", "Dana Ito"),
            to: vec![user("u1", "Alice Moreau"), user("u2", "Bob Kim")],
            message_id: "<CAF3x9@mail.fabrikam.example>".into(),
            regarding: regarding(),
            state: EmailState::Received,
            cc: Vec::new(),
            text: None,
            html: None,
            submitted_by: None,
            tracking_token: None,
        }),
    }
}

/// An email the CRM asks to send (R75), on behalf of a queue (R78), with both bodies.
fn outgoing_email_record() -> Record {
    Record {
        id: RecordId::new("email-7d21"),
        owner: UserId::new("u2"),
        version: 3,
        body: RecordBody::Email(Email {
            subject: "Renewal quote".into(),
            from: external("sales@contoso.example", "Contoso Sales"),
            to: vec![external("dana@fabrikam.example", "Dana Ito")],
            message_id: String::new(),
            regarding: regarding(),
            state: EmailState::PendingSend,
            cc: vec![user("u1", "Alice Moreau")],
            text: Some("Dana, the quote is attached.".into()),
            html: Some("<p>Dana, the quote is attached.</p>".into()),
            submitted_by: Some(UserId::new("u2")),
            tracking_token: Some("CRM:0002014".into()),
        }),
    }
}

/// A row as schema version 1 of the record payloads wrote it.
fn record_v1(r: Record) -> ledgersync_domain::event::versions::RecordV1 {
    use ledgersync_domain::event::versions::{EmailV1, RecordBodyV1, RecordV1};
    RecordV1 {
        id: r.id,
        owner: r.owner,
        version: r.version,
        body: match r.body {
            RecordBody::Appointment(a) => RecordBodyV1::Appointment(a),
            RecordBody::Contact(c) => RecordBodyV1::Contact(c),
            RecordBody::Task(t) => RecordBodyV1::Task(t),
            RecordBody::Email(e) => RecordBodyV1::Email(EmailV1 {
                subject: e.subject,
                from: e.from,
                to: e.to,
                message_id: e.message_id,
                regarding: e.regarding,
            }),
        },
    }
}

fn basis(reason: &str) -> Basis {
    Basis {
        reason: reason.into(),
        settings: vec![
            SettingUsed {
                key: "distinct_physical_logical_deletes".into(),
                value: "true".into(),
            },
            SettingUsed {
                key: "task_deletion_mode".into(),
                value: "1".into(),
            },
        ],
    }
}

fn server_error() -> ServerError {
    ServerError {
        code: "503".into(),
        message: "Service Unavailable: backend maintenance".into(),
        retry_after: Some(at(20, 14, 35)),
    }
}

fn item_write() -> ItemWrite {
    ItemWrite {
        title: "Quarterly review with Fabrikam".into(),
        version: 8,
        show_as: Some(ShowAs::OutOfOffice),
        reminder: true,
        notify_attendees: true,
        attendees: 3,
        completed: true,
        actual_start: Some(at(20, 14, 5)),
    }
}

fn eid(n: u128) -> EventId {
    EventId::from_u128(0x0193_4f6a_8c00_7000_8000_0000_0000_0000 | n)
}

fn mailbox() -> MailboxId {
    MailboxId::new("mb-alice")
}

fn remote(s: &str) -> RemoteId {
    RemoteId::new(s)
}

fn records_pair() -> Vec<RecordId> {
    vec![
        RecordId::new("appt-20261124-review"),
        RecordId::new("contact-dana-ito"),
    ]
}

// ───────────────────────────── the samples ─────────────────────────────

/// One canonical value per catalogue entry. Never edit a released sample: add a new version.
fn samples() -> Vec<Event> {
    vec![
        Event::SettingChanged(SettingChanged {
            key: "propagate_appointment_cancellations".into(),
            value: "true".into(),
        }),
        Event::UserRegistered(UserRegistered {
            user: UserId::new("u1"),
            name: "Alice Moreau".into(),
            email: "u1@contoso.example".into(),
        }),
        Event::ProfileRegistered(ProfileRegistered {
            profile: ProfileId::new("profile-imap-eu"),
            name: "Dovecot EU".into(),
            server_type: ServerType::ImapSmtp,
            max_connections: 250,
        }),
        Event::ProfileAlertingSet(ProfileAlertingSet {
            profile: ProfileId::new("profile-imap-eu"),
            send_alert: true,
        }),
        Event::MailboxRegistered(MailboxRegistered {
            mailbox: mailbox(),
            org: OrgId::new("org-contoso"),
            address: "u1@contoso.example".into(),
            profile: ProfileId::new("profile-groupware"),
            server_type: ServerType::Pop3Smtp,
        }),
        Event::MailboxMapped(MailboxMapped {
            mailbox: mailbox(),
            user: UserId::new("u1"),
        }),
        Event::AddressApproved(AddressApproved {
            mailbox: mailbox(),
            approved: true,
        }),
        Event::MailboxTested(MailboxTested {
            mailbox: mailbox(),
            incoming: TestResult::Success,
            outgoing: TestResult::Failure,
            act: TestResult::Success,
            act_org_marker: Some(OrgId::new("org-fabrikam")),
            override_other_org: true,
        }),
        Event::DisableRequested(DisableRequested {
            mailbox: mailbox(),
            workload: Workload::Outgoing,
            by: "admin@contoso.example".into(),
        }),
        Event::DeletesApproved(DeletesApproved {
            mailbox: mailbox(),
            by: "admin@contoso.example".into(),
        }),
        Event::RecordUpserted(RecordUpserted {
            record: appointment_record(),
        }),
        Event::RecordDeleted(RecordDeleted {
            id: RecordId::new("contact-dana-ito"),
            entity: Entity::Contact,
        }),
        Event::OwnerChanged(OwnerChanged {
            record: task_record(),
            previous_owner: UserId::new("u3"),
        }),
        Event::AccessLost(AccessLost {
            user: UserId::new("u1"),
            records: records_pair(),
            reason: AccessReason::Team,
        }),
        Event::AccessRegained(AccessRegained {
            user: UserId::new("u1"),
            records: records_pair(),
            reason: AccessReason::BusinessUnit,
        }),
        Event::FilterChanged(FilterChanged {
            user: UserId::new("u1"),
            entity: Entity::Task,
            filters: vec![
                SyncFilter {
                    id: FilterId::new("f-open-tasks"),
                    name: "My open tasks".into(),
                    entity: Entity::Task,
                    enabled: true,
                    expr: "owner = me and not state = completed".into(),
                },
                SyncFilter {
                    id: FilterId::new("f-reports"),
                    name: "Reports due soon".into(),
                    entity: Entity::Task,
                    enabled: false,
                    expr: "subject contains \"report\" and due <= now + 2w".into(),
                },
            ],
        }),
        Event::ItemSeen(ItemSeen {
            item: RemoteItem {
                remote: remote("/dav/u1/calendar/4f2a.ics"),
                etag: "\"63a1-5f0e\"".into(),
                content_hash: 0x9e37_79b9_7f4a_7c15,
                tracked: Some(TrackedBy::Category),
                copy_of: Some(remote("/dav/u1/calendar/11b0.ics")),
                fields: RemoteFields::Appointment {
                    subject: "Quarterly review with Fabrikam".into(),
                    organizer: Some("u2@contoso.example".into()),
                    start: at(24, 9, 30),
                    end: at(24, 11, 0),
                    show_as: ShowAs::Free,
                },
            },
        }),
        Event::ItemGone(ItemGone {
            remote: remote("/dav/u1/tasks/77c3.ics"),
        }),
        Event::ListingCompleted(ListingCompleted {
            workload: Workload::Act,
            items: 1342,
        }),
        Event::ListingFailed(ListingFailed {
            workload: Workload::Outgoing,
            error: server_error(),
        }),
        Event::ListingPartial(ListingPartial {
            workload: Workload::Act,
            reason: "CalDAV REPORT truncated after 500 items (507 Insufficient Storage)".into(),
        }),
        Event::CursorReset(CursorReset {
            workload: Workload::Incoming,
            reason: "UIDVALIDITY changed from 1700000001 to 1700000002".into(),
        }),
        Event::EmailReceived(EmailReceived {
            remote: remote("INBOX/1700000002/4821"),
            message_id: "<CAF3x9@mail.fabrikam.example>".into(),
            subject: "RE: Renewal terms CRM:0004711".into(),
            from: "dana@fabrikam.example".into(),
            to: vec!["u1@contoso.example".into(), "u2@contoso.example".into()],
            in_reply_to: Some("<20261119.abc@contoso.example>".into()),
            references: vec!["<20261119.abc@contoso.example>".into()],
            thread_index: Some("AQHZ7k3bVx2oYcN5Q0uFZ8L7Jq9w3oAAAAAA".into()),
            cc: vec!["support@contoso.example".into()],
            bcc: vec![],
            received: at(20, 9, 14),
            irm_protected: false,
            folder: EmailFolder::Tracked("F8D2C1A0-0000-0000-0000-000000000017".into()),
            manual: Some(ledgersync_domain::email::Manual::Category),
            size: 48_213,
            facts: EmailFacts {
                parties: vec![(
                    "dana@fabrikam.example".into(),
                    vec![ledgersync_domain::email::resolve::Party {
                        kind: ledgersync_domain::email::resolve::PartyKind::Contact,
                        id: RecordId::new("contact-dana-ito"),
                        name: "Dana Ito".into(),
                        owner: Some(UserId::new("u2")),
                        active: true,
                    }],
                )],
                acceptors: vec![ledgersync_domain::email::Acceptor {
                    id: RecordId::new("u2"),
                    kind: ledgersync_domain::email::resolve::PartyKind::User,
                    filter: ledgersync_domain::email::IncomingFilter::RepliesOnly,
                    auto_create: Some(ledgersync_domain::email::resolve::AutoCreate::Lead),
                    may_own_emails: true,
                }],
                tracked: vec![ledgersync_domain::email::correlate::TrackedEmail {
                    activity: RecordId::new("email-20261119-terms"),
                    message_id: "20261119.abc@contoso.example".into(),
                    token: Some("CRM:0004711".into()),
                    conversation: vec!["ref:20261119.abc@contoso.example".into()],
                    regarding: regarding(),
                    owner: Some(UserId::new("u2")),
                    hashes: ledgersync_domain::email::smart_match::Hashes {
                        subject: vec![1, 2],
                        addresses: [3u64, 4].into_iter().collect(),
                    },
                    outgoing: true,
                }],
                folder_regarding: regarding(),
                process_from: Some(at(1, 0, 0)),
            },
        }),
        Event::PushReceived(PushReceived {
            workload: Workload::Incoming,
        }),
        Event::DeletionsListed(DeletionsListed {
            workload: Workload::Act,
            remotes: vec![remote("calendar/a.ics"), remote("contacts/b.vcf")],
        }),
        Event::ItemFailed(ItemFailed {
            workload: Workload::Act,
            remote: remote("calendar/broken.ics"),
            entity: Some(Entity::Appointment),
            error: ServerError {
                code: "unparsable".into(),
                message: "missing DTSTART; fix or remove calendar/broken.ics".into(),
                retry_after: None,
            },
        }),
        Event::IntentSucceeded(IntentSucceeded {
            intent: eid(41),
            remote: Some(remote("/dav/u1/calendar/4f2a.ics")),
            etag: None,
            crm: Some(CrmDone {
                command: CommandType::TrackAppointment,
                record: RecordId::new("appt-20261124-lunch"),
                version: 1,
            }),
        }),
        Event::IntentFailed(IntentFailed {
            intent: eid(42),
            error: ServerError {
                code: "0x80040237".into(),
                message: "Cannot insert duplicate key".into(),
                retry_after: Some(at(20, 15, 0)),
            },
            crm: Some(CrmFailed {
                command: CommandType::UpdateRecord,
                record: RecordId::new("contact-dana-ito"),
                retryable: false,
            }),
        }),
        Event::ItemTracked(ItemTracked {
            basis: basis("\"Lunch with Dana\" carries the tracking signal Token"),
            record: Some(RecordId::new("from-/dav/u1/calendar/9d1e.ics")),
            remote: remote("/dav/u1/calendar/9d1e.ics"),
            how: TrackedBy::Token,
        }),
        Event::ItemUntracked(ItemUntracked {
            basis: basis("the tracking category was removed"),
            record: Some(RecordId::new("contact-dana-ito")),
            remote: remote("/dav/u1/contacts/dana.vcf"),
        }),
        Event::LinkCreated(LinkCreated {
            basis: basis("created on the mail server: CRM row and server item are linked"),
            record: RecordId::new("appt-20261124-review"),
            remote: remote("/dav/u1/calendar/4f2a.ics"),
        }),
        Event::Unlinked(Unlinked {
            basis: basis("logical delete with distinct deletes on: unlinked, left in place"),
            record: RecordId::new("appt-20261124-review"),
            remote: Some(remote("/dav/u1/calendar/4f2a.ics")),
        }),
        Event::LogicalDelete(LogicalDelete {
            basis: basis("no longer in the filter union but still exists in the CRM"),
            record: RecordId::new("appt-20261124-review"),
            reason: LeaveReason::OrganizerChanged {
                from: "u1@contoso.example".into(),
                to: "u2@contoso.example".into(),
            },
        }),
        Event::CreateIntent(CreateIntent {
            basis: basis("in the filter union: create it in the mailbox"),
            record: RecordId::new("appt-20261124-review"),
            remote: Some(remote("/dav/u1/calendar/4f2a.ics")),
            target: Side::Crm,
            item: item_write(),
            key: "mb-alice/appt-20261124-review/create/v7".into(),
        }),
        Event::UpdateIntent(UpdateIntent {
            basis: basis("changed and still in the filter union: update it"),
            record: RecordId::new("appt-20261124-review"),
            remote: Some(remote("/dav/u1/calendar/4f2a.ics")),
            target: Side::Crm,
            item: item_write(),
            key: "mb-alice/appt-20261124-review/update/v8".into(),
        }),
        Event::DeleteIntent(DeleteIntent {
            basis: basis("task deleted on the mail server: the CRM task is deleted"),
            record: RecordId::new("task-call-back-dana"),
            remote: Some(remote("/dav/u1/tasks/77c3.ics")),
            target: Side::Crm,
            key: "mb-alice/task-call-back-dana/crm-delete/v3".into(),
        }),
        Event::CancelIntent(CancelIntent {
            basis: basis("deleting it in the organizer's mailbox sends a cancellation"),
            record: RecordId::new("appt-20261124-review"),
            remote: Some(remote("/dav/u1/calendar/4f2a.ics")),
            attendees: vec!["u1@contoso.example".into(), "dana@fabrikam.example".into()],
            version: 7,
            key: "mb-alice/appt-20261124-review/cancel/v7".into(),
        }),
        Event::NoAction(NoAction {
            basis: basis("the cancellation of version 7 was already sent; it is not sent twice"),
            record: Some(RecordId::new("appt-20261124-review")),
            remote: Some(remote("/dav/u1/calendar/4f2a.ics")),
        }),
        Event::EmailAccepted(EmailAccepted {
            basis: basis("the tracking token correlates the reply with a tracked email"),
            remote: remote("INBOX/1700000002/4821"),
            message_id: "caf3x9@mail.fabrikam.example".into(),
            accepting: RecordId::new("u2"),
            receiving_mailbox: mailbox(),
            correlation: Some(TrackedBy::InReplyTo),
            correlated: Some(RecordId::new("email-20261119-terms")),
            parent: true,
            regarding: regarding(),
            sender: Some(RecordId::new("contact-dana-ito")),
            recipients: vec![RecordId::new("u1"), RecordId::new("u2")],
            create: None,
            owner: Some(RecordId::new("u2")),
        }),
        Event::EmailRejected(EmailRejected {
            basis: basis("no recipient or sender resolves to a CRM user, contact or account"),
            remote: remote("INBOX/1700000002/4822"),
        }),
        Event::ConflictResolved(ConflictResolved {
            basis: basis("both sides changed; the CRM version is newer"),
            record: RecordId::new("contact-dana-ito"),
            winner: Side::Crm,
        }),
        Event::ErrorClassified(ErrorClassified {
            basis: basis("503 is transient: failure 4 of 10"),
            workload: Workload::Act,
            class: ErrorClass::Transient,
            scope: ErrorScope::Mailbox,
            attempt: 4,
            limit: 10,
            intent: Some(eid(42)),
            error: server_error(),
        }),
        Event::RetryScheduled(RetryScheduled {
            basis: basis("transient failure 4 of 10: retry later"),
            workload: Workload::Outgoing,
            at: at(20, 14, 40),
        }),
        Event::WorkloadEnabled(WorkloadEnabled {
            basis: basis("Test & Enable succeeded for outgoing email"),
            workload: Workload::Outgoing,
        }),
        Event::WorkloadDisabled(WorkloadDisabled {
            basis: basis("10 consecutive transient failures reach the limit of 10"),
            workload: Workload::Act,
            reason: DisableReason::TransientLimit,
        }),
        Event::AlertRaised(AlertRaised {
            basis: basis("the mailbox has been disabled"),
            level: AlertLevel::Warning,
            text: "The mailbox u1@contoso.example has been disabled for outgoing email.".into(),
            notify: vec!["mailbox owner u1".into(), "server profile owner".into()],
        }),
        Event::BreakerTripped(BreakerTripped {
            basis: basis("42 deletes in one cycle exceed the breaker threshold of 20"),
            deletes: 42,
        }),
        Event::BreakerClosed(BreakerClosed {
            basis: basis("admin@contoso.example approved the deletes held by the delete breaker"),
            workload: Workload::Act,
            approved: true,
        }),
        Event::MappingEnded(MappingEnded {
            basis: basis("u1@contoso.example is now mapped to u3; u1's mapping ends first"),
            user: UserId::new("u1"),
        }),
        Event::MappingStarted(MappingStarted {
            basis: basis("mapped to u3; workloads start only after Test & Enable"),
            user: UserId::new("u3"),
        }),
        Event::OrganizationClaimed(OrganizationClaimed {
            basis: basis("the administrator chose to take ACT sync over from org-fabrikam"),
            org: OrgId::new("org-contoso"),
        }),
        Event::CycleScheduled(CycleScheduled {
            basis: basis("3 quiet cycle(s) in a row: ACT waits longer, up to the maximum"),
            workload: Workload::Act,
            at: timestamp_from_civil(2026, 11, 20, 9, 8),
        }),
        Event::MailboxFailureNoted(MailboxFailureNoted {
            mailbox: MailboxId::new("mbx-u1"),
            profile: ProfileId::new("profile-imap-eu"),
            workload: Workload::Incoming,
            at: timestamp_from_civil(2026, 11, 20, 9, 12),
        }),
    ]
}

/// Enum variants nested in payloads that the one-per-type samples do not reach (the contact and
/// email record bodies, the other leave reasons, task and contact server fields, the CRM's
/// result of a `track_email` command) get fixtures of their own in `fixtures/v1/variants/`, so
/// their layout is pinned too.
#[test]
fn nested_variants_decode_and_encode_the_same() {
    let extra = [
        (
            "record_upserted.contact",
            Event::RecordUpserted(RecordUpserted {
                record: contact_record(),
            }),
        ),
        (
            "record_upserted.email_pending_send",
            Event::RecordUpserted(RecordUpserted {
                record: outgoing_email_record(),
            }),
        ),
        (
            "logical_delete.access_lost",
            Event::LogicalDelete(LogicalDelete {
                basis: basis("access lost"),
                record: RecordId::new("contact-dana-ito"),
                reason: LeaveReason::AccessLost(AccessReason::Share),
            }),
        ),
        (
            "logical_delete.field_change",
            Event::LogicalDelete(LogicalDelete {
                basis: basis("fields changed"),
                record: RecordId::new("task-call-back-dana"),
                reason: LeaveReason::FieldChange {
                    fields: vec!["status".into(), "dates".into()],
                },
            }),
        ),
        (
            "logical_delete.owner_changed",
            Event::LogicalDelete(LogicalDelete {
                basis: basis("reassigned"),
                record: RecordId::new("task-call-back-dana"),
                reason: LeaveReason::OwnerChanged {
                    from: UserId::new("u1"),
                    to: UserId::new("u2"),
                },
            }),
        ),
        (
            "item_seen.task",
            Event::ItemSeen(ItemSeen {
                item: RemoteItem {
                    remote: remote("/dav/u1/tasks/77c3.ics"),
                    etag: "W/\"5\"".into(),
                    content_hash: 17,
                    tracked: None,
                    copy_of: None,
                    fields: RemoteFields::Task {
                        subject: "Call Dana back about the renewal".into(),
                        percent_complete: 100,
                        due: Some(at(21, 17, 0)),
                    },
                },
            }),
        ),
        (
            "item_seen.contact",
            Event::ItemSeen(ItemSeen {
                item: RemoteItem {
                    remote: remote("/dav/u1/contacts/dana.vcf"),
                    etag: "\"c-9\"".into(),
                    content_hash: u64::MAX,
                    tracked: Some(TrackedBy::SmartMatch),
                    copy_of: None,
                    fields: RemoteFields::Contact {
                        full_name: "Dana Ito".into(),
                        email: "dana@fabrikam.example".into(),
                    },
                },
            }),
        ),
        (
            "intent_succeeded.track_email",
            Event::IntentSucceeded(IntentSucceeded {
                intent: eid(43),
                remote: Some(remote("INBOX/1/42")),
                etag: None,
                crm: Some(CrmDone {
                    command: CommandType::TrackEmail,
                    record: RecordId::new("email-activity-42"),
                    version: 1,
                }),
            }),
        ),
    ];
    let mut report = Report::default();
    for (file, event) in &extra {
        check_payload(
            &mut report,
            &fixtures_dir().join("v1/variants"),
            file,
            event,
            event.event_type(),
        );
    }
    report.finish();
}

// ───────────────────────────── fixture plumbing ─────────────────────────────

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn blessing() -> bool {
    std::env::var("LEDGERSYNC_BLESS").is_ok_and(|v| v == "1")
}

/// Hex, 32 bytes to a line, so a layout change shows as a readable diff.
fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(32) {
        out.push_str(&hex::encode(chunk));
        out.push('\n');
    }
    out
}

fn from_hex(path: &Path, text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&clean).unwrap_or_else(|e| panic!("{}: not valid hex: {e}", path.display()))
}

/// Collects what was written and what failed, so one run reports every fixture at once.
#[derive(Default)]
struct Report {
    written: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    fn write(&mut self, path: &Path, contents: &str) {
        std::fs::create_dir_all(path.parent().expect("fixture paths have a parent"))
            .unwrap_or_else(|e| panic!("cannot create the directory of {}: {e}", path.display()));
        let old = std::fs::read_to_string(path).ok();
        if old.as_deref() == Some(contents) {
            return;
        }
        std::fs::write(path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        let what = if old.is_some() {
            "rewritten"
        } else {
            "written"
        };
        self.written.push(format!("{what}: {}", path.display()));
    }

    fn finish(self) {
        if !self.written.is_empty() {
            eprintln!(
                "golden fixtures {}:\n  {}",
                if blessing() { "blessed" } else { "written" },
                self.written.join("\n  ")
            );
        }
        let mut problems = self.failures;
        if !self.written.is_empty() && !blessing() {
            problems.push(format!(
                "{} golden fixture file(s) were missing and have now been written; review them and commit \
                 them (git add crates/domain/tests/fixtures), then run the tests again:\n  {}",
                self.written.len(),
                self.written.join("\n  ")
            ));
        }
        assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
    }
}

/// Checks one payload fixture (decode released bytes, encode the sample, compare the JSON view),
/// or writes it when it is missing or when blessing.
fn check_payload(report: &mut Report, dir: &Path, file: &str, sample: &Event, code: EventType) {
    let hex_path = dir.join(format!("{file}.hex"));
    let json_path = dir.join(format!("{file}.json"));
    let encoded = sample.encode_payload();
    let json = serde_json::to_string_pretty(sample).expect("events serialize to JSON") + "\n";
    if blessing() || !hex_path.exists() || !json_path.exists() {
        report.write(&hex_path, &to_hex(&encoded));
        report.write(&json_path, &json);
        return;
    }
    let released = from_hex(
        &hex_path,
        &std::fs::read_to_string(&hex_path).expect("fixture is readable"),
    );
    let version = sample.schema_version();
    match Event::decode(code, version, &released) {
        Ok(decoded) if &decoded == sample => {}
        Ok(decoded) => report.failures.push(format!(
            "{}: the released bytes of `{file}` (type code {}, schema version {version}) now decode to\n{decoded:#?}\n\
             instead of the sample\n{sample:#?}\nA released payload must keep its meaning: add a schema version \
             with an upcaster instead of changing version {version}.",
            hex_path.display(),
            code.0
        )),
        Err(e) => report.failures.push(format!(
            "{}: the released bytes of `{file}` (type code {}, schema version {version}) no longer decode: {e}. \
             A released payload layout never changes: add a schema version with an upcaster.",
            hex_path.display(),
            code.0
        )),
    }
    if encoded != released {
        report.failures.push(format!(
            "{}: the sample of `{file}` now encodes to\n{}instead of the released bytes\n{}\
             The payload layout of schema version {version} changed. Restore it, or add a new schema version \
             (new fixture) with an upcaster from version {version}.",
            hex_path.display(),
            to_hex(&encoded),
            to_hex(&released)
        ));
    }
    let released_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("fixture is readable"))
            .unwrap_or_else(|e| panic!("{}: not valid JSON: {e}", json_path.display()));
    let now_json = serde_json::to_value(sample).expect("events serialize to JSON");
    if released_json != now_json {
        report.failures.push(format!(
            "{}: the JSON form of `{file}` changed (the public stream and `--json` outputs use it):\nnow {}\nwas {}",
            json_path.display(),
            now_json,
            released_json
        ));
    }
}

// ───────────────────────────── the tests ─────────────────────────────

#[test]
fn samples_cover_exactly_the_catalogue() {
    let catalogue: BTreeSet<&str> = Event::CATALOGUE.iter().map(|(_, name, _)| *name).collect();
    assert_eq!(
        catalogue.len(),
        Event::CATALOGUE.len(),
        "the catalogue repeats a name"
    );
    let codes: BTreeSet<u16> = Event::CATALOGUE.iter().map(|(code, _, _)| *code).collect();
    assert_eq!(
        codes.len(),
        Event::CATALOGUE.len(),
        "the catalogue repeats a type code"
    );

    let samples = samples();
    let mut seen = BTreeSet::new();
    for s in &samples {
        assert!(
            seen.insert(s.name()),
            "two samples for `{}`; keep exactly one per type",
            s.name()
        );
    }
    let missing: Vec<&str> = catalogue.difference(&seen).copied().collect();
    assert!(
        missing.is_empty(),
        "no golden sample for event type(s) {missing:?}: add a canonical value to `samples()` in tests/golden.rs"
    );
    let extra: Vec<&str> = seen.difference(&catalogue).copied().collect();
    assert!(
        extra.is_empty(),
        "samples for types the catalogue does not list: {extra:?}"
    );
    for s in &samples {
        let (code, _, class) = Event::CATALOGUE
            .iter()
            .find(|(_, name, _)| *name == s.name())
            .expect("checked above");
        assert_eq!(s.event_type(), EventType(*code), "{}: type code", s.name());
        assert_eq!(s.class(), *class, "{}: class", s.name());
        assert_eq!(
            s.schema_version(),
            schema_version_of(s.event_type()),
            "{}: a sample is written at its type's current schema version",
            s.name()
        );
    }
}

/// The released `(code, name, class)` list: codes are never renumbered or reused, names never
/// renamed. New types are appended (missing lines are written like any missing fixture).
#[test]
fn type_codes_are_never_renumbered() {
    let path = fixtures_dir().join("v1/catalogue.txt");
    let mut current = String::from("# code name class (released catalogue, append only)\n");
    for (code, name, class) in Event::CATALOGUE {
        writeln!(current, "{code} {name} {class:?}").expect("writing to a String cannot fail");
    }
    let mut report = Report::default();
    match std::fs::read_to_string(&path) {
        Ok(released) if !blessing() => {
            for line in released
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            {
                let mut parts = line.split_whitespace();
                let (Some(code), Some(name), Some(class)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    panic!("{}: malformed line `{line}`", path.display());
                };
                let code: u16 = code
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: bad code in `{line}`", path.display()));
                match Event::CATALOGUE.iter().find(|(c, _, _)| *c == code) {
                    None => report.failures.push(format!(
                        "released type code {code} (`{name}`) is gone from Event::CATALOGUE; journals holding it \
                         could no longer be read"
                    )),
                    Some((_, n, k)) if *n != name || format!("{k:?}") != class => report.failures.push(format!(
                        "released type code {code} was `{name}` ({class}) and is now `{n}` ({k:?}); codes are \
                         never reused or renamed: give the new type a new code"
                    )),
                    Some(_) => {}
                }
            }
            for (code, name, _) in Event::CATALOGUE {
                if !released
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(&code.to_string()))
                {
                    report.failures.push(format!(
                        "type code {code} (`{name}`) is new: append it to {} and add its sample and fixtures",
                        path.display()
                    ));
                }
            }
        }
        _ => report.write(&path, &current),
    }
    report.finish();
}

/// Bincode writes an enum variant as its index, so reordering variants would silently change
/// the meaning of released bytes. The samples use one variant of most enums; this pins the code
/// of every variant of every enum that payloads carry (`fixtures/v1/enum_variants.txt`).
#[test]
fn enum_variant_codes_are_never_reordered() {
    fn code<T: serde::Serialize>(v: &T) -> String {
        hex::encode(
            bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("enums encode"),
        )
    }
    macro_rules! variants {
        ($out:ident, $ty:ident: $($v:ident),+) => {
            $(writeln!($out, "{}::{} {}", stringify!($ty), stringify!($v), code(&$ty::$v)).expect("writing to a String cannot fail");)+
        };
    }
    let mut now = String::from("# variant bincode (released enum variant codes; append only)\n");
    variants!(now, Workload: Incoming, Outgoing, Act);
    variants!(now, TestResult: NotRun, Success, Failure);
    variants!(now, ServerType: Groupware, Pop3Smtp, ImapSmtp);
    variants!(now, AccessReason: Role, Share, Team, BusinessUnit);
    variants!(now, TrackedBy: Filter, Category, Folder, Token, InReplyTo, Conversation, SmartMatch, AddIn);
    variants!(now, Side: MailServer, Crm);
    {
        use ledgersync_domain::email::resolve::{AutoCreate, PartyKind};
        use ledgersync_domain::email::{IncomingFilter, Manual};
        variants!(now, EmailFolder: Inbox, Sent);
        variants!(now, PartyKind: User, Contact, Account, Lead, Equipment, Team, BusinessUnit, Queue);
        variants!(now, IncomingFilter: All, RepliesOnly, FromLeadsContactsAccounts, FromEmailEnabled, None);
        variants!(now, AutoCreate: Contact, Lead);
        variants!(now, Manual: Category, AddIn);
    }
    variants!(now, ErrorClass: Permanent, Transient);
    variants!(now, ErrorScope: Server, Mailbox, Item);
    variants!(
        now,
        DisableReason: PermanentError,
        TransientLimit,
        TestFailed,
        NotApproved,
        OtherOrganization,
        Remapped,
        Administrator,
        Unsupported
    );
    variants!(now, AlertLevel: Error, Warning, Information);
    variants!(now, LeaveReason: FilterEdited, TimeWindow);
    variants!(now, Entity: Appointment, Contact, Task, Email);
    variants!(now, ActivityState: Open, Scheduled, Completed, Canceled);
    variants!(now, ShowAs: Busy, Free, Tentative, OutOfOffice);
    variants!(now, Priority: Low, Normal, High);
    variants!(now, ContactState: Active, Inactive);
    variants!(now, TaskKind: Task, Fax, Letter, PhoneCall);
    variants!(
        now,
        CommandType: TrackAppointment,
        TrackContact,
        TrackTask,
        UpdateRecord,
        CompleteTask,
        DeleteRecord,
        TrackEmail
    );

    let path = fixtures_dir().join("v1/enum_variants.txt");
    let mut report = Report::default();
    match std::fs::read_to_string(&path) {
        Ok(released) if !blessing() => {
            for line in released
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            {
                let name = line.split_whitespace().next().unwrap_or_default();
                match now.lines().find(|l| l.split_whitespace().next() == Some(name)) {
                    Some(current) if current == line => {}
                    Some(current) => report.failures.push(format!(
                        "{}: `{line}` was released but `{name}` now encodes as `{current}`: enum variants were \
                         reordered or removed; restore their order (add new variants at the end)",
                        path.display()
                    )),
                    None => report.failures.push(format!(
                        "{}: released variant `{name}` is no longer checked here; keep it in the list",
                        path.display()
                    )),
                }
            }
            for line in now.lines().filter(|l| !l.starts_with('#')) {
                if !released.lines().any(|r| r == line)
                    && !report.failures.iter().any(|f| f.contains(line))
                {
                    report.failures.push(format!(
                        "{}: `{line}` is not in the released list; append it (or run with LEDGERSYNC_BLESS=1 \
                         if nothing with it was released)",
                        path.display()
                    ));
                }
            }
        }
        _ => report.write(&path, &now),
    }
    report.finish();
}

#[test]
fn released_payloads_decode_and_samples_encode_to_them() {
    let mut report = Report::default();
    for sample in samples() {
        // Each sample at its current schema version, under fixtures/v<version>/.
        let dir = fixtures_dir().join(format!("v{}", sample.schema_version()));
        check_payload(
            &mut report,
            &dir,
            sample.name(),
            &sample,
            sample.event_type(),
        );
    }
    report.finish();
}

/// The payloads of an older schema version keep their fixtures, and their released bytes
/// still decode: through the upcaster, to the current event with the new parts absent.
#[test]
fn older_schema_versions_still_decode_through_their_upcasters() {
    use ledgersync_domain::event::versions::{
        EmailAcceptedV1, EmailReceivedV1, IntentFailedV1, IntentSucceededV1, OwnerChangedV1,
        RecordUpsertedV1,
    };
    let dir = fixtures_dir().join("v1");
    let succeeded = IntentSucceededV1 {
        intent: eid(41),
        remote: Some(remote("/dav/u1/calendar/4f2a.ics")),
        etag: Some("\"63a1-5f0f\"".into()),
    };
    let failed = IntentFailedV1 {
        intent: eid(42),
        error: ServerError {
            code: "412".into(),
            message: "Precondition Failed: etag mismatch".into(),
            retry_after: Some(at(20, 15, 0)),
        },
    };
    let received = EmailReceivedV1 {
        remote: remote("INBOX/1700000002/4821"),
        message_id: "<CAF3x9@mail.fabrikam.example>".into(),
        subject: "RE: Renewal terms CRM:0004711".into(),
        from: "dana@fabrikam.example".into(),
        to: vec!["u1@contoso.example".into(), "u2@contoso.example".into()],
        in_reply_to: Some("<20261119.abc@contoso.example>".into()),
    };
    let accepted = EmailAcceptedV1 {
        basis: basis("the tracking token correlates the reply with a tracked email"),
        remote: remote("INBOX/1700000002/4821"),
        accepting: UserId::new("u2"),
        receiving_mailbox: mailbox(),
        correlation: Some(TrackedBy::InReplyTo),
    };
    let upserted = RecordUpsertedV1 {
        record: record_v1(appointment_record()),
    };
    let upserted_email = RecordUpsertedV1 {
        record: record_v1(email_record()),
    };
    let owner_changed = OwnerChangedV1 {
        record: record_v1(task_record()),
        previous_owner: UserId::new("u3"),
    };
    let cases = [
        (
            "record_upserted",
            bincode::serde::encode_to_vec(&upserted, bincode::config::standard()).unwrap(),
            serde_json::json!({"type": "record_upserted", "data": upserted}),
            Event::RecordUpserted(RecordUpserted {
                record: appointment_record(),
            }),
        ),
        (
            // The email variant, released at version 1: it upcasts as a received email.
            "variants/record_upserted.email",
            bincode::serde::encode_to_vec(&upserted_email, bincode::config::standard()).unwrap(),
            serde_json::json!({"type": "record_upserted", "data": upserted_email}),
            Event::RecordUpserted(RecordUpserted {
                record: email_record(),
            }),
        ),
        (
            "owner_changed",
            bincode::serde::encode_to_vec(&owner_changed, bincode::config::standard()).unwrap(),
            serde_json::json!({"type": "owner_changed", "data": owner_changed}),
            Event::OwnerChanged(OwnerChanged {
                record: task_record(),
                previous_owner: UserId::new("u3"),
            }),
        ),
        (
            "email_received",
            bincode::serde::encode_to_vec(&received, bincode::config::standard()).unwrap(),
            serde_json::json!({"type": "email_received", "data": received}),
            Event::EmailReceived(received.clone().into()),
        ),
        (
            "email_accepted",
            bincode::serde::encode_to_vec(&accepted, bincode::config::standard()).unwrap(),
            serde_json::json!({"type": "email_accepted", "data": accepted}),
            Event::EmailAccepted(accepted.clone().into()),
        ),
        (
            "intent_succeeded",
            bincode::serde::encode_to_vec(&succeeded, bincode::config::standard()).unwrap(),
            serde_json::json!({"type": "intent_succeeded", "data": succeeded}),
            Event::IntentSucceeded(succeeded.clone().into()),
        ),
        (
            "intent_failed",
            bincode::serde::encode_to_vec(&failed, bincode::config::standard()).unwrap(),
            serde_json::json!({"type": "intent_failed", "data": failed}),
            Event::IntentFailed(failed.clone().into()),
        ),
    ];
    for (name, v1_bytes, v1_json, upcast) in cases {
        let hex_path = dir.join(format!("{name}.hex"));
        let released = from_hex(
            &hex_path,
            &std::fs::read_to_string(&hex_path).expect("the version 1 fixture is kept"),
        );
        assert_eq!(
            to_hex(&v1_bytes),
            to_hex(&released),
            "{}: the version 1 struct no longer encodes to its released bytes",
            hex_path.display()
        );
        let decoded = Event::decode(upcast.event_type(), 1, &released)
            .unwrap_or_else(|e| panic!("{name} version 1 no longer decodes: {e}"));
        assert_eq!(
            decoded, upcast,
            "{name} version 1 upcasts with the new parts absent"
        );
        assert_eq!(upcast.schema_version(), 2, "{name} is written at version 2");
        let json_path = dir.join(format!("{name}.json"));
        let released_json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        assert_eq!(released_json, v1_json, "{}", json_path.display());
    }
}

fn sample_envelope() -> Envelope {
    let payload = Event::RecordUpserted(RecordUpserted {
        record: appointment_record(),
    });
    Envelope {
        event_id: eid(40),
        stream: StreamId::mailbox(&mailbox()),
        seq: 17,
        position: 90_210,
        recorded_at: at(20, 14, 5),
        occurred_at: at(20, 14, 5) - Duration::minutes(2),
        event_type: payload.event_type(),
        schema_version: 1,
        causation: vec![eid(38), eid(39)],
        correlation: Some(eid(38)),
        rule: Some(RuleId(17)),
        payload: payload.encode_payload(),
    }
}

#[test]
fn released_envelope_decodes_and_encodes_the_same() {
    let hex_path = fixtures_dir().join("envelope/v1.hex");
    let json_path = fixtures_dir().join("envelope/v1.json");
    let env = sample_envelope();
    let encoded = env.encode();
    let mut report = Report::default();
    if blessing() || !hex_path.exists() || !json_path.exists() {
        report.write(&hex_path, &to_hex(&encoded));
        let mut json = serde_json::to_value(&env).expect("envelopes serialize to JSON");
        // For readers: the payload decoded, beside its bytes.
        let payload = Event::decode(env.event_type, env.schema_version, &env.payload)
            .expect("sample payload decodes");
        json["decoded_payload"] = serde_json::to_value(&payload).expect("events serialize to JSON");
        report.write(
            &json_path,
            &(serde_json::to_string_pretty(&json).expect("JSON is printable") + "\n"),
        );
        report.finish();
        return;
    }
    let released = from_hex(
        &hex_path,
        &std::fs::read_to_string(&hex_path).expect("fixture is readable"),
    );
    let decoded = Envelope::decode(&released).unwrap_or_else(|e| {
        panic!(
            "{}: the released envelope no longer decodes: {e}",
            hex_path.display()
        )
    });
    assert_eq!(
        decoded,
        env,
        "{}: the released envelope decodes to another value",
        hex_path.display()
    );
    assert_eq!(
        to_hex(&encoded),
        to_hex(&released),
        "{}: the envelope layout of format version 1 changed; add an envelope format version instead",
        hex_path.display()
    );
    let payload = Event::decode(decoded.event_type, decoded.schema_version, &decoded.payload)
        .unwrap_or_else(|e| {
            panic!(
                "{}: the payload inside the released envelope no longer decodes: {e}",
                hex_path.display()
            )
        });
    assert_eq!(
        payload,
        Event::RecordUpserted(RecordUpserted {
            record: appointment_record()
        })
    );
}

#[test]
fn unknown_type_code_is_a_clear_error() {
    for code in [0u16, 5, 99, 9999, u16::MAX] {
        let err =
            Event::decode(EventType(code), 1, &[0]).expect_err("unknown codes must not decode");
        assert!(
            matches!(err, DecodeError::UnknownEventType(c) if c == code),
            "code {code}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("unknown event type code {code}")),
            "message: {text}"
        );
        assert!(
            text.contains("newer ledgersync"),
            "the message must say what to do: {text}"
        );
    }
}

#[test]
fn unknown_schema_version_is_a_clear_error() {
    let sample = Event::RecordDeleted(RecordDeleted {
        id: RecordId::new("contact-dana-ito"),
        entity: Entity::Contact,
    });
    let bytes = sample.encode_payload();
    for version in [0u16, 2, 77, u16::MAX] {
        let err = Event::decode(sample.event_type(), version, &bytes)
            .expect_err("unknown versions must not decode");
        assert!(
            matches!(err, DecodeError::UnknownSchemaVersion { event_type: "record_deleted", version: v } if v == version),
            "version {version}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("record_deleted") && text.contains(&format!("schema version {version}")),
            "the message must name the type and the version: {text}"
        );
    }
    // Every type rejects a version it does not have (the one after its current), naming
    // itself.
    for (code, name, _) in Event::CATALOGUE {
        let next = schema_version_of(EventType(*code)) + 1;
        match Event::decode(EventType(*code), next, &[]) {
            Err(DecodeError::UnknownSchemaVersion {
                event_type,
                version,
            }) if version == next => {
                assert_eq!(event_type, *name)
            }
            other => panic!("{name}: schema version {next} gave {other:?}"),
        }
    }
}

#[test]
fn truncated_or_padded_payloads_are_malformed() {
    for sample in samples() {
        let bytes = sample.encode_payload();
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(
            matches!(Event::decode(sample.event_type(), sample.schema_version(), &padded), Err(DecodeError::Malformed(m)) if m.contains("trailing")),
            "{}: a trailing byte must be reported",
            sample.name()
        );
        if bytes.len() > 1 {
            assert!(
                matches!(
                    Event::decode(
                        sample.event_type(),
                        sample.schema_version(),
                        &bytes[..bytes.len() - 1]
                    ),
                    Err(DecodeError::Malformed(_))
                ),
                "{}: a truncated payload must be malformed",
                sample.name()
            );
        }
    }
}
