//! `ledgersync example`: the example organization of the README's walk-through, as the JSON
//! lines `crm apply` reads (docs/crm-changes.md), with its meeting dated from the day it is
//! printed so the walk-through shows an invitation whatever day it is followed on.
//!
//! A file of CRM changes with fixed dates goes stale: once its meeting is over, R26 rightly
//! sends no invitation for it. The example is therefore printed, not shipped.

use anyhow::{Context as _, Result, anyhow};
use chrono::{DateTime, Duration, NaiveTime, SecondsFormat, Utc};
use ledgersync_domain::{OrgId, OrgState};
use ledgersync_engine::ingress::{parse_changes, render_change};
use serde_json::{Value, json};
use std::io::Write;

/// The example organization: a server profile, two users with approved, tested mailboxes, the
/// "Bike repair" meeting Jayne organizes with Paul and a customer, and two of Paul's contacts.
/// The meeting starts at 09:30 UTC on the day after `now` and lasts an hour.
pub fn changes(now: DateTime<Utc>) -> Vec<Value> {
    let day = (now + Duration::days(1)).date_naive();
    let start = day
        .and_time(NaiveTime::from_hms_opt(9, 30, 0).expect("09:30"))
        .and_utc();
    changes_at(start)
}

/// The example organization with its meeting starting at `start`.
pub fn changes_at(start: DateTime<Utc>) -> Vec<Value> {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut lines = vec![
        json!({"kind": "profile_registered", "profile": "groupware", "name": "Serenity groupware", "server_type": "groupware", "max_connections": 10}),
    ];
    let users = [("jayne", "Jayne Cobb"), ("paul", "Paul Blart")];
    for (user, name) in users {
        lines.push(json!({"kind": "user_registered", "user": user, "name": name, "email": format!("{user}@serenity.example")}));
    }
    for (user, _) in users {
        lines.push(json!({"kind": "mailbox_registered", "mailbox": format!("mbx-{user}"), "address": format!("{user}@serenity.example"), "profile": "groupware"}));
    }
    for (user, _) in users {
        lines.push(
            json!({"kind": "mailbox_mapped", "mailbox": format!("mbx-{user}"), "user": user}),
        );
    }
    for (user, _) in users {
        lines.push(
            json!({"kind": "address_approved", "mailbox": format!("mbx-{user}"), "approved": true}),
        );
    }
    for (user, _) in users {
        lines.push(json!({"kind": "mailbox_tested", "mailbox": format!("mbx-{user}"), "incoming": "success", "outgoing": "success", "act": "success"}));
    }
    lines.push(json!({"kind": "record_upserted", "record": {
        "entity": "appointment", "id": "apt-bike-repair", "owner": "jayne", "version": 1,
        "subject": "Bike repair",
        "organizer": {"user": "jayne", "email": "jayne@serenity.example", "name": "Jayne Cobb"},
        "required": [
            {"user": "paul", "email": "paul@serenity.example", "name": "Paul Blart"},
            {"email": "zoe@customer.example", "name": "Zoe Washburne"}
        ],
        "optional": [],
        "start": time(start), "end": time(start + Duration::hours(1)),
        "all_day": false, "location": "Garage", "body": "Bring the bike",
        "state": "scheduled", "show_as": "busy", "priority": "normal",
        "regarding": {"table": "account", "id": "acc-customer", "name": "Customer Inc."},
        "service": false
    }}));
    lines.push(json!({"kind": "record_upserted", "record": {"entity": "contact", "id": "con-linda-park", "owner": "paul", "version": 1, "full_name": "Linda Park", "email": "linda@customer.example", "phone": "+1 555 0100", "company": "Customer Inc.", "state": "active"}}));
    lines.push(json!({"kind": "record_upserted", "record": {"entity": "contact", "id": "con-river-tam", "owner": "paul", "version": 1, "full_name": "River Tam", "email": "river@customer.example", "company": "Customer Inc.", "state": "active"}}));
    lines
}

/// Prints the example, one change a line, to `out`. `start` (RFC 3339) overrides the meeting's
/// start.
pub fn run(out: &mut dyn Write, start: Option<&str>) -> Result<()> {
    let lines = match start {
        Some(text) => {
            let start = DateTime::parse_from_rfc3339(text)
                .with_context(|| {
                    format!(
                        "--start {text:?} is not an RFC 3339 time (e.g. \"2027-01-15T09:30:00Z\")"
                    )
                })?
                .with_timezone(&Utc);
            changes_at(start)
        }
        None => changes(Utc::now()),
    };
    // Through the parser and back: the lines are exactly what `crm apply` reads, in the field
    // order of docs/crm-changes.md.
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let parsed = parse_changes(&text, &OrgState::new(OrgId::new("example"))).map_err(|errors| {
        anyhow!(
            "the example does not parse: {}",
            errors
                .iter()
                .map(|e| e.render("example"))
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    for change in parsed {
        let line = render_change(&change.event)
            .ok_or_else(|| anyhow!("the example holds an event that is not a CRM change"))?;
        match writeln!(out, "{line}") {
            // `ledgersync example | head`: the reader has what it wanted.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    Ok(())
}
