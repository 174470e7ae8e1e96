//! A CRM command as JSON: one line of `ledgersync crm pending --json`, and the body of a
//! message on the CRM command queue (`docs/crm-commands.md`; one JSON Schema per command type
//! in `docs/schemas/`). The field names are stable.

use ledgersync_domain::Timestamp;
use ledgersync_domain::crm::CrmCommand;
use ledgersync_domain::crm::EmailCommand;
use ledgersync_domain::event::{CommandType, RemoteFields, TrackedBy};
use ledgersync_domain::records::ShowAs;
use serde_json::{Value, json};

/// RFC 3339 in UTC, to the second.
fn rfc3339(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(t.0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

fn show_as(s: ShowAs) -> &'static str {
    match s {
        ShowAs::Busy => "busy",
        ShowAs::Free => "free",
        ShowAs::Tentative => "tentative",
        ShowAs::OutOfOffice => "out_of_office",
    }
}

/// How an email correlated or was tracked by hand, as `track_email` names it.
fn tracked_by(t: TrackedBy) -> &'static str {
    match t {
        TrackedBy::Filter => "filter",
        TrackedBy::Category => "category",
        TrackedBy::Folder => "folder",
        TrackedBy::Token => "token",
        TrackedBy::InReplyTo => "in_reply_to",
        TrackedBy::Conversation => "conversation",
        TrackedBy::SmartMatch => "smart_match",
        TrackedBy::AddIn => "add_in",
    }
}

/// The email of a `track_email` command: its headers and what was decided about it.
fn email_json(e: &EmailCommand) -> Value {
    json!({
        "message_id": e.message_id,
        "subject": e.subject,
        "from": e.from,
        "to": e.to,
        "cc": e.cc,
        "received": rfc3339(e.received),
        "accepting": e.accepting.as_str(),
        "receiving_mailbox": e.receiving_mailbox.as_str(),
        "regarding": e.regarding.as_ref().map(|r| json!({
            "table": r.table, "id": r.id.as_str(), "name": r.name,
        })),
        "correlated": e.correlated.as_ref().map(|r| r.as_str()),
        "correlation": e.correlation.map(tracked_by),
        "parent": e.parent,
        "sender": e.sender.as_ref().map(|r| r.as_str()),
        "recipients": e.recipients.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "create": e.create.map(|c| c.to_string()),
        "owner": e.owner.as_ref().map(|r| r.as_str()),
    })
}

/// The mail-side fields of a command, by table (`null` for a delete).
fn fields_json(c: &CrmCommand) -> Value {
    if let Some(e) = &c.email {
        return email_json(e);
    }
    // R76: the email sent, as the mail server has it.
    if c.command == CommandType::MarkEmailSent {
        return json!({
            "message_id": c.remote.as_ref().map(|r| r.as_str()),
            "subject": c.title,
        });
    }
    match &c.fields {
        None => Value::Null,
        Some(RemoteFields::Appointment {
            subject,
            organizer,
            start,
            end,
            show_as: free_busy,
        }) => json!({
            "subject": subject,
            "organizer": organizer,
            "start": rfc3339(*start),
            "end": rfc3339(*end),
            "show_as": show_as(*free_busy),
        }),
        Some(RemoteFields::Contact { full_name, email }) => json!({
            "full_name": full_name,
            "email": email,
        }),
        Some(RemoteFields::Task {
            subject,
            percent_complete,
            due,
        }) => json!({
            "subject": subject,
            "percent_complete": percent_complete,
            "due": due.map(rfc3339),
            "actual_start": c.actual_start.map(rfc3339),
        }),
    }
}

/// One command as a JSON object (the field names are stable; `docs/crm-commands.md`).
pub fn command_json(c: &CrmCommand) -> Value {
    json!({
        "key": c.key.to_string(),
        "command": c.command.name(),
        "rule": c.rule.to_string(),
        "mailbox": c.key.mailbox.as_str(),
        "intent": c.key.intent.to_string(),
        "entity": c.entity.name(),
        "record": c.record.as_str(),
        "version": c.version,
        "remote": c.remote.as_ref().map(|r| r.as_str()),
        "title": c.title,
        "fields": fields_json(c),
        "attempts": c.attempts,
        "last_error": c.last_error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
        "retry_at": c.retry_at.map(rfc3339),
        "due": c.due,
    })
}
