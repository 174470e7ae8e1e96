//! One write transaction of the projection: applies events to the view tables.
//!
//! Every table is keyed by strings joined with `\0` (ids never hold a NUL), so a prefix range
//! lists one record's links, one mailbox's failures or one user's activities.

use super::error::ProjectionError;
use super::rows::{
    Activity, Alert, IntentPart, ItemFailure, ItemLink, LastDecision, Regarding, WorkloadHealth,
};
use crate::describe::{Progress, describe, intent_phrase, summarize};
use crate::log::Stored;
use ledgersync_domain::event::{AlertRaised, ErrorClass, Event, Side, Workload};
use ledgersync_domain::records::{Entity, Record, RecordBody};
use ledgersync_domain::state::LinkStatus;
use ledgersync_domain::{
    Duration, MailboxId, MailboxState, OrgSettings, ProfileId, RecordId, RemoteId, Timestamp,
};
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};

mod email;
mod moved;

/// `"checkpoint"` → the position of the last event folded.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Record id → [`Activity`].
pub(super) const ROWS: TableDefinition<&str, &[u8]> = TableDefinition::new("rows");
/// `regarding\0record` → ().
pub(super) const BY_REGARDING: TableDefinition<&str, ()> = TableDefinition::new("by_regarding");
/// `user\0record` → ().
pub(super) const BY_USER: TableDefinition<&str, ()> = TableDefinition::new("by_user");
/// `record\0mailbox` → [`ItemLink`].
pub(super) const LINKS: TableDefinition<&str, &[u8]> = TableDefinition::new("links");
/// `mailbox\0intent` (an intent's failure) or `mailbox\0item:remote` (a server item a listing
/// could not read) → [`ItemFailure`].
pub(super) const FAILURES: TableDefinition<&str, &[u8]> = TableDefinition::new("failures");
/// (recorded at, `mailbox\0intent`) → (): the retention index of `FAILURES`.
pub(super) const FAILURES_BY_TIME: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("failures_by_time");
/// (recorded at, position) → [`Alert`] (R81), in time order; purged by time.
pub(super) const ALERTS: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("alerts");
/// What the fold keeps of the organization stream: the alert retention in force
/// (`alert_retention_days`) and the profile of the last `mailbox_failure_noted` (the
/// `alert_raised` after it is about that profile).
pub(super) const ORG_FOLD: TableDefinition<&str, &str> = TableDefinition::new("org_fold");
/// `mailbox\0workload index` → [`WorkloadHealth`].
pub(super) const HEALTH: TableDefinition<&str, &[u8]> = TableDefinition::new("health");
/// Mailbox id → `MailboxState::to_snapshot`: the fold state at position `STATES_AT` of
/// `META`, from which the next catch-up continues (after refolding the mailbox events up to
/// the checkpoint).
pub(super) const STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("states");

/// How an intent's outcome left it.
enum Settled {
    /// Carried out.
    Done,
    /// Failed for good, with the error.
    Failed(String),
    /// Failed for now, retried, with the error.
    Retried(String),
}

/// The key prefix, after the mailbox, of a server item's listing failure (intent ids are UUIDs).
const ITEM_PREFIX: &str = "item:";

/// The setting that says how long alerts are kept, and its key in `ORG_FOLD`.
const ALERT_RETENTION_KEY: &str = "alert_retention_days";
/// The key in `ORG_FOLD` of the profile of the last `mailbox_failure_noted`.
const NOTED_PROFILE: &str = "noted_profile";

/// Alert retention before any `alert_retention_days` is recorded (the setting's default).
fn default_alert_retention_days() -> i64 {
    i64::from(OrgSettings::default().alert_retention_days)
}

/// The checkpoint key of `META`.
pub(super) const CHECKPOINT: &str = "checkpoint";
/// The key of `META` holding the position the `STATES` table stands at (absent: the
/// checkpoint, as every page wrote them before).
pub(super) const STATES_AT: &str = "states_at";

