//! CRM changes in: the JSON-lines format read by `ledgersync crm apply`, mapped to the domain's
//! organization, lifecycle and CRM-observation events.
//!
//! One line is one change, an object with a `"kind"` (one of [`KINDS`], the event type names of
//! the catalogue) and the fields of that kind, in snake_case, times as RFC 3339 text. The format
//! is specified in `docs/crm-changes.md` and `docs/schemas/crm-change.schema.json`.
//!
//! This module is pure: text and the organization's state in, events or errors out. Every error
//! names its line and, where there is one, the field (`record.start`, `filters[1].expr`), and
//! says what is expected. [`parse_changes`] checks a whole file against the organization as it
//! would be after each earlier line, so a file either maps completely or not at all.
//!
//! The way back is [`render_change`]: an event to the line that parses to it.

use crate::engine::validate_crm;
use crate::error::EngineError;
use ledgersync_domain::event::{
    AccessLost, AccessReason, AccessRegained, AddressApproved, DeletesApproved, DisableRequested,
    FilterChanged, MailboxMapped, MailboxRegistered, MailboxTested, OwnerChanged,
    ProfileAlertingSet, ProfileRegistered, RecordDeleted, RecordUpserted, SettingChanged,
    UserRegistered,
};
use ledgersync_domain::filter::{CompiledFilter, SyncFilter};
use ledgersync_domain::records::{
    Appointment, Contact, Email, Entity, Party, Record, RecordBody, RecordRef, Task,
};
use ledgersync_domain::{
    Event, FilterId, Limits, MailboxId, OrgId, OrgState, ProfileId, RecordId, Timestamp, UserId,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;
use wire::*;

mod render;
mod result;
mod wire;

pub use render::render_change;
pub use result::{RESULT_KIND, ResultLine, Split, parse_result_within, split_results};

/// Every `"kind"` a line can have (the event type names of the catalogue).
pub const KINDS: [&str; 16] = [
    "record_upserted",
    "record_deleted",
    "owner_changed",
    "access_lost",
    "access_regained",
    "filter_changed",
    "user_registered",
    "profile_registered",
    "profile_alerting_set",
    "mailbox_registered",
    "mailbox_mapped",
    "address_approved",
    "mailbox_tested",
    "disable_requested",
    "deletes_approved",
    "setting_changed",
];

/// A bad line: where, which field, what is wrong and what is expected.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// The field, as a path (`record.start`, `filters[0].expr`), when one field is at fault.
    pub field: Option<String>,
    /// What is wrong and what is expected.
    pub message: String,
}

impl LineError {
    /// The error as `FILE:LINE: field "F": message`.
    pub fn render(&self, file: &str) -> String {
        match &self.field {
            Some(f) => format!("{file}:{}: field \"{f}\": {}", self.line, self.message),
            None => format!("{file}:{}: {}", self.line, self.message),
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("line"))
    }
}

/// One valid line, mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// 1-based line number.
    pub line: usize,
    /// The event to record through `Engine::crm`.
    pub event: Event,
}

/// What is wrong with one line (the line number is added by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The field path, if one field is at fault.
    pub field: Option<String>,
    /// The message.
    pub message: String,
}

impl Problem {
    fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            message: message.into(),
        }
    }
    fn line(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }
}

/// Maps every line of `text` against the organization as it stands after the lines before it
/// (a mailbox registered on line 3 can be mapped on line 4). Blank lines are skipped. Returns
/// every bad line, or the events when all lines are good.
///
/// The organization is not copied: the lines are checked against a scratch organization that
/// holds its small parts (settings, users, profiles, mailboxes, filters, access) and, of its
/// rows, only those the file names, taken from `org` when a line first names them — the cost
/// grows with the file, not with the organization.
pub fn parse_changes(text: &str, org: &OrgState) -> Result<Vec<Change>, Vec<LineError>> {
    parse_changes_within(text, org, &Limits::default())
}

