//! `ledgersync crm apply FILE.jsonl`: CRM changes in, one JSON object a line
//! (`docs/crm-changes.md`). The whole file is checked first; one bad line and nothing is applied.

use crate::ctx::{Ctx, journal_dir};
use anyhow::{Context as _, Result};
use ledgersync_domain::records::Entity;
use ledgersync_domain::{Event, OrgId, OrgState, RuleId};
use ledgersync_engine::Processed;
use ledgersync_engine::describe::{ItemFate, Progress, describe, summarize_as};
use ledgersync_engine::ingress::{Change, parse_changes};
use serde_json::{Value, json};
use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

pub fn apply(ctx: &mut Ctx, file: &Path) -> Result<ExitCode> {
    let (name, text) = match ctx.input.take() {
        Some(input) => input,
        None => read_input(file)?,
    };
    // Validate against the organization as it stands (a fresh one for a new directory) before
    // anything is created or appended.
    let mut recorder = match ctx.live {
        Some(_) => Some(ctx.recorder(false)?),
        None => {
            let data = ctx.data_dir()?;
            if journal_dir(&data).exists() {
                Some(ctx.recorder(false)?)
            } else {
                None
            }
        }
    };
    // Checked against the organization where it is held, never copied: it grows with the rows.
    let checked = match (ctx.live, recorder.as_mut()) {
        (Some(live), _) => live
            .runtime
            .block_on(live.service.check_changes(text.clone()))?,
        (None, Some(r)) => parse_changes(&text, r.engine()?.org()),
        (None, None) => parse_changes(&text, &OrgState::new(OrgId::new(ctx.config.org.clone()))),
    };
    let changes = match checked {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                writeln!(ctx.err, "{}", e.render(&name))?;
            }
            writeln!(
                ctx.err,
                "{} bad line(s) in {name}; nothing was applied. The format is in docs/crm-changes.md.",
                errors.len()
            )?;
            if ctx.json {
                writeln!(
                    ctx.out,
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"file": name, "applied": 0, "errors": errors})
                    )?
                )?;
            }
            return Ok(ExitCode::from(2));
        }
    };
    let mut recorder = match recorder.take() {
        Some(r) => r,
        None => ctx.recorder(true)?,
    };
    let mut reports = Vec::with_capacity(changes.len());
    for (done, change) in changes.iter().enumerate() {
        let processed = recorder.crm(change.event.clone()).with_context(|| {
            format!(
                "{name}:{}: could not be applied; lines before it ({done} of {}) were applied",
                change.line,
                changes.len()
            )
        })?;
        let report = line_report(change, &processed);
        if !ctx.json {
            write!(ctx.out, "{}", render_line(&name, &report))?;
        }
        reports.push(report);
    }
    let events = match ctx.live {
        Some(live) => live.service.journal().last_position()?,
        None => recorder.engine()?.journal().last_position()?,
    };
    let data = ctx.data.clone().unwrap_or_default();
    let into = match ctx.live {
        Some(_) => format!("the running service on {}", data.display()),
        None => data.display().to_string(),
    };
    if ctx.json {
        writeln!(
            ctx.out,
            "{}",
            serde_json::to_string_pretty(&json!({
                "file": name,
                "data": data,
                "live": ctx.live.is_some(),
                "organization": ctx.config.org,
                "applied": reports.len(),
                "journal_events": events,
                "changes": reports,
            }))?
        )?;
    } else {
        writeln!(
            ctx.out,
            "applied {} change(s) from {name} to {into} (organization {}); the journal holds {events} events",
            reports.len(),
            ctx.config.org
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `file` (`-`: standard input) as a name for messages and its text.
pub fn read_input(file: &Path) -> Result<(String, String)> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading CRM changes from standard input")?;
        Ok(("stdin".into(), text))
    } else {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading CRM changes from {}", file.display()))?;
        Ok((file.display().to_string(), text))
    }
}

fn entity_of(event: &Event) -> Option<Entity> {
    match event {
        Event::RecordUpserted(p) => Some(p.record.entity()),
        Event::OwnerChanged(p) => Some(p.record.entity()),
        Event::RecordDeleted(p) => Some(p.entity),
        _ => None,
    }
}

/// What one applied change did, per mailbox, as JSON (the text form is rendered from it).
pub fn line_report(change: &Change, processed: &Processed) -> Value {
    json!({
        "line": change.line,
        "kind": change.event.name(),
        "event_id": processed.org_event.map(|id| id.to_string()),
        "description": describe(&change.event),
        "mailboxes": per_mailbox(processed, entity_of(&change.event)),
    })
}

/// The decisions of `processed` grouped by mailbox, with a summary line each.
pub fn per_mailbox(processed: &Processed, entity: Option<Entity>) -> Vec<Value> {
    processed
        .mailboxes
        .iter()
        .map(|m| {
            let decided: Vec<(RuleId, Event)> = processed
                .decisions
                .iter()
                .filter(|d| &d.mailbox == m)
                .map(|d| (d.decision.rule, d.decision.event.clone()))
                .collect();
            let mut rules: Vec<String> = Vec::new();
            for (r, _) in &decided {
                if !rules.contains(&r.to_string()) {
                    rules.push(r.to_string());
                }
            }
            json!({
                "mailbox": m.as_str(),
                // Just decided: every intent waits for the mail server or the CRM.
                "summary": summarize_as(&decided, entity, |_| Progress::Pending, ItemFate::Left),
                "rules": rules,
                "decisions": decided.iter().map(|(r, e)| json!({
                    "rule": r.to_string(),
                    "type": e.name(),
                    "reason": describe(e),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn render_line(name: &str, r: &Value) -> String {
    let mut out = format!(
        "{name}:{}  {}\n",
        r["line"],
        r["description"].as_str().unwrap_or_default()
    );
    let mailboxes = r["mailboxes"].as_array().cloned().unwrap_or_default();
    if mailboxes.is_empty() {
        out.push_str("    → no mailbox (recorded in the organization stream)\n");
    }
    for m in mailboxes {
        let rules: Vec<&str> = m["rules"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let rules = if rules.is_empty() {
            String::new()
        } else {
            format!("  [{}]", rules.join(", "))
        };
        out.push_str(&format!(
            "    → {}: {}{rules}\n",
            m["mailbox"].as_str().unwrap_or_default(),
            m["summary"].as_str().unwrap_or_default()
        ));
    }
    out
}