/// Creates every table (so readers never meet a missing one) and drops their contents when
/// `drop` is set.
pub(super) fn create_tables(txn: &WriteTransaction, drop: bool) -> Result<(), ProjectionError> {
    if drop {
        txn.delete_table(META)?;
        txn.delete_table(ROWS)?;
        txn.delete_table(BY_REGARDING)?;
        txn.delete_table(BY_USER)?;
        txn.delete_table(LINKS)?;
        txn.delete_table(FAILURES)?;
        txn.delete_table(FAILURES_BY_TIME)?;
        txn.delete_table(HEALTH)?;
        txn.delete_table(STATES)?;
        txn.delete_table(ALERTS)?;
        txn.delete_table(ORG_FOLD)?;
    }
    {
        // A new projection: its fold states (none) stand at position 0. A file without the key
        // but with a checkpoint wrote its states with every page: they stand at the checkpoint.
        let mut meta = txn.open_table(META)?;
        if meta.get(CHECKPOINT)?.is_none() && meta.get(STATES_AT)?.is_none() {
            meta.insert(STATES_AT, 0)?;
        }
    }
    txn.open_table(ROWS)?;
    txn.open_table(BY_REGARDING)?;
    txn.open_table(BY_USER)?;
    txn.open_table(LINKS)?;
    txn.open_table(FAILURES)?;
    txn.open_table(FAILURES_BY_TIME)?;
    txn.open_table(HEALTH)?;
    txn.open_table(STATES)?;
    txn.open_table(ALERTS)?;
    txn.open_table(ORG_FOLD)?;
    Ok(())
}

/// `a\0b`.
pub(super) fn key(a: &str, b: &str) -> String {
    format!("{a}\0{b}")
}

/// The range of keys that start with `a\0`.
pub(super) fn prefix(a: &str) -> (String, String) {
    (format!("{a}\0"), format!("{a}\u{1}"))
}

pub(super) fn encode<T: Serialize>(row: &T) -> Result<Vec<u8>, ProjectionError> {
    serde_json::to_vec(row).map_err(ProjectionError::Row)
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProjectionError> {
    serde_json::from_slice(bytes).map_err(ProjectionError::Row)
}

/// The open tables of one write transaction, and the per-mailbox fold state.
pub(super) struct Fold<'txn, 's> {
    rows: Table<'txn, &'static str, &'static [u8]>,
    by_regarding: Table<'txn, &'static str, ()>,
    by_user: Table<'txn, &'static str, ()>,
    links: Table<'txn, &'static str, &'static [u8]>,
    failures: Table<'txn, &'static str, &'static [u8]>,
    failures_by_time: Table<'txn, (i64, &'static str), ()>,
    health: Table<'txn, &'static str, &'static [u8]>,
    alerts: Table<'txn, (i64, u64), &'static [u8]>,
    org_fold: Table<'txn, &'static str, &'static str>,
    states: &'s mut BTreeMap<MailboxId, MailboxState>,
    retention: Duration,
    /// Mailboxes whose state changed in this transaction.
    dirty: BTreeSet<MailboxId>,
}

impl<'txn, 's> Fold<'txn, 's> {
    pub(super) fn new(
        txn: &'txn WriteTransaction,
        states: &'s mut BTreeMap<MailboxId, MailboxState>,
        retention: Duration,
    ) -> Result<Self, ProjectionError> {
        Ok(Self {
            rows: txn.open_table(ROWS)?,
            by_regarding: txn.open_table(BY_REGARDING)?,
            by_user: txn.open_table(BY_USER)?,
            links: txn.open_table(LINKS)?,
            failures: txn.open_table(FAILURES)?,
            failures_by_time: txn.open_table(FAILURES_BY_TIME)?,
            health: txn.open_table(HEALTH)?,
            alerts: txn.open_table(ALERTS)?,
            org_fold: txn.open_table(ORG_FOLD)?,
            states,
            retention,
            dirty: BTreeSet::new(),
        })
    }

