//! `explain`: the causal chain of one item — observation → rule → setting → decision →
//! outcome — in plain language, with a one-line "why" and the `what-if` that would change the
//! outcome.
//!
//! It reads only what the item index points at (plus the observations that caused those
//! decisions and the stream prefix needed to re-decide one observation), so it stays fast on a
//! large journal.

use crate::describe::{ItemFate, Progress, describe, intent_phrase, summarize, summarize_as};
use crate::error::EngineError;
use crate::log::Stored;
use crate::settings_history::SettingsHistory;
use ledgersync_domain::crm::CommandKey;
use ledgersync_domain::event::{CommandType, ErrorClass, EventClass, LeaveReason, Side};
use ledgersync_domain::settings::SettingUsed;
use ledgersync_domain::{
    Context, Event, EventId, ItemKey, MailboxId, MailboxState, RecordId, RemoteId, RuleId,
    StreamId, Timestamp, decide,
};
use ledgersync_journal::Journal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

mod proposed;
mod steps;
use proposed::add_proposed_rows;
use steps::steps;

/// One step of an item's story.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Global position.
    pub position: u64,
    /// When it was recorded.
    pub at: Timestamp,
    /// `observed`, `decided` or `outcome`.
    pub kind: &'static str,
    /// Event type name.
    pub event_type: &'static str,
    /// Deciding rule (decisions).
    pub rule: Option<String>,
    /// What happened, in words.
    pub text: String,
    /// Settings the decision consulted.
    pub settings: Vec<SettingUsed>,
}

/// A setting change that would have changed the outcome.
#[derive(Clone, Debug, Serialize)]
pub struct WhatIfHint {
    /// Setting key.
    pub setting: String,
    /// The value that changes the outcome.
    pub value: String,
    /// What would have happened instead.
    pub outcome: String,
    /// Rules of the alternative decisions.
    pub rules: Vec<String>,
}

/// The story of an item in one mailbox.
#[derive(Clone, Debug, Serialize)]
pub struct MailboxStory {
    /// Mailbox.
    pub mailbox: MailboxId,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// One line: why the item ended as it did.
    pub why: Option<String>,
    /// The setting change that would have changed it.
    pub what_if: Option<WhatIfHint>,
}

/// The story of one CRM row (or server item).
#[derive(Clone, Debug, Serialize)]
pub struct ItemStory {
    /// CRM row.
    pub record: Option<RecordId>,
    /// Server items linked to it.
    pub remotes: Vec<RemoteId>,
    /// Subject or name.
    pub title: String,
    /// Per mailbox.
    pub mailboxes: Vec<MailboxStory>,
}

/// What `explain` found.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// The query.
    pub query: String,
    /// Matching items.
    pub items: Vec<ItemStory>,
}

fn read(journal: &dyn Journal, positions: &[u64]) -> Result<Vec<Stored>, EngineError> {
    journal
        .read_positions(positions)?
        .into_iter()
        .map(Stored::decode)
        .collect()
}

/// Finds the CRM rows and server items a query names.
fn resolve(
    journal: &dyn Journal,
    query: &str,
) -> Result<(Vec<RecordId>, Vec<RemoteId>), EngineError> {
    if let Some(id) = query.strip_prefix("crm:") {
        return Ok((vec![RecordId::new(id)], vec![]));
    }
    if let Some(id) = query.strip_prefix("remote:") {
        return Ok((vec![], vec![RemoteId::new(id)]));
    }
    if !journal
        .positions_for_item(&ItemKey::Crm(RecordId::new(query)))?
        .is_empty()
    {
        return Ok((vec![RecordId::new(query)], vec![]));
    }
    if !journal
        .positions_for_item(&ItemKey::Remote(RemoteId::new(query)))?
        .is_empty()
    {
        return Ok((vec![], vec![RemoteId::new(query)]));
    }
    let mut records = BTreeSet::new();
    let mut remotes = BTreeSet::new();
    // An exact subject is one index lookup; only a partial one scans the subjects.
    let exact = ItemKey::Subject(query.to_lowercase());
    let subjects = if journal.positions_for_item(&exact)?.is_empty() {
        journal.search_subjects(query, 20)?
    } else {
        vec![query.to_lowercase()]
    };
    for subject in subjects {
        let positions = journal.positions_for_item(&ItemKey::Subject(subject))?;
        for s in read(journal, &positions)? {
            match &s.event {
                Event::RecordUpserted(p) => {
                    records.insert(p.record.id.clone());
                }
                Event::OwnerChanged(p) => {
                    records.insert(p.record.id.clone());
                }
                Event::ItemSeen(p) => {
                    remotes.insert(p.item.remote.clone());
                }
                Event::EmailReceived(p) => {
                    remotes.insert(p.remote.clone());
                }
                _ => {}
            }
        }
    }
    Ok((records.into_iter().collect(), remotes.into_iter().collect()))
}

