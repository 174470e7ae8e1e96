//! `ledgersync crm pending`: the open CRM commands of every mailbox — what the CRM is asked to
//! do, each with its idempotency key (`docs/crm-commands.md`; one JSON Schema per command type
//! in `docs/schemas/`).

use crate::ctx::Ctx;
use crate::mailbox::rfc3339;
use anyhow::Result;
use ledgersync_domain::crm::{CrmCommand, commands};
use ledgersync_domain::event::RemoteFields;
use ledgersync_domain::records::ShowAs;
use ledgersync_engine::{Clock, SystemClock};
use serde_json::{Value, json};
use std::process::ExitCode;

/// Lists the open CRM commands: one JSON object a line with `--json`, else text.
pub fn pending(ctx: &mut Ctx) -> Result<ExitCode> {
    let mut recorder = ctx.recorder(false)?;
    let engine = recorder.engine()?;
    let now = SystemClock.now();
    let open: Vec<CrmCommand> = engine
        .mailbox_ids()
        .filter_map(|m| engine.mailbox(m))
        .flat_map(|state| commands(state, now))
        .collect();
    let out = &mut *ctx.out;
    if ctx.json {
        for c in &open {
            writeln!(out, "{}", serde_json::to_string(&command_json(c))?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if open.is_empty() {
        writeln!(out, "no open CRM commands")?;
        return Ok(ExitCode::SUCCESS);
    }
    for c in &open {
        writeln!(out, "{}", render(c))?;
    }
    writeln!(
        out,
        "{} open CRM command(s); answer each with a command_result line (`ledgersync crm apply`, \
         docs/crm-commands.md)",
        open.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn show_as(s: ShowAs) -> &'static str {
    match s {
        ShowAs::Busy => "busy",
        ShowAs::Free => "free",
        ShowAs::Tentative => "tentative",
        ShowAs::OutOfOffice => "out_of_office",
    }
}

/// The mail-side fields of a command, by table (`null` for a delete).
fn fields_json(c: &CrmCommand) -> Value {
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

fn render(c: &CrmCommand) -> String {
    let row = match c.version {
        Some(v) => format!("row {} version {v}", c.record),
        None => format!("new row (proposed id {})", c.record),
    };
    let mut text = format!(
        "{}\n    {} ({}): {} \"{}\" — {}",
        c.key,
        c.command.name(),
        c.rule,
        c.command.phrase(),
        c.title,
        row
    );
    if let Some(remote) = &c.remote {
        text.push_str(&format!(", from server item {remote}"));
    }
    if let Some(e) = &c.last_error {
        text.push_str(&format!(
            "\n    attempt {} failed: {} {}",
            c.attempts, e.code, e.message
        ));
    }
    if let Some(at) = c.retry_at.filter(|_| !c.due) {
        text.push_str(&format!(
            "\n    waiting: not to be tried again before {}",
            rfc3339(at)
        ));
    }
    text
}