    /// Applies one event.
    pub(super) fn apply(&mut self, s: &Stored) -> Result<(), ProjectionError> {
        let at = s.envelope.recorded_at;
        match s.envelope.stream.as_mailbox() {
            None => match &s.event {
                Event::SettingChanged(p) if p.key == ALERT_RETENTION_KEY => {
                    // Recorded values were validated; one that does not parse changes nothing.
                    let mut settings = OrgSettings::default();
                    if settings.set_recorded(&p.key, &p.value).is_ok() {
                        let days = settings.alert_retention_days.to_string();
                        self.org_fold.insert(ALERT_RETENTION_KEY, days.as_str())?;
                    }
                }
                Event::MailboxFailureNoted(p) => {
                    self.org_fold.insert(NOTED_PROFILE, p.profile.as_str())?;
                }
                Event::AlertRaised(p) => {
                    let profile = self
                        .org_fold
                        .get(NOTED_PROFILE)?
                        .map(|v| ProfileId::new(v.value()));
                    self.note_alert(s, p, None, profile)?;
                }
                Event::RecordUpserted(p) => self.upsert_row(&p.record, at)?,
                Event::OwnerChanged(p) => self.upsert_row(&p.record, at)?,
                Event::RecordDeleted(p) => {
                    if let Some(mut row) = self.row(&p.id)? {
                        row.deleted_in_crm = true;
                        self.put_row(&row)?;
                    }
                }
                _ => {}
            },
            Some(mailbox) => {
                if let Event::AlertRaised(p) = &s.event {
                    self.note_alert(s, p, Some(mailbox.clone()), None)?;
                }
                self.apply_mailbox(mailbox, s)?
            }
        }
        self.purge(at)?;
        self.purge_alerts(at)
    }

    fn note_alert(
        &mut self,
        s: &Stored,
        p: &AlertRaised,
        mailbox: Option<MailboxId>,
        profile: Option<ProfileId>,
    ) -> Result<(), ProjectionError> {
        let row = Alert {
            position: s.envelope.position,
            at: s.envelope.recorded_at,
            level: p.level,
            rule: s.envelope.rule,
            text: p.text.clone(),
            notify: p.notify.clone(),
            mailbox,
            profile,
        };
        self.alerts
            .insert((row.at.0, row.position), encode(&row)?.as_slice())?;
        Ok(())
    }

    /// Drops the alerts recorded more than `alert_retention_days` (in force now) before `now`
    /// (R81).
    fn purge_alerts(&mut self, now: Timestamp) -> Result<(), ProjectionError> {
        let days = match self.org_fold.get(ALERT_RETENTION_KEY)? {
            Some(v) => v
                .value()
                .parse()
                .unwrap_or_else(|_| default_alert_retention_days()),
            None => default_alert_retention_days(),
        };
        let cutoff = (now - Duration::days(days)).0;
        let mut old = Vec::new();
        for entry in self.alerts.range((i64::MIN, 0)..(cutoff, 0))? {
            let (k, _) = entry?;
            old.push(k.value());
        }
        for k in old {
            self.alerts.remove(k)?;
        }
        Ok(())
    }