/// Explains every item matching `query` (a CRM id, a server id, `crm:ID`, `remote:ID`, or part of
/// a subject).
pub fn explain(journal: &dyn Journal, query: &str) -> Result<Explanation, EngineError> {
    let (records, mut loose_remotes) = resolve(journal, query)?;
    if records.is_empty() && loose_remotes.is_empty() {
        return Err(EngineError::Invalid(format!(
            "no item matches `{query}`: give a CRM id, a server item id (remote:ID) or part of a subject \
             (`ledgersync events` lists what the journal holds)"
        )));
    }
    // The settings every observation was decided under, read once for all the items.
    let history = SettingsHistory::load(journal)?;
    let mut items = Vec::new();
    for record in records {
        let mut positions: BTreeSet<u64> = journal
            .positions_for_item(&ItemKey::Crm(record.clone()))?
            .into_iter()
            .collect();
        let first = read(journal, &positions.iter().copied().collect::<Vec<_>>())?;
        let mut remotes = BTreeSet::new();
        for s in &first {
            match &s.event {
                Event::LinkCreated(p) => {
                    remotes.insert(p.remote.clone());
                }
                // An email regarding this row is told as an item of its own.
                Event::EmailAccepted(p) if !loose_remotes.contains(&p.remote) => {
                    loose_remotes.push(p.remote.clone());
                }
                // So is the email this row was created for (R52): why it was tracked.
                Event::IntentSucceeded(p)
                    if p.crm
                        .as_ref()
                        .is_some_and(|c| c.command == CommandType::TrackEmail) =>
                {
                    if let Some(r) = &p.remote
                        && !loose_remotes.contains(r)
                    {
                        loose_remotes.push(r.clone());
                    }
                }
                _ => {}
            }
        }
        loose_remotes.retain(|r| !remotes.contains(r));
        for r in &remotes {
            positions.extend(journal.positions_for_item(&ItemKey::Remote(r.clone()))?);
        }
        add_proposed_rows(journal, &mut positions)?;
        let events = read(journal, &positions.into_iter().collect::<Vec<_>>())?;
        items.push(story(
            journal,
            &history,
            Some(record),
            remotes.into_iter().collect(),
            events,
        )?);
    }
    for remote in loose_remotes {
        let mut positions: BTreeSet<u64> = journal
            .positions_for_item(&ItemKey::Remote(remote.clone()))?
            .into_iter()
            .collect();
        add_proposed_rows(journal, &mut positions)?;
        let events = read(journal, &positions.into_iter().collect::<Vec<_>>())?;
        items.push(story(journal, &history, None, vec![remote], events)?);
    }
    Ok(Explanation {
        query: query.to_string(),
        items,
    })
}

