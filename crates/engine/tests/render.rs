//! CRM changes out (`engine::ingress::render_change`): every CRM change the parser reads is
//! written back as a line that parses to the same event: the demo's story, every documented
//! example, and the optional fields and odd times the examples leave out. Events that are not
//! CRM changes render to nothing.

use ledgersync_domain::event::*;
use ledgersync_domain::filter::SyncFilter;
use ledgersync_domain::records::*;
use ledgersync_domain::{
    Event, EventId, FilterId, MailboxId, OrgId, OrgState, ProfileId, RecordId, RemoteId, Timestamp,
    UserId,
};
use ledgersync_engine::ingress::{KINDS, parse_line, parse_time, render_change};
use ledgersync_engine::scenario::story;
use std::path::Path;

fn serenity() -> OrgId {
    OrgId::new("serenity")
}

/// Renders `event`, checks the line parses back to it against `org`, then folds it into `org`.
fn round_trip(event: &Event, org: &mut OrgState) -> String {
    let line = render_change(event).unwrap_or_else(|| panic!("{} renders", event.name()));
    assert!(line.starts_with(r#"{"kind":""#), "{line}");
    assert!(!line.contains('\n'), "{line}");
    assert_eq!(parse_line(&line, org).as_ref(), Ok(event), "{line}");
    org.apply(event);
    line
}

/// The lines of docs/crm-changes.md that are change examples.
fn documented_lines() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/crm-changes.md");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(r#"{"kind""#))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_change_of_the_story_round_trips() {
    // A start with milliseconds, so every time of the story carries them.
    let start = parse_time("2026-11-20T08:00:00.125Z").unwrap();
    let mut org = OrgState::new(serenity());
    let mut kinds = Vec::new();
    for step in story(&serenity(), start) {
        for event in &step.events {
            let line = round_trip(event, &mut org);
            if event.name() == "record_upserted" && line.contains(r#""entity":"appointment""#) {
                assert!(line.contains(".125Z\""), "{line}");
            }
            kinds.push(event.name());
        }
    }
    for kind in [
        "profile_registered",
        "user_registered",
        "mailbox_registered",
        "mailbox_mapped",
        "address_approved",
        "mailbox_tested",
        "record_upserted",
        "filter_changed",
        "access_lost",
        "owner_changed",
        "record_deleted",
    ] {
        assert!(kinds.contains(&kind), "the story has no {kind}");
    }
}

#[test]
fn every_documented_example_parses_renders_and_parses_again() {
    let lines = documented_lines();
    let mut org = OrgState::new(serenity());
    let mut kinds = Vec::new();
    for line in &lines {
        let event = parse_line(line, &org).unwrap_or_else(|p| panic!("{line}: {p:?}"));
        let rendered = render_change(&event).unwrap_or_else(|| panic!("{line} renders"));
        assert_eq!(
            parse_line(&rendered, &org).as_ref(),
            Ok(&event),
            "{line}\n{rendered}"
        );
        org.apply(&event);
        kinds.push(event.name());
    }
    for kind in KINDS {
        assert!(kinds.contains(&kind), "no documented example of {kind}");
    }
}

fn party(user: Option<&str>, email: &str, name: &str) -> Party {
    Party {
        user: user.map(UserId::new),
        email: email.into(),
        name: name.into(),
    }
}

fn regarding() -> Option<RecordRef> {
    Some(RecordRef {
        table: "account".into(),
        id: RecordId::new("acc-1"),
        name: String::new(),
    })
}

#[test]
fn optional_fields_non_default_values_and_odd_times_round_trip() {
    let mut org = OrgState::new(serenity());
    let mailbox = MailboxId::new("mbx-1");
    let t = |text: &str| parse_time(text).unwrap();
    let events = vec![
        Event::ProfileRegistered(ProfileRegistered {
            profile: ProfileId::new("imap"),
            name: "IMAP".into(),
            server_type: ServerType::ImapSmtp,
            max_connections: 300,
        }),
        Event::ProfileAlertingSet(ProfileAlertingSet {
            profile: ProfileId::new("imap"),
            send_alert: true,
        }),
        Event::ProfileAlertingSet(ProfileAlertingSet {
            profile: ProfileId::new("imap"),
            send_alert: false,
        }),
        Event::UserRegistered(UserRegistered {
            user: UserId::new("u \"quoted\" ü"),
            name: "Ünïcode \\ name".into(),
            email: "u@x.example".into(),
        }),
        Event::SettingChanged(SettingChanged {
            key: "transient_retry_limit".into(),
            value: "7".into(),
        }),
        Event::MailboxRegistered(MailboxRegistered {
            mailbox: mailbox.clone(),
            org: serenity(),
            address: "u@x.example".into(),
            profile: ProfileId::new("imap"),
            server_type: ServerType::ImapSmtp,
        }),
        Event::AddressApproved(AddressApproved {
            mailbox: mailbox.clone(),
            approved: false,
        }),
        Event::MailboxTested(MailboxTested {
            mailbox: mailbox.clone(),
            incoming: TestResult::Failure,
            outgoing: TestResult::NotRun,
            act: TestResult::Success,
            act_org_marker: Some(OrgId::new("other")),
            override_other_org: true,
        }),
        Event::DisableRequested(DisableRequested {
            mailbox: mailbox.clone(),
            workload: Workload::Act,
            by: "administrator".into(),
        }),
        Event::RecordUpserted(RecordUpserted {
            record: Record {
                id: RecordId::new("apt-1"),
                owner: UserId::new("u"),
                version: 7,
                body: RecordBody::Appointment(Appointment {
                    subject: "Line\nbreak".into(),
                    organizer: None,
                    required: vec![],
                    optional: vec![party(None, "o@x.example", "")],
                    start: t("1969-12-31T23:59:59.999Z"),
                    end: t("9999-12-31T23:59:59.999Z"),
                    all_day: true,
                    location: String::new(),
                    body: String::new(),
                    state: ActivityState::Canceled,
                    show_as: ShowAs::OutOfOffice,
                    priority: Priority::Low,
                    regarding: regarding(),
                    service: true,
                    recurrence: Some("FREQ=WEEKLY;BYDAY=MO".into()),
                }),
            },
        }),
        Event::RecordUpserted(RecordUpserted {
            record: Record {
                id: RecordId::new("tsk-1"),
                owner: UserId::new("u"),
                version: 1,
                body: RecordBody::Task(Task {
                    kind: TaskKind::Letter,
                    subject: "Letter".into(),
                    body: "b".into(),
                    start: Some(t("2026-12-01T10:30:00.001+01:00")),
                    due: None,
                    actual_start: Some(t("0000-01-01T00:00:00Z")),
                    actual_end: Some(t("2026-12-02T00:00:00Z")),
                    percent_complete: 100,
                    state: ActivityState::Completed,
                    priority: Priority::High,
                    regarding: regarding(),
                }),
            },
        }),
        Event::OwnerChanged(OwnerChanged {
            record: Record {
                id: RecordId::new("eml-1"),
                owner: UserId::new("u"),
                version: 2,
                body: RecordBody::Email(Email {
                    subject: String::new(),
                    from: party(Some("v"), "v@x.example", "V"),
                    to: vec![],
                    message_id: String::new(),
                    regarding: regarding(),
                    state: ledgersync_domain::records::EmailState::Received,
                    cc: Vec::new(),
                    text: None,
                    html: None,
                    submitted_by: None,
                    tracking_token: None,
                }),
            },
            previous_owner: UserId::new("v"),
        }),
        Event::RecordUpserted(RecordUpserted {
            record: Record {
                id: RecordId::new("con-1"),
                owner: UserId::new("u"),
                version: 1,
                body: RecordBody::Contact(Contact {
                    full_name: "C".into(),
                    email: String::new(),
                    phone: String::new(),
                    company: String::new(),
                    state: ContactState::Inactive,
                }),
            },
        }),
        Event::AccessRegained(AccessRegained {
            user: UserId::new("u"),
            records: vec![RecordId::new("apt-1"), RecordId::new("tsk-1")],
            reason: AccessReason::BusinessUnit,
        }),
        Event::FilterChanged(FilterChanged {
            user: UserId::new("u"),
            entity: Entity::Task,
            filters: vec![],
        }),
        Event::FilterChanged(FilterChanged {
            user: UserId::new("u"),
            entity: Entity::Contact,
            filters: vec![SyncFilter {
                id: FilterId::new("f"),
                name: "Off".into(),
                entity: Entity::Contact,
                enabled: false,
                expr: "owner = me".into(),
            }],
        }),
        Event::RecordDeleted(RecordDeleted {
            id: RecordId::new("con-1"),
            entity: Entity::Contact,
        }),
    ];
    for event in &events {
        round_trip(event, &mut org);
    }
}

#[test]
fn a_time_rfc_3339_cannot_write_renders_nothing() {
    let mut e = RecordUpserted {
        record: Record {
            id: RecordId::new("tsk-1"),
            owner: UserId::new("u"),
            version: 1,
            body: RecordBody::Task(Task {
                kind: TaskKind::Task,
                subject: "S".into(),
                body: String::new(),
                start: None,
                due: Some(Timestamp(253_402_300_800_000)), // 10000-01-01
                actual_start: None,
                actual_end: None,
                percent_complete: 0,
                state: ActivityState::Open,
                priority: Priority::Normal,
                regarding: None,
            }),
        },
    };
    assert_eq!(render_change(&Event::RecordUpserted(e.clone())), None);
    if let RecordBody::Task(t) = &mut e.record.body {
        t.due = Some(Timestamp(253_402_300_799_999)); // 9999-12-31T23:59:59.999Z
    }
    assert!(render_change(&Event::RecordUpserted(e)).is_some());
}

#[test]
fn mail_observations_decisions_and_outcomes_render_nothing() {
    let seen = Event::ItemGone(ItemGone {
        remote: RemoteId::new("mbx-1/apt-1.ics"),
    });
    let decision = Event::MappingStarted(MappingStarted {
        basis: Basis::default(),
        user: UserId::new("u"),
    });
    let outcome = Event::IntentSucceeded(IntentSucceeded {
        intent: EventId([0; 16]),
        remote: None,
        etag: None,
        crm: None,
    });
    for event in [seen, decision, outcome] {
        assert_eq!(render_change(&event), None, "{}", event.name());
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Any millisecond from year 0 to year 9999, and any text, reads back unchanged.
    #[test]
    fn any_writable_time_and_any_text_round_trip(
        start in -62_167_219_200_000i64..=253_402_300_799_999,
        length in 0i64..=86_400_000,
        subject in "\\PC*",
        location in ".*",
    ) {
        let end = start.saturating_add(length).min(253_402_300_799_999);
        let event = Event::RecordUpserted(RecordUpserted {
            record: Record {
                id: RecordId::new("apt-p"),
                owner: UserId::new("u"),
                version: 1,
                body: RecordBody::Appointment(Appointment {
                    subject,
                    organizer: None,
                    required: vec![],
                    optional: vec![],
                    start: Timestamp(start),
                    end: Timestamp(end),
                    all_day: false,
                    location,
                    body: String::new(),
                    state: ActivityState::Scheduled,
                    show_as: ShowAs::Busy,
                    priority: Priority::Normal,
                    regarding: None,
                    service: false,
                    recurrence: None,
                }),
            },
        });
        let line = render_change(&event).expect("a writable time renders");
        let org = OrgState::new(serenity());
        proptest::prop_assert_eq!(parse_line(&line, &org), Ok(event), "{}", line);
    }
}