    fn apply_mailbox(&mut self, mailbox: MailboxId, s: &Stored) -> Result<(), ProjectionError> {
        let state = self.states.entry(mailbox.clone()).or_default();
        // The rows whose links this event may move, looked up before the state changes.
        let mut records: Vec<RecordId> = s.event.record().cloned().into_iter().collect();
        let mut decided = s.event.record().cloned();
        let mut failure = None;
        // An intent whose outcome this event records: (row, intent id, how it stands now).
        let mut settled: Option<(RecordId, String, Settled)> = None;
        let mut moved: Option<(RecordId, RecordId)> = None;
        // A track_email command settled for good: its row, and whether the CRM created it.
        let mut email_settled: Option<(RecordId, bool)> = None;
        match &s.event {
            Event::IntentSucceeded(p) => {
                if let Some(i) = state.intents.get(&p.intent) {
                    records.push(i.record.clone());
                    // The CRM's result of a track command names the row it created.
                    let row = p.crm.as_ref().map_or(&i.record, |done| &done.record);
                    if row != &i.record {
                        moved = Some((i.record.clone(), row.clone()));
                    }
                    if email::is_email(i) {
                        email_settled = Some((row.clone(), true));
                    }
                    settled = Some((row.clone(), p.intent.to_string(), Settled::Done));
                }
            }
            Event::ErrorClassified(p) => {
                if let Some(id) = p.intent
                    && let Some(intent) = state.intents.get(&id)
                {
                    records.push(intent.record.clone());
                    decided = Some(intent.record.clone());
                    let why = format!("{} {}", p.error.code, p.error.message);
                    // A transient failure is retried until the attempt that reaches the limit
                    // gives the item up (R12).
                    let given_up = p.class == ErrorClass::Transient && p.attempt >= p.limit;
                    if email::is_email(intent) && (given_up || p.class == ErrorClass::Permanent) {
                        email_settled = Some((intent.record.clone(), false));
                    }
                    settled = Some((
                        intent.record.clone(),
                        id.to_string(),
                        match p.class {
                            ErrorClass::Permanent => Settled::Failed(why),
                            _ if given_up => Settled::Failed(format!(
                                "{why}; given up after {} attempts, the limit",
                                p.attempt
                            )),
                            _ => Settled::Retried(format!(
                                "attempt {} of {}: {why}",
                                p.attempt, p.limit
                            )),
                        },
                    ));
                    failure = Some(ItemFailure {
                        mailbox: mailbox.clone(),
                        intent: Some(id.to_string()),
                        record: Some(intent.record.clone()),
                        remote: intent.remote.clone(),
                        entity: state
                            .records
                            .get(&intent.record)
                            .map(|r| r.entity())
                            .or(email::is_email(intent).then_some(Entity::Email)),
                        change: Some(intent.kind),
                        class: p.class,
                        code: p.error.code.clone(),
                        text: p.error.message.clone(),
                        at: s.envelope.recorded_at,
                        // The attempts before this one (R79's retry count).
                        retries: p.attempt.saturating_sub(1),
                    });
                }
            }
            Event::AccessLost(p) => records.extend(p.records.iter().cloned()),
            Event::AccessRegained(p) => records.extend(p.records.iter().cloned()),
            Event::MappingEnded(_) => records.extend(state.links.keys().cloned()),
            _ => {}
        }
        state.apply(s.meta(), &s.event);
        // A server item a listing could not read: its row follows the state's failing item
        // (retry count included), and goes when the state lets it go.
        let mut listing_failure = None;
        if let Event::ItemFailed(p) = &s.event
            && let Some(f) = state.failing_items.get(&p.remote)
        {
            listing_failure = Some(ItemFailure {
                mailbox: mailbox.clone(),
                intent: None,
                record: state.by_remote.get(&p.remote).cloned(),
                remote: Some(p.remote.clone()),
                entity: f.entity,
                change: None,
                class: ErrorClass::Transient,
                code: f.error.code.clone(),
                text: f.error.message.clone(),
                at: f.last,
                retries: f.listings.saturating_sub(1),
            });
        }
        let mut cleared = Vec::new();
        if matches!(
            s.event,
            Event::ItemSeen(_) | Event::ItemGone(_) | Event::ListingCompleted(_)
        ) {
            let (from, to) = prefix(mailbox.as_str());
            for entry in self.failures.range(from.as_str()..to.as_str())? {
                let (k, _) = entry?;
                let k = k.value();
                if let Some((_, id)) = k.split_once('\0')
                    && let Some(remote) = id.strip_prefix(ITEM_PREFIX)
                    && !state.failing_items.contains_key(&RemoteId::new(remote))
                {
                    cleared.push(k.to_string());
                }
            }
        }
        self.dirty.insert(mailbox.clone());
        records.sort();
        records.dedup();
        if let Some((from, to)) = &moved {
            self.move_row(from, to)?;
        }
        if let Event::CreateIntent(p) = &s.event
            && p.target == Side::Crm
        {
            self.email_tracked(&mailbox, s.envelope.event_id)?;
        }

        for record in &records {
            self.sync_link(&mailbox, record)?;
        }
        if let Some((record, created)) = &email_settled {
            self.email_settled(&mailbox, record, *created)?;
        }
        // The failure of an intent of the row's last decision is told in that decision.
        let mut told = false;
        if let Some((record, intent, how)) = &settled {
            told = self.settle_intent(&mailbox, record, intent, how, s)?;
        }
        if let (Some(record), Some(rule)) = (&decided, s.envelope.rule)
            && !told
        {
            self.note_decision(&mailbox, record, rule, s)?;
        }
        if let Some(f) = failure {
            self.note_failure(f)?;
        }
        if let Some(f) = listing_failure {
            self.note_failure(f)?;
        }
        for k in cleared {
            self.remove_failure(&k)?;
        }
        Ok(())
    }

