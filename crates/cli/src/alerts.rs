//! `ledgersync alerts`: the alerts view of `<data>/projections.redb` (R81, docs/projections.md):
//! every alert of the mailboxes and of the server profiles (R14) still within
//! `alert_retention_days`, oldest first.

use crate::ctx::Ctx;
use anyhow::{Context as _, Result};
use ledgersync_domain::MailboxId;
use ledgersync_domain::event::AlertLevel;
use ledgersync_engine::projection::Alert;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::process::ExitCode;

/// `--level`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Errors.
    Error,
    /// Warnings.
    Warning,
    /// Information.
    Information,
}

impl From<Level> for AlertLevel {
    fn from(l: Level) -> Self {
        match l {
            Level::Error => AlertLevel::Error,
            Level::Warning => AlertLevel::Warning,
            Level::Information => AlertLevel::Information,
        }
    }
}

/// Catches the projection up with the journal, then prints the alerts (of one mailbox, of one
/// level).
pub fn run(ctx: &mut Ctx, mailbox: Option<String>, level: Option<Level>) -> Result<ExitCode> {
    let mailbox = mailbox.map(MailboxId::new);
    let level = level.map(AlertLevel::from);
    let (done, alerts, health) = ctx.projection(|projection, journal| {
        let health = crate::mailbox::journal_health(journal.commit_stats());
        let done = projection.catch_up(journal).with_context(|| {
            // A full disk fails the projection too: say that the journal is the cause.
            match crate::mailbox::journal_line(&health) {
                Some(line) => format!("catching the projection up with the journal ({line})"),
                None => "catching the projection up with the journal".to_string(),
            }
        })?;
        Ok((done, projection.alerts(mailbox.as_ref(), level)?, health))
    })?;
    if ctx.json {
        let out = json!({
            "journal": health,
            "checkpoint": done.checkpoint,
            "folded": done.events,
            "alerts": alerts.iter().map(alert_json).collect::<Vec<_>>(),
        });
        writeln!(ctx.out, "{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        // A journal that cannot write cannot record an alert about it: it is shown here.
        if let Some(line) = crate::mailbox::journal_line(&health) {
            writeln!(ctx.out, "{line}")?;
        }
        write!(ctx.out, "{}", render(done.checkpoint, &alerts))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One alert as JSON: the rule as `"R10"`, the level as `--level` names it.
fn alert_json(a: &Alert) -> Value {
    json!({
        "position": a.position,
        "at": a.at.0,
        "level": level_name(a.level),
        "rule": a.rule.map(|r| r.to_string()),
        "text": a.text,
        "notify": a.notify,
        "mailbox": a.mailbox,
        "profile": a.profile,
    })
}

fn level_name(l: AlertLevel) -> &'static str {
    match l {
        AlertLevel::Error => "error",
        AlertLevel::Warning => "warning",
        AlertLevel::Information => "information",
    }
}

fn render(checkpoint: u64, alerts: &[Alert]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "alerts (projection at journal position {checkpoint}): {}",
        alerts.len()
    );
    if alerts.is_empty() {
        let _ = writeln!(
            out,
            "(none within the alert retention, `alert_retention_days`, for this selection)"
        );
    }
    for a in alerts {
        let about = match (&a.mailbox, &a.profile) {
            (Some(m), _) => format!("mailbox {m}"),
            (None, Some(p)) => format!("profile {p}"),
            (None, None) => "organization".to_string(),
        };
        let rule = a.rule.map(|r| r.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{}  {:<11}  {:<3}  {about}: {}",
            a.at,
            level_name(a.level),
            rule,
            a.text
        );
        if !a.notify.is_empty() {
            let _ = writeln!(out, "    notify: {}", a.notify.join(", "));
        }
    }
    out
}
