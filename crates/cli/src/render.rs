//! Text and JSON rendering of reports.

use ledgersync_engine::describe::describe;
use ledgersync_engine::explain::Explanation;
use ledgersync_engine::log::Stored;
use ledgersync_engine::{ReplayReport, WhatIfReport};
use std::fmt::Write as _;

pub fn replay(r: &ReplayReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replayed {} events: {} mailboxes, {} observations re-decided",
        r.events, r.mailboxes, r.observations
    );
    for m in &r.mismatches {
        let _ = writeln!(
            out,
            "MISMATCH in mailbox {} after position {} ({})",
            m.mailbox, m.observation_position, m.observation
        );
        let _ = writeln!(
            out,
            "  recorded:   {}",
            m.recorded.as_deref().unwrap_or("(nothing)")
        );
        let _ = writeln!(
            out,
            "  recomputed: {}",
            m.recomputed.as_deref().unwrap_or("(nothing)")
        );
    }
    let _ = writeln!(
        out,
        "decisions reproduced: {}/{}",
        r.reproduced, r.decisions
    );
    out
}

pub fn explanation(e: &Explanation) -> String {
    let mut out = String::new();
    for item in &e.items {
        let id = item
            .record
            .as_ref()
            .map(|r| format!("crm:{r}"))
            .unwrap_or_default();
        let remotes = item
            .remotes
            .iter()
            .map(|r| format!("remote:{r}"))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(out, "{}  {} {}", item.title, id, remotes);
        for mb in &item.mailboxes {
            let _ = writeln!(out, "  in mailbox {}:", mb.mailbox);
            for s in &mb.steps {
                let tag = match (&s.rule, s.kind) {
                    (Some(r), _) => r.clone(),
                    (None, "outcome") => "outcome".into(),
                    (None, _) => "observed".into(),
                };
                let _ = writeln!(
                    out,
                    "    {}  {:<8} {}: {}",
                    s.at,
                    tag,
                    s.event_type.replace('_', " "),
                    s.text
                );
                if !s.settings.is_empty() {
                    let settings = s
                        .settings
                        .iter()
                        .map(|u| u.to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    let _ = writeln!(out, "    {:17} {:<8} setting: {settings}", "", "");
                }
            }
            if let Some(why) = &mb.why {
                let _ = writeln!(out, "  why: {why}");
            }
            if let Some(h) = &mb.what_if {
                let _ = writeln!(
                    out,
                    "  what-if: with {}={} it would have been: {} ({})\n           try: ledgersync what-if --set {}={}",
                    h.setting,
                    h.value,
                    h.outcome,
                    h.rules.join(", "),
                    h.setting,
                    h.value
                );
            }
        }
        out.push('\n');
    }
    out
}

pub fn what_if(r: &WhatIfReport) -> String {
    let mut out = String::new();
    let set = r
        .overrides
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        out,
        "what-if {set}: {} observations re-decided",
        r.observations
    );
    if r.differences.is_empty() {
        let _ = writeln!(out, "no decision would differ");
        return out;
    }
    let _ = writeln!(
        out,
        "{} item(s) would be decided differently:",
        r.differences.len()
    );
    for d in &r.differences {
        let _ = writeln!(
            out,
            "  {} (mailbox {}, {}): {} → {}   [{} → {}]",
            d.title,
            d.mailbox,
            d.at,
            d.recorded,
            d.simulated,
            d.recorded_rules.join(","),
            d.simulated_rules.join(",")
        );
    }
    out
}

pub fn event_line(s: &Stored) -> String {
    let e = &s.envelope;
    let rule = e.rule.map(|r| format!(" {r}")).unwrap_or_default();
    format!(
        "#{:<6} {} {:<22} {:<20}{} {}",
        e.position,
        e.recorded_at,
        e.stream,
        s.event.name(),
        rule,
        describe(&s.event)
    )
}

pub use ledgersync_engine::log::event_json;
