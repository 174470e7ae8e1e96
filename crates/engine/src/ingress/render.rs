//! CRM changes out: the inverse of [`parse_line`](super::parse_line). An event that a CRM change
//! line can carry is written back as that line, so changes can be exported from a journal and
//! replayed with `ledgersync crm apply`.
//!
//! The line names every field of the event, in the order of `docs/crm-changes.md`, with `"kind"`
//! first; only absent optional values (`organizer`, `regarding`, `recurrence`, a party's `user`,
//! a task's times, `act_org`) are left out, which the parser reads back as absent. Times are
//! RFC 3339 in UTC (`2026-12-01T09:30:00Z`), with milliseconds when they are not zero
//! (`2026-12-01T09:30:00.250Z`), so they read back to the same millisecond.
//!
//! Two fields of `mailbox_registered` are not on the line: the organization and the server
//! type, which the parser takes from the organization and the profile. The line reads back to
//! the same event when they agree, as they do for every event the parser produced.

use super::wire::{
    ContactStateWire, EmailStateWire, EntityWire, PriorityWire, ReasonWire, ServerTypeWire,
    ShowAsWire, StateWire, TaskKindWire, TestWire, WorkloadWire,
};
use chrono::{DateTime, Datelike, SecondsFormat};
use ledgersync_domain::records::{Party, Record, RecordBody, RecordRef};
use ledgersync_domain::{Event, Timestamp};
use serde::Serialize;

/// The CRM change line (JSON, no trailing newline) that [`parse_line`](super::parse_line) reads
/// back to `event`, given the organization the event was parsed against.
///
/// `None` when the event is not a CRM change (a mail observation, a decision, an outcome, an
/// organization observation), or when one of its times has no RFC 3339 form (before year 0 or
/// after year 9999).
pub fn render_change(event: &Event) -> Option<String> {
    let line = match event {
        Event::RecordUpserted(e) => Line::RecordUpserted {
            record: record(&e.record)?,
        },
        Event::OwnerChanged(e) => Line::OwnerChanged {
            previous_owner: e.previous_owner.as_str(),
            record: record(&e.record)?,
        },
        Event::RecordDeleted(e) => Line::RecordDeleted {
            id: e.id.as_str(),
            entity: e.entity.into(),
        },
        Event::AccessLost(e) => Line::AccessLost {
            user: e.user.as_str(),
            records: e.records.iter().map(|r| r.as_str()).collect(),
            reason: e.reason.into(),
        },
        Event::AccessRegained(e) => Line::AccessRegained {
            user: e.user.as_str(),
            records: e.records.iter().map(|r| r.as_str()).collect(),
            reason: e.reason.into(),
        },
        Event::FilterChanged(e) => Line::FilterChanged {
            user: e.user.as_str(),
            entity: e.entity.into(),
            filters: e
                .filters
                .iter()
                .map(|f| FilterOut {
                    id: f.id.as_str(),
                    name: &f.name,
                    enabled: f.enabled,
                    expr: &f.expr,
                })
                .collect(),
        },
        Event::UserRegistered(e) => Line::UserRegistered {
            user: e.user.as_str(),
            name: &e.name,
            email: &e.email,
        },
        Event::ProfileRegistered(e) => Line::ProfileRegistered {
            profile: e.profile.as_str(),
            name: &e.name,
            server_type: e.server_type.into(),
            max_connections: e.max_connections,
        },
        Event::ProfileAlertingSet(e) => Line::ProfileAlertingSet {
            profile: e.profile.as_str(),
            send_alert: e.send_alert,
        },
        Event::MailboxRegistered(e) => Line::MailboxRegistered {
            mailbox: e.mailbox.as_str(),
            address: &e.address,
            profile: e.profile.as_str(),
        },
        Event::MailboxMapped(e) => Line::MailboxMapped {
            mailbox: e.mailbox.as_str(),
            user: e.user.as_str(),
        },
        Event::AddressApproved(e) => Line::AddressApproved {
            mailbox: e.mailbox.as_str(),
            approved: e.approved,
        },
        Event::MailboxTested(e) => Line::MailboxTested {
            mailbox: e.mailbox.as_str(),
            incoming: e.incoming.into(),
            outgoing: e.outgoing.into(),
            act: e.act.into(),
            act_org: e.act_org_marker.as_ref().map(|o| o.as_str()),
            override_other_org: e.override_other_org,
        },
        Event::DisableRequested(e) => Line::DisableRequested {
            mailbox: e.mailbox.as_str(),
            workload: e.workload.into(),
            by: &e.by,
        },
        Event::DeletesApproved(e) => Line::DeletesApproved {
            mailbox: e.mailbox.as_str(),
            by: &e.by,
        },
        Event::SettingChanged(e) => Line::SettingChanged {
            key: &e.key,
            value: &e.value,
        },
        _ => return None,
    };
    Some(serde_json::to_string(&line).expect("a change line has string keys only"))
}

