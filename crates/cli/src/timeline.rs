//! `ledgersync timeline` and `ledgersync projections rebuild`: the CRM timeline views of
//! `<data>/projections.redb` (docs/projections.md).

use crate::ctx::Ctx;
use anyhow::{Context as _, Result};
use ledgersync_domain::state::LinkStatus;
use ledgersync_domain::{RecordId, UserId};
use ledgersync_engine::projection::Activity;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

/// Whose timeline.
#[derive(Debug)]
pub enum Subject {
    /// The activities regarding a CRM row (and the row itself when it is an activity).
    Record(String),
    /// A user's activities: owned, organized or attended.
    User(String),
}

/// Catches the projection up with the journal, then prints the timeline.
pub fn timeline(ctx: &mut Ctx, subject: Subject) -> Result<ExitCode> {
    let (done, activities) = ctx.projection(|projection, journal| {
        let done = projection
            .catch_up(journal)
            .context("catching the projection up with the journal")?;
        let activities = match &subject {
            Subject::Record(r) => projection.timeline_of_record(&RecordId::new(r.as_str()))?,
            Subject::User(u) => projection.timeline_of_user(&UserId::new(u.as_str()))?,
        };
        Ok((done, activities))
    })?;
    let (kind, id) = match &subject {
        Subject::Record(r) => ("record", r),
        Subject::User(u) => ("user", u),
    };
    if ctx.json {
        let out = json!({
            kind: id,
            "checkpoint": done.checkpoint,
            "folded": done.events,
            "activities": activities.iter().map(activity_json).collect::<Vec<_>>(),
        });
        writeln!(ctx.out, "{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        let label = match &subject {
            Subject::Record(r) => r.clone(),
            Subject::User(u) => format!("user {u}"),
        };
        write!(ctx.out, "{}", render(&label, done.checkpoint, &activities))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Drops the projection and folds the whole journal again.
pub fn rebuild(ctx: &mut Ctx) -> Result<ExitCode> {
    let started = Instant::now();
    let (done, path) = ctx.projection(|projection, journal| {
        let done = projection
            .rebuild(journal)
            .context("rebuilding the projection from the journal")?;
        Ok((done, projection.path().display().to_string()))
    })?;
    let elapsed = started.elapsed();
    if ctx.json {
        let out = json!({
            "path": path,
            "events": done.events,
            "transactions": done.pages,
            "checkpoint": done.checkpoint,
            "millis": elapsed.as_millis() as u64,
        });
        writeln!(ctx.out, "{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        writeln!(
            ctx.out,
            "rebuilt {path}: {} events folded in {:.3} s ({} transactions), checkpoint at position {}",
            done.events,
            elapsed.as_secs_f64(),
            done.pages,
            done.checkpoint
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn status_name(s: Option<LinkStatus>) -> &'static str {
    match s {
        Some(LinkStatus::Creating) => "creating",
        Some(LinkStatus::Linked) => "linked",
        Some(LinkStatus::Deleting) => "deleting",
        Some(LinkStatus::Unlinked) => "unlinked",
        Some(LinkStatus::Deleted) => "deleted",
        None => "not synced",
    }
}

fn render(label: &str, checkpoint: u64, activities: &[Activity]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "timeline of {label} (projection at journal position {checkpoint}): {} activit{}",
        activities.len(),
        if activities.len() == 1 { "y" } else { "ies" }
    );
    if activities.is_empty() {
        let _ = writeln!(
            out,
            "(no appointment, task or email with that id, regarding it or involving that user)"
        );
    }
    for a in activities {
        let mut notes = vec![format!("owner {}", a.owner)];
        if let Some(r) = &a.regarding {
            notes.push(format!("regarding {} \"{}\" ({})", r.table, r.name, r.id));
        }
        if a.deleted_in_crm {
            notes.push("deleted in the CRM".into());
        }
        let _ = writeln!(
            out,
            "{}  {} \"{}\"  {}  ({})",
            a.at,
            a.entity,
            a.title,
            a.record,
            notes.join("; ")
        );
        for (mailbox, sync) in &a.mailboxes {
            let mut line = format!(
                "    {:<12} {:<10}",
                mailbox.as_str(),
                status_name(sync.status)
            );
            if let Some(d) = &sync.last_decision {
                let rules: Vec<String> = d.rules.iter().map(|r| r.to_string()).collect();
                let _ = write!(line, " {}: {} ({})", rules.join(", "), d.summary, d.at);
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    out
}

fn activity_json(a: &Activity) -> Value {
    let mailboxes: serde_json::Map<String, Value> = a
        .mailboxes
        .iter()
        .map(|(m, s)| {
            let last = s.last_decision.as_ref().map(|d| {
                json!({
                    "rules": d.rules.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                    "summary": d.summary,
                    "reason": d.reason,
                    "at": d.at.to_string(),
                    "position": d.position,
                })
            });
            (
                m.to_string(),
                json!({
                    "status": s.status.map(|_| status_name(s.status)),
                    "remote": s.remote.as_ref().map(|r| r.to_string()),
                    "last_decision": last,
                }),
            )
        })
        .collect();
    json!({
        "record": a.record.to_string(),
        "entity": a.entity.name(),
        "title": a.title,
        "version": a.version,
        "at": a.at.to_string(),
        "regarding": a.regarding.as_ref().map(|r| json!({
            "table": r.table, "id": r.id.to_string(), "name": r.name,
        })),
        "owner": a.owner.to_string(),
        "participants": a.participants.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
        "deleted_in_crm": a.deleted_in_crm,
        "mailboxes": mailboxes,
    })
}