    /// Copies the link of `record` in `mailbox` from the fold state into the links table and the
    /// row's per-mailbox sync state.
    fn sync_link(&mut self, mailbox: &MailboxId, record: &RecordId) -> Result<(), ProjectionError> {
        let state = &self.states[mailbox];
        let link = state.links.get(record).map(|l| ItemLink {
            record: record.clone(),
            mailbox: mailbox.clone(),
            remote: l.remote.clone(),
            status: l.status,
        });
        let k = key(record.as_str(), mailbox.as_str());
        match &link {
            Some(l) => {
                self.links.insert(k.as_str(), encode(l)?.as_slice())?;
            }
            None => {
                self.links.remove(k.as_str())?;
            }
        }
        let Some(mut row) = self.row_or_known(mailbox, record)? else {
            return Ok(());
        };
        // A tracked email has no link: while its track_email command is open it is being
        // created (in the CRM), with the server item it came from; what its settled command
        // made of it (`email_settled`) stays.
        let state = &self.states[mailbox];
        let email = email::open_email(state, record).map(|i| i.remote.clone());
        let entity = row.entity;
        let entry = row.mailboxes.entry(mailbox.clone()).or_default();
        match (link, email) {
            (Some(l), _) => (entry.status, entry.remote) = (Some(l.status), l.remote),
            (None, Some(remote)) => {
                (entry.status, entry.remote) = (Some(LinkStatus::Creating), remote)
            }
            (None, None) if entity == Entity::Email => {}
            (None, None) => (entry.status, entry.remote) = (None, None),
        }
        self.put_row(&row)
    }

    fn note_decision(
        &mut self,
        mailbox: &MailboxId,
        record: &RecordId,
        rule: ledgersync_domain::RuleId,
        s: &Stored,
    ) -> Result<(), ProjectionError> {
        let Some(mut row) = self.row_or_known(mailbox, record)? else {
            return Ok(());
        };
        let cause = s.envelope.causation.first().map(|c| c.to_string());
        // An intent is only decided here: it reads as pending until its outcome is folded.
        let intent = intent_phrase(&s.event, &Progress::Pending).map(|pending| IntentPart {
            intent: s.envelope.event_id.to_string(),
            now: pending.clone(),
            done: intent_phrase(&s.event, &Progress::Done).unwrap_or_default(),
            failed: intent_phrase(&s.event, &Progress::Failed("{why}".into())).unwrap_or_default(),
            pending,
        });
        let part = match &intent {
            Some(i) => i.now.clone(),
            None => summarize(&[(rule, s.event.clone())], Some(row.entity)),
        };
        let entry = row.mailboxes.entry(mailbox.clone()).or_default();
        let same_batch = entry
            .last_decision
            .as_ref()
            .is_some_and(|d| d.cause.is_some() && d.cause == cause);
        if !same_batch {
            entry.last_decision = Some(LastDecision {
                rules: Vec::new(),
                did: Vec::new(),
                summary: String::new(),
                reason: describe(&s.event),
                cause,
                at: s.envelope.recorded_at,
                position: s.envelope.position,
                intents: Vec::new(),
            });
        }
        let d = entry
            .last_decision
            .as_mut()
            .expect("set just above when absent");
        if !d.rules.contains(&rule) {
            d.rules.push(rule);
        }
        if part != "nothing" && !d.did.contains(&part) {
            d.did.push(part);
        }
        d.intents.extend(intent);
        d.summary = if d.did.is_empty() {
            "nothing".into()
        } else {
            d.did.join(", ")
        };
        d.position = s.envelope.position;
        self.put_row(&row)
    }