fn story(
    journal: &dyn Journal,
    history: &SettingsHistory,
    record: Option<RecordId>,
    remotes: Vec<RemoteId>,
    events: Vec<Stored>,
) -> Result<ItemStory, EngineError> {
    let mut title = record.as_ref().map(|r| r.to_string()).unwrap_or_default();
    // A row the CRM has not sent yet (created from a server item) is known by the item's title.
    let mut from_crm = false;
    let mut by_mailbox: BTreeMap<MailboxId, Vec<Stored>> = BTreeMap::new();
    for s in events {
        match &s.event {
            Event::RecordUpserted(p) => (title, from_crm) = (p.record.title().to_string(), true),
            Event::OwnerChanged(p) => (title, from_crm) = (p.record.title().to_string(), true),
            Event::ItemSeen(p) if !from_crm => title = p.item.fields.title().to_string(),
            Event::EmailReceived(p) if !from_crm => title = p.subject.clone(),
            _ => {}
        }
        if let Some(m) = s.envelope.stream.as_mailbox() {
            by_mailbox.entry(m).or_default().push(s);
        }
    }
    let mut mailboxes = Vec::new();
    for (mailbox, mut list) in by_mailbox {
        add_missing_causes(journal, &mailbox, &mut list)?;
        list.sort_by_key(|s| s.envelope.position);
        let (mut why, what_if) = match record.as_ref() {
            Some(r) => conclude(journal, history, &mailbox, r, &list)?,
            None => (None, None),
        };
        if record.is_none() {
            why = email_why(&list);
        }
        mailboxes.push(MailboxStory {
            mailbox,
            steps: steps(&list),
            why,
            what_if,
        });
    }
    Ok(ItemStory {
        record,
        remotes,
        title,
        mailboxes,
    })
}

/// Why the last email of the story was or was not tracked: its decision's steps and rule, the
/// row it is regarding ("why was this email tracked to that account", "why was it not
/// tracked"), and for a tracked one the `track_email` command it left as (R52) and the CRM's
/// result, once there.
fn email_why(list: &[Stored]) -> Option<String> {
    let (at, s) = list
        .iter()
        .enumerate()
        .rev()
        .find(|(_, s)| matches!(s.event, Event::EmailAccepted(_) | Event::EmailRejected(_)))?;
    let rule = s.envelope.rule.map(|r| r.to_string()).unwrap_or_default();
    let accepted = match &s.event {
        Event::EmailAccepted(p) => p,
        Event::EmailRejected(p) => return Some(format!("{} ({rule})", p.basis.reason)),
        _ => return None,
    };
    let mut why = format!("{} (accepted by {rule})", accepted.basis.reason);
    match &accepted.regarding {
        Some(r) => why.push_str(&format!(
            "; regarding {} \"{}\" ({})",
            r.table, r.name, r.id
        )),
        None => why.push_str("; regarding no row"),
    }
    let command = list[at..].iter().find(|c| {
        matches!(&c.event, Event::CreateIntent(p)
            if p.target == Side::Crm && p.remote.as_ref() == Some(&accepted.remote))
    });
    let (Some(command), Some(mailbox)) = (command, s.envelope.stream.as_mailbox()) else {
        return Some(why);
    };
    let intent = command.envelope.event_id;
    why.push_str(&format!(
        "; a {} command was sent to the CRM (key {}, proposed row {})",
        CommandType::TrackEmail,
        CommandKey::new(mailbox, intent),
        command
            .event
            .record()
            .map(|r| r.to_string())
            .unwrap_or_default()
    ));
    let result = list[at..].iter().rev().find_map(|o| match &o.event {
        Event::IntentSucceeded(p) if p.intent == intent => Some(match &p.crm {
            Some(done) => format!(
                "the CRM created the email activity {} (version {})",
                done.record, done.version
            ),
            None => "the CRM carried it out".to_string(),
        }),
        Event::IntentFailed(p) if p.intent == intent => Some(format!(
            "the CRM's last answer: failed ({} {}){}",
            p.error.code,
            p.error.message,
            match &p.crm {
                Some(f) if f.retryable => ", it is retried",
                Some(_) => ", refused for good",
                None => "",
            }
        )),
        _ => None,
    });
    why.push_str(&format!(
        "; {}",
        result.unwrap_or_else(|| "waiting for the CRM's result".to_string())
    ));
    Some(why)
}

