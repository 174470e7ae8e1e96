//! `replay`: rebuild every mailbox's state by folding its events, re-run `decide` over each
//! recorded observation with the settings it was decided under (the version its causation
//! names, `settings_history`), and compare with the decisions
//! that were recorded. A mismatch means the rules changed, or the journal does not hold what
//! the engine decided.
//!
//! The organization stream is replayed the same way: each organization observation
//! (`mailbox_failure_noted`) is re-decided with `decide_org` on the organization state before
//! it, and compared with the decisions recorded after it (the R14 profile alert); they count in
//! `observations`, `decisions` and `reproduced` like a mailbox's. Their mismatches name the
//! mailbox whose failure was noted.

use crate::describe::describe;
use crate::error::EngineError;
use crate::log::{Stored, scan};
use crate::settings_history::SettingsHistory;
use ledgersync_domain::event::EventClass;
use ledgersync_domain::{
    Context, Decision, Event, MailboxId, MailboxState, OrgState, RuleId, decide_org,
};
use ledgersync_journal::Journal;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// One decision that was not reproduced.
#[derive(Clone, Debug, Serialize)]
pub struct Mismatch {
    /// The mailbox (for an organization-stream decision, the mailbox whose failure was noted).
    pub mailbox: MailboxId,
    /// Position of the observation.
    pub observation_position: u64,
    /// The observation, in words.
    pub observation: String,
    /// The recorded decision (rule and text), if one was recorded.
    pub recorded: Option<String>,
    /// The recomputed decision, if one was recomputed.
    pub recomputed: Option<String>,
}

/// The result of a replay.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Events read.
    pub events: u64,
    /// Observations re-decided.
    pub observations: u64,
    /// Decisions recorded.
    pub decisions: u64,
    /// Decisions reproduced exactly.
    pub reproduced: u64,
    /// Differences.
    pub mismatches: Vec<Mismatch>,
    /// Mailboxes replayed.
    pub mailboxes: u64,
}

impl ReplayReport {
    /// True when every recorded decision was reproduced and none was added.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty() && self.reproduced == self.decisions
    }
}

fn line(rule: Option<RuleId>, e: &Event) -> String {
    match rule {
        Some(r) => format!("{r} {}: {}", e.name(), describe(e)),
        None => format!("{}: {}", e.name(), describe(e)),
    }
}

struct Pending {
    position: u64,
    observation: String,
    expected: VecDeque<Decision>,
}

/// The recomputed decisions that were not recorded become mismatches.
fn flush(report: &mut ReplayReport, mailbox: &MailboxId, p: Pending) {
    for d in p.expected {
        report.mismatches.push(Mismatch {
            mailbox: mailbox.clone(),
            observation_position: p.position,
            observation: p.observation.clone(),
            recorded: None,
            recomputed: Some(line(Some(d.rule), &d.event)),
        });
    }
}

/// One organization-stream event, on the organization state before it: an organization
/// observation is re-decided, a decision compared with what was recomputed.
fn replay_org(
    report: &mut ReplayReport,
    pending: &mut Option<(MailboxId, Pending)>,
    org: &OrgState,
    s: &Stored,
) {
    match (&s.event, s.event.class()) {
        (Event::MailboxFailureNoted(p), _) => {
            if let Some((m, p)) = pending.take() {
                flush(report, &m, p);
            }
            let ctx = Context {
                settings: &org.settings,
                now: s.envelope.recorded_at,
            };
            report.observations += 1;
            *pending = Some((
                p.mailbox.clone(),
                Pending {
                    position: s.envelope.position,
                    observation: line(None, &s.event),
                    expected: decide_org(org, &s.event, &ctx).into(),
                },
            ));
        }
        (_, EventClass::Decision) => {
            report.decisions += 1;
            let (m, p) = pending.get_or_insert_with(|| {
                (
                    MailboxId::new(""),
                    Pending {
                        position: s.envelope.position,
                        observation: "(no observation before it)".into(),
                        expected: VecDeque::new(),
                    },
                )
            });
            compare(report, m, p, s);
        }
        _ => {
            if let Some((m, p)) = pending.take() {
                flush(report, &m, p);
            }
        }
    }
}

/// Compares a recorded decision `s` with the next one re-decided for the pending observation
/// `p` of mailbox `m` (empty for the organization stream): reproduced, or a mismatch.
fn compare(report: &mut ReplayReport, m: &MailboxId, p: &mut Pending, s: &Stored) {
    let exp = p.expected.pop_front();
    if exp
        .as_ref()
        .is_some_and(|d| Some(d.rule) == s.envelope.rule && d.event == s.event)
    {
        report.reproduced += 1;
    } else {
        report.mismatches.push(Mismatch {
            mailbox: m.clone(),
            observation_position: p.position,
            observation: p.observation.clone(),
            recorded: Some(line(s.envelope.rule, &s.event)),
            recomputed: exp.map(|d| line(Some(d.rule), &d.event)),
        });
    }
}

/// Replays the journal (or one mailbox of it).
pub fn replay(
    journal: &dyn Journal,
    only: Option<&MailboxId>,
    progress: impl FnMut(u64, u64),
) -> Result<ReplayReport, EngineError> {
    let mut org = OrgState::default();
    let mut states: BTreeMap<MailboxId, MailboxState> = BTreeMap::new();
    let mut pending: BTreeMap<MailboxId, Pending> = BTreeMap::new();
    // The organization observation whose decisions are being compared, and its mailbox.
    let mut org_pending: Option<(MailboxId, Pending)> = None;
    let mut report = ReplayReport::default();
    let history = SettingsHistory::load(journal)?;

    scan(journal, 1, progress, |s| {
        report.events += 1;
        let Some(m) = s.envelope.stream.as_mailbox() else {
            if only.is_none() {
                replay_org(&mut report, &mut org_pending, &org, &s);
            }
            org.apply(&s.event);
            return Ok(());
        };
        if only.is_some_and(|o| o != &m) {
            return Ok(());
        }
        let state = states.entry(m.clone()).or_default();
        if s.event.is_observation() {
            if let Some(p) = pending.remove(&m) {
                flush(&mut report, &m, p);
            }
            let ctx = Context {
                settings: history.or_position(&s.envelope.causation, &org.settings),
                now: s.envelope.recorded_at,
            };
            let expected = ledgersync_domain::decide(state, &s.event, &ctx);
            report.observations += 1;
            let observation = line(None, &s.event);
            let position = s.envelope.position;
            state.apply_owned(s.meta(), s.event);
            pending.insert(
                m,
                Pending {
                    position,
                    observation,
                    expected: expected.into(),
                },
            );
        } else {
            report.decisions += 1;
            let p = pending.entry(m.clone()).or_insert_with(|| Pending {
                position: s.envelope.position,
                observation: "(no observation before it)".into(),
                expected: VecDeque::new(),
            });
            compare(&mut report, &m, p, &s);
            state.apply_owned(s.meta(), s.event);
        }
        Ok(())
    })?;
    for (m, p) in std::mem::take(&mut pending) {
        flush(&mut report, &m, p);
    }
    if let Some((m, p)) = org_pending.take() {
        flush(&mut report, &m, p);
    }
    report.mailboxes = states.len() as u64;
    Ok(report)
}