/// RFC 3339 in UTC, with as many fractional digits as the milliseconds need (none, or 3).
fn time(t: Timestamp) -> Option<String> {
    let utc = DateTime::from_timestamp_millis(t.0)?;
    (0..=9999)
        .contains(&utc.year())
        .then(|| utc.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn optional_time(t: Option<Timestamp>) -> Option<Option<String>> {
    t.map(time).map_or(Some(None), |s| s.map(Some))
}

fn record(r: &Record) -> Option<RecordOut<'_>> {
    let id = r.id.as_str();
    let owner = r.owner.as_str();
    let version = r.version;
    Some(match &r.body {
        RecordBody::Appointment(a) => RecordOut::Appointment {
            id,
            owner,
            version,
            subject: &a.subject,
            organizer: a.organizer.as_ref().map(party),
            required: a.required.iter().map(party).collect(),
            optional: a.optional.iter().map(party).collect(),
            start: time(a.start)?,
            end: time(a.end)?,
            all_day: a.all_day,
            location: &a.location,
            body: &a.body,
            state: a.state.into(),
            show_as: a.show_as.into(),
            priority: a.priority.into(),
            regarding: a.regarding.as_ref().map(reference),
            service: a.service,
            recurrence: a.recurrence.as_deref(),
        },
        RecordBody::Contact(c) => RecordOut::Contact {
            id,
            owner,
            version,
            full_name: &c.full_name,
            email: &c.email,
            phone: &c.phone,
            company: &c.company,
            state: c.state.into(),
        },
        RecordBody::Task(t) => RecordOut::Task {
            id,
            owner,
            version,
            task_kind: t.kind.into(),
            subject: &t.subject,
            body: &t.body,
            start: optional_time(t.start)?,
            due: optional_time(t.due)?,
            actual_start: optional_time(t.actual_start)?,
            actual_end: optional_time(t.actual_end)?,
            percent_complete: t.percent_complete,
            state: t.state.into(),
            priority: t.priority.into(),
            regarding: t.regarding.as_ref().map(reference),
        },
        RecordBody::Email(m) => RecordOut::Email {
            id,
            owner,
            version,
            subject: &m.subject,
            from: party(&m.from),
            to: m.to.iter().map(party).collect(),
            message_id: &m.message_id,
            regarding: m.regarding.as_ref().map(reference),
            state: m.state.into(),
            cc: m.cc.iter().map(party).collect(),
            text: m.text.as_deref(),
            html: m.html.as_deref(),
            submitted_by: m.submitted_by.as_ref().map(|u| u.as_str()),
            tracking_token: m.tracking_token.as_deref(),
        },
    })
}

/// An email row's state is written unless it is the default (`received`).
fn is_received(s: &EmailStateWire) -> bool {
    matches!(s, EmailStateWire::Received)
}

fn party(p: &Party) -> PartyOut<'_> {
    PartyOut {
        user: p.user.as_ref().map(|u| u.as_str()),
        email: &p.email,
        name: &p.name,
    }
}

fn reference(r: &RecordRef) -> RefOut<'_> {
    RefOut {
        table: &r.table,
        id: r.id.as_str(),
        name: &r.name,
    }
}

// ───────────────────────────── the line ─────────────────────────────