/// Adds the observations that caused listed decisions but are not indexed under the item
/// (a filter edit, a Test & Enable). They sit just before their decisions in the same stream.
fn add_missing_causes(
    journal: &dyn Journal,
    mailbox: &MailboxId,
    list: &mut Vec<Stored>,
) -> Result<(), EngineError> {
    let have: BTreeSet<_> = list.iter().map(|s| s.envelope.event_id).collect();
    let mut wanted: BTreeMap<_, u64> = BTreeMap::new();
    for s in list.iter() {
        if s.event.class() == EventClass::Decision {
            for c in &s.envelope.causation {
                if !have.contains(c) {
                    wanted.entry(*c).or_insert(s.envelope.seq);
                }
            }
        }
    }
    let stream = StreamId::mailbox(mailbox);
    for (id, seq) in wanted {
        let from = seq.saturating_sub(256).max(1);
        let page = journal.read_stream(&stream, from, (seq - from + 1) as usize)?;
        if let Some(env) = page.into_iter().rev().find(|e| e.event_id == id) {
            list.push(Stored::decode(env)?);
        }
    }
    Ok(())
}

fn is_consequential(e: &Event) -> bool {
    matches!(
        e,
        Event::DeleteIntent(_)
            | Event::CancelIntent(_)
            | Event::Unlinked(_)
            | Event::LogicalDelete(_)
            | Event::NoAction(_)
    )
}

/// The "why" line and the what-if hint for the last consequential observation of the story.
fn conclude(
    journal: &dyn Journal,
    history: &SettingsHistory,
    mailbox: &MailboxId,
    record: &RecordId,
    list: &[Stored],
) -> Result<(Option<String>, Option<WhatIfHint>), EngineError> {
    let Some(last) = list.iter().rev().find(|s| {
        s.event.class() == EventClass::Decision
            && s.event.record() == Some(record)
            && is_consequential(&s.event)
    }) else {
        return Ok((None, None));
    };
    let Some(obs_id) = last.envelope.causation.first().copied() else {
        return Ok((None, None));
    };
    let Some(obs) = list.iter().find(|s| s.envelope.event_id == obs_id) else {
        return Ok((None, None));
    };
    let batch: Vec<&Stored> = list
        .iter()
        .filter(|s| {
            s.envelope.causation.first() == Some(&obs_id) && s.event.record() == Some(record)
        })
        .collect();
    let recorded: Vec<(RuleId, Event)> = batch
        .iter()
        .map(|s| (s.envelope.rule.unwrap_or(RuleId(0)), s.event.clone()))
        .collect();
    let entity = list.iter().find_map(|s| match &s.event {
        Event::RecordUpserted(p) if &p.record.id == record => Some(p.record.entity()),
        Event::OwnerChanged(p) if &p.record.id == record => Some(p.record.entity()),
        _ => None,
    });
    // The decisions as such (what-if compares them), and what became of them (what is told).
    let outcome = summarize(&recorded, entity);
    let progress = progress_of(journal, mailbox, &batch)?;
    let fate = fate_of(obs, &batch, list, last.envelope.position);
    let told = summarize_as(&recorded, entity, |i| progress[i].clone(), fate);
    let mut used: Vec<SettingUsed> = Vec::new();
    for s in &batch {
        for u in s
            .event
            .basis()
            .map(|b| b.settings.as_slice())
            .unwrap_or(&[])
        {
            if !used.contains(u) {
                used.push(u.clone());
            }
        }
    }
    let rule = batch
        .iter()
        .find_map(|s| match &s.event {
            Event::LogicalDelete(_) => s.envelope.rule,
            _ => None,
        })
        .or(last.envelope.rule)
        .map(|r| r.to_string())
        .unwrap_or_default();
    let cause = batch.iter().find_map(|s| match &s.event {
        Event::LogicalDelete(p) => Some(p.reason.clone()),
        _ => None,
    });
    let owner = journal_owner(journal, mailbox, obs.envelope.seq)?;
    let settings_text = used
        .iter()
        .map(|u| format!("{} is {}", u.key, u.value))
        .collect::<Vec<_>>()
        .join(" and ");
    let because = if settings_text.is_empty() {
        String::new()
    } else {
        format!(" because {settings_text}")
    };
    let why = match cause {
        Some(reason) => {
            let head = match &reason {
                LeaveReason::AccessLost(r) => format!("access lost ({r})"),
                other => other.to_string(),
            };
            format!(
                "{head} → no longer in {owner}'s filter union → logical delete → {told}{because} ({rule})"
            )
        }
        None => {
            // Nothing was done: the reason of that decision is the why, whatever settings it
            // also names (an attendee's copy is left alone because it is not the organizer's,
            // not because of the setting that made the organizer's copy go).
            let nothing: Vec<&str> = recorded
                .iter()
                .filter_map(|(_, e)| match e {
                    Event::NoAction(p) => Some(p.basis.reason.as_str()),
                    _ => None,
                })
                .collect();
            if !recorded.is_empty() && nothing.len() == recorded.len() {
                format!(
                    "{} → left unchanged: {} ({rule})",
                    describe(&obs.event),
                    nothing.join("; ")
                )
            } else {
                format!("{} → {told}{because} ({rule})", describe(&obs.event))
            }
        }
    };
    let hint = flip_settings(
        journal, history, mailbox, record, obs, &used, &outcome, entity,
    )?;
    Ok((Some(why), hint))
}