/// [`parse_changes`] with the size `limits` of a line and of a text field (a line or field
/// beyond them is a bad line, named with its field).
pub fn parse_changes_within(
    text: &str,
    base: &OrgState,
    limits: &Limits,
) -> Result<Vec<Change>, Vec<LineError>> {
    let mut org = OrgState {
        id: base.id.clone(),
        settings: base.settings.clone(),
        users: base.users.clone(),
        profiles: base.profiles.clone(),
        mailboxes: base.mailboxes.clone(),
        user_mailbox: base.user_mailbox.clone(),
        routed: Default::default(),
        rows: Default::default(),
        filters: base.filters.clone(),
        access: base.access.clone(),
        deleted: Default::default(),
        profile_failures: base.profile_failures.clone(),
        last_noted: base.last_noted.clone(),
        // Validation does not look addresses up; the directory is not copied.
        email_directory: Default::default(),
    };
    let mut named = std::collections::BTreeSet::new();
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let checked = parse_line_within(raw, &org, limits).and_then(|event| {
            if let Some(row) = row_of(&event)
                && named.insert(row.clone())
            {
                if let Some(info) = base.rows.get(row) {
                    org.rows.insert(row.clone(), info.clone());
                }
                if let Some(routed) = base.routed.get(row) {
                    org.routed.insert(row.clone(), routed.clone());
                }
                if let Some(version) = base.deleted.get(row) {
                    org.deleted.insert(row.clone(), *version);
                }
            }
            // A change the organization already holds is acknowledged, not checked again (a
            // re-sent `owner_changed` names the owner before it).
            match org.already_recorded(&event) {
                Ok(Some(_)) => return Ok((event, true)),
                Ok(None) => {}
                Err(c) => return Err(Problem::at(c.field, c.message)),
            }
            validate_crm(&event, &org).map_err(|e| match e {
                EngineError::InvalidField { field, message } => Problem::at(field, message),
                e => Problem::line(e.to_string()),
            })?;
            Ok((event, false))
        });
        match checked {
            Ok((event, recorded)) => {
                if !recorded {
                    org.apply(&event);
                }
                changes.push(Change { line, event });
            }
            Err(p) => errors.push(LineError {
                line,
                field: p.field,
                message: p.message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(errors)
    }
}

/// The row a change names, whose recorded table, owner and routing its check and its
/// application read.
fn row_of(event: &Event) -> Option<&RecordId> {
    match event {
        Event::RecordUpserted(p) => Some(&p.record.id),
        Event::OwnerChanged(p) => Some(&p.record.id),
        Event::RecordDeleted(p) => Some(&p.id),
        _ => None,
    }
}

/// Maps one line to its event, checking it against the organization `org`.
pub fn parse_line(text: &str, org: &OrgState) -> Result<Event, Problem> {
    parse_line_within(text, org, &Limits::default())
}

/// [`parse_line`] with the size `limits` of the line and of each text field.
pub fn parse_line_within(text: &str, org: &OrgState, limits: &Limits) -> Result<Event, Problem> {
    if text.len() as u64 > limits.max_line_bytes {
        return Err(Problem::line(format!(
            "the line is {} bytes, more than the limit of {} (max_line_bytes in the [limits] \
             table of the configuration); shorten its text fields or raise the limit",
            text.len(),
            limits.max_line_bytes
        )));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Problem::line(format!(
            "not a JSON object: {} at column {}; each line must be one JSON object like \
             {{\"kind\": \"record_deleted\", ...}}",
            strip_position(&e.to_string()),
            e.column()
        ))
    })?;
    let Value::Object(mut map) = value else {
        return Err(Problem::line(
            "not a JSON object; each line must be one object with a \"kind\"",
        ));
    };
    for (key, v) in &map {
        oversized(v, key, key, limits)?;
    }
    let kind = take_tag(&mut map, "kind", &KINDS, "").map_err(|mut p| {
        // A result line is a kind too, read beside the changes (`split_results`).
        p.message = p.message.replace(
            "expected one of: ",
            &format!("expected one of: {RESULT_KIND}, "),
        );
        p
    })?;
    let rest = Value::Object(map);
    Ok(match kind.as_str() {
        "record_upserted" => {
            let w: UpsertWire = wire(rest, "")?;
            Event::RecordUpserted(RecordUpserted {
                record: record(w.record, "record")?,
            })
        }
        "owner_changed" => {
            let w: OwnerChangedWire = wire(rest, "")?;
            let record = record(w.record, "record")?;
            let previous_owner = user(w.previous_owner, "previous_owner")?;
            if previous_owner == record.owner {
                return Err(Problem::at(
                    "previous_owner",
                    format!(
                        "is the same as record.owner (`{previous_owner}`); an owner change needs a new owner"
                    ),
                ));
            }
            Event::OwnerChanged(OwnerChanged {
                record,
                previous_owner,
            })
        }
        "record_deleted" => {
            let w: DeletedWire = wire(rest, "")?;
            Event::RecordDeleted(RecordDeleted {
                id: RecordId::new(nonempty(w.id, "id")?),
                entity: w.entity.into(),
            })
        }
        "access_lost" | "access_regained" => {
            let w: AccessWire = wire(rest, "")?;
            let user = user(w.user, "user")?;
            if w.records.is_empty() {
                return Err(Problem::at("records", "is empty; list the row ids"));
            }
            let records = w
                .records
                .into_iter()
                .enumerate()
                .map(|(i, r)| nonempty(r, &format!("records[{i}]")).map(RecordId::new))
                .collect::<Result<Vec<_>, _>>()?;
            let reason: AccessReason = w.reason.into();
            if kind == "access_lost" {
                Event::AccessLost(AccessLost {
                    user,
                    records,
                    reason,
                })
            } else {
                Event::AccessRegained(AccessRegained {
                    user,
                    records,
                    reason,
                })
            }
        }
        "filter_changed" => filter_changed(wire(rest, "")?)?,
        "user_registered" => {
            let w: UserWire = wire(rest, "")?;
            Event::UserRegistered(UserRegistered {
                user: user(w.user, "user")?,
                name: nonempty(w.name, "name")?,
                email: address(w.email, "email")?,
            })
        }
        "profile_registered" => {
            let w: ProfileWire = wire(rest, "")?;
            if let Err(e) =
                ledgersync_domain::policy::connections::check_max_connections(w.max_connections)
            {
                return Err(Problem::at("max_connections", e.detail()));
            }
            Event::ProfileRegistered(ProfileRegistered {
                profile: ProfileId::new(nonempty(w.profile, "profile")?),
                name: nonempty(w.name, "name")?,
                server_type: w.server_type.into(),
                max_connections: w.max_connections,
            })
        }
        "profile_alerting_set" => {
            let w: ProfileAlertingWire = wire(rest, "")?;
            let profile = ProfileId::new(nonempty(w.profile, "profile")?);
            if !org.profiles.contains_key(&profile) {
                return Err(Problem::at(
                    "profile",
                    format!(
                        "unknown server profile `{profile}`; register it first (a profile_registered line)"
                    ),
                ));
            }
            Event::ProfileAlertingSet(ProfileAlertingSet {
                profile,
                send_alert: w.send_alert,
            })
        }
        "mailbox_registered" => {
            let w: MailboxRegisteredWire = wire(rest, "")?;
            let mailbox = MailboxId::new(nonempty(w.mailbox, "mailbox")?);
            let address = address(w.address, "address")?;
            // The same registration again is acknowledged as already recorded; another one is
            // refused.
            if let Some(known) = org.mailboxes.get(&mailbox)
                && (known.address != address || known.profile.as_str() != w.profile)
            {
                return Err(Problem::at(
                    "mailbox",
                    format!(
                        "`{mailbox}` is already registered; a mailbox is registered once (map, approve or test it instead)"
                    ),
                ));
            }
            let profile = ProfileId::new(nonempty(w.profile, "profile")?);
            let Some(info) = org.profiles.get(&profile) else {
                return Err(Problem::at(
                    "profile",
                    format!(
                        "unknown server profile `{profile}`; register it first (a profile_registered line)"
                    ),
                ));
            };
            let Some(org_id) = org.id.clone() else {
                return Err(Problem::line("the organization has no id"));
            };
            Event::MailboxRegistered(MailboxRegistered {
                mailbox,
                org: org_id,
                address,
                profile,
                server_type: info.server_type,
            })
        }
        "mailbox_mapped" => {
            let w: MailboxMappedWire = wire(rest, "")?;
            let mailbox = known_mailbox(w.mailbox, org)?;
            let user = user(w.user, "user")?;
            if !org.users.contains_key(&user) {
                return Err(Problem::at(
                    "user",
                    format!("unknown user `{user}`; register it first (a user_registered line)"),
                ));
            }
            Event::MailboxMapped(MailboxMapped { mailbox, user })
        }
        "address_approved" => {
            let w: AddressApprovedWire = wire(rest, "")?;
            Event::AddressApproved(AddressApproved {
                mailbox: known_mailbox(w.mailbox, org)?,
                approved: w.approved,
            })
        }
        "mailbox_tested" => {
            let w: MailboxTestedWire = wire(rest, "")?;
            let act_org_marker = w
                .act_org
                .map(|o| nonempty(o, "act_org").map(OrgId::new))
                .transpose()?;
            Event::MailboxTested(MailboxTested {
                mailbox: known_mailbox(w.mailbox, org)?,
                incoming: w.incoming.into(),
                outgoing: w.outgoing.into(),
                act: w.act.into(),
                act_org_marker,
                override_other_org: w.override_other_org,
            })
        }
        "disable_requested" => {
            let w: DisableWire = wire(rest, "")?;
            Event::DisableRequested(DisableRequested {
                mailbox: known_mailbox(w.mailbox, org)?,
                workload: w.workload.into(),
                by: nonempty(w.by, "by")?,
            })
        }
        "deletes_approved" => {
            let w: DeletesApprovedWire = wire(rest, "")?;
            Event::DeletesApproved(DeletesApproved {
                mailbox: known_mailbox(w.mailbox, org)?,
                by: nonempty(w.by, "by")?,
            })
        }
        "setting_changed" => {
            let w: SettingWire = wire(rest, "")?;
            let value = match w.value {
                Value::String(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(Problem::at(
                        "value",
                        format!("expected a string, a boolean or a number, got {other}"),
                    ));
                }
            };
            let mut probe = org.settings.clone();
            if let Err(e) = probe.set(&w.key, &value) {
                let field = match e {
                    ledgersync_domain::settings::SettingsError::UnknownKey { .. } => "key",
                    _ => "value",
                };
                return Err(Problem::at(field, e.to_string()));
            }
            Event::SettingChanged(SettingChanged { key: w.key, value })
        }
        _ => unreachable!("take_tag only returns known kinds"),
    })
}

// ───────────────────────────── records ─────────────────────────────

const ENTITIES: [&str; 4] = ["appointment", "contact", "task", "email"];

/// A text field at `path` (named `key`) longer than its limit.
fn oversized(value: &Value, key: &str, path: &str, limits: &Limits) -> Result<(), Problem> {
    match value {
        Value::String(text) => {
            let (limit, setting) = limits.of_field(key);
            if text.len() as u64 > limit {
                return Err(Problem::at(
                    path,
                    format!(
                        "is {} bytes, more than the limit of {limit} ({setting} in the [limits] \
                         table of the configuration); shorten it or raise the limit",
                        text.len()
                    ),
                ));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                oversized(v, key, &format!("{path}[{i}]"), limits)?;
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                oversized(v, k, &format!("{path}.{k}"), limits)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn record(value: Value, prefix: &str) -> Result<Record, Problem> {
    let Value::Object(mut map) = value else {
        return Err(Problem::at(
            prefix,
            "expected an object with an \"entity\" and the row's fields",
        ));
    };
    let entity = take_tag(&mut map, "entity", &ENTITIES, prefix)?;
    let rest = Value::Object(map);
    let f = |name: &str| format!("{prefix}.{name}");
    let (common, body) = match entity.as_str() {
        "appointment" => {
            let w: AppointmentWire = wire(rest, prefix)?;
            let start = time(&w.start, &f("start"))?;
            let end = time(&w.end, &f("end"))?;
            if end < start {
                return Err(Problem::at(
                    f("end"),
                    format!("{} is before the start {}", w.end, w.start),
                ));
            }
            let body = Appointment {
                subject: w.subject,
                organizer: w.organizer.map(|p| party(p, &f("organizer"))).transpose()?,
                required: parties(w.required, &f("required"))?,
                optional: parties(w.optional, &f("optional"))?,
                start,
                end,
                all_day: w.all_day,
                location: w.location,
                body: w.body,
                state: w.state.into(),
                show_as: w.show_as.into(),
                priority: w.priority.into(),
                regarding: regarding(w.regarding, &f("regarding"))?,
                service: w.service,
                recurrence: w.recurrence,
            };
            (
                Common::of(w.id, w.owner, w.version),
                RecordBody::Appointment(body),
            )
        }
        "contact" => {
            let w: ContactWire = wire(rest, prefix)?;
            let email = if w.email.is_empty() {
                w.email
            } else {
                address(w.email, &f("email"))?
            };
            let body = Contact {
                full_name: nonempty(w.full_name, &f("full_name"))?,
                email,
                phone: w.phone,
                company: w.company,
                state: w.state.into(),
            };
            (
                Common::of(w.id, w.owner, w.version),
                RecordBody::Contact(body),
            )
        }
        "task" => {
            let w: TaskWire = wire(rest, prefix)?;
            let opt = |t: &Option<String>, name: &str| -> Result<Option<Timestamp>, Problem> {
                t.as_deref().map(|t| time(t, &f(name))).transpose()
            };
            if w.percent_complete > 100 {
                return Err(Problem::at(
                    f("percent_complete"),
                    format!("must be between 0 and 100, got {}", w.percent_complete),
                ));
            }
            let body = Task {
                kind: w.task_kind.into(),
                subject: w.subject,
                body: w.body,
                start: opt(&w.start, "start")?,
                due: opt(&w.due, "due")?,
                actual_start: opt(&w.actual_start, "actual_start")?,
                actual_end: opt(&w.actual_end, "actual_end")?,
                percent_complete: w.percent_complete,
                state: w.state.into(),
                priority: w.priority.into(),
                regarding: regarding(w.regarding, &f("regarding"))?,
            };
            (Common::of(w.id, w.owner, w.version), RecordBody::Task(body))
        }
        "email" => {
            let w: EmailWire = wire(rest, prefix)?;
            let body = Email {
                subject: w.subject,
                from: party(w.from, &f("from"))?,
                to: parties(w.to, &f("to"))?,
                message_id: w.message_id,
                regarding: regarding(w.regarding, &f("regarding"))?,
                state: w.state.into(),
                cc: parties(w.cc, &f("cc"))?,
                text: w.text,
                html: w.html,
                submitted_by: w
                    .submitted_by
                    .map(|u| user(u, &f("submitted_by")))
                    .transpose()?,
                tracking_token: w.tracking_token.filter(|t| !t.trim().is_empty()),
            };
            (
                Common::of(w.id, w.owner, w.version),
                RecordBody::Email(body),
            )
        }
        _ => unreachable!("take_tag only returns known entities"),
    };
    if common.version == 0 {
        return Err(Problem::at(
            f("version"),
            "must be at least 1 (the CRM row version, increasing on every change)",
        ));
    }
    Ok(Record {
        id: RecordId::new(nonempty(common.id, &f("id"))?),
        owner: user(common.owner, &f("owner"))?,
        version: common.version,
        body,
    })
}

fn party(p: PartyWire, field: &str) -> Result<Party, Problem> {
    Ok(Party {
        user: p
            .user
            .map(|u| user(u, &format!("{field}.user")))
            .transpose()?,
        email: address(p.email, &format!("{field}.email"))?,
        name: p.name,
    })
}

fn parties(list: Vec<PartyWire>, field: &str) -> Result<Vec<Party>, Problem> {
    list.into_iter()
        .enumerate()
        .map(|(i, p)| party(p, &format!("{field}[{i}]")))
        .collect()
}

fn regarding(r: Option<RefWire>, field: &str) -> Result<Option<RecordRef>, Problem> {
    r.map(|r| {
        Ok(RecordRef {
            table: nonempty(r.table, &format!("{field}.table"))?,
            id: RecordId::new(nonempty(r.id, &format!("{field}.id"))?),
            name: r.name,
        })
    })
    .transpose()
}

fn filter_changed(w: FilterChangedWire) -> Result<Event, Problem> {
    let user = user(w.user, "user")?;
    let entity: Entity = w.entity.into();
    let mut filters: Vec<SyncFilter> = Vec::with_capacity(w.filters.len());
    for (i, f) in w.filters.into_iter().enumerate() {
        let id = FilterId::new(nonempty(f.id, &format!("filters[{i}].id"))?);
        if filters.iter().any(|g| g.id == id) {
            return Err(Problem::at(
                format!("filters[{i}].id"),
                format!("`{id}` appears twice; filter ids are unique per user and table"),
            ));
        }
        CompiledFilter::parse(entity, &f.expr).map_err(|e| {
            Problem::at(
                format!("filters[{i}].expr"),
                format!(
                    "`{}` does not compile for {entity}: at column {}: {} (the language is in docs/filters.md)",
                    e.text, e.column, e.message
                ),
            )
        })?;
        filters.push(SyncFilter {
            id,
            name: f.name,
            entity,
            enabled: f.enabled,
            expr: f.expr,
        });
    }
    Ok(Event::FilterChanged(FilterChanged {
        user,
        entity,
        filters,
    }))
}

// ───────────────────────────── field helpers ─────────────────────────────

/// Deserializes `value` into a wire struct; an error names the field path under `prefix`.
fn wire<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, Problem> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.is_empty(), path == ".") {
            (true, true) => None,
            (true, false) => Some(path),
            (false, true) => Some(prefix.to_string()),
            (false, false) => Some(format!("{prefix}.{path}")),
        };
        Problem {
            field,
            message: e.into_inner().to_string(),
        }
    })
}

/// Removes the tag field `name` from an object and checks it is one of `allowed`.
fn take_tag(
    map: &mut Map<String, Value>,
    name: &str,
    allowed: &[&str],
    prefix: &str,
) -> Result<String, Problem> {
    let field = if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    };
    let expected = allowed.join(", ");
    match map.remove(name) {
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(s),
        Some(Value::String(s)) => Err(Problem::at(
            field,
            format!("unknown value \"{s}\"; expected one of: {expected}"),
        )),
        Some(other) => Err(Problem::at(
            field,
            format!("expected a string, one of: {expected}; got {other}"),
        )),
        None => Err(Problem::at(
            field,
            format!("missing; expected one of: {expected}"),
        )),
    }
}

