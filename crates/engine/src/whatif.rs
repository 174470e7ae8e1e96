//! `what-if`: re-decide the whole journal under other settings and list, item by item, the
//! decisions that would differ.
//!
//! The simulation folds every mailbox with the *simulated* decisions (so a different decision
//! early changes what later observations lead to), while the recorded decisions are kept only
//! for comparison. Outcomes in the journal refer to recorded intents: a simulated decision
//! equal to the recorded one at the same place reuses the recorded id, so its outcome still
//! applies; a diverging one gets an id of its own and no outcome.

use crate::describe::summarize;
use crate::error::EngineError;
use crate::log::{Stored, scan};
use crate::settings_history::SettingsHistory;
use ledgersync_domain::{
    Context, Decision, Event, EventId, EventMeta, MailboxId, MailboxState, OrgSettings, OrgState,
    RecordId, RemoteId, RuleId, SettingsVersion, Timestamp, decide,
};
use ledgersync_journal::Journal;
use serde::Serialize;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One item whose decisions would differ.
#[derive(Clone, Debug, Serialize)]
pub struct Difference {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// CRM row, if the item is one.
    pub record: Option<RecordId>,
    /// Server item, if known.
    pub remote: Option<RemoteId>,
    /// Subject or name.
    pub title: String,
    /// When the observation was recorded.
    pub at: Timestamp,
    /// Its position.
    pub position: u64,
    /// What was recorded, summarized.
    pub recorded: String,
    /// What would be decided, summarized.
    pub simulated: String,
    /// Rules of the recorded decisions.
    pub recorded_rules: Vec<String>,
    /// Rules of the simulated decisions.
    pub simulated_rules: Vec<String>,
}

/// The result of a what-if run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WhatIfReport {
    /// The settings changed.
    pub overrides: Vec<(String, String)>,
    /// Observations re-decided.
    pub observations: u64,
    /// Items whose decisions differ.
    pub differences: Vec<Difference>,
}

