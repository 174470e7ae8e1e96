//! `ledgersync crm apply FILE.jsonl`: CRM changes in, one JSON object a line
//! (`docs/crm-changes.md`), and the CRM's results of CRM commands among them
//! (`command_result` lines, `docs/crm-commands.md`). The whole file is checked first; one bad
//! line and nothing is applied. `ledgersync crm pending` lists the open CRM commands.

use crate::ctx::{Ctx, journal_dir};
use anyhow::{Context as _, Result, anyhow, bail};
use ledgersync_domain::records::Entity;
use ledgersync_domain::{Event, Limits, OrgId, OrgState, RuleId};
use ledgersync_engine::Processed;
use ledgersync_engine::describe::{ItemFate, Progress, describe, summarize_as};
use ledgersync_engine::ingress::{Change, RESULT_KIND, ResultLine, parse_changes_within};
use ledgersync_engine::org::ROUTING_WINDOW;
use serde_json::{Value, json};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

mod pending;
mod publish;
mod results;

pub use pending::pending;
pub use publish::publish;

/// A line of the file, change or result, to apply in the file's order.
enum Line<'a> {
    Change(&'a Change),
    Result(&'a ResultLine),
}

impl Line<'_> {
    fn number(&self) -> usize {
        match self {
            Line::Change(c) => c.line,
            Line::Result(r) => r.line,
        }
    }
}