fn nonempty(s: String, field: &str) -> Result<String, Problem> {
    if s.trim().is_empty() {
        Err(Problem::at(
            field,
            "is empty; expected a non-empty id or name",
        ))
    } else {
        Ok(s)
    }
}

fn user(s: String, field: &str) -> Result<UserId, Problem> {
    nonempty(s, field).map(UserId::new)
}

/// An email address by the domain's grammar (RFC 5321/5322 `addr-spec`, no path separators):
/// one a mail server could never carry out is refused at the door.
fn address(s: String, field: &str) -> Result<String, Problem> {
    match ledgersync_domain::address::check(&s) {
        Ok(()) => Ok(s),
        Err(why) => Err(Problem::at(
            field,
            format!("\"{s}\" is not an email address: it {why} (expected local-part@domain)"),
        )),
    }
}

fn known_mailbox(s: String, org: &OrgState) -> Result<MailboxId, Problem> {
    let id = MailboxId::new(nonempty(s, "mailbox")?);
    if org.mailboxes.contains_key(&id) {
        Ok(id)
    } else {
        Err(Problem::at(
            "mailbox",
            format!("unknown mailbox `{id}`; register it first (a mailbox_registered line)"),
        ))
    }
}

/// Parses RFC 3339 text (`2026-12-01T09:30:00Z`, `2026-12-01T10:30:00+01:00`).
pub fn parse_time(text: &str) -> Option<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| Timestamp(t.timestamp_millis()))
}

fn time(text: &str, field: &str) -> Result<Timestamp, Problem> {
    parse_time(text).ok_or_else(|| {
        Problem::at(
            field,
            format!(
                "\"{text}\" is not an RFC 3339 time (expected e.g. \"2026-12-01T09:30:00Z\" or \
                 \"2026-12-01T10:30:00+01:00\")"
            ),
        )
    })
}

/// serde_json appends " at line L column C"; the line is always 1 here.
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |i| &message[..i])
}
