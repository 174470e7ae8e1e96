//! `ledgersync crm pending`: the open CRM commands of every mailbox — what the CRM is asked to
//! do, each with its idempotency key (`docs/crm-commands.md`; one JSON Schema per command type
//! in `docs/schemas/`).

use crate::ctx::Ctx;
use crate::mailbox::rfc3339;
use anyhow::Result;
use ledgersync_domain::crm::{CrmCommand, commands};
use ledgersync_engine::command_json::command_json;
use ledgersync_engine::{Clock, SystemClock};
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