pub fn apply(ctx: &mut Ctx, file: &Path) -> Result<ExitCode> {
    let limits = ctx.config.limits;
    let (name, text) = match ctx.input.take() {
        Some(input) => input,
        // Inside the service the client sends the text: the service never opens a file for it.
        None if ctx.live.is_some() => anyhow::bail!(
            "refused: no input was sent for {}; the client reads the file and sends its text",
            file.display()
        ),
        None => read_input(file, &limits)?,
    };
    // Sent by a client over the control socket: the same limit.
    if text.len() as u64 > limits.max_file_bytes {
        bail!(
            "{}",
            too_large(&name, text.len() as u64, limits.max_file_bytes)
        );
    }
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
    // Result lines (the CRM's answers to CRM commands) are read beside the changes, against
    // the mailboxes their keys name; the change lines keep their numbers.
    let fresh = OrgState::new(OrgId::new(ctx.config.org.clone()));
    let split = match recorder.as_mut() {
        Some(r) if text.contains(RESULT_KIND) => {
            let engine = r.engine()?;
            results::split(&text, engine.org(), Some(engine), &limits)
        }
        _ => results::split(&text, &fresh, None, &limits),
    };
    // Checked against the organization where it is held, never copied: it grows with the rows.
    let checked = match (ctx.live, recorder.as_mut()) {
        (Some(live), _) => live
            .runtime
            .block_on(live.service.check_changes(split.changes.clone(), limits))?,
        (None, Some(r)) => parse_changes_within(&split.changes, r.engine()?.org(), &limits),
        (None, None) => parse_changes_within(&split.changes, &fresh, &limits),
    };
    let (changes, mut errors) = match checked {
        Ok(c) => (c, Vec::new()),
        Err(errors) => (Vec::new(), errors),
    };
    errors.extend(split.errors);
    errors.sort_by_key(|e| e.line);
    if !errors.is_empty() {
        for e in &errors {
            writeln!(ctx.err, "{}", e.render(&name))?;
        }
        writeln!(
            ctx.err,
            "{} bad line(s) in {name}; nothing was applied. The format is in docs/crm-changes.md \
             (result lines: docs/crm-commands.md).",
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
    let mut recorder = match recorder.take() {
        Some(r) => r,
        None => ctx.recorder(true)?,
    };
    let total = changes.len() + split.results.len();
    let mut lines: Vec<Line> = changes
        .iter()
        .map(Line::Change)
        .chain(split.results.iter().map(Line::Result))
        .collect();
    lines.sort_by_key(Line::number);
    let mut reports = Vec::with_capacity(total);
    let mut rest = lines.as_slice();
    while let Some(first) = rest.first() {
        let done = reports.len();
        let failed = |line: usize| {
            format!(
                "{name}:{line}: could not be applied; lines before it ({done} of {total}) were applied"
            )
        };
        // A result is recorded in its mailbox; a run of changes, in batches recorded together
        // by a running service (one append each), reported as each batch is done.
        if let Line::Result(r) = first {
            let settled = recorder.settle(&r.result).with_context(|| failed(r.line))?;
            let report = results::report(r, &settled);
            if !ctx.json {
                write!(ctx.out, "{}", render_line(&name, &report))?;
            }
            reports.push(report);
            rest = &rest[1..];
            continue;
        }
        let run = rest
            .iter()
            .take(ROUTING_WINDOW)
            .take_while(|l| matches!(l, Line::Change(_)))
            .count();
        let chunk: Vec<&Change> = rest[..run]
            .iter()
            .filter_map(|l| match l {
                Line::Change(c) => Some(*c),
                Line::Result(_) => None,
            })
            .collect();
        rest = &rest[run..];
        let batch = recorder
            .crm_batch(chunk.iter().map(|c| c.event.clone()).collect())
            .with_context(|| failed(chunk[0].line))?;
        for (change, processed) in chunk.iter().zip(&batch.processed) {
            let report = line_report(change, processed);
            if !ctx.json {
                write!(ctx.out, "{}", render_line(&name, &report))?;
            }
            reports.push(report);
        }
        if let Some((i, e)) = batch.failed {
            let done = reports.len();
            return Err(e.context(format!(
                "{name}:{}: could not be applied; lines before it ({done} of {total}) were applied",
                chunk[i].line,
            )));
        }
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
        let recorded = reports
            .iter()
            .filter(|r| !r["already_recorded"].is_null())
            .count();
        let recorded = if recorded == 0 {
            String::new()
        } else {
            format!(" ({recorded} already recorded, nothing done for them)")
        };
        let results = reports.iter().filter(|r| r["kind"] == RESULT_KIND).count();
        let what = match results {
            0 => format!("{} change(s)", reports.len()),
            n if n == reports.len() => format!("{n} command result(s)"),
            n => format!("{} change(s) and {n} command result(s)", reports.len() - n),
        };
        writeln!(
            ctx.out,
            "applied {what} from {name} to {into} (organization {}){recorded}; the journal holds {events} events",
            ctx.config.org
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `file` (`-`: standard input) as a name for messages and its text: at most
/// `limits.max_file_bytes` (a larger file is refused before it is read, by its size), UTF-8 (a
/// line that is not is named).
pub fn read_input(file: &Path, limits: &Limits) -> Result<(String, String)> {
    let max = limits.max_file_bytes;
    let (name, mut reader): (String, Box<dyn Read>) = if file == Path::new("-") {
        ("stdin".into(), Box::new(std::io::stdin()))
    } else {
        let name = file.display().to_string();
        let f = std::fs::File::open(file)
            .with_context(|| format!("reading CRM changes from {name}"))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len > max {
            bail!("{}", too_large(&name, len, max));
        }
        (name, Box::new(f))
    };
    let mut bytes = Vec::new();
    (&mut reader)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading CRM changes from {name}"))?;
    if bytes.len() as u64 > max {
        bail!("{}", too_large(&name, bytes.len() as u64, max));
    }
    let text = utf8_text(&name, bytes)?;
    Ok((name, text))
}

fn too_large(name: &str, len: u64, max: u64) -> String {
    format!(
        "{name}: {}{len} bytes, more than the limit of {max} (max_file_bytes in the [limits] \
         table of the configuration); nothing was applied: split the file or raise the limit",
        if len > max + 1 { "" } else { "more than " }
    )
}

/// The text of `bytes`, or an error naming the first line that is not UTF-8.
fn utf8_text(name: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = at
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        anyhow!(
            "{name}:{line}: not UTF-8 text (byte {column} of the line); nothing was applied: \
             save the file as UTF-8"
        )
    })
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
        "already_recorded": processed.already_recorded.as_ref().map(|r| r.to_string()),
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
    if let Some(recorded) = r["already_recorded"].as_str() {
        out.push_str(&format!("    → {recorded}\n"));
        return out;
    }
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
