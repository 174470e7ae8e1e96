//! The steps of an item's story: each event in words, with its rule; a decision that targets
//! the CRM names the key of the command it leaves as, and the CRM's result carries the rule of
//! the command it answers.

use super::Step;
use crate::describe::describe;
use crate::log::Stored;
use ledgersync_domain::crm::CommandKey;
use ledgersync_domain::event::{EventClass, Side};
use ledgersync_domain::{Event, EventId};
use std::collections::BTreeMap;

fn step(s: &Stored) -> Step {
    let kind = match s.event.class() {
        EventClass::Decision => "decided",
        EventClass::Outcome => "outcome",
        _ => "observed",
    };
    let mut text = describe(&s.event);
    // A decision that targets the CRM leaves as a CRM command: name its idempotency key, the
    // one its result names.
    if crm_target(&s.event) == Some(Side::Crm)
        && let Some(mailbox) = s.envelope.stream.as_mailbox()
    {
        let key = CommandKey::new(mailbox, s.envelope.event_id);
        text.push_str(&format!(" → sent to the CRM as a command, key {key}"));
    }
    Step {
        position: s.envelope.position,
        at: s.envelope.recorded_at,
        kind,
        event_type: s.event.name(),
        rule: s.envelope.rule.map(|r| r.to_string()),
        text,
        settings: s
            .event
            .basis()
            .map(|b| b.settings.clone())
            .unwrap_or_default(),
    }
}

/// The side an intent writes to.
fn crm_target(event: &Event) -> Option<Side> {
    match event {
        Event::CreateIntent(p) => Some(p.target),
        Event::UpdateIntent(p) => Some(p.target),
        Event::DeleteIntent(p) => Some(p.target),
        _ => None,
    }
}

/// The steps of one mailbox's part of the story; the CRM's result of a command carries the
/// rule of the command it answers.
pub(super) fn steps(list: &[Stored]) -> Vec<Step> {
    let rules: BTreeMap<EventId, String> = list
        .iter()
        .filter_map(|s| Some((s.envelope.event_id, s.envelope.rule?.to_string())))
        .collect();
    list.iter()
        .map(|s| {
            let mut step = step(s);
            let answers_command = match &s.event {
                Event::IntentSucceeded(p) => p.crm.is_some(),
                Event::IntentFailed(p) => p.crm.is_some(),
                _ => false,
            };
            if answers_command && let Some(intent) = s.envelope.causation.first() {
                step.rule = rules.get(intent).cloned();
            }
            step
        })
        .collect()
}
