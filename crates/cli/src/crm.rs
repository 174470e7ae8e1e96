//! `ledgersync crm apply FILE.jsonl`: CRM changes in, one JSON object a line
//! (`docs/crm-changes.md`). The whole file is checked first; one bad line and nothing is applied.

use crate::commands::journal_dir;
use crate::config::Config;
use anyhow::{Context as _, Result, bail};
use ledgersync_domain::records::Entity;
use ledgersync_domain::{Event, OrgId, OrgState, RuleId};
use ledgersync_engine::describe::{describe, summarize};
use ledgersync_engine::ingress::{Change, parse_changes};
use ledgersync_engine::{Engine, Processed, SystemClock};
use ledgersync_journal::{Journal, JournalOptions};
use serde_json::{Value, json};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

fn require_data(data: Option<PathBuf>) -> Result<PathBuf> {
    data.context(
        "no data directory: pass --data DIR (or set LEDGERSYNC_DATA); `crm apply` creates the \
         journal there when the directory is empty",
    )
}

fn has_journal(data: &Path) -> bool {
    journal_dir(data).exists()
}

/// Opens the engine on the journal of an existing data directory, for the configured
/// organization (refusing a journal that belongs to another one).
pub fn open_engine(data: Option<PathBuf>, config: &Config) -> Result<Engine> {
    let journal = crate::commands::open_existing(data)?;
    engine_on(journal, config)
}

fn engine_on(journal: Arc<dyn Journal>, config: &Config) -> Result<Engine> {
    let org = OrgId::new(config.org.clone());
    let ours = format!("org/{}", config.org);
    let others: Vec<String> = journal
        .streams()?
        .into_iter()
        .filter_map(|(s, _)| {
            s.as_str()
                .strip_prefix("org/")
                .filter(|_| s.as_str() != ours)
                .map(str::to_string)
        })
        .collect();
    if !others.is_empty() && !journal.streams()?.iter().any(|(s, _)| s.as_str() == ours) {
        bail!(
            "this journal belongs to organization `{}`, not `{}`; pass a --config whose \
             `organization.id` is `{}`",
            others.join("`, `"),
            config.org,
            others[0]
        );
    }
    let engine = Engine::open(journal, org, Arc::new(SystemClock))?
        .with_snapshot_every(config.snapshot_every);
    Ok(engine)
}

pub fn apply(data: Option<PathBuf>, file: &Path, config: &Config, json: bool) -> Result<ExitCode> {
    let data = require_data(data)?;
    let (name, text) = read_input(file)?;
    let existing = has_journal(&data);
    if !existing
        && data.exists()
        && data
            .read_dir()
            .map(|mut r| r.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} is neither empty nor a ledgersync data directory (no journal/ inside); pass an \
             empty directory or one that `demo` or `crm apply` created",
            data.display()
        );
    }
    // Validate against the organization as it stands (a fresh one for a new directory) before
    // anything is created or appended.
    let mut engine = if existing {
        Some(open_engine(Some(data.clone()), config)?)
    } else {
        None
    };
    let fresh = OrgState::new(OrgId::new(config.org.clone()));
    let org = engine.as_ref().map_or(&fresh, |e| e.org());
    let changes = match parse_changes(&text, org) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}", e.render(&name));
            }
            eprintln!(
                "{} bad line(s) in {name}; nothing was applied. The format is in docs/crm-changes.md.",
                errors.len()
            );
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"file": name, "applied": 0, "errors": errors})
                    )?
                );
            }
            return Ok(ExitCode::from(2));
        }
    };
    let mut engine = match engine.take() {
        Some(e) => e,
        None => {
            std::fs::create_dir_all(&data)
                .with_context(|| format!("creating {}", data.display()))?;
            let mut options = JournalOptions::with_backend(config.backend);
            options.max_batch_events = config.max_batch_events;
            let journal = ledgersync_journal::open(&journal_dir(&data), &options)
                .with_context(|| format!("creating the journal in {}", data.display()))?;
            engine_on(journal, config)?
        }
    };
    let mut reports = Vec::with_capacity(changes.len());
    for (done, change) in changes.iter().enumerate() {
        let processed = engine.crm(change.event.clone()).with_context(|| {
            format!(
                "{name}:{}: could not be applied; lines before it ({done} of {}) were applied",
                change.line,
                changes.len()
            )
        })?;
        let report = line_report(change, &processed);
        if !json {
            print!("{}", render_line(&name, &report));
        }
        reports.push(report);
    }
    let events = engine.journal().last_position()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "file": name,
                "data": data,
                "organization": config.org,
                "applied": reports.len(),
                "journal_events": events,
                "changes": reports,
            }))?
        );
    } else {
        println!(
            "applied {} change(s) from {name} to {} (organization {}); the journal holds {events} events",
            reports.len(),
            data.display(),
            config.org
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(file: &Path) -> Result<(String, String)> {
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
                "summary": summarize(&decided, entity),
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