    /// Rewords the intent `intent` in the last decision about `record` in `mailbox`, now that
    /// its outcome is recorded; answers whether that decision holds it (an outcome of an
    /// older decision leaves the last one as it is).
    fn settle_intent(
        &mut self,
        mailbox: &MailboxId,
        record: &RecordId,
        intent: &str,
        how: &Settled,
        s: &Stored,
    ) -> Result<bool, ProjectionError> {
        let Some(mut row) = self.row(record)? else {
            return Ok(false);
        };
        let Some(d) = row
            .mailboxes
            .get_mut(mailbox)
            .and_then(|m| m.last_decision.as_mut())
        else {
            return Ok(false);
        };
        let Some(part) = d.intents.iter_mut().find(|p| p.intent == intent) else {
            return Ok(false);
        };
        let now = match how {
            Settled::Done => part.done.clone(),
            Settled::Failed(why) => part.failed.replace("{why}", why),
            Settled::Retried(why) => {
                format!(
                    "{}; the last attempt failed ({why}), it is retried",
                    part.pending
                )
            }
        };
        let old = std::mem::replace(&mut part.now, now.clone());
        match d.did.iter().position(|p| *p == old) {
            Some(_) if old == now => {}
            Some(i) if !d.did.contains(&now) => d.did[i] = now,
            Some(i) => {
                d.did.remove(i);
            }
            None => d.did.push(now),
        }
        if let Some(rule) = s.envelope.rule
            && !d.rules.contains(&rule)
        {
            d.rules.push(rule);
        }
        d.summary = d.did.join(", ");
        d.position = s.envelope.position;
        self.put_row(&row)?;
        Ok(true)
    }

    fn note_failure(&mut self, mut f: ItemFailure) -> Result<(), ProjectionError> {
        let id = match (&f.intent, &f.remote) {
            (Some(intent), _) => intent.clone(),
            (None, Some(remote)) => format!("{ITEM_PREFIX}{remote}"),
            (None, None) => return Ok(()),
        };
        let k = key(f.mailbox.as_str(), &id);
        let old = self
            .failures
            .get(k.as_str())?
            .map(|v| decode::<ItemFailure>(v.value()))
            .transpose()?;
        if let Some(old) = old {
            // An intent's failures are one record; a listing failure carries its own count.
            if f.intent.is_some() {
                f.retries = f.retries.max(old.retries + 1);
            }
            self.failures_by_time.remove((old.at.0, k.as_str()))?;
        }
        self.failures.insert(k.as_str(), encode(&f)?.as_slice())?;
        self.failures_by_time.insert((f.at.0, k.as_str()), ())?;
        Ok(())
    }

    /// Removes the failure under `k` (a server item that is no longer failing).
    fn remove_failure(&mut self, k: &str) -> Result<(), ProjectionError> {
        let old = self
            .failures
            .remove(k)?
            .map(|v| decode::<ItemFailure>(v.value()))
            .transpose()?;
        if let Some(old) = old {
            self.failures_by_time.remove((old.at.0, k))?;
        }
        Ok(())
    }

    /// Drops the failures recorded more than the retention before `now` (R16).
    fn purge(&mut self, now: Timestamp) -> Result<(), ProjectionError> {
        let cutoff = (now - self.retention).0;
        let mut old = Vec::new();
        for entry in self.failures_by_time.range((i64::MIN, "")..(cutoff, ""))? {
            let (k, _) = entry?;
            let (at, id) = k.value();
            old.push((at, id.to_string()));
        }
        for (at, id) in old {
            self.failures_by_time.remove((at, id.as_str()))?;
            self.failures.remove(id.as_str())?;
        }
        Ok(())
    }

    /// Writes the health rows of the mailboxes this transaction touched, and answers them
    /// (their fold states are saved by the caller, not necessarily with every page).
    pub(super) fn finish(mut self) -> Result<BTreeSet<MailboxId>, ProjectionError> {
        let dirty = std::mem::take(&mut self.dirty);
        for mailbox in &dirty {
            let state = &self.states[mailbox];
            for w in Workload::ALL {
                let ws = state.workload(w);
                let row = WorkloadHealth {
                    mailbox: mailbox.clone(),
                    workload: w,
                    test: ws.test,
                    enabled: ws.enabled,
                    disabled_reason: ws.disabled_reason.clone(),
                    last_success: ws.last_success,
                    last_error: ws
                        .last_error
                        .as_ref()
                        .map(|e| (e.code.clone(), e.message.clone())),
                    consecutive_errors: ws.consecutive_errors,
                    next_run: ws.next_run,
                };
                let k = key(mailbox.as_str(), &w.index().to_string());
                self.health.insert(k.as_str(), encode(&row)?.as_slice())?;
            }
        }
        Ok(dirty)
    }