/// Where each decision of `batch` stands: an intent is pending while the mailbox still holds
/// it (or holds it withdrawn), done once its `intent_succeeded` is recorded, failed after a
/// permanent `error_classified`; other decisions are done when they are recorded.
///
/// The current mailbox state (snapshot + tail) says which intents are still pending; only a
/// settled one is looked for in the stream, forward from its decision to its outcome.
fn progress_of(
    journal: &dyn Journal,
    mailbox: &MailboxId,
    batch: &[&Stored],
) -> Result<Vec<Progress>, EngineError> {
    let mut progress = vec![Progress::Done; batch.len()];
    let intents: Vec<(usize, EventId)> = batch
        .iter()
        .enumerate()
        .filter(|(_, s)| intent_phrase(&s.event, &Progress::Done).is_some())
        .map(|(i, s)| (i, s.envelope.event_id))
        .collect();
    let Some(from) = batch.iter().map(|s| s.envelope.seq).max() else {
        return Ok(progress);
    };
    if intents.is_empty() {
        return Ok(progress);
    }
    let core = crate::mailbox::MailboxCore::recover(journal, mailbox.clone())?;
    let state = core.state();
    let mut unsettled: BTreeMap<EventId, usize> = BTreeMap::new();
    for (i, id) in intents {
        if state.intents.contains_key(&id) || state.withdrawn.contains_key(&id) {
            progress[i] = Progress::Pending;
        } else {
            unsettled.insert(id, i);
        }
    }
    let stream = StreamId::mailbox(mailbox);
    let mut seq = from + 1;
    while !unsettled.is_empty() && seq <= core.head() {
        let page = journal.read_stream(&stream, seq, crate::log::PAGE)?;
        let Some(last) = page.last() else { break };
        seq = last.seq + 1;
        for env in page {
            let s = Stored::decode(env)?;
            match &s.event {
                Event::IntentSucceeded(p) => {
                    unsettled.remove(&p.intent);
                }
                Event::ErrorClassified(p) if p.class == ErrorClass::Permanent => {
                    if let Some(i) = p.intent.and_then(|id| unsettled.remove(&id)) {
                        progress[i] =
                            Progress::Failed(format!("{} {}", p.error.code, p.error.message));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(progress)
}

/// What happened to the server item a decision of `batch` unlinked: gone before (the batch
/// answers an `item_gone`), gone later (an `item_gone` of that item after `after`), or left.
fn fate_of(obs: &Stored, batch: &[&Stored], list: &[Stored], after: u64) -> ItemFate {
    if matches!(obs.event, Event::ItemGone(_)) {
        return ItemFate::GoneBefore;
    }
    let unlinked: Vec<&RemoteId> = batch
        .iter()
        .filter_map(|s| match &s.event {
            Event::Unlinked(p) => p.remote.as_ref(),
            _ => None,
        })
        .collect();
    let gone_later = list.iter().any(|s| {
        s.envelope.position > after
            && matches!(&s.event, Event::ItemGone(p) if unlinked.contains(&&p.remote))
    });
    if gone_later {
        ItemFate::GoneLater
    } else {
        ItemFate::Left
    }
}

fn journal_owner(
    journal: &dyn Journal,
    mailbox: &MailboxId,
    upto: u64,
) -> Result<String, EngineError> {
    let state = state_before(journal, mailbox, upto)?;
    Ok(state
        .owner
        .map(|u| u.to_string())
        .unwrap_or_else(|| mailbox.to_string()))
}

/// The mailbox state just before stream sequence `seq`.
fn state_before(
    journal: &dyn Journal,
    mailbox: &MailboxId,
    seq: u64,
) -> Result<MailboxState, EngineError> {
    let stream = StreamId::mailbox(mailbox);
    let mut state = MailboxState::default();
    let mut from = 1;
    while from < seq {
        let page =
            journal.read_stream(&stream, from, ((seq - from) as usize).min(crate::log::PAGE))?;
        if page.is_empty() {
            break;
        }
        for env in page {
            from = env.seq + 1;
            let s = Stored::decode(env)?;
            state.apply_owned(s.meta(), s.event);
        }
    }
    Ok(state)
}

fn alternatives(u: &SettingUsed) -> Vec<String> {
    match u.value.as_str() {
        "true" => vec!["false".into()],
        "false" => vec!["true".into()],
        "0" | "1" | "2" if u.key == "task_deletion_mode" => ["0", "1", "2"]
            .iter()
            .filter(|v| **v != u.value)
            .map(|v| v.to_string())
            .collect(),
        _ => vec![],
    }
}

#[allow(clippy::too_many_arguments)] // the observation's context, each named
fn flip_settings(
    journal: &dyn Journal,
    history: &SettingsHistory,
    mailbox: &MailboxId,
    record: &RecordId,
    obs: &Stored,
    used: &[SettingUsed],
    recorded_outcome: &str,
    entity: Option<ledgersync_domain::records::Entity>,
) -> Result<Option<WhatIfHint>, EngineError> {
    if used.is_empty() {
        return Ok(None);
    }
    let state = state_before(journal, mailbox, obs.envelope.seq)?;
    // The settings the observation was decided under; for one recorded without a settings
    // version, the defaults with the values its decisions recorded.
    let mut base = history
        .of(&obs.envelope.causation)
        .cloned()
        .unwrap_or_default();
    for u in used {
        let _ = base.set(&u.key, &u.value);
    }
    for u in used {
        for alt in alternatives(u) {
            let mut s = base.clone();
            if s.set(&u.key, &alt).is_err() {
                continue;
            }
            let ctx = Context {
                settings: &s,
                now: obs.envelope.recorded_at,
            };
            let sim: Vec<(RuleId, Event)> = decide(&state, &obs.event, &ctx)
                .into_iter()
                .filter(|d| d.event.record() == Some(record))
                .map(|d| (d.rule, d.event))
                .collect();
            let outcome = summarize(&sim, entity);
            if outcome != recorded_outcome {
                let mut rules: Vec<String> = sim.iter().map(|(r, _)| r.to_string()).collect();
                rules.dedup();
                return Ok(Some(WhatIfHint {
                    setting: u.key.clone(),
                    value: alt,
                    outcome,
                    rules,
                }));
            }
        }
    }
    Ok(None)
}