/// One line; the variant names are the kinds, and serde writes `"kind"` first.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line<'a> {
    RecordUpserted {
        record: RecordOut<'a>,
    },
    OwnerChanged {
        previous_owner: &'a str,
        record: RecordOut<'a>,
    },
    RecordDeleted {
        id: &'a str,
        entity: EntityWire,
    },
    AccessLost {
        user: &'a str,
        records: Vec<&'a str>,
        reason: ReasonWire,
    },
    AccessRegained {
        user: &'a str,
        records: Vec<&'a str>,
        reason: ReasonWire,
    },
    FilterChanged {
        user: &'a str,
        entity: EntityWire,
        filters: Vec<FilterOut<'a>>,
    },
    UserRegistered {
        user: &'a str,
        name: &'a str,
        email: &'a str,
    },
    ProfileRegistered {
        profile: &'a str,
        name: &'a str,
        server_type: ServerTypeWire,
        max_connections: u16,
    },
    ProfileAlertingSet {
        profile: &'a str,
        send_alert: bool,
    },
    MailboxRegistered {
        mailbox: &'a str,
        address: &'a str,
        profile: &'a str,
    },
    MailboxMapped {
        mailbox: &'a str,
        user: &'a str,
    },
    AddressApproved {
        mailbox: &'a str,
        approved: bool,
    },
    MailboxTested {
        mailbox: &'a str,
        incoming: TestWire,
        outgoing: TestWire,
        act: TestWire,
        #[serde(skip_serializing_if = "Option::is_none")]
        act_org: Option<&'a str>,
        override_other_org: bool,
    },
    DisableRequested {
        mailbox: &'a str,
        workload: WorkloadWire,
        by: &'a str,
    },
    DeletesApproved {
        mailbox: &'a str,
        by: &'a str,
    },
    /// The value is written as a string; the parser takes strings as they are.
    SettingChanged {
        key: &'a str,
        value: &'a str,
    },
}

#[derive(Serialize)]
struct FilterOut<'a> {
    id: &'a str,
    name: &'a str,
    enabled: bool,
    expr: &'a str,
}

/// A record; the variant names are the entities.
#[derive(Serialize)]
#[serde(tag = "entity", rename_all = "snake_case")]
enum RecordOut<'a> {
    Appointment {
        id: &'a str,
        owner: &'a str,
        version: u64,
        subject: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        organizer: Option<PartyOut<'a>>,
        required: Vec<PartyOut<'a>>,
        optional: Vec<PartyOut<'a>>,
        start: String,
        end: String,
        all_day: bool,
        location: &'a str,
        body: &'a str,
        state: StateWire,
        show_as: ShowAsWire,
        priority: PriorityWire,
        #[serde(skip_serializing_if = "Option::is_none")]
        regarding: Option<RefOut<'a>>,
        service: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        recurrence: Option<&'a str>,
    },
    Contact {
        id: &'a str,
        owner: &'a str,
        version: u64,
        full_name: &'a str,
        email: &'a str,
        phone: &'a str,
        company: &'a str,
        state: ContactStateWire,
    },
    Task {
        id: &'a str,
        owner: &'a str,
        version: u64,
        task_kind: TaskKindWire,
        subject: &'a str,
        body: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        start: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        due: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        actual_start: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        actual_end: Option<String>,
        percent_complete: u8,
        state: StateWire,
        priority: PriorityWire,
        #[serde(skip_serializing_if = "Option::is_none")]
        regarding: Option<RefOut<'a>>,
    },
    Email {
        id: &'a str,
        owner: &'a str,
        version: u64,
        subject: &'a str,
        from: PartyOut<'a>,
        to: Vec<PartyOut<'a>>,
        message_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        regarding: Option<RefOut<'a>>,
        #[serde(skip_serializing_if = "is_received")]
        state: EmailStateWire,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        cc: Vec<PartyOut<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        html: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        submitted_by: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tracking_token: Option<&'a str>,
    },
}

#[derive(Serialize)]
struct PartyOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    email: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct RefOut<'a> {
    table: &'a str,
    id: &'a str,
    name: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_carry_milliseconds_only_when_there_are_some() {
        assert_eq!(
            time(Timestamp(1_796_117_400_000)).as_deref(),
            Some("2026-12-01T09:30:00Z")
        );
        assert_eq!(
            time(Timestamp(1_796_117_400_250)).as_deref(),
            Some("2026-12-01T09:30:00.250Z")
        );
        assert_eq!(
            time(Timestamp(-1)).as_deref(),
            Some("1969-12-31T23:59:59.999Z")
        );
    }

    #[test]
    fn a_time_without_an_rfc_3339_form_renders_nothing() {
        assert_eq!(time(Timestamp(i64::MAX)), None);
        // Year 10000 exists for chrono but not for RFC 3339.
        assert_eq!(time(Timestamp(253_402_300_800_000)), None);
        assert_eq!(optional_time(None), Some(None));
        assert_eq!(optional_time(Some(Timestamp(i64::MAX))), None);
    }
}