    fn row(&self, record: &RecordId) -> Result<Option<Activity>, ProjectionError> {
        self.rows
            .get(record.as_str())?
            .map(|v| decode(v.value()))
            .transpose()
    }

    /// The row, or one built from what the mailbox knows of the record (a row created from a
    /// server item is not in the organization stream).
    fn row_or_known(
        &mut self,
        mailbox: &MailboxId,
        record: &RecordId,
    ) -> Result<Option<Activity>, ProjectionError> {
        if let Some(row) = self.row(record)? {
            return Ok(Some(row));
        }
        let state = &self.states[mailbox];
        let known = state
            .records
            .get(record)
            .or_else(|| state.links.get(record).map(|l| &l.synced))
            .cloned();
        match known {
            Some(rec) => {
                // Such a row has no time of its own before the CRM sends it: version 0 rows sit
                // at the epoch until then.
                self.upsert_row(&rec, Timestamp(0))?;
                self.row(record)
            }
            None => Ok(None),
        }
    }

    /// Creates or updates a row from a CRM snapshot received at `at`, moving its index entries.
    fn upsert_row(&mut self, record: &Record, at: Timestamp) -> Result<(), ProjectionError> {
        let old = self.row(&record.id)?;
        let (regarding, when) = match &record.body {
            RecordBody::Appointment(a) => (a.regarding.as_ref(), Some(a.start)),
            RecordBody::Task(t) => (t.regarding.as_ref(), t.due),
            RecordBody::Email(e) => (e.regarding.as_ref(), None),
            RecordBody::Contact(_) => (None, None),
        };
        let at = when.or(old.as_ref().map(|o| o.at)).unwrap_or(at);
        let row = Activity {
            record: record.id.clone(),
            entity: record.entity(),
            title: record.title().to_string(),
            version: record.version,
            at,
            regarding: regarding.map(|r| Regarding {
                table: r.table.clone(),
                id: r.id.clone(),
                name: r.name.clone(),
            }),
            owner: record.owner.clone(),
            participants: record.participants(),
            deleted_in_crm: old.as_ref().is_some_and(|o| o.deleted_in_crm),
            mailboxes: old
                .as_ref()
                .map(|o| o.mailboxes.clone())
                .unwrap_or_default(),
        };
        // Only the index entries that change are written: in a large projection each one is a
        // leaf of its own, and a new version of a row usually keeps its regarding row and its
        // participants.
        let id = record.id.as_str();
        let old_regarding = old
            .as_ref()
            .and_then(|o| o.regarding.as_ref())
            .map(|r| &r.id);
        let new_regarding = row.regarding.as_ref().map(|r| &r.id);
        if old_regarding != new_regarding {
            if let Some(r) = old_regarding {
                self.by_regarding.remove(key(r.as_str(), id).as_str())?;
            }
            if let Some(r) = new_regarding {
                self.by_regarding.insert(key(r.as_str(), id).as_str(), ())?;
            }
        }
        let old_users = old.as_ref().map_or(&[][..], |o| o.participants.as_slice());
        for u in old_users.iter().filter(|u| !row.participants.contains(u)) {
            self.by_user.remove(key(u.as_str(), id).as_str())?;
        }
        for u in row.participants.iter().filter(|u| !old_users.contains(u)) {
            self.by_user.insert(key(u.as_str(), id).as_str(), ())?;
        }
        self.put_row(&row)
    }

    fn put_row(&mut self, row: &Activity) -> Result<(), ProjectionError> {
        self.rows
            .insert(row.record.as_str(), encode(row)?.as_slice())?;
        Ok(())
    }
}