struct Held {
    obs: Stored,
    simulated: Vec<Decision>,
    recorded: Vec<Stored>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ItemKeyOf {
    Record(RecordId),
    Remote(RemoteId),
    Mailbox,
}

fn item_of(e: &Event) -> ItemKeyOf {
    if let Some(r) = e.record() {
        ItemKeyOf::Record(r.clone())
    } else if let Some(r) = e.remote() {
        ItemKeyOf::Remote(r.clone())
    } else {
        ItemKeyOf::Mailbox
    }
}

/// Decisions with their rules.
type Ruled = Vec<(RuleId, Event)>;

fn rule_list(decisions: &[(RuleId, Event)]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for (r, _) in decisions {
        let r = r.to_string();
        if !v.contains(&r) {
            v.push(r);
        }
    }
    v
}

/// Runs `what-if` with `overrides` applied on top of the settings each observation was decided
/// under (the version its causation names).
pub fn what_if(
    journal: &dyn Journal,
    overrides: &[(String, String)],
    progress: impl FnMut(u64, u64),
) -> Result<WhatIfReport, EngineError> {
    let apply_overrides = |s: &OrgSettings| -> Result<OrgSettings, EngineError> {
        let mut s = s.clone();
        for (k, v) in overrides {
            s.set(k, v)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
        }
        Ok(s)
    };
    let mut org = OrgState::default();
    let mut effective = apply_overrides(&org.settings)?;
    // Each recorded settings version with the overrides on top, made when first needed.
    let history = SettingsHistory::load(journal)?;
    let mut overridden: HashMap<SettingsVersion, OrgSettings> = HashMap::new();
    let mut states: BTreeMap<MailboxId, MailboxState> = BTreeMap::new();
    let mut held: BTreeMap<MailboxId, Held> = BTreeMap::new();
    let mut report = WhatIfReport {
        overrides: overrides.to_vec(),
        ..Default::default()
    };

    let finish = |report: &mut WhatIfReport, state: &mut MailboxState, m: &MailboxId, h: Held| {
        let at = h.obs.envelope.recorded_at;
        for (i, d) in h.simulated.iter().enumerate() {
            let id = match h.recorded.get(i) {
                Some(r) if r.event == d.event => r.envelope.event_id,
                // A simulated decision of its own: an id no recorded event has.
                _ => EventId::from_u128(
                    (1u128 << 127) | ((h.obs.envelope.position as u128) << 16) | i as u128,
                ),
            };
            state.apply(EventMeta { id, at }, &d.event);
        }
        // An email's decisions are one item, its server item: its acceptance and the
        // track_email intent that follows it (R52), whose row id is only proposed.
        let emails: BTreeSet<RemoteId> = h
            .recorded
            .iter()
            .map(|r| &r.event)
            .chain(h.simulated.iter().map(|d| &d.event))
            .filter_map(|e| match e {
                Event::EmailAccepted(p) => Some(p.remote.clone()),
                Event::EmailRejected(p) => Some(p.remote.clone()),
                _ => None,
            })
            .collect();
        let item_of = |e: &Event| match e.remote() {
            Some(r) if emails.contains(r) => ItemKeyOf::Remote(r.clone()),
            _ => item_of(e),
        };
        let mut by_item: BTreeMap<ItemKeyOf, (Ruled, Ruled)> = BTreeMap::new();
        for r in &h.recorded {
            let rule = r.envelope.rule.unwrap_or(RuleId(0));
            by_item
                .entry(item_of(&r.event))
                .or_default()
                .0
                .push((rule, r.event.clone()));
        }
        for d in &h.simulated {
            by_item
                .entry(item_of(&d.event))
                .or_default()
                .1
                .push((d.rule, d.event.clone()));
        }
        for (item, (rec, sim)) in by_item {
            let entity = match &item {
                ItemKeyOf::Record(r) => state.records.get(r).map(|x| x.entity()),
                ItemKeyOf::Remote(r) => state.remote_items.get(r).map(|x| x.fields.entity()),
                ItemKeyOf::Mailbox => None,
            };
            let (recorded, simulated) = (summarize(&rec, entity), summarize(&sim, entity));
            if recorded == simulated {
                // Same outcome (perhaps by another rule or with other wording): not a difference
                // a user would see.
                continue;
            }
            let (record, remote) = match &item {
                ItemKeyOf::Record(r) => (
                    Some(r.clone()),
                    state.links.get(r).and_then(|l| l.remote.clone()),
                ),
                ItemKeyOf::Remote(r) => (state.by_remote.get(r).cloned(), Some(r.clone())),
                ItemKeyOf::Mailbox => (None, None),
            };
            let title = match (&record, &remote) {
                (Some(r), _) => state
                    .records
                    .get(r)
                    .map(|x| x.title().to_string())
                    .unwrap_or_else(|| r.to_string()),
                (None, Some(r)) => state
                    .remote_items
                    .get(r)
                    .map(|x| x.fields.title().to_string())
                    .unwrap_or_else(|| r.to_string()),
                (None, None) => format!("mailbox {m}"),
            };
            report.differences.push(Difference {
                mailbox: m.clone(),
                record,
                remote,
                title,
                at,
                position: h.obs.envelope.position,
                recorded,
                simulated,
                recorded_rules: rule_list(&rec),
                simulated_rules: rule_list(&sim),
            });
        }
    };

    scan(journal, 1, progress, |s| {
        let Some(m) = s.envelope.stream.as_mailbox() else {
            let settings_changed = matches!(s.event, Event::SettingChanged(_));
            org.apply(&s.event);
            if settings_changed {
                effective = apply_overrides(&org.settings)?;
            }
            return Ok(());
        };
        let state = states.entry(m.clone()).or_default();
        if s.event.is_observation() {
            if let Some(h) = held.remove(&m) {
                finish(&mut report, state, &m, h);
            }
            report.observations += 1;
            let settings = match history.of(&s.envelope.causation) {
                Some(recorded) => match overridden.entry(recorded.version) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(apply_overrides(recorded)?),
                },
                // Recorded before settings versions were: the settings at its position.
                None => &effective,
            };
            let ctx = Context {
                settings,
                now: s.envelope.recorded_at,
            };
            let simulated = decide(state, &s.event, &ctx);
            state.apply(s.meta(), &s.event);
            held.insert(
                m,
                Held {
                    obs: s,
                    simulated,
                    recorded: Vec::new(),
                },
            );
        } else if let Some(h) = held.get_mut(&m) {
            h.recorded.push(s);
        }
        Ok(())
    })?;
    for (m, h) in std::mem::take(&mut held) {
        let state = states.entry(m.clone()).or_default();
        finish(&mut report, state, &m, h);
    }
    Ok(report)
}
